//! grpc-health-checking, as agnhost's: the standard gRPC health service
//! (tonic-health) on `--port`, and on `--http-port` an HTTP switch for
//! it: `/make-serving` and `/make-not-serving` set `--service`'s status
//! (the whole server's, "", by default), so a test can turn a gRPC probe
//! from passing to failing and back.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::http::{self, Reply};

#[derive(clap::Args, Clone)]
pub struct Options {
    /// The gRPC port.
    #[arg(long, default_value_t = 5000)]
    pub port: u16,
    /// The HTTP port of /make-serving and /make-not-serving.
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// The service whose status the switch sets ("" is the whole server).
    #[arg(long, default_value = "")]
    pub service: String,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status(&options.service, ServingStatus::Serving).await;
    let grpc = TcpListener::bind(("0.0.0.0", options.port)).await.map_err(|e| anyhow::anyhow!("listening on TCP port {}: {e}", options.port))?;
    println!("Started gRPC health server on port {}", grpc.local_addr()?.port());
    let grpc = tonic::transport::Server::builder().add_service(health).serve_with_incoming(TcpIncoming::from(grpc));
    let switch = TcpListener::bind(("0.0.0.0", options.http_port)).await.map_err(|e| anyhow::anyhow!("listening on TCP port {}: {e}", options.http_port))?;
    println!("Started HTTP server on port {}", switch.local_addr()?.port());
    let service = options.service.clone();
    let handle = move |request: Request<Incoming>, _peer: SocketAddr| set(reporter.clone(), service.clone(), request.uri().path().to_string());
    tokio::select! {
        result = grpc => result.map_err(|e| anyhow::anyhow!("serving gRPC: {e}")),
        result = http::serve_on(switch, handle) => result,
    }
}

async fn set(reporter: HealthReporter, service: String, path: String) -> Reply {
    let status = match path.as_str() {
        "/make-serving" => ServingStatus::Serving,
        "/make-not-serving" => ServingStatus::NotServing,
        other => return Reply::text(StatusCode::NOT_FOUND, format!("404 page not found: {other}\n")),
    };
    reporter.set_service_status(&service, status).await;
    println!("service {service:?} is now {status}");
    Reply::ok(format!("{status}\n"))
}
