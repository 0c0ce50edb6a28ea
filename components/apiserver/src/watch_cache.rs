//! One watch cache per resource: a single etcd watch feeds the current state
//! and a bounded history of events, which every API watch of that resource
//! is served from. A thousand watchers cost one etcd watch.
//!
//! Objects are kept as JSON bytes with their resourceVersion already set, so
//! a watcher without selectors sends them without re-serialising.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{EventType, WatchOptions};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::storage::Etcd;

/// How many past events a cache keeps by default for watches that resume
/// from a resourceVersion; older ones get 410 Expired.
pub const HISTORY: usize = 10_000;
const FANOUT: usize = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Added,
    Modified,
    Deleted,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Added => "ADDED",
            Kind::Modified => "MODIFIED",
            Kind::Deleted => "DELETED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: Kind,
    pub revision: i64,
    pub key: String,
    /// The object after the event (for DELETED: its last state, with the
    /// deletion's revision as resourceVersion, as upstream sends it).
    pub object: Bytes,
    /// The object before the event, for selector transitions.
    pub prev: Option<Bytes>,
}

struct State {
    objects: BTreeMap<String, Bytes>,
    history: VecDeque<Arc<Event>>,
    /// Every change up to this revision is in `objects`.
    revision: i64,
    /// History holds every event after this revision.
    oldest: i64,
    /// Bumped whenever the cache relists; watchers of an older epoch end.
    epoch: u64,
}

pub struct WatchCache {
    prefix: String,
    history: usize,
    state: Mutex<State>,
    fanout: broadcast::Sender<Arc<Event>>,
    /// The revision the cache has reached; watchers wait on it.
    progress: watch::Sender<i64>,
    epoch_tx: watch::Sender<u64>,
}

/// What a new watch starts from.
pub enum Start {
    /// The current state (as ADDED events), then changes after it.
    Snapshot,
    /// Changes after this revision.
    After(i64),
}

pub struct Subscription {
    /// Events to send first (a snapshot or a replay), in order.
    pub initial: Vec<Arc<Event>>,
    /// Later events; skip any at or below `after`.
    pub live: broadcast::Receiver<Arc<Event>>,
    pub after: i64,
    pub epoch: u64,
    pub epochs: watch::Receiver<u64>,
    pub progress: watch::Receiver<i64>,
}

/// Sets `metadata.resourceVersion` inside an object's JSON. What is stored
/// was written by serde_json with sorted keys and without a
/// resourceVersion, so the first `"metadata":{` is the object's own (keys
/// sorting before it hold no objects with metadata, and a string holding
/// that text is escaped): the version is spliced in there, without parsing
/// the object, which every event and every cached list would otherwise
/// pay for. Anything else is parsed.
pub fn with_revision(value: &[u8], revision: i64) -> Option<Bytes> {
    const OWN_METADATA: &[u8] = b"\"metadata\":{";
    if value.first() == Some(&b'{') && !contains(value, b"\"resourceVersion\"") {
        if let Some(at) = value.windows(OWN_METADATA.len()).position(|w| w == OWN_METADATA) {
            let at = at + OWN_METADATA.len();
            let mut out = Vec::with_capacity(value.len() + 40);
            out.extend_from_slice(&value[..at]);
            out.extend_from_slice(format!("\"resourceVersion\":\"{revision}\"").as_bytes());
            if value.get(at) != Some(&b'}') {
                out.push(b',');
            }
            out.extend_from_slice(&value[at..]);
            return Some(Bytes::from(out));
        }
    }
    let mut v: Value = serde_json::from_slice(value).ok()?;
    v.get_mut("metadata")?.as_object_mut()?.insert("resourceVersion".into(), Value::String(revision.to_string()));
    serde_json::to_vec(&v).ok().map(Bytes::from)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl WatchCache {
    /// Lists the prefix, then keeps following it in the background.
    pub async fn start(etcd: Etcd, prefix: String, history: usize) -> anyhow::Result<Arc<Self>> {
        let (fanout, _) = broadcast::channel(FANOUT);
        let cache = Arc::new(WatchCache {
            prefix,
            history: history.max(1),
            state: Mutex::new(State { objects: BTreeMap::new(), history: VecDeque::new(), revision: 0, oldest: 0, epoch: 0 }),
            fanout,
            progress: watch::channel(0).0,
            epoch_tx: watch::channel(0).0,
        });
        let revision = cache.relist(&etcd).await?;
        let follower = cache.clone();
        tokio::spawn(async move { follower.follow(etcd, revision).await });
        Ok(cache)
    }

    async fn relist(&self, etcd: &Etcd) -> anyhow::Result<i64> {
        let page = etcd.range(&self.prefix, "", 0, 0).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut objects = BTreeMap::new();
        for item in page.items {
            if let Some(b) = with_revision(&item.value, item.mod_revision) {
                objects.insert(item.key, b);
            }
        }
        let mut s = self.state.lock().unwrap();
        s.objects = objects;
        s.history.clear();
        s.revision = page.revision;
        s.oldest = page.revision;
        s.epoch += 1;
        self.epoch_tx.send_replace(s.epoch);
        self.progress.send_replace(page.revision);
        Ok(page.revision)
    }

    /// Follows etcd from `revision`; on any break it relists and goes on.
    async fn follow(self: Arc<Self>, etcd: Etcd, mut revision: i64) {
        loop {
            if let Err(e) = self.watch_from(&etcd, revision).await {
                tracing::warn!(prefix = %self.prefix, "etcd watch ended: {e}; relisting");
            }
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                match self.relist(&etcd).await {
                    Ok(r) => {
                        revision = r;
                        break;
                    }
                    Err(e) => tracing::warn!(prefix = %self.prefix, "relist failed: {e}"),
                }
            }
        }
    }

    async fn watch_from(&self, etcd: &Etcd, revision: i64) -> anyhow::Result<()> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1)
            .with_prev_key()
            .with_progress_notify();
        let mut stream = etcd.watch_client().watch(self.prefix.clone(), Some(options)).await?;
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                message = stream.message() => {
                    let Some(resp) = message? else { anyhow::bail!("the watch stream closed") };
                    if resp.canceled() {
                        anyhow::bail!("etcd cancelled the watch (compacted at {}): {}", resp.compact_revision(), resp.cancel_reason());
                    }
                    let header = resp.header().map(|h| h.revision()).unwrap_or(0);
                    self.apply(resp.events(), header);
                }
                // Ask etcd where it is, so bookmarks advance on a quiet prefix.
                _ = tick.tick() => stream.request_progress().await?,
            }
        }
    }

    fn apply(&self, events: &[etcd_client::Event], header: i64) {
        let mut s = self.state.lock().unwrap();
        for e in events {
            let Some(kv) = e.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let rev = kv.mod_revision();
            let prev = s.objects.get(&key).cloned();
            let event = match e.event_type() {
                EventType::Put => {
                    let Some(object) = with_revision(kv.value(), rev) else { continue };
                    s.objects.insert(key.clone(), object.clone());
                    let kind = if prev.is_some() { Kind::Modified } else { Kind::Added };
                    Event { kind, revision: rev, key, object, prev }
                }
                EventType::Delete => {
                    s.objects.remove(&key);
                    let last = prev.clone().or_else(|| e.prev_kv().and_then(|p| with_revision(p.value(), p.mod_revision())));
                    let Some(last) = last.and_then(|b| with_revision(&b, rev)) else { continue };
                    Event { kind: Kind::Deleted, revision: rev, key, object: last, prev }
                }
            };
            let event = Arc::new(event);
            s.history.push_back(event.clone());
            if s.history.len() > self.history {
                if let Some(old) = s.history.pop_front() {
                    s.oldest = old.revision;
                }
            }
            s.revision = s.revision.max(rev);
            let _ = self.fanout.send(event);
        }
        s.revision = s.revision.max(header);
        self.progress.send_replace(s.revision);
    }

    /// The revision the cache has reached.
    pub fn revision(&self) -> i64 {
        self.state.lock().unwrap().revision
    }

    /// One object as the cache holds it.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.state.lock().unwrap().objects.get(key).cloned()
    }

    /// Every object under `prefix` and the revision they are current at.
    pub fn snapshot(&self, prefix: &str) -> (Vec<Bytes>, i64) {
        let s = self.state.lock().unwrap();
        let items = s.objects.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v.clone()).collect();
        (items, s.revision)
    }

    /// Waits until the cache has seen `revision`; false after `wait`.
    pub async fn wait_for(&self, revision: i64, wait: Duration) -> bool {
        let mut progress = self.progress.subscribe();
        let reached = matches!(tokio::time::timeout(wait, progress.wait_for(|r| *r >= revision)).await, Ok(Ok(_)));
        reached
    }

    /// Starts a watch; `Err(oldest)` when `start` is older than the history.
    pub fn subscribe(&self, start: Start) -> Result<Subscription, i64> {
        let s = self.state.lock().unwrap();
        let (initial, after) = match start {
            Start::Snapshot => {
                let initial = s
                    .objects
                    .iter()
                    .map(|(k, v)| {
                        Arc::new(Event { kind: Kind::Added, revision: s.revision, key: k.clone(), object: v.clone(), prev: None })
                    })
                    .collect();
                (initial, s.revision)
            }
            Start::After(rv) => {
                if rv < s.oldest {
                    return Err(s.oldest);
                }
                let replay = s.history.iter().filter(|e| e.revision > rv).cloned().collect();
                (replay, rv.max(s.revision))
            }
        };
        // Subscribed under the lock: every event after `after` reaches `live`.
        Ok(Subscription {
            initial,
            live: self.fanout.subscribe(),
            after,
            epoch: s.epoch,
            epochs: self.epoch_tx.subscribe(),
            progress: self.progress.subscribe(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spliced(obj: &Value, revision: i64) -> Value {
        serde_json::from_slice(&with_revision(&serde_json::to_vec(obj).unwrap(), revision).unwrap()).unwrap()
    }

    #[test]
    fn the_version_lands_in_the_objects_own_metadata() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                       "spec": {"template": {"metadata": {"labels": {"a": "b"}}}}});
        let got = spliced(&d, 42);
        assert_eq!(got["metadata"]["resourceVersion"], "42");
        assert!(got.pointer("/spec/template/metadata/resourceVersion").is_none());
        assert_eq!(spliced(&json!({"kind": "X", "metadata": {}}), 7)["metadata"], json!({"resourceVersion": "7"}));
        // A string holding the text is not mistaken for the field.
        let cm = json!({"data": {"x": "\"metadata\":{"}, "kind": "ConfigMap", "metadata": {"name": "c"}});
        let got = spliced(&cm, 3);
        assert_eq!(got["data"]["x"], "\"metadata\":{");
        assert_eq!(got["metadata"]["resourceVersion"], "3");
    }

    #[test]
    fn stored_json_has_sorted_keys() {
        // The splice relies on serde_json writing keys sorted (no
        // preserve_order feature anywhere in the build).
        let text = serde_json::to_string(&json!({"spec": {"metadata": {}}, "metadata": {}})).unwrap();
        assert!(text.starts_with("{\"metadata\""), "{text}");
    }
}
