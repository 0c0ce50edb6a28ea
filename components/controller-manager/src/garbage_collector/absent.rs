//! Owners verified absent, remembered so that many dependents of one gone
//! owner cost one lookup (upstream's absentOwnerCache, an LRU of 500).

use std::collections::{HashSet, VecDeque};

use super::graph::Identity;

/// Upstream's size.
const CAPACITY: usize = 500;

/// The most recently recorded absent owners; the oldest are forgotten.
#[derive(Debug, Default)]
pub struct AbsentOwners {
    order: VecDeque<Identity>,
    known: HashSet<Identity>,
}

impl AbsentOwners {
    pub fn contains(&self, owner: &Identity) -> bool {
        self.known.contains(owner)
    }

    pub fn insert(&mut self, owner: Identity) {
        if !self.known.insert(owner.clone()) {
            return;
        }
        self.order.push_back(owner);
        if self.order.len() > CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.known.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: usize) -> Identity {
        Identity { api_version: "v1".into(), kind: "ConfigMap".into(), namespace: None, name: "o".into(), uid: uid.to_string() }
    }

    #[test]
    fn the_oldest_are_forgotten_beyond_the_capacity() {
        let mut absent = AbsentOwners::default();
        for uid in 0..=CAPACITY {
            absent.insert(owner(uid));
        }
        assert!(!absent.contains(&owner(0)));
        assert!(absent.contains(&owner(1)));
        assert!(absent.contains(&owner(CAPACITY)));
    }
}
