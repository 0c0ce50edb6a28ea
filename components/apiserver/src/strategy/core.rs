//! core/v1 resources.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{age, array_at, col, default_at, int_at, map_string, name, or_none, str_at, updates, wide, Column, Strategy, AGE, NAME};
use crate::status::Cause;
use crate::validation::dns1123_label;

pub struct Namespaces;
impl Strategy for Namespaces {
    fn default(&self, obj: &mut Value) {
        default_at(obj, &["spec", "finalizers"], json!(["kubernetes"]));
        default_at(obj, &["status", "phase"], json!("Active"));
    }
    /// spec.finalizers change only through namespaces/NAME/finalize.
    fn prepare_update(&self, new: &mut Value, old: &Value) {
        let kept = old.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("finalizers".into(), kept);
        } else if new.is_object() {
            new["spec"] = json!({"finalizers": kept});
        }
    }
    fn tracks_generation(&self) -> bool {
        false
    }
    /// A namespace being deleted turns Terminating and waits for the
    /// namespace controller to empty it and remove its spec.finalizers.
    fn begin_deletion(&self, obj: &mut Value) -> bool {
        obj["status"]["phase"] = json!("Terminating");
        true
    }
    fn still_held(&self, obj: &Value, _old: &Value) -> bool {
        !array_at(obj, "/spec/finalizers").is_empty()
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let n = name(obj);
        match dns1123_label(n) {
            Some(why) if !n.is_empty() => vec![Cause::invalid("metadata.name", &json!(n), why)],
            _ => vec![],
        }
    }
    fn fields(&self) -> &'static [(&'static str, &'static str)] {
        &[("status.phase", "/status/phase")]
    }
    fn columns(&self) -> &'static [Column] {
        const { &[NAME, col("Status", "string", "The status of the namespace"), AGE] }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![json!(name(obj)), json!(str_at(obj, "/status/phase").unwrap_or("")), json!(age(obj, now))]
    }
}

/// Pod spec defaults, shared with the templates of workload resources.
pub fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    default_at(spec, &["restartPolicy"], json!("Always"));
    default_at(spec, &["dnsPolicy"], json!("ClusterFirst"));
    default_at(spec, &["terminationGracePeriodSeconds"], json!(30));
    default_at(spec, &["schedulerName"], json!("default-scheduler"));
    default_at(spec, &["securityContext"], json!({}));
    default_at(spec, &["enableServiceLinks"], json!(true));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in containers {
                default_container(c);
            }
        }
    }
}

fn default_container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    // Upstream: Always for :latest or an untagged image, else IfNotPresent.
    let last = image.rsplit('/').next().unwrap_or("");
    let policy = if image.contains('@') || (last.contains(':') && !last.ends_with(":latest")) { "IfNotPresent" } else { "Always" };
    default_at(c, &["imagePullPolicy"], json!(policy));
    default_at(c, &["terminationMessagePath"], json!("/dev/termination-log"));
    default_at(c, &["terminationMessagePolicy"], json!("File"));
    default_at(c, &["resources"], json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            default_at(p, &["protocol"], json!("TCP"));
        }
    }
}

/// Checks a pod spec at `path` (`spec`, or `spec.template.spec`).
pub fn validate_pod_spec(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        causes.push(Cause::required(path));
        return;
    };
    let containers = array_at(spec, "/containers");
    if containers.is_empty() {
        causes.push(Cause::required(format!("{path}.containers")));
    }
    let mut seen = std::collections::HashSet::new();
    for (list, items) in [("containers", containers), ("initContainers", array_at(spec, "/initContainers"))] {
        for (i, c) in items.iter().enumerate() {
            let at = format!("{path}.{list}[{i}]");
            match c.get("name").and_then(Value::as_str) {
                None | Some("") => causes.push(Cause::required(format!("{at}.name"))),
                Some(n) => {
                    if let Some(why) = dns1123_label(n) {
                        causes.push(Cause::invalid(format!("{at}.name"), &json!(n), why));
                    } else if !seen.insert(n.to_string()) {
                        causes.push(Cause::duplicate(format!("{at}.name"), &json!(n)));
                    }
                }
            }
            if c.get("image").and_then(Value::as_str).is_none_or(str::is_empty) {
                causes.push(Cause::required(format!("{at}.image")));
            }
            validate_container_restart_policy(c, list == "initContainers", &at, causes);
            for (j, p) in array_at(c, "/ports").iter().enumerate() {
                let port = &p["containerPort"];
                match port.as_i64() {
                    None => causes.push(Cause::required(format!("{at}.ports[{j}].containerPort"))),
                    Some(n) if !(1..=65535).contains(&n) => {
                        causes.push(Cause::invalid(format!("{at}.ports[{j}].containerPort"), port, "must be between 1 and 65535, inclusive"))
                    }
                    _ => {}
                }
                validate_protocol(p, &format!("{at}.ports[{j}].protocol"), causes);
            }
        }
    }
    if let Some(policy) = spec.get("restartPolicy") {
        if !matches!(policy.as_str(), Some("Always" | "OnFailure" | "Never")) {
            causes.push(Cause::not_supported(format!("{path}.restartPolicy"), policy, &["Always", "OnFailure", "Never"]));
        }
    }
}

/// A container's own restartPolicy, as upstream 1.33 validates it: only
/// an init container may have one, and only `Always` (a sidecar); an init
/// container that is not a sidecar runs to completion, so it may have
/// neither probes nor lifecycle hooks.
fn validate_container_restart_policy(c: &Value, init: bool, at: &str, causes: &mut Vec<Cause>) {
    let policy = c.get("restartPolicy");
    if !init {
        if policy.is_some() {
            causes.push(Cause::forbidden(format!("{at}.restartPolicy"), "may not be set for non-init containers"));
        }
        return;
    }
    match policy {
        Some(p) if p.as_str() != Some("Always") => causes.push(Cause::not_supported(format!("{at}.restartPolicy"), p, &["Always"])),
        Some(_) => {}
        None => {
            for field in ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe"] {
                if c.get(field).is_some_and(|v| !v.is_null()) {
                    causes.push(Cause::forbidden(format!("{at}.{field}"), "may not be set for init containers without restartPolicy=Always"));
                }
            }
        }
    }
}

fn validate_protocol(port: &Value, field: &str, causes: &mut Vec<Cause>) {
    if let Some(p) = port.get("protocol") {
        if !matches!(p.as_str(), Some("TCP" | "UDP" | "SCTP")) {
            causes.push(Cause::not_supported(field, p, &["SCTP", "TCP", "UDP"]));
        }
    }
}

pub struct Pods;
impl Strategy for Pods {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            default_pod_spec(spec);
        }
        default_at(obj, &["status", "phase"], json!("Pending"));
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_pod_spec(obj.get("spec"), "spec", &mut causes);
        causes
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        updates::pod(new, old)
    }
    fn validate_ephemeral_containers_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        updates::ephemeral_containers(new, old)
    }
    /// A pod bound to a node waits for its kubelet to stop it: the
    /// client's grace period, else the pod's own, else 30 s.
    fn deletion_grace(&self, obj: &Value, requested: Option<i64>) -> i64 {
        if str_at(obj, "/spec/nodeName").is_none_or(str::is_empty) {
            return 0;
        }
        requested.or(obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64)).unwrap_or(30)
    }
    /// Its kubelet confirms with a delete of grace period 0.
    fn still_held(&self, obj: &Value, old: &Value) -> bool {
        obj.pointer("/spec/nodeName").is_some() && old.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) > 0
    }
    fn fields(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("spec.nodeName", "/spec/nodeName"),
            ("spec.restartPolicy", "/spec/restartPolicy"),
            ("spec.schedulerName", "/spec/schedulerName"),
            ("spec.serviceAccountName", "/spec/serviceAccountName"),
            ("status.phase", "/status/phase"),
            ("status.podIP", "/status/podIP"),
            ("status.nominatedNodeName", "/status/nominatedNodeName"),
        ]
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
                col("Status", "string", "The aggregate status of the containers in this pod."),
                col(
                    "Restarts",
                    "string",
                    "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                ),
                AGE,
                wide("IP", "string", "The IP address assigned to the pod"),
                wide("Node", "string", "The name of the node the pod is scheduled onto"),
                wide("Nominated Node", "string", "The name of the node the pod is nominated onto, if any"),
                wide("Readiness Gates", "string", "The readiness gates of the pod"),
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let specs = array_at(obj, "/spec/containers").len();
        let statuses = array_at(obj, "/status/containerStatuses");
        let ready = statuses.iter().filter(|s| s["ready"].as_bool() == Some(true)).count();
        let restarts: i64 = statuses.iter().map(|s| s["restartCount"].as_i64().unwrap_or(0)).sum();
        let mut status = str_at(obj, "/status/reason").or(str_at(obj, "/status/phase")).unwrap_or("").to_string();
        for s in statuses {
            if let Some(reason) = s.pointer("/state/waiting/reason").or(s.pointer("/state/terminated/reason")).and_then(Value::as_str) {
                status = reason.to_string();
            }
        }
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            status = "Terminating".into();
        }
        vec![
            json!(name(obj)),
            json!(format!("{ready}/{specs}")),
            json!(status),
            json!(restarts.to_string()),
            json!(age(obj, now)),
            json!(or_none(obj, "/status/podIP")),
            json!(or_none(obj, "/spec/nodeName")),
            json!(or_none(obj, "/status/nominatedNodeName")),
            json!("<none>"),
        ]
    }
}

pub struct Nodes;
impl Strategy for Nodes {
    fn tracks_generation(&self) -> bool {
        false
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        updates::node(new, old)
    }
    fn fields(&self) -> &'static [(&'static str, &'static str)] {
        &[("spec.unschedulable", "/spec/unschedulable")]
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Status", "string", "The status of the node"),
                col("Roles", "string", "The roles of the node"),
                AGE,
                col("Version", "string", "Kubelet Version reported by the node."),
                wide("Internal-IP", "string", "List of internal IPs."),
                wide("External-IP", "string", "List of external IPs."),
                wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
                wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
                wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let ready = array_at(obj, "/status/conditions").iter().find(|c| c["type"] == "Ready");
        let mut status = match ready.and_then(|c| c["status"].as_str()) {
            Some("True") => "Ready".to_string(),
            Some("False") => "NotReady".to_string(),
            _ => "Unknown".to_string(),
        };
        if obj.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
            status.push_str(",SchedulingDisabled");
        }
        let mut roles: Vec<String> = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|l| l.keys().filter_map(|k| k.strip_prefix("node-role.kubernetes.io/")).map(String::from).collect())
            .unwrap_or_default();
        roles.sort();
        let address = |kind: &str| {
            array_at(obj, "/status/addresses").iter().find(|a| a["type"] == kind).and_then(|a| a["address"].as_str()).unwrap_or("<none>").to_string()
        };
        vec![
            json!(name(obj)),
            json!(status),
            json!(if roles.is_empty() { "<none>".into() } else { roles.join(",") }),
            json!(age(obj, now)),
            json!(str_at(obj, "/status/nodeInfo/kubeletVersion").unwrap_or("")),
            json!(address("InternalIP")),
            json!(address("ExternalIP")),
            json!(or_none(obj, "/status/nodeInfo/osImage")),
            json!(or_none(obj, "/status/nodeInfo/kernelVersion")),
            json!(or_none(obj, "/status/nodeInfo/containerRuntimeVersion")),
        ]
    }
}

pub struct Services;
impl Strategy for Services {
    fn default(&self, obj: &mut Value) {
        default_at(obj, &["spec", "type"], json!("ClusterIP"));
        default_at(obj, &["spec", "sessionAffinity"], json!("None"));
        default_at(obj, &["spec", "internalTrafficPolicy"], json!("Cluster"));
        if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ports {
                default_at(p, &["protocol"], json!("TCP"));
                if let Some(port) = p.get("port").cloned() {
                    default_at(p, &["targetPort"], port);
                }
            }
        }
        default_at(obj, &["status", "loadBalancer"], json!({}));
    }
    fn prepare_update(&self, new: &mut Value, old: &Value) {
        updates::drop_service_type_fields(new, old);
    }
    fn allocates_service_addresses(&self) -> bool {
        true
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let n = name(obj);
        if let Some(why) = dns1123_label(n).filter(|_| !n.is_empty()) {
            causes.push(Cause::invalid("metadata.name", &json!(n), why));
        }
        let kind = obj.pointer("/spec/type").cloned().unwrap_or(json!("ClusterIP"));
        if !matches!(kind.as_str(), Some("ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName")) {
            causes.push(Cause::not_supported("spec.type", &kind, &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]));
        }
        let ports = array_at(obj, "/spec/ports");
        if ports.is_empty() && kind != "ExternalName" && obj.pointer("/spec/clusterIP") != Some(&json!("None")) {
            causes.push(Cause::required("spec.ports"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in ports.iter().enumerate() {
            match p["port"].as_i64() {
                None => causes.push(Cause::required(format!("spec.ports[{i}].port"))),
                Some(n) if !(1..=65535).contains(&n) => {
                    causes.push(Cause::invalid(format!("spec.ports[{i}].port"), &p["port"], "must be between 1 and 65535, inclusive"))
                }
                _ => {}
            }
            let pname = p["name"].as_str().unwrap_or("");
            if ports.len() > 1 && pname.is_empty() {
                causes.push(Cause::required(format!("spec.ports[{i}].name")));
            } else if !pname.is_empty() && !names.insert(pname.to_string()) {
                causes.push(Cause::duplicate(format!("spec.ports[{i}].name"), &json!(pname)));
            }
            validate_protocol(p, &format!("spec.ports[{i}].protocol"), &mut causes);
        }
        causes
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Type", "string", "The type of the service"),
                col("Cluster-IP", "string", "The cluster IP of the service"),
                col("External-IP", "string", "The external IP of the service"),
                col("Port(s)", "string", "The ports of the service"),
                AGE,
                wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let ports: Vec<String> = array_at(obj, "/spec/ports")
            .iter()
            .map(|p| {
                let proto = p["protocol"].as_str().unwrap_or("TCP");
                match p["nodePort"].as_i64() {
                    Some(np) => format!("{}:{np}/{proto}", p["port"]),
                    None => format!("{}/{proto}", p["port"]),
                }
            })
            .collect();
        let external: Vec<&str> = array_at(obj, "/status/loadBalancer/ingress")
            .iter()
            .filter_map(|i| i["ip"].as_str())
            .chain(array_at(obj, "/spec/externalIPs").iter().filter_map(Value::as_str))
            .collect();
        let kind = str_at(obj, "/spec/type").unwrap_or("ClusterIP");
        let external = match (kind, external.is_empty()) {
            ("ExternalName", _) => str_at(obj, "/spec/externalName").unwrap_or("").to_string(),
            ("LoadBalancer", true) => "<pending>".into(),
            (_, true) => "<none>".into(),
            (_, false) => external.join(","),
        };
        vec![
            json!(name(obj)),
            json!(kind),
            json!(or_none(obj, "/spec/clusterIP")),
            json!(external),
            json!(if ports.is_empty() { "<none>".into() } else { ports.join(",") }),
            json!(age(obj, now)),
            json!(map_string(obj, "/spec/selector")),
        ]
    }
}

pub struct Endpoints;
impl Strategy for Endpoints {
    fn columns(&self) -> &'static [Column] {
        const { &[NAME, col("Endpoints", "string", "Endpoints of the service"), AGE] }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let mut list = Vec::new();
        for subset in array_at(obj, "/subsets") {
            let ports = array_at(subset, "/ports");
            for a in array_at(subset, "/addresses") {
                let ip = a["ip"].as_str().unwrap_or("");
                if ports.is_empty() {
                    list.push(ip.to_string());
                }
                for p in ports {
                    list.push(format!("{ip}:{}", p["port"]));
                }
            }
        }
        let shown = match list.len() {
            0 => "<none>".to_string(),
            n if n > 3 => format!("{} + {} more...", list[..3].join(","), n - 3),
            _ => list.join(","),
        };
        vec![json!(name(obj)), json!(shown), json!(age(obj, now))]
    }
}

pub struct ConfigMaps;
impl Strategy for ConfigMaps {
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        updates::immutable_data(new, old, &["data", "binaryData"])
    }
    fn columns(&self) -> &'static [Column] {
        const { &[NAME, col("Data", "string", "Number of data entries"), AGE] }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let count = |p: &str| obj.pointer(p).and_then(Value::as_object).map(|m| m.len()).unwrap_or(0);
        vec![json!(name(obj)), json!(count("/data") + count("/binaryData")), json!(age(obj, now))]
    }
}

pub struct Secrets;
impl Strategy for Secrets {
    fn default(&self, obj: &mut Value) {
        default_at(obj, &["type"], json!("Opaque"));
        // stringData is write-only: merged into data (base64), as
        // upstream's conversion does, and never stored.
        if let Some(Value::Object(strings)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
            use base64::Engine as _;
            if !obj.get("data").is_some_and(Value::is_object) {
                obj["data"] = json!({});
            }
            let data = obj["data"].as_object_mut().expect("set above");
            for (k, v) in strings {
                data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or(""))));
            }
        }
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = updates::immutable_data(new, old, &["data"]);
        updates::immutable(new, old, "/type", "type", &mut causes);
        causes
    }
    fn fields(&self) -> &'static [(&'static str, &'static str)] {
        &[("type", "/type")]
    }
    fn columns(&self) -> &'static [Column] {
        const { &[NAME, col("Type", "string", "The type of the secret"), col("Data", "string", "Number of data entries"), AGE] }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let data = obj.pointer("/data").and_then(Value::as_object).map(|m| m.len()).unwrap_or(0);
        vec![json!(name(obj)), json!(str_at(obj, "/type").unwrap_or("")), json!(data), json!(age(obj, now))]
    }
}

pub struct ServiceAccounts;
impl Strategy for ServiceAccounts {
    fn columns(&self) -> &'static [Column] {
        const { &[NAME, col("Secrets", "string", "Number of secrets"), AGE] }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![json!(name(obj)), json!(array_at(obj, "/secrets").len()), json!(age(obj, now))]
    }
}

pub struct Events;
impl Strategy for Events {
    fn expires(&self) -> bool {
        true
    }
    fn fields(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("involvedObject.kind", "/involvedObject/kind"),
            ("involvedObject.namespace", "/involvedObject/namespace"),
            ("involvedObject.name", "/involvedObject/name"),
            ("involvedObject.uid", "/involvedObject/uid"),
            ("involvedObject.apiVersion", "/involvedObject/apiVersion"),
            ("involvedObject.resourceVersion", "/involvedObject/resourceVersion"),
            ("involvedObject.fieldPath", "/involvedObject/fieldPath"),
            ("reason", "/reason"),
            ("reportingComponent", "/reportingComponent"),
            ("source", "/source/component"),
            ("type", "/type"),
        ]
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                col("Last Seen", "string", "Time when last this event was observed"),
                col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future."),
                col(
                    "Reason",
                    "string",
                    "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
                ),
                col("Object", "string", "The object that this event is about."),
                wide("Subobject", "string", "Path of the object's part the event is about."),
                wide("Source", "string", "The component reporting this event."),
                col("Message", "string", "A human-readable description of the status of this operation."),
                wide("First Seen", "string", "The time at which the event was first recorded."),
                wide("Count", "string", "The number of times this event has occurred."),
                wide("Name", "string", "The name of the event."),
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let since = |p: &str| {
            str_at(obj, p)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| super::human_duration(now.signed_duration_since(t.with_timezone(&Utc)).num_seconds()))
                .unwrap_or_else(|| "<unknown>".into())
        };
        let last = if obj.pointer("/lastTimestamp").is_some_and(|v| !v.is_null()) { since("/lastTimestamp") } else { since("/eventTime") };
        let kind = str_at(obj, "/involvedObject/kind").unwrap_or("").to_lowercase();
        let object = format!("{kind}/{}", str_at(obj, "/involvedObject/name").unwrap_or(""));
        let source = str_at(obj, "/source/component").or(str_at(obj, "/reportingComponent")).unwrap_or("");
        vec![
            json!(last),
            json!(str_at(obj, "/type").unwrap_or("")),
            json!(str_at(obj, "/reason").unwrap_or("")),
            json!(object),
            json!(str_at(obj, "/involvedObject/fieldPath").unwrap_or("")),
            json!(source),
            json!(str_at(obj, "/message").unwrap_or("").trim()),
            json!(since("/firstTimestamp")),
            json!(int_at(obj, "/count").max(1).to_string()),
            json!(name(obj)),
        ]
    }
}

pub struct ComponentStatuses;
impl Strategy for ComponentStatuses {
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Status", "string", "Status of the component conditions"),
                col("Message", "string", "Message of the component conditions"),
                col("Error", "string", "Error of the component conditions"),
            ]
        }
    }
    fn cells(&self, obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
        let healthy = array_at(obj, "/conditions").iter().find(|c| c["type"] == "Healthy");
        let status = match healthy.and_then(|c| c["status"].as_str()) {
            Some("True") => "Healthy",
            Some("False") => "Unhealthy",
            _ => "Unknown",
        };
        let field = |k: &str| healthy.and_then(|c| c[k].as_str()).unwrap_or("").to_string();
        vec![json!(name(obj)), json!(status), json!(field("message")), json!(field("error"))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(spec: Value) -> Vec<String> {
        let mut causes = vec![];
        validate_pod_spec(Some(&spec), "spec", &mut causes);
        causes.iter().map(Cause::line).collect()
    }

    #[test]
    fn only_init_containers_have_a_restart_policy_and_only_always() {
        let sidecar = json!({"containers": [{"name": "app", "image": "b"}],
            "initContainers": [{"name": "proxy", "image": "b", "restartPolicy": "Always", "readinessProbe": {"tcpSocket": {"port": 80}}}]});
        assert!(lines(sidecar).is_empty());
        let bad = json!({"containers": [{"name": "app", "image": "b", "restartPolicy": "Always"}],
            "initContainers": [{"name": "once", "image": "b", "restartPolicy": "OnFailure"},
                               {"name": "setup", "image": "b", "livenessProbe": {"tcpSocket": {"port": 80}}, "lifecycle": {}}]});
        assert_eq!(
            lines(bad),
            [
                "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers",
                "spec.initContainers[0].restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"",
                "spec.initContainers[1].lifecycle: Forbidden: may not be set for init containers without restartPolicy=Always",
                "spec.initContainers[1].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
            ]
        );
    }
}
