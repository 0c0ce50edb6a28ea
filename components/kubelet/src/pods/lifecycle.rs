//! Lifecycle hooks and stopping a container, as upstream's kubelet does
//! them: a container's `postStart` hook runs right after it starts, and
//! the container does not count as started (nor its pod's status move on)
//! until the hook returns; a hook that fails gets a `FailedPostStartHook`
//! event and the container is killed (and restarted per `restartPolicy`).
//! `preStop` runs before SIGTERM whenever the kubelet stops a running
//! container (pod deletion, a failed liveness or startup probe, a failed
//! postStart), and its time counts against the grace period; a failure is
//! a `FailedPreStopHook` event and the stop goes on. Handlers: `exec` (in
//! the container, as `kubectl exec` runs it), `httpGet` (host defaulting
//! to the pod's IP; any answer passes, whatever its status, as upstream's
//! hook runner checks none) and `sleep`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, ObjectReference, Probe};
use nix::sys::signal::Signal;
use runtime::container::ContainerState as Run;

use super::probe::settings::{self, Handler};
use super::probe::tracker::Probed;
use super::probe::{exec, http, PodContext};

/// A hook that ran past this would hold the pod for good; upstream has no
/// bound on postStart, but a probe-sized one is kinder to a lab.
const POST_START_LIMIT: Duration = Duration::from_secs(600);
/// Upstream gives a container at least this long after its preStop hook
/// used up the grace period.
const MINIMUM_GRACE_AFTER_HOOK: Duration = Duration::from_secs(2);

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PostStart,
    PreStop,
}

impl Hook {
    fn of(self, c: &Container) -> Option<&LifecycleHandler> {
        let lifecycle = c.lifecycle.as_ref()?;
        match self {
            Hook::PostStart => lifecycle.post_start.as_ref(),
            Hook::PreStop => lifecycle.pre_stop.as_ref(),
        }
    }

    fn event_reason(self) -> &'static str {
        match self {
            Hook::PostStart => "FailedPostStartHook",
            Hook::PreStop => "FailedPreStopHook",
        }
    }
}

/// The container as upstream's container events name it.
pub fn reference(ctx: &PodContext, container: &str) -> ObjectReference {
    ObjectReference { field_path: Some(format!("spec.containers{{{container}}}")), ..component_base::events::reference(&ctx.pod) }
}

/// Runs `hook` of `c` (its attempt `attempt`) if it has one, for at most
/// `limit`; an error is upstream's message, already sent as the hook's
/// Warning event.
pub async fn run_hook(ctx: &PodContext, c: &Container, attempt: &str, hook: Hook, limit: Duration) -> Result<(), String> {
    let Some(handler) = hook.of(c) else { return Ok(()) };
    let outcome = match tokio::time::timeout(limit, run_handler(ctx, c, attempt, handler)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("the hook did not return within {}s", limit.as_secs())),
    };
    if let Err(message) = &outcome {
        ctx.recorder.warning(reference(ctx, &c.name), hook.event_reason(), message.clone());
    }
    outcome
}

async fn run_handler(ctx: &PodContext, c: &Container, attempt: &str, handler: &LifecycleHandler) -> Result<(), String> {
    let pod = pod_name(ctx);
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
        return Ok(());
    }
    if handler.tcp_socket.is_some() {
        // Kept in the API for old manifests; upstream's kubelet runs nothing for it.
        return Ok(());
    }
    let as_probe = Probe { exec: handler.exec.clone(), http_get: handler.http_get.clone(), ..Default::default() };
    match settings::handler(&as_probe, c, &ctx.pod_ip) {
        Ok(Handler::Exec(argv)) => {
            let command = ctx.kubelet.runtime.exec_command(attempt, &argv, false).map_err(|e| e.to_string());
            let outcome = match command {
                Ok(command) => exec::probe(command, &argv, POST_START_LIMIT).await,
                Err(e) => Probed::Error(e),
            };
            match outcome {
                Probed::Success(_) | Probed::Warning(_) => Ok(()),
                Probed::Failure(output) | Probed::Error(output) => Err(format!(
                    "Exec lifecycle hook ([{}]) for Container {:?} in Pod {pod:?} failed - error: command '{}' failed, message: {output:?}",
                    argv.join(" "),
                    c.name,
                    argv.join(" ")
                )),
            }
        }
        Ok(Handler::Http(get)) => http::hook(&get, POST_START_LIMIT)
            .await
            .map_err(|e| format!("HTTP lifecycle hook ({}) for Container {:?} in Pod {pod:?} failed - error: {e}", get.path, c.name)),
        // Hooks have neither (the handler above is made without a grpc part).
        Ok(Handler::Tcp { .. } | Handler::Grpc { .. }) => Ok(()),
        Err(e) => Err(format!("Lifecycle hook for Container {:?} in Pod {pod:?} failed - error: {e}", c.name)),
    }
}

/// upstream's `name_namespace(uid)`.
fn pod_name(ctx: &PodContext) -> String {
    let m = &ctx.pod.metadata;
    format!("{}_{}({})", m.name.clone().unwrap_or_default(), m.namespace.clone().unwrap_or_default(), m.uid.clone().unwrap_or_default())
}

/// Runs `c`'s postStart hook after its attempt `attempt` started; on a
/// failure the attempt is killed, as upstream does.
pub async fn post_start(ctx: &PodContext, c: &Container, attempt: &str) -> Result<(), String> {
    if Hook::PostStart.of(c).is_none() {
        return Ok(());
    }
    let outcome = run_hook(ctx, c, attempt, Hook::PostStart, POST_START_LIMIT).await;
    if let Err(message) = &outcome {
        ctx.recorder.normal(reference(ctx, &c.name), "Killing", format!("FailedPostStartHook: {message}"));
        stop(ctx, c, attempt, pod_grace(ctx)).await;
    }
    outcome
}

/// The pod's own grace period.
pub fn pod_grace(ctx: &PodContext) -> Duration {
    Duration::from_secs(ctx.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30).max(0) as u64)
}

/// Runs `c`'s preStop hook within `grace` and returns the grace left for
/// SIGTERM (at least upstream's two seconds once a hook ran).
pub async fn pre_stop(ctx: &PodContext, c: &Container, attempt: &str, grace: Duration) -> Duration {
    if Hook::PreStop.of(c).is_none() || grace.is_zero() {
        return grace;
    }
    let started = tokio::time::Instant::now();
    let _ = run_hook(ctx, c, attempt, Hook::PreStop, grace).await;
    grace.saturating_sub(started.elapsed()).max(MINIMUM_GRACE_AFTER_HOOK)
}

/// Stops a running attempt: its preStop hook, SIGTERM, and SIGKILL once
/// `grace` (what the hook left of it) has passed while it runs.
pub async fn stop(ctx: &PodContext, c: &Container, attempt: &str, grace: Duration) {
    let grace = pre_stop(ctx, c, attempt, grace).await;
    let kubelet = ctx.kubelet.clone();
    let running = |id: String| {
        let kubelet = kubelet.clone();
        async move {
            tokio::task::spawn_blocking(move || kubelet.runtime.container(&id))
                .await
                .ok()
                .and_then(|r| r.ok())
                .flatten()
                .is_some_and(|c| matches!(c.state, Run::Running(_)))
        }
    };
    let signal = |id: String, signal: Signal| {
        let kubelet = kubelet.clone();
        async move {
            let _ = tokio::task::spawn_blocking(move || kubelet.runtime.signal(&id, signal)).await;
        }
    };
    signal(attempt.to_string(), if grace.is_zero() { Signal::SIGKILL } else { Signal::SIGTERM }).await;
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if !running(attempt.to_string()).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if running(attempt.to_string()).await {
        signal(attempt.to_string(), Signal::SIGKILL).await;
    }
}
