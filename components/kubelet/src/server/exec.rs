//! `/exec`: a command in a running container, over the stream protocol
//! kubectl asks for (see [`super::streams`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use super::streams::{
    finish, on_channel, running_container, terminal_size, text_as_binary, Streams, Target, TargetPath, Upgrade, Ws, CLOSE, RESIZE, STDERR, STDIN, STDOUT,
};
use super::{text, Ctx, Params};

/// `/exec/NS/POD/CONTAINER`, or with the pod's uid before CONTAINER.
pub(crate) async fn exec(State(ctx): State<Ctx>, target: TargetPath, query: Params, req: Request) -> Response {
    let Target { ns, pod, container } = Target::from(target);
    start(ctx, ns, pod, container, query.0, req).await
}

async fn start(ctx: Ctx, ns: String, pod: String, container: String, query: Vec<(String, String)>, mut req: Request) -> Response {
    let command_line: Vec<String> = query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    let streams = Streams::from_query(&query);
    if command_line.is_empty() {
        return text(StatusCode::BAD_REQUEST, "you must specify at least 1 command");
    }
    let id = match running_container(&ctx, &ns, &pod, &container) {
        Ok(id) => id,
        Err(refused) => return refused.answer(),
    };
    let upgrade = match Upgrade::accept(&mut req, "exec") {
        Ok(u) => u,
        Err(refused) => return refused.answer(),
    };
    let command = match ctx.kubelet.runtime.exec_command(&id, &command_line, streams.tty) {
        Ok(c) => c,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let v5 = upgrade.v5();
    upgrade.run(move |ws| serve(ws, command, streams, v5))
}

async fn serve(ws: Ws, command: std::process::Command, command_streams: Streams, v5: bool) -> anyhow::Result<()> {
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(16);
    let mut terminal: Option<OwnedFd> = None;
    let mut stdin_writer: Option<Box<dyn tokio::io::AsyncWrite + Unpin + Send>> = None;
    let mut child = if command_streams.tty {
        // The command's terminal is made inside the container (runtime::
        // terminal) and comes back over this socket; what the exec process
        // says before it has one (why it cannot run) comes on its stderr.
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        command.stdin(Stdio::from(OwnedFd::from(theirs))).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn()?;
        drop(command);
        if let Some(err) = child.stderr.take() {
            spawn_reader(err, STDOUT, out_tx.clone());
        }
        let master = tokio::task::spawn_blocking(move || runtime::terminal::receive(ours.as_raw_fd())).await??;
        if let Some(master) = master {
            let master = std::fs::File::from(master);
            spawn_reader(tokio::fs::File::from_std(master.try_clone()?), STDOUT, out_tx.clone());
            if command_streams.stdin {
                stdin_writer = Some(Box::new(tokio::fs::File::from_std(master.try_clone()?)));
            }
            terminal = Some(master.into());
        }
        child
    } else {
        command.stdin(if command_streams.stdin { Stdio::piped() } else { Stdio::null() });
        command.stdout(if command_streams.stdout { Stdio::piped() } else { Stdio::null() });
        command.stderr(if command_streams.stderr { Stdio::piped() } else { Stdio::null() });
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
                Some((channel, bytes)) => sink.send(on_channel(channel, &bytes)).await?,
                None => output_open = false,
            },
            message = source.next() => match message.map(|m| m.map(text_as_binary)) {
                Some(Ok(Message::Binary(data))) if !data.is_empty() => match data[0] {
                    STDIN => if let Some(w) = stdin_writer.as_mut() { let _ = w.write_all(&data[1..]).await; },
                    RESIZE => if let (Some(t), Some((rows, cols))) = (&terminal, terminal_size(&data[1..])) { runtime::terminal::resize(t.as_raw_fd(), rows, cols); },
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
            status = child.wait(), if !output_open || command_streams.tty => break status?,
        }
    };
    // A terminal's output may still be buffered in the pty: drain it.
    while let Ok(Some((channel, bytes))) = tokio::time::timeout(std::time::Duration::from_millis(50), out_rx.recv()).await {
        sink.send(on_channel(channel, &bytes)).await?;
    }
    let code = status.code().unwrap_or(1);
    finish(sink, source, code).await
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
