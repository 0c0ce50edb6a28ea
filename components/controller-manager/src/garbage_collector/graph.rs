//! The dependency graph: every object the monitors have seen, by uid, with
//! the owners its ownerReferences name and the dependents that name it.
//!
//! Only the graph builder writes it, one change at a time, as upstream's
//! single-threaded `GraphBuilder` does; each change answers with the work
//! it makes for the collector's workers. An owner that is named but not
//! (yet) seen is a *virtual* node, known only by how its first dependent
//! names it, until a monitor sees it or the collector finds it absent.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// The finalizer that holds an owner until its blocking dependents are gone.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer that holds an owner until its dependents no longer name it.
pub const ORPHAN: &str = "orphan";

/// Which object a node stands for: what a request for it needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    /// None for cluster-scoped objects (and for owners named by
    /// cluster-scoped dependents).
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

impl Identity {
    /// How a dependent in `namespace` names `owner`.
    pub fn of_owner(owner: &OwnerReference, namespace: Option<&str>) -> Identity {
        Identity {
            api_version: owner.api_version.clone(),
            kind: owner.kind.clone(),
            namespace: namespace.map(str::to_string),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
        }
    }

    pub fn group(&self) -> &str {
        group_of(&self.api_version)
    }
}

/// The API group of an apiVersion ("" for the core group).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(group, _)| group).unwrap_or("")
}

/// Upstream's rendering of an object reference in messages.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}/{}, namespace: {}, name: {}, uid: {}]", self.api_version, self.kind, self.namespace.as_deref().unwrap_or(""), self.name, self.uid)
    }
}

/// What a monitor saw of one object: all the graph keeps of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub identity: Identity,
    pub owners: Vec<OwnerReference>,
    pub being_deleted: bool,
    pub finalizers: Vec<String>,
}

impl Seen {
    fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }
}

/// A change the monitors report.
#[derive(Debug, Clone)]
pub enum Change {
    /// Added or modified.
    Upsert(Seen),
    Delete(Identity),
    /// A monitor listed its resource again (after its watch broke): objects
    /// of `api_version`'s group and `kind` that it did not list are gone.
    Relisted {
        api_version: String,
        kind: String,
        listed: HashSet<String>,
    },
}

/// What a change asks of the collector.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// Look at this object: delete it if all its owners are gone, or, for
    /// an owner deleting its dependents, see whether they are all gone.
    AttemptToDelete(String),
    /// Take this owner out of its dependents' ownerReferences, then drop
    /// its orphan finalizer.
    AttemptToOrphan(String),
    /// `dependent` names an owner (by uid) that lives in another namespace.
    InvalidNamespace { dependent: Identity, owner: OwnerReference },
}

#[derive(Debug, Clone)]
pub struct Node {
    pub identity: Identity,
    /// False for a virtual node: named by dependents, not seen.
    pub observed: bool,
    pub owners: Vec<OwnerReference>,
    pub dependents: BTreeSet<String>,
    pub being_deleted: bool,
    /// Being deleted with the foregroundDeletion finalizer.
    pub deleting_dependents: bool,
    /// Being deleted with the orphan finalizer.
    pub orphaning: bool,
}

impl Node {
    fn virtual_owner(identity: Identity) -> Node {
        Node { identity, observed: false, owners: Vec::new(), dependents: BTreeSet::new(), being_deleted: false, deleting_dependents: false, orphaning: false }
    }
}

#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
}

impl Graph {
    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The identities of the observed dependents of `uid`.
    pub fn dependents(&self, uid: &str) -> Vec<Identity> {
        let Some(node) = self.nodes.get(uid) else { return Vec::new() };
        node.dependents.iter().filter_map(|d| self.nodes.get(d)).filter(|d| d.observed).map(|d| d.identity.clone()).collect()
    }

    /// The dependents of `uid` whose reference to it blocks its deletion,
    /// each with whether it is itself deleting its dependents.
    pub fn blocking_dependents(&self, uid: &str) -> Vec<(String, bool)> {
        let Some(node) = self.nodes.get(uid) else { return Vec::new() };
        node.dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .filter(|d| d.owners.iter().any(|o| o.uid == uid && o.block_owner_deletion == Some(true)))
            .map(|d| (d.identity.uid.clone(), d.deleting_dependents))
            .collect()
    }

    pub fn apply(&mut self, change: Change) -> Vec<Work> {
        match change {
            Change::Upsert(seen) => self.upsert(seen),
            Change::Delete(identity) => self.delete(&identity.uid),
            Change::Relisted { api_version, kind, listed } => {
                let group = group_of(&api_version);
                let gone: Vec<String> = self
                    .nodes
                    .values()
                    .filter(|n| n.observed && n.identity.kind == kind && n.identity.group() == group && !listed.contains(&n.identity.uid))
                    .map(|n| n.identity.uid.clone())
                    .collect();
                gone.iter().flat_map(|uid| self.delete(uid)).collect()
            }
        }
    }

    /// The collector found a virtual node's object absent (or with another
    /// uid): the node goes, and its dependents are looked at again.
    pub fn absent(&mut self, uid: &str) -> Vec<Work> {
        match self.nodes.get(uid) {
            Some(node) if !node.observed => {}
            _ => return Vec::new(),
        }
        let node = self.nodes.remove(uid).expect("checked above");
        node.dependents.into_iter().map(Work::AttemptToDelete).collect()
    }

    fn upsert(&mut self, seen: Seen) -> Vec<Work> {
        let mut work = Vec::new();
        let uid = seen.identity.uid.clone();
        let deleting_dependents = seen.being_deleted && seen.has_finalizer(FOREGROUND);
        let orphaning = seen.being_deleted && seen.has_finalizer(ORPHAN);
        let (was_deleting_dependents, was_orphaning, old_owners) = match self.nodes.get_mut(&uid) {
            None => {
                let node = Node {
                    identity: seen.identity.clone(),
                    observed: true,
                    owners: Vec::new(),
                    dependents: BTreeSet::new(),
                    being_deleted: false,
                    deleting_dependents: false,
                    orphaning: false,
                };
                self.nodes.insert(uid.clone(), node);
                (false, false, Vec::new())
            }
            Some(node) => {
                if !node.observed {
                    node.observed = true;
                    node.identity = seen.identity.clone();
                    if seen.identity.namespace.is_some() {
                        // Dependents that named this owner from another
                        // namespace looked for it in the wrong place.
                        let dependents: Vec<String> = node.dependents.iter().cloned().collect();
                        for dependent in dependents {
                            let Some(d) = self.nodes.get(&dependent) else { continue };
                            if d.identity.namespace != seen.identity.namespace {
                                if let Some(owner) = d.owners.iter().find(|o| o.uid == uid) {
                                    work.push(Work::InvalidNamespace { dependent: d.identity.clone(), owner: owner.clone() });
                                }
                                work.push(Work::AttemptToDelete(dependent));
                            }
                        }
                    }
                }
                let node = self.nodes.get_mut(&uid).expect("present");
                (node.deleting_dependents, node.orphaning, std::mem::take(&mut node.owners))
            }
        };

        // Owners this object no longer names, or no longer blocks.
        for old in &old_owners {
            let new = seen.owners.iter().find(|o| o.uid == old.uid);
            let unblocked = old.block_owner_deletion == Some(true) && new.is_none_or(|n| n.block_owner_deletion != Some(true));
            if new.is_none() {
                self.remove_dependent(&old.uid, &uid);
            }
            if unblocked && self.nodes.get(&old.uid).is_some_and(|o| o.deleting_dependents) {
                work.push(Work::AttemptToDelete(old.uid.clone()));
            }
        }
        let added: Vec<OwnerReference> = seen.owners.iter().filter(|o| !old_owners.iter().any(|old| old.uid == o.uid)).cloned().collect();
        self.add_to_owners(&seen.identity, &added, &mut work);

        let node = self.nodes.get_mut(&uid).expect("present");
        node.owners = seen.owners;
        node.being_deleted = seen.being_deleted;
        node.deleting_dependents = deleting_dependents;
        node.orphaning = orphaning;
        if orphaning && !was_orphaning {
            work.push(Work::AttemptToOrphan(uid.clone()));
        }
        if deleting_dependents && !was_deleting_dependents {
            work.extend(node.dependents.iter().cloned().map(Work::AttemptToDelete));
            work.push(Work::AttemptToDelete(uid));
        }
        work
    }

    /// Records `dependent` among each owner's dependents; an owner not in
    /// the graph becomes a virtual node for the collector to verify.
    fn add_to_owners(&mut self, dependent: &Identity, owners: &[OwnerReference], work: &mut Vec<Work>) {
        let mut doubtful = false;
        for owner in owners {
            match self.nodes.get_mut(&owner.uid) {
                None => {
                    let mut node = Node::virtual_owner(Identity::of_owner(owner, dependent.namespace.as_deref()));
                    node.dependents.insert(dependent.uid.clone());
                    self.nodes.insert(owner.uid.clone(), node);
                    work.push(Work::AttemptToDelete(owner.uid.clone()));
                }
                Some(node) => {
                    node.dependents.insert(dependent.uid.clone());
                    let seen = &node.identity;
                    if seen.namespace.is_some() && seen.namespace != dependent.namespace {
                        // A namespaced owner is looked for in its
                        // dependent's namespace, where this one is not.
                        if node.observed {
                            work.push(Work::InvalidNamespace { dependent: dependent.clone(), owner: owner.clone() });
                        }
                        doubtful = true;
                    } else if seen.api_version != owner.api_version || seen.kind != owner.kind || seen.name != owner.name {
                        doubtful = true;
                    } else if !node.observed && seen.namespace.is_none() && dependent.namespace.is_some() {
                        // Named as cluster-scoped by a cluster-scoped
                        // dependent, it may be a namespaced kind: verify.
                        doubtful = true;
                    }
                }
            }
        }
        if doubtful {
            work.push(Work::AttemptToDelete(dependent.uid.clone()));
        }
    }

    fn remove_dependent(&mut self, owner: &str, dependent: &str) {
        let Some(node) = self.nodes.get_mut(owner) else { return };
        node.dependents.remove(dependent);
        if !node.observed && node.dependents.is_empty() {
            // A virtual node is only there for its dependents.
            self.nodes.remove(owner);
        }
    }

    fn delete(&mut self, uid: &str) -> Vec<Work> {
        let Some(node) = self.nodes.remove(uid) else { return Vec::new() };
        let mut work = Vec::new();
        for owner in &node.owners {
            if self.nodes.get(&owner.uid).is_some_and(|o| o.deleting_dependents) {
                // It may have been the last dependent its owner waited for.
                work.push(Work::AttemptToDelete(owner.uid.clone()));
            }
            self.remove_dependent(&owner.uid, uid);
        }
        work.extend(node.dependents.into_iter().map(Work::AttemptToDelete));
        work
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(kind: &str, namespace: Option<&str>, name: &str, uid: &str) -> Identity {
        Identity { api_version: "v1".into(), kind: kind.into(), namespace: namespace.map(String::from), name: name.into(), uid: uid.into() }
    }

    fn owner_ref(name: &str, uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: name.into(),
            uid: uid.into(),
            block_owner_deletion: Some(block),
            controller: None,
        }
    }

    fn seen(name: &str, uid: &str, owners: Vec<OwnerReference>) -> Seen {
        Seen { identity: identity("ConfigMap", Some("ns"), name, uid), owners, being_deleted: false, finalizers: vec![] }
    }

    #[test]
    fn an_unseen_owner_is_virtual_and_verified() {
        let mut graph = Graph::default();
        let work = graph.apply(Change::Upsert(seen("child", "c", vec![owner_ref("parent", "p", false)])));
        assert_eq!(work, vec![Work::AttemptToDelete("p".into())]);
        let parent = graph.node("p").unwrap();
        assert!(!parent.observed);
        assert_eq!(parent.identity.namespace.as_deref(), Some("ns"), "a virtual owner is looked for in its dependent's namespace");
        assert_eq!(graph.dependents("p").len(), 1);

        // Found absent: it goes, and its dependent is looked at again.
        assert_eq!(graph.absent("p"), vec![Work::AttemptToDelete("c".into())]);
        assert!(graph.node("p").is_none());
    }

    #[test]
    fn a_seen_owner_is_not_removed_as_absent() {
        let mut graph = Graph::default();
        graph.apply(Change::Upsert(seen("parent", "p", vec![])));
        graph.apply(Change::Upsert(seen("child", "c", vec![owner_ref("parent", "p", false)])));
        assert!(graph.absent("p").is_empty());
        assert!(graph.node("p").unwrap().observed);
    }

    #[test]
    fn deleting_an_owner_asks_about_its_dependents() {
        let mut graph = Graph::default();
        graph.apply(Change::Upsert(seen("parent", "p", vec![])));
        graph.apply(Change::Upsert(seen("child", "c", vec![owner_ref("parent", "p", false)])));
        let work = graph.apply(Change::Delete(identity("ConfigMap", Some("ns"), "parent", "p")));
        assert_eq!(work, vec![Work::AttemptToDelete("c".into())]);
    }

    #[test]
    fn foreground_deletion_asks_about_every_dependent_and_the_owner_after_each() {
        let mut graph = Graph::default();
        graph.apply(Change::Upsert(seen("parent", "p", vec![])));
        graph.apply(Change::Upsert(seen("a", "a", vec![owner_ref("parent", "p", true)])));
        graph.apply(Change::Upsert(seen("b", "b", vec![owner_ref("parent", "p", false)])));
        let mut deleting = seen("parent", "p", vec![]);
        deleting.being_deleted = true;
        deleting.finalizers = vec![FOREGROUND.into()];
        let work = graph.apply(Change::Upsert(deleting.clone()));
        assert_eq!(work, vec![Work::AttemptToDelete("a".into()), Work::AttemptToDelete("b".into()), Work::AttemptToDelete("p".into())]);
        assert_eq!(graph.blocking_dependents("p"), vec![("a".to_string(), false)]);
        // The same state again is no transition.
        assert!(graph.apply(Change::Upsert(deleting)).is_empty());
        // The blocking dependent goes: the owner is looked at again.
        let work = graph.apply(Change::Delete(identity("ConfigMap", Some("ns"), "a", "a")));
        assert_eq!(work, vec![Work::AttemptToDelete("p".into())]);
        assert!(graph.blocking_dependents("p").is_empty());
    }

    #[test]
    fn orphan_finalizer_starts_orphaning_once() {
        let mut graph = Graph::default();
        let mut deleting = seen("parent", "p", vec![]);
        deleting.being_deleted = true;
        deleting.finalizers = vec![ORPHAN.into()];
        assert_eq!(graph.apply(Change::Upsert(deleting.clone())), vec![Work::AttemptToOrphan("p".into())]);
        assert!(graph.apply(Change::Upsert(deleting)).is_empty());
    }

    #[test]
    fn a_dependent_in_another_namespace_than_its_owner_is_reported() {
        let mut graph = Graph::default();
        graph.apply(Change::Upsert(seen("parent", "p", vec![])));
        let mut child = seen("child", "c", vec![owner_ref("parent", "p", false)]);
        child.identity.namespace = Some("elsewhere".into());
        let work = graph.apply(Change::Upsert(child.clone()));
        assert_eq!(
            work,
            vec![Work::InvalidNamespace { dependent: child.identity.clone(), owner: owner_ref("parent", "p", false) }, Work::AttemptToDelete("c".into())]
        );

        // The other order: the dependent first, then the owner is seen.
        let mut graph = Graph::default();
        graph.apply(Change::Upsert(child.clone()));
        let work = graph.apply(Change::Upsert(seen("parent", "p", vec![])));
        assert_eq!(work, vec![Work::InvalidNamespace { dependent: child.identity, owner: owner_ref("parent", "p", false) }, Work::AttemptToDelete("c".into())]);
    }

    #[test]
    fn dropping_an_owner_reference_unlinks_and_unblocks() {
        let mut graph = Graph::default();
        let mut parent = seen("parent", "p", vec![]);
        parent.being_deleted = true;
        parent.finalizers = vec![FOREGROUND.into()];
        graph.apply(Change::Upsert(parent));
        graph.apply(Change::Upsert(seen("child", "c", vec![owner_ref("parent", "p", true)])));
        let work = graph.apply(Change::Upsert(seen("child", "c", vec![])));
        assert_eq!(work, vec![Work::AttemptToDelete("p".into())]);
        assert!(graph.dependents("p").is_empty());
    }

    #[test]
    fn a_relist_removes_what_it_did_not_list() {
        let mut graph = Graph::default();
        graph.apply(Change::Upsert(seen("parent", "p", vec![])));
        graph.apply(Change::Upsert(seen("child", "c", vec![owner_ref("parent", "p", false)])));
        let work = graph.apply(Change::Relisted { api_version: "v1".into(), kind: "ConfigMap".into(), listed: HashSet::from(["c".to_string()]) });
        assert_eq!(work, vec![Work::AttemptToDelete("c".into())]);
        assert!(graph.node("p").is_none());
        assert_eq!(graph.len(), 1);
    }

    #[test]
    fn identities_print_as_upstream() {
        assert_eq!(identity("Pod", Some("ns"), "web", "u1").to_string(), "[v1/Pod, namespace: ns, name: web, uid: u1]");
    }
}
