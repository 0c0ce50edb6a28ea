//! Dialling a netexec: one HTTP GET of `/<request>` or one UDP datagram,
//! each given 5 seconds, as agnhost's dialer. Also the `dial` subcommand.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UdpSocket};

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Http,
    Udp,
}

impl Protocol {
    /// As agnhost: empty means http; case does not matter.
    pub fn parse(text: &str) -> Option<Protocol> {
        match text.to_ascii_lowercase().as_str() {
            "" | "http" => Some(Protocol::Http),
            "udp" => Some(Protocol::Udp),
            _ => None,
        }
    }
}

#[derive(clap::Args)]
pub struct Options {
    #[arg(long)]
    host: String,
    #[arg(long)]
    port: u16,
    #[arg(long, value_enum, default_value = "http")]
    protocol: Protocol,
    #[arg(long, default_value = "hostname")]
    request: String,
}

pub async fn run(options: Options) -> ExitCode {
    let answer = async {
        let address = resolve(&options.host, &options.port.to_string()).await?;
        once(options.protocol, address, &options.request).await
    };
    match answer.await {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("labhost dial: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub async fn resolve(host: &str, port: &str) -> anyhow::Result<SocketAddr> {
    let port: u16 = port.parse().map_err(|_| anyhow!("port {port:?} is not a port number"))?;
    let mut addresses = tokio::net::lookup_host((host, port)).await.with_context(|| format!("resolving {host}"))?;
    addresses.next().ok_or_else(|| anyhow!("{host} has no address"))
}

pub async fn once(protocol: Protocol, address: SocketAddr, request: &str) -> anyhow::Result<String> {
    let attempt = async {
        match protocol {
            Protocol::Http => http_get(address, request).await,
            Protocol::Udp => udp_exchange(address, request).await,
        }
    };
    tokio::time::timeout(TIMEOUT, attempt).await.map_err(|_| anyhow!("{protocol:?} request to {address} timed out after {TIMEOUT:?}"))?
}

async fn http_get(address: SocketAddr, request: &str) -> anyhow::Result<String> {
    let stream = TcpStream::connect(address).await.with_context(|| format!("connecting to {address}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let uri = format!("/{}", request.trim_start_matches('/'));
    let get = hyper::Request::get(uri).header(hyper::header::HOST, address.to_string()).body(Empty::<Bytes>::new())?;
    let response = sender.send_request(get).await.with_context(|| format!("GET from {address}"))?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

async fn udp_exchange(address: SocketAddr, request: &str) -> anyhow::Result<String> {
    let local: SocketAddr = if address.is_ipv4() { "0.0.0.0:0".parse()? } else { "[::]:0".parse()? };
    let socket = UdpSocket::bind(local).await.context("udp dial failed")?;
    socket.connect(address).await.context("udp dial failed")?;
    socket.send(request.as_bytes()).await.context("udp connection write failed")?;
    let mut buffer = [0u8; 2048];
    let n = socket.recv(&mut buffer).await.context("reading from udp connection failed")?;
    if n == 0 {
        bail!("reading from udp connection failed: an empty answer");
    }
    Ok(String::from_utf8_lossy(&buffer[..n]).into_owned())
}
