//! Service ClusterIPs and NodePorts: filled in when not given, checked when
//! given, and held exclusively through claim keys under
//! `/registry/ranges/` that are written in the same etcd transaction as
//! the Service (see `storage`), so two Services never get one address.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::{json, Value};

use crate::resources::Resource;
use crate::status::{ApiError, ApiResult, Cause};

pub const CLAIMS_PREFIX: &str = "/registry/ranges/";
const IP_CLAIMS: &str = "/registry/ranges/serviceips/";
const PORT_CLAIMS: &str = "/registry/ranges/servicenodeports/";

/// The Service address ranges of this cluster.
#[derive(Debug, Clone)]
pub struct ServiceNetwork {
    pub cluster_ips: Ipv4Net,
    pub node_ports: (u16, u16),
}

impl Default for ServiceNetwork {
    fn default() -> Self {
        ServiceNetwork { cluster_ips: "10.96.0.0/16".parse().expect("a CIDR"), node_ports: (30000, 32767) }
    }
}

impl ServiceNetwork {
    /// The first address: the `kubernetes` Service's, as upstream.
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        self.cluster_ips.hosts().next().unwrap_or(self.cluster_ips.network())
    }

    /// How many addresses at the start of the range are kept for Services
    /// that name their address (KEP-3070): a sixteenth of the range, at
    /// least 16 and at most 256, none in a range smaller than 16. Automatic
    /// picks come from above this band first, so that well-known addresses
    /// such as cluster DNS's tenth stay free for whoever asks for them.
    pub fn static_band(&self) -> usize {
        let size = 1usize << (32 - self.cluster_ips.prefix_len()).min(31);
        if size < 16 {
            0
        } else {
            (size / 16).clamp(16, 256)
        }
    }

    /// The addresses automatic picks try, in order from `seed`: the
    /// dynamic band (above the static one) round from the seed, then the
    /// static band, as upstream falls back to it when the rest is full.
    fn automatic_order(&self, seed: u64) -> impl Iterator<Item = Ipv4Addr> {
        let hosts: Vec<Ipv4Addr> = self.cluster_ips.hosts().collect();
        let first = u32::from(self.cluster_ips.network());
        let band = self.static_band() as u32;
        let (dynamic, fixed): (Vec<Ipv4Addr>, Vec<Ipv4Addr>) = hosts.into_iter().partition(|a| u32::from(*a) - first >= band);
        let n = dynamic.len().max(1);
        let start = (seed as usize) % n;
        let rotated: Vec<Ipv4Addr> = (0..dynamic.len()).map(|i| dynamic[(start + i) % n]).collect();
        rotated.into_iter().chain(fixed)
    }
}

/// Whether objects of `res` get addresses from here.
pub fn allocates(res: &Resource) -> bool {
    is_services(res)
}

fn is_services(res: &Resource) -> bool {
    res.strategy.allocates_service_addresses()
}

fn cluster_ip(obj: &Value) -> Option<&str> {
    obj.pointer("/spec/clusterIP").and_then(Value::as_str).filter(|ip| !ip.is_empty() && *ip != "None")
}

/// The claim keys an object holds.
pub fn claims(res: &Resource, obj: &Value) -> Vec<String> {
    if !is_services(res) {
        return Vec::new();
    }
    let mut keys: Vec<String> = cluster_ip(obj).map(|ip| format!("{IP_CLAIMS}{ip}")).into_iter().collect();
    for p in obj.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
        if let Some(port) = p["nodePort"].as_i64() {
            keys.push(format!("{PORT_CLAIMS}{port}"));
        }
    }
    keys
}

fn invalid(obj: &Value, causes: Vec<Cause>) -> ApiError {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    ApiError::invalid(&crate::status::Subject { group: "".into(), kind: "Service".into(), name: name.into() }, causes)
}

/// Fills in and checks a Service's addresses. `old` is the Service being
/// updated; `taken` the claim keys in use (its own among them); `seed`
/// spreads automatic picks so that concurrent creates rarely collide.
pub fn allocate(res: &Resource, obj: &mut Value, old: Option<&Value>, net: &ServiceNetwork, taken: &HashSet<String>, seed: u64) -> ApiResult<()> {
    if !is_services(res) || !obj.get("spec").is_some_and(Value::is_object) {
        return Ok(());
    }
    let own: HashSet<String> = old.map(|o| claims(res, o)).unwrap_or_default().into_iter().collect();
    let free = |key: &str| !taken.contains(key) || own.contains(key);
    let kind = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();

    // ClusterIP: kept from the old object when not given, immutable once set.
    let old_ip = old.and_then(|o| o.pointer("/spec/clusterIP")).and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from);
    let given = obj.pointer("/spec/clusterIP").and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from);
    let ip = match (kind.as_str(), given, old_ip) {
        ("ExternalName", _, _) => None,
        (_, Some(g), Some(o)) if g != o => {
            return Err(invalid(obj, vec![Cause::invalid("spec.clusterIPs[0]", &json!([g]), "may not change once set")]));
        }
        (_, None, Some(o)) => Some(o),
        (_, Some(g), _) if g == "None" => Some(g),
        (_, Some(g), _) => {
            let why = match g.parse::<Ipv4Addr>() {
                Err(_) => Some("must be a valid IP address".to_string()),
                Ok(a) if !net.cluster_ips.contains(&a) => {
                    Some(format!("failed to allocate IP {g}: the provided IP ({g}) is not in the valid range. The range of valid IPs is {}", net.cluster_ips))
                }
                Ok(_) if !free(&format!("{IP_CLAIMS}{g}")) => Some(format!("failed to allocate IP {g}: provided IP is already allocated")),
                Ok(_) => None,
            };
            if let Some(why) = why {
                return Err(invalid(obj, vec![Cause::invalid("spec.clusterIPs", &json!([g]), why)]));
            }
            Some(g)
        }
        (_, None, None) => {
            let pick = net.automatic_order(seed).find(|a| *a != net.kubernetes_ip() && free(&format!("{IP_CLAIMS}{a}")));
            match pick {
                Some(a) => Some(a.to_string()),
                None => return Err(invalid(obj, vec![Cause::invalid("spec.clusterIPs", &json!([]), "failed to allocate a serviceIP: range is full")])),
            }
        }
    };
    let spec = obj["spec"].as_object_mut().expect("checked above");
    match ip {
        Some(ip) => {
            spec.insert("clusterIP".into(), json!(ip));
            spec.insert("clusterIPs".into(), json!([ip]));
            if ip != "None" || !spec.contains_key("ipFamilies") {
                spec.insert("ipFamilies".into(), json!(["IPv4"]));
                spec.insert("ipFamilyPolicy".into(), json!("SingleStack"));
            }
        }
        None => {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
    }

    // NodePorts for NodePort and LoadBalancer Services; none otherwise.
    let wants_ports = matches!(kind.as_str(), "NodePort" | "LoadBalancer");
    let old_ports: Vec<Value> = old.and_then(|o| o.pointer("/spec/ports")).and_then(Value::as_array).cloned().unwrap_or_default();
    let (low, high) = net.node_ports;
    let mut used_here = HashSet::new();
    let mut causes = Vec::new();
    let ports = spec.get_mut("ports").and_then(Value::as_array_mut);
    for (i, p) in ports.into_iter().flatten().enumerate() {
        if !wants_ports {
            if p.get("nodePort").is_some_and(|v| !v.is_null()) && kind == "ClusterIP" {
                causes.push(Cause::forbidden(format!("spec.ports[{i}].nodePort"), "may not be used when `type` is 'ClusterIP'"));
            }
            continue;
        }
        let given = p["nodePort"].as_i64().filter(|n| *n != 0);
        let kept = old_ports.iter().find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"]).and_then(|o| o["nodePort"].as_i64());
        let port = match given.or(kept) {
            Some(n) => {
                let key = format!("{PORT_CLAIMS}{n}");
                if n < low as i64 || n > high as i64 {
                    causes.push(Cause::invalid(
                        format!("spec.ports[{i}].nodePort"),
                        &json!(n),
                        format!("provided port is not in the valid range. The range of valid ports is {low}-{high}"),
                    ));
                    continue;
                }
                if !free(&key) || !used_here.insert(n) {
                    causes.push(Cause::invalid(format!("spec.ports[{i}].nodePort"), &json!(n), "provided port is already allocated"));
                    continue;
                }
                n
            }
            None => {
                let span = (high - low) as u64 + 1;
                let pick = (0..span)
                    .map(|k| low as i64 + ((seed.wrapping_add(k).wrapping_add(i as u64 * 7919)) % span) as i64)
                    .find(|n| free(&format!("{PORT_CLAIMS}{n}")) && !used_here.contains(n));
                match pick {
                    Some(n) => {
                        used_here.insert(n);
                        n
                    }
                    None => {
                        causes.push(Cause::invalid(format!("spec.ports[{i}].nodePort"), &json!(0), "range is full"));
                        continue;
                    }
                }
            }
        };
        p["nodePort"] = json!(port);
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(obj, causes))
    }
}

/// The `kubernetes` Service the apiserver keeps in `default`.
pub fn kubernetes_service(net: &ServiceNetwork, port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": net.kubernetes_ip().to_string(), "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(cidr: &str) -> ServiceNetwork {
        ServiceNetwork { cluster_ips: cidr.parse().unwrap(), ..ServiceNetwork::default() }
    }

    #[test]
    fn the_static_band_is_a_sixteenth_between_16_and_256() {
        assert_eq!(network("10.96.0.0/16").static_band(), 256);
        assert_eq!(network("10.96.0.0/20").static_band(), 256);
        assert_eq!(network("10.96.0.0/22").static_band(), 64);
        assert_eq!(network("10.96.0.0/24").static_band(), 16);
        assert_eq!(network("10.96.0.0/28").static_band(), 16);
        assert_eq!(network("10.96.0.0/29").static_band(), 0);
    }

    /// Automatic picks avoid the static band, whatever the seed, until the
    /// dynamic band is full; then they take from the static band.
    #[test]
    fn automatic_picks_leave_the_static_band_until_the_rest_is_full() {
        let net = network("10.96.0.0/24");
        for seed in 0..1000 {
            let first = net.automatic_order(seed).next().unwrap();
            assert!(u32::from(first) - u32::from(net.cluster_ips.network()) >= 16, "seed {seed} picked {first}");
        }
        let order: Vec<Ipv4Addr> = net.automatic_order(7).collect();
        assert_eq!(order.len(), 254, "every host once");
        let fixed: Vec<String> = order[order.len() - 15..].iter().map(|a| a.to_string()).collect();
        assert_eq!(fixed.first().map(String::as_str), Some("10.96.0.1"));
        assert_eq!(fixed.last().map(String::as_str), Some("10.96.0.15"));
        assert!(order[..order.len() - 15].iter().all(|a| a.octets()[3] >= 16));
    }
}
