//! Benchmarks of the harness, run by `just bench` (never as timed tests):
//! - `lab images build` with nothing changed (target: under 5 s);
//! - `lab up 3-node` from nothing to every health gate green (target: under 10 s);
//! - of that, cluster DNS's share: the wait, once every container is
//!   healthy, for its Deployment (applied once the nodes were Ready) to be
//!   available (target: 1 s).
//!
//! Prints the median and the spread of a few runs.

use std::time::{Duration, Instant};

use kubelab::docker::Engine;
use kubelab::progress::Progress;
use kubelab::{addons, images};
use kubelab_scenarios::{lab_name, progress, repo, topology, LabGuard};

const RUNS: usize = 5;

fn report(what: &str, target: Duration, mut samples: Vec<Duration>) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let verdict = if median < target { "within" } else { "OVER" };
    println!(
        "{what:<40} median {:>6.2}s  min {:>6.2}s  max {:>6.2}s  ({verdict} target {:.0}s, {} runs)",
        median.as_secs_f64(),
        samples[0].as_secs_f64(),
        samples[samples.len() - 1].as_secs_f64(),
        target.as_secs_f64(),
        samples.len()
    );
}

#[tokio::main]
pub async fn main() {
    let engine = Engine::connect().await.expect("a Docker engine");
    let repo = repo();
    // Warm: the images exist (just bench builds them first).
    images::ensure(&engine, &repo, &progress()).await.expect("images");

    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        images::ensure(&engine, &repo, &progress()).await.expect("images");
        samples.push(started.elapsed());
    }
    report("images build, nothing changed", Duration::from_secs(5), samples);

    let source = topology("3-node");
    let (mut samples, mut dns) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let name = lab_name("bench");
        let guard = LabGuard::new(&name);
        let progress = Progress::recording();
        let options = kubelab::lab::UpOptions::default();
        let started = Instant::now();
        kubelab::lab::up(&engine, &repo, &source, &name, &options, &progress, &kubelab::cancel::Cancel::never()).await.expect("lab up 3-node");
        samples.push(started.elapsed());
        let addons = progress.finished().into_iter().find(|f| f.label == addons::WAIT_TASK).expect("lab up 3-node waits for cluster DNS");
        dns.push(addons.took);
        drop(guard); // lab down
    }
    report("lab up 3-node to all gates green", Duration::from_secs(10), samples);
    report("  of which cluster DNS (add-ons)", Duration::from_secs(1), dns);
}
