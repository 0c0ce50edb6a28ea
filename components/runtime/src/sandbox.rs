//! Pod sandboxes: a holder process (as upstream's pause container) that
//! owns the pod's network, IPC and UTS namespaces, so they outlive any one
//! container. CNI attaches `/proc/<holder>/ns/net`. A hostNetwork pod's
//! holder keeps the node's network and UTS namespaces, a hostIPC pod's the
//! node's IPC namespace; with shareProcessNamespace the holder is the PID
//! 1 of the pod's PID namespace.

use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

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
        Ok(Holding::Here(signals)) => {
            ready.ok();
            entry::quiet_stdio();
            wait_for_end(&signals, false);
            0
        }
        // The pod's PID 1 holds the namespaces; this process is done.
        Ok(Holding::Forked) => {
            ready.ok();
            0
        }
        Ok(Holding::AsPid1(signals)) => {
            // Its parent says it is ready, once it has recorded it.
            drop(ready);
            entry::quiet_stdio();
            wait_for_end(&signals, true);
            0
        }
        Err(e) => {
            ready.fail(&e);
            1
        }
    }
}

/// Which process holds the sandbox after [`hold`].
enum Holding {
    /// This one.
    Here(SigSet),
    /// This one is the pod's PID 1 (shareProcessNamespace), forked by
    /// the holder, which returns [`Holding::Forked`].
    AsPid1(SigSet),
    Forked,
}

/// Waits for SIGTERM or SIGINT (blocked, so taken here); as a PID 1, reaps
/// the orphans the pod's containers leave to it meanwhile.
fn wait_for_end(signals: &SigSet, reap: bool) {
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) if reap => while let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {},
            Ok(Signal::SIGCHLD) => {}
            _ => return,
        }
    }
}

fn hold(dir: &Path) -> Result<Holding> {
    let config: SandboxConfig =
        state::read_json(&dir.join("config.json"))?.ok_or_else(|| crate::Error::Invalid(format!("no config.json in {}", dir.display())))?;
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGCHLD);
    signals.thread_block().map_err(crate::sys_err("blocking signals"))?;
    let mut namespaces = CloneFlags::empty();
    if !config.host_ipc {
        namespaces |= CloneFlags::CLONE_NEWIPC;
    }
    if !config.host_network {
        namespaces |= CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
    }
    if config.share_pid {
        // Applies to the next child: the pod's PID 1.
        namespaces |= CloneFlags::CLONE_NEWPID;
    }
    if !namespaces.is_empty() {
        sys::unshare(namespaces)?;
    }
    if !config.host_network {
        sys::sethostname(&config.hostname)?;
    }
    let holder = if config.share_pid {
        match sys::fork()? {
            sys::ForkResult::Child => return Ok(Holding::AsPid1(signals)),
            sys::ForkResult::Parent { child } => child.as_raw(),
        }
    } else {
        std::process::id() as i32
    };
    let start_ticks = state::start_ticks(holder).ok_or_else(|| crate::Error::Invalid("cannot read the holder's start time".into()))?;
    state::write_json(&dir.join("state.json"), &Started { pid: holder, start_ticks, started_at: state::now_rfc3339() })?;
    Ok(if config.share_pid { Holding::Forked } else { Holding::Here(signals) })
}

pub(crate) fn create(self_exe: &Path, dir: &Path, config: &SandboxConfig) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    state::write_json(&dir.join("config.json"), config)?;
    entry::start_detached(self_exe, entry::SANDBOX, dir, &format!("starting the sandbox of {}", config.hostname))
}
