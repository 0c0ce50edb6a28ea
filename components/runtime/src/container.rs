//! The kubelet's side of the runtime: sandboxes and containers created,
//! found again (also after a kubelet restart), signalled and removed.

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use crate::cgroups::Cgroups;
use crate::sandbox::{self, SandboxStatus};
use crate::shim::Placement;
use crate::spec::{ContainerConfig, SandboxConfig};
use crate::state::{self, Dirs, Exited, Started};
use crate::{entry, io, sys, Error, Result};

/// A container as the runtime finds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerStatus {
    pub config: ContainerConfig,
    pub state: ContainerState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ContainerState {
    /// Its shim is starting it.
    Created,
    Running(Started),
    /// `started` is None when it never ran.
    Exited {
        started: Option<Started>,
        exited: Exited,
    },
}

/// The runtime of one node.
#[derive(Debug, Clone)]
pub struct Runtime {
    dirs: Dirs,
    /// The kubelet binary, re-executed for the runtime's child sides.
    self_exe: PathBuf,
    cgroups: Cgroups,
}

impl Runtime {
    pub fn new(dirs: Dirs, self_exe: PathBuf, cgroups: Cgroups) -> Result<Runtime> {
        for d in [dirs.sandboxes(), dirs.containers(), dirs.lib.join("containers")] {
            std::fs::create_dir_all(&d).map_err(io(format!("creating {}", d.display())))?;
        }
        Ok(Runtime { dirs, self_exe, cgroups })
    }

    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    /// Starts a sandbox's holder and returns it, ready.
    pub fn create_sandbox(&self, config: &SandboxConfig) -> Result<SandboxStatus> {
        valid_id(&config.id)?;
        let dir = self.dirs.sandbox(&config.id);
        sandbox::create(&self.self_exe, &dir, config)?;
        self.sandbox(&config.id)?.ok_or_else(|| Error::Invalid(format!("sandbox {} vanished as it started", config.id)))
    }

    pub fn sandbox(&self, id: &str) -> Result<Option<SandboxStatus>> {
        sandbox::read(&self.dirs.sandbox(id))
    }

    pub fn sandboxes(&self) -> Result<Vec<SandboxStatus>> {
        let mut out = vec![];
        for id in entries(&self.dirs.sandboxes())? {
            if let Some(s) = self.sandbox(&id)? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Stops a sandbox's holder and forgets it (its containers must be
    /// removed, and its network torn down, first).
    pub fn remove_sandbox(&self, id: &str) -> Result<()> {
        let dir = self.dirs.sandbox(id);
        if let Some(status) = sandbox::read(&dir)? {
            if let Some(started) = status.started.filter(state::alive) {
                sys::kill(started.pid, Signal::SIGKILL)?;
                wait_gone(&started);
            }
        }
        remove_dir(&dir)
    }

    /// Creates and starts a container in its sandbox; returns once its
    /// process runs (or failed to start, which its state then says).
    pub fn run_container(&self, config: &ContainerConfig) -> Result<ContainerStatus> {
        valid_id(&config.id)?;
        let sandbox =
            self.sandbox(&config.sandbox_id)?.filter(|s| s.ready).ok_or_else(|| Error::Invalid(format!("sandbox {} is not running", config.sandbox_id)))?;
        let holder_pid = sandbox.started.map(|s| s.pid).unwrap_or_default();
        let dir = self.dirs.container(&config.id);
        if dir.exists() {
            return Err(Error::Invalid(format!("container {} exists already", config.id)));
        }
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let group = cgroup_of(config);
        self.cgroups.create(&group, &config.resources)?;
        let placement = Placement {
            holder_pid,
            layer_dir: self.dirs.container_layer(&config.id),
            cgroup_root: match &self.cgroups {
                Cgroups::V1 { root } => Some(root.clone()),
                Cgroups::Unavailable { .. } => None,
            },
            cgroup: group,
        };
        state::write_json(&dir.join("config.json"), config)?;
        state::write_json(&dir.join("placement.json"), &placement)?;
        entry::start_detached(&self.self_exe, entry::SHIM, &dir, &format!("starting container {}", config.id))?;
        self.container(&config.id)?.ok_or_else(|| Error::Invalid(format!("container {} vanished as it started", config.id)))
    }

    pub fn container(&self, id: &str) -> Result<Option<ContainerStatus>> {
        let dir = self.dirs.container(id);
        let Some(config) = state::read_json::<ContainerConfig>(&dir.join("config.json"))? else { return Ok(None) };
        let started: Option<Started> = state::read_json(&dir.join("state.json"))?;
        let exited: Option<Exited> = state::read_json(&dir.join("exit.json"))?;
        let state = match (started, exited) {
            (started, Some(exited)) => ContainerState::Exited { started: started.filter(|_| exited.start_error.is_none()), exited },
            (Some(started), None) if state::alive(&started) || shim_alive(&dir) => ContainerState::Running(started),
            // The process is gone and no shim wrote how it ended (the node
            // restarted under it, or the shim was killed).
            (Some(started), None) => ContainerState::Exited {
                started: Some(started),
                exited: Exited {
                    exit_code: 255,
                    signal: None,
                    finished_at: state::now_rfc3339(),
                    oom_killed: false,
                    start_error: Some("the container's shim is gone".into()),
                },
            },
            (None, None) => ContainerState::Created,
        };
        Ok(Some(ContainerStatus { config, state }))
    }

    pub fn containers(&self) -> Result<Vec<ContainerStatus>> {
        let mut out = vec![];
        for id in entries(&self.dirs.containers())? {
            if let Some(c) = self.container(&id)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Sends `signal` to a container's init.
    pub fn signal(&self, id: &str, signal: Signal) -> Result<()> {
        if let Some(ContainerStatus { state: ContainerState::Running(started), .. }) = self.container(id)? {
            if state::alive(&started) {
                sys::kill(started.pid, signal)?;
            }
        }
        Ok(())
    }

    /// Kills a container if it still runs, then removes its state, its
    /// writable layer and its cgroup. Its log stays (the kubelet removes a
    /// pod's logs with the pod).
    pub fn remove_container(&self, id: &str) -> Result<()> {
        let dir = self.dirs.container(id);
        let Some(status) = self.container(id)? else { return Ok(()) };
        if let ContainerState::Running(started) = &status.state {
            sys::kill(started.pid, Signal::SIGKILL)?;
            wait_gone(started);
        }
        if !status.config.owns_pid_namespace() {
            self.cgroups.kill_all(&cgroup_of(&status.config));
        }
        // The shim writes exit.json last; give it the moment it needs, so
        // it does not write into a removed folder.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while shim_alive(&dir) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.cgroups.remove(&cgroup_of(&status.config))?;
        remove_dir(&self.dirs.container_layer(id))?;
        remove_dir(&dir)
    }

    /// Where a running container's shim takes attaches (see [`crate::attach`]).
    pub fn attach_address(&self, id: &str) -> Result<crate::attach::Address> {
        crate::attach::Address::of(&self.dirs.container(id))
    }

    /// The folder of a container's state (its shim's), for `exec`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dirs.container(id)
    }

    pub fn self_exe(&self) -> &Path {
        &self.self_exe
    }

    /// The cgroup of a pod, for checks that it is gone.
    pub fn pod_cgroup_exists(&self, pod_uid: &str) -> bool {
        self.cgroups.exists(&format!("kubepods/pod{pod_uid}"))
    }

    /// Removes a pod's cgroup once its containers are gone.
    pub fn remove_pod_cgroup(&self, pod_uid: &str) -> Result<()> {
        self.cgroups.remove(&format!("kubepods/pod{pod_uid}"))
    }
}

/// `kubepods/pod<uid>/<container id>`, as upstream's cgroupfs driver names them.
fn cgroup_of(config: &ContainerConfig) -> String {
    format!("kubepods/pod{}/{}", config.sandbox_id, config.id)
}

/// Whether the container's shim (which wrote `shim.json`) still runs.
fn shim_alive(dir: &Path) -> bool {
    state::read_json::<Started>(&dir.join("shim.json")).ok().flatten().is_some_and(|s| state::alive(&s))
}

fn wait_gone(started: &Started) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while state::alive(started) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn valid_id(id: &str) -> Result<()> {
    if id.is_empty() || id.starts_with('.') || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(Error::Invalid(format!("{id:?} is not a valid sandbox or container id")));
    }
    Ok(())
}

fn entries(dir: &Path) -> Result<Vec<String>> {
    let mut out = vec![];
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd.flatten() {
                if let Some(n) = e.file_name().to_str() {
                    if !n.ends_with(".tmp") {
                        out.push(n.to_string());
                    }
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Io { what: format!("listing {}", dir.display()), source: e }),
    }
    out.sort();
    Ok(out)
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io { what: format!("removing {}", dir.display()), source: e }),
    }
}
