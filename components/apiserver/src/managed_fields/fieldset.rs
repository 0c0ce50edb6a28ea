//! Field sets: which fields of an object somebody manages, as server-side
//! apply records them in `metadata.managedFields[].fieldsV1`.
//!
//! A path is a list of elements written as fieldsV1 writes them:
//! `f:<name>` for a field, `k:<key fields as JSON>` for an item of a list
//! keyed by some of its fields (containers by name), `v:<JSON>` for an item
//! of a set (finalizers), `i:<index>` for a position. A set holds the paths
//! that are members; a path may be a member and also have members below it
//! (fieldsV1 marks that with a `.` key).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::schema::{self, ListKind};

pub type Path = Vec<String>;

pub fn field(name: &str) -> String {
    format!("f:{name}")
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeSet<Path>);

impl FieldSet {
    pub fn new() -> Self {
        FieldSet::default()
    }
    pub fn insert(&mut self, path: Path) {
        self.0.insert(path);
    }
    pub fn contains(&self, path: &Path) -> bool {
        self.0.contains(path)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Path> {
        self.0.iter()
    }
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.union(&other.0).cloned().collect())
    }
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.difference(&other.0).cloned().collect())
    }
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.intersection(&other.0).cloned().collect())
    }

    /// Whether `prefix` or anything below it is a member. Paths sharing a
    /// prefix sort next to each other, right after the prefix.
    pub fn has_within(&self, prefix: &Path) -> bool {
        self.0.range(prefix.clone()..).next().is_some_and(|p| p.starts_with(prefix))
    }

    /// The set without the paths in `exact` and without everything at or
    /// below the paths in `subtrees`.
    pub fn without(&self, exact: &[Path], subtrees: &[Path]) -> FieldSet {
        FieldSet(self.0.iter().filter(|p| !exact.contains(p) && !subtrees.iter().any(|s| p.starts_with(s))).cloned().collect())
    }

    /// The fieldsV1 form: nested objects keyed by path elements, `{}` for a
    /// member without members below it, `".": {}` for one with.
    pub fn to_fields_v1(&self) -> Value {
        #[derive(Default)]
        struct Tree {
            member: bool,
            children: BTreeMap<String, Tree>,
        }
        fn render(t: &Tree) -> Value {
            let mut m = Map::new();
            if t.member && !t.children.is_empty() {
                m.insert(".".into(), json!({}));
            }
            for (k, c) in &t.children {
                m.insert(k.clone(), render(c));
            }
            Value::Object(m)
        }
        let mut root = Tree::default();
        for path in &self.0 {
            let mut node = &mut root;
            for e in path {
                node = node.children.entry(e.clone()).or_default();
            }
            node.member = true;
        }
        render(&root)
    }

    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        fn walk(v: &Value, path: &mut Path, out: &mut FieldSet) -> Result<(), String> {
            let m = v.as_object().ok_or_else(|| format!("expected an object at {}", display(path)))?;
            if m.is_empty() && !path.is_empty() {
                out.insert(path.clone());
            }
            for (k, child) in m {
                if k == "." {
                    if !path.is_empty() {
                        out.insert(path.clone());
                    }
                    continue;
                }
                parse(k)?;
                path.push(k.clone());
                walk(child, path, out)?;
                path.pop();
            }
            Ok(())
        }
        let mut out = FieldSet::new();
        walk(v, &mut Vec::new(), &mut out)?;
        Ok(out)
    }
}

impl FromIterator<Path> for FieldSet {
    fn from_iter<I: IntoIterator<Item = Path>>(iter: I) -> Self {
        FieldSet(iter.into_iter().collect())
    }
}

/// One path element, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Element {
    Field(String),
    Key(Map<String, Value>),
    Value(Value),
    Index(usize),
}

pub fn parse(e: &str) -> Result<Element, String> {
    let bad = || format!("invalid path element {e:?}");
    let (kind, rest) = e.split_once(':').ok_or_else(bad)?;
    match kind {
        "f" => Ok(Element::Field(rest.to_string())),
        "k" => match serde_json::from_str::<Value>(rest) {
            Ok(Value::Object(m)) => Ok(Element::Key(m)),
            _ => Err(bad()),
        },
        "v" => serde_json::from_str(rest).map(Element::Value).map_err(|_| bad()),
        "i" => rest.parse().map(Element::Index).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// A path as upstream prints it in conflicts:
/// `.spec.template.spec.containers[name="web"].image`.
pub fn display(path: &[String]) -> String {
    let mut out = String::new();
    for e in path {
        match parse(e) {
            Ok(Element::Field(f)) => {
                out.push('.');
                out.push_str(&f);
            }
            Ok(Element::Key(m)) => {
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            Ok(Element::Value(v)) => out.push_str(&format!("[={v}]")),
            Ok(Element::Index(i)) => out.push_str(&format!("[{i}]")),
            Err(_) => out.push_str(e),
        }
    }
    out
}

/// What is at a path of an object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Node<'a> {
    /// A scalar, null, an atomic list or map, or an item of a set: compared
    /// and owned whole.
    Leaf(&'a Value),
    /// An object whose fields are tracked one by one.
    Map { empty: bool },
    /// A list whose items are tracked one by one.
    List,
    /// An item of a keyed list.
    Item,
}

/// Every path of an object with what is there.
pub fn walk(obj: &Value) -> BTreeMap<Path, Node<'_>> {
    let mut out = BTreeMap::new();
    if let Some(m) = obj.as_object() {
        walk_map(&mut Vec::new(), m, &mut out);
    }
    out
}

fn walk_map<'a>(path: &mut Path, m: &'a Map<String, Value>, out: &mut BTreeMap<Path, Node<'a>>) {
    for (k, v) in m {
        path.push(field(k));
        walk_value(path, v, out);
        path.pop();
    }
}

fn walk_value<'a>(path: &mut Path, v: &'a Value, out: &mut BTreeMap<Path, Node<'a>>) {
    match v {
        Value::Object(m) if !schema::atomic_map(path, m) => {
            out.insert(path.clone(), Node::Map { empty: m.is_empty() });
            walk_map(path, m, out);
        }
        Value::Array(items) => match schema::list_kind(path, items) {
            ListKind::Keyed(keys) => {
                out.insert(path.clone(), Node::List);
                for item in items {
                    let Some(e) = key_element(keys, item) else { continue };
                    path.push(e);
                    out.insert(path.clone(), Node::Item);
                    if let Some(m) = item.as_object() {
                        walk_map(path, m, out);
                    }
                    path.pop();
                }
            }
            ListKind::Set => {
                out.insert(path.clone(), Node::List);
                for item in items {
                    path.push(format!("v:{item}"));
                    out.insert(path.clone(), Node::Leaf(item));
                    path.pop();
                }
            }
            ListKind::Atomic => {
                out.insert(path.clone(), Node::Leaf(v));
            }
        },
        _ => {
            out.insert(path.clone(), Node::Leaf(v));
        }
    }
}

/// The `k:` element of an item of a keyed list; a key field the item leaves
/// out takes its schema default (a port's protocol is TCP). None when the
/// item has none of the keys.
pub fn key_element(keys: &[&str], item: &Value) -> Option<String> {
    let mut fields = BTreeMap::new();
    for k in keys {
        match item.get(*k).filter(|v| !v.is_null()) {
            Some(v) => {
                fields.insert(*k, v.clone());
            }
            None => {
                if let Some(d) = schema::key_default(k) {
                    fields.insert(*k, d);
                }
            }
        }
    }
    if keys.iter().all(|k| item.get(*k).is_none()) {
        return None;
    }
    Some(format!("k:{}", serde_json::to_string(&fields).expect("JSON values serialize")))
}

/// The fieldsV1 of every path of `obj` but the `exact` ones and those in
/// `subtrees`: what the writer of a new object owns. The same as
/// `walk` + `FieldSet::to_fields_v1`, built in one pass because every
/// create comes here.
pub fn all_fields_v1(obj: &Value, exact: &[Path], subtrees: &[Path]) -> Value {
    let mut path = Vec::new();
    let mut out = Map::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            path.push(field(k));
            if let Some(node) = node_v1(&mut path, v, exact, subtrees) {
                out.insert(field(k), node);
            }
            path.pop();
        }
    }
    Value::Object(out)
}

fn node_v1(path: &mut Path, v: &Value, exact: &[Path], subtrees: &[Path]) -> Option<Value> {
    if subtrees.iter().any(|s| path.starts_with(s)) {
        return None;
    }
    let member = !exact.iter().any(|e| e == path);
    let mut children = Map::new();
    let child = |path: &mut Path, element: String, value: Option<&Value>, children: &mut Map<String, Value>| {
        path.push(element);
        let node = match value {
            Some(v) => node_v1(path, v, exact, subtrees),
            None => Some(json!({})),
        };
        if let Some(n) = node {
            children.insert(path.last().expect("pushed").clone(), n);
        }
        path.pop();
    };
    match v {
        Value::Object(m) if !schema::atomic_map(path, m) => {
            for (k, cv) in m {
                child(path, field(k), Some(cv), &mut children);
            }
        }
        Value::Array(items) => match schema::list_kind(path, items) {
            ListKind::Keyed(keys) => {
                for item in items {
                    if let Some(e) = key_element(keys, item) {
                        // An item is a member itself, with its fields below.
                        path.push(e.clone());
                        let mut node = match item.as_object() {
                            Some(m) => {
                                let mut inner = Map::new();
                                for (k, cv) in m {
                                    child(path, field(k), Some(cv), &mut inner);
                                }
                                inner
                            }
                            None => Map::new(),
                        };
                        path.pop();
                        if !node.is_empty() {
                            node.insert(".".into(), json!({}));
                        }
                        children.insert(e, Value::Object(node));
                    }
                }
            }
            ListKind::Set => {
                for item in items {
                    child(path, format!("v:{item}"), None, &mut children);
                }
            }
            ListKind::Atomic => {}
        },
        _ => {}
    }
    match (children.is_empty(), member) {
        (true, true) => Some(json!({})),
        (true, false) => None,
        (false, m) => {
            if m {
                children.insert(".".into(), json!({}));
            }
            Some(Value::Object(children))
        }
    }
}

/// The fields an applied configuration sets, as upstream's `ToFieldSet`:
/// scalars, atomic values, items of keyed lists and sets, empty objects.
pub fn applied_set(config: &Value) -> FieldSet {
    walk(config).into_iter().filter(|(_, n)| matches!(n, Node::Leaf(_) | Node::Item | Node::Map { empty: true })).map(|(p, _)| p).collect()
}

/// How two versions of an object differ, as upstream's `Compare`: paths
/// only in `new` (added), only in `old` (removed), and leaves whose value
/// changed (modified).
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: FieldSet,
    pub removed: FieldSet,
    pub modified: FieldSet,
}

pub fn compare(old: &Value, new: &Value) -> Comparison {
    let (a, b) = (walk(old), walk(new));
    let mut c = Comparison::default();
    for (p, n) in &b {
        match a.get(p) {
            None => c.added.insert(p.clone()),
            Some(o) => {
                let same = match (o, n) {
                    (Node::Leaf(x), Node::Leaf(y)) => x == y,
                    (Node::Map { .. }, Node::Map { .. }) | (Node::List, Node::List) | (Node::Item, Node::Item) => true,
                    _ => false,
                };
                if !same {
                    c.modified.insert(p.clone());
                }
            }
        }
    }
    for p in a.keys() {
        if !b.contains_key(p) {
            c.removed.insert(p.clone());
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[&str]) -> Path {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn an_applied_deployment_owns_its_leaves_and_items() {
        let config = json!({
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]}]}}
            }
        });
        let set = applied_set(&config);
        let c = r#"k:{"name":"nginx"}"#;
        assert!(set.contains(&p(&["f:spec", "f:replicas"])));
        // A LabelSelector is atomic: owned whole.
        assert!(set.contains(&p(&["f:spec", "f:selector"])));
        assert!(!set.contains(&p(&["f:spec", "f:selector", "f:matchLabels"])));
        assert!(set.contains(&p(&["f:spec", "f:template", "f:spec", "f:containers", c])));
        assert!(set.contains(&p(&["f:spec", "f:template", "f:spec", "f:containers", c, "f:image"])));
        // The protocol a port leaves out is part of its key.
        let port = r#"k:{"containerPort":80,"protocol":"TCP"}"#;
        assert!(set.contains(&p(&["f:spec", "f:template", "f:spec", "f:containers", c, "f:ports", port, "f:containerPort"])));
        assert!(!set.contains(&p(&["f:spec"])));
    }

    #[test]
    fn fields_v1_round_trips_with_dot_for_inner_members() {
        let mut set = FieldSet::new();
        set.insert(p(&["f:metadata", "f:labels"]));
        set.insert(p(&["f:metadata", "f:labels", "f:app"]));
        set.insert(p(&["f:spec", "f:replicas"]));
        let v = set.to_fields_v1();
        assert_eq!(v, json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:replicas": {}}}));
        assert_eq!(FieldSet::from_fields_v1(&v).unwrap(), set);
        assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_err());
    }

    #[test]
    fn paths_print_as_upstream() {
        let path = p(&["f:spec", "f:containers", r#"k:{"name":"web"}"#, "f:image"]);
        assert_eq!(display(&path), r#".spec.containers[name="web"].image"#);
        assert_eq!(display(&p(&["f:metadata", "f:finalizers", r#"v:"a""#])), r#".metadata.finalizers[="a"]"#);
    }

    #[test]
    fn compare_finds_added_removed_and_modified() {
        let old = json!({"spec": {"replicas": 1, "paused": false}});
        let new = json!({"spec": {"replicas": 2, "strategy": {"type": "Recreate"}}});
        let c = compare(&old, &new);
        assert!(c.modified.contains(&p(&["f:spec", "f:replicas"])));
        assert!(c.removed.contains(&p(&["f:spec", "f:paused"])));
        assert!(c.added.contains(&p(&["f:spec", "f:strategy"])));
        assert!(c.added.contains(&p(&["f:spec", "f:strategy", "f:type"])));
        assert!(!c.modified.contains(&p(&["f:spec"])));
    }

    #[test]
    fn the_one_pass_builder_agrees_with_walk() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "d", "labels": {"a": "b"}, "finalizers": ["x"], "annotations": {}},
            "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}], "env": [{"name": "E", "value": "v"}],
                                     "command": ["sleep", "1"], "resources": {}}],
                     "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": "k"}]}},
                     "restartPolicy": "Always"},
            "status": {"phase": "Pending"}
        });
        let exact = vec![vec![field("metadata")], vec![field("metadata"), field("name")], vec![field("apiVersion")], vec![field("kind")]];
        let subtrees = vec![vec![field("status")]];
        let slow: FieldSet = walk(&pod).into_keys().collect::<FieldSet>().without(&exact, &subtrees);
        assert_eq!(all_fields_v1(&pod, &exact, &subtrees), slow.to_fields_v1());
    }

    #[test]
    fn has_within_sees_descendants_only() {
        let mut set = FieldSet::new();
        set.insert(p(&["f:spec", "f:template", "f:x"]));
        assert!(set.has_within(&p(&["f:spec"])));
        assert!(set.has_within(&p(&["f:spec", "f:template"])));
        assert!(!set.has_within(&p(&["f:spec", "f:replicas"])));
        assert!(!set.has_within(&p(&["f:status"])));
    }
}
