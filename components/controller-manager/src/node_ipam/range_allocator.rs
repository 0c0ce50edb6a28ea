//! Which node holds which pod CIDRs, over one CIDR set per cluster CIDR
//! (two for dual-stack), as upstream's range allocator keeps it: a node
//! gets one CIDR from each set, and gives them back when it goes.

use std::collections::HashMap;

use ipnet::IpNet;

use super::cidr_set::{self, CidrSet};

#[derive(Debug)]
pub struct RangeAllocator {
    sets: Vec<CidrSet>,
    /// What each node holds, as its spec says or as this allocator gave.
    held: HashMap<String, Vec<IpNet>>,
}

impl RangeAllocator {
    pub fn new(sets: Vec<CidrSet>) -> RangeAllocator {
        RangeAllocator { sets, held: HashMap::new() }
    }

    pub fn holds(&self, node: &str) -> Option<&[IpNet]> {
        self.held.get(node).map(Vec::as_slice)
    }

    /// Records CIDRs a node already has: no one else gets them.
    pub fn occupy(&mut self, node: &str, cidrs: Vec<IpNet>) -> Result<(), cidr_set::Error> {
        for (set, cidr) in self.sets.iter_mut().zip(&cidrs) {
            set.occupy(*cidr)?;
        }
        self.held.insert(node.to_string(), cidrs);
        Ok(())
    }

    /// One CIDR from each set for `node`; nothing is taken unless all are.
    pub fn allocate(&mut self, node: &str) -> Result<Vec<IpNet>, cidr_set::Error> {
        let mut cidrs = Vec::with_capacity(self.sets.len());
        for index in 0..self.sets.len() {
            match self.sets[index].allocate_next() {
                Ok(cidr) => cidrs.push(cidr),
                Err(e) => {
                    for (set, cidr) in self.sets.iter_mut().zip(&cidrs) {
                        let _ = set.release(*cidr);
                    }
                    return Err(e);
                }
            }
        }
        self.held.insert(node.to_string(), cidrs.clone());
        Ok(cidrs)
    }

    /// Gives back what `node` held.
    pub fn release(&mut self, node: &str) {
        for (set, cidr) in self.sets.iter_mut().zip(self.held.remove(node).unwrap_or_default()) {
            if let Err(e) = set.release(cidr) {
                tracing::warn!(node, "releasing {cidr}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn dual_stack_nodes_get_one_of_each_and_give_them_back() {
        let v4 = CidrSet::new(net("10.244.0.0/23"), 24).unwrap();
        let v6 = CidrSet::new(net("fd00::/63"), 64).unwrap();
        let mut ranges = RangeAllocator::new(vec![v4, v6]);
        ranges.occupy("old", vec![net("10.244.0.0/24"), net("fd00::/64")]).unwrap();
        assert_eq!(ranges.allocate("new").unwrap(), [net("10.244.1.0/24"), net("fd00:0:0:1::/64")]);
        assert_eq!(ranges.allocate("late"), Err(cidr_set::Error::Full));
        ranges.release("old");
        assert_eq!(ranges.holds("old"), None);
        assert_eq!(ranges.allocate("late").unwrap(), [net("10.244.0.0/24"), net("fd00::/64")]);
    }

    #[test]
    fn a_failed_allocation_takes_nothing() {
        let v4 = CidrSet::new(net("10.244.0.0/23"), 24).unwrap();
        let v6 = CidrSet::new(net("fd00::/64"), 64).unwrap();
        let mut ranges = RangeAllocator::new(vec![v4, v6]);
        ranges.allocate("a").unwrap();
        assert!(ranges.allocate("b").is_err(), "no IPv6 range is left");
        assert_eq!(ranges.holds("b"), None);
        assert_eq!(ranges.sets[0].allocate_next().unwrap(), net("10.244.1.0/24"), "b's IPv4 range was given back");
    }
}
