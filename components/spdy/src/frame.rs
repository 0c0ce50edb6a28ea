//! SPDY/3 frames: their types, the header block compression, and an encoder
//! and decoder over byte buffers.
//!
//! Every frame starts with 8 bytes. A control frame: a 1 bit, the 15-bit
//! version (3), the 16-bit type, 8 bits of flags and a 24-bit length. A data
//! frame: a 0 bit, the 31-bit stream id, 8 bits of flags (FIN = 1) and a
//! 24-bit length. All integers are big-endian.
//!
//! SYN_STREAM, SYN_REPLY and HEADERS carry a name/value header block: a 32-bit
//! count, then per entry a 32-bit length and the name, a 32-bit length and the
//! value. The block is zlib-compressed with [`HEADER_DICTIONARY`] as preset
//! dictionary, and all blocks one endpoint sends in a session form ONE zlib
//! stream: each block ends with a sync flush, and the next block continues
//! the same stream. So a [`FrameEncoder`] and a [`FrameDecoder`] hold that
//! state and live as long as one direction of a session; frames must be
//! decoded in the order they were encoded.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use crate::dictionary::HEADER_DICTIONARY;
use crate::Error;

/// The protocol version this crate speaks (SPDY/3 framing, with 3.1's
/// session-level WINDOW_UPDATE).
pub const VERSION: u16 = 3;

/// The largest payload the 24-bit length field of a frame can state.
pub const MAX_FRAME_PAYLOAD: usize = 0xff_ffff;

/// A decoded header block larger than this is refused (a guard against
/// compression bombs; real blocks here are a few hundred bytes).
pub const MAX_HEADER_BLOCK: usize = 1 << 20;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;
const FLAG_SETTINGS_CLEAR: u8 = 0x01;

const STREAM_ID_MASK: u32 = 0x7fff_ffff;

/// The name/value header block of SYN_STREAM, SYN_REPLY and HEADERS frames.
///
/// Names are lowercase (they are lowercased when added and when decoded).
/// One name has one value string; several values of a name are joined with
/// NUL bytes inside it, as SPDY/3 does on the wire ([`Headers::append`] and
/// [`Headers::get_all`] handle that). Entries keep their insertion order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    /// An empty header block.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, replacing any value it had.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into().to_ascii_lowercase();
        let value = value.into();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name, value)),
        }
    }

    /// Adds `value` to `name`: a new entry, or one more NUL-separated value.
    pub fn append(&mut self, name: impl Into<String>, value: impl AsRef<str>) {
        let name = name.into().to_ascii_lowercase();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => {
                entry.1.push('\0');
                entry.1.push_str(value.as_ref());
            }
            None => self.entries.push((name, value.as_ref().to_string())),
        }
    }

    /// The whole value of `name` (case-insensitive), NULs included.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The values of `name`, split at NUL bytes; empty when it is absent.
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        self.get(name).into_iter().flat_map(|v| v.split('\0'))
    }

    /// The entries (name, whole value) in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The number of names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut headers = Headers::new();
        for (name, value) in iter {
            headers.insert(name, value);
        }
        headers
    }
}

/// A RST_STREAM status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RstStatus(pub u32);

impl RstStatus {
    pub const PROTOCOL_ERROR: RstStatus = RstStatus(1);
    pub const INVALID_STREAM: RstStatus = RstStatus(2);
    pub const REFUSED_STREAM: RstStatus = RstStatus(3);
    pub const UNSUPPORTED_VERSION: RstStatus = RstStatus(4);
    pub const CANCEL: RstStatus = RstStatus(5);
    pub const INTERNAL_ERROR: RstStatus = RstStatus(6);
    pub const FLOW_CONTROL_ERROR: RstStatus = RstStatus(7);
    pub const STREAM_IN_USE: RstStatus = RstStatus(8);
    pub const STREAM_ALREADY_CLOSED: RstStatus = RstStatus(9);
    pub const FRAME_TOO_LARGE: RstStatus = RstStatus(11);
}

impl std::fmt::Display for RstStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            1 => "PROTOCOL_ERROR",
            2 => "INVALID_STREAM",
            3 => "REFUSED_STREAM",
            4 => "UNSUPPORTED_VERSION",
            5 => "CANCEL",
            6 => "INTERNAL_ERROR",
            7 => "FLOW_CONTROL_ERROR",
            8 => "STREAM_IN_USE",
            9 => "STREAM_ALREADY_CLOSED",
            11 => "FRAME_TOO_LARGE",
            n => return write!(f, "status {n}"),
        };
        f.write_str(name)
    }
}

/// A GOAWAY status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GoAwayStatus(pub u32);

impl GoAwayStatus {
    pub const OK: GoAwayStatus = GoAwayStatus(0);
    pub const PROTOCOL_ERROR: GoAwayStatus = GoAwayStatus(1);
    pub const INTERNAL_ERROR: GoAwayStatus = GoAwayStatus(2);
}

/// SYN_STREAM: opens stream `stream_id` with its request headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynStream {
    pub stream_id: u32,
    /// 0 unless the stream is pushed in association with another one.
    pub associated_to: u32,
    /// 0 (highest) to 7 (lowest).
    pub priority: u8,
    /// The credential slot (unused by SPDY/3.1 peers; 0).
    pub slot: u8,
    /// The sender sends nothing more on this stream.
    pub fin: bool,
    /// The receiver must not send on this stream.
    pub unidirectional: bool,
    pub headers: Headers,
}

/// SYN_REPLY: accepts stream `stream_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynReply {
    pub stream_id: u32,
    pub fin: bool,
    pub headers: Headers,
}

/// RST_STREAM: ends stream `stream_id` abnormally, both ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RstStream {
    pub stream_id: u32,
    pub status: RstStatus,
}

/// One entry of a SETTINGS frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// FLAG_SETTINGS_PERSIST_VALUE (1), FLAG_SETTINGS_PERSISTED (2).
    pub flags: u8,
    /// A 24-bit id; 7 is SETTINGS_INITIAL_WINDOW_SIZE.
    pub id: u32,
    pub value: u32,
}

impl Setting {
    /// The id of SETTINGS_INITIAL_WINDOW_SIZE.
    pub const INITIAL_WINDOW_SIZE: u32 = 7;
}

/// SETTINGS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// FLAG_SETTINGS_CLEAR_SETTINGS.
    pub clear: bool,
    pub entries: Vec<Setting>,
}

/// PING (answered by the peer with the same id; client ids are odd, server
/// ids even).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ping {
    pub id: u32,
}

/// GOAWAY: the sender opens no more streams and accepts none above
/// `last_good_stream_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoAway {
    pub last_good_stream_id: u32,
    pub status: GoAwayStatus,
}

/// HEADERS: more headers for stream `stream_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadersFrame {
    pub stream_id: u32,
    pub fin: bool,
    pub headers: Headers,
}

/// WINDOW_UPDATE: the receiver of stream `stream_id` (0: of the whole
/// session, SPDY/3.1) takes `delta` more bytes of data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowUpdate {
    pub stream_id: u32,
    pub delta: u32,
}

/// A data frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFrame {
    pub stream_id: u32,
    /// The sender's last frame on this stream (half-close).
    pub fin: bool,
    pub data: Bytes,
}

/// A SPDY/3 frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream(SynStream),
    SynReply(SynReply),
    RstStream(RstStream),
    Settings(Settings),
    Ping(Ping),
    GoAway(GoAway),
    Headers(HeadersFrame),
    WindowUpdate(WindowUpdate),
    Data(DataFrame),
}

/// The compressing side of one direction's header blocks: one zlib stream
/// with the SPDY/3 dictionary, sync-flushed after each block.
pub struct HeaderCompressor {
    z: Compress,
}

impl Default for HeaderCompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderCompressor {
    /// A fresh compression context (one per session direction).
    pub fn new() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(HEADER_DICTIONARY).expect("a fresh zlib stream takes a dictionary");
        Self { z }
    }

    /// Serializes and compresses `headers` into `dst`, continuing this
    /// context's zlib stream and ending with a sync flush.
    pub fn compress(&mut self, headers: &Headers, dst: &mut Vec<u8>) -> Result<(), Error> {
        let raw = serialize_headers(headers)?;
        let mut pos = 0;
        dst.reserve(raw.len() / 2 + 64);
        loop {
            let before = self.z.total_in();
            self.z.compress_vec(&raw[pos..], dst, FlushCompress::Sync).map_err(|e| Error::HeaderBlock(format!("compressing: {e}")))?;
            pos += (self.z.total_in() - before) as usize;
            // Done once all input is in and zlib had room to spare for the
            // whole flush.
            if pos == raw.len() && dst.len() < dst.capacity() {
                return Ok(());
            }
            dst.reserve(dst.capacity().max(64));
        }
    }
}

/// The decompressing side of one direction's header blocks.
pub struct HeaderDecompressor {
    z: Decompress,
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecompressor {
    /// A fresh decompression context (one per session direction).
    pub fn new() -> Self {
        Self { z: Decompress::new(true) }
    }

    /// Decompresses one frame's header block (the next part of this
    /// context's zlib stream) and parses it.
    pub fn decompress(&mut self, block: &[u8]) -> Result<Headers, Error> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut pos = 0;
        loop {
            let (before_in, before_out) = (self.z.total_in(), out.len());
            let result = self.z.decompress_vec(&block[pos..], &mut out, FlushDecompress::Sync);
            let consumed = (self.z.total_in() - before_in) as usize;
            pos += consumed;
            match result {
                Ok(flate2::Status::StreamEnd) => return Err(Error::HeaderBlock("the zlib stream ended".into())),
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    // The stream's header names the dictionary (FDICT): the
                    // SPDY/3 one is the only one there is.
                    Some(_) => {
                        self.z.set_dictionary(HEADER_DICTIONARY).map_err(|e| Error::HeaderBlock(format!("setting the dictionary: {e}")))?;
                        continue;
                    }
                    None => return Err(Error::HeaderBlock(format!("decompressing: {e}"))),
                },
            }
            if out.len() > MAX_HEADER_BLOCK {
                return Err(Error::HeaderBlock(format!("larger than {MAX_HEADER_BLOCK} bytes")));
            }
            if pos == block.len() && out.len() < out.capacity() {
                break;
            }
            if consumed == 0 && out.len() == before_out && out.len() < out.capacity() {
                return Err(Error::HeaderBlock("truncated zlib data".into()));
            }
            out.reserve(out.capacity().max(64));
        }
        parse_headers(&out)
    }
}

fn serialize_headers(headers: &Headers) -> Result<Vec<u8>, Error> {
    let mut raw = Vec::with_capacity(4 + headers.iter().map(|(n, v)| 8 + n.len() + v.len()).sum::<usize>());
    raw.put_u32(len_u32(headers.len())?);
    for (name, value) in headers.iter() {
        raw.put_u32(len_u32(name.len())?);
        raw.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
        raw.put_u32(len_u32(value.len())?);
        raw.put_slice(value.as_bytes());
    }
    Ok(raw)
}

fn len_u32(n: usize) -> Result<u32, Error> {
    u32::try_from(n).map_err(|_| Error::HeaderBlock("a length does not fit 32 bits".into()))
}

fn parse_headers(mut raw: &[u8]) -> Result<Headers, Error> {
    let truncated = || Error::HeaderBlock("truncated name/value block".into());
    if raw.len() < 4 {
        return Err(truncated());
    }
    let count = raw.get_u32() as usize;
    // Each entry takes 8 bytes at least: a count above that is a lie.
    if count > raw.len() / 8 {
        return Err(truncated());
    }
    let mut headers = Headers { entries: Vec::with_capacity(count) };
    let take = |raw: &mut &[u8]| -> Result<String, Error> {
        if raw.len() < 4 {
            return Err(truncated());
        }
        let n = raw.get_u32() as usize;
        if raw.len() < n {
            return Err(truncated());
        }
        let s = String::from_utf8_lossy(&raw[..n]).into_owned();
        raw.advance(n);
        Ok(s)
    };
    for _ in 0..count {
        let name = take(&mut raw)?.to_ascii_lowercase();
        let value = take(&mut raw)?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Encodes frames for one direction of a session (it holds that direction's
/// header compression context).
#[derive(Default)]
pub struct FrameEncoder {
    headers: HeaderCompressor,
}

impl FrameEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `frame`'s bytes to `dst`.
    pub fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), Error> {
        match frame {
            Frame::Data(f) => {
                check_len(f.data.len())?;
                dst.reserve(8 + f.data.len());
                dst.put_u32(f.stream_id & STREAM_ID_MASK);
                dst.put_u32(u32::from(if f.fin { FLAG_FIN } else { 0 }) << 24 | f.data.len() as u32);
                dst.put_slice(&f.data);
            }
            Frame::SynStream(f) => {
                let mut payload = Vec::with_capacity(64);
                payload.put_u32(f.stream_id & STREAM_ID_MASK);
                payload.put_u32(f.associated_to & STREAM_ID_MASK);
                payload.put_u8((f.priority & 0x07) << 5);
                payload.put_u8(f.slot);
                self.headers.compress(&f.headers, &mut payload)?;
                let flags = if f.fin { FLAG_FIN } else { 0 } | if f.unidirectional { FLAG_UNIDIRECTIONAL } else { 0 };
                put_control(dst, TYPE_SYN_STREAM, flags, &payload)?;
            }
            Frame::SynReply(f) => {
                let mut payload = Vec::with_capacity(64);
                payload.put_u32(f.stream_id & STREAM_ID_MASK);
                self.headers.compress(&f.headers, &mut payload)?;
                put_control(dst, TYPE_SYN_REPLY, if f.fin { FLAG_FIN } else { 0 }, &payload)?;
            }
            Frame::Headers(f) => {
                let mut payload = Vec::with_capacity(64);
                payload.put_u32(f.stream_id & STREAM_ID_MASK);
                self.headers.compress(&f.headers, &mut payload)?;
                put_control(dst, TYPE_HEADERS, if f.fin { FLAG_FIN } else { 0 }, &payload)?;
            }
            Frame::RstStream(f) => put_control(dst, TYPE_RST_STREAM, 0, &pair(f.stream_id & STREAM_ID_MASK, f.status.0))?,
            Frame::Settings(f) => {
                let mut payload = Vec::with_capacity(4 + 8 * f.entries.len());
                payload.put_u32(len_u32(f.entries.len())?);
                for s in &f.entries {
                    payload.put_u32(u32::from(s.flags) << 24 | (s.id & 0xff_ffff));
                    payload.put_u32(s.value);
                }
                put_control(dst, TYPE_SETTINGS, if f.clear { FLAG_SETTINGS_CLEAR } else { 0 }, &payload)?;
            }
            Frame::Ping(f) => put_control(dst, TYPE_PING, 0, &f.id.to_be_bytes())?,
            Frame::GoAway(f) => put_control(dst, TYPE_GOAWAY, 0, &pair(f.last_good_stream_id & STREAM_ID_MASK, f.status.0))?,
            Frame::WindowUpdate(f) => put_control(dst, TYPE_WINDOW_UPDATE, 0, &pair(f.stream_id & STREAM_ID_MASK, f.delta & STREAM_ID_MASK))?,
        }
        Ok(())
    }
}

fn pair(a: u32, b: u32) -> [u8; 8] {
    let mut out = [0; 8];
    out[..4].copy_from_slice(&a.to_be_bytes());
    out[4..].copy_from_slice(&b.to_be_bytes());
    out
}

fn check_len(n: usize) -> Result<(), Error> {
    if n > MAX_FRAME_PAYLOAD {
        return Err(Error::FrameTooLarge(n));
    }
    Ok(())
}

fn put_control(dst: &mut BytesMut, kind: u16, flags: u8, payload: &[u8]) -> Result<(), Error> {
    check_len(payload.len())?;
    dst.reserve(8 + payload.len());
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(kind);
    dst.put_u32(u32::from(flags) << 24 | payload.len() as u32);
    dst.put_slice(payload);
    Ok(())
}

/// Decodes frames for one direction of a session (it holds that direction's
/// header decompression context).
#[derive(Default)]
pub struct FrameDecoder {
    headers: HeaderDecompressor,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next whole frame off the front of `src`: `Ok(None)` when
    /// `src` holds only part of one (read more and call again; nothing is
    /// consumed). Control frames of unknown types are consumed and skipped.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        loop {
            if src.len() < 8 {
                return Ok(None);
            }
            let word = u32::from_be_bytes([src[4], src[5], src[6], src[7]]);
            let (flags, len) = ((word >> 24) as u8, (word & 0xff_ffff) as usize);
            if src.len() < 8 + len {
                src.reserve(8 + len - src.len());
                return Ok(None);
            }
            let head = src.split_to(8);
            let mut payload = src.split_to(len).freeze();
            let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            if first & 0x8000_0000 == 0 {
                return Ok(Some(Frame::Data(DataFrame { stream_id: first, fin: flags & FLAG_FIN != 0, data: payload })));
            }
            let version = ((first >> 16) & 0x7fff) as u16;
            if version != VERSION {
                return Err(Error::UnsupportedVersion(version));
            }
            let kind = (first & 0xffff) as u16;
            let fin = flags & FLAG_FIN != 0;
            let frame = match kind {
                TYPE_SYN_STREAM => {
                    need(&payload, 10, "SYN_STREAM")?;
                    let stream_id = payload.get_u32() & STREAM_ID_MASK;
                    let associated_to = payload.get_u32() & STREAM_ID_MASK;
                    let priority = payload.get_u8() >> 5;
                    let slot = payload.get_u8();
                    let headers = self.headers.decompress(&payload)?;
                    Frame::SynStream(SynStream { stream_id, associated_to, priority, slot, fin, unidirectional: flags & FLAG_UNIDIRECTIONAL != 0, headers })
                }
                TYPE_SYN_REPLY => {
                    need(&payload, 4, "SYN_REPLY")?;
                    let stream_id = payload.get_u32() & STREAM_ID_MASK;
                    Frame::SynReply(SynReply { stream_id, fin, headers: self.headers.decompress(&payload)? })
                }
                TYPE_HEADERS => {
                    need(&payload, 4, "HEADERS")?;
                    let stream_id = payload.get_u32() & STREAM_ID_MASK;
                    Frame::Headers(HeadersFrame { stream_id, fin, headers: self.headers.decompress(&payload)? })
                }
                TYPE_RST_STREAM => {
                    need(&payload, 8, "RST_STREAM")?;
                    Frame::RstStream(RstStream { stream_id: payload.get_u32() & STREAM_ID_MASK, status: RstStatus(payload.get_u32()) })
                }
                TYPE_SETTINGS => {
                    need(&payload, 4, "SETTINGS")?;
                    let count = payload.get_u32() as usize;
                    if payload.len() / 8 < count {
                        return Err(Error::InvalidFrame { frame: "SETTINGS", reason: "fewer entries than its count" });
                    }
                    let entries = (0..count)
                        .map(|_| {
                            let word = payload.get_u32();
                            Setting { flags: (word >> 24) as u8, id: word & 0xff_ffff, value: payload.get_u32() }
                        })
                        .collect();
                    Frame::Settings(Settings { clear: flags & FLAG_SETTINGS_CLEAR != 0, entries })
                }
                TYPE_PING => {
                    need(&payload, 4, "PING")?;
                    Frame::Ping(Ping { id: payload.get_u32() })
                }
                TYPE_GOAWAY => {
                    need(&payload, 8, "GOAWAY")?;
                    Frame::GoAway(GoAway { last_good_stream_id: payload.get_u32() & STREAM_ID_MASK, status: GoAwayStatus(payload.get_u32()) })
                }
                TYPE_WINDOW_UPDATE => {
                    need(&payload, 8, "WINDOW_UPDATE")?;
                    Frame::WindowUpdate(WindowUpdate { stream_id: payload.get_u32() & STREAM_ID_MASK, delta: payload.get_u32() & STREAM_ID_MASK })
                }
                other => {
                    tracing::debug!(kind = other, len, "skipping a SPDY control frame of unknown type");
                    continue;
                }
            };
            return Ok(Some(frame));
        }
    }
}

fn need(payload: &Bytes, n: usize, frame: &'static str) -> Result<(), Error> {
    if payload.len() < n {
        return Err(Error::InvalidFrame { frame, reason: "shorter than its fixed fields" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in data {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        b << 16 | a
    }

    fn every_frame() -> Vec<Frame> {
        let h = headers(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")]);
        vec![
            Frame::SynStream(SynStream { stream_id: 1, associated_to: 0, priority: 0, slot: 0, fin: false, unidirectional: false, headers: h.clone() }),
            Frame::SynStream(SynStream {
                stream_id: 0x7fff_ffff,
                associated_to: 5,
                priority: 7,
                slot: 3,
                fin: true,
                unidirectional: true,
                headers: Headers::new(),
            }),
            Frame::SynReply(SynReply { stream_id: 1, fin: false, headers: Headers::new() }),
            Frame::SynReply(SynReply { stream_id: 3, fin: true, headers: h.clone() }),
            Frame::RstStream(RstStream { stream_id: 3, status: RstStatus::CANCEL }),
            Frame::Settings(Settings { clear: false, entries: vec![] }),
            Frame::Settings(Settings {
                clear: true,
                entries: vec![Setting { flags: 1, id: Setting::INITIAL_WINDOW_SIZE, value: 65536 }, Setting { flags: 0, id: 4, value: 100 }],
            }),
            Frame::Ping(Ping { id: 1 }),
            Frame::Ping(Ping { id: 0xffff_fffe }),
            Frame::GoAway(GoAway { last_good_stream_id: 7, status: GoAwayStatus::PROTOCOL_ERROR }),
            Frame::Headers(HeadersFrame { stream_id: 5, fin: true, headers: headers(&[("x-multi", "a\0b\0c")]) }),
            Frame::WindowUpdate(WindowUpdate { stream_id: 0, delta: 32768 }),
            Frame::WindowUpdate(WindowUpdate { stream_id: 9, delta: 0x7fff_ffff }),
            Frame::Data(DataFrame { stream_id: 1, fin: false, data: Bytes::from_static(b"hello") }),
            Frame::Data(DataFrame { stream_id: 1, fin: true, data: Bytes::new() }),
            Frame::Data(DataFrame { stream_id: 0x7fff_ffff, fin: false, data: Bytes::from(vec![7u8; 100_000]) }),
        ]
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(HEADER_DICTIONARY.len(), 1423);
        assert_eq!(adler32(HEADER_DICTIONARY), 0xe3c6_a7c2, "the DICTID SPDY/3 zlib streams carry");
        assert!(HEADER_DICTIONARY.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(HEADER_DICTIONARY.ends_with(b"charset=iso-8859-1,utf-,*,enq=0."));
    }

    /// A SYN_REPLY compressed by another SPDY/3 implementation (Chromium's
    /// framer tests: stream 1, headers bar: foo and foo: bar). Its zlib
    /// stream starts 38 ea e3 c6 a7 c2: FDICT with the dictionary's Adler-32,
    /// so it decodes only with the right dictionary.
    #[test]
    fn decodes_a_foreign_compressed_syn_reply() {
        let wire: &[u8] = &[
            0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0x31, 0x00, 0x00, 0x00, 0x01, 0x38, 0xea, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0xe5, 0x0e, 0x50, 0xc2, 0x4b,
            0x4a, 0x04, 0xe5, 0x0b, 0x66, 0x80, 0x00, 0x4a, 0xcb, 0xcf, 0x07, 0x08, 0x20, 0x10, 0x95, 0x96, 0x9f, 0x0f, 0xa2, 0x00, 0x02, 0x28, 0x29, 0xb1,
            0x08, 0x20, 0x80, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
        ];
        let mut buf = BytesMut::from(wire);
        let frame = FrameDecoder::new().decode(&mut buf).unwrap().expect("a whole frame");
        assert_eq!(frame, Frame::SynReply(SynReply { stream_id: 1, fin: false, headers: headers(&[("bar", "foo"), ("foo", "bar")]) }));
        assert!(buf.is_empty());
    }

    /// The same from a SYN_STREAM (priority 4), in Chromium's other
    /// compression layout.
    #[test]
    fn decodes_a_foreign_compressed_syn_stream() {
        let wire: &[u8] = &[
            0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x32, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x38, 0xea, 0xe3, 0xc6, 0xa7, 0xc2,
            0x02, 0xe5, 0x0e, 0x50, 0xc2, 0x4b, 0x4a, 0x04, 0xe5, 0x0b, 0x66, 0x80, 0x00, 0x4a, 0xcb, 0xcf, 0x07, 0x08, 0x20, 0x24, 0x0a, 0x20, 0x80, 0x92,
            0x12, 0x8b, 0x00, 0x02, 0x08, 0x00, 0x00, 0x00, 0xff, 0xff,
        ];
        let mut buf = BytesMut::from(wire);
        let Some(Frame::SynStream(syn)) = FrameDecoder::new().decode(&mut buf).unwrap() else { panic!("not a SYN_STREAM") };
        assert_eq!((syn.stream_id, syn.priority, syn.fin), (1, 4, false));
        assert_eq!(syn.headers, headers(&[("bar", "foo"), ("foo", "bar")]));
    }

    #[test]
    fn our_compressed_blocks_name_the_dictionary() {
        let mut out = Vec::new();
        HeaderCompressor::new().compress(&headers(&[("port", "80")]), &mut out).unwrap();
        assert_eq!(out[0] & 0x0f, 8, "deflate");
        assert_ne!(out[1] & 0x20, 0, "FDICT set");
        assert_eq!(out[2..6], [0xe3, 0xc6, 0xa7, 0xc2]);
        assert!(out.ends_with(&[0x00, 0x00, 0xff, 0xff]), "a sync flush ends the block");
    }

    #[test]
    fn every_frame_type_round_trips_in_one_context() {
        let frames = every_frame();
        let mut encoder = FrameEncoder::new();
        let mut wire = BytesMut::new();
        for frame in &frames {
            encoder.encode(frame, &mut wire).unwrap();
        }
        let mut decoder = FrameDecoder::new();
        for frame in &frames {
            assert_eq!(decoder.decode(&mut wire).unwrap().as_ref(), Some(frame));
        }
        assert_eq!(decoder.decode(&mut wire).unwrap(), None);
        assert!(wire.is_empty());
    }

    #[test]
    fn fixed_layouts() {
        let mut encoder = FrameEncoder::new();
        let mut wire = BytesMut::new();
        encoder.encode(&Frame::RstStream(RstStream { stream_id: 1, status: RstStatus::PROTOCOL_ERROR }), &mut wire).unwrap();
        assert_eq!(&wire[..], &[0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01]);
        wire.clear();
        encoder.encode(&Frame::Ping(Ping { id: 0x1234_5678 }), &mut wire).unwrap();
        assert_eq!(&wire[..], &[0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0x12, 0x34, 0x56, 0x78]);
        wire.clear();
        let settings = Settings { clear: false, entries: vec![Setting { flags: 1, id: 7, value: 0x0a0b_0c0d }] };
        encoder.encode(&Frame::Settings(settings), &mut wire).unwrap();
        assert_eq!(&wire[..], &[0x80, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x07, 0x0a, 0x0b, 0x0c, 0x0d]);
        wire.clear();
        encoder.encode(&Frame::Data(DataFrame { stream_id: 3, fin: true, data: Bytes::from_static(b"ab") }), &mut wire).unwrap();
        assert_eq!(&wire[..], &[0x00, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x02, b'a', b'b']);
    }

    /// Later blocks lean on earlier ones: the second identical block is far
    /// smaller, and a fresh decoder cannot read it alone.
    #[test]
    fn header_blocks_share_one_zlib_stream() {
        let h = headers(&[("streamtype", "error"), ("port", "8080"), ("requestid", "17"), ("x-long", &"abcdefgh".repeat(40))]);
        let syn =
            |id| Frame::SynStream(SynStream { stream_id: id, associated_to: 0, priority: 0, slot: 0, fin: false, unidirectional: false, headers: h.clone() });
        let mut encoder = FrameEncoder::new();
        let (mut first, mut second, mut third) = (BytesMut::new(), BytesMut::new(), BytesMut::new());
        encoder.encode(&syn(1), &mut first).unwrap();
        encoder.encode(&syn(3), &mut second).unwrap();
        encoder.encode(&syn(5), &mut third).unwrap();
        assert!(second.len() < first.len() / 2, "second block {} bytes, first {}", second.len(), first.len());

        let mut decoder = FrameDecoder::new();
        for (mut wire, id) in [(first, 1), (second.clone(), 3), (third, 5)] {
            assert_eq!(decoder.decode(&mut wire).unwrap(), Some(syn(id)));
        }
        assert!(FrameDecoder::new().decode(&mut second).is_err(), "a block alone lacks its context");
    }

    #[test]
    fn partial_buffers_wait_for_more() {
        let frames = every_frame();
        let mut encoder = FrameEncoder::new();
        let mut wire = BytesMut::new();
        for frame in &frames {
            encoder.encode(frame, &mut wire).unwrap();
        }
        // Feed the bytes a few at a time (sizes 1, 2, ... 9): every frame
        // comes out once whole, and "need more" consumes nothing.
        let mut decoder = FrameDecoder::new();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        let mut step = 1;
        while !wire.is_empty() {
            let n = step.min(wire.len());
            buf.extend_from_slice(&wire.split_to(n));
            step = step % 9 + 1;
            let before = buf.len();
            match decoder.decode(&mut buf).unwrap() {
                Some(frame) => decoded.push(frame),
                None => assert_eq!(buf.len(), before),
            }
        }
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            decoded.push(frame);
        }
        assert_eq!(decoded, frames);
    }

    #[test]
    fn unknown_control_frames_are_skipped() {
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&[0x80, 0x03, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x03, 1, 2, 3]); // type 10 (CREDENTIAL)
        wire.extend_from_slice(&[0x80, 0x03, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00]); // type 5 (NOOP in SPDY/2)
        FrameEncoder::new().encode(&Frame::Ping(Ping { id: 2 }), &mut wire).unwrap();
        assert_eq!(FrameDecoder::new().decode(&mut wire).unwrap(), Some(Frame::Ping(Ping { id: 2 })));
        assert!(wire.is_empty());
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut v2 = BytesMut::from(&[0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1][..]);
        assert!(matches!(FrameDecoder::new().decode(&mut v2), Err(Error::UnsupportedVersion(2))));
        let mut short = BytesMut::from(&[0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1][..]);
        assert!(matches!(FrameDecoder::new().decode(&mut short), Err(Error::InvalidFrame { frame: "RST_STREAM", .. })));
        let mut garbage = BytesMut::from(&[0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef][..]);
        assert!(matches!(FrameDecoder::new().decode(&mut garbage), Err(Error::HeaderBlock(_))));
        let big = Frame::Data(DataFrame { stream_id: 1, fin: false, data: Bytes::from(vec![0; MAX_FRAME_PAYLOAD + 1]) });
        assert!(matches!(FrameEncoder::new().encode(&big, &mut BytesMut::new()), Err(Error::FrameTooLarge(_))));
    }

    #[test]
    fn header_values_and_names() {
        let mut h = Headers::new();
        h.insert("StreamType", "data");
        h.append("x-list", "a");
        h.append("X-List", "b");
        h.insert("streamtype", "error");
        assert_eq!(h.get("STREAMTYPE"), Some("error"));
        assert_eq!(h.get_all("x-list").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(h.iter().map(|(n, _)| n).collect::<Vec<_>>(), ["streamtype", "x-list"]);
        assert_eq!(h.get_all("absent").count(), 0);
    }
}
