//! tcpSocket probes: success is a connection made within the timeout
//! (closed at once). Failures read as Go's dialer writes them, since
//! upstream's events carry its text.

use std::time::Duration;

use tokio::net::TcpStream;

use super::settings::join_host_port;
use super::tracker::Probed;

pub async fn probe(host: &str, port: u16, timeout: Duration) -> Probed {
    let address = join_host_port(host, port);
    match tokio::time::timeout(timeout, connect(&address)).await {
        Ok(Ok(_)) => Probed::Success(String::new()),
        Ok(Err(e)) => Probed::Failure(e),
        Err(_) => Probed::Failure(format!("dial tcp {address}: i/o timeout")),
    }
}

/// A connection to `host:port`, or Go's error text for why not.
pub async fn connect(address: &str) -> Result<TcpStream, String> {
    TcpStream::connect(address).await.map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
            std::io::ErrorKind::HostUnreachable => "connect: no route to host".to_string(),
            std::io::ErrorKind::NetworkUnreachable => "connect: network is unreachable".to_string(),
            _ => e.to_string(),
        };
        format!("dial tcp {address}: {why}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listening_port_passes_and_a_closed_one_fails_as_go_says() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(probe("127.0.0.1", port, Duration::from_secs(1)).await, Probed::Success(String::new()));
        drop(listener);
        assert_eq!(probe("127.0.0.1", port, Duration::from_secs(1)).await, Probed::Failure(format!("dial tcp 127.0.0.1:{port}: connect: connection refused")));
    }
}
