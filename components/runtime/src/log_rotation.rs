//! Which files a container log's rotation keeps, removes and compresses,
//! with upstream's kubelet's rules (its container log manager): the current
//! log `<restart>.log` is renamed `<restart>.log.<YYYYMMDD-HHMMSS>` once it
//! reaches `containerLogMaxSize`, every rotated file but the newest is
//! gzipped (`.gz`), and at most `containerLogMaxFiles` files are kept in
//! all, the current one included, the oldest going first. Pure: the shim's
//! [`crate::log_file`] does the file work.

use serde::{Deserialize, Serialize};

/// The kubelet's `containerLogMaxSize` and `containerLogMaxFiles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Bytes of the current log before it is rotated.
    pub max_size: u64,
    /// Files kept in all, the current one included (at least 2).
    pub max_files: usize,
}

/// The suffix of a rotated file's time, as upstream formats it (UTC here:
/// the nodes keep UTC).
pub const STAMP_FORMAT: &str = "%Y%m%d-%H%M%S";
pub const COMPRESSED_SUFFIX: &str = ".gz";
pub const TEMPORARY_SUFFIX: &str = ".tmp";

impl Policy {
    /// From the kubelet's flags (the size in bytes): None when the size is
    /// negative, upstream's way of turning rotation off.
    pub fn from_flags(max_size: i64, max_files: i64) -> Result<Option<Policy>, String> {
        if max_files < 2 {
            return Err(format!("--container-log-max-files must be at least 2 (the current log and one rotated), not {max_files}"));
        }
        match u64::try_from(max_size) {
            Err(_) => Ok(None),
            Ok(0) => Err("--container-log-max-size must be more than 0 (or negative, to turn rotation off)".into()),
            Ok(max_size) => Ok(Some(Policy { max_size, max_files: max_files as usize })),
        }
    }

    /// Whether writing `incoming` more bytes to a log of `size` bytes goes
    /// to a new file. An empty log takes anything, so a line longer than
    /// the maximum still lands whole in one file.
    pub fn rotates_before(&self, size: u64, incoming: usize) -> bool {
        size > 0 && size.saturating_add(incoming as u64) > self.max_size
    }
}

/// A file beside the log whose name is the log's, a dot and more.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sibling<'a> {
    name: &'a str,
    /// Rotated files sort by time, then by the count that tells apart
    /// several rotations in one second.
    key: (&'a str, u32),
    compressed: bool,
    temporary: bool,
}

fn sibling<'a>(log: &str, name: &'a str) -> Option<Sibling<'a>> {
    let rest = name.strip_prefix(log)?.strip_prefix('.')?;
    let temporary = rest.ends_with(TEMPORARY_SUFFIX);
    let (base, compressed) = match rest.strip_suffix(COMPRESSED_SUFFIX) {
        Some(base) => (base, true),
        None => (rest, false),
    };
    let key = match base.rsplit_once('.') {
        Some((stamp, count)) if count.parse::<u32>().is_ok() => (stamp, count.parse().unwrap_or(0)),
        _ => (base, 0),
    };
    Some(Sibling { name, key, compressed, temporary })
}

/// What one rotation does, decided before the current log is renamed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Leftovers of a rotation cut short (temporary files, and files whose
    /// compressed copy is whole), and the oldest rotated files beyond the
    /// limit.
    pub remove: Vec<String>,
    /// The rotated files kept but not compressed yet: once the current
    /// log is renamed, every rotated file but that newest one.
    pub compress: Vec<String>,
    /// The name the current log gets.
    pub rotated: String,
}

/// The rotation of the log named `log` among the files `names` of its
/// folder, at the time `stamp` ([`STAMP_FORMAT`]).
pub fn plan(log: &str, names: &[String], policy: &Policy, stamp: &str) -> Plan {
    let siblings: Vec<Sibling<'_>> = names.iter().filter_map(|n| sibling(log, n)).collect();
    let compressed_whole = |s: &Sibling<'_>| !s.compressed && names.iter().any(|n| *n == format!("{}{COMPRESSED_SUFFIX}", s.name));
    let (mut in_use, unused): (Vec<&Sibling<'_>>, Vec<&Sibling<'_>>) = siblings.iter().partition(|s| !s.temporary && !compressed_whole(s));
    in_use.sort_by_key(|s| s.key);
    // After the rename the newest rotated file is the current log's old
    // self: of those there now, max_files - 2 may stay.
    let excess = in_use.len().saturating_sub(policy.max_files.saturating_sub(2));
    let mut remove: Vec<String> = unused.iter().map(|s| s.name.to_string()).collect();
    remove.extend(in_use[..excess].iter().map(|s| s.name.to_string()));
    let compress = in_use[excess..].iter().filter(|s| !s.compressed).map(|s| s.name.to_string()).collect();
    let rotated = match siblings.iter().filter(|s| s.key.0 == stamp).map(|s| s.key.1).max() {
        None => format!("{log}.{stamp}"),
        Some(count) => format!("{log}.{stamp}.{}", count + 1),
    };
    Plan { remove, compress, rotated }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE: Policy = Policy { max_size: 100, max_files: 5 };

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_follow_upstreams_limits() {
        assert_eq!(Policy::from_flags(10 << 20, 5), Ok(Some(Policy { max_size: 10 << 20, max_files: 5 })));
        assert_eq!(Policy::from_flags(-1, 5), Ok(None));
        assert!(Policy::from_flags(0, 5).unwrap_err().contains("max-size"));
        assert!(Policy::from_flags(100, 1).unwrap_err().contains("at least 2"));
    }

    #[test]
    fn a_log_rotates_before_the_write_that_would_pass_the_size() {
        assert!(!FIVE.rotates_before(0, 500), "an empty log takes even an overlong line");
        assert!(!FIVE.rotates_before(60, 40));
        assert!(FIVE.rotates_before(60, 41));
        assert!(FIVE.rotates_before(100, 1));
    }

    #[test]
    fn the_first_rotation_keeps_everything() {
        let p = plan("0.log", &names(&["0.log", "1.log"]), &FIVE, "20261207-101500");
        assert_eq!(p, Plan { remove: vec![], compress: vec![], rotated: "0.log.20261207-101500".into() });
    }

    #[test]
    fn older_rotated_files_are_compressed_and_the_oldest_removed() {
        let dir = names(&[
            "0.log",
            "0.log.20261207-100000.gz",
            "0.log.20261207-100100.gz",
            "0.log.20261207-100200.gz",
            "0.log.20261207-100300",
            // Another attempt's log is not this one's.
            "10.log.20261207-090000",
        ]);
        let p = plan("0.log", &dir, &FIVE, "20261207-100400");
        // Four rotated now; three may stay, so that with the renamed one
        // and the new current log there are five.
        assert_eq!(p.remove, names(&["0.log.20261207-100000.gz"]));
        assert_eq!(p.compress, names(&["0.log.20261207-100300"]));
        assert_eq!(p.rotated, "0.log.20261207-100400");
    }

    #[test]
    fn two_files_keep_only_the_current_and_the_newest() {
        let dir = names(&["0.log", "0.log.20261207-100000"]);
        let p = plan("0.log", &dir, &Policy { max_size: 100, max_files: 2 }, "20261207-100001");
        assert_eq!(p.remove, names(&["0.log.20261207-100000"]));
        assert!(p.compress.is_empty());
    }

    #[test]
    fn leftovers_of_a_cut_rotation_go() {
        let dir = names(&[
            "0.log",
            // Compressed whole before the original was removed.
            "0.log.20261207-100000",
            "0.log.20261207-100000.gz",
            // A compression cut short, and a new log never put in place.
            "0.log.20261207-100100.tmp",
            "0.log.next.tmp",
            "0.log.20261207-100100",
        ]);
        let p = plan("0.log", &dir, &FIVE, "20261207-100200");
        assert_eq!(p.remove, names(&["0.log.20261207-100000", "0.log.20261207-100100.tmp", "0.log.next.tmp"]));
        assert_eq!(p.compress, names(&["0.log.20261207-100100"]));
    }

    #[test]
    fn rotations_within_one_second_are_counted_and_sort_in_order() {
        let p = plan("0.log", &names(&["0.log", "0.log.20261207-100000.gz"]), &FIVE, "20261207-100000");
        assert_eq!(p.rotated, "0.log.20261207-100000.1");
        let dir = names(&["0.log", "0.log.20261207-100000.gz", "0.log.20261207-100000.1.gz", "0.log.20261207-100000.10", "0.log.20261207-100000.2.gz"]);
        let p = plan("0.log", &dir, &Policy { max_size: 100, max_files: 4 }, "20261207-100000");
        assert_eq!(p.rotated, "0.log.20261207-100000.11");
        // By count, not by name: .10 is newer than .2.
        assert_eq!(p.remove, names(&["0.log.20261207-100000.gz", "0.log.20261207-100000.1.gz"]));
        assert_eq!(p.compress, names(&["0.log.20261207-100000.10"]));
    }
}
