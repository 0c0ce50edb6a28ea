//! The garbage collector, as upstream's: deletes objects whose owners are
//! all gone, and carries out the Foreground and Orphan deletion policies
//! that the apiserver starts by adding a finalizer.
//!
//! Monitors (`monitors`) watch every resource that can be listed, watched
//! and deleted; one graph builder applies what they see to the dependency
//! graph (`graph`) and queues the work each change makes; workers
//! (`collector`) take items from two queues (`queue`): *attempt to
//! delete* (is every owner of this object gone? is this foreground owner
//! free of blocking dependents?) and *attempt to orphan* (take this owner
//! out of its dependents' ownerReferences). Discovery is asked again every
//! 30 s so that resources that appear later are watched too.

mod absent;
mod collector;
pub mod graph;
mod kinds;
mod monitors;
mod queue;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use component_base::events::Recorder;
use kube::Client;
use tokio::sync::mpsc;

use collector::{Collector, Outcome};
use graph::Graph;
use kinds::Kinds;
use monitors::Report;
use queue::WorkQueue;

/// Upstream's `--concurrent-gc-syncs` default.
pub const DEFAULT_CONCURRENCY: u16 = 20;

/// The name events are recorded under, as upstream's.
const COMPONENT: &str = "garbage-collector-controller";

/// How often discovery is asked for new resources (upstream's period).
const RESYNC: Duration = Duration::from_secs(30);

/// How long workers wait for every monitor's first list before they start
/// anyway (upstream waits one resync period).
const SYNC_WAIT: Duration = RESYNC;

/// Changes in flight from the monitors to the graph builder.
const REPORTS: usize = 1024;

/// Runs the garbage collector with `workers` workers on each queue.
pub async fn run(client: Client, workers: u16) {
    let collector = Arc::new(Collector {
        client: client.clone(),
        graph: Arc::new(Mutex::new(Graph::default())),
        kinds: Arc::new(RwLock::new(Kinds::default())),
        to_delete: WorkQueue::new(),
        to_orphan: WorkQueue::new(),
        recorder: Recorder::new(client.clone(), COMPONENT, None),
        absent: Mutex::new(Default::default()),
    });
    let (reports, received) = mpsc::channel(REPORTS);
    let (synced_tx, synced) = tokio::sync::watch::channel(false);
    let (expected_tx, expected) = tokio::sync::watch::channel(0);
    tokio::spawn(build_graph(Arc::clone(&collector), received, expected, synced_tx));
    tokio::spawn(watch_resources(client, Arc::clone(&collector.kinds), reports, expected_tx));

    // Upstream's workers start once the graph holds what exists, so that
    // no object is collected for an owner not listed yet.
    let mut synced = synced;
    if tokio::time::timeout(SYNC_WAIT, synced.wait_for(|s| *s)).await.is_err() {
        tracing::warn!("garbage collector: not every resource was listed within {SYNC_WAIT:?}; starting anyway");
    }
    tracing::info!("garbage collector: dependency graph synced, starting {workers} workers per queue");
    let mut running = Vec::new();
    for _ in 0..workers.max(1) {
        let c = Arc::clone(&collector);
        running.push(tokio::spawn(async move {
            loop {
                let uid = c.to_delete.next().await;
                let retry = match c.attempt_to_delete(&uid).await {
                    Ok(Outcome::Done) => false,
                    Ok(Outcome::Again) => true,
                    Err(e) => {
                        tracing::warn!(uid = %uid, "garbage collector: {e}");
                        true
                    }
                };
                c.to_delete.done(uid, retry);
            }
        }));
        let c = Arc::clone(&collector);
        running.push(tokio::spawn(async move {
            loop {
                let uid = c.to_orphan.next().await;
                let result = c.attempt_to_orphan(&uid).await;
                if let Err(e) = &result {
                    tracing::warn!(uid = %uid, "garbage collector: orphaning dependents failed: {e}");
                }
                c.to_orphan.done(uid, result.is_err());
            }
        }));
    }
    for handle in running {
        let _ = handle.await;
    }
}

/// The graph builder: applies each report to the graph, in order, and
/// hands the work it makes to the queues. Says when every monitor of the
/// first discovery (`expected` says how many) has listed its resource.
async fn build_graph(
    collector: Arc<Collector>,
    mut received: mpsc::Receiver<Report>,
    expected: tokio::sync::watch::Receiver<usize>,
    synced: tokio::sync::watch::Sender<bool>,
) {
    let mut listed: BTreeSet<String> = BTreeSet::new();
    while let Some(report) = received.recv().await {
        match report {
            Report::Change(change) => {
                let work = collector.graph.lock().expect("not poisoned").apply(change);
                collector.dispatch(work);
            }
            Report::Synced(resource) => {
                listed.insert(resource);
                let expected = *expected.borrow();
                if expected > 0 && listed.len() >= expected {
                    synced.send_replace(true);
                }
            }
        }
    }
}

/// Asks discovery now and every [`RESYNC`], starting a monitor for each
/// resource not yet watched and updating the kinds owners are looked up by.
/// Says how many monitors the first discovery started.
async fn watch_resources(client: Client, kinds: Arc<RwLock<Kinds>>, reports: mpsc::Sender<Report>, expected: tokio::sync::watch::Sender<usize>) {
    let mut watched: HashSet<String> = HashSet::new();
    loop {
        match crate::discovery::preferred_resources(&client).await {
            Ok(found) => {
                if let Some(message) = found.failure_message() {
                    tracing::warn!("garbage collector: {message}");
                }
                *kinds.write().expect("not poisoned") = Kinds::new(&found.resources);
                let new: Vec<_> = found.resources.into_iter().filter(|r| monitors::monitored(r) && !watched.contains(&r.group_resource())).collect();
                if watched.is_empty() {
                    // Before any monitor can report its first list.
                    expected.send_replace(new.len());
                }
                for resource in new {
                    tracing::debug!("garbage collector: watching {}", resource.group_resource());
                    watched.insert(resource.group_resource());
                    tokio::spawn(monitors::run(client.clone(), resource, reports.clone()));
                }
            }
            Err(e) => tracing::warn!("garbage collector: discovery failed: {e}"),
        }
        tokio::time::sleep(RESYNC).await;
    }
}
