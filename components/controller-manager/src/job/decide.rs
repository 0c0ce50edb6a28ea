//! What a Job should do next, decided from what is counted and running
//! (upstream's syncJob and manageJob; in the Indexed completion mode
//! `succeeded` counts succeeded indexes): no API calls here, so every
//! rule is tested on plain values.

use std::time::Duration;

/// Upstream's DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff: a
/// failed pod's replacement waits 10 s, doubling with each failure in a
/// row, up to 10 minutes.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(10);
pub const FAILURE_BACKOFF_MAX: Duration = Duration::from_secs(600);

/// What the Job's spec says, with upstream's defaults for what it leaves out.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub completions: Option<i32>,
    pub parallelism: i32,
    pub backoff_limit: i32,
    pub active_deadline_seconds: Option<i64>,
    pub suspend: bool,
    /// `OnFailure` pods restart in place; their restarts count as failures.
    pub restarts_in_place: bool,
    /// Indexed Jobs with `backoffLimitPerIndex`: `maxFailedIndexes`, if set.
    pub per_index: Option<PerIndex>,
}

/// What `backoffLimitPerIndex` brings: indexes that fail for good.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PerIndex {
    pub max_failed_indexes: Option<i32>,
}

/// What the controller sees: totals counted so far and the pods running.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    pub succeeded: i32,
    pub failed: i32,
    pub active: i32,
    /// Container restarts of active pods (counted for `OnFailure` pods).
    pub restarts: i32,
    /// Seconds since the Job started (status.startTime), if it has.
    pub running_for: Option<i64>,
    /// Indexes failed for good (with `backoffLimitPerIndex`).
    pub failed_indexes: i32,
    /// A failed pod matched a `FailJob` rule of the podFailurePolicy: why.
    pub fail_job: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Keep this many pods active.
    Run { want_active: i32 },
    /// Suspended: no pods run.
    Suspend,
    /// Reached its completions.
    Complete,
    /// Failed for good: the condition's reason and message.
    Fail { reason: &'static str, message: String },
}

pub fn decide(spec: &Spec, seen: &Seen) -> Outcome {
    if spec.suspend {
        return Outcome::Suspend;
    }
    if let Some(message) = &seen.fail_job {
        return Outcome::Fail { reason: "PodFailurePolicy", message: message.clone() };
    }
    let on_failure_exceeded = spec.restarts_in_place && if spec.backoff_limit == 0 { seen.restarts > 0 } else { seen.restarts >= spec.backoff_limit };
    if seen.failed > spec.backoff_limit || on_failure_exceeded {
        return Outcome::Fail { reason: "BackoffLimitExceeded", message: "Job has reached the specified backoff limit".into() };
    }
    if let (Some(limit), Some(running)) = (spec.active_deadline_seconds, seen.running_for) {
        if running >= limit {
            return Outcome::Fail { reason: "DeadlineExceeded", message: "Job was active longer than specified deadline".into() };
        }
    }
    if let Some(per_index) = spec.per_index {
        if per_index.max_failed_indexes.is_some_and(|max| seen.failed_indexes > max) {
            return Outcome::Fail { reason: "MaxFailedIndexesExceeded", message: "Job has exceeded the specified maximal number of failed indexes".into() };
        }
        // Every index has ended, some of them failed.
        if seen.failed_indexes > 0 && spec.completions.is_some_and(|n| seen.succeeded + seen.failed_indexes >= n) {
            return Outcome::Fail { reason: "FailedIndexes", message: "Job has failed indexes".into() };
        }
    }
    let complete = match spec.completions {
        Some(n) => seen.succeeded >= n && seen.active == 0,
        None => seen.succeeded > 0 && seen.active == 0,
    };
    if complete {
        return Outcome::Complete;
    }
    let parallelism = spec.parallelism.max(0);
    let want_active = match spec.completions {
        // Without completions the Job is done when one pod succeeds: after
        // that, what runs is left to finish and nothing new starts.
        None if seen.succeeded > 0 => seen.active,
        None => parallelism,
        Some(n) => (n - seen.succeeded - seen.failed_indexes).clamp(0, parallelism),
    };
    Outcome::Run { want_active }
}

/// How long a replacement waits after `failures` pods failed in a row.
pub fn failure_backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    FAILURE_BACKOFF.saturating_mul(1u32 << (failures - 1).min(16)).min(FAILURE_BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(completions: Option<i32>, parallelism: i32) -> Spec {
        Spec { completions, parallelism, backoff_limit: 6, active_deadline_seconds: None, suspend: false, restarts_in_place: false, per_index: None }
    }

    fn seen(succeeded: i32, failed: i32, active: i32) -> Seen {
        Seen { succeeded, failed, active, ..Seen::default() }
    }

    #[test]
    fn completions_bound_the_pods_that_run() {
        let s = spec(Some(3), 2);
        assert_eq!(decide(&s, &seen(0, 0, 0)), Outcome::Run { want_active: 2 });
        assert_eq!(decide(&s, &seen(2, 0, 1)), Outcome::Run { want_active: 1 });
        assert_eq!(decide(&s, &seen(3, 0, 1)), Outcome::Run { want_active: 0 });
        assert_eq!(decide(&s, &seen(3, 0, 0)), Outcome::Complete);
    }

    #[test]
    fn without_completions_one_success_ends_it() {
        let s = spec(None, 3);
        assert_eq!(decide(&s, &seen(0, 0, 0)), Outcome::Run { want_active: 3 });
        assert_eq!(decide(&s, &seen(1, 0, 2)), Outcome::Run { want_active: 2 });
        assert_eq!(decide(&s, &seen(1, 0, 0)), Outcome::Complete);
    }

    #[test]
    fn failures_past_the_limit_fail_the_job() {
        let mut s = spec(Some(1), 1);
        s.backoff_limit = 2;
        assert_eq!(decide(&s, &seen(0, 2, 0)), Outcome::Run { want_active: 1 });
        assert!(matches!(decide(&s, &seen(0, 3, 0)), Outcome::Fail { reason: "BackoffLimitExceeded", .. }));
        s.restarts_in_place = true;
        assert!(matches!(decide(&s, &Seen { restarts: 2, active: 1, ..Seen::default() }), Outcome::Fail { .. }));
    }

    #[test]
    fn deadlines_and_suspension() {
        let mut s = spec(Some(1), 1);
        s.active_deadline_seconds = Some(30);
        assert_eq!(decide(&s, &Seen { running_for: Some(29), ..Seen::default() }), Outcome::Run { want_active: 1 });
        assert!(matches!(decide(&s, &Seen { running_for: Some(30), ..Seen::default() }), Outcome::Fail { reason: "DeadlineExceeded", .. }));
        s.suspend = true;
        assert_eq!(decide(&s, &seen(0, 0, 1)), Outcome::Suspend);
    }

    #[test]
    fn failed_indexes_end_the_job_past_the_maximum_or_at_the_end() {
        let mut s = spec(Some(4), 2);
        s.backoff_limit = i32::MAX;
        s.per_index = Some(PerIndex { max_failed_indexes: Some(1) });
        let with = |succeeded, failed_indexes, active| Seen { succeeded, active, failed_indexes, ..Seen::default() };
        // One failed index is allowed: the other three still run.
        assert_eq!(decide(&s, &with(0, 1, 2)), Outcome::Run { want_active: 2 });
        assert_eq!(decide(&s, &with(2, 1, 1)), Outcome::Run { want_active: 1 });
        assert!(matches!(decide(&s, &with(3, 1, 0)), Outcome::Fail { reason: "FailedIndexes", .. }));
        assert!(matches!(decide(&s, &with(0, 2, 2)), Outcome::Fail { reason: "MaxFailedIndexesExceeded", .. }));
        s.per_index = Some(PerIndex { max_failed_indexes: None });
        assert_eq!(decide(&s, &with(0, 2, 2)), Outcome::Run { want_active: 2 });
    }

    #[test]
    fn a_fail_job_rule_fails_it_before_any_limit() {
        let s = spec(Some(2), 2);
        let seen = Seen { failed: 1, active: 1, fail_job: Some("Container main for pod ns/p failed with exit code 42".into()), ..Seen::default() };
        assert_eq!(decide(&s, &seen), Outcome::Fail { reason: "PodFailurePolicy", message: "Container main for pod ns/p failed with exit code 42".into() });
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(failure_backoff(0), Duration::ZERO);
        assert_eq!(failure_backoff(1), Duration::from_secs(10));
        assert_eq!(failure_backoff(3), Duration::from_secs(40));
        assert_eq!(failure_backoff(12), FAILURE_BACKOFF_MAX);
    }
}
