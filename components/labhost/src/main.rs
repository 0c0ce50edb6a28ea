//! labhost: kubelab's test workload, in the spirit of Kubernetes' agnhost.
//! One small binary with a subcommand per job: `netexec` (the default), an
//! HTTP and UDP server that answers with the pod's host name, the client's
//! address, echoes, and dials others; `serve-hostname`; `pause`; `dial`;
//! `dig`, one DNS question and its whole answer; `resolve`, which waits
//! for names to resolve and says when; `grpc-health-checking`, the gRPC
//! health service with an HTTP switch.

mod dial;
mod dig;
mod grpc_health;
mod http;
mod netexec;
mod resolve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(name = "labhost", version, about = "kubelab's test workload (netexec, serve-hostname, grpc-health-checking, pause, dial, dig, resolve)")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// HTTP (/hostname, /clientip, /echo, /env, /healthz, /exit, /dial) and a UDP responder.
    Netexec(netexec::Options),
    /// An HTTP server answering every request with the host name.
    ServeHostname {
        #[arg(long, default_value_t = 9376)]
        port: u16,
    },
    /// The gRPC health service, with /make-serving and /make-not-serving over HTTP.
    GrpcHealthChecking(grpc_health::Options),
    /// Sleep until SIGTERM or SIGINT, then exit 0.
    Pause,
    /// Send one request to a netexec (or serve-hostname) server and print its answer.
    Dial(dial::Options),
    /// Ask one DNS question and print the whole answer with its TTLs, as dig does.
    Dig(dig::Options),
    /// Wait for each name to resolve through the pod's resolver; print when (Unix ms).
    Resolve(resolve::Options),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Netexec(netexec::Options::default()));
    let command = match command {
        Command::Dial(options) => return dial::run(options).await,
        Command::Dig(options) => return dig::run(options).await,
        Command::Resolve(options) => {
            resolve::run(options);
            return ExitCode::SUCCESS;
        }
        other => other,
    };
    // Installed before anything says it is ready, so a SIGTERM right after is never missed.
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        eprintln!("labhost: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let work = async {
        match command {
            Command::Netexec(options) => netexec::run(options).await,
            Command::ServeHostname { port } => http::serve(port, http::hostname_only).await,
            Command::GrpcHealthChecking(options) => grpc_health::run(options).await,
            Command::Pause => {
                println!("Paused until SIGTERM or SIGINT");
                std::future::pending().await
            }
            Command::Dial(_) | Command::Dig(_) | Command::Resolve(_) => unreachable!("handled above"),
        }
    };
    tokio::select! {
        result = work => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("labhost: {e:#}");
                ExitCode::FAILURE
            }
        },
        signal = async { tokio::select! { _ = term.recv() => "SIGTERM", _ = int.recv() => "SIGINT" } } => {
            // Pods are stopped with SIGTERM; a workload that exits 0 on it is one that shut down cleanly.
            println!("received {signal}, exiting");
            ExitCode::SUCCESS
        }
    }
}

/// The host name, which in a pod is the pod's name.
pub(crate) fn hostname() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}
