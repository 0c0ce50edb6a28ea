//! What `lab` shows while it waits: a spinner per task on a terminal, one
//! line per change of state elsewhere (CI logs), nothing in tests.

use std::io::IsTerminal;
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
        Task { bar, lines: matches!(self.mode, Mode::Lines), label: label.to_string(), started: Instant::now() }
    }
}

pub struct Task {
    bar: Option<ProgressBar>,
    lines: bool,
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
        self.finish("✓", message);
    }

    pub fn failed(&self, message: &str) {
        self.finish("✗", message);
    }

    fn finish(&self, mark: &str, message: &str) {
        let took = self.started.elapsed().as_secs_f32();
        if let Some(bar) = &self.bar {
            bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
            bar.finish_with_message(format!("{mark} {:<22} {message} ({took:.1}s)", self.label));
        } else if self.lines {
            eprintln!("{mark} {:<22} {message} ({took:.1}s)", self.label);
        }
    }
}
