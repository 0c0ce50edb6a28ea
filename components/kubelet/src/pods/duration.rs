//! Durations printed as upstream's messages print them (Go's
//! `time.Duration.String`), so events read the same.

use std::time::Duration;

/// Go's Duration text for whole seconds: `10s`, `1m20s`, `5m0s`.
pub fn go_seconds(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_reads_as_go_prints_it() {
        assert_eq!(go_seconds(Duration::from_secs(10)), "10s");
        assert_eq!(go_seconds(Duration::from_secs(300)), "5m0s");
    }
}
