//! `/containerLogs/<ns>/<pod>/<container>`: the container's CRI-format log
//! read back as its plain output, with upstream's options: `follow`,
//! `tailLines`, `timestamps`, `previous`, `sinceSeconds`, `sinceTime`,
//! `limitBytes`; following goes on across rotations (`log_follower`).

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use runtime::logs;

use super::log_follower::Follower;
use super::{text, Ctx, Params, PodPath};
use crate::pods::files::log_path_of;

#[derive(Debug, Default, Clone)]
pub(crate) struct Options {
    pub follow: bool,
    pub tail: Option<usize>,
    pub timestamps: bool,
    pub previous: bool,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub limit_bytes: Option<usize>,
}

impl Options {
    pub fn parse(query: &[(String, String)]) -> Result<Options, String> {
        let mut o = Options::default();
        for (k, v) in query {
            let flag = || v == "true" || v == "1";
            match k.as_str() {
                "follow" => o.follow = flag(),
                "timestamps" => o.timestamps = flag(),
                "previous" => o.previous = flag(),
                "tailLines" => o.tail = Some(v.parse().map_err(|_| format!("tailLines {v:?} is not a number"))?),
                "limitBytes" => o.limit_bytes = Some(v.parse().map_err(|_| format!("limitBytes {v:?} is not a number"))?),
                "sinceSeconds" => {
                    let s: i64 = v.parse().map_err(|_| format!("sinceSeconds {v:?} is not a number"))?;
                    o.since = Some(chrono::Utc::now() - chrono::Duration::seconds(s));
                }
                "sinceTime" => {
                    o.since = Some(chrono::DateTime::parse_from_rfc3339(v).map_err(|e| format!("sinceTime {v:?}: {e}"))?.with_timezone(&chrono::Utc));
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

pub(crate) async fn container_logs(State(ctx): State<Ctx>, axum::extract::Path((namespace, pod, container)): PodPath, query: Params) -> Response {
    let options = match Options::parse(&query.0) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let Some(shared) = ctx.pods.find(&namespace, &pod) else {
        return text(StatusCode::NOT_FOUND, format!("pod {namespace}/{pod} not found"));
    };
    let (path, running_id) = {
        let s = shared.lock().expect("not poisoned");
        let observed = s.observed.containers.get(&container).or_else(|| s.observed.init.get(&container));
        let Some(observed) = observed else {
            return text(StatusCode::BAD_REQUEST, format!("container {container} is not valid for pod {pod}"));
        };
        let attempt = if options.previous { observed.previous.as_ref() } else { observed.current.as_ref() };
        let Some(attempt) = attempt else {
            if options.previous {
                return text(StatusCode::BAD_REQUEST, format!("previous terminated container {container:?} in pod {pod:?} not found"));
            }
            let reason = observed.waiting.as_ref().map(|w| w.0.clone()).unwrap_or_else(|| "ContainerCreating".into());
            return text(StatusCode::BAD_REQUEST, format!("container {container:?} in pod {pod:?} is waiting to start: {reason}"));
        };
        (log_path_of(&s.pod, &container, attempt.restart), attempt.running().map(|_| attempt.id.clone()))
    };
    let follow = options.follow && running_id.is_some();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let kubelet = ctx.kubelet.clone();
    tokio::task::spawn_blocking(move || stream(&path, &options, follow, running_id, kubelet, tx));
    Response::builder().header("content-type", "text/plain").body(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))).expect("a valid response")
}

/// Reads the log (on a blocking thread) into `tx`; with `follow`, goes on
/// as the shim appends (and rotates), until the container ends or the
/// client leaves. Only the current file is read, as upstream reads it.
fn stream(
    path: &std::path::Path,
    o: &Options,
    follow: bool,
    running: Option<String>,
    kubelet: std::sync::Arc<crate::Kubelet>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let Ok(mut log) = Follower::open(path) else { return };
    let mut all = log.read_new();
    // A last line without its newline is not written whole yet.
    let complete = all.iter().rposition(|b| *b == b'\n').map(|p| p + 1).unwrap_or(0);
    let mut pending = all.split_off(complete);
    let mut lines = render(&all, o);
    if let Some(n) = o.tail {
        lines.drain(..lines.len().saturating_sub(n));
    }
    let mut budget = o.limit_bytes.unwrap_or(usize::MAX);
    let send = |chunk: Vec<u8>, budget: &mut usize| -> bool {
        if *budget == 0 {
            return false;
        }
        let chunk = if chunk.len() > *budget { chunk[..*budget].to_vec() } else { chunk };
        *budget -= chunk.len();
        tx.blocking_send(Ok(Bytes::from(chunk))).is_ok() && *budget > 0
    };
    if !lines.is_empty() && !send(lines.concat(), &mut budget) {
        return;
    }
    if !follow {
        return;
    }
    let id = running.unwrap_or_default();
    loop {
        if tx.is_closed() {
            return;
        }
        let more = log.read_new();
        pending.extend_from_slice(&more);
        if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
            let done: Vec<u8> = pending.drain(..=end).collect();
            let out = render(&done, &Options { since: None, ..o.clone() }).concat();
            if !out.is_empty() && !send(out, &mut budget) {
                return;
            }
        }
        if more.is_empty() {
            let still_running =
                matches!(kubelet.runtime.container(&id), Ok(Some(runtime::ContainerStatus { state: runtime::container::ContainerState::Running(_), .. })));
            if !still_running {
                // One more read after the end: what the shim wrote last.
                pending.extend_from_slice(&log.read_new());
                let out = render(&pending, &Options { since: None, ..o.clone() }).concat();
                if !out.is_empty() {
                    send(out, &mut budget);
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Log lines → output lines (pieces of one line joined), filtered by time.
pub(crate) fn render(bytes: &[u8], o: &Options) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut partial: Option<Vec<u8>> = None;
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Some(entry) = logs::parse(line) else { continue };
        if let Some(since) = o.since {
            let when = chrono::DateTime::parse_from_rfc3339(entry.time).map(|t| t.with_timezone(&chrono::Utc));
            if when.is_ok_and(|t| t < since) {
                continue;
            }
        }
        let buf = partial.get_or_insert_with(|| if o.timestamps { format!("{} ", entry.time).into_bytes() } else { Vec::new() });
        buf.extend_from_slice(entry.text);
        if !entry.partial {
            let mut done = partial.take().unwrap_or_default();
            done.push(b'\n');
            out.push(done);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-12-05T10:00:00.000000001Z stdout F one\n\
                       2026-12-05T10:00:01.000000001Z stderr P tw\n\
                       2026-12-05T10:00:01.000000002Z stderr F o\n\
                       2026-12-05T10:00:02.000000001Z stdout F three\n";

    #[test]
    fn pieces_join_and_timestamps_lead() {
        let lines = render(LOG.as_bytes(), &Options::default());
        assert_eq!(lines, vec![b"one\n".to_vec(), b"two\n".to_vec(), b"three\n".to_vec()]);
        let stamped = render(LOG.as_bytes(), &Options { timestamps: true, ..Default::default() });
        assert_eq!(String::from_utf8_lossy(&stamped[0]), "2026-12-05T10:00:00.000000001Z one\n");
    }

    #[test]
    fn since_drops_older_lines_and_options_parse() {
        let since = chrono::DateTime::parse_from_rfc3339("2026-12-05T10:00:01Z").unwrap().with_timezone(&chrono::Utc);
        let lines = render(LOG.as_bytes(), &Options { since: Some(since), ..Default::default() });
        assert_eq!(lines.len(), 2);
        let q = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert_eq!(Options::parse(&q("tailLines", "2")).unwrap().tail, Some(2));
        assert!(Options::parse(&q("tailLines", "x")).unwrap_err().contains("tailLines"));
        assert!(Options::parse(&q("follow", "true")).unwrap().follow);
    }
}
