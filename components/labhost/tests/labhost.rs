//! labhost's subcommands, run as the binary on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

/// A labhost process, killed when dropped.
struct Labhost {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Labhost {
    fn start(args: &[&str]) -> Labhost {
        let mut child = Command::new(env!("CARGO_BIN_EXE_labhost"))
            .args(args)
            .env("LABHOST_TEST", "present")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("labhost starts");
        let stdout = child.stdout.take().expect("piped");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Labhost { child, lines }
    }

    /// The port of the first output line "Started <what> server on port N".
    fn port(&self, what: &str) -> u16 {
        self.line(&format!("Started {what} server on port ")).trim().parse().expect("a port number")
    }

    /// The rest of the first output line that starts with `prefix`.
    fn line(&self, prefix: &str) -> String {
        let until = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => match line.strip_prefix(prefix) {
                    Some(rest) => return rest.to_string(),
                    None => seen.push(line),
                },
                Err(_) => break,
            }
        }
        panic!("labhost did not say {prefix:?} within {DEADLINE:?}; it said {seen:?}");
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let until = Instant::now() + DEADLINE;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("labhost (pid {}) was still running {DEADLINE:?} later", self.child.id());
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }
}

impl Drop for Labhost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET over a fresh connection: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end in {text:?}"));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

fn udp(port: u16, message: &str) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    socket.send_to(message.as_bytes(), ("127.0.0.1", port)).unwrap();
    let mut buffer = [0u8; 2048];
    let n = socket.recv(&mut buffer).unwrap();
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

fn hostname() -> String {
    nix::unistd::gethostname().unwrap().into_string().unwrap()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
}

#[test]
fn netexec_answers_as_agnhost() {
    let labhost = Labhost::start(&["netexec", "--http-port", "0", "--udp-port", "0"]);
    let udp_port = labhost.port("UDP");
    let http = labhost.port("HTTP");
    assert_eq!(get(http, "/hostname"), (200, hostname()));
    let (status, client) = get(http, "/clientip");
    assert_eq!(status, 200);
    assert!(client.starts_with("127.0.0.1:") && client[10..].parse::<u16>().is_ok(), "{client}");
    assert_eq!(get(http, "/echo?msg=hello%20there"), (200, "hello there".into()));
    assert_eq!(get(http, "/echo?msg=gone&code=404"), (404, "gone".into()));
    assert!(get(http, "/env").1.lines().any(|l| l == "LABHOST_TEST=present"));
    assert_eq!(get(http, "/healthz").0, 200);
    assert_eq!(get(http, "/nothing").0, 404);

    assert_eq!(udp(udp_port, "hostname"), hostname());
    assert_eq!(udp(udp_port, "echo Hi There"), "hi there", "lower-cased, as agnhost does");
    assert!(udp(udp_port, "clientip").starts_with("127.0.0.1:"));

    let dial = |query: String| {
        let (status, body) = get(http, &format!("/dial?{query}"));
        assert_eq!(status, 200, "{body}");
        json(&body)
    };
    let h = hostname();
    assert_eq!(dial(format!("request=hostname&protocol=http&host=127.0.0.1&port={http}&tries=2")), serde_json::json!({"responses": [h, h]}));
    assert_eq!(dial(format!("request=hostname&protocol=udp&host=127.0.0.1&port={udp_port}&tries=1")), serde_json::json!({"responses": [h]}));
    assert_eq!(dial(format!("request=echo%20x&protocol=udp&host=localhost&port={udp_port}")), serde_json::json!({"responses": ["x"]}));

    // A closed port: errors only, one per try.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let failed = dial(format!("request=hostname&protocol=http&host=127.0.0.1&port={closed}&tries=3"));
    assert_eq!(failed.as_object().unwrap().keys().collect::<Vec<_>>(), vec!["errors"], "{failed}");
    assert_eq!(failed["errors"].as_array().unwrap().len(), 3, "{failed}");

    assert_eq!(get(http, "/dial?request=hostname&protocol=sctp&host=127.0.0.1&port=1").0, 400);
    assert_eq!(get(http, "/dial?protocol=http&host=127.0.0.1&port=1").0, 400);
    assert_eq!(get(http, "/dial?request=hostname&host=127.0.0.1&port=1&tries=x").0, 400);
}

#[test]
fn exit_answers_then_exits_with_the_code() {
    let mut labhost = Labhost::start(&["netexec", "--http-port", "0", "--udp-port", "0"]);
    let http = labhost.port("HTTP");
    assert_eq!(get(http, "/exit?code=300").0, 200, "an out-of-range code is refused, the server stays");
    assert_eq!(get(http, "/exit?code=3"), (200, String::new()));
    assert_eq!(labhost.wait_exit().code(), Some(3));
}

#[test]
fn sigterm_ends_netexec_and_pause_with_zero() {
    for args in [&["netexec", "--http-port", "0", "--udp-port", "0"][..], &["pause"][..]] {
        let mut labhost = Labhost::start(args);
        // Both say they are ready once their signal handlers are in place.
        labhost.line(if args[0] == "netexec" { "Started HTTP server" } else { "Paused" });
        let sent = Instant::now();
        labhost.signal(nix::sys::signal::Signal::SIGTERM);
        assert_eq!(labhost.wait_exit().code(), Some(0), "{args:?}");
        assert!(sent.elapsed() < Duration::from_secs(2), "{args:?} took {:?} to exit", sent.elapsed());
    }
}

#[test]
fn serve_hostname_and_dial() {
    let server = Labhost::start(&["serve-hostname", "--port", "0"]);
    let port = server.port("HTTP");
    assert_eq!(get(port, "/anything"), (200, hostname()));

    let dial = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_labhost")).arg("dial").args(args).output().unwrap();
    let answered = dial(&["--host", "127.0.0.1", "--port", &port.to_string()]);
    assert!(answered.status.success(), "{}", String::from_utf8_lossy(&answered.stderr));
    assert_eq!(String::from_utf8_lossy(&answered.stdout).trim_end(), hostname());

    let netexec = Labhost::start(&["netexec", "--http-port", "0", "--udp-port", "0"]);
    let udp_port = netexec.port("UDP");
    let echoed = dial(&["--host", "127.0.0.1", "--port", &udp_port.to_string(), "--protocol", "udp", "--request", "echo ok"]);
    assert_eq!(String::from_utf8_lossy(&echoed.stdout).trim_end(), "ok");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let refused = dial(&["--host", "127.0.0.1", "--port", &closed.to_string()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("connecting to 127.0.0.1"), "{}", String::from_utf8_lossy(&refused.stderr));
}
