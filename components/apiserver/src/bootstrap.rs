//! What the apiserver keeps in every cluster, as upstream's bootstrap
//! controllers do: the system namespaces, the `kubernetes` Service, and its
//! Endpoints and EndpointSlice listing the apiservers' addresses.

use std::net::IpAddr;

use serde_json::{json, Value};

use crate::allocator;
use crate::managed_fields::Writer;
use crate::registry::Registry;
use crate::resources;
use crate::status::ApiResult;

/// The namespaces every cluster starts with.
pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

async fn create_once(registry: &Registry, group: &str, plural: &str, namespace: Option<&str>, obj: Value) -> anyhow::Result<()> {
    let res = resources::find(group, "v1", plural).expect("bootstrap kinds are in the table");
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    match registry.create(res, namespace, obj, false, Some(&writer(res))).await {
        Ok(_) => {
            tracing::info!("created {plural} {name}");
            Ok(())
        }
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => anyhow::bail!("cannot create {plural} {name}: {e}"),
    }
}

/// Upstream's bootstrap controllers write as the apiserver itself.
fn writer(res: &resources::Resource) -> Writer {
    Writer { manager: "kube-apiserver".into(), api_version: res.api_version(), subresource: String::new(), has_status: res.has_status() }
}

/// Creates what is missing. `address` is where this apiserver is reached
/// (its IP and port), added to the `kubernetes` Service's endpoints.
pub async fn run(registry: &Registry, address: Option<(IpAddr, u16)>, api_port: u16) -> anyhow::Result<()> {
    for name in SYSTEM_NAMESPACES {
        create_once(registry, "", "namespaces", None, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})).await?;
    }
    let service = allocator::kubernetes_service(&registry.services, api_port);
    create_once(registry, "", "services", Some("default"), service).await?;
    if let Some((ip, port)) = address {
        publish(registry, ip, port).await?;
    }
    Ok(())
}

fn port(port: u16) -> Value {
    json!({"name": "https", "port": port, "protocol": "TCP"})
}

/// Adds this apiserver's address to default/kubernetes' Endpoints and
/// EndpointSlice (each apiserver of a lab adds its own).
async fn publish(registry: &Registry, ip: IpAddr, api_port: u16) -> anyhow::Result<()> {
    let ip = ip.to_string();
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": ip}], "ports": [port(api_port)]}],
    });
    create_once(registry, "", "endpoints", Some("default"), endpoints).await?;
    let ep = resources::find("", "v1", "endpoints").expect("in the table");
    update(registry.guaranteed_update(ep, Some("default"), "kubernetes", |obj| {
        let addresses = obj.pointer_mut("/subsets/0/addresses").and_then(Value::as_array_mut);
        match addresses {
            Some(list) if list.iter().any(|a| a["ip"] == ip.as_str()) => {}
            Some(list) => list.push(json!({"ip": ip})),
            None => obj["subsets"] = json!([{"addresses": [{"ip": ip}], "ports": [port(api_port)]}]),
        }
        Ok(())
    }))
    .await?;

    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": if ip.contains(':') { "IPv6" } else { "IPv4" },
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
        "ports": [port(api_port)],
    });
    create_once(registry, "discovery.k8s.io", "endpointslices", Some("default"), slice).await?;
    let es = resources::find("discovery.k8s.io", "v1", "endpointslices").expect("in the table");
    update(registry.guaranteed_update(es, Some("default"), "kubernetes", |obj| {
        let list = obj["endpoints"].as_array_mut();
        match list {
            Some(list) if list.iter().any(|e| e["addresses"][0] == ip.as_str()) => {}
            Some(list) => list.push(json!({"addresses": [ip], "conditions": {"ready": true}})),
            None => obj["endpoints"] = json!([{"addresses": [ip], "conditions": {"ready": true}}]),
        }
        Ok(())
    }))
    .await
}

async fn update(f: impl std::future::Future<Output = ApiResult<Value>>) -> anyhow::Result<()> {
    f.await.map(|_| ()).map_err(|e| anyhow::anyhow!("cannot publish the apiserver's address: {e}"))
}
