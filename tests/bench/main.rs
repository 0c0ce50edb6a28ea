//! Every benchmark of `just bench`, in one binary (one link of the
//! dependency tree instead of one per benchmark). Each benchmark is a
//! module with its own `main`; figures go in the README, never into timed
//! tests.
//!
//! ```sh
//! cargo bench --workspace --bench benches                    # all, in order
//! cargo bench --workspace --bench benches -- dns kube_proxy  # some
//! cargo bench --workspace --bench benches -- --list
//! ```
//!
//! With several benchmarks to run, each runs in a child process of its
//! own, as separate binaries did: some measure the process's memory, and
//! `kube_proxy` moves the whole process into a network namespace of its own.

mod apiserver;
mod controllers;
mod dns;
mod kube_proxy;
mod kubelet;
mod lab_up;
mod scheduler;
mod service_dns;

use std::process::{Command, ExitCode};
use std::time::Instant;

/// Name and entry point of every benchmark, in `just bench`'s order: the
/// in-process ones first, the ones on labs after.
const BENCHES: &[(&str, fn())] = &[
    ("lab_up", lab_up::main),
    ("apiserver", apiserver::main),
    ("controllers", controllers::main),
    ("scheduler", scheduler::main),
    ("kube_proxy", kube_proxy::main),
    ("dns", dns::main),
    ("service_dns", service_dns::main),
    ("kubelet", kubelet::main),
];

fn main() -> ExitCode {
    // cargo bench passes `--bench` to a harness-less binary; other flags
    // than --list are the harness's and mean nothing here.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in BENCHES {
            println!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    let names: Vec<&str> = args.iter().filter(|a| !a.starts_with("--")).map(String::as_str).collect();
    for name in &names {
        if !BENCHES.iter().any(|(known, _)| known == name) {
            let known: Vec<&str> = BENCHES.iter().map(|(n, _)| *n).collect();
            eprintln!("no benchmark named {name:?}; there are: {}", known.join(", "));
            return ExitCode::FAILURE;
        }
    }
    if let [one] = names[..] {
        let (_, run) = BENCHES.iter().find(|(known, _)| *known == one).expect("checked above");
        run();
        return ExitCode::SUCCESS;
    }
    let chosen: Vec<&str> = if names.is_empty() { BENCHES.iter().map(|(n, _)| *n).collect() } else { names };
    let me = std::env::current_exe().expect("the path of this binary");
    let mut failed = Vec::new();
    for name in chosen {
        println!("\n=== bench {name}");
        let started = Instant::now();
        let status = Command::new(&me).arg(name).status().expect("start a benchmark's process");
        println!("=== bench {name}: {:.0} s, {status}", started.elapsed().as_secs_f64());
        if !status.success() {
            failed.push(name);
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("benchmarks that failed: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}
