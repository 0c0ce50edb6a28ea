//! What a container is told about the Services it may talk to, as
//! upstream's kubelet tells it: for each Service of the pod's namespace
//! (all of them, unless the pod says `enableServiceLinks: false`) and
//! always for `default/kubernetes`, `<NAME>_SERVICE_HOST`,
//! `<NAME>_SERVICE_PORT[_<PORT NAME>]` and the variables Docker's links
//! set (`<NAME>_PORT`, `<NAME>_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]`).
//!
//! The Services come from the kubelet's watch of them (a reflector
//! store); everything but the "has it listed yet" check is pure.

use std::collections::BTreeMap;

use futures_util::FutureExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::Store;

use super::config::ConfigError;

/// The Service every pod is told about whatever its namespace and
/// `enableServiceLinks`: in-cluster clients find the API through its
/// variables.
const MASTER_NAMESPACE: &str = "default";
const MASTER_SERVICE: &str = "kubernetes";

/// The variables of `pod`'s Services from the kubelet's store. Before the
/// store's first list is in, upstream refuses to start the container (it
/// would miss `KUBERNETES_SERVICE_HOST`, which in-cluster clients need)
/// and the worker tries again; so do we, with upstream's words.
pub fn from_store(store: &Store<Service>, pod: &Pod) -> Result<Vec<(String, String)>, ConfigError> {
    if !matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))) {
        return Err(ConfigError("services have not yet been read at least once, cannot construct envvars".into()));
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    // The API defaults the field to true; a pod without it is treated so.
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    let services = store.state();
    Ok(service_env(services.iter().map(|s| &**s), namespace, links))
}

/// The variables, Services in name order, each Service's in upstream's
/// order. A Service of the pod's namespace named `kubernetes` stands
/// in for the master one when links are on, as upstream's map makes it.
pub fn service_env<'a>(services: impl IntoIterator<Item = &'a Service>, namespace: &str, enable_links: bool) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    let mut own: Vec<&Service> = vec![];
    for s in services.into_iter().filter(|s| cluster_ip(s).is_some()) {
        let (ns, name) = (s.metadata.namespace.as_deref().unwrap_or_default(), s.metadata.name.as_deref().unwrap_or_default());
        if ns == MASTER_NAMESPACE && name == MASTER_SERVICE {
            chosen.entry(name).or_insert(s);
        } else if ns == namespace && enable_links {
            own.push(s);
        }
    }
    for s in own {
        chosen.insert(s.metadata.name.as_deref().unwrap_or_default(), s);
    }
    chosen.values().flat_map(|s| variables(s)).collect()
}

/// A Service's ClusterIP, unless it has none (headless: "None"; or
/// ExternalName: empty), which gives no variables.
fn cluster_ip(s: &Service) -> Option<&str> {
    s.spec.as_ref().and_then(|spec| spec.cluster_ip.as_deref()).filter(|ip| !ip.is_empty() && *ip != "None")
}

/// One Service's variables.
fn variables(s: &Service) -> Vec<(String, String)> {
    let Some(ip) = cluster_ip(s) else { return vec![] };
    let prefix = variable_name(s.metadata.name.as_deref().unwrap_or_default());
    let ports = s.spec.as_ref().and_then(|spec| spec.ports.as_deref()).unwrap_or_default();
    let mut vars = vec![(format!("{prefix}_SERVICE_HOST"), ip.to_string())];
    // The first port keeps the bare name; named ports (only the first may
    // be unnamed) get their own.
    if let Some(first) = ports.first() {
        vars.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
    }
    for p in ports {
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            vars.push((format!("{prefix}_SERVICE_PORT_{}", variable_name(name)), p.port.to_string()));
        }
    }
    // Docker's link variables, `<PREFIX>_PORT` for the first port only.
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() };
    for (i, p) in ports.iter().enumerate() {
        let protocol = p.protocol.as_deref().filter(|p| !p.is_empty()).unwrap_or("TCP");
        let (lower, upper) = (protocol.to_lowercase(), protocol.to_uppercase());
        let url = format!("{lower}://{host}:{}", p.port);
        if i == 0 {
            vars.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{upper}", p.port);
        vars.extend([
            (port_prefix.clone(), url),
            (format!("{port_prefix}_PROTO"), lower),
            (format!("{port_prefix}_PORT"), p.port.to_string()),
            (format!("{port_prefix}_ADDR"), ip.to_string()),
        ]);
    }
    vars
}

/// A name as a variable name: upper case, `-` → `_` (Service and port
/// names are DNS labels, so nothing else needs changing).
fn variable_name(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn service(namespace: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32, Option<&str>)]) -> Service {
        Service {
            metadata: ObjectMeta { namespace: Some(namespace.into()), name: Some(name.into()), ..Default::default() },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(name, port, protocol)| ServicePort {
                            name: name.map(Into::into),
                            port: *port,
                            protocol: protocol.map(Into::into),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn kubernetes() -> Service {
        service("default", "kubernetes", "10.96.0.1", &[(Some("https"), 443, Some("TCP"))])
    }

    fn names(env: &[(String, String)]) -> Vec<&str> {
        env.iter().map(|(k, _)| k.as_str()).collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_kubernetes_service_as_every_pod_sees_it() {
        assert_eq!(
            service_env([&kubernetes()], "dev", true),
            pairs(&[
                ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
                ("KUBERNETES_SERVICE_PORT", "443"),
                ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
                ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
                ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
                ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
                ("KUBERNETES_PORT_443_TCP_PORT", "443"),
                ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
            ])
        );
    }

    #[test]
    fn dashes_become_underscores_and_unnamed_udp_ports_link_as_udp() {
        let dns = service("dev", "my-dns", "10.96.0.20", &[(None, 53, Some("UDP")), (Some("dns-tcp"), 53, Some("TCP"))]);
        assert_eq!(
            service_env([&dns], "dev", true),
            pairs(&[
                ("MY_DNS_SERVICE_HOST", "10.96.0.20"),
                ("MY_DNS_SERVICE_PORT", "53"),
                ("MY_DNS_SERVICE_PORT_DNS_TCP", "53"),
                ("MY_DNS_PORT", "udp://10.96.0.20:53"),
                ("MY_DNS_PORT_53_UDP", "udp://10.96.0.20:53"),
                ("MY_DNS_PORT_53_UDP_PROTO", "udp"),
                ("MY_DNS_PORT_53_UDP_PORT", "53"),
                ("MY_DNS_PORT_53_UDP_ADDR", "10.96.0.20"),
                ("MY_DNS_PORT_53_TCP", "tcp://10.96.0.20:53"),
                ("MY_DNS_PORT_53_TCP_PROTO", "tcp"),
                ("MY_DNS_PORT_53_TCP_PORT", "53"),
                ("MY_DNS_PORT_53_TCP_ADDR", "10.96.0.20"),
            ])
        );
    }

    #[test]
    fn a_port_without_protocol_is_tcp_and_ipv6_is_bracketed() {
        let web = service("dev", "web", "fd00::10", &[(None, 80, None)]);
        let env = service_env([&web], "dev", true);
        assert!(env.contains(&("WEB_PORT".into(), "tcp://[fd00::10]:80".into())), "{env:?}");
        assert!(env.contains(&("WEB_PORT_80_TCP_ADDR".into(), "fd00::10".into())), "{env:?}");
    }

    #[test]
    fn only_the_pods_namespace_and_services_with_a_cluster_ip() {
        let services = [
            kubernetes(),
            service("dev", "web", "10.96.0.30", &[(Some("http"), 80, None)]),
            service("dev", "headless", "None", &[(None, 80, None)]),
            service("dev", "external", "", &[]),
            service("prod", "db", "10.96.0.40", &[(None, 5432, None)]),
        ];
        let env = service_env(&services, "dev", true);
        let names = names(&env);
        assert!(names.contains(&"WEB_SERVICE_HOST") && names.contains(&"KUBERNETES_SERVICE_HOST"), "{names:?}");
        assert!(!names.iter().any(|n| n.starts_with("HEADLESS") || n.starts_with("EXTERNAL") || n.starts_with("DB_")), "{names:?}");
    }

    #[test]
    fn without_service_links_only_the_kubernetes_service() {
        let services = [kubernetes(), service("dev", "web", "10.96.0.30", &[(None, 80, None)])];
        let env = service_env(&services, "dev", false);
        assert!(names(&env).iter().all(|n| n.starts_with("KUBERNETES_")), "{env:?}");
        assert_eq!(env.len(), 8);
    }

    #[test]
    fn a_kubernetes_service_of_the_pods_namespace_stands_in_for_the_masters() {
        let own = service("dev", "kubernetes", "10.96.0.50", &[(None, 8080, None)]);
        for services in [[kubernetes(), own.clone()], [own.clone(), kubernetes()]] {
            let env = service_env(&services, "dev", true);
            assert!(env.contains(&("KUBERNETES_SERVICE_HOST".into(), "10.96.0.50".into())), "{env:?}");
            assert!(!env.iter().any(|(_, v)| v.contains("10.96.0.1")), "{env:?}");
            let env = service_env(&services, "dev", false);
            assert!(env.contains(&("KUBERNETES_SERVICE_HOST".into(), "10.96.0.1".into())), "{env:?}");
        }
    }
}
