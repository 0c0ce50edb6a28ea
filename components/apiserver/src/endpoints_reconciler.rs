//! The `kubernetes` Service's endpoints list the apiservers that are alive,
//! as upstream's lease reconciler keeps them: each apiserver holds a key
//! `/registry/masterleases/<ip>` under an etcd lease it renews every
//! `INTERVAL`, and writes the Endpoints and EndpointSlice from the keys
//! present. An apiserver that stops renewing drops out once its lease
//! expires; one that shuts down removes its key at once.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::registry::Registry;
use crate::resources;
use crate::status::ApiResult;

const LEASES: &str = "/registry/masterleases/";
/// Upstream's defaults: renew every 10 s, expire after 15 s.
pub const INTERVAL: Duration = Duration::from_secs(10);
pub const TTL_SECONDS: i64 = 15;

fn port(port: u16) -> Value {
    json!({"name": "https", "port": port, "protocol": "TCP"})
}

fn lease_key(ip: IpAddr) -> String {
    format!("{LEASES}{ip}")
}

/// Renews this apiserver's lease, then makes the endpoints list exactly
/// the apiservers holding one.
pub async fn reconcile(registry: &Registry, ip: IpAddr, api_port: u16, ttl: i64) -> anyhow::Result<()> {
    let lease = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": ip.to_string()},
                       "subsets": [{"addresses": [{"ip": ip.to_string()}]}]});
    registry
        .etcd
        .put_expiring(&lease_key(ip), serde_json::to_vec(&lease)?, ttl)
        .await
        .map_err(|e| anyhow::anyhow!("cannot renew the apiserver lease: {e:?}"))?;
    publish_holders(registry, api_port).await
}

async fn lease_holders(registry: &Registry) -> anyhow::Result<Vec<String>> {
    let mut ips: Vec<String> = registry
        .etcd
        .keys(LEASES)
        .await
        .map_err(|e| anyhow::anyhow!("cannot list the apiserver leases: {e:?}"))?
        .into_iter()
        .filter_map(|k| k.strip_prefix(LEASES).map(str::to_string))
        .collect();
    ips.sort();
    Ok(ips)
}

/// Writes the endpoints from the leases present. Two apiservers starting
/// together can each read the leases before the other's is written, and
/// the later write of the shorter list would stand until the next round;
/// so the leases are read again after the write and, if they changed
/// meanwhile, written again (a few times at most: the next round mends
/// the rest, as upstream's reconciler does).
async fn publish_holders(registry: &Registry, api_port: u16) -> anyhow::Result<()> {
    let mut ips = lease_holders(registry).await?;
    for _ in 0..3 {
        write_endpoints(registry, &ips, api_port).await.map_err(|e| anyhow::anyhow!("cannot write the kubernetes endpoints: {e}"))?;
        let now = lease_holders(registry).await?;
        if now == ips {
            break;
        }
        ips = now;
    }
    Ok(())
}

/// Drops this apiserver from the list at once (on shutdown).
pub async fn withdraw(registry: &Registry, ip: IpAddr, api_port: u16) -> anyhow::Result<()> {
    registry.etcd.remove(&lease_key(ip)).await.map_err(|e| anyhow::anyhow!("cannot remove the apiserver lease: {e:?}"))?;
    publish_holders(registry, api_port).await
}

/// Reconciles every `INTERVAL` until the task is dropped.
pub async fn run(registry: &Registry, ip: IpAddr, api_port: u16) {
    loop {
        tokio::time::sleep(INTERVAL).await;
        if let Err(e) = reconcile(registry, ip, api_port, TTL_SECONDS).await {
            tracing::warn!("{e:#}");
        }
    }
}

async fn write_endpoints(registry: &Registry, ips: &[String], api_port: u16) -> ApiResult<()> {
    let subsets =
        if ips.is_empty() { json!([]) } else { json!([{"addresses": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(), "ports": [port(api_port)]}]) };
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets,
    });
    let ep = resources::find("", "v1", "endpoints").expect("in the table");
    create_or_set(registry, ep, endpoints, |obj| obj["subsets"] = subsets.clone()).await?;

    let family = if ips.iter().any(|ip| ip.contains(':')) { "IPv6" } else { "IPv4" };
    let slice_endpoints: Vec<Value> = ips.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect();
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": family,
        "endpoints": slice_endpoints,
        "ports": [port(api_port)],
    });
    let es = resources::find("discovery.k8s.io", "v1", "endpointslices").expect("in the table");
    create_or_set(registry, es, slice, |obj| obj["endpoints"] = json!(slice_endpoints)).await
}

/// Creates `obj` in `default`, or applies `set` to the one there (which
/// writes nothing when it already holds the same).
async fn create_or_set(registry: &Registry, res: &'static resources::Resource, obj: Value, mut set: impl FnMut(&mut Value)) -> ApiResult<()> {
    // Twice at most: when another apiserver creates it between our read
    // and our create, the second round sets the one it created.
    for _ in 0..2 {
        match registry
            .guaranteed_update(res, Some("default"), "kubernetes", |o| {
                set(o);
                Ok(())
            })
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.code == 404 => match registry.create(res, Some("default"), obj.clone(), false, Some(&crate::bootstrap::writer(res))).await {
                Ok(_) => return Ok(()),
                Err(e) if e.reason == "AlreadyExists" => continue,
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
