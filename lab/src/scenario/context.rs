//! What a scenario holds while it runs: the lab's kubeconfig, a namespace
//! of its own, the step it is at (for the report when it fails), kubectl,
//! the one wait helper, and snapshots.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tokio::io::AsyncWriteExt;

use crate::wait;

/// How long one kubectl command may take before the scenario fails.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a scenario waits for a condition by default.
pub const WAIT: Duration = Duration::from_secs(90);

pub struct Context {
    pub lab: String,
    /// The scenario's own namespace, created before it runs and deleted after.
    pub namespace: String,
    kubeconfig: PathBuf,
    snapshots: PathBuf,
    scenario: &'static str,
    step: Mutex<String>,
}

impl Context {
    pub fn new(lab: &str, scenario: &'static str, namespace: &str, kubeconfig: &Path, snapshots: &Path) -> Context {
        Context {
            lab: lab.to_string(),
            namespace: namespace.to_string(),
            kubeconfig: kubeconfig.to_path_buf(),
            snapshots: snapshots.to_path_buf(),
            scenario,
            step: Mutex::new("starting".into()),
        }
    }

    /// Says what the scenario does next; a failure is reported at this step.
    pub fn step(&self, what: &str) {
        tracing::info!(scenario = self.scenario, "{what}");
        *self.step.lock().expect("the step is never held across a panic") = what.to_string();
    }

    pub fn current_step(&self) -> String {
        self.step.lock().expect("the step is never held across a panic").clone()
    }

    /// kubectl in the scenario's namespace; it must succeed. Its stdout.
    pub async fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.kubectl_in_namespace(args, None).await
    }

    /// kubectl in the namespace with `input` on stdin (apply -f -, ...).
    pub async fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<String> {
        self.kubectl_in_namespace(args, Some(input)).await
    }

    async fn kubectl_in_namespace(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        let mut all = vec!["--namespace".to_string(), self.namespace.clone()];
        all.extend(args.iter().map(|a| a.to_string()));
        let (code, stdout, stderr) = self.kubectl_raw(&all, input, &[]).await?;
        if code != 0 {
            bail!("kubectl {} exited {code}: {}", args.join(" "), stderr.trim());
        }
        Ok(stdout)
    }

    /// `kubectl apply -f -` of `manifest` in the namespace.
    pub async fn apply(&self, manifest: &str) -> Result<String> {
        self.kubectl_stdin(&["apply", "-f", "-"], manifest).await
    }

    /// kubectl as given (no namespace added), with extra environment: exit
    /// code, stdout, stderr, whatever the code.
    pub async fn kubectl_raw(&self, args: &[String], input: Option<&str>, env: &[(&str, &str)]) -> Result<(i32, String, String)> {
        let mut command = tokio::process::Command::new("kubectl");
        command
            .arg("--request-timeout=30s")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .envs(env.iter().copied())
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().context("running kubectl (is it installed and on PATH?)")?;
        if let Some(input) = input {
            let mut stdin = child.stdin.take().expect("stdin is piped");
            stdin.write_all(input.as_bytes()).await?;
        }
        let output = tokio::time::timeout(KUBECTL_TIMEOUT, child.wait_with_output())
            .await
            .with_context(|| format!("kubectl {} did not finish within {KUBECTL_TIMEOUT:?}", args.join(" ")))??;
        Ok((output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned()))
    }

    /// `kubectl get ... -o json` in the namespace, parsed.
    pub async fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        let out = self.kubectl(&args).await?;
        serde_json::from_str(&out).with_context(|| format!("kubectl {} printed no JSON", args.join(" ")))
    }

    /// Polls `check` until it gives a value, for at most [`WAIT`]; the
    /// error says what was still missing.
    pub async fn until<T, F, Fut>(&self, what: &str, check: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        Ok(wait::try_until_within(what, WAIT, check).await?)
    }

    /// Compares `text` with the reviewed snapshot `<scenario>__<name>`. A
    /// mismatch fails the scenario; insta prints the diff and writes the
    /// new text beside the old one (`.snap.new`) for review.
    pub fn snapshot(&self, name: &str, text: &str) -> Result<()> {
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(&self.snapshots);
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        let full = format!("{}__{name}", self.scenario);
        let compared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| settings.bind(|| insta::assert_snapshot!(full.as_str(), text))));
        if compared.is_err() {
            bail!("snapshot {full} differs (the diff is above; the new text is in {}/{full}.snap.new)", self.snapshots.display());
        }
        Ok(())
    }
}
