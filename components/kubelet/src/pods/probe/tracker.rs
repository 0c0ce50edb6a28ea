//! When a probe runs and what its results mean, as upstream's probe
//! worker decides it: no probing before the container has started (but
//! for the startup probe itself) nor before `initialDelaySeconds` since
//! the container started; then one probe per `periodSeconds`; a result
//! counts once it has come `successThreshold` (or `failureThreshold`)
//! times in a row. A liveness or startup failure ends the probing of
//! this container (the kill follows; a new container gets new probes),
//! and so does startup's success. Free of I/O: the probe itself is a
//! closure, so the timing is tested on tokio's paused clock.

use std::future::Future;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::settings::{Kind, Settings};

/// One probe's outcome, with its output (the body, the command's
/// output, why it failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probed {
    Success(String),
    /// A success with something to say (upstream's probe warning: an
    /// httpGet redirect not followed): counted as a success, reported.
    Warning(String),
    Failure(String),
    /// The probe could not be run (upstream's probe error): reported,
    /// and counted neither way.
    Error(String),
}

/// What a result that counts asks of the kubelet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The container's readiness.
    Ready(bool),
    /// The startup probe succeeded: the others may begin.
    Started,
    /// Liveness or startup failed: the container is killed.
    Kill,
}

/// Results in a row, as upstream's worker counts them.
#[derive(Debug, Default)]
pub struct Tracker {
    last: Option<bool>,
    run: u32,
}

impl Tracker {
    /// The result once it has come its threshold's times in a row.
    pub fn record(&mut self, success: bool, s: &Settings) -> Option<bool> {
        if self.last == Some(success) {
            self.run += 1;
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let threshold = if success { s.success_threshold } else { s.failure_threshold };
        (self.run >= threshold).then_some(success)
    }
}

/// What a result that counts does, for a probe of `kind`.
pub fn action(kind: Kind, success: bool) -> Option<Action> {
    match (kind, success) {
        (Kind::Readiness, ready) => Some(Action::Ready(ready)),
        (Kind::Startup, true) => Some(Action::Started),
        (Kind::Liveness, true) => None,
        (_, false) => Some(Action::Kill),
    }
}

/// Probes a container that started at `started_at` until a result ends
/// it (returned: `Kill` or `Started`) or the task is dropped. `started`
/// holds liveness and readiness back until the startup probe succeeds.
/// `report` hears every outcome (for events) and every `Ready` action.
pub async fn run<C, F, R>(
    kind: Kind,
    settings: &Settings,
    started_at: Instant,
    mut started: watch::Receiver<bool>,
    mut check: C,
    mut report: R,
) -> Option<Action>
where
    C: FnMut() -> F,
    F: Future<Output = Probed>,
    R: FnMut(&Probed, Option<Action>),
{
    if kind != Kind::Startup && started.wait_for(|s| *s).await.is_err() {
        return None;
    }
    tokio::time::sleep_until(started_at + settings.initial_delay).await;
    let mut ticks = tokio::time::interval(settings.period);
    // A slow probe delays the next one rather than bunching them up.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut tracker = Tracker::default();
    loop {
        ticks.tick().await;
        let probed = check().await;
        let success = match &probed {
            Probed::Success(_) | Probed::Warning(_) => true,
            Probed::Failure(_) => false,
            Probed::Error(_) => {
                report(&probed, None);
                continue;
            }
        };
        let act = tracker.record(success, settings).and_then(|result| action(kind, result));
        report(&probed, act);
        if let Some(a @ (Action::Kill | Action::Started)) = act {
            return Some(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    fn settings(delay: u64, period: u64, success: u32, failure: u32) -> Settings {
        Settings {
            initial_delay: Duration::from_secs(delay),
            period: Duration::from_secs(period),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
            termination_grace: None,
        }
    }

    /// Runs a probe whose outcomes are `script` (then failures), and
    /// returns when it probed (seconds since start), what it reported and
    /// how it ended.
    async fn probe(kind: Kind, s: Settings, started: watch::Receiver<bool>, script: &[bool]) -> (Vec<u64>, Vec<Action>, Option<Action>) {
        let t0 = Instant::now();
        let times = Arc::new(Mutex::new(vec![]));
        let mut outcomes = script.iter().copied();
        let check = || {
            times.lock().unwrap().push((Instant::now() - t0).as_secs());
            let ok = outcomes.next().unwrap_or(false);
            async move {
                if ok {
                    Probed::Success(String::new())
                } else {
                    Probed::Failure("no".into())
                }
            }
        };
        let mut actions = vec![];
        let end = tokio::time::timeout(Duration::from_secs(600), run(kind, &s, t0, started, check, |_, a| actions.extend(a))).await.ok().flatten();
        let times = times.lock().unwrap().clone();
        (times, actions, end)
    }

    fn started() -> watch::Receiver<bool> {
        watch::channel(true).1
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_kills_after_failure_threshold_failures_in_a_row() {
        let (times, _, end) = probe(Kind::Liveness, settings(5, 10, 1, 3), started(), &[true, false, false, true, false, false, false]).await;
        assert_eq!(times, vec![5, 15, 25, 35, 45, 55, 65], "first at initialDelaySeconds, then every periodSeconds");
        assert_eq!(end, Some(Action::Kill), "a success in between starts the count again");
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_follows_its_thresholds() {
        let s = settings(0, 2, 2, 2);
        let (times, actions, _) = probe(Kind::Readiness, s, started(), &[true, true, false, true, false, false, true, true]).await;
        assert_eq!(&times[..4], &[0, 2, 4, 6]);
        assert_eq!(
            &actions[..3],
            &[Action::Ready(true), Action::Ready(false), Action::Ready(true)],
            "ready after 2 successes, not ready after 2 failures, ready after 2 successes"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn startup_probes_until_it_succeeds() {
        let (times, _, end) = probe(Kind::Startup, settings(0, 3, 1, 10), watch::channel(false).1, &[false, false, true]).await;
        assert_eq!((times, end), (vec![0, 3, 6], Some(Action::Started)));
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_waits_for_startup() {
        let (tx, rx) = watch::channel(false);
        let t0 = Instant::now();
        let times = Arc::new(Mutex::new(vec![]));
        let seen = times.clone();
        let check = move || {
            seen.lock().unwrap().push((Instant::now() - t0).as_secs());
            async { Probed::Success(String::new()) }
        };
        let liveness = tokio::spawn(async move { run(Kind::Liveness, &settings(0, 10, 1, 1), t0, rx, check, |_, _| {}).await });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(times.lock().unwrap().is_empty(), "no liveness probe before the startup probe succeeded");
        tx.send(true).unwrap();
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert_eq!(*times.lock().unwrap(), vec![30, 40], "its initial delay counts from the container's start");
        liveness.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_startup_probe_kills() {
        let (times, _, end) = probe(Kind::Startup, settings(0, 1, 1, 4), watch::channel(false).1, &[]).await;
        assert_eq!((times, end), (vec![0, 1, 2, 3], Some(Action::Kill)));
    }

    #[test]
    fn results_map_to_actions() {
        assert_eq!(action(Kind::Liveness, true), None);
        assert_eq!(action(Kind::Liveness, false), Some(Action::Kill));
        assert_eq!(action(Kind::Startup, false), Some(Action::Kill));
        assert_eq!(action(Kind::Readiness, false), Some(Action::Ready(false)));
    }
}
