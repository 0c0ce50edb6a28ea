//! `/exec`: a command in a running container, over the stream protocol
//! kubectl asks for. The apiserver passes kubectl's upgrade through, so the
//! kubelet speaks WebSocket `v5.channel.k8s.io` (or v4) itself: every
//! binary message starts with its channel (0 stdin, 1 stdout, 2 stderr,
//! 3 error: the final Status, 4 resize: `{"Width":..,"Height":..}`), and
//! in v5 channel 255 closes a stream (`[255, 0]`: stdin is done).

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{text, Ctx, Params};

/// The protocols spoken, best first.
const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

pub(crate) async fn exec(
    State(ctx): State<Ctx>,
    axum::extract::Path((ns, pod, container)): axum::extract::Path<(String, String, String)>,
    query: Params,
    req: Request,
) -> Response {
    start(ctx, ns, pod, container, query.0, req).await
}

pub(crate) async fn exec_with_uid(
    State(ctx): State<Ctx>,
    axum::extract::Path((ns, pod, _uid, container)): axum::extract::Path<(String, String, String, String)>,
    query: Params,
    req: Request,
) -> Response {
    start(ctx, ns, pod, container, query.0, req).await
}

struct Session {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

async fn start(ctx: Ctx, ns: String, pod: String, container: String, query: Vec<(String, String)>, mut req: Request) -> Response {
    let flag = |k: &str| query.iter().any(|(key, v)| key == k && (v == "true" || v == "1"));
    let session = Session {
        command: query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect(),
        stdin: flag("stdin") || flag("input"),
        stdout: flag("stdout") || flag("output"),
        stderr: flag("stderr") || flag("error"),
        tty: flag("tty"),
    };
    if session.command.is_empty() {
        return text(StatusCode::BAD_REQUEST, "you must specify at least 1 command");
    }
    let Some(shared) = ctx.pods.find(&ns, &pod) else {
        return text(StatusCode::NOT_FOUND, format!("pod {ns}/{pod} not found"));
    };
    let id = {
        let s = shared.lock().expect("not poisoned");
        match s
            .observed
            .containers
            .get(&container)
            .or_else(|| s.observed.init.get(&container))
            .and_then(|o| o.current.as_ref())
            .filter(|a| a.running().is_some())
        {
            Some(a) => a.id.clone(),
            None => return text(StatusCode::BAD_REQUEST, format!("container {container} is not running in pod {pod}")),
        }
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let offered = header("sec-websocket-protocol");
    let Some(protocol) = PROTOCOLS.iter().find(|p| offered.split(',').any(|o| o.trim() == **p)).copied() else {
        // kubectl falls back to SPDY on a refused upgrade, which this
        // kubelet does not speak; the message says what it does.
        return text(StatusCode::BAD_REQUEST, format!("kubelab's kubelet speaks {} over WebSocket; offered: {offered:?}", PROTOCOLS.join(", ")));
    };
    if !header("upgrade").eq_ignore_ascii_case("websocket") {
        return text(StatusCode::BAD_REQUEST, "exec needs a WebSocket upgrade");
    }
    let command = match ctx.kubelet.runtime.exec_command(&id, &session.command, session.tty) {
        Ok(c) => c,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let accept = derive_accept_key(header("sec-websocket-key").as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    let v5 = protocol.starts_with("v5");
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        if let Err(e) = serve(ws, command, session, v5).await {
            tracing::debug!("exec session: {e:#}");
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept)
        .header("sec-websocket-protocol", protocol)
        .body(axum::body::Body::empty())
        .expect("a valid response")
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

async fn serve(ws: Ws, command: std::process::Command, session: Session, v5: bool) -> anyhow::Result<()> {
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(16);
    let mut terminal: Option<OwnedFd> = None;
    let mut stdin_writer: Option<Box<dyn tokio::io::AsyncWrite + Unpin + Send>> = None;
    let mut child = if session.tty {
        let pty = nix::pty::openpty(None, None)?;
        let slave = std::fs::File::from(pty.slave);
        command.stdin(Stdio::from(slave.try_clone()?)).stdout(Stdio::from(slave.try_clone()?)).stderr(Stdio::from(slave));
        let child = command.spawn()?;
        // Our copies of the terminal's far end go, so its near end ends
        // when the command's side closes.
        drop(command);
        let master = std::fs::File::from(pty.master);
        let reader = tokio::fs::File::from_std(master.try_clone()?);
        spawn_reader(reader, STDOUT, out_tx.clone());
        if session.stdin {
            stdin_writer = Some(Box::new(tokio::fs::File::from_std(master.try_clone()?)));
        }
        terminal = Some(master.into());
        child
    } else {
        command.stdin(if session.stdin { Stdio::piped() } else { Stdio::null() });
        command.stdout(if session.stdout { Stdio::piped() } else { Stdio::null() });
        command.stderr(if session.stderr { Stdio::piped() } else { Stdio::null() });
        let mut child = command.spawn()?;
        if let Some(out) = child.stdout.take() {
            spawn_reader(out, STDOUT, out_tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            spawn_reader(err, STDERR, out_tx.clone());
        }
        if let Some(stdin) = child.stdin.take() {
            stdin_writer = Some(Box::new(stdin));
        }
        child
    };
    drop(out_tx);

    let mut output_open = true;
    let status = loop {
        tokio::select! {
            chunk = out_rx.recv(), if output_open => match chunk {
                Some((channel, bytes)) => sink.send(Message::binary([&[channel][..], &bytes].concat())).await?,
                None => output_open = false,
            },
            message = source.next() => match message.map(|m| m.map(text_as_binary)) {
                Some(Ok(Message::Binary(data))) if !data.is_empty() => match data[0] {
                    STDIN => if let Some(w) = stdin_writer.as_mut() { let _ = w.write_all(&data[1..]).await; },
                    RESIZE => if let Some(t) = &terminal { resize(t, &data[1..]); },
                    CLOSE if v5 && data.get(1) == Some(&STDIN) => stdin_writer = None,
                    _ => {}
                },
                Some(Ok(Message::Ping(p))) => sink.send(Message::Pong(p)).await?,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // The client went away: the command goes with it.
                    let _ = child.kill().await;
                    return Ok(());
                }
                Some(Ok(_)) => {}
            },
            status = child.wait(), if !output_open || session.tty => break status?,
        }
    };
    // A terminal's output may still be buffered in the pty: drain it.
    while let Ok(Some((channel, bytes))) = tokio::time::timeout(std::time::Duration::from_millis(50), out_rx.recv()).await {
        sink.send(Message::binary([&[channel][..], &bytes].concat())).await?;
    }
    let code = status.code().unwrap_or(1);
    sink.send(Message::binary([&[ERROR][..], status_json(code).as_bytes()].concat())).await?;
    sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await?;
    // Until the client's close answers ours (or it hangs up).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async { while let Some(Ok(_)) = source.next().await {} }).await;
    Ok(())
}

/// A text frame as the binary one it stands for: the Python client sends
/// stdin as text (its channel byte the first character), and upstream
/// reads both opcodes alike.
fn text_as_binary(message: Message) -> Message {
    match message {
        Message::Text(text) => Message::Binary(bytes::Bytes::from(text.as_str().as_bytes().to_vec())),
        other => other,
    }
}

fn spawn_reader(mut reader: impl tokio::io::AsyncRead + Unpin + Send + 'static, channel: u8, tx: tokio::sync::mpsc::Sender<(u8, Vec<u8>)>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((channel, buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
}

fn resize(terminal: &OwnedFd, json: &[u8]) {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    if let Ok(size) = serde_json::from_slice::<Size>(json) {
        let ws = libc_winsize(size.height, size.width);
        // SAFETY: TIOCSWINSZ reads a winsize from the pointer given.
        unsafe { nix::libc::ioctl(terminal.as_raw_fd(), nix::libc::TIOCSWINSZ, &ws) };
    }
}

fn libc_winsize(rows: u16, cols: u16) -> nix::libc::winsize {
    nix::libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 }
}

/// The final Status on the error channel, as upstream's kubelet writes it.
pub fn status_json(code: i32) -> String {
    if code == 0 {
        return r#"{"metadata":{},"status":"Success"}"#.to_string();
    }
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit status {code}"),
        "reason": "NonZeroExitCode",
        "details": { "causes": [{ "reason": "ExitCode", "message": code.to_string() }] }
    })
    .to_string()
}
