//! Files on the host that other programs read while we write them (the
//! lab's PKI, the user's kubeconfig): written whole or not at all, and
//! edited by one process at a time.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long to wait for another process's lock before giving up (tests
/// that hit a held lock need not wait as long).
const LOCK_WAIT: Duration = Duration::from_millis(if cfg!(test) { 300 } else { 5000 });
const LOCK_POLL: Duration = Duration::from_millis(50);

/// Replaces `path` with `contents`: written to a temporary file in the same
/// folder (so the rename cannot cross file systems), flushed, then renamed
/// over it. A reader sees the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let write = || -> io::Result<()> {
        let mut tmp = tempfile::Builder::new().prefix(".kubelab-").suffix(".tmp").permissions(Permissions::from_mode(mode)).tempfile_in(dir)?;
        tmp.write_all(contents)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        // Make the rename itself durable; not all file systems allow this.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// A file's contents, or `None` when it does not exist; any other failure
/// to read it is an error naming it.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Creates `dir` and its missing parents with mode 0700, and makes `dir`
/// itself 0700 if it already existed with a wider mode.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(dir, Permissions::from_mode(0o700)).with_context(|| format!("cannot make {} private (mode 0700)", dir.display()))
}

/// An exclusive lock held while the file exists: created with O_EXCL, the
/// same convention kubectl uses for `<kubeconfig>.lock`, so a `lab` and a
/// `kubectl config` editing one file at once wait for each other. Removed
/// on drop.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

impl Lock {
    /// Takes the lock at `path`, retrying for a few seconds while someone
    /// else holds it.
    pub fn acquire(path: PathBuf) -> Result<Lock> {
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
                Ok(_) => return Ok(Lock { path }),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    if Instant::now() >= deadline {
                        bail!(
                            "{} is held by another process (still there after {:?}); \
                             if no lab or kubectl is running, remove it",
                            path.display(),
                            LOCK_WAIT
                        );
                    }
                    sleep(LOCK_POLL);
                }
                Err(e) => return Err(e).with_context(|| format!("cannot create the lock file {}", path.display())),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_whole_file_with_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "old contents, longer than the new").unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["f"], "no temporary file left behind");
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let held = Lock::acquire(path.clone()).unwrap();
        assert!(OpenOptions::new().write(true).create_new(true).open(&path).is_err());
        drop(held);
        assert!(!path.exists());
        Lock::acquire(path).unwrap();
    }
}
