//! One question against the zone: the records, the response code and the
//! SOA of a negative answer, as CoreDNS answers for `cluster.local` (TTL 5,
//! NXDOMAIN for a name that does not exist, NODATA for one that does but
//! lacks the type, REFUSED outside the zones served, since nothing is
//! forwarded: the lab has no outside).

use std::net::Ipv4Addr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::zone::{Data, Zone, REVERSE_ZONES};

/// CoreDNS's default TTL for the cluster's records.
pub const TTL: u32 = 5;
/// How many aliases are followed inside the zone.
const MAX_CNAME_HOPS: usize = 8;

#[derive(Debug, Default)]
pub struct Answer {
    pub code: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    /// The zone's SOA, in the authority section of a negative answer.
    pub soa: Option<Record>,
    pub additionals: Vec<Record>,
}

fn name(text: &str) -> Name {
    Name::from_ascii(format!("{text}.")).unwrap_or_else(|_| Name::root())
}

fn rdata(data: &Data) -> RData {
    match data {
        Data::A(ip) => RData::A(A(*ip)),
        Data::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        Data::Cname(target) => RData::CNAME(CNAME(name(target))),
        Data::Srv { weight, port, target } => RData::SRV(SRV::new(0, *weight, *port, name(target))),
        Data::Ptr(target) => RData::PTR(PTR(name(target))),
        Data::Txt(text) => RData::TXT(TXT::new(vec![text.clone()])),
    }
}

fn kind(data: &Data) -> RecordType {
    match data {
        Data::A(_) => RecordType::A,
        Data::Aaaa(_) => RecordType::AAAA,
        Data::Cname(_) => RecordType::CNAME,
        Data::Srv { .. } => RecordType::SRV,
        Data::Ptr(_) => RecordType::PTR,
        Data::Txt(_) => RecordType::TXT,
    }
}

/// The SOA of a zone apex, CoreDNS's values (refresh 7200, retry 1800,
/// expire 86400, minimum 5).
fn soa(zone: &Zone, apex: &str) -> Record {
    let data = SOA::new(name(&format!("ns.dns.{}", zone.domain)), name(&format!("hostmaster.{}", zone.domain)), zone.serial, 7200, 1800, 86400, TTL);
    Record::from_rdata(name(apex), TTL, RData::SOA(data))
}

/// A pod's name in the "pods insecure" mode: `a-b-c-d.<namespace>.pod.<domain>`
/// is the address a.b.c.d, whatever the namespace.
fn pod_address(zone: &Zone, qname: &str) -> Option<Ipv4Addr> {
    let rest = qname.strip_suffix(&format!(".pod.{}", zone.domain))?;
    let (dashed, namespace) = rest.split_once('.')?;
    if namespace.is_empty() || namespace.contains('.') {
        return None;
    }
    dashed.replace('-', ".").parse().ok()
}

/// The answer to `qname` (any case, with or without the final dot) of type `qtype`.
pub fn answer(zone: &Zone, qname: &str, qtype: RecordType) -> Answer {
    let qname = qname.trim_end_matches('.').to_lowercase();
    let apexes = std::iter::once(zone.domain.as_str()).chain(REVERSE_ZONES);
    let Some(apex) = apexes.into_iter().find(|a| qname == *a || qname.ends_with(&format!(".{a}"))).map(str::to_string) else {
        return Answer { code: ResponseCode::Refused, ..Answer::default() };
    };
    let mut out = Answer { code: ResponseCode::NoError, authoritative: true, ..Answer::default() };
    let pod = pod_address(zone, &qname).map(|ip| std::collections::BTreeSet::from([Data::A(ip)]));
    let Some(found) = zone.get(&qname).or(pod.as_ref()) else {
        out.code = ResponseCode::NXDomain;
        out.soa = Some(soa(zone, &apex));
        return out;
    };
    match qtype {
        RecordType::SOA if qname == apex => out.answers.push(soa(zone, &apex)),
        RecordType::NS if qname == apex => {
            let server = format!("ns.dns.{}", zone.domain);
            out.answers.push(Record::from_rdata(name(&qname), TTL, RData::NS(NS(name(&server)))));
            out.additionals.extend(glue(zone, &server));
        }
        RecordType::ANY => out.answers.extend(found.iter().map(|d| Record::from_rdata(name(&qname), TTL, rdata(d)))),
        _ => {
            let mut owner = qname.clone();
            let mut records = found;
            for _ in 0..MAX_CNAME_HOPS {
                let wanted: Vec<&Data> = records.iter().filter(|d| kind(d) == qtype).collect();
                if !wanted.is_empty() || qtype == RecordType::CNAME {
                    out.answers.extend(wanted.iter().map(|d| Record::from_rdata(name(&owner), TTL, rdata(d))));
                    break;
                }
                // An alias answers every type; it is followed while its target is ours.
                let Some(Data::Cname(target)) = records.iter().find(|d| matches!(d, Data::Cname(_))) else { break };
                out.answers.push(Record::from_rdata(name(&owner), TTL, rdata(&Data::Cname(target.clone()))));
                match zone.get(target) {
                    Some(next) => (owner, records) = (target.clone(), next),
                    None => break,
                }
            }
            if qtype == RecordType::SRV {
                let targets: std::collections::BTreeSet<String> =
                    found.iter().filter_map(|d| if let Data::Srv { target, .. } = d { Some(target.clone()) } else { None }).collect();
                for target in targets {
                    out.additionals.extend(glue(zone, &target));
                }
            }
        }
    }
    if out.answers.is_empty() {
        out.soa = Some(soa(zone, &apex));
    }
    out
}

/// The address records of a name the answer points at.
fn glue(zone: &Zone, target: &str) -> Vec<Record> {
    zone.get(target)
        .into_iter()
        .flatten()
        .filter(|d| matches!(d, Data::A(_) | Data::Aaaa(_)))
        .map(|d| Record::from_rdata(name(target), TTL, rdata(d)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::tests::sample;

    /// The answer as text: code, then `name type data` per record of each section.
    fn text(a: &Answer) -> String {
        let line = |r: &Record| format!("{} {} {}", r.name, r.record_type(), r.data);
        let mut out = vec![format!("{:?} aa={}", a.code, a.authoritative)];
        out.extend(a.answers.iter().map(|r| format!("an {}", line(r))));
        out.extend(a.soa.iter().map(|r| format!("ns {}", line(r))));
        out.extend(a.additionals.iter().map(|r| format!("ar {}", line(r))));
        out.join("\n")
    }

    fn ask(name: &str, qtype: RecordType) -> String {
        text(&answer(&sample(), name, qtype))
    }

    #[test]
    fn addresses_of_services_endpoints_and_pods() {
        assert_eq!(ask("WEB.default.svc.cluster.local.", RecordType::A), "NoError aa=true\nan web.default.svc.cluster.local. A 10.96.0.20");
        assert_eq!(ask("db-0.db.data.svc.cluster.local", RecordType::A), "NoError aa=true\nan db-0.db.data.svc.cluster.local. A 10.244.1.5");
        assert_eq!(ask("10-244-9-9.any.pod.cluster.local", RecordType::A), "NoError aa=true\nan 10-244-9-9.any.pod.cluster.local. A 10.244.9.9");
        assert_eq!(ask("20.0.96.10.in-addr.arpa", RecordType::PTR), "NoError aa=true\nan 20.0.96.10.in-addr.arpa. PTR web.default.svc.cluster.local.");
        assert_eq!(ask("dns-version.cluster.local", RecordType::TXT), "NoError aa=true\nan dns-version.cluster.local. TXT 1.1.0");
    }

    #[test]
    fn negative_answers_carry_the_soa() {
        let soa = "ns cluster.local. SOA ns.dns.cluster.local. hostmaster.cluster.local. 7 7200 1800 86400 5";
        assert_eq!(ask("nothing.default.svc.cluster.local", RecordType::A), format!("NXDomain aa=true\n{soa}"));
        assert_eq!(ask("web.default.svc.cluster.local", RecordType::AAAA), format!("NoError aa=true\n{soa}"), "NODATA");
        assert_eq!(ask("default.svc.cluster.local", RecordType::A), format!("NoError aa=true\n{soa}"), "an empty non-terminal");
        assert!(ask("9.9.9.9.in-addr.arpa", RecordType::PTR).starts_with("NXDomain aa=true\nns in-addr.arpa. SOA"));
        assert_eq!(ask("example.com", RecordType::A), "Refused aa=false", "nothing is forwarded");
        assert_eq!(ask("cluster.local", RecordType::SOA), format!("NoError aa=true\n{}", soa.replacen("ns ", "an ", 1)));
    }

    #[test]
    fn services_of_ports_and_aliases() {
        assert_eq!(
            ask("_pg._tcp.db.data.svc.cluster.local", RecordType::SRV),
            "NoError aa=true\n\
             an _pg._tcp.db.data.svc.cluster.local. SRV 0 50 5432 10-244-2-6.db.data.svc.cluster.local.\n\
             an _pg._tcp.db.data.svc.cluster.local. SRV 0 50 5432 db-0.db.data.svc.cluster.local.\n\
             ar 10-244-2-6.db.data.svc.cluster.local. A 10.244.2.6\n\
             ar db-0.db.data.svc.cluster.local. A 10.244.1.5"
        );
        // An ExternalName whose target is in the zone is followed.
        assert_eq!(
            ask("search.default.svc.cluster.local", RecordType::A),
            "NoError aa=true\nan search.default.svc.cluster.local. CNAME web.default.svc.cluster.local.\nan web.default.svc.cluster.local. A 10.96.0.20"
        );
        assert_eq!(ask("cluster.local", RecordType::NS), "NoError aa=true\nan cluster.local. NS ns.dns.cluster.local.\nar ns.dns.cluster.local. A 10.96.0.10");
    }
}
