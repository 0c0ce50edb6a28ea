//! The load balancer address pool and who holds which address in it
//! (pure: no API). Addresses are IPv4 only, as the lab's network is; a
//! Service gets the lowest free address, so what is handed out is
//! predictable and a freed address is the next one given.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

/// The addresses `--load-balancer-pool` names: ranges `first-last`, CIDRs
/// (every address in them: a pool is a slice of a larger network, so its
/// own first and last addresses are ordinary hosts) or single addresses,
/// comma-separated. Empty: no pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pool {
    /// Inclusive ranges as integers, sorted, never overlapping.
    ranges: Vec<(u32, u32)>,
}

impl Pool {
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        self.ranges.iter().any(|&(first, last)| (first..=last).contains(&ip))
    }

    /// How many addresses the pool has.
    pub fn size(&self) -> u64 {
        self.ranges.iter().map(|&(first, last)| u64::from(last - first) + 1).sum()
    }

    /// Every address, lowest first.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.ranges.iter().flat_map(|&(first, last)| (first..=last).map(Ipv4Addr::from))
    }
}

fn parse_range(part: &str) -> Result<(u32, u32), String> {
    let address = |s: &str| s.trim().parse::<Ipv4Addr>().map_err(|_| format!("{:?} is not an IPv4 address (the pool is IPv4 only)", s.trim()));
    if part.contains('/') {
        let net: Ipv4Net = part.parse().map_err(|_| format!("{part:?} is not an IPv4 CIDR"))?;
        return Ok((u32::from(net.network()), u32::from(net.broadcast())));
    }
    let (first, last) = match part.split_once('-') {
        Some((first, last)) => (address(first)?, address(last)?),
        None => (address(part)?, address(part)?),
    };
    if first > last {
        return Err(format!("{part:?}: the first address is after the last"));
    }
    Ok((first.into(), last.into()))
}

impl FromStr for Pool {
    type Err = String;

    fn from_str(s: &str) -> Result<Pool, String> {
        let mut ranges = s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(parse_range).collect::<Result<Vec<_>, _>>()?;
        ranges.sort();
        if let Some(w) = ranges.windows(2).find(|w| w[1].0 <= w[0].1) {
            return Err(format!("{} and {} overlap", show(w[0]), show(w[1])));
        }
        Ok(Pool { ranges })
    }
}

fn show((first, last): (u32, u32)) -> String {
    if first == last {
        Ipv4Addr::from(first).to_string()
    } else {
        format!("{}-{}", Ipv4Addr::from(first), Ipv4Addr::from(last))
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.ranges.iter().copied().map(show).collect();
        f.write_str(&parts.join(","))
    }
}

/// Why a Service gets no address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Every address is held.
    Exhausted { size: u64 },
    /// `spec.loadBalancerIP` names an address the pool does not have.
    OutsidePool(Ipv4Addr),
    /// `spec.loadBalancerIP` names an address another Service holds.
    Taken { ip: Ipv4Addr, holder: String },
}

impl Refusal {
    /// Whether a release elsewhere may let the Service through later
    /// (an address outside the pool never will).
    pub fn may_pass_later(&self) -> bool {
        !matches!(self, Refusal::OutsidePool(_))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Exhausted { size } => write!(f, "the load balancer pool is exhausted: all {size} addresses are in use"),
            Refusal::OutsidePool(ip) => write!(f, "the requested address {ip} is not in the load balancer pool"),
            Refusal::Taken { ip, holder } => write!(f, "the requested address {ip} is already in use by Service {holder}"),
        }
    }
}

/// Which Service (by `namespace/name`) holds which address of the pool;
/// one holder per address, one address per Service.
#[derive(Debug, Clone)]
pub struct Allocator {
    pool: Pool,
    holders: BTreeMap<Ipv4Addr, String>,
    held: HashMap<String, Ipv4Addr>,
}

impl Allocator {
    pub fn new(pool: Pool) -> Allocator {
        Allocator { pool, holders: BTreeMap::new(), held: HashMap::new() }
    }

    pub fn holds(&self, service: &str) -> Option<Ipv4Addr> {
        self.held.get(service).copied()
    }

    /// Records an address a Service already shows in its status (a
    /// rebuild): refused if it left the pool or another Service has it.
    pub fn occupy(&mut self, service: &str, ip: Ipv4Addr) -> Result<(), Refusal> {
        self.take(service, Some(ip)).map(|_| ())
    }

    /// An address for `service`: `wanted` (its `spec.loadBalancerIP`) or
    /// the lowest free one. A Service that holds an address already keeps
    /// it unless it wants another.
    pub fn allocate(&mut self, service: &str, wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr, Refusal> {
        self.take(service, wanted)
    }

    fn take(&mut self, service: &str, wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr, Refusal> {
        if let Some(held) = self.holds(service) {
            if wanted.is_none_or(|w| w == held) {
                return Ok(held);
            }
        }
        let ip = match wanted {
            Some(ip) if !self.pool.contains(ip) => return Err(Refusal::OutsidePool(ip)),
            Some(ip) => match self.holders.get(&ip) {
                Some(holder) => return Err(Refusal::Taken { ip, holder: holder.clone() }),
                None => ip,
            },
            None => self.pool.addresses().find(|ip| !self.holders.contains_key(ip)).ok_or(Refusal::Exhausted { size: self.pool.size() })?,
        };
        self.release(service);
        self.holders.insert(ip, service.to_string());
        self.held.insert(service.to_string(), ip);
        Ok(ip)
    }

    /// Gives back what `service` held.
    pub fn release(&mut self, service: &str) -> Option<Ipv4Addr> {
        let ip = self.held.remove(service)?;
        self.holders.remove(&ip);
        Some(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn pools_are_ranges_cidrs_or_addresses() {
        let pool: Pool = "172.30.0.240-172.30.0.242, 10.0.0.8/30,192.168.1.1".parse().unwrap();
        assert_eq!(pool.to_string(), "10.0.0.8-10.0.0.11,172.30.0.240-172.30.0.242,192.168.1.1");
        assert_eq!(pool.size(), 8);
        assert!(pool.contains(ip("10.0.0.8")) && pool.contains(ip("10.0.0.11")), "a CIDR's ends are in the pool");
        assert!(!pool.contains(ip("172.30.0.243")));
        assert_eq!(pool.addresses().next(), Some(ip("10.0.0.8")));
        assert!("".parse::<Pool>().unwrap().is_empty());
    }

    #[test]
    fn bad_pools_are_refused() {
        assert!("10.0.0.9-10.0.0.8".parse::<Pool>().unwrap_err().contains("after the last"));
        assert!("fd00::1-fd00::9".parse::<Pool>().unwrap_err().contains("IPv4 only"));
        assert!("10.0.0.0/33".parse::<Pool>().is_err());
        assert_eq!("10.0.0.0/30,10.0.0.3-10.0.0.5".parse::<Pool>().unwrap_err(), "10.0.0.0-10.0.0.3 and 10.0.0.3-10.0.0.5 overlap");
    }

    #[test]
    fn services_get_the_lowest_free_address_and_never_share_one() {
        let mut allocator = Allocator::new("10.0.0.1-10.0.0.3".parse().unwrap());
        assert_eq!(allocator.allocate("default/a", None), Ok(ip("10.0.0.1")));
        assert_eq!(allocator.allocate("default/b", None), Ok(ip("10.0.0.2")));
        assert_eq!(allocator.allocate("default/a", None), Ok(ip("10.0.0.1")), "a holder keeps its address");
        assert_eq!(allocator.allocate("default/c", None), Ok(ip("10.0.0.3")));
        assert_eq!(allocator.allocate("default/d", None), Err(Refusal::Exhausted { size: 3 }));
        assert_eq!(allocator.holds("default/d"), None);
        assert_eq!(allocator.release("default/a"), Some(ip("10.0.0.1")));
        assert_eq!(allocator.release("default/a"), None);
        assert_eq!(allocator.allocate("default/d", None), Ok(ip("10.0.0.1")), "the freed address is the next one given");
    }

    #[test]
    fn a_requested_address_is_given_if_in_the_pool_and_free() {
        let mut allocator = Allocator::new("10.0.0.1-10.0.0.4".parse().unwrap());
        assert_eq!(allocator.allocate("ns/a", Some(ip("10.0.0.3"))), Ok(ip("10.0.0.3")));
        let taken = allocator.allocate("ns/b", Some(ip("10.0.0.3"))).unwrap_err();
        assert_eq!(taken, Refusal::Taken { ip: ip("10.0.0.3"), holder: "ns/a".into() });
        assert!(taken.may_pass_later());
        assert_eq!(taken.to_string(), "the requested address 10.0.0.3 is already in use by Service ns/a");
        let outside = allocator.allocate("ns/b", Some(ip("10.9.9.9"))).unwrap_err();
        assert_eq!(outside, Refusal::OutsidePool(ip("10.9.9.9")));
        assert!(!outside.may_pass_later());
        // Asking for another address moves the Service and frees the old.
        assert_eq!(allocator.allocate("ns/a", Some(ip("10.0.0.4"))), Ok(ip("10.0.0.4")));
        assert_eq!(allocator.allocate("ns/b", Some(ip("10.0.0.3"))), Ok(ip("10.0.0.3")));
        // A refused move keeps what the Service held.
        assert!(allocator.allocate("ns/a", Some(ip("10.0.0.3"))).is_err());
        assert_eq!(allocator.holds("ns/a"), Some(ip("10.0.0.4")));
    }

    #[test]
    fn a_rebuild_keeps_the_first_claim_of_an_address() {
        let mut allocator = Allocator::new("10.0.0.0/30".parse().unwrap());
        assert_eq!(allocator.occupy("ns/old", ip("10.0.0.2")), Ok(()));
        assert!(matches!(allocator.occupy("ns/copy", ip("10.0.0.2")), Err(Refusal::Taken { .. })));
        assert_eq!(allocator.occupy("ns/moved", ip("10.1.0.2")), Err(Refusal::OutsidePool(ip("10.1.0.2"))));
        assert_eq!(allocator.allocate("ns/copy", None), Ok(ip("10.0.0.0")));
    }
}
