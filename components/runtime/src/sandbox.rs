//! Pod sandboxes: a holder process (as upstream's pause container) that
//! owns the pod's network, IPC and UTS namespaces, so they outlive any one
//! container. CNI attaches `/proc/<holder>/ns/net`. A hostNetwork pod's
//! holder keeps the node's network and UTS namespaces.

use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};

use crate::spec::SandboxConfig;
use crate::state::{self, Started};
use crate::{entry, io, sys, Result};

/// A sandbox as the runtime finds it.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxStatus {
    pub config: SandboxConfig,
    pub started: Option<Started>,
    /// The holder still runs.
    pub ready: bool,
}

impl SandboxStatus {
    /// The pod's own network namespace, to hand CNI; none for a
    /// hostNetwork pod, whose namespace is the node's.
    pub fn netns(&self) -> Option<PathBuf> {
        if self.config.host_network {
            return None;
        }
        self.started.as_ref().map(|s| PathBuf::from(format!("/proc/{}/ns/net", s.pid)))
    }
}

pub(crate) fn read(dir: &Path) -> Result<Option<SandboxStatus>> {
    let Some(config) = state::read_json::<SandboxConfig>(&dir.join("config.json"))? else { return Ok(None) };
    let started: Option<Started> = state::read_json(&dir.join("state.json"))?;
    let ready = started.as_ref().is_some_and(state::alive);
    Ok(Some(SandboxStatus { config, started, ready }))
}

/// The holder: `kubelet runtime-sandbox DIR`.
pub(crate) fn holder_main(dir: &Path) -> i32 {
    let ready = match entry::detach() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    sys::set_name("kubelab-pause");
    match hold(dir) {
        Ok(signals) => {
            ready.ok();
            entry::quiet_stdio();
            // Wait for the end: SIGTERM or SIGINT (blocked, so taken here).
            let _ = signals.wait();
            0
        }
        Err(e) => {
            ready.fail(&e);
            1
        }
    }
}

fn hold(dir: &Path) -> Result<SigSet> {
    let config: SandboxConfig =
        state::read_json(&dir.join("config.json"))?.ok_or_else(|| crate::Error::Invalid(format!("no config.json in {}", dir.display())))?;
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.thread_block().map_err(crate::sys_err("blocking signals"))?;
    if config.host_network {
        sys::unshare(CloneFlags::CLONE_NEWIPC)?;
    } else {
        sys::unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)?;
        sys::sethostname(&config.hostname)?;
    }
    let pid = std::process::id() as i32;
    let start_ticks = state::start_ticks(pid).ok_or_else(|| crate::Error::Invalid("cannot read this process's start time".into()))?;
    state::write_json(&dir.join("state.json"), &Started { pid, start_ticks, started_at: state::now_rfc3339() })?;
    Ok(signals)
}

pub(crate) fn create(self_exe: &Path, dir: &Path, config: &SandboxConfig) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    state::write_json(&dir.join("config.json"), config)?;
    entry::start_detached(self_exe, entry::SANDBOX, dir, &format!("starting the sandbox of {}", config.hostname))
}
