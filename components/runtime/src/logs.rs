//! Container logs in the CRI's format, as containerd writes them and the
//! kubelet reads them: one line per output line,
//! `<RFC 3339 nano time> <stdout|stderr> <F|P> <text>`, where `P` marks a
//! piece of a line longer than the buffer and `F` its last (or only) piece.

use std::io::Write;

/// Longest piece of a line written in one log line (containerd's 16 KiB).
pub const MAX_PIECE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Turns one stream's bytes into log lines, keeping an unfinished line
/// until its newline (or MAX_PIECE) arrives.
#[derive(Debug)]
pub struct LineWriter {
    stream: Stream,
    pending: Vec<u8>,
}

impl LineWriter {
    pub fn new(stream: Stream) -> LineWriter {
        LineWriter { stream, pending: Vec::new() }
    }

    /// Writes the complete lines in `bytes` (and what came before them).
    pub fn push(&mut self, bytes: &[u8], out: &mut impl Write, now: &str) -> std::io::Result<()> {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let line = &self.pending[start..start + nl];
            write_pieces(out, self.stream, line, now)?;
            start += nl + 1;
        }
        self.pending.drain(..start);
        while self.pending.len() >= MAX_PIECE {
            let piece: Vec<u8> = self.pending.drain(..MAX_PIECE).collect();
            write_line(out, self.stream, 'P', &piece, now)?;
        }
        Ok(())
    }

    /// The stream ended: an unfinished last line is written whole.
    pub fn finish(&mut self, out: &mut impl Write, now: &str) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            write_line(out, self.stream, 'F', &rest, now)?;
        }
        Ok(())
    }
}

fn write_pieces(out: &mut impl Write, stream: Stream, line: &[u8], now: &str) -> std::io::Result<()> {
    let mut chunks = line.chunks(MAX_PIECE).peekable();
    if chunks.peek().is_none() {
        return write_line(out, stream, 'F', b"", now);
    }
    while let Some(chunk) = chunks.next() {
        write_line(out, stream, if chunks.peek().is_some() { 'P' } else { 'F' }, chunk, now)?;
    }
    Ok(())
}

fn write_line(out: &mut impl Write, stream: Stream, tag: char, text: &[u8], now: &str) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(text.len() + 48);
    buf.extend_from_slice(now.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(stream.as_str().as_bytes());
    buf.push(b' ');
    buf.push(tag as u8);
    buf.push(b' ');
    buf.extend_from_slice(text);
    buf.push(b'\n');
    out.write_all(&buf)
}

/// One parsed log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub time: &'a str,
    pub stream: Stream,
    /// Not the last piece of its line.
    pub partial: bool,
    pub text: &'a [u8],
}

/// Parses one log line (without its newline); None for a malformed one.
pub fn parse(line: &[u8]) -> Option<Entry<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Entry { time, stream, partial, text: parts.next().unwrap_or(b"") })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2026-12-05T10:00:00.000000001Z";

    #[test]
    fn lines_are_written_whole_and_unfinished_ones_wait() {
        let mut out = Vec::new();
        let mut w = LineWriter::new(Stream::Stdout);
        w.push(b"hello\nwor", &mut out, T).unwrap();
        assert_eq!(String::from_utf8_lossy(&out), format!("{T} stdout F hello\n"));
        w.push(b"ld\n\n", &mut out, T).unwrap();
        w.push(b"tail", &mut out, T).unwrap();
        w.finish(&mut out, T).unwrap();
        assert_eq!(String::from_utf8_lossy(&out), format!("{T} stdout F hello\n{T} stdout F world\n{T} stdout F \n{T} stdout F tail\n"));
    }

    #[test]
    fn long_lines_are_cut_into_pieces() {
        let mut out = Vec::new();
        let mut w = LineWriter::new(Stream::Stderr);
        let mut long = vec![b'a'; MAX_PIECE + 10];
        long.push(b'\n');
        w.push(&long, &mut out, T).unwrap();
        let lines: Vec<&[u8]> = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 2);
        let first = parse(lines[0]).unwrap();
        let second = parse(lines[1]).unwrap();
        assert!(first.partial && !second.partial);
        assert_eq!(first.text.len() + second.text.len(), MAX_PIECE + 10);
        assert_eq!(second.stream, Stream::Stderr);
    }

    #[test]
    fn malformed_lines_are_not_entries() {
        assert_eq!(parse(b"nonsense"), None);
        assert_eq!(parse(format!("{T} stdout X text").as_bytes()), None);
        assert_eq!(parse(format!("{T} stdout F a b c").as_bytes()).unwrap().text, b"a b c");
    }
}
