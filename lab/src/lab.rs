//! Labs on the engine: bring one up (reconciling what is there), take it
//! down, and tell what it is doing. Everything a lab owns carries the label
//! `dev.kubelab.lab=<name>`; nothing without it is ever touched.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::future::try_join_all;
use futures_util::StreamExt;
use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};

use crate::addons;
use crate::cancel::{Cancel, Interrupted};
use crate::docker::{Engine, Found, COMPONENT_LABEL, IMAGES_LABEL_VALUE, LAB_LABEL, ROLE_LABEL, SPEC_LABEL};
use crate::images;
use crate::kubeconfig::{self, Kubeconfig};
use crate::pki;
use crate::plan::{self, Member, Plan, GATE_LABEL};
use crate::progress::Progress;
use crate::repo::Repo;
use crate::state;
use crate::topology::{self, Source};

pub const DEFAULT_NAME: &str = "lab";
const TOPOLOGY_HASH_LABEL: &str = "dev.kubelab.topology-hash";
const TOPOLOGY_LABEL: &str = "dev.kubelab.topology";
const TOPOLOGY_FILE_LABEL: &str = "dev.kubelab.topology-file";
/// How long one component may take to pass its gate.
const GATE_TIMEOUT: Duration = Duration::from_secs(60);
const GATE_POLL: Duration = Duration::from_millis(150);

#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Leave what a failed `up` started, for inspection.
    pub keep_on_failure: bool,
}

/// Lab names become parts of container, network and volume names.
pub fn check_name(name: &str) -> Result<()> {
    if name == IMAGES_LABEL_VALUE {
        bail!("the lab name {name:?} is reserved for kubelab's images");
    }
    if name.len() > 40 {
        bail!("invalid lab name {name:?}: at most 40 characters");
    }
    topology::check_dns_label(name).map_err(|why| anyhow::anyhow!("invalid lab name {name:?}: {why}"))
}

fn topology_hash(t: &topology::Topology) -> String {
    let digest = Sha256::digest(serde_json::to_vec(t).expect("a topology serializes"));
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// What exists of a lab before `up` touches it: what a failed or
/// interrupted `up` removes is everything not in here.
struct Before {
    containers: HashSet<String>,
    network: bool,
    volumes: HashSet<String>,
}

/// Brings a lab up, or reconciles a running one: healthy containers with an
/// unchanged spec are kept, changed ones replaced, missing ones created.
pub async fn up(engine: &Engine, repo: &Repo, source: &Source, name: &str, options: &UpOptions, progress: &Progress, cancel: &Cancel) -> Result<Plan> {
    check_name(name)?;
    let network = plan::network_name(name);
    let networks = engine.networks(Some(name)).await?;
    if let Some((_, labels)) = networks.iter().find(|(n, _)| *n == network) {
        let theirs = labels.get(TOPOLOGY_HASH_LABEL).map(String::as_str).unwrap_or("?");
        if theirs != topology_hash(&source.topology) {
            let file = labels.get(TOPOLOGY_FILE_LABEL).map(String::as_str).unwrap_or("another topology");
            bail!(
                "lab {name:?} is already up with a different topology ({file}); nothing was changed.\n\
                 Take it down first (lab down {name}) or choose another name (--name)."
            );
        }
    }

    let images = tokio::select! {
        images = images::ensure(engine, repo, progress) => images?,
        _ = cancel.cancelled() => return Err(Interrupted.into()),
    };
    // The PKI lives on the host (the kubeconfig needs the admin key); a
    // run that creates it and then fails takes it away again.
    let state = state::state_dir(name)?;
    let state_existed = state.exists();
    let pki = plan::load_pki(&pki::dir(name)?, name, &source.topology)?;
    // A subnet chosen here is free when chosen, but another `lab up` (a
    // parallel test, another terminal) may take it before our network
    // exists: Docker refuses the second network, and we choose again.
    let mut taken_meanwhile = Vec::new();
    let (plan, applied) = loop {
        let subnet = lab_subnet_besides(engine, &network, &source.topology, &taken_meanwhile).await?;
        let plan = plan::plan(name, &source.topology, subnet, &images, &pki);
        match apply(engine, source, &plan, options, progress, cancel).await {
            Err(e) if source.topology.networking.lab_subnet.is_none() && is_pool_overlap(&e) && taken_meanwhile.len() < 8 => {
                eprintln!("lab subnet {subnet} was taken meanwhile; choosing another");
                taken_meanwhile.push(subnet);
            }
            applied => break (plan, applied),
        }
    };
    if applied.is_err() && !state_existed && !options.keep_on_failure {
        let _ = std::fs::remove_dir_all(&state);
    }
    applied?;
    Ok(plan)
}

/// The lab network's subnet: the topology's; else the one the lab's
/// network already has (a running lab keeps its addresses); else a free
/// /24 chosen here, because the network's `--ip-range` (which keeps
/// Docker's addresses off the load balancer pool) needs a named subnet.
pub async fn lab_subnet(engine: &Engine, network: &str, topology: &topology::Topology) -> Result<Ipv4Net> {
    lab_subnet_besides(engine, network, topology, &[]).await
}

/// Docker's refusal of a network whose subnet another network has (its
/// message, which bollard passes on as text).
fn is_pool_overlap(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| cause.to_string().contains("Pool overlaps with other one on this address space"))
}

/// [`lab_subnet`], never choosing one of `taken` (subnets another lab took
/// between our look and our network's creation).
async fn lab_subnet_besides(engine: &Engine, network: &str, topology: &topology::Topology, taken: &[Ipv4Net]) -> Result<Ipv4Net> {
    if let Some(subnet) = &topology.networking.lab_subnet {
        return Ok(subnet.net());
    }
    let subnets = engine.network_subnets().await?;
    if let Some(existing) = subnets.iter().find(|s| s.network == network) {
        if existing.ip_range.is_none() {
            eprintln!(
                "warning: network {network} predates load balancer addresses: Docker may give a container an address of the pool {}; \
                 `lab down` and `lab up` again to keep them apart",
                topology.networking.load_balancer_pool_on(existing.subnet)
            );
        }
        return Ok(existing.subnet);
    }
    let used: Vec<Ipv4Net> = subnets.iter().map(|s| s.subnet).chain(taken.iter().copied()).collect();
    topology::free_lab_subnet(&used, &topology.networking)
        .ok_or_else(|| anyhow!("no /24 of {} is free for the lab network; name one with networking.labSubnet in the topology", topology::AUTO_LAB_SUBNETS))
}

/// The kubeconfig that reaches a lab's API from this machine: the address
/// of its load balancer or apiserver on the lab network (the host is on
/// that bridge), checked against the serving certificate's name `kubernetes`.
pub async fn kubeconfig(engine: &Engine, lab: &str) -> Result<Kubeconfig> {
    // The load balancer when the lab has one, else the one apiserver.
    let containers = engine.containers(Some(lab)).await?;
    let component = |c: &Found, instance: &str| c.labels.get(COMPONENT_LABEL).map(String::as_str) == Some(instance);
    let found = containers.iter().find(|c| component(c, plan::LOADBALANCER)).or_else(|| containers.iter().find(|c| component(c, "apiserver-0"))).cloned();
    let Some(found) = found else {
        bail!("lab {lab:?} has no apiserver{}", known_labs_hint(engine).await);
    };
    let Some(address) = found.address.filter(|_| found.running) else {
        bail!("the apiserver of lab {lab:?} is not running (see: lab status {lab})");
    };
    let dir = pki::dir(lab)?;
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {} (the lab's PKI); `lab up` recreates it", path.display()))
    };
    let server = format!("https://{address}:{}", plan::APISERVER_PORT);
    Ok(kubeconfig::for_lab(lab, &server, Some("kubernetes"), &read("ca.crt")?, &read(&format!("{}.crt", pki::ADMIN))?, &read(&format!("{}.key", pki::ADMIN))?))
}

/// Makes the engine hold what `plan` describes. On failure or interruption
/// it removes what it created (unless told to keep it) and returns the error.
pub async fn apply(engine: &Engine, source: &Source, plan: &Plan, options: &UpOptions, progress: &Progress, cancel: &Cancel) -> Result<()> {
    let name = &plan.lab;
    let before = Before {
        containers: engine.containers(Some(name)).await?.into_iter().map(|c| c.name).collect(),
        network: engine.networks(Some(name)).await?.iter().any(|(n, _)| *n == plan.network),
        volumes: engine.volumes(Some(name)).await?.into_iter().collect(),
    };
    // Before anything changes: etcd data that cannot work behind TLS.
    let from_before = plan.etcd_data_from_before_tls(&engine.volume_labels(Some(name)).await?).join(", ");
    if !from_before.is_empty() {
        bail!(
            "lab {name:?} keeps etcd data from before etcd ran behind TLS ({from_before}): its members have http:// \
             peer URLs stored, which members serving peers over TLS cannot use; nothing was changed.\n\
             Make the lab again, which loses its data: lab down {name}, then lab up."
        );
    }
    let hash = topology_hash(&source.topology);
    match reconcile(engine, source, plan, &hash, &before, progress, cancel).await {
        Ok(()) => Ok(()),
        Err(e) => {
            if options.keep_on_failure {
                eprintln!("keeping what was started (--keep-on-failure); remove it with: lab down {name}");
            } else {
                eprintln!("removing what this run started");
                roll_back(engine, name, &plan.network, &before).await?;
            }
            Err(e)
        }
    }
}

async fn reconcile(engine: &Engine, source: &Source, plan: &Plan, hash: &str, before: &Before, progress: &Progress, cancel: &Cancel) -> Result<()> {
    let lab = &plan.lab;
    let labels = |extra: &[(&str, String)]| {
        let mut l = HashMap::from([(LAB_LABEL.to_string(), lab.clone())]);
        l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        l
    };
    if !before.network {
        let yaml = serde_yaml::to_string(&source.topology)?;
        let file = source.path.display().to_string();
        let extra = [(TOPOLOGY_HASH_LABEL, hash.to_string()), (TOPOLOGY_LABEL, yaml), (TOPOLOGY_FILE_LABEL, file)];
        engine.create_network(&plan.network, plan.subnet, plan.ip_range, labels(&extra)).await?;
    }
    for volume in plan.volumes() {
        cancel.check()?;
        if !before.volumes.contains(&volume) {
            engine.create_volume(&volume, labels(&plan.volume_labels(&volume))).await?;
        }
    }
    // Containers of the lab that the plan no longer has go; the rest are
    // kept, started or replaced below.
    let wanted: HashSet<&str> = plan.members().map(|m| m.spec.name.as_str()).collect();
    let mut existing: HashMap<String, Found> = HashMap::new();
    for found in engine.containers(Some(lab)).await? {
        if wanted.contains(found.name.as_str()) {
            existing.insert(found.name.clone(), found);
        } else {
            engine.remove_container(&found.name).await?;
        }
    }
    // Cluster DNS is applied once the nodes are Ready, so that its pods
    // spread over all of them (applied earlier, both replicas land on the
    // first node Ready) and start while kube-proxy comes up; only the rest
    // is waited for at the end.
    let apply_after = plan.stages.iter().position(|s| s.name == "nodes");
    let mut addons: Option<kube::Client> = None;
    for (i, stage) in plan.stages.iter().enumerate() {
        cancel.check()?;
        let starts = stage.members.iter().map(|m| start_member(engine, m, existing.get(&m.spec.name), progress, cancel));
        try_join_all(starts).await?;
        if !plan.addons.is_empty() && addons.is_none() && (Some(i) == apply_after || i + 1 == plan.stages.len()) {
            let task = progress.task(addons::TASK);
            task.update("applying cluster DNS (kube-system/coredns, kube-dns)");
            let config = kubeconfig(engine, lab).await?;
            let applied = async {
                let client = addons::client(&config).await?;
                addons::install(&client, &plan.addons).await?;
                anyhow::Ok(client)
            };
            let client = tokio::select! {
                done = applied => done.inspect_err(|_| task.failed("failed"))?,
                _ = cancel.cancelled() => return Err(Interrupted.into()),
            };
            task.done("cluster DNS applied; its pods start as nodes come up");
            addons = Some(client);
        }
    }
    if let Some(client) = addons {
        let task = progress.task(addons::WAIT_TASK);
        task.update("waiting for deployment kube-system/coredns to be available");
        tokio::select! {
            done = addons::wait_available(&client, &plan.addons, GATE_TIMEOUT, GATE_POLL) => done.inspect_err(|_| task.failed("failed"))?,
            _ = cancel.cancelled() => return Err(Interrupted.into()),
        }
        task.done("cluster DNS available");
    }
    Ok(())
}

async fn start_member(engine: &Engine, member: &Member, existing: Option<&Found>, progress: &Progress, cancel: &Cancel) -> Result<()> {
    let task = progress.task(&member.instance);
    let same_spec = existing.is_some_and(|f| f.labels.get(SPEC_LABEL) == member.spec.labels.get(SPEC_LABEL));
    let result = async {
        match existing {
            Some(found) if same_spec && found.running => task.update("running; checking health"),
            Some(_) if same_spec => {
                task.update("starting");
                engine.start(&member.spec.name).await?;
            }
            Some(_) => {
                task.update("replacing (its spec changed)");
                engine.remove_container(&member.spec.name).await?;
                engine.run(&member.spec).await?;
            }
            None => {
                task.update("creating");
                engine.run(&member.spec).await?;
            }
        }
        cancel.check()?;
        task.update("waiting for health");
        wait_for_gate(engine, &member.spec.name, &member.gate, cancel).await
    }
    .await;
    match &result {
        Ok(()) => task.done("healthy"),
        Err(e) if e.is::<Interrupted>() => task.failed("interrupted"),
        Err(_) => task.failed("failed"),
    }
    result.with_context(|| format!("component {} did not come up", member.instance))
}

/// Runs the gate until it passes; fails at once if the container stops, and
/// after [`GATE_TIMEOUT`] otherwise, with the last lines of its log.
async fn wait_for_gate(engine: &Engine, container: &str, gate: &[String], cancel: &Cancel) -> Result<()> {
    let started = Instant::now();
    loop {
        let (code, output) = engine.exec(container, gate).await.unwrap_or((-1, String::new()));
        if code == 0 {
            return Ok(());
        }
        let running = engine.is_running(container).await?;
        if !running || started.elapsed() > GATE_TIMEOUT {
            let why = if running { "its health gate did not pass in time" } else { "its container stopped" };
            let log = engine.log_tail(container, 20).await;
            bail!("{container}: {why}.\nlast gate output: {}\nlast lines of its log:\n{}", output.trim(), indent(&log));
        }
        tokio::select! {
            _ = tokio::time::sleep(GATE_POLL) => {}
            _ = cancel.cancelled() => return Err(Interrupted.into()),
        }
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  | {l}\n")).collect()
}

async fn roll_back(engine: &Engine, lab: &str, network: &str, before: &Before) -> Result<()> {
    for c in engine.containers(Some(lab)).await? {
        if !before.containers.contains(&c.name) {
            engine.remove_container(&c.name).await?;
        }
    }
    if !before.network {
        engine.remove_network(network).await?;
    }
    for v in engine.volumes(Some(lab)).await? {
        if !before.volumes.contains(&v) {
            engine.remove_volume(&v).await?;
        }
    }
    Ok(())
}

/// Removes a lab: its containers, its network and (unless `keep_data`) its
/// volumes. Returns false when there was nothing of that name.
pub async fn down(engine: &Engine, lab: &str, keep_data: bool) -> Result<bool> {
    let containers = engine.containers(Some(lab)).await?;
    let networks = engine.networks(Some(lab)).await?;
    let volumes = engine.volumes(Some(lab)).await?;
    if containers.is_empty() && networks.is_empty() && volumes.is_empty() {
        if !keep_data {
            remove_state(lab)?;
        }
        return Ok(false);
    }
    try_join_all(containers.iter().map(|c| engine.remove_container(&c.name))).await?;
    for (network, _) in networks {
        engine.remove_network(&network).await?;
    }
    if !keep_data {
        for v in volumes {
            engine.remove_volume(&v).await?;
        }
        remove_state(lab)?;
    }
    Ok(true)
}

/// Removes the lab's host-side state (its PKI).
fn remove_state(lab: &str) -> Result<()> {
    let dir = state::state_dir(lab)?;
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

/// Names of every lab with anything on the engine.
pub async fn names(engine: &Engine) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    let label = |labels: &HashMap<String, String>| labels.get(LAB_LABEL).cloned();
    names.extend(engine.containers(None).await?.iter().filter_map(|c| label(&c.labels)));
    names.extend(engine.networks(None).await?.iter().filter_map(|(_, l)| label(l)));
    names.extend(engine.volume_labels(None).await?.iter().filter_map(|(_, l)| label(l)));
    names.retain(|n| n != IMAGES_LABEL_VALUE);
    names.sort();
    names.dedup();
    Ok(names)
}

/// One row of `lab status`.
#[derive(Debug, Clone)]
pub struct ComponentStatus {
    pub component: String,
    pub role: String,
    pub container: String,
    pub state: String,
    pub address: String,
    pub health: String,
}

pub async fn status(engine: &Engine, lab: &str) -> Result<Vec<ComponentStatus>> {
    let containers = engine.containers(Some(lab)).await?;
    if containers.is_empty() && engine.networks(Some(lab)).await?.is_empty() {
        bail!("no lab named {lab:?} is up{}", known_labs_hint(engine).await);
    }
    let rows = containers.into_iter().map(|c| async move {
        let gate: Vec<String> = c.labels.get(GATE_LABEL).and_then(|g| serde_json::from_str(g).ok()).unwrap_or_default();
        let health = if !c.running {
            "-".to_string()
        } else if gate.is_empty() {
            "unknown".to_string()
        } else {
            match engine.exec(&c.name, &gate).await {
                Ok((0, _)) => "healthy".to_string(),
                _ => "unhealthy".to_string(),
            }
        };
        let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
        ComponentStatus {
            component: label(COMPONENT_LABEL),
            role: label(ROLE_LABEL),
            container: c.name.clone(),
            state: c.state.clone(),
            address: c.address.clone().unwrap_or_else(|| "-".into()),
            health,
        }
    });
    let mut rows = futures_util::future::join_all(rows).await;
    rows.sort_by(|a, b| (role_order(&a.role), &a.component).cmp(&(role_order(&b.role), &b.component)));
    Ok(rows)
}

fn role_order(role: &str) -> usize {
    ["etcd", "loadbalancer", "apiserver", "controller-manager", "scheduler", "node", "kube-proxy"].iter().position(|r| *r == role).unwrap_or(usize::MAX)
}

async fn known_labs_hint(engine: &Engine) -> String {
    match names(engine).await {
        Ok(names) if !names.is_empty() => format!("; labs that are: {}", names.join(", ")),
        _ => "; no lab is up".to_string(),
    }
}

/// The container of a lab's component, or an error naming the components.
pub async fn component_container(engine: &Engine, lab: &str, component: &str) -> Result<String> {
    let containers = engine.containers(Some(lab)).await?;
    if containers.is_empty() {
        bail!("no lab named {lab:?} is up{}", known_labs_hint(engine).await);
    }
    let mut components: Vec<String> = Vec::new();
    for c in containers {
        let name = c.labels.get(COMPONENT_LABEL).cloned().unwrap_or_default();
        if name == component {
            return Ok(c.name);
        }
        components.push(name);
    }
    components.sort();
    bail!("lab {lab:?} has no component {component:?}; it has: {}", components.join(", "))
}

/// Writes every component's log, the topology and the status table to `dir`,
/// for bug reports.
pub async fn export_logs(engine: &Engine, lab: &str, dir: &Path) -> Result<Vec<String>> {
    let rows = status(engine, lab).await?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for row in &rows {
        let mut log = String::new();
        let mut lines = engine.logs(&row.container, None, false);
        while let Some(chunk) = lines.next().await {
            log.push_str(&chunk?);
        }
        let file = format!("{}.log", row.component);
        std::fs::write(dir.join(&file), log)?;
        written.push(file);
    }
    if let Some((_, labels)) = engine.networks(Some(lab)).await?.into_iter().next() {
        if let Some(yaml) = labels.get(TOPOLOGY_LABEL) {
            let from = labels.get(TOPOLOGY_FILE_LABEL).cloned().unwrap_or_default();
            std::fs::write(dir.join("topology.yaml"), format!("# lab {lab}, from {from}\n{yaml}"))?;
            written.push("topology.yaml".into());
        }
    }
    std::fs::write(dir.join("status.txt"), status_table(&rows))?;
    written.push("status.txt".into());
    Ok(written)
}

pub fn status_table(rows: &[ComponentStatus]) -> String {
    let header = ["COMPONENT", "CONTAINER", "STATE", "ADDRESS", "HEALTH"];
    let cells: Vec<[String; 5]> =
        rows.iter().map(|r| [r.component.clone(), r.container.clone(), r.state.clone(), r.address.clone(), r.health.clone()]).collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}   "));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header);
    for row in &cells {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
    out
}

/// One row of `lab list`.
#[derive(Debug, Clone)]
pub struct LabSummary {
    pub name: String,
    pub topology: String,
    pub running: usize,
    pub containers: usize,
}

pub async fn list(engine: &Engine) -> Result<Vec<LabSummary>> {
    let mut out = Vec::new();
    for name in names(engine).await? {
        let containers = engine.containers(Some(&name)).await?;
        let topology = engine.networks(Some(&name)).await?.into_iter().find_map(|(_, l)| l.get(TOPOLOGY_FILE_LABEL).cloned()).unwrap_or_else(|| "-".into());
        out.push(LabSummary { name, topology, running: containers.iter().filter(|c| c.running).count(), containers: containers.len() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_subnet_is_told_from_other_failures() {
        let taken = anyhow!("Docker responded with status code 403: Pool overlaps with other one on this address space").context("creating network kubelab-x");
        assert!(is_pool_overlap(&taken));
        assert!(!is_pool_overlap(&anyhow!("Docker responded with status code 500: no space left on device").context("creating network kubelab-x")));
    }
}
