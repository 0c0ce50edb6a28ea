//! Events, as upstream's components record them (client-go's
//! `record.EventRecorder`): core/v1 Events that `kubectl describe` and
//! `kubectl get events` show.
//!
//! Recording never waits for the API: events go through a channel to one
//! task that writes them. As upstream's correlator does, an event that
//! repeats one already written (same object, type, reason, message and
//! source) is not written again; the first one's `count` goes up and its
//! `lastTimestamp` moves.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;

/// Normal or Warning, the two event types upstream has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Events queued beyond this many are dropped (and logged), as upstream's
/// broadcaster drops them rather than block the controller.
const QUEUE: usize = 1000;

/// How long an event is remembered for aggregation; upstream's cache is an
/// LRU of 4096 entries, ours forgets by age so it stays small.
const REMEMBER: Duration = Duration::from_secs(600);

/// Records events for one component (`source.component`, upstream's
/// reporting controller name: "deployment-controller", "default-scheduler").
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Record>,
}

struct Record {
    object: ObjectReference,
    kind: EventType,
    reason: String,
    message: String,
}

impl Recorder {
    /// A recorder whose events say they come from `component` on `host`
    /// (None: no host, as the controller-manager's events have none).
    pub fn new(client: kube::Client, component: &str, host: Option<String>) -> Recorder {
        let (queue, received) = mpsc::channel(QUEUE);
        let writer = Writer { client, source: EventSource { component: Some(component.into()), host }, written: HashMap::new() };
        tokio::spawn(writer.run(received));
        Recorder { queue }
    }

    /// Records an event about `object`; never waits.
    pub fn event(&self, object: ObjectReference, kind: EventType, reason: &str, message: impl Into<String>) {
        let record = Record { object, kind, reason: reason.into(), message: message.into() };
        if let Err(e) = self.queue.try_send(record) {
            tracing::warn!("event dropped (the queue is full or closed): {}", describe(&e.into_inner()));
        }
    }

    pub fn normal(&self, object: ObjectReference, reason: &str, message: impl Into<String>) {
        self.event(object, EventType::Normal, reason, message)
    }

    pub fn warning(&self, object: ObjectReference, reason: &str, message: impl Into<String>) {
        self.event(object, EventType::Warning, reason, message)
    }
}

fn describe(record: &Record) -> String {
    format!(
        "{} {}/{}: {} {}",
        record.kind.as_str(),
        record.object.kind.as_deref().unwrap_or(""),
        record.object.name.as_deref().unwrap_or(""),
        record.reason,
        record.message
    )
}

/// What makes two events the same event, as upstream's aggregation key.
#[derive(PartialEq, Eq, Hash)]
struct Key {
    uid: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    kind: Option<String>,
    kind_of_event: EventType,
    reason: String,
    message: String,
}

/// The event written for a key: its name and count.
struct Written {
    namespace: String,
    name: String,
    count: i32,
    at: Instant,
}

struct Writer {
    client: kube::Client,
    source: EventSource,
    written: HashMap<Key, Written>,
}

impl Writer {
    async fn run(mut self, mut received: mpsc::Receiver<Record>) {
        while let Some(record) = received.recv().await {
            if let Err(e) = self.write(&record).await {
                tracing::warn!("could not write event {}: {e}", describe(&record));
            }
        }
    }

    async fn write(&mut self, record: &Record) -> Result<(), kube::Error> {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        self.written.retain(|_, w| w.at.elapsed() < REMEMBER);
        let object = &record.object;
        let key = Key {
            uid: object.uid.clone(),
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            kind: object.kind.clone(),
            kind_of_event: record.kind,
            reason: record.reason.clone(),
            message: record.message.clone(),
        };
        if let Some(seen) = self.written.get_mut(&key) {
            let events: Api<Event> = Api::namespaced(self.client.clone(), &seen.namespace);
            let patch = serde_json::json!({"count": seen.count + 1, "lastTimestamp": now});
            match events.patch(&seen.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    seen.count += 1;
                    seen.at = Instant::now();
                    return Ok(());
                }
                // Expired or deleted: write it anew.
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        // Events about cluster-scoped objects live in `default`, as upstream's.
        let namespace = object.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
        let nanos = k8s_openapi::jiff::Timestamp::now().as_nanosecond();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", object.name.as_deref().unwrap_or("unknown"), nanos)),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: object.clone(),
            type_: Some(record.kind.as_str().into()),
            reason: Some(record.reason.clone()),
            message: Some(record.message.clone()),
            source: Some(self.source.clone()),
            reporting_component: self.source.component.clone(),
            reporting_instance: self.source.host.clone(),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let created = events.create(&PostParams::default(), &event).await?;
        self.written.insert(key, Written { namespace, name: created.metadata.name.unwrap_or_default(), count: 1, at: Instant::now() });
        Ok(())
    }
}

/// The reference an event names its object by.
pub fn reference<K: kube::Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    object.object_ref(&())
}
