//! `labhost dig`: one DNS question, asked as a stub resolver asks it (over
//! UDP, then over TCP when the answer is truncated), and the whole answer
//! printed section by section, as dig prints it: the response code and
//! flags, then every record with its TTL. Busybox's nslookup hides the
//! TTLs, the authority section and the difference between NXDOMAIN and
//! NODATA; this shows what cluster DNS really said.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(clap::Args)]
pub struct Options {
    /// The name asked for, taken as absolute (no search path).
    name: String,
    /// The record type (A, AAAA, SRV, PTR, CNAME, TXT, SOA, ...).
    #[arg(default_value = "A")]
    kind: String,
    /// The server to ask: the first nameserver of /etc/resolv.conf by default.
    #[arg(long)]
    server: Option<IpAddr>,
    /// Ask over TCP from the start.
    #[arg(long)]
    tcp: bool,
}

pub async fn run(options: Options) -> ExitCode {
    match ask(&options).await {
        Ok(answer) => {
            print!("{}", show(&answer));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("labhost dig: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn ask(options: &Options) -> anyhow::Result<Message> {
    let kind = RecordType::from_str(&options.kind.to_ascii_uppercase()).with_context(|| format!("unknown record type {:?}", options.kind))?;
    let mut name = Name::from_ascii(&options.name).with_context(|| format!("not a DNS name: {:?}", options.name))?;
    name.set_fqdn(true);
    let server = match options.server {
        Some(ip) => ip,
        None => first_nameserver(&std::fs::read_to_string("/etc/resolv.conf").context("reading /etc/resolv.conf")?)?,
    };
    let server = SocketAddr::new(server, 53);
    let mut question = Message::query();
    question.metadata.id = std::process::id() as u16;
    question.metadata.recursion_desired = true;
    question.add_query(Query::query(name, kind));
    let wire = question.to_vec()?;
    if !options.tcp {
        let answer = over_udp(server, &wire).await?;
        if !answer.metadata.truncation {
            return Ok(answer);
        }
    }
    over_tcp(server, &wire).await
}

fn first_nameserver(resolv_conf: &str) -> anyhow::Result<IpAddr> {
    let Some(line) = resolv_conf.lines().find_map(|l| l.trim().strip_prefix("nameserver")) else {
        bail!("/etc/resolv.conf names no nameserver");
    };
    line.trim().parse().with_context(|| format!("/etc/resolv.conf: not an address: {:?}", line.trim()))
}

async fn over_udp(server: SocketAddr, wire: &[u8]) -> anyhow::Result<Message> {
    let local: SocketAddr = if server.is_ipv4() { "0.0.0.0:0".parse()? } else { "[::]:0".parse()? };
    let socket = UdpSocket::bind(local).await?;
    socket.send_to(wire, server).await?;
    let mut buffer = vec![0; 65535];
    let (n, _) = tokio::time::timeout(TIMEOUT, socket.recv_from(&mut buffer))
        .await
        .with_context(|| format!("no answer from {server} over UDP within {TIMEOUT:?}"))??;
    Ok(Message::from_vec(&buffer[..n])?)
}

async fn over_tcp(server: SocketAddr, wire: &[u8]) -> anyhow::Result<Message> {
    let exchange = async {
        let mut stream = TcpStream::connect(server).await?;
        stream.write_all(&(wire.len() as u16).to_be_bytes()).await?;
        stream.write_all(wire).await?;
        let mut length = [0; 2];
        stream.read_exact(&mut length).await?;
        let mut buffer = vec![0; u16::from_be_bytes(length) as usize];
        stream.read_exact(&mut buffer).await?;
        anyhow::Ok(Message::from_vec(&buffer)?)
    };
    tokio::time::timeout(TIMEOUT, exchange).await.with_context(|| format!("no answer from {server} over TCP within {TIMEOUT:?}"))?
}

/// A response code as dig and RFC 1035 name it (NOERROR, NXDOMAIN, ...):
/// hickory's variant names uppercased, where its Display spells them out.
fn code_name(code: ResponseCode) -> String {
    format!("{code:?}").to_uppercase()
}

/// The answer as text: a status line, then each non-empty section.
pub fn show(answer: &Message) -> String {
    let m = &answer.metadata;
    let flags: Vec<&str> = [("qr", true), ("aa", m.authoritative), ("tc", m.truncation), ("rd", m.recursion_desired), ("ra", m.recursion_available)]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect();
    let mut out = format!(";; status: {}, flags: {}\n", code_name(answer.metadata.response_code), flags.join(" "));
    for query in &answer.queries {
        out += &format!(";; question: {} {} {}\n", query.name(), query.query_class(), query.query_type());
    }
    let mut section = |title: &str, records: &[Record]| {
        if !records.is_empty() {
            out += &format!(";; {title}\n");
            for record in records {
                out += &format!("{record}\n");
            }
        }
    };
    section("answer", &answer.answers);
    section("authority", &answer.authorities);
    section("additional", &answer.additionals);
    out
}
