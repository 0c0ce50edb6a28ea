//! Port-forward over WebSocket channels (`v4.channel.k8s.io`, or no
//! subprotocol), as the Python client and other non-Go clients speak it:
//! the ports come in the query (`?ports=80,443`), and port number `i` of
//! that list has two channels, data `2i` and error `2i + 1`. Every message
//! starts with its channel byte; the server's first message on each channel
//! is the port number (two bytes, little-endian). One connection per port
//! for the whole session: when every pod connection has ended the session
//! closes.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::{dial, Target, Ws};

/// What the pod's side of a port sends towards the client.
enum Out {
    Data(u8, Vec<u8>),
    /// A port's connection ended (or never was).
    Ended,
}

pub async fn serve(ws: Ws, target: Target, ports: Vec<u16>) -> anyhow::Result<()> {
    let (mut sink, mut source) = ws.split();
    for (i, port) in ports.iter().enumerate() {
        for channel in [2 * i as u8, 2 * i as u8 + 1] {
            let [low, high] = port.to_le_bytes();
            sink.send(Message::binary(vec![channel, low, high])).await?;
        }
    }
    let (tx, mut rx) = mpsc::channel::<Out>(16);
    let mut writers: Vec<Option<OwnedWriteHalf>> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        match dial::dial(target.netns.as_deref(), *port).await {
            Ok(stream) => {
                let (reader, writer) = stream.into_split();
                writers.push(Some(writer));
                spawn_reader(reader, 2 * i as u8, tx.clone());
            }
            Err(e) => {
                let message = target.error(*port, &e);
                tracing::debug!("{message}");
                sink.send(Message::binary([&[2 * i as u8 + 1][..], message.as_bytes()].concat())).await?;
                writers.push(None);
                let _ = tx.send(Out::Ended).await;
            }
        }
    }
    drop(tx);
    let mut open = ports.len();
    while open > 0 {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Out::Data(channel, bytes)) => sink.send(Message::binary([&[channel][..], &bytes].concat())).await?,
                Some(Out::Ended) => open -= 1,
                None => break,
            },
            message = source.next() => match message {
                Some(Ok(Message::Binary(data))) => write_to_pod(&mut writers, &data).await,
                // The Python client's text frames carry the same bytes.
                Some(Ok(Message::Text(text))) => write_to_pod(&mut writers, text.as_bytes()).await,
                Some(Ok(Message::Ping(p))) => sink.send(Message::Pong(p)).await?,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
    sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await?;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async { while let Some(Ok(_)) = source.next().await {} }).await;
    Ok(())
}

/// A client's message on a data channel goes to that port's connection;
/// anything else (an error channel is read-only) is dropped.
async fn write_to_pod(writers: &mut [Option<OwnedWriteHalf>], data: &[u8]) {
    let Some((&channel, payload)) = data.split_first() else { return };
    if channel % 2 != 0 || payload.is_empty() {
        return;
    }
    if let Some(slot) = writers.get_mut(channel as usize / 2) {
        if let Some(writer) = slot.as_mut() {
            if writer.write_all(payload).await.is_err() {
                *slot = None;
            }
        }
    }
}

fn spawn_reader(mut reader: tokio::net::tcp::OwnedReadHalf, channel: u8, tx: mpsc::Sender<Out>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Out::Data(channel, buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(Out::Ended).await;
    });
}

/// The `ports` of the query: each may be given on its own or as a comma
/// list; every one a port number.
pub fn ports(query: &[(String, String)]) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for value in query.iter().filter(|(k, _)| k == "ports" || k == "port").map(|(_, v)| v) {
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<u16>() {
                Ok(p) if p > 0 => out.push(p),
                _ => return Err(format!("unable to parse \"{part}\" as a port: it must be a number from 1 to 65535")),
            }
        }
    }
    if out.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn ports_come_as_lists_or_one_by_one() {
        assert_eq!(ports(&q(&[("ports", "80,443"), ("ports", "8080")])).unwrap(), [80, 443, 8080]);
        assert_eq!(ports(&q(&[])).unwrap_err(), "query parameter \"port\" is required");
        assert!(ports(&q(&[("ports", "http")])).unwrap_err().contains("\"http\""));
        assert!(ports(&q(&[("ports", "0")])).is_err());
    }
}
