//! cgroup limits for containers. This machine's engine is cgroup v1 and a
//! node container sees its controllers read-only, but mounting a controller
//! afresh inside the node works (platform notes); so the kubelet mounts
//! memory, cpu and pids under `/run/kubelab/cgroup/` and gives each
//! container `kubepods/pod<uid>/<container id>` in each. Where that is not
//! possible the runtime runs containers without limits and says why (the
//! kubelet puts it in the Node's status).

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::spec::Resources;
use crate::{io, sys, Error, Result};

/// The v1 controllers the runtime uses, as mount options and folder names.
/// A controller mounted afresh must be mounted as the host mounts it:
/// cpu alone (this machine mounts cpu and cpuacct apart), or co-mounted
/// with cpuacct (as systemd hosts do); the first that mounts is kept.
const CONTROLLERS: &[(&str, &[&str])] = &[("memory", &["memory"]), ("cpu", &["cpu", "cpu,cpuacct"]), ("pids", &["pids"])];

/// The cgroup hierarchies the runtime can use.
#[derive(Debug, Clone)]
pub enum Cgroups {
    V1 {
        root: PathBuf,
    },
    /// Limits are not applied; the reason says why.
    Unavailable {
        reason: String,
    },
}

impl Cgroups {
    /// Mounts (or finds mounted) the controllers under `root`.
    pub fn set_up(root: &Path) -> Cgroups {
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            return Cgroups::Unavailable { reason: "the node's cgroups are v2, which kubelab's runtime does not drive yet".into() };
        }
        for (dir, choices) in CONTROLLERS {
            let path = root.join(dir);
            if path.join("cgroup.procs").exists() {
                continue;
            }
            if let Err(e) = std::fs::create_dir_all(&path) {
                return Cgroups::Unavailable { reason: format!("creating {}: {e}", path.display()) };
            }
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            let mut errors = vec![];
            let mounted = choices.iter().any(|options| match sys::mount(Some("cgroup"), &path, Some("cgroup"), flags, Some(options)) {
                Ok(()) => true,
                Err(e) => {
                    errors.push(e.to_string());
                    false
                }
            });
            if !mounted {
                return Cgroups::Unavailable { reason: format!("cgroup v1 controller {dir} cannot be mounted in the node: {}", errors.join("; ")) };
            }
        }
        Cgroups::V1 { root: root.to_path_buf() }
    }

    fn dirs(&self, group: &str) -> Vec<PathBuf> {
        match self {
            Cgroups::V1 { root } => CONTROLLERS.iter().map(|(d, _)| root.join(d).join(group)).collect(),
            Cgroups::Unavailable { .. } => vec![],
        }
    }

    /// Creates `group` (a relative path) in every controller and writes
    /// its limits.
    pub fn create(&self, group: &str, resources: &Resources) -> Result<()> {
        let Cgroups::V1 { root } = self else { return Ok(()) };
        for dir in self.dirs(group) {
            std::fs::create_dir_all(&dir).map_err(io(format!("creating cgroup {}", dir.display())))?;
        }
        let write = |controller: &str, file: &str, value: String| -> Result<()> {
            let path = root.join(controller).join(group).join(file);
            std::fs::write(&path, &value).map_err(io(format!("writing {value} to {}", path.display())))
        };
        if let Some(bytes) = resources.memory_limit {
            write("memory", "memory.limit_in_bytes", bytes.to_string())?;
        }
        if let Some(quota) = resources.cpu_quota {
            write("cpu", "cpu.cfs_period_us", "100000".into())?;
            write("cpu", "cpu.cfs_quota_us", quota.to_string())?;
        }
        if let Some(shares) = resources.cpu_shares {
            write("cpu", "cpu.shares", shares.to_string())?;
        }
        Ok(())
    }

    /// Moves the calling process into `group`.
    pub fn enter(&self, group: &str) -> Result<()> {
        for dir in self.dirs(group) {
            let procs = dir.join("cgroup.procs");
            std::fs::write(&procs, "0").map_err(io(format!("joining {}", procs.display())))?;
        }
        Ok(())
    }

    /// Sends SIGKILL to every process in `group` (a container's leftovers
    /// in a PID namespace its init does not own).
    /// Returns once the group is empty (or after 2 s).
    pub fn kill_all(&self, group: &str) {
        let Some(dir) = self.dirs(group).into_iter().next() else { return };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            let pids: Vec<i32> = procs.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                let _ = crate::sys::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Whether the kernel's OOM killer acted in `group`.
    pub fn oom_killed(&self, group: &str) -> bool {
        let Cgroups::V1 { root } = self else { return false };
        let control = std::fs::read_to_string(root.join("memory").join(group).join("memory.oom_control")).unwrap_or_default();
        control.lines().any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim() != "0"))
    }

    /// Removes `group` (empty by now) from every controller.
    pub fn remove(&self, group: &str) -> Result<()> {
        for dir in self.dirs(group) {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io { what: format!("removing cgroup {}", dir.display()), source: e }),
            }
        }
        Ok(())
    }

    /// Whether `group` still exists in any controller.
    pub fn exists(&self, group: &str) -> bool {
        self.dirs(group).iter().any(|d| d.exists())
    }

    pub fn unavailable_reason(&self) -> Option<&str> {
        match self {
            Cgroups::Unavailable { reason } => Some(reason),
            Cgroups::V1 { .. } => None,
        }
    }
}
