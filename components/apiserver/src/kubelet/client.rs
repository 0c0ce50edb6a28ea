//! How the apiserver reaches a kubelet: which address of its Node, which
//! port, and an HTTPS connection that presents the apiserver's kubelet-client
//! certificate (`--kubelet-client-certificate`/`--kubelet-client-key`) and
//! checks the kubelet's serving certificate against
//! `--kubelet-certificate-authority` when one is given. Failures are worded
//! as Go's dialer and TLS stack word them, since upstream passes those texts
//! to the client unchanged.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::CertificateError;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::status::ApiError;
use component_base::tls::AnyCertificate;

/// The kubelet's port when its Node does not report one (upstream's default).
pub const DEFAULT_PORT: u16 = 10250;

/// Upstream's default order for `--kubelet-preferred-address-types`.
pub const DEFAULT_ADDRESS_TYPES: &[&str] = &["Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP"];

/// How long each step of reaching a kubelet may take. Once a log is
/// streaming or an exec upgraded, the stream has no deadline: a followed
/// log stays open as long as both ends want it.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect: Go's net/http dialer gives up after 30 s.
    pub dial: Duration,
    /// TLS handshake: upstream's kubelet transport allows 10 s (Go's
    /// `TLSHandshakeTimeout` as client-go's transport defaults set it).
    pub tls_handshake: Duration,
    /// From sending the request to the kubelet's response head. Upstream
    /// sets none; a kubelet that takes the connection and never answers
    /// would then hold a log or exec request forever (they are
    /// long-running, so no request timeout ends them), so this uses the
    /// request timeout's default.
    pub response_head: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { dial: Duration::from_secs(30), tls_handshake: Duration::from_secs(10), response_head: Duration::from_secs(60) }
    }
}

/// Go's words for the handshake and response-head timeouts.
pub const TLS_HANDSHAKE_TIMEOUT: &str = "net/http: TLS handshake timeout";
pub const RESPONSE_HEAD_TIMEOUT: &str = "net/http: timeout awaiting response headers";

/// What the kubelet-client flags name.
#[derive(Debug, Clone, Default)]
pub struct KubeletClientFiles<'a> {
    pub certificate: Option<&'a Path>,
    pub key: Option<&'a Path>,
    pub certificate_authority: Option<&'a Path>,
    /// Node address types in the order they are tried; empty: upstream's default.
    pub preferred_address_types: Vec<String>,
    pub timeouts: Timeouts,
}

/// Connections to kubelets: one TLS configuration that checks the kubelet's
/// certificate (when a CA is configured) and one that does not, for
/// `insecureSkipTLSVerifyBackend`.
pub struct KubeletClient {
    checked: TlsConnector,
    unchecked: TlsConnector,
    address_types: Vec<String>,
    pub timeouts: Timeouts,
}

/// Where one kubelet listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletAddress {
    pub host: String,
    pub port: u16,
}

impl KubeletAddress {
    /// `host:port`, with an IPv6 address bracketed as in URLs.
    pub fn authority(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

impl KubeletClient {
    pub fn new(files: &KubeletClientFiles<'_>) -> Result<KubeletClient> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let identity = match (files.certificate, files.key) {
            (Some(cert), Some(key)) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                    .with_context(|| format!("cannot read {}", cert.display()))?
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("{} holds no valid PEM certificate", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("cannot read a private key from {}", key.display()))?;
                Some((certs, key))
            }
            (None, None) => None,
            _ => anyhow::bail!("--kubelet-client-certificate and --kubelet-client-key go together"),
        };
        let builder = || rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions();
        let finish = |b: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>| -> Result<rustls::ClientConfig> {
            let mut config = match &identity {
                Some((certs, key)) => b.with_client_auth_cert(certs.clone(), key.clone_key()).context("the kubelet client certificate and key do not match")?,
                None => b.with_no_client_auth(),
            };
            // Streams are proxied as HTTP/1.1 (upgrades do not exist in h2).
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(config)
        };
        let unchecked = finish(builder()?.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.clone()))))?;
        let checked = match files.certificate_authority {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("cannot read {}", ca.display()))? {
                    roots.add(cert.with_context(|| format!("{} holds no valid PEM certificate", ca.display()))?)?;
                }
                finish(builder()?.with_root_certificates(roots))?
            }
            // Without --kubelet-certificate-authority upstream does not
            // check kubelets' serving certificates either (the lab's
            // kubelets have none signed for the addresses they are
            // reached at yet).
            None => unchecked.clone(),
        };
        let address_types = if files.preferred_address_types.is_empty() {
            DEFAULT_ADDRESS_TYPES.iter().map(|s| s.to_string()).collect()
        } else {
            files.preferred_address_types.clone()
        };
        Ok(KubeletClient {
            checked: TlsConnector::from(Arc::new(checked)),
            unchecked: TlsConnector::from(Arc::new(unchecked)),
            address_types,
            timeouts: files.timeouts,
        })
    }

    /// The kubelet of a Node: its first address of the most preferred type
    /// (the `kubernetes.io/hostname` label standing in for a missing
    /// Hostname address, as upstream allows), and the port it reports.
    pub fn address(&self, node: &Value) -> Result<KubeletAddress, ApiError> {
        let addresses: Vec<(&str, &str)> = node
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .map(|list| list.iter().map(|a| (a["type"].as_str().unwrap_or(""), a["address"].as_str().unwrap_or(""))).collect())
            .unwrap_or_default();
        let port = node
            .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
            .and_then(Value::as_i64)
            .filter(|p| *p > 0 && *p <= i64::from(u16::MAX))
            .map_or(DEFAULT_PORT, |p| p as u16);
        for wanted in &self.address_types {
            if let Some((_, address)) = addresses.iter().find(|(kind, _)| kind == wanted) {
                return Ok(KubeletAddress { host: address.to_string(), port });
            }
            if wanted == "Hostname" {
                if let Some(label) = node.pointer("/metadata/labels/kubernetes.io~1hostname").and_then(Value::as_str).filter(|h| !h.is_empty()) {
                    return Ok(KubeletAddress { host: label.to_string(), port });
                }
            }
        }
        // Go's %v of []NodeAddress: [{InternalIP 10.0.0.1} {Hostname n1}].
        let known: Vec<String> = addresses.iter().map(|(kind, address)| format!("{{{kind} {address}}}")).collect();
        Err(ApiError::plain(format!("no preferred addresses found; known addresses: [{}]", known.join(" "))))
    }

    /// A TLS connection to the kubelet, or the reason there is none in the
    /// words of Go's dialer (`dial tcp 10.0.0.1:10250: connect: connection
    /// refused`).
    pub async fn connect(&self, to: &KubeletAddress, verify: bool) -> Result<TlsStream<TcpStream>, String> {
        let authority = to.authority();
        let addresses: Vec<std::net::SocketAddr> = match tokio::net::lookup_host((to.host.as_str(), to.port)).await {
            Ok(found) => found.collect(),
            Err(_) => return Err(format!("dial tcp: lookup {}: no such host", to.host)),
        };
        let mut last = format!("dial tcp: lookup {}: no such host", to.host);
        let mut tcp = None;
        for address in addresses {
            match tokio::time::timeout(self.timeouts.dial, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => {
                    tcp = Some(stream);
                    break;
                }
                Ok(Err(e)) => last = format!("dial tcp {authority}: connect: {}", os_error_text(&e)),
                Err(_) => last = format!("dial tcp {authority}: i/o timeout"),
            }
        }
        let tcp = tcp.ok_or(last)?;
        let _ = tcp.set_nodelay(true);
        let name = match to.host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(to.host.clone()).map_err(|_| format!("tls: invalid server name {:?}", to.host))?,
        };
        let connector = if verify { &self.checked } else { &self.unchecked };
        match tokio::time::timeout(self.timeouts.tls_handshake, connector.connect(name, tcp)).await {
            Ok(connected) => connected.map_err(|e| io_error_text(&e)),
            Err(_) => Err(TLS_HANDSHAKE_TIMEOUT.into()),
        }
    }
}

/// Go's wording of an OS error: the lower-case strerror without Rust's
/// "(os error N)" suffix.
fn os_error_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

/// The text of an I/O error on a kubelet connection, naming TLS failures as
/// Go's crypto/tls does where the two map one to one.
pub fn io_error_text(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(tls) => tls_error_text(tls),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => "EOF".into(),
        None => os_error_text(e),
    }
}

fn tls_error_text(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "tls: failed to verify certificate: x509: certificate signed by unknown authority".into()
        }
        rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            "tls: failed to verify certificate: x509: certificate has expired or is not yet valid".into()
        }
        rustls::Error::InvalidCertificate(other) => format!("tls: failed to verify certificate: {other:?}"),
        rustls::Error::AlertReceived(alert) => format!("remote error: tls: {}", alert_text(*alert)),
        other => format!("tls: {other}"),
    }
}

/// Go's name of a TLS alert.
fn alert_text(alert: rustls::AlertDescription) -> String {
    use rustls::AlertDescription as A;
    match alert {
        A::BadCertificate => "bad certificate".into(),
        A::UnknownCA => "unknown certificate authority".into(),
        A::CertificateRequired => "certificate required".into(),
        A::HandshakeFailure => "handshake failure".into(),
        // Others as words: CertificateExpired -> "certificate expired".
        other => {
            let name = format!("{other:?}");
            let mut words = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_uppercase() && i > 0 {
                    words.push(' ');
                }
                words.extend(c.to_lowercase());
            }
            words
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn client(types: &[&str]) -> KubeletClient {
        KubeletClient::new(&KubeletClientFiles { preferred_address_types: types.iter().map(|s| s.to_string()).collect(), ..Default::default() }).unwrap()
    }

    #[test]
    fn the_preferred_address_type_wins_over_the_order_of_the_list() {
        let node = json!({"status": {
            "addresses": [{"type": "ExternalIP", "address": "1.2.3.4"}, {"type": "InternalIP", "address": "10.0.0.7"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10555}},
        }});
        assert_eq!(client(&[]).address(&node).unwrap(), KubeletAddress { host: "10.0.0.7".into(), port: 10555 });
        assert_eq!(client(&["ExternalIP", "InternalIP"]).address(&node).unwrap().host, "1.2.3.4");
    }

    #[test]
    fn hostname_label_stands_in_and_the_port_defaults() {
        let node = json!({"metadata": {"labels": {"kubernetes.io/hostname": "n1"}}, "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.7"}]}});
        assert_eq!(client(&[]).address(&node).unwrap(), KubeletAddress { host: "n1".into(), port: 10250 });
    }

    #[test]
    fn no_address_of_a_wanted_type_lists_the_known_ones() {
        let node = json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.7"}]}});
        let e = client(&["ExternalIP"]).address(&node).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (500, "no preferred addresses found; known addresses: [{InternalIP 10.0.0.7}]"));
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(KubeletAddress { host: "fd00::1".into(), port: 10250 }.authority(), "[fd00::1]:10250");
    }

    #[test]
    fn tls_alerts_read_as_go_names_them() {
        let e = rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate);
        assert_eq!(tls_error_text(&e), "remote error: tls: bad certificate");
        assert_eq!(
            tls_error_text(&rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)),
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
        );
    }
}
