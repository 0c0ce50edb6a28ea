//! A controller's backoff after failed syncs, as upstream's default
//! workqueue rate limiter: 5 ms, doubling with each failure of the same
//! object in a row, at most 1000 s; a successful sync starts it over.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

const BASE: Duration = Duration::from_millis(5);
const MAX: Duration = Duration::from_secs(1000);

/// Failures in a row, per object key (`namespace/name`).
#[derive(Debug, Default)]
pub struct Retries {
    failures: Mutex<BTreeMap<String, u32>>,
}

impl Retries {
    /// Records a failed sync of `key`; how long until the next try.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("not poisoned");
        let count = failures.entry(key.to_string()).or_insert(0);
        let delay = BASE.saturating_mul(1u32 << (*count).min(20)).min(MAX);
        *count += 1;
        delay
    }

    /// A sync of `key` succeeded: its next failure waits the least again.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("not poisoned").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_failure_and_starts_over() {
        let r = Retries::default();
        assert_eq!(r.failed("a"), Duration::from_millis(5));
        assert_eq!(r.failed("a"), Duration::from_millis(10));
        assert_eq!(r.failed("b"), Duration::from_millis(5));
        r.succeeded("a");
        assert_eq!(r.failed("a"), Duration::from_millis(5));
        for _ in 0..30 {
            r.failed("c");
        }
        assert_eq!(r.failed("c"), MAX);
    }
}
