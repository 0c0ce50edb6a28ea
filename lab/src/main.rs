//! `lab`: bring kubelab topologies up on Docker, look inside, take them down.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;

use kubelab::cancel::Cancel;
use kubelab::docker::Engine;
use kubelab::lab::{self, UpOptions, DEFAULT_NAME};
use kubelab::progress::Progress;
use kubelab::repo::Repo;
use kubelab::{images, kubeconfig, load, scenario, topology};

#[derive(Parser)]
#[command(name = "lab", version, about = "Kubernetes you can take apart: labs from topology files, on Docker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build what is missing, then bring a lab up (or reconcile a running one).
    Up {
        /// A topology name from topologies/ (such as 3-node) or a path to a file.
        topology: String,
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        /// Leave what a failed `up` started, for inspection.
        #[arg(long)]
        keep_on_failure: bool,
    },
    /// Remove a lab's containers, network and volumes.
    Down {
        name: Option<String>,
        /// Remove every lab.
        #[arg(long, conflicts_with = "name")]
        all: bool,
        /// Keep etcd's data volumes, so the next `up` finds the cluster's state.
        #[arg(long)]
        keep_data: bool,
    },
    /// A table of a lab's components: container, state, address, health.
    Status { name: Option<String> },
    /// The labs on this engine.
    List,
    /// A component's log.
    Logs {
        name: String,
        component: String,
        #[arg(short, long)]
        follow: bool,
    },
    /// Write things out of a lab.
    Export {
        #[command(subcommand)]
        what: Export,
    },
    /// Print a lab's kubeconfig.
    Kubeconfig { name: Option<String> },
    /// kubelab's images.
    Images {
        #[command(subcommand)]
        what: ImagesCommand,
    },
    /// Put things into a running lab.
    Load {
        #[command(subcommand)]
        what: Load,
    },
    /// Check a topology file and print it as kubelab reads it.
    Validate { topology: String },
    /// Run scenarios on labs, comparing what they observe with reviewed snapshots.
    Run {
        /// A scenario, a group of them, or all.
        #[arg(required_unless_present = "list")]
        target: Option<String>,
        /// List the scenarios and their groups.
        #[arg(long)]
        list: bool,
        /// Run every scenario on this topology instead of its own.
        #[arg(long)]
        topology: Option<String>,
        /// The lab's name (default run-<topology>).
        #[arg(long)]
        name: Option<String>,
        /// Leave the lab up afterwards, and failed scenarios' namespaces.
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Subcommand)]
enum Export {
    /// Every component's log, the topology and the status table, for bug reports.
    Logs { name: String, dir: PathBuf },
}

#[derive(Subcommand)]
enum Load {
    /// Images from the local Docker engine into every node's image store (as kind load docker-image).
    Image {
        /// Images as the local engine names them (busybox:1.36, myapp:dev, an image ID).
        #[arg(required = true)]
        images: Vec<String>,
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Build every image that is missing or stale.
    Build,
    /// List kubelab's images.
    List,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("KUBELAB_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Validate { topology } => {
            let repo = Repo::locate()?;
            let path = topology::resolve(&topology, &repo.topologies())?;
            let source = topology::load(&path)?;
            print!("{}", serde_yaml::to_string(&source.topology)?);
            Ok(())
        }
        Command::Up { topology, name, keep_on_failure } => {
            let repo = Repo::locate()?;
            lab::check_name(&name)?;
            let path = topology::resolve(&topology, &repo.topologies())?;
            let source = topology::load(&path)?;
            let engine = Engine::connect().await?;
            let cancel = Cancel::on_ctrl_c();
            let progress = Progress::auto();
            let options = UpOptions { keep_on_failure };
            let started = std::time::Instant::now();
            lab::up(&engine, &repo, &source, &name, &options, &progress, &cancel).await?;
            eprintln!("lab {name} is up ({} in {:.1}s). See it with: lab status {name}", path.display(), started.elapsed().as_secs_f32());
            let config = lab::kubeconfig(&engine, &name).await?;
            let file = kubeconfig::user_kubeconfig_path()?;
            kubeconfig::merge_into(&file, &config)?;
            let context = kubeconfig::entry_name(&name);
            eprintln!("kubeconfig: context {context} merged into {} and made current. Try:", file.display());
            eprintln!("  kubectl --context {context} get namespaces");
            Ok(())
        }
        Command::Down { name, all, keep_data } => {
            let engine = Engine::connect().await?;
            let names = if all { lab::names(&engine).await? } else { vec![name.unwrap_or_else(|| DEFAULT_NAME.into())] };
            for name in names {
                let removed = lab::down(&engine, &name, keep_data).await?;
                // The context would point at nothing; `up` merges it again.
                kubeconfig::remove_from(&kubeconfig::user_kubeconfig_path()?, &name)?;
                if removed {
                    let kept = if keep_data { " (data volumes kept)" } else { "" };
                    eprintln!("lab {name} is down{kept}");
                } else if !all {
                    bail!("no lab named {name:?}");
                }
            }
            Ok(())
        }
        Command::Run { target, list, topology, name, keep } => {
            let catalog = scenario::catalog();
            if list {
                print!("{}", scenario::list_table(&catalog));
                return Ok(());
            }
            let chosen = scenario::select(&catalog, target.as_deref().unwrap_or("all"))?;
            if let Some(name) = &name {
                lab::check_name(name)?;
            }
            let repo = Repo::locate()?;
            let engine = Engine::connect().await?;
            let options = scenario::runner::RunOptions { topology, lab: name, keep };
            let outcomes = scenario::runner::run(&engine, &repo, &chosen, &options, &Progress::auto(), &Cancel::on_ctrl_c()).await?;
            print!("{}", scenario::runner::report(&outcomes));
            if outcomes.iter().any(|o| o.failure.is_some()) {
                bail!("some scenarios failed");
            }
            Ok(())
        }
        Command::Status { name } => {
            let engine = Engine::connect().await?;
            let rows = lab::status(&engine, name.as_deref().unwrap_or(DEFAULT_NAME)).await?;
            print!("{}", lab::status_table(&rows));
            Ok(())
        }
        Command::List => {
            let engine = Engine::connect().await?;
            let labs = lab::list(&engine).await?;
            if labs.is_empty() {
                eprintln!("no lab is up");
            } else {
                println!("{:<16} {:<10} TOPOLOGY", "NAME", "RUNNING");
                for l in labs {
                    println!("{:<16} {:<10} {}", l.name, format!("{}/{}", l.running, l.containers), l.topology);
                }
            }
            Ok(())
        }
        Command::Logs { name, component, follow } => {
            let engine = Engine::connect().await?;
            let container = lab::component_container(&engine, &name, &component).await?;
            let mut lines = engine.logs(&container, None, follow);
            while let Some(chunk) = lines.next().await {
                print!("{}", chunk?);
            }
            Ok(())
        }
        Command::Export { what: Export::Logs { name, dir } } => {
            let engine = Engine::connect().await?;
            let files = lab::export_logs(&engine, &name, &dir).await?;
            eprintln!("wrote {} files to {}: {}", files.len(), dir.display(), files.join(", "));
            Ok(())
        }
        Command::Kubeconfig { name } => {
            let engine = Engine::connect().await?;
            let name = name.unwrap_or_else(|| DEFAULT_NAME.into());
            print!("{}", lab::kubeconfig(&engine, &name).await?.to_yaml());
            Ok(())
        }
        Command::Images { what: ImagesCommand::Build } => {
            let repo = Repo::locate()?;
            let engine = Engine::connect().await?;
            let started = std::time::Instant::now();
            let set = images::ensure(&engine, &repo, &Progress::auto()).await?;
            println!("{}", set.base);
            for tag in set.pod_images.values().chain(set.components.values()) {
                println!("{tag}");
            }
            eprintln!("images up to date in {:.1}s", started.elapsed().as_secs_f32());
            Ok(())
        }
        Command::Load { what: Load::Image { images, name } } => {
            let repo = Repo::locate()?;
            let engine = Engine::connect().await?;
            let nodes = load::load_images(&engine, &repo, &name, &images, &Progress::auto()).await?;
            eprintln!("loaded {} into {}", images.join(" "), nodes.join(", "));
            Ok(())
        }
        Command::Images { what: ImagesCommand::List } => {
            let engine = Engine::connect().await?;
            println!("{:<32} {:>8}", "IMAGE", "SIZE");
            for (tag, size, _) in engine.images().await? {
                println!("{tag:<32} {:>6}MB", size / 1_000_000);
            }
            Ok(())
        }
    }
}
