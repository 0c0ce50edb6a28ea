//! What the kubelet asks the runtime for: a sandbox and the containers in
//! it. Written to the container's state folder as `config.json`, where
//! the shim reads it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A pod sandbox: the namespaces its containers share.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SandboxConfig {
    /// Unique on the node: the pod's uid.
    pub id: String,
    /// The UTS namespace's host name: the pod's name (or spec.hostname).
    pub hostname: String,
    /// Labels kept with the sandbox, so the kubelet can tell whose it is
    /// after a restart (namespace, name, uid).
    pub labels: std::collections::BTreeMap<String, String>,
    /// hostNetwork: the node's network and UTS namespaces are kept (the
    /// holder unshares only IPC), as upstream's runtimes do for such pods.
    #[serde(default)]
    pub host_network: bool,
    /// shareProcessNamespace: the holder forks the pod's PID 1 (which
    /// reaps orphans, as upstream's pause does) in a PID namespace the
    /// pod's containers join.
    #[serde(default)]
    pub share_pid: bool,
    /// hostIPC: the node's IPC namespace is kept.
    #[serde(default)]
    pub host_ipc: bool,
}

/// One container of a sandbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerConfig {
    /// Unique on the node (the kubelet makes it from the pod uid, the
    /// container's name and its attempt).
    pub id: String,
    /// The sandbox whose network, IPC and UTS namespaces it joins.
    pub sandbox_id: String,
    /// Share the sandbox holder's PID namespace (shareProcessNamespace).
    pub share_pid: bool,
    /// Stay in the node's PID namespace (hostPID).
    #[serde(default)]
    pub host_pid: bool,
    /// Join this running container's PID namespace (an ephemeral
    /// container's target, `kubectl debug --target`).
    #[serde(default)]
    pub pid_namespace_of: Option<String>,
    /// The image's unpacked layers, lowest first.
    pub layers: Vec<PathBuf>,
    /// argv; `args[0]` is looked up on the container's PATH.
    pub args: Vec<String>,
    /// `NAME=value`, in order.
    pub env: Vec<String>,
    /// Absolute; created when missing, as upstream's runtimes do.
    pub working_dir: String,
    pub uid: u32,
    pub gid: u32,
    pub supplementary_gids: Vec<u32>,
    /// Bind mounts into the root (volumes, /etc/hosts, /etc/resolv.conf, ...).
    pub mounts: Vec<Mount>,
    /// Where the shim writes the CRI-format log.
    pub log_path: PathBuf,
    /// When the shim rotates that log; None: never.
    #[serde(default)]
    pub log_rotation: Option<crate::log_rotation::Policy>,
    /// Limits in the container's own cgroup, where the node allows.
    pub resources: Resources,
    /// Labels kept with the container (pod uid, container name, attempt).
    pub labels: std::collections::BTreeMap<String, String>,
    /// Keep stdin open for attaching (`stdin`); else it is /dev/null.
    #[serde(default)]
    pub stdin: bool,
    /// Close stdin when the first attach with stdin ends (`stdinOnce`).
    #[serde(default)]
    pub stdin_once: bool,
    /// Give the container a terminal on stdin, stdout and stderr (`tty`).
    #[serde(default)]
    pub tty: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mount {
    /// A file or folder on the node.
    pub source: PathBuf,
    /// Absolute inside the container.
    pub destination: String,
    pub read_only: bool,
}

/// cgroup limits, as the CRI's LinuxContainerResources.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Resources {
    /// Bytes; None: unlimited.
    pub memory_limit: Option<i64>,
    /// CFS quota in microseconds per 100 ms period; None: unlimited.
    pub cpu_quota: Option<i64>,
    /// cpu.shares (from the request), upstream's 2..262144.
    pub cpu_shares: Option<u64>,
}

impl ContainerConfig {
    /// Its init is PID 1 of a namespace of its own (whose end ends
    /// everything in it).
    pub fn owns_pid_namespace(&self) -> bool {
        !self.share_pid && !self.host_pid && self.pid_namespace_of.is_none()
    }
}
