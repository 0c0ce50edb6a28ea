//! The taint eviction controller, as upstream's: a pod on a node with a
//! NoExecute taint it does not tolerate is deleted at once; one that
//! tolerates it for `tolerationSeconds` is deleted that long after the
//! taint was added; one that tolerates it without a limit stays. Its
//! owner then makes a replacement, which the scheduler puts elsewhere.

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use component_base::events::{self, Recorder};
use component_base::taints::tolerating;

/// How often tainted nodes' pods are looked at (upstream schedules each
/// eviction on a timer; a second is as fine as a test can tell).
const PERIOD: Duration = Duration::from_secs(1);

pub async fn run(client: Client) {
    let (nodes, writer) = reflector::store::<Node>();
    let node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(writer).for_each(|_| async {});
    let recorder = Recorder::new(client.clone(), "taint-eviction-controller", None);
    tokio::select! {
        _ = node_events => {}
        _ = evict(client, nodes, recorder) => {}
    }
}

async fn evict(client: Client, nodes: Store<Node>, recorder: Recorder) {
    let _ = nodes.wait_until_ready().await;
    let mut ticker = tokio::time::interval(PERIOD);
    loop {
        ticker.tick().await;
        for node in nodes.state().iter() {
            let taints: Vec<Taint> =
                node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default().into_iter().filter(|t| t.effect == "NoExecute").collect();
            if taints.is_empty() {
                continue;
            }
            if let Err(e) = evict_from(&client, &node.name_any(), &taints, &recorder).await {
                tracing::warn!(node = %node.name_any(), "taint eviction failed: {e}");
            }
        }
    }
}

/// When a pod must go, given the node's NoExecute taints: now, at a
/// time, or never.
fn deadline(pod: &Pod, taints: &[Taint]) -> Option<Timestamp> {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let mut at: Option<Timestamp> = None;
    for taint in taints {
        let matching = tolerating(&tolerations, taint);
        if matching.is_empty() {
            return Some(Timestamp::UNIX_EPOCH);
        }
        // The shortest limit of the tolerations that match; none: forever.
        let Some(seconds) = matching.iter().filter_map(|t| t.toleration_seconds).min() else { continue };
        let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or_else(Timestamp::now);
        let when = added.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds.max(0))).unwrap_or(added);
        at = Some(at.map_or(when, |a| a.min(when)));
    }
    at
}

async fn evict_from(client: &Client, node: &str, taints: &[Taint], recorder: &Recorder) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::all(client.clone());
    let now = Timestamp::now();
    for pod in pods.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))).await?.items {
        if pod.metadata.deletion_timestamp.is_some() || deadline(&pod, taints).is_none_or(|at| at > now) {
            continue;
        }
        let namespace = pod.namespace().unwrap_or_default();
        recorder.normal(events::reference(&pod), "TaintManagerEviction", format!("Marking for deletion Pod {namespace}/{}", pod.name_any()));
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        match api.delete(&pod.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, Toleration};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(tolerations: Vec<Toleration>) -> Pod {
        Pod { spec: Some(PodSpec { tolerations: Some(tolerations), ..Default::default() }), ..Default::default() }
    }

    #[test]
    fn untolerated_goes_now_limited_goes_later_unlimited_stays() {
        let added = Timestamp::from_second(1000).unwrap();
        let taint = Taint { key: "node.kubernetes.io/unreachable".into(), effect: "NoExecute".into(), value: None, time_added: Some(Time(added)) };
        let tolerate = |seconds| Toleration {
            key: Some(taint.key.clone()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            value: None,
        };
        assert_eq!(deadline(&pod(vec![]), std::slice::from_ref(&taint)), Some(Timestamp::UNIX_EPOCH));
        assert_eq!(deadline(&pod(vec![tolerate(Some(300))]), std::slice::from_ref(&taint)), Some(Timestamp::from_second(1300).unwrap()));
        assert_eq!(deadline(&pod(vec![tolerate(None)]), std::slice::from_ref(&taint)), None);
    }
}
