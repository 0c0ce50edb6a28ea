//! The endpoints controller, as upstream's: for every Service with a
//! selector, an Endpoints object of the same name listing its pods'
//! addresses, ready ones apart from not-ready ones, grouped into subsets
//! of addresses that share the same ports. Removed with the Service.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use crate::service_backends::{self, Backend, BackendPort, PodToServices};

/// Upstream's `--concurrent-endpoint-syncs` default.
pub const DEFAULT_CONCURRENCY: u16 = 5;

/// The label every Endpoints object of a headless Service carries.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// Endpoints hold at most this many addresses; beyond, they are cut and
/// annotated (upstream's maxCapacity; EndpointSlices hold them all).
const MAX_ADDRESSES: usize = 1000;
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

struct Context {
    client: Client,
    pods: Store<Pod>,
}

/// Runs the endpoints controller until its watches end.
pub async fn run(client: Client, concurrency: u16) {
    let (pods, pod_writer) = reflector::store::<Pod>();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(pod_writer).touched_objects();
    let endpoint_events = watcher(Api::<Endpoints>::all(client.clone()), watcher::Config::default()).default_backoff().touched_objects();
    // The Controller is woken by Services added and changed; deletions
    // come from a watch of their own, so the Endpoints go with them.
    let service_deletions = watcher(Api::<Service>::all(client.clone()), watcher::Config::default()).default_backoff().try_filter_map(|event| async move {
        Ok(match event {
            watcher::Event::Delete(service) => Some(service),
            _ => None,
        })
    });
    let controller = Controller::new(Api::<Service>::all(client.clone()), watcher::Config::default());
    let services = controller.store();
    let pods_for_map = pods.clone();
    let pod_map = PodToServices::default();
    let context = Arc::new(Context { client: client.clone(), pods });
    controller
        .with_config(Config::default().concurrency(concurrency))
        .watches_stream(pod_events, move |pod: Pod| pod_map.map(&services, &pods_for_map, &pod))
        // Endpoints changed or deleted by someone else are put back.
        .watches_stream(service_deletions, |service: Service| Some(ObjectRef::from_obj(&service)))
        .watches_stream(endpoint_events, |endpoints: Endpoints| {
            Some(ObjectRef::<Service>::new(&endpoints.name_any()).within(&endpoints.namespace().unwrap_or_default()))
        })
        .run(reconcile, |_, error, _| error_policy(error), context)
        .for_each(|result| {
            let client = client.clone();
            async move {
                match result {
                    Ok(_) => {}
                    // The Service is gone: so are its endpoints.
                    Err(kube::runtime::controller::Error::ObjectNotFound(service)) => {
                        remove(&client, &service.name, service.namespace.as_deref().unwrap_or_default()).await
                    }
                    Err(e) => tracing::warn!("endpoints controller: {e}"),
                }
            }
        })
        .await;
}

fn error_policy(error: &kube::Error) -> Action {
    tracing::warn!("endpoints sync failed: {error}");
    Action::requeue(Duration::from_secs(1))
}

async fn remove(client: &Client, name: &str, namespace: &str) {
    // A Service of that name may exist again (or never have had a selector).
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    if services.get_opt(name).await.ok().flatten().is_some() {
        return;
    }
    let api: Api<Endpoints> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_not_found() => {}
        Err(e) => tracing::warn!("deleting endpoints {namespace}/{name}: {e}"),
    }
}

async fn reconcile(service: Arc<Service>, context: Arc<Context>) -> Result<Action, kube::Error> {
    // As upstream's controllers start their workers only once their
    // informers have synced: a decision made on a half-listed cache (no
    // pods yet, after a restart) would create or drop what already exists.
    let _ = context.pods.wait_until_ready().await;
    if !service_backends::managed(&service) {
        return Ok(Action::await_change());
    }
    let namespace = service.namespace().unwrap_or_default();
    let backends = service_backends::backends(&service, &context.pods.state(), false);
    let (subsets, truncated) = subsets(&service, &backends);
    let mut labels = service.labels().clone();
    if service_backends::is_headless(&service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    let api: Api<Endpoints> = Api::namespaced(context.client.clone(), &namespace);
    let current = api.get_opt(&service.name_any()).await?;
    let mut annotations = current.as_ref().and_then(|c| c.metadata.annotations.clone()).unwrap_or_default();
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    let subsets = (!subsets.is_empty()).then_some(subsets);
    match current {
        Some(mut current) => {
            let same = current.subsets == subsets
                && current.metadata.labels.clone().unwrap_or_default() == labels
                && current.metadata.annotations.clone().unwrap_or_default() == annotations;
            if !same {
                current.subsets = subsets;
                current.metadata.labels = Some(labels);
                current.metadata.annotations = Some(annotations);
                api.replace(&service.name_any(), &PostParams::default(), &current).await?;
            }
        }
        None => {
            let endpoints = Endpoints {
                metadata: ObjectMeta {
                    name: Some(service.name_any()),
                    namespace: Some(namespace),
                    labels: Some(labels),
                    annotations: (!annotations.is_empty()).then_some(annotations),
                    ..Default::default()
                },
                subsets,
            };
            match api.create(&PostParams::default(), &endpoints).await {
                Ok(_) => {}
                // The namespace is being emptied.
                Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("being terminated") => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Action::await_change())
}

fn address(service: &Service, backend: &Backend) -> EndpointAddress {
    let pod = &backend.pod;
    let spec = pod.spec.as_ref();
    // A pod names itself in its Service's DNS only with both set.
    let hostname = spec.and_then(|s| s.hostname.clone()).filter(|_| spec.and_then(|s| s.subdomain.as_deref()) == service.metadata.name.as_deref());
    EndpointAddress {
        ip: backend.ip.clone(),
        hostname,
        node_name: spec.and_then(|s| s.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.namespace(),
            name: Some(pod.name_any()),
            uid: pod.uid(),
            ..Default::default()
        }),
    }
}

fn endpoint_port(port: &BackendPort) -> EndpointPort {
    EndpointPort { name: port.name.clone(), port: port.port, protocol: Some(port.protocol.clone()), app_protocol: port.app_protocol.clone() }
}

/// Subsets of addresses that share a port set (upstream's RepackSubsets),
/// each with ready and not-ready addresses; whether addresses were cut.
fn subsets(service: &Service, backends: &[Backend]) -> (Vec<EndpointSubset>, bool) {
    let headless_without_ports = service_backends::is_headless(service) && service.spec.as_ref().and_then(|s| s.ports.as_ref()).is_none_or(|p| p.is_empty());
    let mut groups: BTreeMap<Vec<BackendPort>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> = BTreeMap::new();
    let mut total = 0;
    let mut truncated = false;
    for backend in backends {
        if backend.ports.is_empty() && !headless_without_ports {
            continue;
        }
        if total == MAX_ADDRESSES {
            truncated = true;
            break;
        }
        total += 1;
        let mut ports = backend.ports.clone();
        ports.sort();
        let group = groups.entry(ports).or_default();
        if backend.ready {
            group.0.push(address(service, backend));
        } else {
            group.1.push(address(service, backend));
        }
    }
    let subsets = groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| ports.iter().map(endpoint_port).collect()),
        })
        .collect();
    (subsets, truncated)
}
