//! One watch cache per resource: a single etcd watch feeds the current state
//! and a bounded history of events, which every API watch of that resource
//! is served from. A thousand watchers cost one etcd watch.
//!
//! Objects are kept as JSON bytes with their resourceVersion already set, so
//! a watcher without selectors sends them without re-serialising, and with
//! what selectors look at (labels, field values) read once when the cache
//! takes the object in, so no watcher parses an event again.
//!
//! Memory is bounded three ways: the history in events and in bytes (older
//! events fall out; a watch resuming from them gets 410 Expired), and each
//! watcher's backlog in bytes. The cache hands each event to the watchers
//! it is for; a watcher whose backlog outgrows its budget (its client reads
//! slower than events come) is closed, as upstream's cacher closes a
//! watcher whose buffer stays full, and the client watches again from the
//! last version it saw.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{EventType, WatchOptions};
use serde_json::Value;
use tokio::sync::{watch, Notify};

use crate::resources::Resource;
use crate::selectors::Selector;
use crate::storage::Etcd;

/// How many past events a cache keeps by default for watches that resume
/// from a resourceVersion; older ones get 410 Expired.
pub const HISTORY: usize = 10_000;
/// How many bytes of objects (and their previous states) the history of a
/// cache keeps by default. Ten thousand events of a typical pod (1.5–3 KB,
/// with its previous state) fit; a 1 MiB Secret rewritten in a loop keeps
/// its last thirty-odd versions instead of ten thousand of them.
pub const HISTORY_BYTES: usize = 64 << 20;
/// How many bytes of events may wait for one watcher by default before it
/// is closed as too slow. The events are shared with the history, so this
/// bounds what a stalled watcher keeps alive after the history dropped it.
pub const WATCHER_BACKLOG_BYTES: usize = 16 << 20;

/// What a cache may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Events kept for watches that resume from a version.
    pub history_events: usize,
    /// Bytes of those events' objects and previous states.
    pub history_bytes: usize,
    /// Bytes of events waiting for one watcher before it is closed.
    pub watcher_backlog_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { history_events: HISTORY, history_bytes: HISTORY_BYTES, watcher_backlog_bytes: WATCHER_BACKLOG_BYTES }
    }
}

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

/// What label and field selectors look at in one object, kept in one block
/// of text: ten thousand pods' worth is a few megabytes, not tens.
#[derive(Debug, Default, PartialEq)]
pub struct Attrs {
    /// Label keys and values, then field values, end to end.
    text: Box<str>,
    /// Where each label's key and value end in `text`.
    labels: Box<[(u32, u32)]>,
    /// Every field selector key the resource supports, and where its value
    /// ends in `text`.
    fields: Box<[(&'static str, u32)]>,
}

impl Attrs {
    pub fn of(res: &Resource, obj: &Value) -> Attrs {
        let mut text = String::new();
        let mut labels = Vec::new();
        // Labels whose value is no string match nothing, as when read from
        // the object each time.
        for (key, value) in crate::meta::labels(obj).into_iter().flatten() {
            let Some(value) = value.as_str() else {
                continue;
            };
            text.push_str(key);
            let key_end = text.len() as u32;
            text.push_str(value);
            labels.push((key_end, text.len() as u32));
        }
        let keys = ["metadata.name", "metadata.namespace"].into_iter().chain(res.strategy.fields().iter().map(|(k, _)| *k));
        let mut fields = Vec::new();
        for key in keys {
            if let Some(value) = crate::registry::field_value(res, obj, key) {
                text.push_str(&value);
                fields.push((key, text.len() as u32));
            }
        }
        Attrs { text: text.into(), labels: labels.into(), fields: fields.into() }
    }

    fn label(&self, key: &str) -> Option<&str> {
        let mut start = 0;
        for &(key_end, end) in &self.labels {
            let (key_end, end) = (key_end as usize, end as usize);
            if &self.text[start..key_end] == key {
                return Some(&self.text[key_end..end]);
            }
            start = end;
        }
        None
    }

    fn field(&self, key: &str) -> Option<&str> {
        let mut start = self.labels.last().map_or(0, |&(_, end)| end as usize);
        for &(k, end) in &self.fields {
            if k == key {
                return Some(&self.text[start..end as usize]);
            }
            start = end as usize;
        }
        None
    }

    pub fn matches(&self, labels: &Selector, fields: &Selector) -> bool {
        labels.matches(|k| self.label(k)) && fields.matches(|k| self.field(k))
    }
}

/// An object as the cache holds it.
#[derive(Debug)]
pub struct Entry {
    /// Its JSON, with its resourceVersion set.
    pub bytes: Bytes,
    pub attrs: Arc<Attrs>,
}

#[derive(Debug)]
pub struct Event {
    pub kind: Kind,
    pub revision: i64,
    pub key: String,
    /// The object after the event (for DELETED: its last state, with the
    /// deletion's revision as resourceVersion, as upstream sends it).
    pub object: Arc<Entry>,
    /// For MODIFIED, the object before, for selector transitions.
    pub prev: Option<Arc<Entry>>,
}

impl Event {
    /// The bytes it keeps alive, as the budgets count them.
    fn size(&self) -> usize {
        self.object.bytes.len() + self.prev.as_ref().map_or(0, |p| p.bytes.len())
    }
}

/// Which events one watcher wants: its namespace (as a key prefix) and
/// selectors.
#[derive(Debug, Clone)]
pub struct Selection {
    pub prefix: String,
    pub labels: Selector,
    pub fields: Selector,
}

impl Selection {
    fn selects(&self) -> bool {
        !self.labels.is_empty() || !self.fields.is_empty()
    }

    fn admits(&self, entry: &Entry) -> bool {
        !self.selects() || entry.attrs.matches(&self.labels, &self.fields)
    }

    /// The event type this watcher sees for `e`, if any: an object that
    /// starts matching is ADDED, one that stops matching DELETED.
    pub fn kind_for(&self, e: &Event) -> Option<Kind> {
        if !e.key.starts_with(&self.prefix) {
            return None;
        }
        let now = self.admits(&e.object);
        match e.kind {
            Kind::Added | Kind::Deleted => now.then_some(e.kind),
            Kind::Modified => {
                let before = !self.selects() || e.prev.as_ref().is_some_and(|p| self.admits(p));
                match (before, now) {
                    (true, true) => Some(Kind::Modified),
                    (false, true) => Some(Kind::Added),
                    (true, false) => Some(Kind::Deleted),
                    (false, false) => None,
                }
            }
        }
    }
}

/// One event as one watcher sees it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub kind: Kind,
    pub event: Arc<Event>,
}

impl Delivery {
    /// What to send: for an object that stopped matching, its state before
    /// (the one the watcher knew) at the event's revision, as upstream does.
    pub fn object(&self) -> Bytes {
        match (&self.event.prev, self.kind, self.event.kind) {
            (Some(prev), Kind::Deleted, Kind::Modified) => with_revision(&prev.bytes, self.event.revision).unwrap_or_else(|| self.event.object.bytes.clone()),
            _ => self.event.object.bytes.clone(),
        }
    }
}

/// Why the cache ended a watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Its backlog outgrew the budget: the client reads too slowly.
    TooSlow,
    /// Events it still had to send left the history before it sent them.
    FellBehind,
    /// The cache relisted (its etcd watch broke); the client watches again.
    Relisted,
}

/// What the cache has handed one watcher and not yet been taken.
#[derive(Default)]
struct Backlog {
    events: VecDeque<Delivery>,
    bytes: usize,
    ended: Option<Ended>,
}

impl Backlog {
    fn end(&mut self, why: Ended) {
        self.ended = Some(why);
        // Freed now, not when the client finally reads or leaves.
        self.events = VecDeque::new();
        self.bytes = 0;
    }
}

/// A watcher as the cache sees it.
struct Watcher {
    selection: Selection,
    /// Events at or below this revision are not for it.
    after: i64,
    backlog: Mutex<Backlog>,
    ready: Notify,
}

struct State {
    objects: BTreeMap<String, Arc<Entry>>,
    history: VecDeque<Arc<Event>>,
    /// What the history's events keep alive, as `Event::size` counts it.
    history_bytes: usize,
    /// The sequence number of the history's first event: each event gets the
    /// next, so a replay can tell which of its events are gone.
    first_seq: u64,
    /// Every change up to this revision is in `objects`.
    revision: i64,
    /// History holds every event after this revision.
    oldest: i64,
    watchers: HashMap<u64, Arc<Watcher>>,
    next_watcher: u64,
}

impl State {
    fn end_seq(&self) -> u64 {
        self.first_seq + self.history.len() as u64
    }
}

pub struct WatchCache {
    resource: &'static Resource,
    prefix: String,
    limits: Limits,
    state: Mutex<State>,
    /// The revision the cache has reached; watchers wait on it.
    progress: watch::Sender<i64>,
}

/// What a new watch starts from.
pub enum Start {
    /// The current state (as ADDED events), then changes after it.
    Snapshot,
    /// Changes after this revision.
    After(i64),
}

/// One watch: its events in order, the initial ones first.
pub struct Subscription {
    cache: Arc<WatchCache>,
    id: u64,
    watcher: Arc<Watcher>,
    /// A snapshot's events (already selected).
    initial: VecDeque<Delivery>,
    /// The history events to replay (by sequence number), read from the
    /// history as they are sent so that a watcher that does not read keeps
    /// nothing alive.
    replay: Range<u64>,
    /// The revision the watch starts after.
    pub after: i64,
    pub progress: watch::Receiver<i64>,
}

/// What a watcher gets next.
#[derive(Debug)]
pub enum Next {
    Event(Delivery),
    /// Nothing now; wait with `Subscription::ready`.
    Idle,
    Ended(Ended),
}

impl Subscription {
    /// The next event, without waiting.
    pub fn try_next(&mut self) -> Next {
        if let Some(why) = self.watcher.backlog.lock().unwrap().ended {
            return Next::Ended(why);
        }
        if let Some(d) = self.initial.pop_front() {
            return Next::Event(d);
        }
        while !self.replay.is_empty() {
            let event = {
                let s = self.cache.state.lock().unwrap();
                if self.replay.start < s.first_seq {
                    return Next::Ended(Ended::FellBehind);
                }
                s.history[(self.replay.start - s.first_seq) as usize].clone()
            };
            self.replay.start += 1;
            if let Some(kind) = self.watcher.selection.kind_for(&event) {
                return Next::Event(Delivery { kind, event });
            }
        }
        let mut backlog = self.watcher.backlog.lock().unwrap();
        match backlog.events.pop_front() {
            Some(d) => {
                backlog.bytes -= d.event.size();
                Next::Event(d)
            }
            None => Next::Idle,
        }
    }

    /// Whether events wait to be taken.
    pub fn pending(&self) -> bool {
        !self.initial.is_empty() || !self.replay.is_empty() || !self.watcher.backlog.lock().unwrap().events.is_empty()
    }

    /// Whether the snapshot's events have all been taken.
    pub fn initial_done(&self) -> bool {
        self.initial.is_empty()
    }

    /// Resolves when `try_next` may have something new.
    pub async fn ready(&self) {
        self.watcher.ready.notified().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cache.state.lock().unwrap().watchers.remove(&self.id);
    }
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

/// One change of a key, as etcd's watch reports it.
struct Change<'a> {
    key: &'a [u8],
    /// The new value; None for a delete.
    value: Option<&'a [u8]>,
    revision: i64,
    /// The value before and its revision (etcd sends it with deletes).
    prev: Option<(&'a [u8], i64)>,
}

impl WatchCache {
    /// An empty cache of `res`, followed by nothing yet.
    fn new(res: &'static Resource, limits: Limits) -> Arc<Self> {
        Arc::new(WatchCache {
            resource: res,
            prefix: res.prefix(None),
            limits,
            state: Mutex::new(State {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                history_bytes: 0,
                first_seq: 0,
                revision: 0,
                oldest: 0,
                watchers: HashMap::new(),
                next_watcher: 0,
            }),
            progress: watch::channel(0).0,
        })
    }

    /// Lists the resource, then keeps following it in the background.
    pub async fn start(etcd: Etcd, res: &'static Resource, limits: Limits) -> anyhow::Result<Arc<Self>> {
        let cache = WatchCache::new(res, limits);
        let revision = cache.relist(&etcd).await?;
        let follower = cache.clone();
        tokio::spawn(async move { follower.follow(etcd, revision).await });
        Ok(cache)
    }

    /// An object as the cache keeps it: with the zero values Go writes
    /// (an object stored before they were filled in on write gets them
    /// here, in the one parse its attributes need anyway).
    fn entry(&self, bytes: Bytes) -> Arc<Entry> {
        let Ok(mut obj) = serde_json::from_slice::<Value>(&bytes) else {
            return Arc::new(Entry { bytes, attrs: Arc::new(Attrs::default()) });
        };
        let bytes = match crate::zero_values::fill(&mut obj) {
            true => serde_json::to_vec(&obj).map(Bytes::from).unwrap_or(bytes),
            false => bytes,
        };
        let attrs = Arc::new(Attrs::of(self.resource, &obj));
        Arc::new(Entry { bytes, attrs })
    }

    async fn relist(&self, etcd: &Etcd) -> anyhow::Result<i64> {
        let page = etcd.range(&self.prefix, "", 0, 0).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut objects = BTreeMap::new();
        for item in page.items {
            if let Some(b) = with_revision(&item.value, item.mod_revision) {
                objects.insert(item.key, self.entry(b));
            }
        }
        self.replace(objects, page.revision);
        Ok(page.revision)
    }

    /// Starts again from a listed state: the history is gone, and so are
    /// the watches served from it (their clients watch again).
    fn replace(&self, objects: BTreeMap<String, Arc<Entry>>, revision: i64) {
        let mut s = self.state.lock().unwrap();
        s.objects = objects;
        s.first_seq = s.end_seq();
        s.history.clear();
        s.history_bytes = 0;
        s.revision = revision;
        s.oldest = revision;
        for (_, w) in s.watchers.drain() {
            w.backlog.lock().unwrap().end(Ended::Relisted);
            w.ready.notify_one();
        }
        self.progress.send_replace(revision);
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
        let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1).with_prev_key().with_progress_notify();
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
                    let changes = resp.events().iter().filter_map(|e| {
                        let kv = e.kv()?;
                        Some(Change {
                            key: kv.key(),
                            value: (e.event_type() == EventType::Put).then(|| kv.value()),
                            revision: kv.mod_revision(),
                            prev: e.prev_kv().map(|p| (p.value(), p.mod_revision())),
                        })
                    });
                    self.apply(changes, header);
                }
                // Ask etcd where it is, so bookmarks advance on a quiet prefix.
                _ = tick.tick() => stream.request_progress().await?,
            }
        }
    }

    fn apply<'a>(&self, changes: impl Iterator<Item = Change<'a>>, header: i64) {
        let mut s = self.state.lock().unwrap();
        for c in changes {
            let key = String::from_utf8_lossy(c.key).into_owned();
            let rev = c.revision;
            let prev = s.objects.get(&key).cloned();
            let event = match c.value {
                Some(value) => {
                    let Some(object) = with_revision(value, rev) else {
                        continue;
                    };
                    let object = self.entry(object);
                    s.objects.insert(key.clone(), object.clone());
                    let kind = if prev.is_some() { Kind::Modified } else { Kind::Added };
                    Event { kind, revision: rev, key, object, prev }
                }
                None => {
                    s.objects.remove(&key);
                    let last = match prev {
                        Some(p) => p,
                        None => {
                            let Some(p) = c.prev.and_then(|(v, r)| with_revision(v, r)) else {
                                continue;
                            };
                            self.entry(p)
                        }
                    };
                    // Its last state at the deletion's revision; what
                    // selectors see of it has not changed.
                    let Some(bytes) = with_revision(&last.bytes, rev) else {
                        continue;
                    };
                    let object = Arc::new(Entry { bytes, attrs: last.attrs.clone() });
                    Event { kind: Kind::Deleted, revision: rev, key, object, prev: None }
                }
            };
            let event = Arc::new(event);
            self.dispatch(&mut s, &event);
            s.history_bytes += event.size();
            s.history.push_back(event);
            while s.history.len() > self.limits.history_events || s.history_bytes > self.limits.history_bytes {
                let Some(old) = s.history.pop_front() else {
                    break;
                };
                s.history_bytes -= old.size();
                s.first_seq += 1;
                s.oldest = old.revision;
            }
            s.revision = s.revision.max(rev);
        }
        s.revision = s.revision.max(header);
        self.progress.send_replace(s.revision);
    }

    /// Hands `event` to every watcher it is for, and closes those whose
    /// backlog it takes over their budget. Runs under the state lock, so a
    /// new watcher's replay ends exactly where its live events begin.
    fn dispatch(&self, s: &mut State, event: &Arc<Event>) {
        let mut too_slow = Vec::new();
        for (id, w) in &s.watchers {
            if event.revision <= w.after {
                continue;
            }
            let Some(kind) = w.selection.kind_for(event) else {
                continue;
            };
            let mut backlog = w.backlog.lock().unwrap();
            if backlog.ended.is_some() {
                continue;
            }
            backlog.bytes += event.size();
            backlog.events.push_back(Delivery { kind, event: event.clone() });
            // One event always fits, however large, so a big object is slow
            // to send, not impossible.
            if backlog.bytes > self.limits.watcher_backlog_bytes && backlog.events.len() > 1 {
                tracing::info!(
                    prefix = %w.selection.prefix,
                    events = backlog.events.len(),
                    bytes = backlog.bytes,
                    "closing a watcher that does not keep up"
                );
                backlog.end(Ended::TooSlow);
                too_slow.push(*id);
            }
            drop(backlog);
            w.ready.notify_one();
        }
        for id in too_slow {
            s.watchers.remove(&id);
        }
    }

    /// The revision the cache has reached.
    pub fn revision(&self) -> i64 {
        self.state.lock().unwrap().revision
    }

    /// One object as the cache holds it.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.state.lock().unwrap().objects.get(key).map(|e| e.bytes.clone())
    }

    /// Every object under `prefix` that the selectors match, and the
    /// revision they are current at.
    pub fn snapshot(&self, prefix: &str, labels: &Selector, fields: &Selector) -> (Vec<Bytes>, i64) {
        let s = self.state.lock().unwrap();
        let items = s
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, e)| e.attrs.matches(labels, fields))
            .map(|(_, e)| e.bytes.clone())
            .collect();
        (items, s.revision)
    }

    /// How many events and bytes the history holds now.
    pub fn history_size(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.history.len(), s.history_bytes)
    }

    /// How many watches the cache serves now.
    pub fn watchers(&self) -> usize {
        self.state.lock().unwrap().watchers.len()
    }

    /// Waits until the cache has seen `revision`; false after `wait`.
    pub async fn wait_for(&self, revision: i64, wait: Duration) -> bool {
        let mut progress = self.progress.subscribe();
        let reached = matches!(tokio::time::timeout(wait, progress.wait_for(|r| *r >= revision)).await, Ok(Ok(_)));
        reached
    }

    /// Starts a watch of what `selection` selects; `Err(oldest)` when
    /// `start` is older than the history.
    pub fn subscribe(self: &Arc<Self>, start: Start, selection: Selection) -> Result<Subscription, i64> {
        let mut s = self.state.lock().unwrap();
        let (initial, replay, after) = match start {
            Start::Snapshot => {
                let initial = s
                    .objects
                    .range(selection.prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&selection.prefix))
                    .filter(|(_, e)| selection.admits(e))
                    .map(|(k, e)| {
                        let event = Event { kind: Kind::Added, revision: s.revision, key: k.clone(), object: e.clone(), prev: None };
                        Delivery { kind: Kind::Added, event: Arc::new(event) }
                    })
                    .collect();
                let end = s.end_seq();
                (initial, end..end, s.revision)
            }
            Start::After(rv) => {
                if rv < s.oldest {
                    return Err(s.oldest);
                }
                let first = s.first_seq + s.history.partition_point(|e| e.revision <= rv) as u64;
                (VecDeque::new(), first..s.end_seq(), rv.max(s.revision))
            }
        };
        let watcher = Arc::new(Watcher { selection, after, backlog: Mutex::default(), ready: Notify::new() });
        let id = s.next_watcher;
        s.next_watcher += 1;
        // Registered under the lock: every event after the replay reaches it.
        s.watchers.insert(id, watcher.clone());
        Ok(Subscription { cache: self.clone(), id, watcher, initial, replay, after, progress: self.progress.subscribe() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selectors::{parse_fields, parse_labels};
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

    fn resource(plural: &str) -> &'static Resource {
        crate::resources::RESOURCES.iter().find(|r| r.plural == plural && !r.probed).unwrap()
    }

    /// A cache fed by hand, revision by revision, as etcd would.
    struct Feed {
        cache: Arc<WatchCache>,
        revision: i64,
    }

    impl Feed {
        fn new(plural: &str, limits: Limits) -> Feed {
            Feed { cache: WatchCache::new(resource(plural), limits), revision: 1 }
        }

        fn key(&self, namespace: &str, name: &str) -> String {
            self.cache.resource.key(Some(namespace), name)
        }

        /// Writes an object; returns its revision.
        fn put(&mut self, obj: Value) -> i64 {
            self.revision += 1;
            let key = self.key(obj["metadata"]["namespace"].as_str().unwrap(), obj["metadata"]["name"].as_str().unwrap());
            let value = serde_json::to_vec(&obj).unwrap();
            self.cache.apply(std::iter::once(Change { key: key.as_bytes(), value: Some(&value), revision: self.revision, prev: None }), self.revision);
            self.revision
        }

        fn delete(&mut self, namespace: &str, name: &str) -> i64 {
            self.revision += 1;
            let key = self.key(namespace, name);
            self.cache.apply(std::iter::once(Change { key: key.as_bytes(), value: None, revision: self.revision, prev: None }), self.revision);
            self.revision
        }
    }

    fn selection(prefix: &str, labels: &str, fields: &str) -> Selection {
        Selection { prefix: prefix.into(), labels: parse_labels(labels).unwrap(), fields: parse_fields(fields).unwrap() }
    }

    fn pod(name: &str, node: &str, labels: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns", "labels": labels},
               "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}})
    }

    /// Every event the subscription has now, as (type, name, node).
    fn drain(sub: &mut Subscription) -> Vec<(&'static str, String, String)> {
        let mut seen = Vec::new();
        while let Next::Event(d) = sub.try_next() {
            let obj: Value = serde_json::from_slice(&d.object()).unwrap();
            let rv: i64 = obj["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
            assert_eq!(rv, d.event.revision, "each object carries its event's revision");
            seen.push((d.kind.as_str(), obj["metadata"]["name"].as_str().unwrap().to_string(), obj["spec"]["nodeName"].as_str().unwrap_or("").to_string()));
        }
        seen
    }

    fn seen(kind: &'static str, name: &str, node: &str) -> (&'static str, String, String) {
        (kind, name.to_string(), node.to_string())
    }

    #[test]
    fn attrs_hold_labels_and_every_supported_field() {
        let obj = pod("a", "n1", json!({"app": "web", "tier": "", "n": 5}));
        let attrs = Attrs::of(resource("pods"), &obj);
        assert_eq!((attrs.label("app"), attrs.label("tier"), attrs.label("n"), attrs.label("x")), (Some("web"), Some(""), None, None));
        assert_eq!(attrs.field("metadata.name"), Some("a"));
        assert_eq!(attrs.field("metadata.namespace"), Some("ns"));
        assert_eq!(attrs.field("spec.nodeName"), Some("n1"));
        // Supported but unset reads as "", as upstream's field sets hold it.
        assert_eq!(attrs.field("status.podIP"), Some(""));
        assert_eq!(attrs.field("spec.bogus"), None);
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        let attrs = Attrs::of(resource("nodes"), &node);
        assert_eq!((attrs.field("spec.unschedulable"), attrs.field("metadata.namespace")), (Some("true"), None));
    }

    #[test]
    fn history_stays_within_its_byte_budget_and_expires_what_falls_out() {
        let limits = Limits { history_bytes: 1 << 20, ..Limits::default() };
        let mut feed = Feed::new("secrets", limits);
        let blob = "x".repeat(100 << 10);
        let secret = |i: usize| {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "big", "namespace": "ns"},
                                       "stringData": {"blob": blob, "n": i.to_string()}})
        };
        let first = feed.put(secret(0));
        for i in 1..200 {
            feed.put(secret(i));
            let (events, bytes) = feed.cache.history_size();
            assert!(bytes <= limits.history_bytes, "after {i} rewrites the history holds {bytes} bytes in {events} events");
        }
        let (events, _) = feed.cache.history_size();
        assert!(events > 2, "the budget keeps recent events ({events})");
        assert!(events < 10, "each rewrite holds ~200 KB (object and previous state): {events} events");
        assert!(feed.cache.subscribe(Start::After(first), selection("/registry/secrets/", "", "")).is_err(), "a resume from the first rewrite is expired");
        let recent = feed.revision - 1;
        let mut sub = feed.cache.subscribe(Start::After(recent), selection("/registry/secrets/", "", "")).expect("a recent version still resumes");
        assert_eq!(drain(&mut sub).len(), 1);
    }

    #[test]
    fn selectors_see_transitions_from_precomputed_values() {
        let mut feed = Feed::new("pods", Limits::default());
        let by_node = feed.cache.subscribe(Start::Snapshot, selection("/registry/pods/", "", "spec.nodeName=n1"));
        let by_label = feed.cache.subscribe(Start::Snapshot, selection("/registry/pods/ns/", "app=web", ""));
        let (mut by_node, mut by_label) = (by_node.unwrap(), by_label.unwrap());
        feed.put(pod("a", "", json!({"app": "web"})));
        feed.put(pod("a", "n1", json!({"app": "web"})));
        feed.put(pod("a", "n1", json!({"app": "db"})));
        feed.put(pod("a", "n2", json!({"app": "web"})));
        feed.put(pod("b", "n2", json!({})));
        feed.delete("ns", "a");
        assert_eq!(
            drain(&mut by_node),
            // Scheduled onto n1: ADDED; moved away: DELETED with the state it had on n1.
            [seen("ADDED", "a", "n1"), seen("MODIFIED", "a", "n1"), seen("DELETED", "a", "n1")]
        );
        assert_eq!(
            drain(&mut by_label),
            [seen("ADDED", "a", ""), seen("MODIFIED", "a", "n1"), seen("DELETED", "a", "n1"), seen("ADDED", "a", "n2"), seen("DELETED", "a", "n2"),]
        );
        // A snapshot and a list select with the same values.
        feed.put(pod("c", "n1", json!({"app": "web"})));
        let mut late = feed.cache.subscribe(Start::Snapshot, selection("/registry/pods/", "app=web", "spec.nodeName=n1")).unwrap();
        assert_eq!(drain(&mut late), [seen("ADDED", "c", "n1")]);
        let (listed, _) = feed.cache.snapshot("/registry/pods/", &parse_labels("app").unwrap(), &parse_fields("spec.nodeName!=n1").unwrap());
        assert_eq!(listed.len(), 0, "c is on n1 and b has no app label");
        let (listed, _) = feed.cache.snapshot("/registry/pods/", &Selector::default(), &parse_fields("metadata.name=b,spec.nodeName=n2").unwrap());
        assert_eq!(listed.len(), 1);
    }

    #[test]
    fn a_replay_is_filtered_like_live_events() {
        let mut feed = Feed::new("pods", Limits::default());
        let start = feed.put(pod("a", "n2", json!({})));
        feed.put(pod("a", "n1", json!({})));
        feed.put(pod("b", "n3", json!({})));
        let mut sub = feed.cache.subscribe(Start::After(start), selection("/registry/pods/", "", "spec.nodeName=n1")).unwrap();
        feed.put(pod("a", "n3", json!({})));
        assert_eq!(drain(&mut sub), [seen("ADDED", "a", "n1"), seen("DELETED", "a", "n1")]);
    }

    #[test]
    fn a_watcher_that_does_not_read_is_closed_and_keeps_nothing() {
        let limits = Limits { watcher_backlog_bytes: 64 << 10, ..Limits::default() };
        let mut feed = Feed::new("configmaps", limits);
        let blob = "x".repeat(10 << 10);
        let cm = |i: usize| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}, "data": {"blob": blob, "n": i.to_string()}});
        let mut reader = feed.cache.subscribe(Start::Snapshot, selection("/registry/configmaps/", "", "")).unwrap();
        let mut stalled = feed.cache.subscribe(Start::Snapshot, selection("/registry/configmaps/", "", "")).unwrap();
        // Only watchers the events are for build a backlog.
        let mut elsewhere = feed.cache.subscribe(Start::Snapshot, selection("/registry/configmaps/other/", "", "")).unwrap();
        let mut received = 0;
        for i in 0..100 {
            feed.put(cm(i));
            received += drain(&mut reader).len();
        }
        assert_eq!(received, 100, "a watcher that keeps up gets everything");
        assert!(matches!(stalled.try_next(), Next::Ended(Ended::TooSlow)), "the stalled watcher is closed");
        assert_eq!(stalled.watcher.backlog.lock().unwrap().events.len(), 0, "and what it had waiting is freed");
        assert!(matches!(elsewhere.try_next(), Next::Idle));
        assert_eq!(feed.cache.watchers(), 2, "the cache no longer hands it events");
        drop(stalled);
        drop(reader);
        assert_eq!(feed.cache.watchers(), 1);
    }

    #[test]
    fn a_replay_that_falls_out_of_history_ends() {
        let limits = Limits { history_events: 5, ..Limits::default() };
        let mut feed = Feed::new("pods", limits);
        let start = feed.put(pod("a", "n1", json!({})));
        feed.put(pod("a", "n2", json!({})));
        let mut sub = feed.cache.subscribe(Start::After(start), selection("/registry/pods/", "", "")).unwrap();
        for _ in 0..5 {
            feed.put(pod("a", "n3", json!({})));
        }
        assert!(matches!(sub.try_next(), Next::Ended(Ended::FellBehind)));
    }

    #[tokio::test]
    async fn a_relist_ends_the_watches() {
        let mut feed = Feed::new("pods", Limits::default());
        let mut sub = feed.cache.subscribe(Start::Snapshot, selection("/registry/pods/", "", "")).unwrap();
        feed.put(pod("a", "n1", json!({})));
        feed.cache.replace(BTreeMap::new(), feed.revision);
        tokio::time::timeout(Duration::from_secs(5), sub.ready()).await.expect("the watcher is woken");
        assert!(matches!(sub.try_next(), Next::Ended(Ended::Relisted)), "ended without sending what was left");
    }
}
