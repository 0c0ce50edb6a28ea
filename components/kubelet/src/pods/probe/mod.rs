//! Liveness, readiness and startup probes, as upstream's kubelet runs
//! them: one task per probe of a running container attempt, each on its
//! own period, so probing never waits on the pod's worker nor the worker
//! on a probe. The worker starts them when it sees an attempt running and
//! drops them (which cancels the tasks) when the attempt is no longer
//! the running one or the pod goes; it reads what they found when it
//! computes the status.
//!
//! - `settings` — a probe's timing with upstream's defaults and its
//!   handler's target (pure);
//! - `tracker` — when probes run and what results count (thresholds,
//!   startup holding the others back), on tokio's clock;
//! - `http`, `tcp`, `exec`, `grpc` — the handlers.

pub mod exec;
pub mod grpc;
pub mod http;
pub mod settings;
pub mod tcp;
pub mod tracker;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::lifecycle;
use crate::Kubelet;
use settings::{Handler, Kind, Settings};
use tracker::{Action, Probed};

const KINDS: [Kind; 3] = [Kind::Startup, Kind::Liveness, Kind::Readiness];

/// What a container attempt's probes have found so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The readiness probe's result (None: no readiness probe).
    pub ready: Option<bool>,
    /// The startup probe has succeeded (or there is none).
    pub started: bool,
}

impl Found {
    /// Before any probe ran: not ready with a readiness probe (upstream's
    /// initial readiness is failure), not started with a startup probe.
    pub fn initial(c: &Container) -> Found {
        Found { ready: c.readiness_probe.as_ref().map(|_| false), started: c.startup_probe.is_none() }
    }
}

/// What the probe tasks need of the pod.
#[derive(Clone)]
pub struct PodContext {
    pub kubelet: Arc<Kubelet>,
    pub recorder: component_base::events::Recorder,
    pub pod: Pod,
    pub pod_ip: String,
}

/// The probes of one container attempt; dropping it stops them.
pub struct ContainerProbes {
    /// The attempt (container id) probed.
    pub attempt: String,
    found: Arc<Mutex<Found>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ContainerProbes {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl ContainerProbes {
    pub fn has_probes(c: &Container) -> bool {
        KINDS.iter().any(|k| k.of(c).is_some())
    }

    /// Starts the probes of `c`'s attempt `attempt`, running since `started_at` (RFC 3339).
    pub fn start(ctx: &PodContext, c: &Container, attempt: &str, started_at: &str) -> ContainerProbes {
        let found = Arc::new(Mutex::new(Found::initial(c)));
        let (started_tx, started_rx) = watch::channel(c.startup_probe.is_none());
        let started_tx = Arc::new(started_tx);
        let since = chrono::DateTime::parse_from_rfc3339(started_at).ok().and_then(|t| (chrono::Utc::now() - t.to_utc()).to_std().ok()).unwrap_or_default();
        let started_at = tokio::time::Instant::now().checked_sub(since).unwrap_or_else(tokio::time::Instant::now);
        let mut tasks = vec![];
        for kind in KINDS {
            let Some(probe) = kind.of(c) else { continue };
            let settings = Settings::of(kind, probe);
            let target = settings::handler(probe, c, &ctx.pod_ip);
            let one = OneProbe { ctx: ctx.clone(), container: c.name.clone(), attempt: attempt.to_string(), kind, settings, found: found.clone() };
            let (rx, tx) = (started_rx.clone(), started_tx.clone());
            tasks.push(tokio::spawn(async move { one.run(target, started_at, rx, tx).await }));
        }
        ContainerProbes { attempt: attempt.to_string(), found, tasks }
    }

    pub fn found(&self) -> Found {
        *self.found.lock().expect("not poisoned")
    }
}

/// One probe of one container attempt.
struct OneProbe {
    ctx: PodContext,
    container: String,
    attempt: String,
    kind: Kind,
    settings: Settings,
    found: Arc<Mutex<Found>>,
}

impl OneProbe {
    async fn run(
        self,
        target: Result<Handler, String>,
        started_at: tokio::time::Instant,
        started: watch::Receiver<bool>,
        started_tx: Arc<watch::Sender<bool>>,
    ) {
        let reference = self.reference();
        let handler = match target {
            Ok(h) => h,
            Err(e) => {
                self.unhealthy(&reference, &Probed::Error(e));
                return;
            }
        };
        let probe_once = || {
            let (kubelet, handler, attempt, timeout) = (self.ctx.kubelet.clone(), handler.clone(), self.attempt.clone(), self.settings.timeout);
            async move { check(&kubelet, &handler, &attempt, timeout).await }
        };
        let report = |probed: &Probed, action: Option<Action>| {
            self.unhealthy(&reference, probed);
            if let Some(Action::Ready(ready)) = action {
                self.found.lock().expect("not poisoned").ready = Some(ready);
            }
        };
        match tracker::run(self.kind, &self.settings, started_at, started, probe_once, report).await {
            Some(Action::Started) => {
                self.found.lock().expect("not poisoned").started = true;
                let _ = started_tx.send(true);
            }
            Some(Action::Kill) => self.kill(&reference).await,
            _ => {}
        }
    }

    /// The container, as upstream's container events name it.
    fn reference(&self) -> ObjectReference {
        lifecycle::reference(&self.ctx, &self.container)
    }

    /// upstream's Unhealthy events: every failed probe, and every probe
    /// that could not be run; and its ProbeWarning events.
    fn unhealthy(&self, reference: &ObjectReference, probed: &Probed) {
        let message = match probed {
            Probed::Success(_) => return,
            Probed::Warning(output) => {
                let message = format!("{} probe warning: {output}", self.kind.title());
                return self.ctx.recorder.warning(reference.clone(), "ProbeWarning", message);
            }
            Probed::Failure(output) => format!("{} probe failed: {output}", self.kind.title()),
            Probed::Error(e) => format!("{} probe errored and resulted in unknown state: {e}", self.kind.title()),
        };
        self.ctx.recorder.warning(reference.clone(), "Unhealthy", message);
    }

    /// A failed liveness or startup probe: the preStop hook, SIGTERM, then
    /// SIGKILL after the probe's own grace period or else the pod's. The worker then sees
    /// the attempt ended and restarts it per restartPolicy, with back-off.
    async fn kill(&self, reference: &ObjectReference) {
        let spec = self.ctx.pod.spec.clone().unwrap_or_default();
        let container = spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == self.container).cloned().unwrap_or_default();
        // A sidecar is restarted whatever the pod's policy.
        let restarts = spec.restart_policy.as_deref() != Some("Never") || crate::pods::is_sidecar(&container);
        let message = format!("Container {} failed {} probe{}", self.container, self.kind.lower(), if restarts { ", will be restarted" } else { "" });
        self.ctx.recorder.normal(reference.clone(), "Killing", message);
        let grace = self.settings.termination_grace.unwrap_or_else(|| lifecycle::pod_grace(&self.ctx));
        lifecycle::stop(&self.ctx, &container, &self.attempt, grace).await;
    }
}

/// One run of the probe.
async fn check(kubelet: &Arc<Kubelet>, handler: &Handler, attempt: &str, timeout: Duration) -> Probed {
    match handler {
        Handler::Http(get) => http::probe(get, timeout).await,
        Handler::Tcp { host, port } => tcp::probe(host, *port, timeout).await,
        Handler::Grpc { host, port, service } => grpc::probe(host, *port, service, timeout).await,
        Handler::Exec(argv) => match kubelet.runtime.exec_command(attempt, argv, false) {
            Ok(command) => exec::probe(command, argv, timeout).await,
            Err(e) => Probed::Error(e.to_string()),
        },
    }
}
