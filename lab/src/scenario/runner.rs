//! Runs scenarios on labs: one lab per topology (brought up once, or found
//! up already), each scenario in a namespace of its own that it leaves
//! behind empty, a deadline per scenario, and for each failure the step it
//! failed at and a logs bundle (`lab export logs`). The lab is taken down
//! at the end unless asked to keep it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::{Context, Scenario};
use crate::cancel::Cancel;
use crate::docker::Engine;
use crate::lab::{self, UpOptions};
use crate::progress::Progress;
use crate::repo::Repo;
use crate::topology;

/// How long one scenario may take, all its waits included.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Every scenario on this topology instead of its own.
    pub topology: Option<String>,
    /// The lab's name; `run-<topology>` by default.
    pub lab: Option<String>,
    /// Leave the labs up afterwards (and the namespaces of failed scenarios).
    pub keep: bool,
}

/// How one scenario went.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: &'static str,
    pub group: &'static str,
    pub topology: String,
    pub took: Duration,
    /// None when it passed; else the step it failed at and why.
    pub failure: Option<Failure>,
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub step: String,
    pub error: String,
    /// Where the lab's logs were written, when that worked.
    pub logs: Option<PathBuf>,
}

pub fn lab_name(topology: &str, options: &RunOptions) -> String {
    options.lab.clone().unwrap_or_else(|| format!("run-{topology}"))
}

/// Runs `scenarios`, grouped by topology, and says how each went. Errors
/// only when a lab cannot be brought up (or Ctrl-C).
pub async fn run(engine: &Engine, repo: &Repo, scenarios: &[Scenario], options: &RunOptions, progress: &Progress, cancel: &Cancel) -> Result<Vec<Outcome>> {
    let mut by_topology: BTreeMap<String, Vec<Scenario>> = BTreeMap::new();
    for s in scenarios {
        let topology = options.topology.clone().unwrap_or_else(|| s.topology.to_string());
        by_topology.entry(topology).or_default().push(*s);
    }
    let mut outcomes = Vec::new();
    for (topology, scenarios) in by_topology {
        let name = lab_name(&topology, options);
        let path = topology::resolve(&topology, &repo.topologies())?;
        let source = topology::load(&path)?;
        lab::up(engine, repo, &source, &name, &UpOptions::default(), progress, cancel).await.with_context(|| format!("bringing up lab {name} ({topology})"))?;
        let ran = on_lab(engine, repo, &name, &topology, &scenarios, options, progress, cancel).await;
        if !options.keep {
            lab::down(engine, &name, false).await?;
        }
        outcomes.extend(ran?);
    }
    Ok(outcomes)
}

#[allow(clippy::too_many_arguments)]
async fn on_lab(
    engine: &Engine,
    repo: &Repo,
    lab: &str,
    topology: &str,
    scenarios: &[Scenario],
    options: &RunOptions,
    progress: &Progress,
    cancel: &Cancel,
) -> Result<Vec<Outcome>> {
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("config");
    std::fs::write(&kubeconfig, lab::kubeconfig(engine, lab).await?.to_yaml())?;
    let snapshots = repo.root.join("scenarios").join("snapshots");
    let mut outcomes = Vec::new();
    for scenario in scenarios {
        cancel.check()?;
        let task = progress.task(scenario.name);
        let namespace = format!("scenario-{}", scenario.name);
        let context = Context::new(lab, scenario.name, &namespace, &kubeconfig, &snapshots);
        let started = Instant::now();
        let result = tokio::select! {
            result = tokio::time::timeout(SCENARIO_TIMEOUT, run_one(&context, scenario)) => {
                result.unwrap_or_else(|_| Err(anyhow::anyhow!("did not finish within {SCENARIO_TIMEOUT:?}")))
            }
            _ = cancel.cancelled() => Err(crate::cancel::Interrupted.into()),
        };
        let took = started.elapsed();
        let failure = match result {
            Ok(()) => {
                task.done("passed");
                None
            }
            Err(error) => {
                task.failed(&format!("failed at: {}", context.current_step()));
                let bundle = repo.release_dir().join("lab-run").join(format!("{lab}-{}", scenario.name));
                let logs = lab::export_logs(engine, lab, &bundle).await.ok().map(|_| bundle);
                Some(Failure { step: context.current_step(), error: format!("{error:#}"), logs })
            }
        };
        if failure.is_none() || !options.keep {
            // Its namespace goes (and with it everything it made); the next scenario starts clean.
            let _ = context
                .kubectl_raw(&["delete".into(), "namespace".into(), namespace.clone(), "--ignore-not-found".into(), "--wait=false".into()], None, &[])
                .await;
        }
        outcomes.push(Outcome { scenario: scenario.name, group: scenario.group, topology: topology.to_string(), took, failure });
        cancel.check()?;
    }
    Ok(outcomes)
}

async fn run_one(context: &Context, scenario: &Scenario) -> Result<()> {
    context.step("creating its namespace");
    let (code, _, stderr) = context.kubectl_raw(&["create".into(), "namespace".into(), context.namespace.clone()], None, &[]).await?;
    if code != 0 && !stderr.contains("AlreadyExists") {
        anyhow::bail!("creating namespace {}: {}", context.namespace, stderr.trim());
    }
    (scenario.run)(context).await
}

/// The table `lab run` prints at the end: one row per scenario, then the
/// failures with their step, error and logs.
pub fn report(outcomes: &[Outcome]) -> String {
    let width = outcomes.iter().map(|o| o.scenario.len()).max().unwrap_or(0).max("SCENARIO".len());
    let mut out = format!("{:<12} {:<width$}   {:<8}   {:>8}   RESULT\n", "GROUP", "SCENARIO", "TOPOLOGY", "TIME");
    for o in outcomes {
        let result = if o.failure.is_none() { "pass" } else { "FAIL" };
        out += &format!("{:<12} {:<width$}   {:<8}   {:>7.1}s   {result}\n", o.group, o.scenario, o.topology, o.took.as_secs_f64());
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    out += &format!("{} passed, {} failed\n", outcomes.len() - failed.len(), failed.len());
    for o in failed {
        let f = o.failure.as_ref().expect("filtered on failures");
        out += &format!("\n{} failed at step \"{}\":\n  {}\n", o.scenario, f.step, f.error.replace('\n', "\n  "));
        if let Some(logs) = &f.logs {
            out += &format!("  logs: {}\n", logs.display());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_lists_each_scenario_then_each_failure() {
        let pass = Outcome { scenario: "namespaces", group: "basics", topology: "3-node".into(), took: Duration::from_millis(4200), failure: None };
        let failure = Failure { step: "scaling to 5".into(), error: "still missing".into(), logs: Some("/tmp/x".into()) };
        let fail = Outcome { scenario: "rollout", group: "workloads", topology: "3-node".into(), took: Duration::from_secs(90), failure: Some(failure) };
        let text = report(&[pass, fail]);
        assert_eq!(
            text,
            "GROUP        SCENARIO     TOPOLOGY       TIME   RESULT\n\
             basics       namespaces   3-node         4.2s   pass\n\
             workloads    rollout      3-node        90.0s   FAIL\n\
             1 passed, 1 failed\n\
             \n\
             rollout failed at step \"scaling to 5\":\n  still missing\n  logs: /tmp/x\n"
        );
    }

    #[test]
    fn a_lab_per_topology_unless_named() {
        assert_eq!(lab_name("3-node", &RunOptions::default()), "run-3-node");
        assert_eq!(lab_name("3-node", &RunOptions { lab: Some("mine".into()), ..Default::default() }), "mine");
    }
}
