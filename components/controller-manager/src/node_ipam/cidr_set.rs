//! One cluster CIDR cut into node CIDRs of one size, and which of them are
//! taken, as upstream's `cidrset`: allocation goes round from after the
//! last one handed out, so a range just released is not reused at once
//! while others are free.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Upstream's limit on how many bits an IPv6 node CIDR may add to its
/// cluster CIDR (2^16 node CIDRs).
const MAX_IPV6_SUBNET_BITS: u8 = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range")]
    Full,
    #[error("New CIDR set failed; the node CIDR size is too big")]
    NodeCidrTooBig,
    #[error("the node CIDR mask size /{node} is larger than the cluster CIDR {cluster}")]
    NodeCidrLargerThanCluster { node: u8, cluster: IpNet },
    #[error("cidr {cidr} is out the range of cluster cidr {cluster}")]
    OutOfRange { cidr: IpNet, cluster: IpNet },
}

#[derive(Debug, Clone)]
pub struct CidrSet {
    cluster: IpNet,
    node_prefix: u8,
    /// How many node CIDRs the cluster CIDR holds.
    size: u128,
    used: HashSet<u128>,
    next_candidate: u128,
}

impl CidrSet {
    pub fn new(cluster: IpNet, node_prefix: u8) -> Result<CidrSet, Error> {
        let cluster = cluster.trunc();
        if node_prefix < cluster.prefix_len() || node_prefix > cluster.max_prefix_len() {
            return Err(Error::NodeCidrLargerThanCluster { node: node_prefix, cluster });
        }
        let bits = node_prefix - cluster.prefix_len();
        if matches!(cluster, IpNet::V6(_)) && bits > MAX_IPV6_SUBNET_BITS {
            return Err(Error::NodeCidrTooBig);
        }
        Ok(CidrSet { cluster, node_prefix, size: 1u128 << bits, used: HashSet::new(), next_candidate: 0 })
    }

    pub fn cluster(&self) -> IpNet {
        self.cluster
    }

    /// The next free node CIDR, from after the last one allocated.
    pub fn allocate_next(&mut self) -> Result<IpNet, Error> {
        if self.used.len() as u128 >= self.size {
            return Err(Error::Full);
        }
        let mut candidate = self.next_candidate;
        while self.used.contains(&candidate) {
            candidate = (candidate + 1) % self.size;
        }
        self.next_candidate = (candidate + 1) % self.size;
        self.used.insert(candidate);
        Ok(self.block(candidate))
    }

    /// Marks every node CIDR that `cidr` overlaps as taken (a node that
    /// already has one, from before this allocator started).
    pub fn occupy(&mut self, cidr: IpNet) -> Result<(), Error> {
        for index in self.indices(cidr)? {
            self.used.insert(index);
        }
        Ok(())
    }

    pub fn release(&mut self, cidr: IpNet) -> Result<(), Error> {
        for index in self.indices(cidr)? {
            self.used.remove(&index);
        }
        Ok(())
    }

    fn offset_bits(&self) -> u8 {
        self.cluster.max_prefix_len() - self.node_prefix
    }

    fn block(&self, index: u128) -> IpNet {
        let base = to_u128(self.cluster.network()) | (index << self.offset_bits());
        let address = match self.cluster {
            IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(base as u32)),
            IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(base)),
        };
        IpNet::new(address, self.node_prefix).expect("the prefix fits the family")
    }

    /// The node CIDRs `cidr` covers, in or around the cluster CIDR.
    fn indices(&self, cidr: IpNet) -> Result<std::ops::Range<u128>, Error> {
        let out_of_range = || Error::OutOfRange { cidr, cluster: self.cluster };
        let same_family = matches!((cidr, self.cluster), (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_)));
        if !same_family || !(self.cluster.contains(&cidr.network()) || cidr.contains(&self.cluster.network())) {
            return Err(out_of_range());
        }
        if cidr.prefix_len() <= self.cluster.prefix_len() {
            return Ok(0..self.size);
        }
        let index = |address: IpAddr| (to_u128(address) - to_u128(self.cluster.network())) >> self.offset_bits();
        let first = index(cidr.network());
        // A CIDR smaller than a node CIDR still takes the whole node CIDR.
        let last = index(cidr.broadcast());
        Ok(first..last + 1)
    }
}

fn to_u128(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn allocation_goes_round_from_after_the_last() {
        let mut set = CidrSet::new(net("10.244.0.0/22"), 24).unwrap();
        let first: Vec<IpNet> = (0..4).map(|_| set.allocate_next().unwrap()).collect();
        assert_eq!(first, [net("10.244.0.0/24"), net("10.244.1.0/24"), net("10.244.2.0/24"), net("10.244.3.0/24")]);
        assert_eq!(set.allocate_next(), Err(Error::Full));
        set.release(net("10.244.1.0/24")).unwrap();
        assert_eq!(set.allocate_next().unwrap(), net("10.244.1.0/24"), "the only free one");
    }

    #[test]
    fn a_released_range_waits_its_turn() {
        let mut set = CidrSet::new(net("10.244.0.0/16"), 24).unwrap();
        for _ in 0..3 {
            set.allocate_next().unwrap();
        }
        set.release(net("10.244.1.0/24")).unwrap();
        assert_eq!(set.allocate_next().unwrap(), net("10.244.3.0/24"));
    }

    #[test]
    fn occupied_ranges_are_skipped() {
        let mut set = CidrSet::new(net("10.244.0.0/16"), 24).unwrap();
        set.occupy(net("10.244.0.0/24")).unwrap();
        set.occupy(net("10.244.1.128/25")).unwrap();
        assert_eq!(set.allocate_next().unwrap(), net("10.244.2.0/24"));
        assert_eq!(set.occupy(net("10.245.0.0/24")), Err(Error::OutOfRange { cidr: net("10.245.0.0/24"), cluster: net("10.244.0.0/16") }));
        assert!(set.occupy(net("fd00::/64")).is_err());
    }

    #[test]
    fn ipv6_and_mask_limits() {
        let mut set = CidrSet::new(net("fd00:10::/56"), 64).unwrap();
        assert_eq!(set.allocate_next().unwrap(), net("fd00:10::/64"));
        assert_eq!(set.allocate_next().unwrap(), net("fd00:10:0:1::/64"));
        assert_eq!(CidrSet::new(net("fd00::/32"), 64).unwrap_err(), Error::NodeCidrTooBig);
        assert!(matches!(CidrSet::new(net("10.0.0.0/16"), 8), Err(Error::NodeCidrLargerThanCluster { .. })));
    }
}
