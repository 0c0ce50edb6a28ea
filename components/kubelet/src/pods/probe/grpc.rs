//! gRPC probes: one call of the standard health protocol
//! (`grpc.health.v1.Health/Check`, tonic-health's client) over plain
//! HTTP/2, as upstream's prober makes it; success is `SERVING`. Like
//! upstream's, every problem is a failure, never a probe error, and the
//! texts are upstream's (they are what `kubectl describe` shows).
//!
//! Upstream dials with grpc-go's blocking dial, which keeps trying until
//! the probe's timeout: a refused connection is reported as a connect
//! timeout, after the timeout. The connection is retried here the same way.

use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Endpoint;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::settings::join_host_port;
use super::tracker::Probed;
use crate::pods::duration::go_seconds;

/// Between two connection attempts within one probe.
const REDIAL: Duration = Duration::from_millis(100);

pub async fn probe(host: &str, port: u16, service: &str, timeout: Duration) -> Probed {
    let address = join_host_port(host, port);
    let deadline = Instant::now() + timeout;
    let endpoint = match Endpoint::from_shared(format!("http://{address}")) {
        Ok(endpoint) => endpoint.user_agent(super::http::user_agent()).expect("a probe's user agent is a valid header"),
        Err(e) => return Probed::Failure(format!("error: failed to connect service at {address:?}: {e}")),
    };
    let connect_timeout =
        || Probed::Failure(format!("timeout: failed to connect service {address:?} within {}: context deadline exceeded", go_seconds(timeout)));
    let channel = loop {
        match tokio::time::timeout_at(deadline, endpoint.connect()).await {
            Ok(Ok(channel)) => break channel,
            Ok(Err(_)) if Instant::now() + REDIAL < deadline => tokio::time::sleep(REDIAL).await,
            _ => return connect_timeout(),
        }
    };
    let request = HealthCheckRequest { service: service.to_string() };
    let rpc_timeout = || Probed::Failure(format!("timeout: health rpc did not complete within {}", go_seconds(timeout)));
    match tokio::time::timeout_at(deadline, HealthClient::new(channel).check(request)).await {
        Err(_) => rpc_timeout(),
        Ok(Err(status)) => match status.code() {
            Code::Unimplemented => {
                Probed::Failure(format!("error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}", status.message()))
            }
            Code::DeadlineExceeded => rpc_timeout(),
            code => Probed::Failure(format!("error: health rpc probe failed: rpc error: code = {} desc = {}", go_code(code), status.message())),
        },
        Ok(Ok(response)) => match response.into_inner().status() {
            ServingStatus::Serving => Probed::Success("service healthy".into()),
            other => Probed::Failure(format!("service unhealthy (responded with {:?})", other.as_str_name())),
        },
    }
}

/// A status code as grpc-go names it in its errors.
fn go_code(code: Code) -> String {
    let name = match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::transport::server::TcpIncoming;
    use tonic::transport::Server;
    use tonic_health::server::HealthReporter;

    /// tonic-health's server on loopback, with "" serving; its port and reporter.
    async fn health_server() -> (u16, HealthReporter) {
        let (reporter, service) = tonic_health::server::health_reporter();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(Server::builder().add_service(service).serve_with_incoming(TcpIncoming::from(listener)));
        (port, reporter)
    }

    #[tokio::test]
    async fn serving_passes_and_not_serving_fails() {
        let (port, reporter) = health_server().await;
        assert_eq!(probe("127.0.0.1", port, "", Duration::from_secs(2)).await, Probed::Success("service healthy".into()));
        reporter.set_service_status("db", tonic_health::ServingStatus::NotServing).await;
        assert_eq!(probe("127.0.0.1", port, "db", Duration::from_secs(2)).await, Probed::Failure("service unhealthy (responded with \"NOT_SERVING\")".into()));
        assert_eq!(
            probe("127.0.0.1", port, "other", Duration::from_secs(2)).await,
            Probed::Failure("error: health rpc probe failed: rpc error: code = NotFound desc = service not registered".into()),
            "an unknown service is NotFound, as the health protocol says"
        );
    }

    #[tokio::test]
    async fn a_server_without_the_health_service_is_unimplemented() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Any other gRPC service: tonic answers Unimplemented for the rest.
        let (_, other) = tonic_health::server::health_reporter();
        let router = Server::builder()
            .add_service(tonic::service::interceptor::InterceptedService::new(other, |_req| Err(tonic::Status::unimplemented("no such method"))));
        tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
        assert_eq!(
            probe("127.0.0.1", port, "", Duration::from_secs(2)).await,
            Probed::Failure("error: this server does not implement the grpc health protocol (grpc.health.v1.Health): no such method".into())
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_timeout_after_the_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let started = std::time::Instant::now();
        let probed = probe("127.0.0.1", port, "", Duration::from_secs(1)).await;
        assert_eq!(probed, Probed::Failure(format!("timeout: failed to connect service \"127.0.0.1:{port}\" within 1s: context deadline exceeded")));
        assert!(started.elapsed() >= Duration::from_millis(800), "it kept dialing until the timeout, as grpc-go's blocking dial");
    }
}
