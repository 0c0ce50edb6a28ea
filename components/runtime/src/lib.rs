//! kubelab's container runtime, a synchronous library used by the kubelet
//! (from `spawn_blocking`), shaped after youki's libcontainer.
//!
//! - A pod **sandbox** is a holder process owning the pod's network, IPC
//!   and UTS namespaces (its host name is the pod's name); CNI attaches its
//!   network namespace.
//! - A **container** is started by a **shim**, one per container, detached
//!   from the kubelet (so pods outlive a kubelet restart, as they do under
//!   containerd): the shim joins the sandbox's namespaces, makes a PID and
//!   mount namespace, forks the container's init (which builds its root:
//!   an overlay of the image's layers plus a writable layer, `/proc`, a
//!   minimal `/dev`, the pod's files and volumes, then `pivot_root` and
//!   exec), writes its output as CRI-format log lines (rotating the log
//!   at the kubelet's size, [`log_file`]) and records how it ended.
//! - The child sides (`sandbox`, `shim`, `exec`) are the kubelet binary
//!   re-executed with a hidden subcommand ([`entry`]): a fresh
//!   single-threaded process, where fork and namespace changes are safe,
//!   which a multi-threaded tokio process is not.
//! - Everything a kubelet needs to find its pods again after a restart is
//!   on disk: state under `/run/kubelab` (tmpfs: it dies with the node, as
//!   the processes do), writable layers and logs under `/var`.

pub mod attach;
mod attach_server;
pub mod cgroups;
pub mod container;
pub mod entry;
pub mod exec;
pub mod images;
pub mod log_file;
pub mod log_rotation;
pub mod logs;
pub mod rootfs;
pub mod sandbox;
pub mod shim;
pub mod spec;
pub mod state;
mod sys;
pub mod terminal;

pub use container::{ContainerStatus, Runtime};
pub use spec::{ContainerConfig, Mount, SandboxConfig};

/// Errors of the runtime, each saying what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {message}")]
    Child { what: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

pub(crate) fn sys_err(what: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let what = what.into();
    move |source| Error::Sys { what, source }
}
