//! A Service's backends: the pods its selector picks that may receive
//! traffic, each with its address, its readiness, and the Service's ports
//! resolved against the pod (a named targetPort is looked up in the pod's
//! containers). The endpoints and endpointslice controllers write the same
//! backends in their two shapes.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use component_base::label_selector::Selector;

use crate::pods;

/// One port of a backend: the Service port's name and protocol, and the
/// port on the pod that traffic goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendPort {
    pub name: Option<String>,
    pub port: i32,
    pub protocol: String,
    pub app_protocol: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub pod: Pod,
    pub ip: String,
    /// Ready to receive new traffic (or the Service publishes pods that
    /// are not ready).
    pub ready: bool,
    /// Ready by its own condition, even while terminating.
    pub serving: bool,
    pub terminating: bool,
    pub ports: Vec<BackendPort>,
}

/// Services without a selector have endpoints their users write (the
/// `kubernetes` Service's are the apiserver's); ExternalName Services
/// have none.
pub fn managed(service: &Service) -> bool {
    let spec = service.spec.as_ref();
    spec.and_then(|s| s.selector.as_ref()).is_some() && spec.and_then(|s| s.type_.as_deref()) != Some("ExternalName")
}

pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn selector(service: &Service) -> Selector {
    Selector::from_set(service.spec.as_ref().and_then(|s| s.selector.as_ref()))
}

/// The pod port a Service port sends to, if the pod has it.
fn target_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                .map(|p| p.container_port)
        }
    }
}

/// The backends of `service` among `pods` (upstream's
/// ShouldPodBeInEndpoints: not finished, has an address; terminating pods
/// only for the slice controller, which marks them).
pub fn backends(service: &Service, pods: &[std::sync::Arc<Pod>], include_terminating: bool) -> Vec<Backend> {
    let namespace = service.namespace();
    let selector = selector(service);
    let publish_not_ready = service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses) == Some(true);
    let service_ports = service.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for pod in pods.iter().filter(|p| p.namespace() == namespace && selector.matches(p.metadata.labels.as_ref())) {
        let status = pod.status.as_ref();
        let Some(ip) = status.and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()) else { continue };
        if matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed")) {
            continue;
        }
        let terminating = pod.metadata.deletion_timestamp.is_some();
        if terminating && !include_terminating && !publish_not_ready {
            continue;
        }
        let serving = pods::is_ready(pod);
        let ports = service_ports
            .iter()
            .filter_map(|p| {
                Some(BackendPort {
                    name: p.name.clone(),
                    port: target_port(p, pod)?,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    app_protocol: p.app_protocol.clone(),
                })
            })
            .collect();
        out.push(Backend {
            pod: (**pod).clone(),
            ip,
            ready: publish_not_ready || (serving && !terminating),
            serving: publish_not_ready || serving,
            terminating,
            ports,
        });
    }
    out.sort_by(|a, b| a.ip.cmp(&b.ip).then_with(|| a.pod.name_any().cmp(&b.pod.name_any())));
    out
}

/// Maps pod changes to the Services they concern: those whose selector
/// matches the pod now, and those that matched it before (a pod whose
/// labels changed has left them).
#[derive(Default)]
pub struct PodToServices {
    last: Mutex<HashMap<ObjectRef<Pod>, HashSet<ObjectRef<Service>>>>,
}

impl PodToServices {
    /// `pods` is the cache the watch has already applied the change to: a
    /// pod no longer in it was deleted.
    pub fn map(&self, services: &Store<Service>, pods: &Store<Pod>, pod: &Pod) -> Vec<ObjectRef<Service>> {
        let namespace = pod.namespace();
        let now: HashSet<ObjectRef<Service>> = services
            .state()
            .iter()
            .filter(|s| s.namespace() == namespace && managed(s) && selector(s).matches(pod.metadata.labels.as_ref()))
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect();
        let key = ObjectRef::from_obj(pod);
        let mut last = self.last.lock().expect("not poisoned");
        let before = if pods.get(&key).is_none() { last.remove(&key) } else { last.insert(key, now.clone()) };
        now.union(&before.unwrap_or_default()).cloned().collect()
    }
}
