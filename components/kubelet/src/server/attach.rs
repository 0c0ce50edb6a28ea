//! `/attach`: a running container's own stdio (`kubectl attach`, `kubectl
//! run -it`), over the same stream protocol as exec ([`super::streams`]).
//! The container's shim holds its stdin and output; this connects the
//! WebSocket to the shim's attach socket ([`runtime::attach`]) until either
//! side ends. When the container ends, the shim closes the socket and the
//! client gets upstream's Success on the error channel.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use runtime::attach::{Decoder, Frame, MAX_PAYLOAD};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_tungstenite::tungstenite::Message;

use super::streams::{
    finish, on_channel, running_container, terminal_size, text_as_binary, Streams, Target, TargetPath, Upgrade, Ws, CLOSE, RESIZE, STDERR, STDIN, STDOUT,
};
use super::{text, Ctx, Params};

/// `/attach/NS/POD/CONTAINER`, or with the pod's uid before CONTAINER.
pub(crate) async fn attach(State(ctx): State<Ctx>, target: TargetPath, query: Params, req: Request) -> Response {
    let Target { ns, pod, container } = Target::from(target);
    start(ctx, ns, pod, container, query.0, req).await
}

async fn start(ctx: Ctx, ns: String, pod: String, container: String, query: Vec<(String, String)>, mut req: Request) -> Response {
    let streams = Streams::from_query(&query);
    let id = match running_container(&ctx, &ns, &pod, &container) {
        Ok(id) => id,
        Err(refused) => return refused.answer(),
    };
    let upgrade = match Upgrade::accept(&mut req, "attach") {
        Ok(u) => u,
        Err(refused) => return refused.answer(),
    };
    // Connected before the 101, so a container that cannot be attached
    // to gets a plain answer saying why.
    let socket = match connect(&ctx, &id).await {
        Ok(s) => s,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("error attaching to container {container}: {e:#}")),
    };
    let v5 = upgrade.v5();
    upgrade.run(move |ws| serve(ws, socket, streams, v5))
}

async fn connect(ctx: &Ctx, id: &str) -> anyhow::Result<UnixStream> {
    let address = ctx.kubelet.runtime.attach_address(id)?;
    Ok(UnixStream::connect(address.socket()).await?)
}

async fn serve(ws: Ws, socket: UnixStream, streams: Streams, v5: bool) -> anyhow::Result<()> {
    let (mut sink, mut source) = ws.split();
    let (mut from_shim, mut to_shim) = socket.into_split();
    let mut stdin_open = streams.stdin;
    if stdin_open {
        // Tells the shim this attach has stdin (it counts for stdinOnce).
        to_shim.write_all(&Frame::Stdin(vec![]).encode()).await?;
    }
    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            read = from_shim.read(&mut buf) => {
                let n = read.unwrap_or(0);
                if n == 0 {
                    // The shim closed: the container ended.
                    break;
                }
                decoder.push(&buf[..n]);
                while let Some(frame) = decoder.next_frame()? {
                    match frame {
                        Frame::Stdout(bytes) if streams.stdout => sink.send(on_channel(STDOUT, &bytes)).await?,
                        Frame::Stderr(bytes) if streams.stderr => sink.send(on_channel(STDERR, &bytes)).await?,
                        _ => {}
                    }
                }
            }
            message = source.next() => match message.map(|m| m.map(text_as_binary)) {
                Some(Ok(Message::Binary(data))) if !data.is_empty() => match data[0] {
                    STDIN if stdin_open => {
                        for chunk in data[1..].chunks(MAX_PAYLOAD) {
                            to_shim.write_all(&Frame::Stdin(chunk.to_vec()).encode()).await?;
                        }
                    }
                    RESIZE => {
                        if let Some((rows, cols)) = terminal_size(&data[1..]) {
                            to_shim.write_all(&Frame::Resize { rows, cols }.encode()).await?;
                        }
                    }
                    CLOSE if v5 && data.get(1) == Some(&STDIN) && stdin_open => {
                        stdin_open = false;
                        to_shim.write_all(&Frame::StdinClose.encode()).await?;
                    }
                    _ => {}
                },
                Some(Ok(Message::Ping(p))) => sink.send(Message::Pong(p)).await?,
                // The client went away; the socket's close tells the shim.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
    finish(sink, source, 0).await
}
