//! The shim's container log file: CRI lines appended, rotated by the shim
//! itself as [`crate::log_rotation`] decides.
//!
//! Upstream's kubelet looks at every running container's log every 10 s,
//! renames the big ones and asks the runtime to reopen (CRI
//! ReopenContainerLog). Here the shim rotates on its own, because it sees
//! every write: a log is cut at the size exactly, between two lines, with
//! no polling, no reopen call between two processes, and it goes on while
//! the kubelet is down (the shims outlive it). The policy comes with the
//! container's config, so a changed flag applies to containers started
//! after it.
//!
//! The current log keeps its name throughout: the shim links it under its
//! rotated name, then renames a new empty file over it, and only then
//! writes to the new one. So a reader always finds a log at the path, and
//! once it finds a new file there, nothing more is written to the old
//! (what `kubectl logs -f` relies on to follow across a rotation). The
//! gzipping of older files runs on a thread of its own, so the container's
//! output is not held up by it; the next rotation waits for it first. (The
//! shim forks and changes namespaces only before it copies output, so a
//! thread by then is safe.)

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crate::log_rotation::{self, Policy, COMPRESSED_SUFFIX, TEMPORARY_SUFFIX};

/// A container's current log, appended to and rotated at the size.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    /// Bytes in the current file.
    size: u64,
    policy: Option<Policy>,
    /// After a failed rotation, the size at which to try again (rather
    /// than at every write).
    retry_at: u64,
    compressing: Option<JoinHandle<()>>,
}

impl LogFile {
    /// Opens (or creates) the log at `path` for appending; None for the
    /// policy: it is never rotated.
    pub fn open(path: &Path, policy: Option<Policy>) -> io::Result<LogFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile { path: path.to_path_buf(), file, size, policy, retry_at: 0, compressing: None })
    }

    /// Waits for the compression of older files to end (before the
    /// container counts as ended, so nothing is left half written).
    pub fn close(mut self) {
        self.wait_for_compression();
    }

    fn wait_for_compression(&mut self) {
        if let Some(thread) = self.compressing.take() {
            let _ = thread.join();
        }
    }

    /// Before writing `incoming` bytes: rotates when they would pass the size.
    fn make_room(&mut self, incoming: usize) {
        let Some(policy) = self.policy else { return };
        if self.size < self.retry_at || !policy.rotates_before(self.size, incoming) {
            return;
        }
        if self.rotate(&policy).is_err() {
            // Written on in place; tried again after another max_size.
            self.retry_at = self.size.saturating_add(policy.max_size);
        }
    }

    fn rotate(&mut self, policy: &Policy) -> io::Result<()> {
        self.wait_for_compression();
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let log = self.path.file_name().and_then(|n| n.to_str()).ok_or_else(|| io::Error::other("the log's name is not UTF-8"))?.to_string();
        let names: Vec<String> = std::fs::read_dir(&dir)?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        let stamp = chrono::Utc::now().format(log_rotation::STAMP_FORMAT).to_string();
        let plan = log_rotation::plan(&log, &names, policy, &stamp);
        for name in &plan.remove {
            remove_if_there(&dir.join(name))?;
        }
        let rotated = dir.join(&plan.rotated);
        std::fs::hard_link(&self.path, &rotated)?;
        let next = dir.join(format!("{log}.next{TEMPORARY_SUFFIX}"));
        let replaced = OpenOptions::new().create_new(true).append(true).open(&next).and_then(|file| std::fs::rename(&next, &self.path).map(|()| file));
        let file = match replaced {
            Ok(file) => file,
            Err(e) => {
                let _ = std::fs::remove_file(&rotated);
                let _ = std::fs::remove_file(&next);
                return Err(e);
            }
        };
        self.file = file;
        self.size = 0;
        let older: Vec<PathBuf> = plan.compress.iter().map(|n| dir.join(n)).collect();
        if !older.is_empty() {
            let work = older.clone();
            match std::thread::Builder::new().name("log-gzip".into()).spawn(move || compress_all(&work)) {
                Ok(thread) => self.compressing = Some(thread),
                // No thread to be had: in line, late rather than never.
                Err(_) => compress_all(&older),
            }
        }
        Ok(())
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.make_room(buf.len());
        let n = self.file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    /// One check for the whole buffer (a log line), so a line never
    /// straddles two files.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.make_room(buf.len());
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn compress_all(paths: &[PathBuf]) {
    for path in paths {
        // A file left uncompressed is compressed by the next rotation.
        let _ = compress(path);
    }
}

/// `<file>` → `<file>.gz`, through `<file>.tmp` so a cut compression
/// leaves no half archive under the final name.
pub fn compress(path: &Path) -> io::Result<()> {
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let (temporary, compressed) = (with(TEMPORARY_SUFFIX), with(COMPRESSED_SUFFIX));
    let written = (|| {
        let mut input = File::open(path)?;
        let mut gz = flate2::write::GzEncoder::new(io::BufWriter::new(File::create(&temporary)?), flate2::Compression::default());
        io::copy(&mut input, &mut gz)?;
        gz.finish()?.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&temporary, &compressed)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    std::fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LineWriter, Stream};

    const T: &str = "2026-12-07T10:00:00.000000001Z";

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    fn gunzip(path: &Path) -> String {
        let mut text = String::new();
        io::Read::read_to_string(&mut flate2::read::GzDecoder::new(File::open(path).unwrap()), &mut text).unwrap();
        text
    }

    #[test]
    fn the_log_is_cut_between_lines_and_keeps_at_most_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        // Each line is 48 bytes (`<T> stdout F line-NN\n`): two to a file.
        let policy = Policy { max_size: 100, max_files: 3 };
        let mut log = LogFile::open(&path, Some(policy)).unwrap();
        let mut writer = LineWriter::new(Stream::Stdout);
        for i in 0..20 {
            writer.push(format!("line-{i:02}\n").as_bytes(), &mut log, T).unwrap();
            log.wait_for_compression();
            let names = files(dir.path());
            assert!(names.len() <= 3, "after line {i}: {names:?}");
            assert!(std::fs::metadata(&path).unwrap().len() <= 100);
        }
        log.close();
        let names = files(dir.path());
        assert_eq!(names.len(), 3, "{names:?}");
        let current = std::fs::read_to_string(&path).unwrap();
        assert_eq!(current, format!("{T} stdout F line-18\n{T} stdout F line-19\n"));
        // The newest rotated file as it was, the older one gzipped.
        let rotated: Vec<&String> = names.iter().filter(|n| n.starts_with("0.log.")).collect();
        let (compressed, plain): (Vec<&&String>, Vec<&&String>) = rotated.iter().partition(|n| n.ends_with(".gz"));
        assert_eq!((compressed.len(), plain.len()), (1, 1), "{names:?}");
        assert_eq!(gunzip(&dir.path().join(compressed[0])), format!("{T} stdout F line-14\n{T} stdout F line-15\n"));
        assert_eq!(std::fs::read_to_string(dir.path().join(plain[0])).unwrap(), format!("{T} stdout F line-16\n{T} stdout F line-17\n"));
    }

    #[test]
    fn without_a_policy_the_log_only_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = LogFile::open(&path, None).unwrap();
        for _ in 0..100 {
            log.write_all(b"0123456789\n").unwrap();
        }
        log.close();
        assert_eq!(files(dir.path()), vec!["0.log".to_string()]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1100);
    }

    #[test]
    fn a_reopened_log_counts_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, [b'x'; 90]).unwrap();
        let mut log = LogFile::open(&path, Some(Policy { max_size: 100, max_files: 2 })).unwrap();
        log.write_all(&[b'y'; 20]).unwrap();
        log.close();
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'y'; 20]);
        assert_eq!(files(dir.path()).len(), 2);
    }
}
