//! The scenario catalog on `3-node`, as `lab run all` runs it: every
//! scenario passes, each in its own namespace of one shared lab, and what
//! each observed matches its reviewed snapshots in `scenarios/snapshots/`.

use kubelab::cancel::Cancel;
use kubelab::docker::Engine;
use kubelab::scenario::{self, runner};
use kubelab_scenarios::{lab_name, progress, repo, LabGuard};

#[tokio::test]
async fn every_scenario_passes_on_3_node() {
    let engine = Engine::connect().await.unwrap();
    let name = lab_name("scenarios");
    let _guard = LabGuard::new(&name);
    let options = runner::RunOptions { lab: Some(name.clone()), topology: Some("3-node".into()), keep: false };
    let outcomes = runner::run(&engine, &repo(), &scenario::catalog(), &options, &progress(), &Cancel::never()).await.unwrap();
    let report = runner::report(&outcomes);
    println!("{report}");
    assert_eq!(outcomes.len(), scenario::catalog().len(), "{report}");
    assert!(outcomes.iter().all(|o| o.failure.is_none()), "{report}");
}
