//! The DNS side: hickory's UDP and TCP server loop, asking [`answer`] for
//! every question against the zone of the moment, and counting what it answered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::DNSClass;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::answer::answer;
use crate::zone::Zone;

/// The largest UDP answer offered to EDNS clients (the DNS flag day's 1232).
const MAX_UDP_PAYLOAD: u16 = 1232;

/// Requests by (protocol, type) and responses by code, in CoreDNS's metric names.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: BTreeMap<(String, String), u64>,
    pub responses: BTreeMap<String, u64>,
}

impl Counters {
    pub fn render(&self) -> String {
        let mut out = String::from("# TYPE coredns_dns_requests_total counter\n");
        for ((proto, kind), n) in &self.requests {
            out.push_str(&format!("coredns_dns_requests_total{{proto=\"{proto}\",type=\"{kind}\"}} {n}\n"));
        }
        out.push_str("# TYPE coredns_dns_responses_total counter\n");
        for (rcode, n) in &self.responses {
            out.push_str(&format!("coredns_dns_responses_total{{rcode=\"{rcode}\"}} {n}\n"));
        }
        out
    }
}

/// A response code as CoreDNS's metrics label it: the mnemonic of the RFCs
/// (NOERROR, NXDOMAIN, SERVFAIL, ...), not hickory's prose.
fn rcode_label(code: ResponseCode) -> String {
    // hickory's variant names are those mnemonics (NoError, NXDomain, ServFail), uppercased.
    format!("{code:?}").to_uppercase()
}

#[derive(Clone, Default)]
pub struct Handler {
    /// None until the first lists of Services and EndpointSlices are in:
    /// questions then get SERVFAIL, as CoreDNS's kubernetes plugin answers
    /// before it has synced, so that a resolver asks again rather than
    /// keeping a NXDOMAIN that an empty zone would give.
    pub zone: Arc<RwLock<Option<Arc<Zone>>>>,
    pub counters: Arc<Mutex<Counters>>,
}

impl Handler {
    fn current(&self) -> Option<Arc<Zone>> {
        self.zone.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        let info = request.request_info();
        if let Ok(info) = &info {
            let key = (format!("{:?}", info.protocol).to_lowercase(), info.query.query_type().to_string());
            *self.counters.lock().unwrap_or_else(|e| e.into_inner()).requests.entry(key).or_insert(0) += 1;
        }
        let (code, sent) = match (request.metadata.op_code, info, self.current()) {
            (OpCode::Query, Ok(_), None) => {
                (ResponseCode::ServFail, response.send_response(builder.error_msg(&request.metadata, ResponseCode::ServFail)).await)
            }
            // Only the Internet class is served (CH, HS and the rest are not).
            (OpCode::Query, Ok(info), _) if info.query.query_class() != DNSClass::IN => {
                (ResponseCode::NotImp, response.send_response(builder.error_msg(&request.metadata, ResponseCode::NotImp)).await)
            }
            (OpCode::Query, Ok(info), Some(zone)) => {
                let found = answer(&zone, &info.query.name().to_string(), info.query.query_type());
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.authoritative = found.authoritative;
                metadata.response_code = found.code;
                metadata.recursion_available = false;
                let mut builder = builder;
                if request.edns.is_some() {
                    builder.edns(&edns);
                }
                let message = builder.build(metadata, found.answers.iter(), [].iter(), found.soa.iter(), found.additionals.iter());
                (found.code, response.send_response(message).await)
            }
            (OpCode::Query, Err(_), _) => (ResponseCode::FormErr, response.send_response(builder.error_msg(&request.metadata, ResponseCode::FormErr)).await),
            _ => (ResponseCode::NotImp, response.send_response(builder.error_msg(&request.metadata, ResponseCode::NotImp)).await),
        };
        *self.counters.lock().unwrap_or_else(|e| e.into_inner()).responses.entry(rcode_label(code)).or_insert(0) += 1;
        match sent {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!("sending a DNS response: {e}");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                Header { metadata, counts: HeaderCounts::default() }.into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream, UdpSocket};

    use super::*;

    fn query(name: &str, kind: RecordType, edns: bool) -> Vec<u8> {
        let mut message = Message::query();
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        message.metadata.recursion_desired = true;
        if edns {
            message.set_edns(Edns::new());
        }
        message.to_vec().unwrap()
    }

    /// `handler` served on UDP and TCP at one loopback address, until the test ends.
    async fn serve(handler: &Handler) -> SocketAddr {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(address).await.unwrap();
        let mut server = hickory_server::Server::new(handler.clone());
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 4);
        tokio::spawn(async move { server.block_until_done().await });
        address
    }

    async fn ask_udp(server: SocketAddr, question: &[u8]) -> Message {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(question, server).await.unwrap();
        let mut buffer = vec![0; 4096];
        let (n, _) = tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buffer)).await.expect("an answer within 10 s").unwrap();
        Message::from_vec(&buffer[..n]).unwrap()
    }

    async fn ask_tcp(server: SocketAddr, question: &[u8]) -> Message {
        let mut stream = TcpStream::connect(server).await.unwrap();
        stream.write_all(&(question.len() as u16).to_be_bytes()).await.unwrap();
        stream.write_all(question).await.unwrap();
        let mut length = [0; 2];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut length)).await.expect("an answer within 10 s").unwrap();
        let mut buffer = vec![0; u16::from_be_bytes(length) as usize];
        stream.read_exact(&mut buffer).await.unwrap();
        Message::from_vec(&buffer).unwrap()
    }

    /// Questions on the wire, over UDP and TCP: SERVFAIL before the first
    /// zone, then answers from it; EDNS answered with EDNS; counted.
    #[tokio::test]
    async fn answers_on_udp_and_tcp_from_the_zone_of_the_moment() {
        let handler = Handler::default();
        let address = serve(&handler).await;

        let web = query("web.default.svc.cluster.local.", RecordType::A, false);
        let before = ask_udp(address, &web).await;
        assert_eq!(before.metadata.response_code, ResponseCode::ServFail, "no zone yet: {before:?}");

        *handler.zone.write().unwrap() = Some(Arc::new(crate::zone::tests::sample()));
        let over_udp = ask_udp(address, &web).await;
        assert_eq!(over_udp.metadata.response_code, ResponseCode::NoError);
        assert!(over_udp.metadata.authoritative && !over_udp.metadata.recursion_available);
        let addresses: Vec<String> = over_udp.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(addresses, ["10.96.0.20"]);
        assert!(over_udp.edns.is_none(), "no EDNS asked, none given");

        let missing = ask_tcp(address, &query("nothing.default.svc.cluster.local.", RecordType::A, true)).await;
        assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(missing.authorities.len(), 1, "the SOA: {missing:?}");
        assert_eq!(missing.edns.as_ref().map(Edns::max_payload), Some(MAX_UDP_PAYLOAD));

        // Bad input: an unknown class and an opcode other than QUERY are
        // not implemented; neither stops the server.
        let mut chaos = Message::query();
        let mut question = Query::query(Name::from_ascii("version.bind.").unwrap(), RecordType::TXT);
        question.set_query_class(DNSClass::CH);
        chaos.add_query(question);
        assert_eq!(ask_udp(address, &chaos.to_vec().unwrap()).await.metadata.response_code, ResponseCode::NotImp);
        let mut notify = Message::query();
        notify.metadata.op_code = OpCode::Notify;
        notify.add_query(Query::query(Name::from_ascii("cluster.local.").unwrap(), RecordType::SOA));
        assert_eq!(ask_udp(address, &notify.to_vec().unwrap()).await.metadata.response_code, ResponseCode::NotImp);

        let counters = handler.counters.lock().unwrap().render();
        assert!(counters.contains("coredns_dns_requests_total{proto=\"udp\",type=\"A\"} 2"), "{counters}");
        assert!(counters.contains("coredns_dns_requests_total{proto=\"tcp\",type=\"A\"} 1"), "{counters}");
        assert!(counters.contains("coredns_dns_responses_total{rcode=\"SERVFAIL\"} 1"), "{counters}");
        assert!(counters.contains("coredns_dns_responses_total{rcode=\"NXDOMAIN\"} 1"), "{counters}");
    }

    /// The request decoder fuzzed on the wire: thousands of packets, random
    /// bytes and a valid question with bytes flipped, cut short or grown,
    /// over UDP and TCP. None may stop the server: a valid question asked
    /// afterwards is answered from the zone.
    #[tokio::test]
    async fn malformed_packets_never_stop_the_server() {
        let handler = Handler::default();
        *handler.zone.write().unwrap() = Some(Arc::new(crate::zone::tests::sample()));
        let address = serve(&handler).await;

        let valid = query("web.default.svc.cluster.local.", RecordType::A, true);
        // A small xorshift generator: the same packets on every run.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for round in 0..3000 {
            let mut packet = match round % 3 {
                0 => (0..(next() % 64) as usize).map(|_| next() as u8).collect::<Vec<u8>>(),
                1 => {
                    let mut p = valid.clone();
                    for _ in 0..1 + next() % 4 {
                        let at = (next() as usize) % p.len();
                        p[at] = next() as u8;
                    }
                    p
                }
                _ => {
                    let mut p = valid.clone();
                    p.truncate((next() as usize) % p.len());
                    p.extend((0..next() % 8).map(|_| next() as u8));
                    p
                }
            };
            if round % 100 == 0 {
                // Some over TCP, with a length prefix that may lie.
                if let Ok(mut stream) = TcpStream::connect(address).await {
                    let claimed = if next() % 2 == 0 { packet.len() as u16 } else { next() as u16 };
                    let _ = stream.write_all(&claimed.to_be_bytes()).await;
                    let _ = stream.write_all(&packet).await;
                }
            } else {
                packet.truncate(4096);
                let _ = client.send_to(&packet, address).await;
            }
        }
        let answer = ask_udp(address, &valid).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError, "{answer:?}");
        assert_eq!(answer.answers.len(), 1);
        let over_tcp = ask_tcp(address, &valid).await;
        assert_eq!(over_tcp.metadata.response_code, ResponseCode::NoError);
    }

    /// A headless Service of 200 ready pods: over UDP the answer is cut to
    /// what the client takes (512 bytes without EDNS, our 1232 with it) and
    /// says so with TC, and over TCP, where clients ask again, it is whole.
    #[tokio::test]
    async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
        let service: k8s_openapi::api::core::v1::Service =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "many", "namespace": "default"}, "spec": {"clusterIP": "None"}})).unwrap();
        let endpoints: Vec<serde_json::Value> =
            (0..200).map(|i| serde_json::json!({"addresses": [format!("10.244.{}.{}", i / 100, 1 + i % 100)], "conditions": {"ready": true}})).collect();
        let slice: k8s_openapi::api::discovery::v1::EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "many-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "many"}},
            "addressType": "IPv4", "endpoints": endpoints
        }))
        .unwrap();
        let handler = Handler::default();
        *handler.zone.write().unwrap() = Some(Arc::new(crate::zone::build("cluster.local", &[service], &[slice], 1)));
        let address = serve(&handler).await;

        let name = "many.default.svc.cluster.local.";
        for (edns, limit) in [(false, 512), (true, MAX_UDP_PAYLOAD as usize)] {
            let question = query(name, RecordType::A, edns);
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            socket.send_to(&question, address).await.unwrap();
            let mut buffer = vec![0; 65536];
            let (n, _) = tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buffer)).await.expect("an answer").unwrap();
            assert!(n <= limit, "{n} bytes over UDP, more than {limit} (EDNS {edns})");
            let answer = Message::from_vec(&buffer[..n]).unwrap();
            assert!(answer.metadata.truncation, "TC set (EDNS {edns})");
            assert!(answer.answers.len() < 200);
        }
        let whole = ask_tcp(address, &query(name, RecordType::A, true)).await;
        assert!(!whole.metadata.truncation);
        assert_eq!(whole.answers.len(), 200);
    }
}
