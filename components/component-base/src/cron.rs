//! CronJob schedules as upstream reads them: the standard five fields
//! (minute, hour, day of month, month, day of week) or one of the
//! `@hourly`-style descriptors, in the CronJob's `timeZone` (UTC when it has
//! none, as our controller-manager runs in UTC). The apiserver checks a
//! schedule with [`Schedule::parse`]; the cronjob controller follows it.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    zone: Tz,
}

/// The descriptors upstream's parser accepts, as five fields.
const DESCRIPTORS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

impl Schedule {
    /// A schedule, or why it is not one (in upstream's words where it has
    /// them).
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, String> {
        let zone = match time_zone {
            None => Tz::UTC,
            Some(name) => zone(name)?,
        };
        let text = schedule.trim();
        if text.starts_with("TZ=") || text.starts_with("CRON_TZ=") {
            return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
        }
        let fields = match DESCRIPTORS.iter().find(|(d, _)| *d == text) {
            Some((_, fields)) => fields.to_string(),
            None if text.starts_with('@') => return Err(format!("unrecognized descriptor: {text}")),
            None => text.to_string(),
        };
        let count = fields.split_whitespace().count();
        if count != 5 {
            return Err(format!("expected exactly 5 fields, found {count}: [{}]", fields.split_whitespace().collect::<Vec<_>>().join(" ")));
        }
        let cron = croner::Cron::from_str(&fields).map_err(|e| e.to_string())?;
        Ok(Schedule { cron, zone })
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.zone);
        self.cron.find_next_occurrence(&local, false).ok().map(|n| n.with_timezone(&Utc))
    }

    /// Every scheduled time in (`after`, `until`], at most `limit` of them
    /// (the controller only needs the latest and whether there are many).
    pub fn times_between(&self, after: DateTime<Utc>, until: DateTime<Utc>, limit: usize) -> Vec<DateTime<Utc>> {
        let mut times = Vec::new();
        let mut t = after;
        while times.len() < limit {
            match self.next_after(t) {
                Some(next) if next <= until => {
                    times.push(next);
                    t = next;
                }
                _ => break,
            }
        }
        times
    }
}

/// A time zone of the IANA database, by name.
pub fn zone(name: &str) -> Result<Tz, String> {
    // Upstream refuses "Local": a schedule must not depend on the node.
    if name == "Local" {
        return Err("unknown time zone Local".into());
    }
    name.parse::<Tz>().map_err(|_| format!("unknown time zone {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn standard_schedules_find_their_next_minute() {
        let every = Schedule::parse("*/1 * * * *", None).unwrap();
        assert_eq!(every.next_after(at("2026-12-07T10:00:30Z")), Some(at("2026-12-07T10:01:00Z")));
        let hourly = Schedule::parse("@hourly", None).unwrap();
        assert_eq!(hourly.next_after(at("2026-12-07T10:00:00Z")), Some(at("2026-12-07T11:00:00Z")));
        let five = Schedule::parse("5 4 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(five.next_after(at("2026-12-07T10:00:00Z")), Some(at("2026-12-08T03:05:00Z")));
    }

    #[test]
    fn times_between_are_bounded() {
        let every = Schedule::parse("* * * * *", None).unwrap();
        let times = every.times_between(at("2026-12-07T10:00:00Z"), at("2026-12-07T10:03:00Z"), 100);
        assert_eq!(times, [at("2026-12-07T10:01:00Z"), at("2026-12-07T10:02:00Z"), at("2026-12-07T10:03:00Z")]);
        assert_eq!(every.times_between(at("2026-12-07T10:00:00Z"), at("2026-12-07T12:00:00Z"), 5).len(), 5);
    }

    #[test]
    fn bad_schedules_say_why() {
        assert!(Schedule::parse("every minute", None).unwrap_err().contains("expected exactly 5 fields"));
        assert!(Schedule::parse("* * * * * *", None).unwrap_err().contains("found 6"));
        assert!(Schedule::parse("61 * * * *", None).is_err());
        assert!(Schedule::parse("@sometimes", None).unwrap_err().contains("unrecognized descriptor"));
        assert!(Schedule::parse("TZ=UTC * * * * *", None).unwrap_err().contains("use timeZone field"));
        assert_eq!(Schedule::parse("* * * * *", Some("Mars/Olympus")).unwrap_err(), "unknown time zone Mars/Olympus");
    }
}
