//! One pod's worker: brings what runs in line with the pod's spec, again
//! on every change of the pod and every second while it lives, and writes
//! the pod's status when it changed. Deletion: SIGTERM, the grace period,
//! SIGKILL, the network and sandbox torn down, then the final delete with
//! `gracePeriodSeconds=0` so `kubectl delete pod` returns.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use runtime::container::ContainerState as Run;
use tokio::sync::watch;

use super::backoff::{run_time, Backoff, BACKOFF_MAX, BACKOFF_RESET, BACKOFF_START};
use super::config::{self, Inputs};
use super::duration::go_seconds;
use super::events::{missing_image, name};
use super::ids::container_name;
use super::lifecycle;
use super::probe::{ContainerProbes, Found, PodContext};
use super::status::{self, Attempt, Observed, PodObserved};
use super::{env, files, is_sidecar, service_env, volumes, Shared};
use crate::{paths, Kubelet};

/// How often a live pod is looked at without a change (container exits).
const RESYNC: Duration = Duration::from_millis(500);
/// Kill grace for a pod removed from the API without its own (a force delete).
const GONE_GRACE: Duration = Duration::from_secs(2);

pub struct Worker {
    kubelet: Arc<Kubelet>,
    uid: String,
    pods: watch::Receiver<Option<Pod>>,
    shared: Arc<Mutex<Shared>>,
    /// Attempts per container name, oldest first, as found or started.
    attempts: BTreeMap<String, Vec<Attempt>>,
    backoff: BTreeMap<String, Backoff>,
    /// Decided waits (image missing, bad config), per container.
    waiting: BTreeMap<String, (String, String)>,
    last_status: Option<serde_json::Value>,
    recorder: component_base::events::Recorder,
    /// The pod's addresses, once networked.
    pod_ips: Vec<String>,
    initialized: bool,
    terminal: Option<&'static str>,
    /// The probes of each app container's running attempt.
    probes: BTreeMap<String, ContainerProbes>,
}

impl Worker {
    pub fn new(kubelet: Arc<Kubelet>, uid: String, pods: watch::Receiver<Option<Pod>>, shared: Arc<Mutex<Shared>>, adopted: Vec<Attempt>) -> Worker {
        let mut attempts: BTreeMap<String, Vec<Attempt>> = BTreeMap::new();
        for a in adopted {
            if let Some(name) = container_name(&uid, &a.id) {
                attempts.entry(name).or_default().push(a);
            }
        }
        for list in attempts.values_mut() {
            list.sort_by_key(|a| a.restart);
        }
        let recorder = component_base::events::Recorder::new(kubelet.client.clone(), "kubelet", Some(kubelet.settings.node_name.clone()));
        let pod_ips = files::read_ips(&kubelet, &uid);
        Worker {
            kubelet,
            uid,
            pods,
            shared,
            attempts,
            backoff: BTreeMap::new(),
            waiting: BTreeMap::new(),
            last_status: None,
            recorder,
            pod_ips,
            initialized: false,
            terminal: None,
            probes: BTreeMap::new(),
        }
    }

    pub async fn run(mut self) {
        loop {
            let pod = self.pods.borrow_and_update().clone();
            let Some(pod) = pod.filter(|p| p.metadata.deletion_timestamp.is_none()) else {
                let pod = self.pods.borrow().clone();
                self.terminate(pod).await;
                return;
            };
            if let Err(e) = self.sync(&pod).await {
                tracing::warn!(pod = %name(&pod), "sync: {e:#}");
            }
            tokio::select! {
                changed = self.pods.changed() => if changed.is_err() { let pod = self.pods.borrow().clone(); self.terminate(pod).await; return; },
                _ = tokio::time::sleep(RESYNC) => {}
            }
        }
    }

    async fn sync(&mut self, pod: &Pod) -> anyhow::Result<()> {
        self.refresh().await;
        if self.terminal.is_none() {
            match self.ensure_sandbox(pod).await {
                Ok(()) => self.ensure_containers(pod).await,
                Err(e) => {
                    self.recorder.warning(component_base::events::reference(pod), "FailedCreatePodSandBox", format!("Failed to create pod sandbox: {e:#}"));
                    tracing::warn!(pod = %name(pod), "sandbox: {e:#}");
                }
            }
            self.refresh().await;
            self.sync_probes(pod);
            self.terminal = self.decide_terminal(pod);
            if self.terminal.is_some() {
                // Done for good: no restarts; the sidecars stop (as at
                // deletion) and the address goes back.
                self.probes.clear();
                let grace = Duration::from_secs(spec_grace(pod));
                self.stop_all(grace, pod).await;
                self.teardown_network().await;
            }
        }
        self.report(pod).await
    }

    /// Reads each known attempt's state again.
    async fn refresh(&mut self) {
        let ids: Vec<String> = self.attempts.values().flatten().map(|a| a.id.clone()).collect();
        let kubelet = self.kubelet.clone();
        let states = tokio::task::spawn_blocking(move || ids.into_iter().map(|id| (id.clone(), kubelet.runtime.container(&id))).collect::<Vec<_>>())
            .await
            .unwrap_or_default();
        for (id, state) in states {
            for a in self.attempts.values_mut().flatten() {
                if a.id == id {
                    if let Ok(Some(s)) = &state {
                        a.state = s.state.clone();
                    }
                }
            }
        }
    }

    async fn ensure_sandbox(&mut self, pod: &Pod) -> anyhow::Result<()> {
        let uid = self.uid.clone();
        let kubelet = self.kubelet.clone();
        let current = blocking(move || kubelet.runtime.sandbox(&uid)).await?;
        if current.as_ref().is_some_and(|s| s.ready) && !self.pod_ips.is_empty() {
            return Ok(());
        }
        if current.is_some() {
            // The holder died: its namespaces and so every container go.
            tracing::info!(pod = %name(pod), "the sandbox is gone; making a new one");
            self.stop_all(Duration::ZERO, pod).await;
            self.teardown_network().await;
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network == Some(true);
        let hostname = spec.hostname.clone().or_else(|| pod.metadata.name.clone()).unwrap_or_default();
        let labels = BTreeMap::from([
            ("io.kubernetes.pod.name".to_string(), pod.metadata.name.clone().unwrap_or_default()),
            ("io.kubernetes.pod.namespace".to_string(), pod.metadata.namespace.clone().unwrap_or_default()),
            ("io.kubernetes.pod.uid".to_string(), self.uid.clone()),
        ]);
        let config = runtime::SandboxConfig {
            id: self.uid.clone(),
            hostname,
            labels,
            host_network,
            share_pid: spec.share_process_namespace == Some(true),
            host_ipc: spec.host_ipc == Some(true),
        };
        if host_network {
            // The node's network: no CNI, and the node's address is the pod's.
            let kubelet = self.kubelet.clone();
            blocking(move || kubelet.runtime.create_sandbox(&config)).await?;
            self.pod_ips = vec![self.kubelet.settings.node_ip.to_string()];
            files::write_pod_files(&self.kubelet, &self.uid, pod, &self.pod_ips)?;
            return Ok(());
        }
        // Whatever an earlier sandbox of this pod left in the plugins'
        // state (a node restarted under it) goes first: host-local refuses
        // a second address for the same container.
        if self.kubelet.network.holds(&self.uid) {
            if let Err(e) = self.kubelet.network.del(&self.uid, None).await {
                tracing::debug!(pod = %name(pod), "CNI DEL before ADD: {e:#}");
            }
        }
        let kubelet = self.kubelet.clone();
        let sandbox = blocking(move || kubelet.runtime.create_sandbox(&config)).await?;
        let netns = sandbox.netns().ok_or_else(|| anyhow::anyhow!("the sandbox has no network namespace"))?;
        let ports = host_ports(&spec);
        let ips = match self.kubelet.network.add(&self.uid, &netns, &ports).await {
            Ok(ips) => ips,
            Err(e) => {
                // DEL after a failed ADD, as the spec asks; then no sandbox.
                let _ = self.kubelet.network.del(&self.uid, Some(&netns)).await;
                let (kubelet, uid) = (self.kubelet.clone(), self.uid.clone());
                let _ = blocking(move || kubelet.runtime.remove_sandbox(&uid)).await;
                return Err(e.context("setting up the pod's network"));
            }
        };
        self.pod_ips = ips;
        files::write_pod_files(&self.kubelet, &self.uid, pod, &self.pod_ips)?;
        Ok(())
    }

    async fn ensure_containers(&mut self, pod: &Pod) {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        // Init containers one at a time, in order: each to success, or for
        // a sidecar (restartPolicy Always) until it has started.
        self.initialized = self.initialized || spec.init_containers.as_ref().is_none_or(|v| v.is_empty());
        if !self.initialized {
            for c in spec.init_containers.iter().flatten() {
                let latest = self.attempts.get(&c.name).and_then(|v| v.last()).cloned();
                match latest.as_ref().map(|a| &a.state) {
                    None => {
                        self.start(pod, c).await;
                        return;
                    }
                    Some(Run::Running(_)) if is_sidecar(c) && self.probed(c).started => continue,
                    Some(Run::Created) | Some(Run::Running(_)) => return,
                    Some(Run::Exited { exited, .. }) if exited.exit_code == 0 && !is_sidecar(c) => continue,
                    Some(Run::Exited { .. }) => {
                        if policy != "Never" || is_sidecar(c) {
                            self.restart(pod, c).await;
                        }
                        return;
                    }
                }
            }
            self.initialized = true;
        }
        // Sidecars run beside the app containers, restarted whenever they
        // end, whatever the pod's restartPolicy.
        for c in spec.init_containers.iter().flatten().filter(|c| is_sidecar(c)) {
            if self.latest(&c.name).is_some_and(|a| a.exited().is_some()) {
                self.restart(pod, c).await;
            }
        }
        for c in &spec.containers {
            let latest = self.attempts.get(&c.name).and_then(|v| v.last()).cloned();
            match latest.as_ref().map(|a| &a.state) {
                None => self.start(pod, c).await,
                Some(Run::Exited { exited, .. }) => {
                    let again = match policy.as_str() {
                        "Never" => false,
                        "OnFailure" => exited.exit_code != 0,
                        _ => true,
                    };
                    if again {
                        self.restart(pod, c).await;
                    }
                }
                Some(_) => {}
            }
        }
        // Ephemeral containers (kubectl debug) start once, never again.
        for e in spec.ephemeral_containers.iter().flatten() {
            if self.attempts.get(&e.name).is_none_or(|v| v.is_empty()) && !self.waiting.contains_key(&e.name) {
                self.start(pod, &ephemeral_as_container(e)).await;
            }
        }
    }

    /// A container that ended starts again, after its back-off.
    async fn restart(&mut self, pod: &Pod, c: &Container) {
        let now = Instant::now();
        let ran_long = self.attempts.get(&c.name).and_then(|v| v.last()).and_then(run_time).is_some_and(|d| d > BACKOFF_RESET);
        if ran_long {
            self.backoff.remove(&c.name);
        }
        match self.backoff.get(&c.name).cloned() {
            Some(b) if now < b.until => {
                let message = format!(
                    "back-off {} restarting failed container={} pod={}_{}({})",
                    go_seconds(b.delay),
                    c.name,
                    pod.metadata.name.clone().unwrap_or_default(),
                    pod.metadata.namespace.clone().unwrap_or_default(),
                    self.uid
                );
                if self.waiting.get(&c.name).map(|w| w.0.as_str()) != Some("CrashLoopBackOff") {
                    self.recorder.warning(
                        component_base::events::reference(pod),
                        "BackOff",
                        format!("Back-off restarting failed container {} in pod {}", c.name, name(pod)),
                    );
                }
                self.waiting.insert(c.name.clone(), ("CrashLoopBackOff".into(), message));
            }
            previous => {
                let delay = previous.map(|b| (b.delay * 2).min(BACKOFF_MAX)).unwrap_or(BACKOFF_START);
                self.backoff.insert(c.name.clone(), Backoff { delay, until: now + delay });
                self.start(pod, c).await;
            }
        }
    }

    /// Starts the next attempt of `c`; a failure to is a decided wait.
    async fn start(&mut self, pod: &Pod, c: &Container) {
        match self.try_start(pod, c).await {
            Ok(()) => {
                self.waiting.remove(&c.name);
            }
            Err((reason, message)) => {
                if self.waiting.get(&c.name) != Some(&(reason.clone(), message.clone())) {
                    self.recorder.warning(component_base::events::reference(pod), "Failed", format!("Error: {message}"));
                }
                self.waiting.insert(c.name.clone(), (reason, message));
            }
        }
    }

    async fn try_start(&mut self, pod: &Pod, c: &Container) -> Result<(), (String, String)> {
        let reference = component_base::events::reference(pod);
        let image_name = c.image.clone().unwrap_or_default();
        let image = {
            let (kubelet, reference) = (self.kubelet.clone(), image_name.clone());
            tokio::task::spawn_blocking(move || kubelet.images.resolve(&reference)).await.map_err(|e| ("ErrImagePull".to_string(), e.to_string()))?
        };
        let image = match image {
            Ok(Some(i)) => i,
            Ok(None) => return Err(missing_image(&image_name, c.image_pull_policy.as_deref())),
            Err(e) => return Err(("InvalidImageName".into(), format!("Failed to apply default image tag {image_name:?}: {e}"))),
        };
        if !self.waiting.contains_key(&c.name) || self.attempts.get(&c.name).is_none_or(|v| v.is_empty()) {
            self.recorder.normal(reference.clone(), "Pulled", format!("Container image {image_name:?} already present on machine"));
        }
        let restart = self.attempts.get(&c.name).and_then(|v| v.last()).map(|a| a.restart + 1).unwrap_or(0);
        let id = format!("{}-{}-{restart}", self.uid, c.name);
        let mut config = self.container_config(pod, c, &image, &id, restart).await.map_err(|e| ("CreateContainerConfigError".to_string(), e.0))?;
        // `kubectl debug --target`: the target container's PID namespace.
        let target =
            pod.spec.as_ref().and_then(|s| s.ephemeral_containers.iter().flatten().find(|e| e.name == c.name)).and_then(|e| e.target_container_name.clone());
        if let Some(target) = target {
            match self.latest(&target).filter(|a| a.running().is_some()) {
                Some(a) => config.pid_namespace_of = Some(a.id.clone()),
                None => return Err(("CreateContainerError".into(), format!("the target container {target:?} is not running"))),
            }
        }
        let kubelet = self.kubelet.clone();
        let started = tokio::task::spawn_blocking(move || kubelet.runtime.run_container(&config)).await;
        let status = match started {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(("CreateContainerError".into(), e.to_string())),
            Err(e) => return Err(("CreateContainerError".into(), e.to_string())),
        };
        self.recorder.normal(reference.clone(), "Created", format!("Created container: {}", c.name));
        match &status.state {
            Run::Exited { exited, .. } if exited.start_error.is_some() => {
                self.recorder.warning(reference, "Failed", format!("Error: {}", exited.start_error.clone().unwrap_or_default()));
            }
            _ => self.recorder.normal(reference, "Started", format!("Started container {}", c.name)),
        }
        let running = matches!(status.state, Run::Running(_));
        let list = self.attempts.entry(c.name.clone()).or_default();
        list.push(Attempt { id: id.clone(), restart, state: status.state });
        // Keep the current attempt and the one before (for `logs --previous`).
        while list.len() > 2 {
            let old = list.remove(0);
            let kubelet = self.kubelet.clone();
            let _ = tokio::task::spawn_blocking(move || kubelet.runtime.remove_container(&old.id)).await;
        }
        self.shared.lock().expect("not poisoned").image_ids.insert(c.name.clone(), (image.names.first().cloned().unwrap_or(image_name), image.id.clone()));
        if running {
            // The worker waits for the hook, as upstream's does: the pod's
            // status moves on once it returned. A failure killed the
            // attempt; the next sync sees it ended and restarts it.
            let _ = lifecycle::post_start(&self.pod_context(pod), c, &id).await;
        }
        Ok(())
    }

    /// What probes and hooks need of the pod.
    fn pod_context(&self, pod: &Pod) -> PodContext {
        PodContext {
            kubelet: self.kubelet.clone(),
            recorder: self.recorder.clone(),
            pod: pod.clone(),
            pod_ip: self.pod_ips.first().cloned().unwrap_or_default(),
        }
    }

    async fn container_config(
        &self,
        pod: &Pod,
        c: &Container,
        image: &runtime::images::Image,
        id: &str,
        restart: u32,
    ) -> Result<runtime::ContainerConfig, config::ConfigError> {
        let s = &self.kubelet.settings;
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let volumes = volumes::prepare(&self.kubelet.client, &s.root_dir, pod).await?;
        let env_values = env::env_values(&self.kubelet.client, &ns, c).await?;
        let dir = paths::pod_dir(&s.root_dir, &self.uid);
        let termination_log = dir.join("containers").join(&c.name).join(id);
        config::write_file(&termination_log, "").map_err(|e| config::ConfigError(format!("creating the termination log: {e}")))?;
        let etc = [
            ("/etc/hosts".to_string(), dir.join("etc-hosts")),
            ("/etc/resolv.conf".to_string(), dir.join("resolv.conf")),
            ("/etc/hostname".to_string(), dir.join("hostname")),
        ];
        let service_env = service_env::from_store(&self.kubelet.services, pod)?;
        let inputs = Inputs {
            pod,
            container: c,
            image,
            id: id.to_string(),
            sandbox_id: self.uid.clone(),
            log_path: paths::container_log(&ns, &pod.metadata.name.clone().unwrap_or_default(), &self.uid, &c.name, restart),
            log_rotation: s.container_log_rotation,
            volumes: &volumes,
            etc: &etc,
            termination_log,
            env_values: &env_values,
            service_env: &service_env,
            pod_ip: self.pod_ips.first().cloned().unwrap_or_default(),
            host_ip: s.node_ip.to_string(),
            node_name: s.node_name.clone(),
        };
        config::container_config(&inputs)
    }

    /// Probes run for each app or sidecar container's running attempt,
    /// from when the worker first sees it running until it is not the
    /// running one.
    fn sync_probes(&mut self, pod: &Pod) {
        let spec = pod.spec.clone().unwrap_or_default();
        let sidecars = spec.init_containers.iter().flatten().filter(|c| is_sidecar(c));
        for c in spec.containers.iter().chain(sidecars).filter(|c| ContainerProbes::has_probes(c)) {
            let running = self.latest(&c.name).and_then(|a| a.running().map(|s| (a.id.clone(), s.started_at.clone())));
            let Some((id, started_at)) = running else {
                self.probes.remove(&c.name);
                continue;
            };
            if self.probes.get(&c.name).is_some_and(|p| p.attempt == id) {
                continue;
            }
            let ctx = self.pod_context(pod);
            self.probes.insert(c.name.clone(), ContainerProbes::start(&ctx, c, &id, &started_at));
        }
    }

    /// What the probes of `c`'s current attempt found.
    fn probed(&self, c: &Container) -> Found {
        let current = self.latest(&c.name).map(|a| a.id.as_str());
        match self.probes.get(&c.name) {
            Some(p) if Some(p.attempt.as_str()) == current => p.found(),
            _ => Found::initial(c),
        }
    }

    fn decide_terminal(&self, pod: &Pod) -> Option<&'static str> {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        if policy == "Always" {
            return None;
        }
        // An init container failed under Never (a sidecar is restarted instead).
        if policy == "Never" && !self.initialized {
            let failed = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| !is_sidecar(c))
                .any(|c| self.latest(&c.name).and_then(Attempt::exited).is_some_and(|e| e.exit_code != 0));
            return failed.then_some("Failed");
        }
        if !self.initialized {
            return None;
        }
        let mut all_ok = true;
        for c in &spec.containers {
            match self.latest(&c.name).and_then(Attempt::exited) {
                None => return None,
                Some(e) if e.exit_code != 0 => {
                    if policy == "OnFailure" {
                        return None;
                    }
                    all_ok = false;
                }
                Some(_) => {}
            }
        }
        Some(if all_ok { "Succeeded" } else { "Failed" })
    }

    fn latest(&self, name: &str) -> Option<&Attempt> {
        self.attempts.get(name).and_then(|v| v.last())
    }

    fn observed(&self, pod: &Pod) -> PodObserved {
        let spec = pod.spec.clone().unwrap_or_default();
        let shared = self.shared.lock().expect("not poisoned");
        let observe = |c: &Container| {
            let list = self.attempts.get(&c.name).cloned().unwrap_or_default();
            let n = list.len();
            let probed = self.probed(c);
            Observed {
                current: list.last().cloned(),
                previous: (n >= 2).then(|| list[n - 2].clone()),
                waiting: self.waiting.get(&c.name).cloned(),
                readiness: probed.ready,
                started: probed.started,
                image: shared.image_ids.get(&c.name).cloned(),
            }
        };
        let uid = self.uid.clone();
        let kubelet = self.kubelet.clone();
        let sandbox_ready = kubelet.runtime.sandbox(&uid).ok().flatten().is_some_and(|s| s.ready) && !self.pod_ips.is_empty();
        PodObserved {
            init: spec.init_containers.iter().flatten().map(|c| (c.name.clone(), observe(c))).collect(),
            containers: spec.containers.iter().map(|c| (c.name.clone(), observe(c))).collect(),
            ephemeral: spec.ephemeral_containers.iter().flatten().map(|e| (e.name.clone(), observe(&ephemeral_as_container(e)))).collect(),
            pod_ips: self.pod_ips.clone(),
            host_ip: self.kubelet.settings.node_ip.to_string(),
            sandbox_ready,
            initialized: self.initialized,
            terminal: self.terminal,
        }
    }

    /// Writes the pod's status when it changed since the last write.
    async fn report(&mut self, pod: &Pod) -> anyhow::Result<()> {
        let observed = self.observed(pod);
        let status = status::pod_status(pod, &observed, Time(k8s_openapi::jiff::Timestamp::now()));
        {
            let mut shared = self.shared.lock().expect("not poisoned");
            shared.observed = observed;
            let mut with_status = pod.clone();
            with_status.status = Some(status.clone());
            shared.pod = with_status;
        }
        let value = serde_json::to_value(&status)?;
        if self.last_status.as_ref() == Some(&value) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.kubelet.client.clone(), &pod.metadata.namespace.clone().unwrap_or_default());
        let patch = serde_json::json!({ "status": value });
        match api.patch_status(&pod.metadata.name.clone().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {
                self.last_status = Some(value);
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Stops every running container at once, each as upstream's kubelet
    /// does: its preStop hook, SIGTERM, SIGKILL after what the hook left of
    /// `grace`.
    async fn stop_all(&mut self, grace: Duration, pod: &Pod) {
        let running: Vec<(String, String)> =
            self.attempts.iter().filter_map(|(n, v)| v.last().filter(|a| a.running().is_some()).map(|a| (n.clone(), a.id.clone()))).collect();
        if running.is_empty() {
            return;
        }
        let ctx = self.pod_context(pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let containers: Vec<(Container, String)> = running
            .iter()
            .map(|(name, id)| {
                let c = spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| &c.name == name).cloned();
                (c.unwrap_or_else(|| Container { name: name.clone(), ..Default::default() }), id.clone())
            })
            .collect();
        for (c, _) in &containers {
            if grace > Duration::ZERO {
                self.recorder.normal(component_base::events::reference(pod), "Killing", format!("Stopping container {}", c.name));
            }
        }
        // App containers first, all at once; then the sidecars, one by one
        // from the last, each with what is left of the grace period (as
        // upstream's kubelet stops restartable init containers).
        let deadline = Instant::now() + grace;
        let (mut sidecars, apps): (Vec<_>, Vec<_>) = containers.iter().partition(|(c, _)| is_sidecar(c));
        futures_util::future::join_all(apps.iter().map(|(c, id)| lifecycle::stop(&ctx, c, id, grace))).await;
        let place = |name: &str| spec.init_containers.iter().flatten().position(|c| c.name == name);
        sidecars.sort_by_key(|(c, _)| std::cmp::Reverse(place(&c.name)));
        for (c, id) in sidecars {
            lifecycle::stop(&ctx, c, id, deadline.saturating_duration_since(Instant::now())).await;
        }
        // A SIGKILL is not refused; its exit is written within moments.
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            self.refresh().await;
            if running.iter().all(|(n, _)| self.latest(n).is_none_or(|a| a.running().is_none())) || Instant::now() >= until {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn teardown_network(&mut self) {
        let uid = self.uid.clone();
        let kubelet = self.kubelet.clone();
        let sandbox = blocking(move || kubelet.runtime.sandbox(&uid)).await.ok().flatten();
        // A hostNetwork pod was never attached; its namespace is the node's.
        if !sandbox.as_ref().is_some_and(|s| s.config.host_network) {
            let netns = sandbox.and_then(|s| s.netns());
            if let Err(e) = self.kubelet.network.del(&self.uid, netns.as_deref()).await {
                tracing::warn!(pod = %self.uid, "CNI DEL: {e:#}");
            }
        }
        let (kubelet, uid) = (self.kubelet.clone(), self.uid.clone());
        if let Err(e) = blocking(move || kubelet.runtime.remove_sandbox(&uid)).await {
            tracing::warn!(pod = %self.uid, "removing the sandbox: {e:#}");
        }
        self.pod_ips.clear();
        files::remove_ips(&self.kubelet, &self.uid);
    }

    /// The pod is being deleted (or was removed from the API): stop it,
    /// remove everything it had on the node, and let the API delete it.
    async fn terminate(&mut self, pod: Option<Pod>) {
        let grace = match &pod {
            Some(p) => Duration::from_secs(p.metadata.deletion_grace_period_seconds.map(|g| g.max(0) as u64).unwrap_or_else(|| spec_grace(p))),
            None => GONE_GRACE,
        };
        let placeholder = pod.clone().unwrap_or_default();
        self.probes.clear();
        self.refresh().await;
        self.stop_all(grace, &placeholder).await;
        self.teardown_network().await;
        let ids: Vec<String> = self.attempts.values().flatten().map(|a| a.id.clone()).collect();
        let (kubelet, uid) = (self.kubelet.clone(), self.uid.clone());
        let _ = tokio::task::spawn_blocking(move || {
            for id in ids {
                if let Err(e) = kubelet.runtime.remove_container(&id) {
                    tracing::warn!("removing container {id}: {e}");
                }
            }
            if let Err(e) = kubelet.runtime.remove_pod_cgroup(&uid) {
                tracing::warn!("removing the cgroup of pod {uid}: {e}");
            }
            let _ = std::fs::remove_dir_all(paths::pod_dir(&kubelet.settings.root_dir, &uid));
        })
        .await;
        let Some(pod) = pod else { return };
        let _ = std::fs::remove_dir_all(paths::pod_logs(
            &pod.metadata.namespace.clone().unwrap_or_default(),
            &pod.metadata.name.clone().unwrap_or_default(),
            &self.uid,
        ));
        let api: Api<Pod> = Api::namespaced(self.kubelet.client.clone(), &pod.metadata.namespace.clone().unwrap_or_default());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(self.uid.clone()), resource_version: None }),
            ..Default::default()
        };
        match api.delete(&pod.metadata.name.clone().unwrap_or_default(), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(pod = %name(&pod), "the final delete: {e}"),
        }
    }
}

/// The pod's own grace period (upstream's default 30 s).
fn spec_grace(pod: &Pod) -> u64 {
    pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30).max(0) as u64
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> runtime::Result<T> + Send + 'static) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

fn host_ports(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<crate::cni::PortMapping> {
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            p.host_port.filter(|h| *h > 0).map(|h| crate::cni::PortMapping {
                host_port: h,
                container_port: p.container_port,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()).to_lowercase(),
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect()
}

/// An ephemeral container as the container it runs as (the same fields,
/// less its target).
fn ephemeral_as_container(e: &k8s_openapi::api::core::v1::EphemeralContainer) -> Container {
    let mut value = serde_json::to_value(e).unwrap_or_default();
    if let Some(m) = value.as_object_mut() {
        m.remove("targetContainerName");
    }
    serde_json::from_value(value).unwrap_or_else(|_| Container { name: e.name.clone(), image: e.image.clone(), ..Default::default() })
}
