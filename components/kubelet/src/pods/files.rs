//! A pod's files on the node, under `pods/<uid>/`: its addresses (`ips`,
//! read back by a restarted kubelet), `/etc/hosts`, `/etc/resolv.conf`
//! and `/etc/hostname` as its containers see them; and where its
//! containers' logs are.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;

use super::config;
use crate::{paths, Kubelet};

/// The pod's addresses, its network's files and its host name, written
/// once the pod is networked.
pub fn write_pod_files(kubelet: &Kubelet, uid: &str, pod: &Pod, pod_ips: &[String]) -> std::io::Result<()> {
    let spec = pod.spec.clone().unwrap_or_default();
    let dir = paths::pod_dir(&kubelet.settings.root_dir, uid);
    config::write_file(&dir.join("ips"), &pod_ips.join("\n"))?;
    let s = &kubelet.settings;
    if spec.host_network == Some(true) {
        // As upstream: the node's own hosts file and name.
        config::write_file(&dir.join("etc-hosts"), &std::fs::read_to_string("/etc/hosts").unwrap_or_default())?;
        config::write_file(&dir.join("hostname"), &format!("{}\n", s.node_name))?;
    } else {
        config::write_file(&dir.join("etc-hosts"), &config::hosts_file(pod, pod_ips, &s.cluster_domain))?;
        config::write_file(&dir.join("hostname"), &format!("{}\n", spec.hostname.clone().or_else(|| pod.metadata.name.clone()).unwrap_or_default()))?;
    }
    config::write_file(&dir.join("resolv.conf"), &config::resolv_conf(pod, &s.cluster_dns.to_string(), &s.cluster_domain))?;
    Ok(())
}

/// The addresses written by `write_pod_files`, if any.
pub fn read_ips(kubelet: &Kubelet, uid: &str) -> Vec<String> {
    std::fs::read_to_string(paths::pod_dir(&kubelet.settings.root_dir, uid).join("ips"))
        .map(|t| t.lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

pub fn remove_ips(kubelet: &Kubelet, uid: &str) {
    let _ = std::fs::remove_file(paths::pod_dir(&kubelet.settings.root_dir, uid).join("ips"));
}

pub fn log_path_of(pod: &Pod, container: &str, restart: u32) -> PathBuf {
    paths::container_log(
        &pod.metadata.namespace.clone().unwrap_or_default(),
        &pod.metadata.name.clone().unwrap_or_default(),
        &pod.metadata.uid.clone().unwrap_or_default(),
        container,
        restart,
    )
}
