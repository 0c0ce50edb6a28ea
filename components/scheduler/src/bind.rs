//! What the scheduler writes: the chosen node on claims that wait for
//! their first consumer, the binding (`pods/binding`, upstream's
//! DefaultBinder), the `Scheduled` event, and for a pod no node fits its
//! PodScheduled=False condition and `FailedScheduling` event. Writes run
//! beside the scheduling loop, so the next decision never waits for one;
//! a bounded number of bindings are in flight at once, and conditions are
//! written in the order they were decided.

use std::sync::Arc;

use component_base::events::Recorder;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::{mpsc, Semaphore};

use crate::model::PodInfo;

/// How long a pod waits for its claims to be bound (upstream's `bindTimeoutSeconds`).
const VOLUME_BIND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
/// The annotation that tells a claim's provisioner the node its first pod goes to.
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// The component name events carry (upstream's default profile name).
pub const COMPONENT: &str = "default-scheduler";

/// A binding that failed: the pod comes back to the queue.
#[derive(Debug)]
pub struct BindFailed {
    pub pod: PodInfo,
    pub error: String,
}

#[derive(Clone)]
pub struct Writer {
    client: kube::Client,
    recorder: Recorder,
    permits: Arc<Semaphore>,
    failed: mpsc::UnboundedSender<BindFailed>,
    conditions: mpsc::UnboundedSender<Condition>,
}

/// A PodScheduled=False condition to write.
struct Condition {
    namespace: String,
    name: String,
    reason: &'static str,
    message: String,
}

/// Writes conditions one after the other, in the order they were decided,
/// so a pod's older message never lands after its newer one.
async fn write_conditions(client: kube::Client, mut conditions: mpsc::UnboundedReceiver<Condition>) {
    while let Some(Condition { namespace, name, reason, message }) = conditions.recv().await {
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
        // Strategic merge: conditions merge by type, the others stay.
        let patch = serde_json::json!({"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": reason, "message": message,
            "lastProbeTime": null, "lastTransitionTime": now,
        }]}});
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        match pods.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => {}
            // Deleted meanwhile: nothing to say.
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(e) => tracing::warn!("could not write the PodScheduled condition of {namespace}/{name}: {e}"),
        }
    }
}

/// Upstream's PreBind of VolumeBinding: each claim gets the chosen node in
/// its `volume.kubernetes.io/selected-node` annotation, for its
/// provisioner; the pod is bound once they all are (upstream waits up to
/// its bind timeout, 600 s).
async fn bind_volumes(client: &kube::Client, namespace: &str, claims: &[String], node: &str) -> Result<(), String> {
    if claims.is_empty() {
        return Ok(());
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({"metadata": {"annotations": {SELECTED_NODE: node}}});
    for claim in claims {
        api.patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("binding volumes: selecting node for claim {claim:?}: {e}"))?;
    }
    for claim in claims {
        let bound = |c: Option<&PersistentVolumeClaim>| c.and_then(|c| c.spec.as_ref()).and_then(|s| s.volume_name.as_deref()).is_some_and(|v| !v.is_empty());
        match tokio::time::timeout(VOLUME_BIND_TIMEOUT, kube::runtime::wait::await_condition(api.clone(), claim, bound)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("binding volumes: watching claim {claim:?}: {e}")),
            Err(_) => return Err(format!("binding volumes: claim {claim:?} was not bound within {VOLUME_BIND_TIMEOUT:?}")),
        }
    }
    Ok(())
}

fn reference(pod: &PodInfo) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(pod.namespace.clone()),
        name: Some(pod.name.clone()),
        uid: Some(pod.uid.clone()).filter(|u| !u.is_empty()),
        ..Default::default()
    }
}

impl Writer {
    /// A writer allowing `parallel` writes in flight; failed bindings are
    /// sent to `failed`.
    pub fn new(client: kube::Client, parallel: usize, failed: mpsc::UnboundedSender<BindFailed>) -> Writer {
        let recorder = Recorder::new(client.clone(), COMPONENT, None);
        let (conditions, to_write) = mpsc::unbounded_channel();
        tokio::spawn(write_conditions(client.clone(), to_write));
        Writer { client, recorder, permits: Arc::new(Semaphore::new(parallel.max(1))), failed, conditions }
    }

    /// Binds `pod` to `node` in the background, once the claims in
    /// `to_select` (waiting for their first consumer) are bound on it.
    pub fn bind(&self, pod: PodInfo, node: String, to_select: Vec<String>) {
        let writer = self.clone();
        tokio::spawn(async move {
            let _permit = writer.permits.acquire().await.expect("the semaphore is never closed");
            if let Err(error) = bind_volumes(&writer.client, &pod.namespace, &to_select, &node).await {
                tracing::warn!("binding the volumes of {}/{} on {node} failed: {error}", pod.namespace, pod.name);
                let _ = writer.failed.send(BindFailed { pod, error });
                return;
            }
            let binding = Binding {
                metadata: ObjectMeta { name: Some(pod.name.clone()), namespace: Some(pod.namespace.clone()), uid: Some(pod.uid.clone()), ..Default::default() },
                target: ObjectReference { api_version: Some("v1".into()), kind: Some("Node".into()), name: Some(node.clone()), ..Default::default() },
            };
            let pods: Api<Pod> = Api::namespaced(writer.client.clone(), &pod.namespace);
            match pods.create_subresource::<Binding, serde_json::Value>("binding", &pod.name, &PostParams::default(), &binding).await {
                Ok(_) => {
                    tracing::debug!("bound {}/{} to {node}", pod.namespace, pod.name);
                    writer.recorder.normal(reference(&pod), "Scheduled", format!("Successfully assigned {}/{} to {node}", pod.namespace, pod.name));
                }
                Err(e) => {
                    tracing::warn!("binding {}/{} to {node} failed: {e}", pod.namespace, pod.name);
                    let _ = writer.failed.send(BindFailed { pod, error: e.to_string() });
                }
            }
        });
    }

    /// Records that `pod` could not be scheduled: the event every time (the
    /// recorder counts repeats), the condition when `write_condition`
    /// (its message changed).
    pub fn unschedulable(&self, pod: &PodInfo, reason: &'static str, message: String, write_condition: bool) {
        self.recorder.warning(reference(pod), "FailedScheduling", message.clone());
        if !write_condition {
            return;
        }
        let condition = Condition { namespace: pod.namespace.clone(), name: pod.name.clone(), reason, message };
        let _ = self.conditions.send(condition);
    }
}
