//! What the apiserver keeps in every cluster, as upstream's bootstrap
//! controllers do: the system namespaces, the default cluster roles, and the
//! `kubernetes` Service, whose endpoints `endpoints_reconciler` keeps.

use std::net::IpAddr;

use serde_json::{json, Value};

use crate::allocator;
use crate::managed_fields::Writer;
use crate::registry::Registry;
use crate::resources;

const RBAC: &str = crate::strategy::rbac::GROUP;

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
pub fn writer(res: &resources::Resource) -> Writer {
    Writer { manager: "kube-apiserver".into(), api_version: res.api_version(), subresource: String::new(), has_status: res.has_status() }
}

/// Creates what is missing. `address` is where this apiserver is reached
/// (its IP and port), added to the `kubernetes` Service's endpoints.
pub async fn run(registry: &Registry, address: Option<(IpAddr, u16)>, api_port: u16) -> anyhow::Result<()> {
    for name in SYSTEM_NAMESPACES {
        create_once(registry, "", "namespaces", None, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})).await?;
    }
    for role in crate::default_roles::cluster_roles() {
        create_once(registry, RBAC, "clusterroles", None, role).await?;
    }
    for binding in crate::default_roles::cluster_role_bindings() {
        create_once(registry, RBAC, "clusterrolebindings", None, binding).await?;
    }
    let service = allocator::kubernetes_service(&registry.services, api_port);
    create_once(registry, "", "services", Some("default"), service).await?;
    if let Some((ip, port)) = address {
        crate::endpoints_reconciler::reconcile(registry, ip, port, crate::endpoints_reconciler::TTL_SECONDS).await?;
    }
    Ok(())
}
