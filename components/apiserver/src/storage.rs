//! etcd, the only place the apiserver keeps anything. Objects are stored as
//! JSON under upstream's keys (`/registry/pods/<ns>/<name>`), so `etcdctl get`
//! shows them readably. Every write is one transaction conditioned on the
//! key's revision: a stale write fails whole, nothing is half-written.

use etcd_client::{Client, Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse};

/// One stored value and the revision that last wrote it (the object's
/// resourceVersion).
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// What a conditional write found instead of what it expected.
#[derive(Debug)]
pub enum WriteError {
    /// Create: the key exists.
    Exists,
    /// Update/delete: the key is gone.
    Missing,
    /// Update/delete: the key was written since the revision given; here is
    /// what it holds now.
    Changed(Stored),
    /// A claim key (an allocated Service IP or node port) is taken.
    Claimed(String),
    Etcd(String),
}

#[derive(Debug)]
pub enum ReadError {
    /// The revision asked for has been compacted away.
    Compacted,
    /// The revision asked for is newer than etcd's.
    Future,
    Etcd(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Compacted => write!(f, "the requested revision has been compacted"),
            ReadError::Future => write!(f, "the requested revision is newer than the store's"),
            ReadError::Etcd(e) => write!(f, "etcd: {e}"),
        }
    }
}

fn read_error(e: etcd_client::Error) -> ReadError {
    let text = e.to_string();
    if text.contains("required revision has been compacted") {
        ReadError::Compacted
    } else if text.contains("future revision") {
        ReadError::Future
    } else {
        ReadError::Etcd(text)
    }
}

fn stored(kv: &etcd_client::KeyValue) -> Stored {
    Stored { key: String::from_utf8_lossy(kv.key()).into_owned(), value: kv.value().to_vec(), mod_revision: kv.mod_revision() }
}

/// One page of a range read.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Stored>,
    /// The revision the read saw (a list's resourceVersion).
    pub revision: i64,
    /// More keys follow the last item.
    pub more: bool,
    /// How many keys the whole range holds at that revision.
    pub count: i64,
}

const MAX_MESSAGE: usize = i32::MAX as usize;

/// What a unary etcd call that outlived its deadline fails with, in the
/// words of Go's context package, as upstream's etcd client reports it.
pub const DEADLINE_EXCEEDED: &str = "context deadline exceeded";

/// How long a unary etcd call may take unless told otherwise: upstream's
/// `--request-timeout`, the bound of the requests these calls serve.
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Clone)]
pub struct Etcd {
    client: Client,
    /// Every unary call is bounded by this, so that a stalled etcd answers
    /// with an error instead of holding a request (or a background task,
    /// or a long-running request that no request timeout bounds) forever.
    request_timeout: std::time::Duration,
}

/// Bounds one etcd call by `limit`.
async fn bounded<T>(limit: std::time::Duration, call: impl std::future::Future<Output = Result<T, etcd_client::Error>>) -> Result<T, CallError> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(CallError::Etcd(e)),
        Err(_) => Err(CallError::DeadlineExceeded),
    }
}

/// Why an etcd call failed.
enum CallError {
    Etcd(etcd_client::Error),
    DeadlineExceeded,
}

impl From<CallError> for ReadError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Etcd(e) => read_error(e),
            CallError::DeadlineExceeded => ReadError::Etcd(DEADLINE_EXCEEDED.into()),
        }
    }
}

impl From<CallError> for WriteError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Etcd(e) => WriteError::Etcd(e.to_string()),
            CallError::DeadlineExceeded => WriteError::Etcd(DEADLINE_EXCEEDED.into()),
        }
    }
}

/// How the apiserver speaks TLS to etcd, as upstream's `--etcd-cafile`,
/// `--etcd-certfile` and `--etcd-keyfile` say: the CA the members'
/// certificates are checked against, and the client certificate etcd asks
/// for. Read once at start, so a missing file is an error at once rather
/// than a retried connection.
#[derive(Debug, Clone, Default)]
pub struct EtcdTls {
    ca_pem: Option<Vec<u8>>,
    identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl EtcdTls {
    /// None when no file is given: plain http, as upstream without them.
    pub fn from_files(ca: Option<&std::path::Path>, cert: Option<&std::path::Path>, key: Option<&std::path::Path>) -> anyhow::Result<Option<EtcdTls>> {
        let read = |what: &str, path: &std::path::Path| std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read the etcd {what} {}: {e}", path.display()));
        let identity_pem = match (cert, key) {
            (Some(cert), Some(key)) => Some((read("client certificate", cert)?, read("client key", key)?)),
            (None, None) => None,
            _ => anyhow::bail!("--etcd-certfile and --etcd-keyfile go together"),
        };
        let ca_pem = ca.map(|ca| read("CA", ca)).transpose()?;
        Ok((ca_pem.is_some() || identity_pem.is_some()).then_some(EtcdTls { ca_pem, identity_pem }))
    }

    /// `options` speaking this TLS (to https:// endpoints only).
    pub fn apply(&self, options: etcd_client::ConnectOptions) -> etcd_client::ConnectOptions {
        let mut tls = etcd_client::TlsOptions::new();
        if let Some(ca) = &self.ca_pem {
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &self.identity_pem {
            tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
        }
        options.with_tls(tls)
    }
}

impl Etcd {
    /// A plain-http connection (the tests' etcd on loopback).
    pub async fn connect(endpoints: &[String]) -> anyhow::Result<Self> {
        Self::connect_with(endpoints, None).await
    }

    /// A connection, over TLS when `tls` is given.
    pub async fn connect_with(endpoints: &[String], tls: Option<&EtcdTls>) -> anyhow::Result<Self> {
        let mut options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(5))
            .with_keep_alive(std::time::Duration::from_secs(10), std::time::Duration::from_secs(5));
        if let Some(tls) = tls {
            options = tls.apply(options);
        }
        let client = Client::connect(endpoints, Some(options)).await.map_err(|e| anyhow::anyhow!("cannot reach etcd at {}: {e}", endpoints.join(",")))?;
        Ok(Etcd { client, request_timeout: DEFAULT_REQUEST_TIMEOUT })
    }

    /// The same connection with unary calls bounded by `limit`.
    pub fn with_request_timeout(mut self, limit: std::time::Duration) -> Self {
        self.request_timeout = limit;
        self
    }

    /// `call`, bounded by the request timeout.
    async fn call<T>(&self, call: impl std::future::Future<Output = Result<T, etcd_client::Error>>) -> Result<T, CallError> {
        bounded(self.request_timeout, call).await
    }

    /// gRPC's default 4 MiB message limit would fail a list of a few
    /// thousand pods; upstream lifts it the same way.
    fn kv(&self) -> KvClient {
        self.client.kv_client().max_decoding_message_size(MAX_MESSAGE)
    }

    pub fn watch_client(&self) -> etcd_client::WatchClient {
        self.client.watch_client().max_decoding_message_size(MAX_MESSAGE)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Stored>, ReadError> {
        let resp = self.call(self.kv().get(key, None)).await?;
        Ok(resp.kvs().first().map(stored))
    }

    /// Keys from `start` (inclusive) to the end of `prefix`, at `revision`
    /// (0 = now), at most `limit` of them (0 = all).
    pub async fn range(&self, prefix: &str, start: &str, revision: i64, limit: i64) -> Result<Page, ReadError> {
        let end = prefix_end(prefix);
        let from = if start.is_empty() { prefix } else { start };
        let mut options = GetOptions::new().with_range(end).with_limit(limit);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let resp = self.call(self.kv().get(from, Some(options))).await?;
        Ok(Page {
            items: resp.kvs().iter().map(stored).collect(),
            revision: resp.header().map(|h| h.revision()).unwrap_or_default(),
            more: resp.more(),
            count: resp.count(),
        })
    }

    /// Drops history older than `revision` (objects stay; old versions go).
    pub async fn compact(&self, revision: i64) -> Result<(), ReadError> {
        match self.call(self.kv().compact(revision, None)).await {
            Ok(_) => Ok(()),
            // Another apiserver got there first: the history is gone either way.
            Err(CallError::Etcd(e)) if e.to_string().contains("required revision has been compacted") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every `interval`, compacts to the revision seen one interval before,
    /// as upstream's apiserver does, so etcd's history stays bounded while
    /// recent versions (continue tokens, watches) stay readable.
    pub async fn compact_every(self, interval: std::time::Duration) {
        let mut previous: Option<i64> = None;
        loop {
            tokio::time::sleep(interval).await;
            if let Some(r) = previous {
                match self.compact(r).await {
                    Ok(()) => tracing::info!("compacted etcd history up to revision {r}"),
                    Err(e) => tracing::warn!("compacting etcd to {r} failed: {e}"),
                }
            }
            previous = self.revision().await.ok();
        }
    }

    /// The store's current revision.
    pub async fn revision(&self) -> Result<i64, ReadError> {
        let resp = self.call(self.kv().get("/registry/", Some(GetOptions::new().with_limit(1).with_keys_only()))).await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }

    /// Writes `value` at `key` only if the key does not exist, and takes
    /// the `claims` (keys naming what the object holds exclusively) in the
    /// same transaction, only if none is taken.
    /// `lease`, when given, is the etcd lease the key expires with.
    pub async fn create(&self, key: &str, value: Vec<u8>, claims: &[String], lease: Option<i64>) -> Result<i64, WriteError> {
        let mut when = vec![Compare::create_revision(key, CompareOp::Equal, 0)];
        let mut then = vec![TxnOp::put(key, value, lease.map(|l| etcd_client::PutOptions::new().with_lease(l)))];
        let mut check = vec![TxnOp::get(key, None)];
        for c in claims {
            when.push(Compare::create_revision(c.as_str(), CompareOp::Equal, 0));
            then.push(TxnOp::put(c.as_str(), key, None));
            check.push(TxnOp::get(c.as_str(), None));
        }
        let resp = self.call(self.kv().txn(Txn::new().when(when).and_then(then).or_else(check))).await?;
        if resp.succeeded() {
            return Ok(resp.header().map(|h| h.revision()).unwrap_or_default());
        }
        let found = gets(&resp);
        if found.first().is_some_and(Option::is_some) {
            return Err(WriteError::Exists);
        }
        Err(claimed(&found[1..], claims))
    }

    /// Writes `value` at `key` only if the key was last written at
    /// `revision`, taking the claims in `take` (only if free) and freeing
    /// those in `free`, all in one transaction.
    pub async fn update(&self, key: &str, value: Vec<u8>, revision: i64, take: &[String], free: &[String], lease: Option<i64>) -> Result<i64, WriteError> {
        let mut then = vec![TxnOp::put(key, value, lease.map(|l| etcd_client::PutOptions::new().with_lease(l)))];
        then.extend(take.iter().map(|c| TxnOp::put(c.as_str(), key, None)));
        then.extend(free.iter().map(|c| TxnOp::delete(c.as_str(), None)));
        self.conditional(key, revision, then, take).await
    }

    /// Deletes `key` only if it was last written at `revision`, and frees
    /// its claims.
    pub async fn delete(&self, key: &str, revision: i64, free: &[String]) -> Result<i64, WriteError> {
        let mut then = vec![TxnOp::delete(key, None)];
        then.extend(free.iter().map(|c| TxnOp::delete(c.as_str(), None)));
        self.conditional(key, revision, then, &[]).await
    }

    async fn conditional(&self, key: &str, revision: i64, then: Vec<TxnOp>, take: &[String]) -> Result<i64, WriteError> {
        let mut when = vec![Compare::mod_revision(key, CompareOp::Equal, revision)];
        let mut check = vec![TxnOp::get(key, None)];
        for c in take {
            when.push(Compare::create_revision(c.as_str(), CompareOp::Equal, 0));
            check.push(TxnOp::get(c.as_str(), None));
        }
        let resp = self.call(self.kv().txn(Txn::new().when(when).and_then(then).or_else(check))).await?;
        if resp.succeeded() {
            return Ok(resp.header().map(|h| h.revision()).unwrap_or_default());
        }
        let found = gets(&resp);
        match found.first() {
            Some(Some(current)) if current.mod_revision != revision => Err(WriteError::Changed(current.clone())),
            Some(Some(_)) => Err(claimed(&found[1..], take)),
            _ => Err(WriteError::Missing),
        }
    }

    /// A new etcd lease of `ttl` seconds: keys put under it go when it
    /// expires.
    pub async fn grant(&self, ttl: i64) -> Result<i64, WriteError> {
        let lease = self.call(self.client.lease_client().grant(ttl, None)).await?;
        Ok(lease.id())
    }

    /// Puts `value` at `key` under a new etcd lease of `ttl` seconds: the
    /// key goes by itself unless it is put again in time.
    pub async fn put_expiring(&self, key: &str, value: Vec<u8>, ttl: i64) -> Result<(), WriteError> {
        let options = etcd_client::PutOptions::new().with_lease(self.grant(ttl).await?);
        self.call(self.kv().put(key, value, Some(options))).await?;
        Ok(())
    }

    /// Deletes `key`, whatever its revision.
    pub async fn remove(&self, key: &str) -> Result<(), WriteError> {
        self.call(self.kv().delete(key, None)).await?;
        Ok(())
    }

    /// The claim keys in use under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, ReadError> {
        let options = GetOptions::new().with_range(prefix_end(prefix)).with_keys_only();
        let resp = self.call(self.kv().get(prefix, Some(options))).await?;
        Ok(resp.kvs().iter().map(|kv| String::from_utf8_lossy(kv.key()).into_owned()).collect())
    }
}

/// What each get of a failed transaction's else-branch found, in order.
fn gets(resp: &etcd_client::TxnResponse) -> Vec<Option<Stored>> {
    resp.op_responses()
        .into_iter()
        .filter_map(|op| match op {
            TxnOpResponse::Get(get) => Some(get.kvs().first().map(stored)),
            _ => None,
        })
        .collect()
}

/// The first claim found taken.
fn claimed(found: &[Option<Stored>], claims: &[String]) -> WriteError {
    match found.iter().zip(claims).find(|(f, _)| f.is_some()) {
        Some((_, c)) => WriteError::Claimed(c.clone()),
        None => WriteError::Etcd("the transaction failed on no condition it checked".into()),
    }
}

/// The first key after every key that starts with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Leases for keys that expire (events), as upstream's lease manager hands
/// them out: writes within a short window share one lease, granted for the
/// TTL plus that window, so a burst of events costs one lease, not one each.
pub struct ExpiringLeases {
    ttl: std::time::Duration,
    current: tokio::sync::Mutex<Option<(i64, std::time::Instant)>>,
}

impl ExpiringLeases {
    pub fn new(ttl: std::time::Duration) -> Self {
        ExpiringLeases { ttl, current: tokio::sync::Mutex::new(None) }
    }

    /// Upstream's window: 5% of the TTL, at most a minute.
    fn reuse(&self) -> std::time::Duration {
        (self.ttl / 20).min(std::time::Duration::from_secs(60))
    }

    pub async fn lease(&self, etcd: &Etcd) -> Result<i64, WriteError> {
        let mut current = self.current.lock().await;
        if let Some((id, granted)) = *current {
            if granted.elapsed() < self.reuse() {
                return Ok(id);
            }
        }
        let ttl = (self.ttl + self.reuse()).as_secs().max(1) as i64;
        let id = etcd.grant(ttl).await?;
        *current = Some((id, std::time::Instant::now()));
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_never_answers_fails_at_its_deadline() {
        let never = std::future::pending::<Result<(), etcd_client::Error>>();
        let failed = bounded(std::time::Duration::from_millis(10), never).await.expect_err("the deadline passes");
        match ReadError::from(failed) {
            ReadError::Etcd(why) => assert_eq!(why, DEADLINE_EXCEEDED),
            other => panic!("expected the deadline's error, got {other}"),
        }
        let answered = bounded(std::time::Duration::from_secs(5), async { Ok::<_, etcd_client::Error>(7) }).await;
        assert!(matches!(answered, Ok(7)));
    }
}
