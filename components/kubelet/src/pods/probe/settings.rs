//! A probe as the kubelet runs it: its kind, its timing with upstream's
//! defaults, and its handler with the target resolved (host, port by
//! number or container port name). Pure, so every default is tested here.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::pods::config::expand;

/// The three probes upstream's kubelet runs, in the words of its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    /// As event messages start: "Liveness probe failed: ...".
    pub fn title(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }

    /// As the Killing event names it: "failed liveness probe".
    pub fn lower(self) -> &'static str {
        match self {
            Kind::Liveness => "liveness",
            Kind::Readiness => "readiness",
            Kind::Startup => "startup",
        }
    }

    /// The container's probe of this kind, if it has one.
    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            Kind::Liveness => c.liveness_probe.as_ref(),
            Kind::Readiness => c.readiness_probe.as_ref(),
            Kind::Startup => c.startup_probe.as_ref(),
        }
    }
}

/// A probe's timing. The apiserver defaults these upstream; a value left
/// out (or not positive) gets the same default here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    /// The probe's own terminationGracePeriodSeconds, used over the pod's
    /// when this probe kills the container (liveness and startup only:
    /// upstream refuses it on readiness probes).
    pub termination_grace: Option<Duration>,
}

fn positive(value: Option<i32>, default: u32) -> u32 {
    value.filter(|v| *v > 0).map(|v| v as u32).unwrap_or(default)
}

impl Settings {
    pub fn of(kind: Kind, p: &Probe) -> Settings {
        let seconds = |v: u32| Duration::from_secs(v as u64);
        Settings {
            initial_delay: seconds(p.initial_delay_seconds.unwrap_or(0).max(0) as u32),
            period: seconds(positive(p.period_seconds, 10)),
            timeout: seconds(positive(p.timeout_seconds, 1)),
            // Liveness and startup probes must have 1 (validation upstream).
            success_threshold: if kind == Kind::Readiness { positive(p.success_threshold, 1) } else { 1 },
            failure_threshold: positive(p.failure_threshold, 3),
            termination_grace: if kind == Kind::Readiness { None } else { p.termination_grace_period_seconds.map(|s| Duration::from_secs(s.max(0) as u64)) },
        }
    }
}

/// An HTTP GET as the probe asks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGet {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl HttpGet {
    /// `host:port`, IPv6 hosts in brackets (Go's net.JoinHostPort).
    pub fn authority(&self) -> String {
        join_host_port(&self.host, self.port)
    }

    pub fn url(&self) -> String {
        format!("{}://{}{}", if self.https { "https" } else { "http" }, self.authority(), self.path)
    }
}

/// What a probe does, its target resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    Http(HttpGet),
    Tcp {
        host: String,
        port: u16,
    },
    Exec(Vec<String>),
    /// The health protocol's Check of `service` ("" for the whole server)
    /// at the pod's IP (a gRPC probe has no host of its own).
    Grpc {
        host: String,
        port: u16,
        service: String,
    },
}

pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The probe's handler for container `c` of a pod at `pod_ip`; an error
/// (no handler, a port name the container does not have) is the probe's
/// error, which upstream reports and counts neither way.
pub fn handler(p: &Probe, c: &Container, pod_ip: &str) -> Result<Handler, String> {
    let host = |given: Option<&String>| given.filter(|h| !h.is_empty()).cloned().unwrap_or_else(|| pod_ip.to_string());
    if let Some(get) = &p.http_get {
        let path = get.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into());
        return Ok(Handler::Http(HttpGet {
            https: get.scheme.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("https")),
            host: host(get.host.as_ref()),
            port: port(&get.port, c)?,
            path: if path.starts_with('/') { path } else { format!("/{path}") },
            headers: get.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect(),
        }));
    }
    if let Some(tcp) = &p.tcp_socket {
        return Ok(Handler::Tcp { host: host(tcp.host.as_ref()), port: port(&tcp.port, c)? });
    }
    if let Some(exec) = &p.exec {
        // As upstream: `$(VAR)` from the container's static env only (no
        // valueFrom, no image env), since the probe runs outside its shell.
        let env: Vec<(String, String)> =
            c.env.iter().flatten().filter(|e| e.value_from.is_none()).map(|e| (e.name.clone(), e.value.clone().unwrap_or_default())).collect();
        return Ok(Handler::Exec(exec.command.iter().flatten().map(|arg| expand(arg, &env)).collect()));
    }
    if let Some(grpc) = &p.grpc {
        let port = u16::try_from(grpc.port).ok().filter(|p| *p > 0).ok_or_else(|| format!("invalid port number: {}", grpc.port))?;
        return Ok(Handler::Grpc { host: pod_ip.to_string(), port, service: grpc.service.clone().unwrap_or_default() });
    }
    Err("missing probe handler".into())
}

/// A port by number, or by the name of one of the container's ports
/// (then, as upstream's last try, a number written as a string).
fn port(given: &IntOrString, c: &Container) -> Result<u16, String> {
    let number = match given {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match c.ports.iter().flatten().find(|p| p.name.as_deref() == Some(name.as_str())) {
            Some(p) => p.container_port,
            None => name.parse().map_err(|_| format!("port {name} not found"))?,
        },
    };
    u16::try_from(number).ok().filter(|p| *p > 0).ok_or_else(|| format!("invalid port number: {number}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, EnvVar, ExecAction, GRPCAction, HTTPGetAction, HTTPHeader, TCPSocketAction};

    fn container() -> Container {
        Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort { name: Some("http".into()), container_port: 8080, ..Default::default() }]),
            ..Default::default()
        }
    }

    #[test]
    fn timing_has_upstreams_defaults() {
        let s = Settings::of(Kind::Liveness, &Probe::default());
        assert_eq!(
            s,
            Settings {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
                termination_grace: None,
            }
        );
        let p = Probe { success_threshold: Some(3), termination_grace_period_seconds: Some(5), ..Default::default() };
        assert_eq!(Settings::of(Kind::Readiness, &p).success_threshold, 3);
        assert_eq!(Settings::of(Kind::Readiness, &p).termination_grace, None, "readiness probes kill nothing");
        assert_eq!(Settings::of(Kind::Liveness, &p).success_threshold, 1);
        assert_eq!(Settings::of(Kind::Startup, &p).termination_grace, Some(Duration::from_secs(5)));
    }

    #[test]
    fn http_gets_go_to_the_pod_ip_and_named_ports() {
        let p = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("http".into()),
                path: Some("healthz?full=1".into()),
                http_headers: Some(vec![HTTPHeader { name: "X-Probe".into(), value: "yes".into() }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let Handler::Http(get) = handler(&p, &container(), "10.244.1.5").unwrap() else { panic!("not http") };
        assert_eq!(get.url(), "http://10.244.1.5:8080/healthz?full=1");
        assert_eq!(get.headers, vec![("X-Probe".to_string(), "yes".to_string())]);
        let p = Probe {
            http_get: Some(HTTPGetAction { port: IntOrString::Int(443), scheme: Some("HTTPS".into()), host: Some("fd00::1".into()), ..Default::default() }),
            ..Default::default()
        };
        let Handler::Http(get) = handler(&p, &container(), "10.244.1.5").unwrap() else { panic!("not http") };
        assert_eq!(get.url(), "https://[fd00::1]:443/");
    }

    #[test]
    fn ports_resolve_as_upstream_resolves_them() {
        let tcp = |port: IntOrString| Probe { tcp_socket: Some(TCPSocketAction { port, host: None }), ..Default::default() };
        assert_eq!(handler(&tcp(IntOrString::String("9000".into())), &container(), "10.0.0.1"), Ok(Handler::Tcp { host: "10.0.0.1".into(), port: 9000 }));
        assert_eq!(handler(&tcp(IntOrString::String("grpc".into())), &container(), "10.0.0.1"), Err("port grpc not found".into()));
        assert_eq!(handler(&tcp(IntOrString::Int(70000)), &container(), "10.0.0.1"), Err("invalid port number: 70000".into()));
        let exec = Probe { exec: Some(ExecAction { command: Some(vec!["cat".into(), "/tmp/ready".into()]) }), ..Default::default() };
        assert_eq!(handler(&exec, &container(), "10.0.0.1"), Ok(Handler::Exec(vec!["cat".into(), "/tmp/ready".into()])));
        assert!(handler(&Probe::default(), &container(), "10.0.0.1").is_err());
    }

    #[test]
    fn grpc_probes_call_the_pod_ip() {
        let grpc = |port: i32, service: Option<&str>| Probe { grpc: Some(GRPCAction { port, service: service.map(str::to_string) }), ..Default::default() };
        assert_eq!(handler(&grpc(5000, None), &container(), "10.0.0.1"), Ok(Handler::Grpc { host: "10.0.0.1".into(), port: 5000, service: String::new() }));
        assert_eq!(handler(&grpc(9000, Some("db")), &container(), "10.0.0.1"), Ok(Handler::Grpc { host: "10.0.0.1".into(), port: 9000, service: "db".into() }));
        assert_eq!(handler(&grpc(0, None), &container(), "10.0.0.1"), Err("invalid port number: 0".into()));
    }

    #[test]
    fn exec_commands_expand_the_static_env() {
        let mut c = container();
        c.env = Some(vec![
            EnvVar { name: "FILE".into(), value: Some("/tmp/ready".into()), ..Default::default() },
            EnvVar { name: "FROM".into(), value_from: Some(Default::default()), ..Default::default() },
        ]);
        let exec = Probe { exec: Some(ExecAction { command: Some(vec!["cat".into(), "$(FILE)".into(), "$(FROM)".into()]) }), ..Default::default() };
        assert_eq!(handler(&exec, &c, "10.0.0.1"), Ok(Handler::Exec(vec!["cat".into(), "/tmp/ready".into(), "$(FROM)".into()])));
    }
}
