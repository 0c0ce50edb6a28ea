//! upstream's crash-loop back-off: 10 s doubling to 5 min, forgotten after
//! a container ran 10 min without failing.

use std::time::{Duration, Instant};

use runtime::container::ContainerState as Run;

use super::status::Attempt;

pub const BACKOFF_START: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Backoff {
    pub delay: Duration,
    /// When the container may start again.
    pub until: Instant,
}

/// How long an attempt that ended ran.
pub fn run_time(a: &Attempt) -> Option<Duration> {
    match &a.state {
        Run::Exited { started: Some(s), exited } => {
            let start = chrono::DateTime::parse_from_rfc3339(&s.started_at).ok()?;
            let end = chrono::DateTime::parse_from_rfc3339(&exited.finished_at).ok()?;
            (end - start).to_std().ok()
        }
        _ => None,
    }
}
