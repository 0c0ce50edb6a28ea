//! kubelab's scheduler: watches Nodes and Pods (and the claims, volumes and
//! classes pods' volumes need) through the apiserver and
//! binds each pending pod to a node, with upstream kube-scheduler's
//! filters, scores, messages and queue as the specification.
//!
//! One loop owns the state (the cache of nodes and their pods, the queue of
//! pending pods): watch events and failed bindings come to it through
//! channels, and it decides one pod at a time, as upstream's scheduleOne.
//! Writes to the API (bindings, conditions, events) run beside it.

pub mod bind;
pub mod cache;
pub mod filters;
pub mod labels;
pub mod messages;
pub mod model;
pub mod queue;
pub mod schedule;
pub mod scores;
pub mod volumes;
pub mod watch;

use anyhow::Result;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::bind::{BindFailed, Writer};
use crate::cache::Cache;
use crate::model::{PodInfo, SharedPod};
use crate::queue::Queue;
use crate::schedule::{Decision, Scheduler};
use crate::watch::Change;

/// The scheduler's settings, from its flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `spec.schedulerName` whose pods this scheduler places.
    pub scheduler_name: String,
    /// Bindings and status writes in flight at once.
    pub parallel_writes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { scheduler_name: model::DEFAULT_SCHEDULER.into(), parallel_writes: 64 }
    }
}

/// The condition reason of a pod no node fits, and of one whose binding failed.
const REASON_UNSCHEDULABLE: &str = "Unschedulable";
const REASON_SCHEDULER_ERROR: &str = "SchedulerError";

/// Everything the loop owns.
struct State {
    settings: Settings,
    cache: Cache,
    queue: Queue,
    scheduler: Scheduler,
    writer: Writer,
    nodes_synced: bool,
    pods_synced: bool,
    /// Which of the claims, volumes and classes have been listed.
    volume_lists: [bool; 3],
}

impl State {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Node(info) => {
                if self.cache.set_node(info) {
                    self.queue.retry_waiting();
                }
            }
            Change::NodeGone(name) => self.cache.remove_node(&name),
            Change::Nodes(nodes) => {
                self.cache.replace_nodes(nodes);
                self.nodes_synced = true;
                self.queue.retry_waiting();
            }
            Change::Pod(pod) => self.pod(*pod),
            Change::PodGone(key) => {
                self.queue.remove(&key);
                if self.cache.remove_pod(&key).is_some() {
                    // Its resources, ports and anti-affinity are free.
                    self.queue.retry_waiting();
                }
            }
            Change::Pods(pods) => {
                let listed: std::collections::HashSet<String> = pods.iter().map(|p| p.key()).collect();
                for key in self.queue.keys() {
                    if !listed.contains(&key) {
                        self.queue.remove(&key);
                    }
                }
                let (bound, pending): (Vec<PodInfo>, Vec<PodInfo>) = pods.into_iter().partition(|p| p.node_name.is_some());
                self.cache.replace_pods(bound.into_iter().map(SharedPod::new).collect());
                for pod in pending {
                    self.pod(pod);
                }
                self.pods_synced = true;
                self.queue.retry_waiting();
            }
            // Pods waiting for a claim, a bound volume or a class may fit now.
            Change::Claim(claim) => {
                self.cache.volumes.set_claim(claim);
                self.queue.retry_waiting();
            }
            Change::ClaimGone(key) => self.cache.volumes.remove_claim(&key),
            Change::Claims(claims) => {
                self.cache.volumes.replace_claims(claims);
                self.volume_lists[0] = true;
                self.queue.retry_waiting();
            }
            Change::Volume(volume) => {
                self.cache.volumes.set_volume(volume);
                self.queue.retry_waiting();
            }
            Change::VolumeGone(name) => self.cache.volumes.remove_volume(&name),
            Change::Volumes(volumes) => {
                self.cache.volumes.replace_volumes(volumes);
                self.volume_lists[1] = true;
                self.queue.retry_waiting();
            }
            Change::Class(class) => {
                self.cache.volumes.set_class(class);
                self.queue.retry_waiting();
            }
            Change::ClassGone(name) => self.cache.volumes.remove_class(&name),
            Change::Classes(classes) => {
                self.cache.volumes.replace_classes(classes);
                self.volume_lists[2] = true;
                self.queue.retry_waiting();
            }
        }
    }

    fn pod(&mut self, pod: PodInfo) {
        let key = pod.key();
        if pod.node_name.is_some() {
            self.queue.remove(&key);
            self.cache.set_bound_pod(SharedPod::new(pod));
        } else if self.cache.is_assumed(&key) {
            // Its binding is in flight; the watch has not seen it yet.
        } else if pod.wants_scheduling(&self.settings.scheduler_name) {
            self.queue.add_or_update(pod);
        } else {
            self.queue.remove(&key);
        }
    }

    fn bind_failed(&mut self, failed: BindFailed) {
        let key = failed.pod.key();
        if !self.cache.is_assumed(&key) {
            // Deleted while its binding was in flight, or the watch already
            // shows it bound (by another writer): nothing to retry.
            return;
        }
        self.cache.forget(&key);
        let message = format!("Binding rejected: {}", failed.error);
        let write = self.queue.failed(failed.pod.clone(), &message, Instant::now());
        self.writer.unschedulable(&failed.pod, REASON_SCHEDULER_ERROR, message, write);
    }

    /// Decides the next pod in the queue, if any is due.
    fn schedule_next(&mut self) -> bool {
        if !(self.nodes_synced && self.pods_synced && self.volume_lists.iter().all(|l| *l)) {
            return false;
        }
        self.queue.release_due(Instant::now());
        let Some(pod) = self.queue.pop() else { return false };
        self.cache.refresh_order();
        match self.scheduler.decide(&pod, &self.cache) {
            Decision::Bind(node) => {
                // Claims that wait for their first consumer learn its node
                // before the pod is bound (upstream's PreBind).
                let to_select = self.cache.volumes.needs(&pod.namespace, &pod.claims).map(|n| n.to_select).unwrap_or_default();
                self.cache.assume(&pod, &node);
                self.queue.done(&pod.key());
                self.writer.bind(pod, node, to_select);
            }
            Decision::Unschedulable(message) => {
                tracing::debug!("{} is unschedulable: {message}", pod.key());
                let write = self.queue.failed(pod.clone(), &message, Instant::now());
                self.writer.unschedulable(&pod, REASON_UNSCHEDULABLE, message, write);
            }
        }
        true
    }
}

/// Runs the scheduler with `client` until its watches end (they retry, so
/// only when the process stops).
pub async fn run(client: kube::Client, settings: Settings) -> Result<()> {
    let (changes_tx, mut changes) = mpsc::channel::<Change>(4096);
    let (failed_tx, mut failed) = mpsc::unbounded_channel::<BindFailed>();
    let writer = Writer::new(client.clone(), settings.parallel_writes, failed_tx);
    tokio::spawn(watch::nodes(client.clone(), changes_tx.clone()));
    tokio::spawn(watch::claims(client.clone(), changes_tx.clone()));
    tokio::spawn(watch::volumes(client.clone(), changes_tx.clone()));
    tokio::spawn(watch::classes(client.clone(), changes_tx.clone()));
    tokio::spawn(watch::pods(client, changes_tx));
    let mut state = State {
        settings,
        cache: Cache::default(),
        queue: Queue::default(),
        scheduler: Scheduler::default(),
        writer,
        nodes_synced: false,
        pods_synced: false,
        volume_lists: [false; 3],
    };
    tracing::info!("scheduling pods of scheduler {:?}", state.settings.scheduler_name);
    loop {
        // Take in everything that has happened before the next decision,
        // so it is made on the freshest picture.
        loop {
            match changes.try_recv() {
                Ok(change) => state.apply(change),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => anyhow::bail!("the watches stopped"),
            }
        }
        while let Ok(f) = failed.try_recv() {
            state.bind_failed(f);
        }
        if state.schedule_next() {
            // Let the watches and writes on this thread run between decisions.
            tokio::task::yield_now().await;
            continue;
        }
        let due = state.queue.next_due();
        tokio::select! {
            change = changes.recv() => match change {
                Some(change) => state.apply(change),
                None => anyhow::bail!("the watches stopped"),
            },
            Some(f) = failed.recv() => state.bind_failed(f),
            _ = async { tokio::time::sleep_until(due.expect("guarded")).await }, if due.is_some() => {}
        }
    }
}
