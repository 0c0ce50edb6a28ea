//! The endpointslice controller, as upstream's: for every Service with a
//! selector, EndpointSlices (owned by the Service, labelled with its name)
//! holding its pods, one group of slices per port set and at most 100
//! endpoints a slice, each endpoint with its ready, serving and
//! terminating conditions. A Service without pods keeps one empty slice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use crate::endpoints::HEADLESS_LABEL;
use crate::expectations::Expectations;
use crate::ownership::controller_reference;
use crate::service_backends::{self, Backend, BackendPort, PodToServices};

/// Upstream's `--concurrent-service-endpoint-syncs` default.
pub const DEFAULT_CONCURRENCY: u16 = 5;
/// Upstream's `--max-endpoints-per-slice` default.
const MAX_PER_SLICE: usize = 100;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

struct Context {
    client: Client,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    /// Slices created and not yet seen in the watch, per Service: until
    /// they are, the cache would make the sync create them again.
    expectations: Arc<Expectations>,
}

fn key_of(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Counts the creations the watch shows.
fn observe(expectations: &Expectations, seen: &Store<EndpointSlice>, event: &watcher::Event<EndpointSlice>) {
    if let watcher::Event::Apply(slice) | watcher::Event::InitApply(slice) = event {
        if let Some(service) = slice.labels().get(SERVICE_NAME_LABEL) {
            if seen.get(&ObjectRef::from_obj(slice)).is_none() {
                expectations.creation_observed(&key_of(&slice.namespace().unwrap_or_default(), service));
            }
        }
    }
}

/// Runs the endpointslice controller until its watches end.
pub async fn run(client: Client, concurrency: u16) {
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(pod_writer).touched_objects();
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let expectations = Arc::new(Expectations::default());
    let (observed, seen) = (expectations.clone(), slices.clone());
    let slice_events = watcher(Api::<EndpointSlice>::all(client.clone()), managed)
        .default_backoff()
        .map_ok(move |event| {
            observe(&observed, &seen, &event);
            event
        })
        .reflect(slice_writer)
        .touched_objects();
    let controller = Controller::new(Api::<Service>::all(client.clone()), watcher::Config::default());
    let services = controller.store();
    let pods_for_map = pods.clone();
    let pod_map = PodToServices::default();
    let context = Arc::new(Context { client, pods, slices, expectations });
    controller
        .with_config(Config::default().concurrency(concurrency))
        .watches_stream(pod_events, move |pod: Pod| pod_map.map(&services, &pods_for_map, &pod))
        .watches_stream(slice_events, |slice: EndpointSlice| {
            slice.labels().get(SERVICE_NAME_LABEL).map(|name| ObjectRef::<Service>::new(name).within(&slice.namespace().unwrap_or_default()))
        })
        .run(reconcile, |_, error, _| error_policy(error), context)
        .for_each(|result| async move {
            match result {
                // A deleted Service's slices go with it (the garbage
                // collector follows their owner reference).
                Ok(_) | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!("endpointslice controller: {e}"),
            }
        })
        .await;
}

fn error_policy(error: &kube::Error) -> Action {
    tracing::warn!("endpointslice sync failed: {error}");
    Action::requeue(Duration::from_secs(1))
}

fn endpoint(backend: &Backend) -> Endpoint {
    let pod = &backend.pod;
    let spec = pod.spec.as_ref();
    Endpoint {
        addresses: vec![backend.ip.clone()],
        conditions: Some(EndpointConditions { ready: Some(backend.ready), serving: Some(backend.serving), terminating: Some(backend.terminating) }),
        hostname: spec.and_then(|s| s.hostname.clone()),
        node_name: spec.and_then(|s| s.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.namespace(),
            name: Some(pod.name_any()),
            uid: pod.uid(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn slice_port(port: &BackendPort) -> EndpointPort {
    EndpointPort {
        name: Some(port.name.clone().unwrap_or_default()),
        port: Some(port.port),
        protocol: Some(port.protocol.clone()),
        app_protocol: port.app_protocol.clone(),
    }
}

fn ports_of(slice: &EndpointSlice) -> Vec<EndpointPort> {
    slice.ports.clone().unwrap_or_default()
}

async fn reconcile(service: Arc<Service>, context: Arc<Context>) -> Result<Action, kube::Error> {
    // As upstream's controllers start their workers only once their
    // informers have synced: a decision made on a half-listed cache (no
    // pods yet, after a restart) would create or drop what already exists.
    let _ = tokio::join!(context.pods.wait_until_ready(), context.slices.wait_until_ready());
    if !service_backends::managed(&service) {
        return Ok(Action::await_change());
    }
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let key = key_of(&namespace, &name);
    if !context.expectations.satisfied(&key) {
        // Our last creations are not in the cache yet; their events will
        // bring this Service back.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // Desired: endpoints grouped by their port set.
    let mut groups: BTreeMap<Vec<BackendPort>, Vec<Endpoint>> = BTreeMap::new();
    for backend in service_backends::backends(&service, &context.pods.state(), true) {
        let mut ports = backend.ports.clone();
        ports.sort();
        groups.entry(ports).or_default().push(endpoint(&backend));
    }
    if groups.is_empty() {
        // The placeholder: a Service without endpoints still has a slice.
        groups.insert(Vec::new(), Vec::new());
    }
    let mut labels = service.labels().clone();
    labels.retain(|k, _| k != SERVICE_NAME_LABEL && k != MANAGED_BY_LABEL);
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    if service_backends::is_headless(&service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    let mut existing: Vec<EndpointSlice> = context
        .slices
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(namespace.as_str()) && s.labels().get(SERVICE_NAME_LABEL) == Some(&name))
        .map(|s| (**s).clone())
        .collect();
    existing.sort_by_key(|s| s.name_any());
    let api: Api<EndpointSlice> = Api::namespaced(context.client.clone(), &namespace);
    for (ports, endpoints) in groups {
        let slice_ports: Vec<EndpointPort> = ports.iter().map(slice_port).collect();
        let mut reusable: Vec<EndpointSlice> = Vec::new();
        existing.retain(|s| {
            if ports_of(s) == slice_ports {
                reusable.push(s.clone());
                false
            } else {
                true
            }
        });
        let chunks: Vec<Vec<Endpoint>> = if endpoints.is_empty() { vec![Vec::new()] } else { endpoints.chunks(MAX_PER_SLICE).map(|c| c.to_vec()).collect() };
        let mut reusable = reusable.into_iter();
        for chunk in chunks {
            match reusable.next() {
                Some(mut slice) => {
                    if slice.endpoints != chunk || slice.metadata.labels.as_ref() != Some(&labels) {
                        slice.endpoints = chunk;
                        slice.metadata.labels = Some(labels.clone());
                        api.replace(&slice.name_any(), &PostParams::default(), &slice).await?;
                    }
                }
                None => {
                    context.expectations.raise_creations(&key, 1);
                    let slice = EndpointSlice {
                        metadata: ObjectMeta {
                            generate_name: Some(format!("{name}-")),
                            namespace: Some(namespace.clone()),
                            labels: Some(labels.clone()),
                            owner_references: Some(vec![controller_reference(service.as_ref())]),
                            ..Default::default()
                        },
                        address_type: "IPv4".into(),
                        endpoints: chunk,
                        ports: (!slice_ports.is_empty()).then(|| slice_ports.clone()),
                    };
                    if let Err(e) = api.create(&PostParams::default(), &slice).await {
                        context.expectations.creation_observed(&key);
                        return match e {
                            kube::Error::Api(s) if s.code == 403 && s.message.contains("being terminated") => Ok(Action::await_change()),
                            e => Err(e),
                        };
                    }
                }
            }
        }
        // Left over in this group: deleted below with the others.
        existing.extend(reusable);
    }
    for stale in existing {
        match api.delete(&stale.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Action::await_change())
}
