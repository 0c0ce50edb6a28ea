//! Waiting on a condition, the one way tests and scenarios wait: poll until
//! it holds, or fail saying what was still missing when the deadline
//! passed. Each form comes async (on a runtime) and blocking (code that
//! drives kubectl or threads); `holds_for` checks the opposite, that
//! something stays true for a while (a Node that must not be evicted, a
//! leader that must stay). Tests panic at the deadline ([`until`]);
//! scenarios get the error back ([`try_until_within`]) and report it.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a condition is given by default; generous, because CI shares 2 cores.
pub const WAIT: Duration = Duration::from_secs(60);
/// How often a condition is asked again.
pub const POLL: Duration = Duration::from_millis(100);
/// How long one asking of a condition may outlast the wait's deadline: a
/// check that never answers (a request nobody answers) must still end the
/// wait, saying so.
pub const CHECK_GRACE: Duration = Duration::from_secs(30);

/// What a check that did not answer in time leaves as missing.
fn unanswered(last: Option<String>) -> String {
    match last {
        Some(seen) => format!("the last check did not answer within {CHECK_GRACE:?} of the deadline (the one before said: {seen})"),
        None => format!("the check did not answer within {CHECK_GRACE:?} of the deadline"),
    }
}

/// Polls `check` until it gives a value, for at most [`WAIT`]; on timeout,
/// panics with `what` and the last thing `check` said was missing.
pub async fn until<F, Fut, T>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    until_within(what, WAIT, check).await
}

/// [`until`] with a deadline of its own.
pub async fn until_within<F, Fut, T>(what: &str, within: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    match try_until_within(what, within, check).await {
        Ok(value) => value,
        Err(timeout) => panic!("{timeout}"),
    }
}

/// A wait that ran out: what was awaited and what was still missing.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: still missing after {within:?}: {missing}")]
pub struct Timeout {
    pub what: String,
    pub within: Duration,
    pub missing: String,
}

/// [`until_within`] that returns the [`Timeout`] instead of panicking.
pub async fn try_until_within<F, Fut, T>(what: &str, within: Duration, mut check: F) -> Result<T, Timeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut last = None;
    loop {
        let answer = match tokio::time::timeout_at(deadline + CHECK_GRACE, check()).await {
            Ok(answer) => answer,
            Err(_) => return Err(Timeout { what: what.to_string(), within, missing: unanswered(last) }),
        };
        match answer {
            Ok(value) => return Ok(value),
            Err(missing) if tokio::time::Instant::now() > deadline => return Err(Timeout { what: what.to_string(), within, missing }),
            Err(missing) => {
                last = Some(missing);
                tokio::time::sleep(POLL).await
            }
        }
    }
}

/// [`until_within`] for code without a runtime: blocks the thread between polls.
pub fn until_blocking<T>(what: &str, within: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(value) => return value,
            Err(missing) if Instant::now() > deadline => panic!("{what}: still missing after {within:?}: {missing}"),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Asks `check` every [`POLL`] for `period` and panics, with `what` and
/// what `check` saw, the first time it does not hold.
pub async fn holds_for<F, Fut>(what: &str, period: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let end = tokio::time::Instant::now() + period;
    loop {
        let Ok(answer) = tokio::time::timeout_at(end + CHECK_GRACE, check()).await else {
            panic!("{what}: {}", unanswered(None));
        };
        if let Err(seen) = answer {
            panic!("{what}: stopped holding within {period:?}: {seen}");
        }
        if tokio::time::Instant::now() >= end {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`holds_for`] for code without a runtime.
pub fn holds_for_blocking(what: &str, period: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let end = Instant::now() + period;
    loop {
        if let Err(seen) = check() {
            panic!("{what}: stopped holding within {period:?}: {seen}");
        }
        if Instant::now() >= end {
            return;
        }
        std::thread::sleep(POLL);
    }
}
