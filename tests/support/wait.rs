//! Waiting on a condition: poll until it holds, or fail saying what was
//! still missing when the deadline passed.

use std::future::Future;
use std::time::Duration;

/// How long a condition is given; generous, because CI shares 2 cores.
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `check` every 100 ms until it gives a value; on timeout, panics
/// with `what` and the last thing `check` said was missing.
pub async fn until<F, Fut, T>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(missing) if tokio::time::Instant::now() > deadline => panic!("{what}: still missing after {WAIT:?}: {missing}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
