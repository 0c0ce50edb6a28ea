//! From a pod's spec to what the runtime is asked to run: argv (command
//! and args over the image's entrypoint and cmd, as upstream), the
//! environment (the image's, the Services' variables, then
//! the container's own with `$(VAR)` expanded), the user, the working
//! directory, the pod's files and volumes as mounts, and cgroup limits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use component_base::quantity;
use k8s_openapi::api::core::v1::{Container, Pod};
use runtime::images::Image;
use runtime::spec::{ContainerConfig, Mount, Resources};

/// A container's config could not be made: CreateContainerConfigError.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// What the worker resolved beforehand (values from the API, folders of
/// volumes), so that building the config is pure.
pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub image: &'a Image,
    pub id: String,
    pub sandbox_id: String,
    pub log_path: PathBuf,
    pub log_rotation: Option<runtime::log_rotation::Policy>,
    /// Volume name → its folder (or file) on the node.
    pub volumes: &'a BTreeMap<String, PathBuf>,
    /// The pod's /etc/hosts, /etc/resolv.conf, /etc/hostname.
    pub etc: &'a [(String, PathBuf)],
    /// The file behind terminationMessagePath.
    pub termination_log: PathBuf,
    /// Values of env `valueFrom` and `envFrom`, looked up by the worker.
    pub env_values: &'a EnvValues,
    /// The Services' variables (`service_env`), which the container's own
    /// env overrides and may refer to with `$(VAR)`.
    pub service_env: &'a [(String, String)],
    pub pod_ip: String,
    pub host_ip: String,
    pub node_name: String,
}

/// ConfigMaps and Secrets of the pod's namespace that env refers to.
#[derive(Debug, Default)]
pub struct EnvValues {
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
}

pub fn container_config(i: &Inputs<'_>) -> Result<ContainerConfig, ConfigError> {
    let c = i.container;
    let img = &i.image.config;
    let args = argv(c, &img.entrypoint, &img.cmd);
    if args.is_empty() {
        return Err(ConfigError(format!("no command specified for container {:?} (the image has no entrypoint or cmd)", c.name)));
    }
    let env = environment(i)?;
    let args = args.iter().map(|a| expand(a, &env)).collect();
    let (uid, gid) = user(i)?;
    let working_dir =
        c.working_dir.clone().filter(|w| !w.is_empty()).or_else(|| img.working_dir.clone().filter(|w| !w.is_empty())).unwrap_or_else(|| "/".into());

    let mut mounts: Vec<Mount> = i.etc.iter().map(|(dest, src)| Mount { source: src.clone(), destination: dest.clone(), read_only: false }).collect();
    let termination_path = c.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into());
    mounts.push(Mount { source: i.termination_log.clone(), destination: termination_path, read_only: false });
    for vm in c.volume_mounts.iter().flatten() {
        let source =
            i.volumes.get(&vm.name).ok_or_else(|| ConfigError(format!("volume {:?} of mount {:?} is not a volume of the pod", vm.name, vm.mount_path)))?;
        let source = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let p = source.join(sub);
                if !p.starts_with(source) || sub.contains("..") {
                    return Err(ConfigError(format!("subPath {sub:?} leaves its volume")));
                }
                std::fs::create_dir_all(&p).ok();
                p
            }
            None => source.clone(),
        };
        mounts.push(Mount { source, destination: vm.mount_path.clone(), read_only: vm.read_only.unwrap_or(false) });
    }

    let env_list: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let resources = resources(c);
    let labels = BTreeMap::from([("io.kubernetes.pod.uid".to_string(), i.sandbox_id.clone()), ("io.kubernetes.container.name".to_string(), c.name.clone())]);
    Ok(ContainerConfig {
        id: i.id.clone(),
        sandbox_id: i.sandbox_id.clone(),
        share_pid: i.pod.spec.as_ref().and_then(|s| s.share_process_namespace).unwrap_or(false),
        host_pid: i.pod.spec.as_ref().and_then(|s| s.host_pid).unwrap_or(false),
        pid_namespace_of: None,
        layers: i.image.layers.clone(),
        args,
        env: env_list,
        working_dir,
        uid,
        gid,
        supplementary_gids: supplementary_groups(i),
        mounts,
        log_path: i.log_path.clone(),
        log_rotation: i.log_rotation,
        resources,
        labels,
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
    })
}

/// upstream's rule: `command` replaces the entrypoint (and drops the
/// image's cmd); `args` replaces the cmd.
pub fn argv(c: &Container, entrypoint: &[String], cmd: &[String]) -> Vec<String> {
    let command = c.command.clone().unwrap_or_default();
    let args = c.args.clone().unwrap_or_default();
    match (command.is_empty(), args.is_empty()) {
        (false, _) => [command, args].concat(),
        (true, false) => [entrypoint.to_vec(), args].concat(),
        (true, true) => [entrypoint.to_vec(), cmd.to_vec()].concat(),
    }
}

/// The environment in order, later names replacing earlier ones in place.
fn environment(i: &Inputs<'_>) -> Result<Vec<(String, String)>, ConfigError> {
    let mut env: Vec<(String, String)> = vec![];
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| match env.iter_mut().find(|(name, _)| *name == k) {
        Some(slot) => slot.1 = v,
        None => env.push((k, v)),
    };
    for e in &i.image.config.env {
        if let Some((k, v)) = e.split_once('=') {
            set(&mut env, k.into(), v.into());
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        set(&mut env, "PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    let spec = i.pod.spec.as_ref();
    let hostname = if spec.and_then(|s| s.host_network) == Some(true) {
        // The node's UTS namespace, so the node's name.
        spec.and_then(|s| s.node_name.clone())
    } else {
        spec.and_then(|s| s.hostname.clone()).or_else(|| i.pod.metadata.name.clone())
    };
    set(&mut env, "HOSTNAME".into(), hostname.unwrap_or_default());
    for (k, v) in i.service_env {
        set(&mut env, k.clone(), v.clone());
    }
    // The container's own: envFrom first, then env, as upstream.
    for from in i.container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (source, name, optional) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(cm), _) => (&i.env_values.config_maps, cm.name.clone(), cm.optional.unwrap_or(false)),
            (None, Some(s)) => (&i.env_values.secrets, s.name.clone(), s.optional.unwrap_or(false)),
            (None, None) => continue,
        };
        match source.get(&name) {
            Some(values) => {
                for (k, v) in values {
                    set(&mut env, format!("{prefix}{k}"), v.clone());
                }
            }
            None if optional => {}
            None => return Err(ConfigError(format!("{} {name:?} not found", if from.config_map_ref.is_some() { "configmap" } else { "secret" }))),
        }
    }
    for e in i.container.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (_, Some(from)) => match value_from(i, from)? {
                Some(v) => v,
                None => continue,
            },
            (Some(v), None) => expand(v, &env),
            (None, None) => String::new(),
        };
        set(&mut env, e.name.clone(), value);
    }
    Ok(env)
}

fn value_from(i: &Inputs<'_>, from: &k8s_openapi::api::core::v1::EnvVarSource) -> Result<Option<String>, ConfigError> {
    if let Some(field) = &from.field_ref {
        let meta = &i.pod.metadata;
        let spec = i.pod.spec.clone().unwrap_or_default();
        let path = field.field_path.as_str();
        let value = match path {
            "metadata.name" => meta.name.clone().unwrap_or_default(),
            "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
            "metadata.uid" => meta.uid.clone().unwrap_or_default(),
            "spec.nodeName" => i.node_name.clone(),
            "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
            "status.podIP" | "status.podIPs" => i.pod_ip.clone(),
            "status.hostIP" | "status.hostIPs" => i.host_ip.clone(),
            _ => {
                if let Some(key) = path.strip_prefix("metadata.labels['").and_then(|k| k.strip_suffix("']")) {
                    meta.labels.as_ref().and_then(|l| l.get(key)).cloned().unwrap_or_default()
                } else if let Some(key) = path.strip_prefix("metadata.annotations['").and_then(|k| k.strip_suffix("']")) {
                    meta.annotations.as_ref().and_then(|l| l.get(key)).cloned().unwrap_or_default()
                } else {
                    return Err(ConfigError(format!("unsupported fieldRef {path:?}")));
                }
            }
        };
        return Ok(Some(value));
    }
    if let Some(r) = &from.resource_field_ref {
        return resource_field(i, r).map(Some);
    }
    let lookup = |source: &BTreeMap<String, BTreeMap<String, String>>, kind: &str, name: &str, key: &str, optional: bool| match source
        .get(name)
        .and_then(|m| m.get(key))
    {
        Some(v) => Ok(Some(v.clone())),
        None if optional => Ok(None),
        None if source.contains_key(name) => {
            Err(ConfigError(format!("couldn't find key {key} in {kind} {}/{name}", i.pod.metadata.namespace.clone().unwrap_or_default())))
        }
        None => Err(ConfigError(format!("{kind} {name:?} not found"))),
    };
    if let Some(r) = &from.config_map_key_ref {
        return lookup(&i.env_values.config_maps, "ConfigMap", &r.name, &r.key, r.optional.unwrap_or(false));
    }
    if let Some(r) = &from.secret_key_ref {
        return lookup(&i.env_values.secrets, "Secret", &r.name, &r.key, r.optional.unwrap_or(false));
    }
    Ok(None)
}

fn resource_field(i: &Inputs<'_>, r: &k8s_openapi::api::core::v1::ResourceFieldSelector) -> Result<String, ConfigError> {
    let res = i.container.resources.clone().unwrap_or_default();
    let (map, name) = match r.resource.split_once('.') {
        Some(("limits", n)) => (res.limits.unwrap_or_default(), n.to_string()),
        Some(("requests", n)) => (res.requests.unwrap_or_default(), n.to_string()),
        _ => return Err(ConfigError(format!("unsupported resourceFieldRef {:?}", r.resource))),
    };
    let divisor = r
        .divisor
        .as_ref()
        .and_then(|d| if name == "cpu" { quantity::milli_value(&d.0) } else { quantity::value(&d.0) })
        .unwrap_or(if name == "cpu" { 1000 } else { 1 });
    let value = map.get(&name).and_then(|q| if name == "cpu" { quantity::milli_value(&q.0) } else { quantity::value(&q.0) });
    // Without a limit, upstream gives the node's allocatable; the node's
    // cpus and memory stand for it here.
    let value = value.unwrap_or(if name == "cpu" { 1000 * std::thread::available_parallelism().map(|n| n.get() as i64).unwrap_or(1) } else { i64::MAX / 2 });
    Ok(((value + divisor.max(1) - 1) / divisor.max(1)).to_string())
}

/// `$(VAR)` → its value when defined, `$$` → `$`, as upstream expands.
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match env.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => out.push_str(&format!("$({name})")),
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn user(i: &Inputs<'_>) -> Result<(u32, u32), ConfigError> {
    let pod_sc = i.pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default();
    let sc = i.container.security_context.clone().unwrap_or_default();
    let run_as_user = sc.run_as_user.or(pod_sc.run_as_user);
    let run_as_group = sc.run_as_group.or(pod_sc.run_as_group);
    let (image_uid, image_gid) = match i.image.config.user.as_deref().filter(|u| !u.is_empty()) {
        None => (0, 0),
        Some(user) => image_user(user, &i.image.layers)?,
    };
    let uid = run_as_user.map(|u| u as u32).unwrap_or(image_uid);
    let gid = run_as_group.map(|g| g as u32).unwrap_or(if run_as_user.is_some() && i.image.config.user.is_none() { 0 } else { image_gid });
    if sc.run_as_non_root.or(pod_sc.run_as_non_root).unwrap_or(false) && uid == 0 {
        return Err(ConfigError("container has runAsNonRoot and image will run as root".into()));
    }
    Ok((uid, gid))
}

fn supplementary_groups(i: &Inputs<'_>) -> Vec<u32> {
    let pod_sc = i.pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default();
    let mut groups: Vec<u32> = pod_sc.supplemental_groups.unwrap_or_default().into_iter().map(|g| g as u32).collect();
    if let Some(fs) = pod_sc.fs_group {
        groups.push(fs as u32);
    }
    groups
}

/// The image's USER (`name`, `uid`, `uid:gid`, `name:group`), names read
/// from the image's own /etc/passwd and /etc/group.
fn image_user(user: &str, layers: &[PathBuf]) -> Result<(u32, u32), ConfigError> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_in_layers(layers, "etc/passwd");
    let entry = |name: &str| passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.first() == Some(&name) && f.len() > 3);
    let (uid, primary) = match u.parse::<u32>() {
        Ok(uid) => (uid, passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.get(2) == Some(&u)).and_then(|f| f[3].parse().ok()).unwrap_or(0)),
        Err(_) => match entry(u) {
            Some(f) => (f[2].parse().unwrap_or(0), f[3].parse().unwrap_or(0)),
            None => return Err(ConfigError(format!("unable to find user {u}: no matching entries in passwd file"))),
        },
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let group = read_in_layers(layers, "etc/group");
                group
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.first() == Some(&g) && f.len() > 2)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| ConfigError(format!("unable to find group {g}: no matching entries in group file")))?
            }
        },
    };
    Ok((uid, gid))
}

/// A file as the overlay would show it: from the topmost layer having it.
fn read_in_layers(layers: &[PathBuf], path: &str) -> String {
    layers.iter().rev().find_map(|l| std::fs::read_to_string(l.join(path)).ok()).unwrap_or_default()
}

/// Limits and shares from the container's resources, as upstream's
/// cgroupfs mapping: quota = limit in millicores × 100 µs per 100 ms,
/// shares = request in millicores × 1024 / 1000 (at least 2).
pub fn resources(c: &Container) -> Resources {
    let r = c.resources.clone().unwrap_or_default();
    let limits = r.limits.unwrap_or_default();
    let requests = r.requests.unwrap_or_default();
    let cpu_limit = limits.get("cpu").and_then(|q| quantity::milli_value(&q.0));
    let cpu_request = requests.get("cpu").and_then(|q| quantity::milli_value(&q.0)).or(cpu_limit);
    Resources {
        memory_limit: limits.get("memory").and_then(|q| quantity::value(&q.0)),
        cpu_quota: cpu_limit.map(|m| (m * 100).max(1000)),
        cpu_shares: Some(cpu_request.map(|m| ((m * 1024) / 1000).max(2) as u64).unwrap_or(2)),
    }
}

/// The pod's /etc/hosts as upstream's kubelet writes it.
pub fn hosts_file(pod: &Pod, pod_ips: &[String], domain: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let name = spec.hostname.clone().or_else(|| pod.metadata.name.clone()).unwrap_or_default();
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let names = match &spec.subdomain {
        Some(sub) if !sub.is_empty() => format!("{name}.{sub}.{}.svc.{domain}\t{name}", pod.metadata.namespace.clone().unwrap_or_default()),
        _ => name.clone(),
    };
    for ip in pod_ips {
        text.push_str(&format!("{ip}\t{names}\n"));
    }
    for alias in spec.host_aliases.iter().flatten() {
        text.push_str(&format!("\n# Entries added by HostAliases.\n{}\t{}\n", alias.ip, alias.hostnames.clone().unwrap_or_default().join("\t")));
    }
    text
}

/// The pod's /etc/resolv.conf for dnsPolicy ClusterFirst (the default):
/// the cluster DNS, upstream's search path and `ndots:5`; `dnsConfig`
/// added on top; `Default` and `None` as upstream.
pub fn resolv_conf(pod: &Pod, dns: &str, domain: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut policy = spec.dns_policy.clone().unwrap_or_else(|| "ClusterFirst".into());
    if policy == "ClusterFirst" && spec.host_network == Some(true) {
        // Upstream: a hostNetwork pod uses the node's DNS unless it asks
        // for ClusterFirstWithHostNet.
        policy = "Default".into();
    }
    let (mut servers, mut searches, mut options): (Vec<String>, Vec<String>, Vec<String>) = match policy.as_str() {
        "None" => (vec![], vec![], vec![]),
        "Default" => (vec![], vec![], vec![]),
        _ => (vec![dns.to_string()], vec![format!("{ns}.svc.{domain}"), format!("svc.{domain}"), domain.to_string()], vec!["ndots:5".into()]),
    };
    if let Some(cfg) = &spec.dns_config {
        servers.extend(cfg.nameservers.clone().unwrap_or_default());
        searches.extend(cfg.searches.clone().unwrap_or_default());
        for o in cfg.options.iter().flatten() {
            let opt = match &o.value {
                Some(v) => format!("{}:{v}", o.name.clone().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            };
            options.retain(|x| x.split(':').next() != opt.split(':').next());
            options.push(opt);
        }
    }
    let mut text = String::new();
    if !searches.is_empty() {
        text.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for s in servers {
        text.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        text.push_str(&format!("options {}\n", options.join(" ")));
    }
    text
}

/// Writes `text` to `path` whole (temporary file, then rename).
pub fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    write_bytes(path, text.as_bytes())
}

pub fn write_bytes(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".kubelab-tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        Container { name: "c".into(), command: command.map(v), args: args.map(v), ..Default::default() }
    }

    #[test]
    fn command_and_args_over_the_images_entrypoint_and_cmd() {
        let ep = vec!["/labhost".to_string()];
        let cmd = vec!["netexec".to_string()];
        assert_eq!(argv(&container(None, None), &ep, &cmd), ["/labhost", "netexec"]);
        assert_eq!(argv(&container(None, Some(&["pause"])), &ep, &cmd), ["/labhost", "pause"]);
        assert_eq!(argv(&container(Some(&["sh", "-c"]), None), &ep, &cmd), ["sh", "-c"]);
        assert_eq!(argv(&container(Some(&["sh"]), Some(&["-c", "x"])), &ep, &cmd), ["sh", "-c", "x"]);
    }

    /// The environment of container `c` in a pod of namespace `dev`,
    /// given the Services' variables.
    fn environment_of(c: &Container, service_env: &[(String, String)]) -> Vec<(String, String)> {
        let pod = Pod::default();
        let image = Image { id: String::new(), names: vec![], layers: vec![], config: Default::default() };
        let inputs = Inputs {
            pod: &pod,
            container: c,
            image: &image,
            id: "c".into(),
            sandbox_id: "uid".into(),
            log_path: PathBuf::new(),
            log_rotation: None,
            volumes: &BTreeMap::new(),
            etc: &[],
            termination_log: PathBuf::new(),
            env_values: &EnvValues::default(),
            service_env,
            pod_ip: String::new(),
            host_ip: String::new(),
            node_name: String::new(),
        };
        environment(&inputs).expect("an environment")
    }

    #[test]
    fn the_containers_env_overrides_and_refers_to_service_variables() {
        let var = |k: &str, v: &str| k8s_openapi::api::core::v1::EnvVar { name: k.into(), value: Some(v.into()), ..Default::default() };
        let mut c = container(None, None);
        c.env = Some(vec![var("WEB_SERVICE_PORT", "8080"), var("WEB_URL", "http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)/")]);
        let services = vec![("WEB_SERVICE_HOST".to_string(), "10.96.0.30".to_string()), ("WEB_SERVICE_PORT".to_string(), "80".to_string())];
        let env = environment_of(&c, &services);
        let get = |k: &str| env.iter().find(|(name, _)| name == k).map(|(_, v)| v.as_str());
        assert_eq!(get("WEB_SERVICE_HOST"), Some("10.96.0.30"));
        assert_eq!(get("WEB_SERVICE_PORT"), Some("8080"));
        assert_eq!(get("WEB_URL"), Some("http://10.96.0.30:8080/"));
        assert_eq!(env.iter().filter(|(k, _)| k == "WEB_SERVICE_PORT").count(), 1);
    }

    #[test]
    fn variables_expand_as_upstream() {
        let env = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &env), "1-$(B)-$(A)-$");
    }

    #[test]
    fn cluster_first_resolv_conf_has_upstreams_search_path() {
        let pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta { namespace: Some("dev".into()), ..Default::default() },
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(&pod, "10.96.0.10", "cluster.local"),
            "search dev.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn a_host_network_pod_uses_cluster_dns_only_when_it_asks() {
        let mut pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta { namespace: Some("dev".into()), ..Default::default() },
            spec: Some(k8s_openapi::api::core::v1::PodSpec { host_network: Some(true), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(resolv_conf(&pod, "10.96.0.10", "cluster.local"), "", "ClusterFirst falls back to the node's (Default)");
        pod.spec.as_mut().unwrap().dns_policy = Some("ClusterFirstWithHostNet".into());
        assert!(resolv_conf(&pod, "10.96.0.10", "cluster.local").contains("nameserver 10.96.0.10\n"));
    }

    #[test]
    fn cpu_and_memory_become_cgroup_figures() {
        let mut c = container(None, None);
        c.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some(BTreeMap::from([
                ("cpu".into(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("500m".into())),
                ("memory".into(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("64Mi".into())),
            ])),
            ..Default::default()
        });
        let r = resources(&c);
        assert_eq!(r.memory_limit, Some(64 * 1024 * 1024));
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.cpu_shares, Some(512));
    }
}
