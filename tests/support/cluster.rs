//! A lab as tests drive it: kubectl with the lab's kubeconfig, commands
//! inside its node containers, JSON read back.

use std::path::PathBuf;

use kubelab::docker::Engine;
use kubelab::plan;
use serde_json::Value;

use crate::LabGuard;

/// kubectl with the lab's kubeconfig (requests time out after 60 s).
pub fn kubectl_with(kubeconfig: &std::path::Path, args: &[&str], input: Option<&str>) -> (i32, String) {
    crate::kubectl::run(kubeconfig, args, crate::kubectl::Run { stdin: input, request_timeout: Some("60s"), ..Default::default() }).combined()
}

pub fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> (i32, String) {
    kubectl_with(kubeconfig, args, None)
}

pub fn kubectl_stdin(kubeconfig: &std::path::Path, args: &[&str], input: &str) -> (i32, String) {
    kubectl_with(kubeconfig, args, Some(input))
}

pub struct Cluster {
    pub name: String,
    pub kubeconfig: PathBuf,
    pub engine: Engine,
    /// Holds the kubeconfig file.
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Brings `topology` up as lab `name` (taken down by `guard` when the
    /// test ends) and writes its kubeconfig.
    pub async fn up(topology_name: &str, name: String) -> anyhow::Result<(Cluster, LabGuard)> {
        Cluster::up_source(&crate::topology(topology_name), name).await
    }

    /// [`Cluster::up`] of a topology read already (changed by the test).
    pub async fn up_source(source: &kubelab::topology::Source, name: String) -> anyhow::Result<(Cluster, LabGuard)> {
        let engine = Engine::connect().await?;
        let guard = LabGuard::new(&name);
        crate::up(&engine, source, &name).await?;
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("config");
        std::fs::write(&kubeconfig, kubelab::lab::kubeconfig(&engine, &name).await?.to_yaml())?;
        Ok((Cluster { name, kubeconfig, engine, _dir: dir }, guard))
    }

    pub fn k(&self, args: &[&str]) -> (i32, String) {
        kubectl(&self.kubeconfig, args)
    }

    /// kubectl that must succeed; its output.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out) = self.k(args);
        assert_eq!(code, 0, "kubectl {args:?}: {out}");
        out
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("kubectl prints JSON")
    }

    /// A command in a node container: exit code and output.
    pub async fn node(&self, node: &str, cmd: &[&str]) -> (i64, String) {
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        self.engine.exec(&plan::container_name(&self.name, node), &cmd).await.expect("docker exec runs")
    }
}

pub fn pods_of(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

pub fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}
