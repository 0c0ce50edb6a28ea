//! What `lab` shows while it waits: a spinner per task on a terminal, one
//! line per change of state elsewhere (CI logs), nothing in tests; for
//! benchmarks, nothing shown but each finished task's time kept.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    Bars(MultiProgress),
    Lines,
    Quiet,
    Record(Arc<Mutex<Vec<Finished>>>),
}

/// A task that ended: its label, how long it took, whether it succeeded.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub label: String,
    pub took: Duration,
    pub ok: bool,
}

impl Progress {
    /// Spinners when stderr is a terminal, plain lines otherwise.
    pub fn auto() -> Progress {
        let mode = if std::io::stderr().is_terminal() { Mode::Bars(MultiProgress::new()) } else { Mode::Lines };
        Progress { mode }
    }

    pub fn quiet() -> Progress {
        Progress { mode: Mode::Quiet }
    }

    /// Shows nothing and keeps each finished task's time (see [`Progress::finished`]).
    pub fn recording() -> Progress {
        Progress { mode: Mode::Record(Arc::default()) }
    }

    /// The tasks finished so far, in the order they ended (recording only).
    pub fn finished(&self) -> Vec<Finished> {
        match &self.mode {
            Mode::Record(done) => done.lock().expect("no task panicked while recording").clone(),
            _ => Vec::new(),
        }
    }

    pub fn task(&self, label: &str) -> Task {
        let bar = match &self.mode {
            Mode::Bars(multi) => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(ProgressStyle::with_template("{spinner} {prefix:<22} {msg} ({elapsed})").expect("a valid template"));
                bar.set_prefix(label.to_string());
                bar.enable_steady_tick(Duration::from_millis(100));
                Some(bar)
            }
            _ => None,
        };
        let record = match &self.mode {
            Mode::Record(done) => Some(done.clone()),
            _ => None,
        };
        Task { bar, lines: matches!(self.mode, Mode::Lines), record, label: label.to_string(), started: Instant::now() }
    }
}

pub struct Task {
    bar: Option<ProgressBar>,
    lines: bool,
    record: Option<Arc<Mutex<Vec<Finished>>>>,
    label: String,
    started: Instant,
}

impl Task {
    pub fn update(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_string());
        } else if self.lines {
            eprintln!("  {:<22} {message}", self.label);
        }
    }

    pub fn done(&self, message: &str) {
        self.finish(true, message);
    }

    pub fn failed(&self, message: &str) {
        self.finish(false, message);
    }

    fn finish(&self, ok: bool, message: &str) {
        let mark = if ok { "✓" } else { "✗" };
        if let Some(done) = &self.record {
            let finished = Finished { label: self.label.clone(), took: self.started.elapsed(), ok };
            done.lock().expect("no task panicked while recording").push(finished);
        }
        let took = self.started.elapsed().as_secs_f32();
        if let Some(bar) = &self.bar {
            bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
            bar.finish_with_message(format!("{mark} {:<22} {message} ({took:.1}s)", self.label));
        } else if self.lines {
            eprintln!("{mark} {:<22} {message} ({took:.1}s)", self.label);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_keeps_each_finished_task() {
        let progress = Progress::recording();
        let dns = progress.task("add-ons");
        progress.task("worker-1").failed("unhealthy");
        dns.done("cluster DNS available");
        let finished: Vec<(String, bool)> = progress.finished().into_iter().map(|f| (f.label, f.ok)).collect();
        assert_eq!(finished, [("worker-1".to_string(), false), ("add-ons".to_string(), true)]);
        assert!(Progress::quiet().finished().is_empty());
    }
}
