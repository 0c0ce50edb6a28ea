//! A pod's status from what runs: a pure function of the pod, what the
//! runtime says of each container, and what the worker decided (why a
//! container waits), so every rule of upstream's status manager is unit-
//! tested here.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use runtime::container::ContainerState as Run;
use runtime::state::{Exited, Started};

/// What the worker knows of one container.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The latest attempt as the runtime sees it.
    pub current: Option<Attempt>,
    /// The attempt before it (its end is `lastState`).
    pub previous: Option<Attempt>,
    /// Why the container is not running now, when the worker knows
    /// (ErrImageNeverPull, CrashLoopBackOff, ...) with a message.
    pub waiting: Option<(String, String)>,
    /// The readiness probe's latest result (None: no probe).
    pub readiness: Option<bool>,
    /// The startup probe has succeeded (or there is none).
    pub started: bool,
    /// The image as resolved in the store: name and id.
    pub image: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: String,
    pub restart: u32,
    pub state: Run,
}

impl Attempt {
    pub fn running(&self) -> Option<&Started> {
        match &self.state {
            Run::Running(s) => Some(s),
            _ => None,
        }
    }

    pub fn exited(&self) -> Option<&Exited> {
        match &self.state {
            Run::Exited { exited, .. } => Some(exited),
            _ => None,
        }
    }
}

/// What the pod as a whole has.
#[derive(Debug, Clone, Default)]
pub struct PodObserved {
    pub init: BTreeMap<String, Observed>,
    pub containers: BTreeMap<String, Observed>,
    /// Ephemeral containers (`kubectl debug`): reported, never restarted,
    /// not counted for readiness or phase.
    pub ephemeral: BTreeMap<String, Observed>,
    pub pod_ips: Vec<String>,
    pub host_ip: String,
    /// The sandbox runs and is networked.
    pub sandbox_ready: bool,
    /// All init containers completed (once true, stays true for the pod).
    pub initialized: bool,
    /// Set when the pod is done for good: Succeeded or Failed.
    pub terminal: Option<&'static str>,
}

pub const RUNTIME_PREFIX: &str = "kubelab://";

fn time(rfc3339: &str) -> Option<Time> {
    rfc3339.parse::<k8s_openapi::jiff::Timestamp>().ok().map(Time)
}

fn terminated(attempt: &Attempt, exited: &Exited) -> ContainerStateTerminated {
    let reason = if exited.start_error.is_some() {
        "StartError"
    } else if exited.oom_killed {
        "OOMKilled"
    } else if exited.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let started_at = match &attempt.state {
        Run::Exited { started: Some(s), .. } => time(&s.started_at),
        _ => None,
    };
    ContainerStateTerminated {
        exit_code: exited.exit_code,
        signal: exited.signal,
        reason: Some(reason.into()),
        message: exited.start_error.clone(),
        started_at: started_at.clone().or_else(|| time(&exited.finished_at)),
        finished_at: time(&exited.finished_at),
        container_id: Some(format!("{RUNTIME_PREFIX}{}", attempt.id)),
    }
}

fn state_of(attempt: &Attempt) -> ContainerState {
    match &attempt.state {
        Run::Running(s) => ContainerState { running: Some(ContainerStateRunning { started_at: time(&s.started_at) }), ..Default::default() },
        Run::Exited { exited, .. } => ContainerState { terminated: Some(terminated(attempt, exited)), ..Default::default() },
        Run::Created => waiting("ContainerCreating", None),
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState { waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message }), ..Default::default() }
}

/// One container's status.
pub fn container_status(name: &str, spec_image: &str, o: &Observed) -> ContainerStatus {
    let current_state = o.current.as_ref().map(state_of);
    let state = match (&o.waiting, &current_state) {
        // A decided wait (backoff, image missing) shows over a dead attempt.
        (Some((reason, message)), Some(s)) if s.running.is_none() => waiting(reason, Some(message.clone())),
        (Some((reason, message)), None) => waiting(reason, Some(message.clone())),
        (_, Some(s)) => s.clone(),
        (None, None) => waiting("ContainerCreating", None),
    };
    // lastState: the previous attempt, or the current one when it ended
    // and a wait now shows instead.
    let last = if state.terminated.is_none() && o.current.as_ref().is_some_and(|a| a.exited().is_some()) {
        o.current.as_ref().map(state_of)
    } else {
        o.previous.as_ref().map(state_of)
    };
    let running = state.running.is_some();
    let (image, image_id) = o.image.clone().unwrap_or_else(|| (spec_image.to_string(), String::new()));
    ContainerStatus {
        name: name.into(),
        state: Some(state),
        last_state: Some(last.unwrap_or_default()),
        ready: running && o.started && o.readiness.unwrap_or(true),
        restart_count: o.current.as_ref().map(|a| a.restart as i32).unwrap_or(0),
        image,
        image_id,
        container_id: o.current.as_ref().map(|a| format!("{RUNTIME_PREFIX}{}", a.id)),
        started: Some(running && o.started),
        ..Default::default()
    }
}

/// upstream's getPhase, over container statuses.
pub fn phase(pod: &Pod, observed: &PodObserved, statuses: &[ContainerStatus]) -> &'static str {
    if let Some(terminal) = observed.terminal {
        return terminal;
    }
    if !observed.initialized {
        return "Pending";
    }
    let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s.last_state.as_ref().is_some_and(|l| l.terminated.is_some()) {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    match () {
        _ if waiting > 0 => "Pending",
        _ if running > 0 => "Running",
        _ if stopped > 0 && policy == "Always" => "Running",
        _ if stopped > 0 && stopped == succeeded => "Succeeded",
        _ if stopped > 0 && policy == "Never" => "Failed",
        _ if stopped > 0 => "Running",
        _ => "Pending",
    }
}

/// The whole status; conditions keep their transition times from `old`.
pub fn pod_status(pod: &Pod, observed: &PodObserved, now: Time) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(&c.name, c.image.as_deref().unwrap_or(""), observed.init.get(&c.name).unwrap_or(&Observed::default())))
        .collect();
    let statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(&c.name, c.image.as_deref().unwrap_or(""), observed.containers.get(&c.name).unwrap_or(&Observed::default())))
        .collect();
    let ephemeral_statuses: Vec<ContainerStatus> = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| container_status(&c.name, c.image.as_deref().unwrap_or(""), observed.ephemeral.get(&c.name).unwrap_or(&Observed::default())))
        .collect();
    let phase = phase(pod, observed, &statuses);

    // Sidecars (init containers with restartPolicy Always) count as app
    // containers for readiness, and as initialized once started.
    let sidecar = |name: &str| spec.init_containers.iter().flatten().any(|c| c.name == name && super::is_sidecar(c));
    let sidecar_statuses = init_statuses.iter().filter(|s| sidecar(&s.name));
    let not_ready: Vec<&str> = sidecar_statuses.chain(&statuses).filter(|s| !s.ready).map(|s| s.name.as_str()).collect();
    let incomplete: Vec<&str> = init_statuses
        .iter()
        .filter(|s| {
            if sidecar(&s.name) {
                s.started != Some(true)
            } else {
                s.state.as_ref().and_then(|st| st.terminated.as_ref()).is_none_or(|t| t.exit_code != 0)
            }
        })
        .map(|s| s.name.as_str())
        .collect();
    let done = matches!(phase, "Succeeded" | "Failed");
    let condition = |kind: &str, ok: bool, reason: Option<String>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let before = old.conditions.iter().flatten().find(|c| c.type_ == kind);
        let transition = match before {
            Some(b) if b.status == status => b.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
        PodCondition {
            type_: kind.into(),
            status: status.into(),
            reason: if ok { None } else { reason },
            message: if ok { None } else { message },
            last_transition_time: transition,
            last_probe_time: None,
            observed_generation: None,
        }
    };
    let containers_ready = not_ready.is_empty() && !done;
    let unready = |what: &str, names: &[&str]| Some(format!("containers with {what} status: [{}]", names.join(" ")));
    let (ready_reason, ready_message) =
        if done { (Some("PodCompleted".to_string()), None) } else { (Some("ContainersNotReady".to_string()), unready("unready", &not_ready)) };
    let mut conditions = vec![
        condition("PodReadyToStartContainers", observed.sandbox_ready, None, None),
        condition("Initialized", observed.initialized, Some("ContainersNotInitialized".into()), unready("incomplete", &incomplete)),
        condition("Ready", containers_ready, ready_reason.clone(), ready_message.clone()),
        condition("ContainersReady", containers_ready, ready_reason, ready_message),
    ];
    // The scheduler's condition is the scheduler's.
    conditions.extend(old.conditions.iter().flatten().filter(|c| c.type_ == "PodScheduled").cloned());

    let pod_ips = (!observed.pod_ips.is_empty()).then(|| observed.pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect());
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: Some(observed.host_ip.clone()),
        host_ips: Some(vec![HostIP { ip: observed.host_ip.clone() }]),
        pod_ip: observed.pod_ips.first().cloned(),
        pod_ips,
        start_time: old.start_time.clone().or(Some(now)),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        ephemeral_container_statuses: (!ephemeral_statuses.is_empty()).then_some(ephemeral_statuses),
        qos_class: old.qos_class.clone().or_else(|| Some(qos_class(&spec).into())),
        ..Default::default()
    }
}

/// upstream's QoS class: Guaranteed when every container's requests equal
/// its limits for cpu and memory, BestEffort when none sets any.
pub fn qos_class(spec: &k8s_openapi::api::core::v1::PodSpec) -> &'static str {
    let all = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    let mut any = false;
    let mut guaranteed = true;
    for c in all {
        let r = c.resources.clone().unwrap_or_default();
        let (req, lim) = (r.requests.unwrap_or_default(), r.limits.unwrap_or_default());
        if !req.is_empty() || !lim.is_empty() {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let limit = lim.get(res);
            let request = req.get(res).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod(containers: &[&str], policy: &str) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: containers.iter().map(|n| Container { name: n.to_string(), image: Some("busybox".into()), ..Default::default() }).collect(),
                restart_policy: Some(policy.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn started() -> Started {
        Started { pid: 1, start_ticks: 1, started_at: "2026-12-05T10:00:00Z".into() }
    }

    fn running(restart: u32) -> Observed {
        Observed { current: Some(Attempt { id: format!("c-{restart}"), restart, state: Run::Running(started()) }), started: true, ..Default::default() }
    }

    fn exited(restart: u32, code: i32) -> Observed {
        let exited = Exited { exit_code: code, signal: None, finished_at: "2026-12-05T10:00:01Z".into(), oom_killed: false, start_error: None };
        Observed {
            current: Some(Attempt { id: format!("c-{restart}"), restart, state: Run::Exited { started: Some(started()), exited } }),
            started: true,
            ..Default::default()
        }
    }

    fn observed(containers: Vec<(&str, Observed)>) -> PodObserved {
        PodObserved {
            ephemeral: BTreeMap::new(),
            init: BTreeMap::new(),
            containers: containers.into_iter().map(|(n, o)| (n.to_string(), o)).collect(),
            pod_ips: vec!["10.244.1.2".into()],
            host_ip: "172.18.0.5".into(),
            sandbox_ready: true,
            initialized: true,
            terminal: None,
        }
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::now())
    }

    #[test]
    fn a_running_pod_is_ready_with_its_addresses() {
        let p = pod(&["app"], "Always");
        let status = pod_status(&p, &observed(vec![("app", running(0))]), now());
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.1.2"));
        let ready = status.conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
        let c = &status.container_statuses.unwrap()[0];
        assert!(c.ready && c.started == Some(true));
        assert_eq!(c.container_id.as_deref(), Some("kubelab://c-0"));
    }

    #[test]
    fn a_crash_looping_container_waits_with_its_last_state_and_count() {
        let p = pod(&["app"], "Always");
        let mut o = exited(3, 1);
        o.waiting = Some(("CrashLoopBackOff".into(), "back-off 40s restarting failed container=app".into()));
        let status = pod_status(&p, &observed(vec![("app", o)]), now());
        assert_eq!(status.phase.as_deref(), Some("Running"), "restartPolicy Always keeps a crashing pod Running");
        let c = &status.container_statuses.unwrap()[0];
        assert_eq!(c.restart_count, 3);
        assert_eq!(c.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(), Some("CrashLoopBackOff"));
        let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
        let ready = status.conditions.unwrap().into_iter().find(|c| c.type_ == "ContainersReady").unwrap();
        assert_eq!(ready.message.as_deref(), Some("containers with unready status: [app]"));
    }

    #[test]
    fn phases_follow_the_restart_policy() {
        let never = pod(&["a", "b"], "Never");
        let statuses = |o: PodObserved, p: &Pod| pod_status(p, &o, now()).phase.unwrap();
        assert_eq!(statuses(observed(vec![("a", exited(0, 0)), ("b", exited(0, 0))]), &never), "Succeeded");
        assert_eq!(statuses(observed(vec![("a", exited(0, 0)), ("b", exited(0, 2))]), &never), "Failed");
        assert_eq!(statuses(observed(vec![("a", exited(0, 0)), ("b", running(0))]), &never), "Running");
        assert_eq!(statuses(observed(vec![("a", exited(0, 0)), ("b", Observed::default())]), &never), "Pending");
        let on_failure = pod(&["a"], "OnFailure");
        assert_eq!(statuses(observed(vec![("a", exited(0, 0))]), &on_failure), "Succeeded");
        let mut not_init = observed(vec![("a", Observed::default())]);
        not_init.initialized = false;
        assert_eq!(statuses(not_init, &on_failure), "Pending");
    }

    #[test]
    fn an_unchanged_condition_keeps_its_transition_time() {
        let mut p = pod(&["app"], "Always");
        let first =
            pod_status(&p, &observed(vec![("app", running(0))]), Time(k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(1)));
        p.status = Some(first.clone());
        let second = pod_status(&p, &observed(vec![("app", running(0))]), now());
        assert_eq!(first.conditions, second.conditions);
        assert_eq!(first.start_time, second.start_time);
    }

    #[test]
    fn sidecars_count_for_readiness_and_initialize_once_started() {
        let mut p = pod(&["app"], "Always");
        let sidecar = Container { name: "proxy".into(), image: Some("busybox".into()), restart_policy: Some("Always".into()), ..Default::default() };
        let init = Container { name: "setup".into(), image: Some("busybox".into()), ..Default::default() };
        p.spec.as_mut().unwrap().init_containers = Some(vec![init, sidecar]);
        let mut o = observed(vec![("app", running(0))]);
        o.init.insert("setup".into(), exited(0, 0));
        let mut unready = running(0);
        unready.readiness = Some(false);
        o.init.insert("proxy".into(), unready);
        let status = pod_status(&p, &o, now());
        let conditions = status.conditions.clone().unwrap();
        let get = |kind: &str| conditions.iter().find(|c| c.type_ == kind).unwrap().clone();
        assert_eq!(get("Initialized").status, "True");
        assert_eq!(get("Ready").status, "False");
        assert_eq!(get("Ready").message.as_deref(), Some("containers with unready status: [proxy]"));
        let proxy = &status.init_container_statuses.unwrap()[1];
        assert!(proxy.state.as_ref().unwrap().running.is_some() && !proxy.ready && proxy.started == Some(true));

        // Not started yet (its startup probe has not passed): not initialized.
        let mut starting = running(0);
        starting.started = false;
        o.init.insert("proxy".into(), starting);
        o.initialized = false;
        let status = pod_status(&p, &o, now());
        let initialized = status.conditions.unwrap().into_iter().find(|c| c.type_ == "Initialized").unwrap();
        assert_eq!((initialized.status.as_str(), initialized.message.as_deref()), ("False", Some("containers with incomplete status: [proxy]")));
        assert_eq!(status.phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn start_errors_and_oom_kills_have_upstreams_reasons() {
        let mut o = exited(0, 128);
        if let Some(Attempt { state: Run::Exited { exited, .. }, .. }) = o.current.as_mut() {
            exited.start_error = Some("exec: \"nope\": executable file not found in $PATH".into());
        }
        let c = container_status("app", "busybox", &o);
        assert_eq!(c.state.unwrap().terminated.unwrap().reason.as_deref(), Some("StartError"));
        let mut o = exited(0, 137);
        if let Some(Attempt { state: Run::Exited { exited, .. }, .. }) = o.current.as_mut() {
            exited.oom_killed = true;
        }
        assert_eq!(container_status("app", "busybox", &o).state.unwrap().terminated.unwrap().reason.as_deref(), Some("OOMKilled"));
    }
}
