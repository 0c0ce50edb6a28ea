//! State on disk: what a kubelet reads back after a restart. Every file is
//! written whole (temporary file, then rename), so a reader never sees half
//! of one.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{io, Error, Result};

/// Where the runtime keeps its state and writable layers.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Per-boot state: `/run/kubelab` (tmpfs).
    pub run: PathBuf,
    /// Writable layers: `/var/lib/kubelab` (the node's disk).
    pub lib: PathBuf,
}

impl Dirs {
    pub fn sandbox(&self, id: &str) -> PathBuf {
        self.run.join("sandboxes").join(id)
    }
    pub fn sandboxes(&self) -> PathBuf {
        self.run.join("sandboxes")
    }
    pub fn container(&self, id: &str) -> PathBuf {
        self.run.join("containers").join(id)
    }
    pub fn containers(&self) -> PathBuf {
        self.run.join("containers")
    }
    /// upper/, work/ and merged/ of a container's root.
    pub fn container_layer(&self, id: &str) -> PathBuf {
        self.lib.join("containers").join(id)
    }
}

/// A started process, as its starter saw it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Started {
    /// In the node's PID namespace.
    pub pid: i32,
    /// The process's start time in clock ticks since boot (field 22 of
    /// /proc/PID/stat), so a reused PID is never taken for it.
    pub start_ticks: u64,
    /// RFC 3339 with nanoseconds.
    pub started_at: String,
}

/// How a container ended: written by its shim.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Exited {
    pub exit_code: i32,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    pub finished_at: String,
    /// The kernel's OOM killer ended it (its cgroup says so).
    pub oom_killed: bool,
    /// Set when the process never ran: the reason the exec failed.
    pub start_error: Option<String>,
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::Invalid(format!("encoding {}: {e}", path.display())))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("renaming {} into place", tmp.display())))
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Invalid(format!("reading {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io { what: format!("reading {}", path.display()), source: e }),
    }
}

/// The start time of a live process, or None once it is gone (or a zombie).
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // After the name: state is field 3, starttime is field 22.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(22 - 3)?.parse().ok()
}

/// Whether `started` is still the same live process.
pub fn alive(started: &Started) -> bool {
    start_ticks(started.pid) == Some(started.start_ticks)
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let pid = std::process::id() as i32;
        let ticks = start_ticks(pid).expect("this process has a start time");
        assert!(alive(&Started { pid, start_ticks: ticks, started_at: now_rfc3339() }));
        assert!(!alive(&Started { pid, start_ticks: ticks + 1, started_at: now_rfc3339() }));
    }

    #[test]
    fn json_files_round_trip_and_absent_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        assert_eq!(read_json::<Exited>(&path).unwrap(), None);
        let exited = Exited { exit_code: 3, signal: None, finished_at: now_rfc3339(), oom_killed: false, start_error: None };
        write_json(&path, &exited).unwrap();
        assert_eq!(read_json::<Exited>(&path).unwrap(), Some(exited));
    }
}
