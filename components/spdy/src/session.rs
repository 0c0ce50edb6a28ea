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
