//! A SPDY/3.1 session over an async byte stream.
//!
//! Two tasks run a session. The reader task decodes frames from the
//! connection and dispatches them: new streams to [`Session::accept`], data
//! to each stream's bounded queue, replies to waiting [`Session::open`] and
//! [`Session::ping`] calls, PING answers back out. The writer task encodes
//! frames from one FIFO queue (so the zlib stream of header blocks and the
//! order of frames are the order they were queued) and writes them out.
//! Queued data frames hold permits of a per-session byte budget, so writers
//! wait while the connection is slow; control frames never wait, which keeps
//! the reader task from ever blocking on the writer.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::{CancellationToken, PollSemaphore};

use crate::frame::{
    DataFrame, Frame, FrameDecoder, FrameEncoder, GoAway, GoAwayStatus, Headers, Ping, RstStatus, RstStream, SynReply, SynStream, WindowUpdate,
};
use crate::Error;

/// Writes are cut into data frames of at most this many bytes.
pub const MAX_DATA_CHUNK: usize = 16 * 1024;

/// Data frames a stream's queue holds before the reader task waits for the
/// application to read (and so stops reading the connection).
const STREAM_QUEUE_FRAMES: usize = 8;

/// Bytes of data frames queued for the writer task, over all streams.
const SEND_BUDGET: usize = 256 * 1024;

/// The SPDY/3 default initial window; WINDOW_UPDATE is sent once half of it
/// has been consumed.
const WINDOW_UPDATE_THRESHOLD: u32 = 32 * 1024;

/// Streams opened by the peer that wait for [`Session::accept`].
const ACCEPT_QUEUE: usize = 32;

/// Which end of the connection this session is. The client opens streams
/// with odd ids and pings with odd ids; the server uses even ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// A message for the writer task.
enum Outgoing {
    Frame(Frame, Option<OwnedSemaphorePermit>),
    /// Send GOAWAY, flush, shut the connection's write side, end the session.
    Close,
}

/// The per-stream state the handles and the reader task share.
struct StreamState {
    id: u32,
    /// The status of a RST_STREAM from the peer (0: none).
    reset_by_peer: AtomicU32,
    /// This side has sent FIN or RST: no more data may be sent.
    local_done: AtomicBool,
}

/// The reader task's record of one stream.
struct Entry {
    /// None once the peer has finished (FIN or RST): the reader sees EOF.
    data: Option<mpsc::Sender<Bytes>>,
    /// Set while [`Session::open`] waits for SYN_REPLY.
    reply: Option<oneshot::Sender<Result<(), Error>>>,
    state: Arc<StreamState>,
}

struct Shared {
    role: Role,
    out: mpsc::UnboundedSender<Outgoing>,
    budget: Arc<Semaphore>,
    streams: Mutex<Streams>,
    pings: Mutex<HashMap<u32, oneshot::Sender<()>>>,
    next_ping_id: AtomicU32,
    incoming: tokio::sync::Mutex<mpsc::Receiver<Stream>>,
    /// Cancelled when the session has ended.
    closed: CancellationToken,
    /// The peer has sent GOAWAY.
    peer_went_away: AtomicBool,
}

struct Streams {
    map: HashMap<u32, Entry>,
    /// The id this side opens its next stream with.
    next_id: u32,
    /// The highest stream id the peer has opened.
    last_peer_id: u32,
}

impl Shared {
    fn send(&self, frame: Frame) {
        // Fails only once the writer task has ended; the session is over then.
        let _ = self.out.send(Outgoing::Frame(frame, None));
    }

    fn ours(&self, id: u32) -> bool {
        (id % 2 == 1) == (self.role == Role::Client)
    }
}

/// A SPDY/3.1 session. Cloning it gives another handle on the same session.
///
/// The session runs in two tokio tasks spawned by [`Session::new`]; it ends
/// when the connection reaches EOF or fails, or after [`Session::close`].
/// Then streams' readers see EOF, writes fail, [`Session::accept`] returns
/// `None` and [`Session::closed`] completes.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

impl Session {
    /// Starts a session over `io` (must be called within a tokio runtime).
    pub fn new<T>(io: T, role: Role) -> Session
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_QUEUE);
        let first = if role == Role::Client { 1 } else { 2 };
        let shared = Arc::new(Shared {
            role,
            out: out_tx,
            budget: Arc::new(Semaphore::new(SEND_BUDGET)),
            streams: Mutex::new(Streams { map: HashMap::new(), next_id: first, last_peer_id: 0 }),
            pings: Mutex::new(HashMap::new()),
            next_ping_id: AtomicU32::new(first),
            incoming: tokio::sync::Mutex::new(accept_rx),
            closed: CancellationToken::new(),
            peer_went_away: AtomicBool::new(false),
        });
        let (read_half, write_half) = tokio::io::split(io);
        tokio::spawn(reader_task(read_half, accept_tx, shared.clone()));
        tokio::spawn(writer_task(write_half, out_rx, shared.clone()));
        Session { shared }
    }

    /// This session's role.
    pub fn role(&self) -> Role {
        self.shared.role
    }

    /// The next stream the peer opens, replied to with SYN_REPLY (empty
    /// headers); `None` once the session has ended or the peer sent GOAWAY.
    pub async fn accept(&self) -> Option<Stream> {
        let stream = self.shared.incoming.lock().await.recv().await?;
        self.shared.send(Frame::SynReply(SynReply { stream_id: stream.id, fin: false, headers: Headers::new() }));
        Some(stream)
    }

    /// Opens a stream with `headers` (SYN_STREAM) and waits for the peer's
    /// SYN_REPLY.
    pub async fn open(&self, headers: Headers) -> Result<Stream, Error> {
        let shared = &self.shared;
        if shared.peer_went_away.load(Ordering::SeqCst) {
            return Err(Error::GoneAway);
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        let stream = {
            // Ids go out in increasing order: take one and queue its
            // SYN_STREAM under the same lock.
            let mut streams = shared.streams.lock().unwrap();
            // Checked under the lock: end_session cancels, then empties the
            // map under it, so an entry added here is never left behind.
            if shared.closed.is_cancelled() {
                return Err(Error::SessionClosed);
            }
            let id = streams.next_id;
            if id > 0x7fff_ffff {
                return Err(Error::StreamIdsExhausted);
            }
            streams.next_id += 2;
            let (stream, entry) = new_stream(shared, id, headers.clone(), Some(reply_tx));
            streams.map.insert(id, entry);
            shared.send(Frame::SynStream(SynStream { stream_id: id, associated_to: 0, priority: 0, slot: 0, fin: false, unidirectional: false, headers }));
            stream
        };
        match reply_rx.await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::SessionClosed),
        }
    }

    /// Sends a PING and waits for the peer to echo it; the round-trip time.
    pub async fn ping(&self) -> Result<Duration, Error> {
        let id = self.shared.next_ping_id.fetch_add(2, Ordering::SeqCst) & 0x7fff_ffff;
        let (tx, rx) = oneshot::channel();
        self.shared.pings.lock().unwrap().insert(id, tx);
        if self.shared.closed.is_cancelled() {
            return Err(Error::SessionClosed);
        }
        let start = Instant::now();
        self.shared.send(Frame::Ping(Ping { id }));
        rx.await.map_err(|_| Error::SessionClosed)?;
        Ok(start.elapsed())
    }

    /// Sends GOAWAY after the data already queued, then ends the session:
    /// the connection's write side is flushed and shut down, and both tasks
    /// stop. Returns once the session has ended.
    pub async fn close(&self) {
        if self.shared.out.send(Outgoing::Close).is_err() {
            self.shared.closed.cancel();
        }
        self.shared.closed.cancelled().await;
    }

    /// Completes when the session has ended.
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await;
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }
}

fn new_stream(shared: &Arc<Shared>, id: u32, headers: Headers, reply: Option<oneshot::Sender<Result<(), Error>>>) -> (Stream, Entry) {
    let (data_tx, data_rx) = mpsc::channel(STREAM_QUEUE_FRAMES);
    let state = Arc::new(StreamState { id, reset_by_peer: AtomicU32::new(0), local_done: AtomicBool::new(false) });
    let recv = RecvStream { state: state.clone(), rx: data_rx, buf: Bytes::new(), unacked: 0, out: shared.out.clone() };
    let send = SendStream { state: state.clone(), budget: PollSemaphore::new(shared.budget.clone()), shared: Arc::downgrade(shared) };
    (Stream { id, headers, recv, send }, Entry { data: Some(data_tx), reply, state })
}

async fn reader_task<R: AsyncRead + Unpin>(mut io: R, accept_tx: mpsc::Sender<Stream>, shared: Arc<Shared>) {
    let mut accept_tx = Some(accept_tx);
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let result: Result<(), Error> = async {
        loop {
            while let Some(frame) = decoder.decode(&mut buf)? {
                tokio::select! {
                    _ = dispatch(frame, &shared, &mut accept_tx) => {}
                    _ = shared.closed.cancelled() => return Ok(()),
                }
            }
            if buf.capacity() - buf.len() < 16 * 1024 {
                buf.reserve(64 * 1024);
            }
            let n = tokio::select! {
                n = io.read_buf(&mut buf) => n?,
                _ = shared.closed.cancelled() => return Ok(()),
            };
            if n == 0 {
                if !buf.is_empty() {
                    tracing::debug!(bytes = buf.len(), "SPDY connection ended inside a frame");
                }
                return Ok(());
            }
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "SPDY session failed reading");
    }
    end_session(&shared);
}

/// Ends the session: every stream's reader sees EOF, waiting opens and pings
/// fail, the writer task stops.
fn end_session(shared: &Shared) {
    shared.closed.cancel();
    let entries: Vec<Entry> = shared.streams.lock().unwrap().map.drain().map(|(_, e)| e).collect();
    drop(entries);
    shared.pings.lock().unwrap().clear();
}

async fn dispatch(frame: Frame, shared: &Arc<Shared>, accept_tx: &mut Option<mpsc::Sender<Stream>>) {
    match frame {
        Frame::SynStream(syn) => {
            let id = syn.stream_id;
            let refuse = |status| shared.send(Frame::RstStream(RstStream { stream_id: id, status }));
            let Some(tx) = accept_tx.clone() else {
                return refuse(RstStatus::REFUSED_STREAM);
            };
            let stream = {
                let mut streams = shared.streams.lock().unwrap();
                if id == 0 || shared.ours(id) || id <= streams.last_peer_id {
                    drop(streams);
                    return refuse(RstStatus::PROTOCOL_ERROR);
                }
                streams.last_peer_id = id;
                let (stream, mut entry) = new_stream(shared, id, syn.headers, None);
                if syn.fin {
                    entry.data = None;
                }
                streams.map.insert(id, entry);
                stream
            };
            if tx.send(stream).await.is_err() {
                refuse(RstStatus::REFUSED_STREAM);
            }
        }
        Frame::SynReply(reply) => {
            let mut streams = shared.streams.lock().unwrap();
            if let Some(entry) = streams.map.get_mut(&reply.stream_id) {
                if let Some(tx) = entry.reply.take() {
                    let _ = tx.send(Ok(()));
                }
                if reply.fin {
                    entry.data = None;
                    remove_if_done(&mut streams.map, reply.stream_id);
                }
            }
        }
        Frame::Data(data) => on_data(data, shared).await,
        Frame::RstStream(rst) => {
            let entry = shared.streams.lock().unwrap().map.remove(&rst.stream_id);
            if let Some(mut entry) = entry {
                entry.state.reset_by_peer.store(rst.status.0.max(1), Ordering::SeqCst);
                if let Some(tx) = entry.reply.take() {
                    let _ = tx.send(Err(Error::StreamReset { id: rst.stream_id, status: rst.status }));
                }
            }
        }
        Frame::Headers(h) => {
            if h.fin {
                let mut streams = shared.streams.lock().unwrap();
                if let Some(entry) = streams.map.get_mut(&h.stream_id) {
                    entry.data = None;
                    remove_if_done(&mut streams.map, h.stream_id);
                }
            }
        }
        Frame::Ping(ping) => {
            if shared.ours(ping.id) {
                if let Some(tx) = shared.pings.lock().unwrap().remove(&ping.id) {
                    let _ = tx.send(());
                }
            } else {
                shared.send(Frame::Ping(ping));
            }
        }
        Frame::GoAway(goaway) => {
            tracing::debug!(last_good_stream_id = goaway.last_good_stream_id, status = goaway.status.0, "SPDY peer sent GOAWAY");
            shared.peer_went_away.store(true, Ordering::SeqCst);
            // Streams already queued can still be accepted; then accept ends.
            *accept_tx = None;
            let mut streams = shared.streams.lock().unwrap();
            for (id, entry) in streams.map.iter_mut() {
                if *id > goaway.last_good_stream_id && shared.ours(*id) {
                    if let Some(tx) = entry.reply.take() {
                        let _ = tx.send(Err(Error::GoneAway));
                    }
                }
            }
        }
        // No send ever waits for a window (see the crate docs), so window
        // sizes are not tracked.
        Frame::WindowUpdate(_) | Frame::Settings(_) => {}
    }
}

async fn on_data(data: DataFrame, shared: &Arc<Shared>) {
    let id = data.stream_id;
    let tx = match shared.streams.lock().unwrap().map.get(&id) {
        Some(entry) => entry.data.clone(),
        None => {
            tracing::trace!(stream = id, "SPDY data for an unknown stream dropped");
            return;
        }
    };
    if let (Some(tx), false) = (tx, data.data.is_empty()) {
        // Waits while the stream's queue is full. An error means the
        // application dropped the reader: the data is not wanted.
        let _ = tx.send(data.data).await;
    }
    if data.fin {
        let mut streams = shared.streams.lock().unwrap();
        if let Some(entry) = streams.map.get_mut(&id) {
            entry.data = None;
            remove_if_done(&mut streams.map, id);
        }
    }
}

fn remove_if_done(map: &mut HashMap<u32, Entry>, id: u32) {
    if map.get(&id).is_some_and(|e| e.data.is_none() && e.reply.is_none() && e.state.local_done.load(Ordering::SeqCst)) {
        map.remove(&id);
    }
}

async fn writer_task<W: AsyncWrite + Unpin>(mut io: W, mut rx: mpsc::UnboundedReceiver<Outgoing>, shared: Arc<Shared>) {
    let mut encoder = FrameEncoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut permits = Vec::new();
    loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            _ = shared.closed.cancelled() => None,
        };
        let Some(mut message) = first else { break };
        let mut close = false;
        loop {
            match message {
                Outgoing::Frame(frame, permit) => {
                    if let Err(e) = encoder.encode(&frame, &mut buf) {
                        tracing::warn!(error = %e, "SPDY frame not sent");
                    }
                    permits.extend(permit);
                }
                Outgoing::Close => {
                    let last_good_stream_id = shared.streams.lock().unwrap().last_peer_id;
                    let goaway = Frame::GoAway(GoAway { last_good_stream_id, status: GoAwayStatus::OK });
                    let _ = encoder.encode(&goaway, &mut buf);
                    close = true;
                    break;
                }
            }
            if buf.len() >= 64 * 1024 {
                break;
            }
            match rx.try_recv() {
                Ok(next) => message = next,
                Err(_) => break,
            }
        }
        let written = tokio::select! {
            r = async {
                io.write_all(&buf).await?;
                io.flush().await
            } => r,
            _ = shared.closed.cancelled() => break,
        };
        buf.clear();
        permits.clear();
        if let Err(e) = written {
            tracing::debug!(error = %e, "SPDY session failed writing");
            break;
        }
        if close {
            let _ = io.shutdown().await;
            break;
        }
    }
    end_session(&shared);
}

/// One SPDY stream: its id, the headers it was opened with, its incoming
/// data ([`AsyncRead`]: EOF at the peer's FIN or RST, or the session's end)
/// and its outgoing data ([`AsyncWrite`]: writes become data frames of at
/// most [`MAX_DATA_CHUNK`] bytes; `shutdown` sends FIN).
///
/// [`Stream::split`] separates the two directions. Dropping the sending half
/// without `shutdown` or [`Stream::reset`] sends FIN too.
pub struct Stream {
    id: u32,
    headers: Headers,
    recv: RecvStream,
    send: SendStream,
}

impl Stream {
    /// The stream id (odd when the client opened it).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The headers of its SYN_STREAM (for port-forward: `streamtype`,
    /// `port`, `requestid`).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The receiving and sending halves.
    pub fn split(self) -> (RecvStream, SendStream) {
        (self.recv, self.send)
    }

    /// Resets the stream (RST_STREAM with `status`): both directions end.
    pub fn reset(&mut self, status: RstStatus) {
        self.send.reset(status);
    }

    /// The status of the RST_STREAM the peer sent, if it did.
    pub fn reset_by_peer(&self) -> Option<RstStatus> {
        self.recv.reset_by_peer()
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("id", &self.id).field("headers", &self.headers).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("role", &self.shared.role).field("closed", &self.is_closed()).finish_non_exhaustive()
    }
}

impl AsyncRead for Stream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.send).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_shutdown(cx)
    }
}

/// The receiving half of a [`Stream`]. As data is read it sends
/// WINDOW_UPDATE frames for the stream and the session.
pub struct RecvStream {
    state: Arc<StreamState>,
    rx: mpsc::Receiver<Bytes>,
    buf: Bytes,
    unacked: u32,
    out: mpsc::UnboundedSender<Outgoing>,
}

impl RecvStream {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.state.id
    }

    /// The status of the RST_STREAM the peer sent, if it did.
    pub fn reset_by_peer(&self) -> Option<RstStatus> {
        match self.state.reset_by_peer.load(Ordering::SeqCst) {
            0 => None,
            n => Some(RstStatus(n)),
        }
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.buf.is_empty() {
            match ready!(this.rx.poll_recv(cx)) {
                Some(data) => this.buf = data,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.buf.len().min(buf.remaining());
        buf.put_slice(&this.buf.split_to(n));
        this.unacked += n as u32;
        if this.unacked >= WINDOW_UPDATE_THRESHOLD {
            let delta = std::mem::take(&mut this.unacked);
            for stream_id in [this.state.id, 0] {
                let _ = this.out.send(Outgoing::Frame(Frame::WindowUpdate(WindowUpdate { stream_id, delta }), None));
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The sending half of a [`Stream`].
pub struct SendStream {
    state: Arc<StreamState>,
    budget: PollSemaphore,
    shared: Weak<Shared>,
}

impl SendStream {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.state.id
    }

    /// Resets the stream (RST_STREAM with `status`): both directions end.
    pub fn reset(&mut self, status: RstStatus) {
        self.state.local_done.store(true, Ordering::SeqCst);
        if let Some(shared) = self.shared.upgrade() {
            shared.send(Frame::RstStream(RstStream { stream_id: self.state.id, status }));
            let mut streams = shared.streams.lock().unwrap();
            if let Some(entry) = streams.map.remove(&self.state.id) {
                if let Some(tx) = entry.reply {
                    let _ = tx.send(Err(Error::StreamReset { id: self.state.id, status }));
                }
            }
        }
    }

    fn check_open(&self) -> io::Result<()> {
        if let n @ 1.. = self.state.reset_by_peer.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, format!("SPDY stream {} was reset by the peer: {}", self.state.id, RstStatus(n))));
        }
        if self.state.local_done.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, format!("SPDY stream {} is closed for sending", self.state.id)));
        }
        Ok(())
    }

    fn queue(&self, data: Bytes, fin: bool, permit: Option<OwnedSemaphorePermit>) -> io::Result<()> {
        let closed = || io::Error::new(io::ErrorKind::BrokenPipe, "the SPDY session is closed");
        let shared = self.shared.upgrade().ok_or_else(closed)?;
        if shared.closed.is_cancelled() {
            return Err(closed());
        }
        shared.out.send(Outgoing::Frame(Frame::Data(DataFrame { stream_id: self.state.id, fin, data }), permit)).map_err(|_| closed())
    }

    fn send_fin(&self) -> io::Result<()> {
        if self.state.local_done.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let result = self.queue(Bytes::new(), true, None);
        if let Some(shared) = self.shared.upgrade() {
            let mut streams = shared.streams.lock().unwrap();
            remove_if_done(&mut streams.map, self.state.id);
        }
        result
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.check_open()?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_DATA_CHUNK);
        let Some(permit) = ready!(self.budget.poll_acquire_many(cx, n as u32)) else {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "the SPDY session is closed")));
        };
        // A reset may have come while waiting.
        self.check_open()?;
        self.queue(Bytes::copy_from_slice(&buf[..n]), false, Some(permit))?;
        Poll::Ready(Ok(n))
    }

    /// Data is queued for the session's writer task, which flushes the
    /// connection whenever its queue runs empty: nothing to do here.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Sends FIN (an empty data frame with FLAG_FIN) once.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.state.reset_by_peer.load(Ordering::SeqCst) != 0 {
            return Poll::Ready(Ok(()));
        }
        Poll::Ready(self.send_fin())
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        if self.state.reset_by_peer.load(Ordering::SeqCst) == 0 {
            let _ = self.send_fin();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use tokio::io::{duplex, DuplexStream};
    use tokio::time::timeout;

    use super::*;
    use crate::frame::SynStream;

    /// Awaits `f`, failing the test with what was awaited after a deadline.
    async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
        match timeout(Duration::from_secs(30), f).await {
            Ok(v) => v,
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }

    fn pattern(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn pair() -> (Session, Session) {
        let (a, b) = duplex(64 * 1024);
        (Session::new(a, Role::Client), Session::new(b, Role::Server))
    }

    fn hdrs(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    async fn read_to_end(r: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.expect("reading a stream");
        out
    }

    /// The server side of most tests, per stream by its `mode` header. echo:
    /// copy back what comes until FIN, then FIN. count: after the peer's
    /// FIN, say how many bytes came. big: send 8 MiB of `pattern(2, _)`
    /// while reading 8 MiB, then reset the stream if they were not
    /// `pattern(1, _)`. reset: reset after one byte.
    fn serve(server: Session) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            while let Some(stream) = server.accept().await {
                tokio::spawn(async move {
                    let mode = stream.headers().get("mode").unwrap_or_default().to_string();
                    let (mut recv, mut send) = stream.split();
                    match mode.as_str() {
                        "echo" => {
                            tokio::io::copy(&mut recv, &mut send).await.expect("echo");
                            send.shutdown().await.expect("FIN after echo");
                        }
                        "count" => {
                            // Half-close: answer only after the peer's FIN.
                            let got = read_to_end(&mut recv).await;
                            send.write_all(format!("got {} bytes", got.len()).as_bytes()).await.expect("answer");
                            send.shutdown().await.expect("FIN");
                        }
                        "big" => {
                            let size: usize = 8 << 20;
                            let (got, sent) = tokio::join!(read_to_end(&mut recv), async {
                                send.write_all(&pattern(2, size)).await?;
                                send.shutdown().await
                            });
                            sent.expect("sending 8 MiB");
                            if got != pattern(1, size) {
                                send.reset(RstStatus::INTERNAL_ERROR);
                            }
                        }
                        "reset" => {
                            let mut one = [0u8; 1];
                            recv.read_exact(&mut one).await.expect("a byte before resetting");
                            send.reset(RstStatus::CANCEL);
                        }
                        other => panic!("unknown mode {other:?}"),
                    }
                });
            }
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_run_concurrently_both_ways() {
        let (client, server) = pair();
        serve(server);

        let big = {
            let client = client.clone();
            tokio::spawn(async move {
                let stream = client.open(hdrs(&[("mode", "big")])).await.expect("opening the big stream");
                let id = stream.id();
                let (mut recv, mut send) = stream.split();
                let (got, sent) = tokio::join!(read_to_end(&mut recv), async {
                    send.write_all(&pattern(1, 8 << 20)).await?;
                    send.shutdown().await
                });
                sent.expect("sending 8 MiB");
                assert!(got == pattern(2, 8 << 20), "the 8 MiB from the server differ ({} bytes)", got.len());
                assert_eq!(recv.reset_by_peer(), None, "the server found the 8 MiB it got wrong");
                id
            })
        };
        let echoes: Vec<_> = (0..6u64)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    let stream = client.open(hdrs(&[("mode", "echo"), ("requestid", &i.to_string())])).await.expect("opening an echo stream");
                    let payload = pattern(10 + i, 100_000 * (i as usize + 1));
                    let (mut recv, mut send) = stream.split();
                    let (got, sent) = tokio::join!(read_to_end(&mut recv), async {
                        send.write_all(&payload).await?;
                        send.shutdown().await
                    });
                    sent.expect("sending");
                    assert!(got == payload, "echo {i} differs");
                })
            })
            .collect();
        for echo in echoes {
            within("the echo streams", echo).await.expect("echo task");
        }
        let big_id = within("the 8 MiB both ways", big).await.expect("big task");
        assert_eq!(big_id % 2, 1, "client stream ids are odd");
        assert!(within("a ping", client.ping()).await.is_ok());
    }

    #[tokio::test]
    async fn half_close_then_answer() {
        let (client, server) = pair();
        serve(server);
        let mut stream = within("SYN_REPLY", client.open(hdrs(&[("mode", "count")]))).await.expect("open");
        stream.write_all(&[5u8; 40_000]).await.unwrap();
        stream.shutdown().await.unwrap();
        assert!(stream.write_all(b"more").await.is_err(), "writing after FIN fails");
        let answer = within("the answer after FIN", read_to_end(&mut stream)).await;
        assert_eq!(answer, b"got 40000 bytes");
    }

    #[tokio::test]
    async fn resets_both_ways() {
        let (client, server) = pair();
        serve(server.clone());

        // The server resets: the client's reader ends, writes fail.
        let mut stream = within("SYN_REPLY", client.open(hdrs(&[("mode", "reset")]))).await.expect("open");
        stream.write_all(b"x").await.unwrap();
        let rest = within("EOF after the server's RST", read_to_end(&mut stream)).await;
        assert!(rest.is_empty());
        assert_eq!(stream.reset_by_peer(), Some(RstStatus::CANCEL));
        let err = stream.write_all(b"after").await.expect_err("a write after RST");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);

        // The client resets a stream the server reads: the server's reader ends.
        let (client2, server2) = pair();
        let accepted = tokio::spawn(async move { server2.accept().await });
        let mut mine = within("SYN_REPLY", client2.open(hdrs(&[("mode", "manual")]))).await.expect("open");
        let mut theirs = within("accept", accepted).await.unwrap().expect("a stream");
        mine.write_all(b"abc").await.unwrap();
        let mut three = [0u8; 3];
        within("data before the RST", theirs.read_exact(&mut three)).await.unwrap();
        mine.reset(RstStatus::CANCEL);
        assert!(within("EOF after the client's RST", read_to_end(&mut theirs)).await.is_empty());
        assert_eq!(theirs.reset_by_peer(), Some(RstStatus::CANCEL));
        assert_eq!(mine.write_all(b"x").await.expect_err("writing after our RST").kind(), io::ErrorKind::BrokenPipe);
        drop(server);
    }

    #[tokio::test]
    async fn pings_both_ways() {
        let (client, server) = pair();
        within("the server's answer to a client PING", client.ping()).await.expect("client ping");
        within("the client's answer to a server PING", server.ping()).await.expect("server ping");
        within("a second client PING", client.ping()).await.expect("client ping");
    }

    /// A raw peer in place of a client: writes frames itself and reads the
    /// server's, then hangs up.
    struct RawPeer {
        io: DuplexStream,
        encoder: FrameEncoder,
        decoder: FrameDecoder,
        buf: BytesMut,
    }

    impl RawPeer {
        fn new() -> (RawPeer, Session) {
            let (a, b) = duplex(64 * 1024);
            let peer = RawPeer { io: a, encoder: FrameEncoder::new(), decoder: FrameDecoder::new(), buf: BytesMut::new() };
            (peer, Session::new(b, Role::Server))
        }

        async fn send(&mut self, frame: Frame) {
            let mut wire = BytesMut::new();
            self.encoder.encode(&frame, &mut wire).unwrap();
            self.io.write_all(&wire).await.unwrap();
        }

        async fn next(&mut self) -> Option<Frame> {
            loop {
                if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                    return Some(frame);
                }
                if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                    return None;
                }
            }
        }

        fn syn(id: u32, headers: Headers) -> Frame {
            Frame::SynStream(SynStream { stream_id: id, associated_to: 0, priority: 0, slot: 0, fin: false, unidirectional: false, headers })
        }
    }

    fn data(stream_id: u32, fin: bool, bytes: &[u8]) -> Frame {
        Frame::Data(DataFrame { stream_id, fin, data: Bytes::copy_from_slice(bytes) })
    }

    #[tokio::test]
    async fn session_ends_at_eof() {
        let (mut peer, server) = RawPeer::new();
        let port_forward = hdrs(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")]);
        peer.send(RawPeer::syn(1, port_forward.clone())).await;
        peer.send(data(1, false, b"hello")).await;
        let mut stream = within("accept", server.accept()).await.expect("a stream");
        assert_eq!((stream.id(), stream.headers()), (1, &port_forward));
        let reply = within("SYN_REPLY", peer.next()).await;
        assert_eq!(reply, Some(Frame::SynReply(SynReply { stream_id: 1, fin: false, headers: Headers::new() })));

        let pending = {
            let server = server.clone();
            tokio::spawn(async move { server.accept().await.is_none() })
        };
        drop(peer);
        assert_eq!(within("the data, then EOF", read_to_end(&mut stream)).await, b"hello");
        within("the session's end", server.closed()).await;
        assert!(within("accept's None", pending).await.unwrap(), "accept yields nothing after EOF");
        assert!(matches!(server.open(Headers::new()).await, Err(Error::SessionClosed)));
        assert!(stream.write_all(b"late").await.is_err(), "writing after the session ended");
    }

    /// The peer never sends WINDOW_UPDATE (as spdystream): the server still
    /// sends far beyond the 64 KiB window, and it sends WINDOW_UPDATEs for
    /// what its application read.
    #[tokio::test]
    async fn sends_ignore_windows_and_reads_update_them() {
        let (mut peer, server) = RawPeer::new();
        peer.send(RawPeer::syn(1, Headers::new())).await;
        let stream = within("accept", server.accept()).await.expect("a stream");
        let (mut recv, mut send) = stream.split();
        let payload = pattern(7, 1 << 20);
        let writer = tokio::spawn(async move {
            send.write_all(&payload).await.unwrap();
            send.shutdown().await.unwrap();
        });

        let reader = tokio::spawn(async move { read_to_end(&mut recv).await.len() });
        // 100 KiB in spdystream-sized 32 KiB frames, then FIN.
        for chunk in pattern(8, 100 * 1024).chunks(32 * 1024) {
            peer.send(data(1, false, chunk)).await;
        }
        peer.send(data(1, true, b"")).await;

        let (mut received, mut fin, mut updates) = (Vec::new(), false, Vec::new());
        while !fin {
            match within("the server's frames", peer.next()).await.expect("a frame before EOF") {
                Frame::SynReply(_) => {}
                Frame::Data(d) => {
                    assert!(d.data.len() <= MAX_DATA_CHUNK);
                    received.extend_from_slice(&d.data);
                    fin = d.fin;
                }
                Frame::WindowUpdate(w) => updates.push((w.stream_id, w.delta)),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(received == pattern(7, 1 << 20), "1 MiB sent without any WINDOW_UPDATE from the peer");
        within("the writer", writer).await.unwrap();
        assert_eq!(within("the reader", reader).await.unwrap(), 100 * 1024);
        // Updates sent before the last data frame were already collected;
        // those after it arrive next.
        let wait_updates = |updates: &Vec<(u32, u32)>, id| updates.iter().filter(|(s, _)| *s == id).map(|(_, d)| d).sum::<u32>();
        while wait_updates(&updates, 1) < 96 * 1024 || wait_updates(&updates, 0) < 96 * 1024 {
            match within("WINDOW_UPDATEs for 96 KiB read", peer.next()).await.expect("a frame") {
                Frame::WindowUpdate(w) => updates.push((w.stream_id, w.delta)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// A stream nobody reads: the sender is held back after a bounded amount
    /// (with the clock paused, the timeout fires only when every task waits),
    /// and all of it arrives once the reader starts.
    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_holds_the_sender_back() {
        let (client, server) = pair();
        let accepted = tokio::spawn(async move { server.accept().await });
        let stream = within("SYN_REPLY", client.open(Headers::new())).await.expect("open");
        let theirs = within("accept", accepted).await.unwrap().expect("a stream");
        let (_, mut send) = stream.split();

        let payload = pattern(3, 8 << 20);
        let mut sent = 0;
        while sent < payload.len() {
            match timeout(Duration::from_secs(5), send.write(&payload[sent..])).await {
                Ok(n) => sent += n.expect("write"),
                Err(_) => break,
            }
        }
        assert!(sent < 1 << 20, "{sent} bytes were taken with nobody reading");

        let writer = tokio::spawn(async move {
            send.write_all(&payload[sent..]).await.unwrap();
            send.shutdown().await.unwrap();
        });
        let (mut recv, _send) = theirs.split();
        let got = within("8 MiB once read", read_to_end(&mut recv)).await;
        assert!(got == pattern(3, 8 << 20));
        within("the writer", writer).await.unwrap();
    }

    #[tokio::test]
    async fn goaway_ends_the_session() {
        let (client, server) = pair();
        let accepted = tokio::spawn({
            let server = server.clone();
            async move { server.accept().await }
        });
        let mut stream = within("SYN_REPLY", client.open(Headers::new())).await.expect("open");
        let mut theirs = within("accept", accepted).await.unwrap().expect("a stream");
        stream.write_all(b"last words").await.unwrap();
        within("close", client.close()).await;
        assert!(within("accept's None after GOAWAY", server.accept()).await.is_none());
        within("the server session's end", server.closed()).await;
        // The data queued before GOAWAY arrived.
        assert_eq!(within("the data sent before GOAWAY", read_to_end(&mut theirs)).await, b"last words");
        assert!(matches!(client.open(Headers::new()).await, Err(Error::SessionClosed)));
    }

    #[tokio::test]
    async fn dropping_a_send_half_sends_fin() {
        let (client, server) = pair();
        let accepted = tokio::spawn(async move { server.accept().await });
        let stream = within("SYN_REPLY", client.open(Headers::new())).await.expect("open");
        let mut theirs = within("accept", accepted).await.unwrap().expect("a stream");
        let (_recv, mut send) = stream.split();
        send.write_all(b"bye").await.unwrap();
        drop(send);
        assert_eq!(within("FIN from a dropped half", read_to_end(&mut theirs)).await, b"bye");
    }
}
