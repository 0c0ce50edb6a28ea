//! Pod networking through CNI, as the spec says and libcni does: the
//! lexically first `.conflist` of `--cni-conf-dir`, each plugin run with
//! the `CNI_*` environment and its configuration on stdin (the list's name
//! and version, the previous plugin's result, the runtime config its
//! capabilities ask for), the final result cached under
//! `/var/lib/cni/results/<network>-<container>-<ifname>` (libcni's layout),
//! and DEL run in reverse with that cached result, also after a failed ADD
//! and when the network namespace is gone.
//!
//! The kubelet writes the conflist itself once its Node has a pod CIDR:
//! the real `bridge` plugin (bridge `cni0`, hairpin mode for Services that
//! lead a pod back to itself) with `host-local` addresses from that CIDR,
//! then `portmap` for hostPorts; `loopback` brings up each pod's `lo`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value};

use crate::Settings;

/// The conflist the kubelet writes; earlier names would win (lexical order).
const CONFLIST: &str = "10-kubelab.conflist";
const NETWORK: &str = "kubelab";
const IFNAME: &str = "eth0";
const CACHE_DIR: &str = "/var/lib/cni/results";
/// host-local's store: a file per reserved address, naming its container.
const HOST_LOCAL_DIR: &str = "/var/lib/cni/networks";

pub struct Network {
    conf_dir: PathBuf,
    bin_dir: PathBuf,
    cluster_cidr: ipnet::IpNet,
    /// The pod CIDR the conflist was written for.
    configured: Mutex<Option<String>>,
    /// One ADD at a time on a node while its bridge does not exist yet:
    /// the bridge plugin creating `cni0` for two pods at once fails ("could
    /// not set bridge's mac"). Once it exists, ADDs and DELs run side by
    /// side, as containerd runs them (host-local locks its own store);
    /// one at a time, a node starting 100 pods spent most of its time
    /// waiting here.
    serial: tokio::sync::Mutex<()>,
}

/// A hostPort, as the portmap plugin's `portMappings` capability takes it.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: i32,
    pub container_port: i32,
    pub protocol: String,
    #[serde(rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

impl Network {
    pub fn new(settings: &Settings) -> Network {
        Network {
            conf_dir: settings.cni_conf_dir.clone(),
            bin_dir: settings.cni_bin_dir.clone(),
            cluster_cidr: settings.cluster_cidr,
            configured: Mutex::new(None),
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether pods can be networked; the reason when not.
    pub fn ready(&self) -> Result<(), String> {
        match self.conflist_path() {
            Some(_) => Ok(()),
            None => Err(format!("no CNI configuration in {} (waiting for the Node's pod CIDR)", self.conf_dir.display())),
        }
    }

    /// Writes the conflist for `pod_cidr` (once, or when the CIDR changes)
    /// and makes traffic leaving the cluster's pod network leave with the
    /// node's address: the lab network drops packets from addresses
    /// outside its subnet, and pods have no other way out.
    /// True when this call configured it (the first time for this CIDR).
    pub fn configure(&self, pod_cidr: &str) -> Result<bool> {
        let mut configured = self.configured.lock().expect("not poisoned");
        if configured.as_deref() == Some(pod_cidr) {
            return Ok(false);
        }
        let cidr: ipnet::IpNet = pod_cidr.parse().with_context(|| format!("the Node's podCIDR {pod_cidr:?}"))?;
        // Pod packets must fit into VXLAN between nodes.
        let mtu = crate::overlay::uplink_mtu("eth0").saturating_sub(crate::overlay::OVERHEAD);
        let conflist = conflist(&cidr, mtu);
        std::fs::create_dir_all(&self.conf_dir)?;
        let path = self.conf_dir.join(CONFLIST);
        let text = serde_json::to_string_pretty(&conflist)? + "\n";
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &text)?;
            std::fs::rename(&tmp, &path)?;
        }
        masquerade_leaving(&self.cluster_cidr)?;
        tracing::info!("pod network configured for {pod_cidr} ({})", path.display());
        *configured = Some(pod_cidr.to_string());
        Ok(true)
    }

    fn conflist_path(&self) -> Option<PathBuf> {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&self.conf_dir).ok()?.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "conflist")).collect();
        files.sort();
        files.into_iter().next()
    }

    /// ADD: attaches the namespace; returns the pod's addresses.
    pub async fn add(&self, container_id: &str, netns: &Path, ports: &[PortMapping]) -> Result<Vec<String>> {
        let path = self.conflist_path().ok_or_else(|| anyhow!("{}", self.ready().unwrap_err()))?;
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let list: Value = serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))?;
        let _first_bridge = match bridge_of(&list) {
            Some(bridge) if !Path::new("/sys/class/net").join(&bridge).exists() => Some(self.serial.lock().await),
            _ => None,
        };
        let name = list["name"].as_str().unwrap_or(NETWORK).to_string();
        let version = list["cniVersion"].as_str().unwrap_or("1.0.0").to_string();
        let capability_args = json!({ "portMappings": ports });

        let loopback = json!({ "cniVersion": version, "name": "cni-loopback", "type": "loopback" });
        self.exec("ADD", &loopback, container_id, Some(netns), "lo").await?;

        let mut result: Option<Value> = None;
        for plugin in list["plugins"].as_array().cloned().unwrap_or_default() {
            let config = plugin_config(&plugin, &name, &version, result.as_ref(), &capability_args);
            result = Some(self.exec("ADD", &config, container_id, Some(netns), IFNAME).await?);
        }
        let result = result.ok_or_else(|| anyhow!("{} lists no plugins", path.display()))?;
        let cache = json!({
            "kind": "cniCacheV1",
            "containerId": container_id,
            "config": base64::engine::general_purpose::STANDARD.encode(&bytes),
            "ifName": IFNAME,
            "networkName": name,
            "capabilityArgs": capability_args,
            "result": result,
        });
        std::fs::create_dir_all(CACHE_DIR)?;
        let cache_path = cache_path(&name, container_id);
        std::fs::write(&cache_path, serde_json::to_vec(&cache)?).with_context(|| format!("writing {}", cache_path.display()))?;
        Ok(result["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip["address"].as_str())
            .map(|a| a.split('/').next().unwrap_or(a).to_string())
            .collect())
    }

    /// DEL: detaches the namespace (gone or not) and forgets the cached
    /// result; the cached configuration is used, so a changed conflist
    /// still deletes what the old one made.
    pub async fn del(&self, container_id: &str, netns: Option<&Path>) -> Result<()> {
        let cache_path = cache_path(NETWORK, container_id);
        let cached: Option<Value> = std::fs::read(&cache_path).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let (bytes, prev, capability_args) = match &cached {
            Some(c) => (
                base64::engine::general_purpose::STANDARD.decode(c["config"].as_str().unwrap_or_default()).unwrap_or_default(),
                Some(c["result"].clone()),
                c["capabilityArgs"].clone(),
            ),
            None => match self.conflist_path() {
                Some(p) => (std::fs::read(p).unwrap_or_default(), None, json!({})),
                None => return Ok(()),
            },
        };
        let list: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let name = list["name"].as_str().unwrap_or(NETWORK).to_string();
        let version = list["cniVersion"].as_str().unwrap_or("1.0.0").to_string();
        let netns = netns.filter(|p| p.exists());
        for plugin in list["plugins"].as_array().cloned().unwrap_or_default().iter().rev() {
            let config = plugin_config(plugin, &name, &version, prev.as_ref(), &capability_args);
            self.exec("DEL", &config, container_id, netns, IFNAME).await?;
        }
        match std::fs::remove_file(&cache_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).with_context(|| format!("removing {}", cache_path.display())),
            _ => Ok(()),
        }
    }

    /// Whether `container_id` may hold anything of the pod network: a
    /// cached attachment, or an address host-local reserved for it (an ADD
    /// that never finished). A new pod holds nothing, and its ADD need not
    /// be preceded by a DEL, which costs as much as the ADD itself.
    pub fn holds(&self, container_id: &str) -> bool {
        if cache_path(NETWORK, container_id).exists() {
            return true;
        }
        let reservations = Path::new(HOST_LOCAL_DIR).join(NETWORK);
        std::fs::read_dir(reservations)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|owner| owner.lines().next() == Some(container_id)))
    }

    /// The container ids with a cached attachment (for clean-up of pods
    /// that went while the kubelet was away).
    pub fn attached(&self) -> Vec<String> {
        let prefix = format!("{NETWORK}-");
        let suffix = format!("-{IFNAME}");
        std::fs::read_dir(CACHE_DIR)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix(&prefix)?.strip_suffix(&suffix).map(str::to_string)))
            .collect()
    }

    async fn exec(&self, command: &str, config: &Value, container_id: &str, netns: Option<&Path>, ifname: &str) -> Result<Value> {
        let kind = config["type"].as_str().ok_or_else(|| anyhow!("a CNI plugin configuration without a type"))?;
        let binary = self.bin_dir.join(kind);
        let mut child = tokio::process::Command::new(&binary)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", netns.map(|p| p.display().to_string()).unwrap_or_default())
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.bin_dir)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running CNI plugin {}", binary.display()))?;
        let stdin = serde_json::to_vec(config)?;
        if let Some(mut pipe) = child.stdin.take() {
            use tokio::io::AsyncWriteExt;
            pipe.write_all(&stdin).await?;
        }
        let output = child.wait_with_output().await?;
        if !output.status.success() {
            let error: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
            let msg = error["msg"].as_str().map(str::to_string).unwrap_or_else(|| String::from_utf8_lossy(&output.stderr).trim().to_string());
            let details = error["details"].as_str().map(|d| format!(" ({d})")).unwrap_or_default();
            bail!("CNI plugin {kind} {command} failed: {msg}{details}");
        }
        if command == "DEL" || output.stdout.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&output.stdout).with_context(|| format!("CNI plugin {kind} answered no JSON"))
    }
}

/// The bridge the conflist's bridge plugin makes (its default: `cni0`).
fn bridge_of(list: &Value) -> Option<String> {
    let plugin = list["plugins"].as_array()?.iter().find(|p| p["type"] == "bridge")?;
    Some(plugin["bridge"].as_str().unwrap_or("cni0").to_string())
}

fn cache_path(network: &str, container_id: &str) -> PathBuf {
    Path::new(CACHE_DIR).join(format!("{network}-{container_id}-{IFNAME}"))
}

/// The conflist for a node's pod CIDR.
pub fn conflist(cidr: &ipnet::IpNet, mtu: u32) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                // Pod to pod is never NATed; leaving the pod network is
                // masqueraded by the node's own rule (see configure).
                "ipMasq": false,
                "hairpinMode": true,
                "mtu": mtu,
                "ipam": { "type": "host-local", "ranges": [[{ "subnet": cidr.to_string() }]], "routes": [{ "dst": "0.0.0.0/0" }] }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    })
}

/// One plugin's stdin: libcni's buildOneConfig and injectRuntimeConfig.
fn plugin_config(plugin: &Value, name: &str, version: &str, prev: Option<&Value>, capability_args: &Value) -> Value {
    let mut config = plugin.clone();
    config["name"] = json!(name);
    config["cniVersion"] = json!(version);
    if let Some(prev) = prev.filter(|p| !p.is_null()) {
        config["prevResult"] = prev.clone();
    }
    let mut runtime = serde_json::Map::new();
    if let Some(caps) = plugin["capabilities"].as_object() {
        for (cap, on) in caps {
            if on.as_bool() == Some(true) {
                if let Some(arg) = capability_args.get(cap) {
                    runtime.insert(cap.clone(), arg.clone());
                }
            }
        }
    }
    if !runtime.is_empty() {
        config["runtimeConfig"] = Value::Object(runtime);
    }
    config
}

/// `-t nat POSTROUTING -s <cluster> ! -d <cluster> -j MASQUERADE`, once.
fn masquerade_leaving(cluster: &ipnet::IpNet) -> Result<()> {
    let rule = [
        "-s",
        &cluster.to_string(),
        "!",
        "-d",
        &cluster.to_string(),
        "-m",
        "comment",
        "--comment",
        "kubelab: pods leaving the pod network",
        "-j",
        "MASQUERADE",
    ];
    let present = std::process::Command::new("iptables").args(["-t", "nat", "-C", "POSTROUTING"]).args(rule).output()?;
    if present.status.success() {
        return Ok(());
    }
    let added = std::process::Command::new("iptables").args(["-t", "nat", "-A", "POSTROUTING"]).args(rule).output()?;
    if !added.status.success() {
        bail!("iptables: {}", String::from_utf8_lossy(&added.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_get_the_lists_name_their_previous_result_and_asked_capabilities() {
        let list = conflist(&"10.244.1.0/24".parse().unwrap(), 1450);
        let ports = json!({ "portMappings": [{ "hostPort": 8080, "containerPort": 80, "protocol": "tcp" }] });
        let bridge = plugin_config(&list["plugins"][0], "kubelab", "1.0.0", None, &ports);
        assert_eq!(bridge["name"], "kubelab");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.1.0/24");
        assert!(bridge.get("runtimeConfig").is_none() && bridge.get("prevResult").is_none());
        let prev = json!({ "cniVersion": "1.0.0", "ips": [{ "address": "10.244.1.2/24" }] });
        let portmap = plugin_config(&list["plugins"][1], "kubelab", "1.0.0", Some(&prev), &ports);
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(portmap["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    }

    #[test]
    fn the_bridge_is_the_bridge_plugins() {
        assert_eq!(bridge_of(&conflist(&"10.244.1.0/24".parse().unwrap(), 1450)).as_deref(), Some("cni0"));
        assert_eq!(bridge_of(&json!({"plugins": [{"type": "bridge"}]})).as_deref(), Some("cni0"), "the plugin's default");
        assert_eq!(bridge_of(&json!({"plugins": [{"type": "ptp"}]})), None);
    }
}
