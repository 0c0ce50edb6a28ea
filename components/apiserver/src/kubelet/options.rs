//! The query options of pods/log, pods/exec and pods/attach, read as
//! upstream's parameter codec reads them, checked as upstream checks them,
//! and written out again as the kubelet's query.

use serde_json::json;

use crate::status::{ApiError, ApiResult, Cause, Subject};

/// A request's query as (name, value) pairs, repeated names kept in order.
pub type Pairs = Vec<(String, String)>;

pub fn pairs(query: Option<&str>) -> Pairs {
    form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect()
}

fn first<'a>(q: &'a Pairs, key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Go's conversion of a query value to bool: present and neither "0" nor
/// "false" (any case) is true.
fn flag(q: &Pairs, key: &str) -> bool {
    first(q, key).is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
}

fn integer(q: &Pairs, key: &str) -> ApiResult<Option<i64>> {
    first(q, key).map(|v| v.parse::<i64>().map_err(|_| ApiError::bad_request(format!("strconv.ParseInt: parsing {v:?}: invalid syntax")))).transpose()
}

/// Go's url.Values.Encode: keys sorted, the values of a key in order.
pub fn encode(mut params: Vec<(&str, String)>) -> String {
    params.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        out.append_pair(k, &v);
    }
    out.finish()
}

/// PodLogOptions.
#[derive(Debug, Default, PartialEq)]
pub struct LogOptions {
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    /// RFC 3339, in UTC, to the second (as Go formats a metav1.Time).
    pub since_time: Option<String>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
    pub insecure_skip_tls_verify_backend: bool,
}

impl LogOptions {
    /// Reads and checks the options of a log request for pod `pod`.
    pub fn parse(q: &Pairs, pod: &str) -> ApiResult<LogOptions> {
        let since_time = match first(q, "sinceTime") {
            Some(v) => Some(
                chrono::DateTime::parse_from_rfc3339(v)
                    .map_err(|e| ApiError::bad_request(format!("sinceTime: parsing time {v:?} as RFC 3339: {e}")))?
                    .with_timezone(&chrono::Utc)
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string(),
            ),
            None => None,
        };
        let options = LogOptions {
            container: first(q, "container").filter(|c| !c.is_empty()).map(str::to_string),
            follow: flag(q, "follow"),
            previous: flag(q, "previous"),
            timestamps: flag(q, "timestamps"),
            since_seconds: integer(q, "sinceSeconds")?,
            since_time,
            tail_lines: integer(q, "tailLines")?,
            limit_bytes: integer(q, "limitBytes")?,
            insecure_skip_tls_verify_backend: flag(q, "insecureSkipTLSVerifyBackend"),
        };
        let causes = options.problems();
        if !causes.is_empty() {
            return Err(ApiError::invalid(&Subject { group: String::new(), kind: "PodLogOptions".into(), name: pod.into() }, causes));
        }
        Ok(options)
    }

    /// Upstream's ValidatePodLogOptions.
    fn problems(&self) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(n) = self.tail_lines.filter(|n| *n < 0) {
            causes.push(Cause::invalid("tailLines", &json!(n), "must be greater than or equal to 0"));
        }
        if let Some(n) = self.limit_bytes.filter(|n| *n < 1) {
            causes.push(Cause::invalid("limitBytes", &json!(n), "must be greater than 0"));
        }
        match (self.since_seconds, &self.since_time) {
            (Some(_), Some(_)) => causes.push(Cause::forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified")),
            (Some(n), None) if n < 1 => causes.push(Cause::invalid("sinceSeconds", &json!(n), "must be greater than 0")),
            _ => {}
        }
        causes
    }

    /// The kubelet's /containerLogs query.
    pub fn kubelet_query(&self) -> String {
        let mut params = Vec::new();
        for (key, on) in [("follow", self.follow), ("previous", self.previous), ("timestamps", self.timestamps)] {
            if on {
                params.push((key, "true".to_string()));
            }
        }
        for (key, value) in [("sinceSeconds", self.since_seconds), ("tailLines", self.tail_lines), ("limitBytes", self.limit_bytes)] {
            if let Some(v) = value {
                params.push((key, v.to_string()));
            }
        }
        if let Some(t) = &self.since_time {
            params.push(("sinceTime", t.clone()));
        }
        encode(params)
    }
}

/// PodExecOptions and PodAttachOptions (attach has no command).
#[derive(Debug, Default, PartialEq)]
pub struct StreamOptions {
    pub container: Option<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    pub command: Vec<String>,
}

impl StreamOptions {
    pub fn parse(q: &Pairs, with_command: bool) -> StreamOptions {
        StreamOptions {
            container: first(q, "container").filter(|c| !c.is_empty()).map(str::to_string),
            stdin: flag(q, "stdin"),
            stdout: flag(q, "stdout"),
            stderr: flag(q, "stderr"),
            tty: flag(q, "tty"),
            command: if with_command { q.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect() } else { Vec::new() },
        }
    }

    /// The kubelet's /exec or /attach query: streams as "1", each command
    /// word as its own `command`.
    pub fn kubelet_query(&self) -> String {
        let mut params: Vec<(&str, String)> = [("stdin", self.stdin), ("stdout", self.stdout), ("stderr", self.stderr), ("tty", self.tty)]
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(k, _)| (k, "1".to_string()))
            .collect();
        params.extend(self.command.iter().map(|c| ("command", c.clone())));
        encode(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Pairs {
        pairs(Some(s))
    }

    #[test]
    fn log_options_go_to_the_kubelet_sorted_and_normalised() {
        let o = LogOptions::parse(&q("container=web&follow=true&tailLines=2&timestamps=1&sinceTime=2024-05-01T12:00:00%2B02:00&limitBytes=10"), "p").unwrap();
        assert_eq!(o.container.as_deref(), Some("web"));
        assert_eq!(o.kubelet_query(), "follow=true&limitBytes=10&sinceTime=2024-05-01T10%3A00%3A00Z&tailLines=2&timestamps=true");
        assert_eq!(LogOptions::parse(&q("follow=false&previous=0"), "p").unwrap().kubelet_query(), "");
    }

    #[test]
    fn log_options_are_checked_as_upstream() {
        let e = LogOptions::parse(&q("tailLines=-1"), "web").unwrap_err();
        assert_eq!(e.message, r#"PodLogOptions "web" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"#);
        let e = LogOptions::parse(&q("sinceSeconds=5&sinceTime=2024-05-01T12:00:00Z"), "web").unwrap_err();
        assert_eq!(e.message, r#"PodLogOptions "web" is invalid: : Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"#);
        let e = LogOptions::parse(&q("limitBytes=0&sinceSeconds=0"), "web").unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("limitBytes: Invalid value: 0: must be greater than 0, sinceSeconds: Invalid value: 0"), "{}", e.message);
        let e = LogOptions::parse(&q("tailLines=many"), "web").unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (400, r#"strconv.ParseInt: parsing "many": invalid syntax"#));
    }

    #[test]
    fn exec_options_keep_the_command_in_order() {
        let o = StreamOptions::parse(&q("command=sh&command=-c&command=echo+a%26b&stdout=true&stderr=true&tty=false&container=app"), true);
        assert_eq!(o.command, ["sh", "-c", "echo a&b"]);
        assert_eq!(o.kubelet_query(), "command=sh&command=-c&command=echo+a%26b&stderr=1&stdout=1");
        assert!(StreamOptions::parse(&q("command=ls&stdin=1"), false).command.is_empty());
    }
}
