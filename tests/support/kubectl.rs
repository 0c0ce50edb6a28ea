//! The one way tests run the real kubectl: against a kubeconfig, with an
//! optional stdin, extra environment and HOME, and a request timeout put
//! before the arguments (which may end in `-- COMMAND` for exec). The
//! lab, test-apiserver and plain helpers are thin wrappers around it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// What a kubectl run printed.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// What kubectl printed on stdout; it must have succeeded.
    pub fn succeeded(self) -> String {
        assert_eq!(self.code, 0, "kubectl failed:\n{}", self.stderr);
        self.stdout
    }

    /// What kubectl printed on stderr; it must have failed.
    pub fn failed(self) -> String {
        assert_ne!(self.code, 0, "kubectl should have failed:\n{}", self.stdout);
        self.stderr
    }

    /// The exit code and stdout followed by stderr.
    pub fn combined(self) -> (i32, String) {
        (self.code, format!("{}{}", self.stdout, self.stderr))
    }
}

/// How to run it, beside the kubeconfig and the arguments.
#[derive(Debug, Default, Clone, Copy)]
pub struct Run<'a> {
    pub stdin: Option<&'a str>,
    pub env: &'a [(&'a str, &'a str)],
    /// kubectl's HOME (its cache of discovery), when not the user's.
    pub home: Option<&'a Path>,
    /// `--request-timeout`, e.g. "60s".
    pub request_timeout: Option<&'a str>,
}

/// Runs kubectl with `kubeconfig` and `args` as `how` says.
pub fn run(kubeconfig: &Path, args: &[&str], how: Run) -> Output {
    let mut command = Command::new("kubectl");
    if let Some(timeout) = how.request_timeout {
        command.arg(format!("--request-timeout={timeout}"));
    }
    command
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBECTL_EXTERNAL_DIFF")
        .stdin(if how.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(home) = how.home {
        command.env("HOME", home);
    }
    for (k, v) in how.env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("kubectl is installed (on PATH)");
    if let Some(input) = how.stdin {
        child.stdin.take().expect("piped").write_all(input.as_bytes()).expect("kubectl reads its stdin");
    }
    let out = child.wait_with_output().expect("kubectl runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// kubectl's output with what changes from run to run replaced: uids,
/// resourceVersions, RFC 3339 and HTTP dates. Its layout stays (YAML keeps
/// its indentation).
pub fn stable(text: &str) -> String {
    // Uids first: a run of digits in one could read as something else.
    let rules = [
        (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uid>"),
        (r#"(resourceVersion"?:\s*)"?\d+"?"#, "${1}<rv>"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<time>"),
        (r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", "<time>"),
    ];
    let mut out = text.to_string();
    for (pattern, with) in rules {
        out = regex::Regex::new(pattern).expect("a valid pattern").replace_all(&out, with).into_owned();
    }
    out
}

/// [`stable`], with ages replaced too and table columns joined by two
/// spaces (their widths follow the ages).
pub fn table(text: &str) -> String {
    let ages = regex::Regex::new(r"\b\d+(s|m\d*s?|h\d*m?|d\d*h?)\b").expect("a valid pattern");
    let columns = regex::Regex::new(r" {2,}").expect("a valid pattern");
    let text = ages.replace_all(&stable(text), "<age>").into_owned();
    text.lines().map(|l| columns.replace_all(l.trim_end(), "  ").into_owned()).collect::<Vec<_>>().join("\n")
}
