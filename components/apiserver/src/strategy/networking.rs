//! networking.k8s.io/v1: Ingresses, IngressClasses and NetworkPolicies,
//! stored and checked; no ingress controller serves them and nothing
//! enforces network policies yet (README).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::apps::label_selector;
use super::{age, array_at, col, default_at, name, str_at, updates, Column, Strategy, AGE, NAME};
use crate::status::Cause;

/// A backend names a Service (by port name or number) or a resource.
fn validate_backend(b: &Value, at: &str, causes: &mut Vec<Cause>) {
    let service = b.get("service").filter(|s| !s.is_null());
    let resource = b.get("resource").filter(|s| !s.is_null());
    match (service, resource) {
        (Some(_), Some(_)) => causes.push(Cause::invalid(at, &json!(""), "cannot set both resource and service backends")),
        (None, None) => causes.push(Cause { message: "Required value: at least one backend must be specified".into(), ..Cause::required(at) }),
        (Some(s), None) => {
            if s["name"].as_str().is_none_or(str::is_empty) {
                causes.push(Cause::required(format!("{at}.service.name")));
            }
            let (port_name, number) = (s.pointer("/port/name").filter(|v| !v.is_null()), s.pointer("/port/number").filter(|v| !v.is_null()));
            match (port_name, number) {
                (Some(_), Some(_)) => causes.push(Cause::invalid(format!("{at}.service.port"), &s["port"], "cannot set both port name & port number")),
                (None, None) => {
                    causes.push(Cause { message: "Required value: port name or number is required".into(), ..Cause::required(format!("{at}.service.port")) })
                }
                (None, Some(n)) if n.as_i64().is_none_or(|n| !(1..=65535).contains(&n)) => {
                    causes.push(Cause::invalid(format!("{at}.service.port.number"), n, "must be between 1 and 65535, inclusive"))
                }
                _ => {}
            }
        }
        (None, Some(_)) => {}
    }
}

pub struct Ingresses;
impl Strategy for Ingresses {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let rules = array_at(obj, "/spec/rules");
        let default = obj.pointer("/spec/defaultBackend").filter(|b| !b.is_null());
        if rules.is_empty() && default.is_none() {
            causes.push(Cause::invalid("spec", &json!(""), "either `defaultBackend` or `rules` must be specified"));
        }
        if let Some(b) = default {
            validate_backend(b, "spec.defaultBackend", &mut causes);
        }
        for (i, rule) in rules.iter().enumerate() {
            for (j, path) in array_at(rule, "/http/paths").iter().enumerate() {
                let at = format!("spec.rules[{i}].http.paths[{j}]");
                match path.get("pathType").and_then(Value::as_str) {
                    None => causes.push(Cause { message: "Required value: pathType must be specified".into(), ..Cause::required(format!("{at}.pathType")) }),
                    Some("Exact" | "Prefix") => {
                        if !path["path"].as_str().is_some_and(|p| p.starts_with('/')) {
                            causes.push(Cause::invalid(format!("{at}.path"), &path["path"], "must be an absolute path"));
                        }
                    }
                    Some("ImplementationSpecific") => {}
                    Some(_) => causes.push(Cause::not_supported(format!("{at}.pathType"), &path["pathType"], &["Exact", "ImplementationSpecific", "Prefix"])),
                }
                validate_backend(path.get("backend").unwrap_or(&Value::Null), &format!("{at}.backend"), &mut causes);
            }
        }
        causes
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Class", "string", "The name of the IngressClass resource that should be used for additional configuration"),
                col("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
                col("Address", "string", "Address is a list containing ingress points for the load-balancer"),
                col("Ports", "string", "Ports of TLS configurations that open"),
                AGE,
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let rules = array_at(obj, "/spec/rules");
        let hosts: Vec<&str> = rules.iter().filter_map(|r| r["host"].as_str()).filter(|h| !h.is_empty()).take(3).collect();
        let hosts = match (hosts.is_empty(), rules.len() > 3) {
            (true, _) => "*".to_string(),
            (false, true) => format!("{} + {} more...", hosts.join(","), rules.len() - 3),
            (false, false) => hosts.join(","),
        };
        let address: Vec<&str> =
            array_at(obj, "/status/loadBalancer/ingress").iter().filter_map(|i| i["ip"].as_str().or_else(|| i["hostname"].as_str())).collect();
        let ports = if array_at(obj, "/spec/tls").is_empty() { "80" } else { "80, 443" };
        vec![
            json!(name(obj)),
            json!(str_at(obj, "/spec/ingressClassName").unwrap_or("<none>")),
            json!(hosts),
            json!(address.join(",")),
            json!(ports),
            json!(age(obj, now)),
        ]
    }
}

pub struct IngressClasses;
impl Strategy for IngressClasses {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        match obj.pointer("/spec/controller").and_then(Value::as_str) {
            None | Some("") => vec![Cause::required("spec.controller")],
            Some(_) => Vec::new(),
        }
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        updates::immutable(new, old, "/spec/controller", "spec.controller", &mut causes);
        causes
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Controller", "string", "Controller that is responsible for handling this class"),
                col("Parameters", "string", "A reference to a resource with additional parameters"),
                AGE,
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let parameters = match obj.pointer("/spec/parameters").filter(|p| p.is_object()) {
            None => "<none>".to_string(),
            Some(p) => {
                let kind = p["kind"].as_str().unwrap_or("");
                let kind = match p["apiGroup"].as_str() {
                    Some(g) => format!("{kind}.{g}"),
                    None => kind.to_string(),
                };
                format!("{kind}/{}", p["name"].as_str().unwrap_or(""))
            }
        };
        vec![json!(name(obj)), json!(str_at(obj, "/spec/controller").unwrap_or("")), json!(parameters), json!(age(obj, now))]
    }
}

pub struct NetworkPolicies;
impl Strategy for NetworkPolicies {
    /// Upstream: policyTypes default to Ingress, plus Egress when there
    /// are egress rules; ports are TCP unless they say otherwise.
    fn default(&self, obj: &mut Value) {
        if !obj.get("spec").is_some_and(Value::is_object) {
            return;
        }
        if array_at(obj, "/spec/policyTypes").is_empty() {
            let mut types = vec!["Ingress"];
            if !array_at(obj, "/spec/egress").is_empty() {
                types.push("Egress");
            }
            obj["spec"]["policyTypes"] = json!(types);
        }
        for direction in ["ingress", "egress"] {
            if let Some(rules) = obj.pointer_mut(&format!("/spec/{direction}")).and_then(Value::as_array_mut) {
                for rule in rules {
                    if let Some(ports) = rule.get_mut("ports").and_then(Value::as_array_mut) {
                        for p in ports {
                            default_at(p, &["protocol"], json!("TCP"));
                        }
                    }
                }
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        match obj.pointer("/spec/podSelector") {
            None | Some(Value::Null) => causes.push(Cause::required("spec.podSelector")),
            Some(sel) => {
                if let Err(why) = label_selector(sel) {
                    causes.push(Cause::invalid("spec.podSelector", sel, why));
                }
            }
        }
        for (i, t) in array_at(obj, "/spec/policyTypes").iter().enumerate() {
            if !matches!(t.as_str(), Some("Ingress" | "Egress")) {
                causes.push(Cause::not_supported(format!("spec.policyTypes[{i}]"), t, &["Egress", "Ingress"]));
            }
        }
        causes
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Pod-Selector", "string", "podSelector selects the pods to which this NetworkPolicy object applies. The array of rules is applied to any pods selected by this field. An empty selector matches all pods in the policy's namespace. Multiple network policies can select the same set of pods. In this case, the ingress rules for each are combined additively. This field is optional. If it is not specified, it defaults to an empty selector."),
                AGE,
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let selector = match obj.pointer("/spec/podSelector").map(label_selector) {
            Some(Ok(s)) if !s.is_empty() => s.to_string(),
            _ => "<none>".into(),
        };
        vec![json!(name(obj)), json!(selector), json!(age(obj, now))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_paths_need_a_type_and_a_backend() {
        let ing = json!({"spec": {"rules": [{"host": "a.example", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
            {"path": "/x", "backend": {"service": {"name": "web"}}}]}}]}});
        let lines: Vec<String> = Ingresses.validate(&ing).iter().map(Cause::line).collect();
        assert_eq!(
            lines,
            [
                "spec.rules[0].http.paths[1].pathType: Required value: pathType must be specified",
                "spec.rules[0].http.paths[1].backend.service.port: Required value: port name or number is required",
            ]
        );
        let cells = Ingresses.cells(&ing, Utc::now());
        assert_eq!(cells[1..5], [json!("<none>"), json!("a.example"), json!(""), json!("80")]);
    }

    #[test]
    fn policies_default_their_types() {
        let mut p = json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}});
        NetworkPolicies.default(&mut p);
        assert_eq!(p["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(p["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        assert!(NetworkPolicies.validate(&p).is_empty());
    }
}
