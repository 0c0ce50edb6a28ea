//! What scenario tests share: the repo, a Docker engine, and labs that are
//! removed when the test ends, also when it fails.

pub mod apiserver;
pub mod cluster;
pub mod deadline;
pub mod fake_kubelet;
pub mod kubectl;
pub mod kubelet;
pub mod port_forward;
pub mod wait;

use std::path::PathBuf;

use kubelab::docker::Engine;
use kubelab::progress::Progress;
use kubelab::repo::Repo;
use kubelab::topology::{self, Source};

pub fn repo() -> Repo {
    Repo { root: PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repo").to_path_buf() }
}

/// A topology from `tests/fixtures/` or `topologies/`.
pub fn topology(name: &str) -> Source {
    let repo = repo();
    let fixture = repo.root.join("tests/fixtures").join(format!("{name}.yaml"));
    let path = if fixture.is_file() { fixture } else { topology::resolve(name, &repo.topologies()).unwrap() };
    topology::load(&path).unwrap()
}

/// A shipped topology with kube-proxy in another mode: its text changed
/// where it names the mode (so the lab's labels carry what runs), read again.
pub fn topology_in_proxy_mode(name: &str, mode: topology::ProxyMode) -> Source {
    let mut source = topology(name);
    let written = format!("proxyMode: {}", source.topology.networking.proxy_mode.flag());
    assert!(source.text.contains(&written), "{name} names its proxy mode ({written})");
    source.text = source.text.replace(&written, &format!("proxyMode: {}", mode.flag()));
    source.topology = topology::parse(&source.text, &source.path).unwrap();
    assert_eq!(source.topology.networking.proxy_mode, mode);
    source
}

/// A lab name unique to this test process.
pub fn lab_name(test: &str) -> String {
    format!("it-{test}-{}", std::process::id())
}

pub fn progress() -> Progress {
    Progress::quiet()
}

/// Takes its lab down when dropped, so that a failing test leaves nothing
/// behind on the engine.
pub struct LabGuard {
    pub name: String,
}

impl LabGuard {
    pub fn new(name: &str) -> LabGuard {
        LabGuard { name: name.to_string() }
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside the test's runtime, which cannot be blocked on:
        // remove the lab from a thread with a runtime of its own.
        let removed = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime");
            runtime.block_on(async {
                let engine = Engine::connect().await?;
                kubelab::lab::down(&engine, &name, false).await
            })
        })
        .join();
        if !matches!(removed, Ok(Ok(_))) {
            eprintln!("could not remove lab {}: {removed:?}", self.name);
        }
    }
}

/// `lab up` as the CLI runs it, without progress output or Ctrl-C.
pub async fn up(engine: &Engine, source: &Source, name: &str) -> anyhow::Result<kubelab::plan::Plan> {
    let options = kubelab::lab::UpOptions::default();
    let cancel = kubelab::cancel::Cancel::never();
    kubelab::lab::up(engine, &repo(), source, name, &options, &progress(), &cancel).await
}

/// Asserts that nothing labelled with the lab is left: no container,
/// network or volume.
pub async fn assert_nothing_left(engine: &Engine, lab: &str) {
    assert!(engine.containers(Some(lab)).await.unwrap().is_empty(), "containers of {lab} are left");
    assert!(engine.networks(Some(lab)).await.unwrap().is_empty(), "the network of {lab} is left");
    assert!(engine.volumes(Some(lab)).await.unwrap().is_empty(), "volumes of {lab} are left");
}

/// kubectl with `kubeconfig` (requests time out after 5 s): its exit
/// code and its stdout followed by its stderr.
pub fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> (i32, String) {
    kubectl::run(kubeconfig, args, kubectl::Run { request_timeout: Some("5s"), ..Default::default() }).combined()
}

/// [`kubectl()`] with `input` on its stdin (a manifest for `-f -`).
pub fn kubectl_stdin(kubeconfig: &std::path::Path, args: &[&str], input: &str) -> (i32, String) {
    kubectl::run(kubeconfig, args, kubectl::Run { stdin: Some(input), request_timeout: Some("5s"), ..Default::default() }).combined()
}
