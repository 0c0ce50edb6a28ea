//! Where the kubelet keeps things on the node, after upstream's layout
//! under `--root-dir` (`/var/lib/kubelet`) and `/var/log/pods`.

use std::path::{Path, PathBuf};

pub fn image_store(root: &Path) -> PathBuf {
    root.join("images")
}

/// The runtime's writable layers.
pub fn runtime_lib(root: &Path) -> PathBuf {
    root.join("runtime")
}

/// `pods/<uid>/`: the pod's etc files and volumes.
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

/// `pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`, upstream's layout.
pub fn volume_dir(root: &Path, uid: &str, plugin: &str, name: &str) -> PathBuf {
    pod_dir(root, uid).join("volumes").join(format!("kubernetes.io~{plugin}")).join(name)
}

/// `/var/log/pods/<ns>_<name>_<uid>/`, upstream's.
pub fn pod_logs(namespace: &str, name: &str, uid: &str) -> PathBuf {
    PathBuf::from("/var/log/pods").join(format!("{namespace}_{name}_{uid}"))
}

/// `<pod logs>/<container>/<restart count>.log`, upstream's.
pub fn container_log(namespace: &str, name: &str, uid: &str, container: &str, restart: u32) -> PathBuf {
    pod_logs(namespace, name, uid).join(container).join(format!("{restart}.log"))
}
