//! Label and field selectors, parsed from query strings as upstream reads
//! them: `app=web,tier!=db,env in (a,b),!canary` and `spec.nodeName=n1`.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Equals(String),
    NotEquals(String),
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
}

/// A conjunction of requirements; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector(pub Vec<Requirement>);

/// Upstream's string form: requirements sorted, `in` values sorted.
impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let join = |vs: &BTreeSet<String>| vs.iter().cloned().collect::<Vec<_>>().join(",");
        let mut parts: Vec<String> = self
            .0
            .iter()
            .map(|r| match &r.op {
                Op::Equals(v) => format!("{}={v}", r.key),
                Op::NotEquals(v) => format!("{}!={v}", r.key),
                Op::In(vs) => format!("{} in ({})", r.key, join(vs)),
                Op::NotIn(vs) => format!("{} notin ({})", r.key, join(vs)),
                Op::Exists => r.key.clone(),
                Op::DoesNotExist => format!("!{}", r.key),
            })
            .collect();
        parts.sort();
        f.write_str(&parts.join(","))
    }
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Matches against a lookup of key → value (labels, or field values).
    pub fn matches<V: AsRef<str>>(&self, get: impl Fn(&str) -> Option<V>) -> bool {
        self.0.iter().all(|r| {
            let v = get(&r.key);
            let v = v.as_ref().map(AsRef::as_ref);
            match &r.op {
                Op::Equals(x) => v == Some(x.as_str()),
                // Upstream: `!=` also matches objects without the key.
                Op::NotEquals(x) => v != Some(x.as_str()),
                Op::In(set) => v.is_some_and(|v| set.contains(v)),
                Op::NotIn(set) => !v.is_some_and(|v| set.contains(v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
            }
        })
    }

    pub fn matches_labels(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.matches(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str))
    }
}

/// Splits on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn set_of(values: &str) -> Result<BTreeSet<String>, String> {
    let inner = values
        .trim()
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised list of values, found {values:?}"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a key must be non-empty".into());
    }
    if let Some(why) = crate::validation::qualified_name(key) {
        return Err(format!("key {key:?}: {why}"));
    }
    Ok(())
}

pub fn parse_labels(s: &str) -> Result<Selector, String> {
    let mut reqs = Vec::new();
    for part in split_top(s) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let req = if let Some(key) = part.strip_prefix('!') {
            Requirement { key: key.trim().to_string(), op: Op::DoesNotExist }
        } else if let Some((k, v)) = part.split_once("!=") {
            Requirement { key: k.trim().into(), op: Op::NotEquals(v.trim().into()) }
        } else if let Some((k, v)) = part.split_once("==") {
            Requirement { key: k.trim().into(), op: Op::Equals(v.trim().into()) }
        } else if let Some((k, v)) = part.split_once('=') {
            Requirement { key: k.trim().into(), op: Op::Equals(v.trim().into()) }
        } else if let Some((k, v)) = part.split_once(" notin ") {
            Requirement { key: k.trim().into(), op: Op::NotIn(set_of(v)?) }
        } else if let Some((k, v)) = part.split_once(" in ") {
            Requirement { key: k.trim().into(), op: Op::In(set_of(v)?) }
        } else if part.contains(|c: char| c.is_whitespace() || "()<>".contains(c)) {
            return Err(format!("unable to parse requirement: {part:?}"));
        } else {
            Requirement { key: part.to_string(), op: Op::Exists }
        };
        check_key(&req.key)?;
        if let Op::Equals(v) | Op::NotEquals(v) = &req.op {
            if let Some(why) = crate::validation::label_value(v) {
                return Err(format!("invalid label value: {v:?}: {why}"));
            }
        }
        reqs.push(req);
    }
    Ok(Selector(reqs))
}

/// Field selectors know only `=`, `==` and `!=`; the caller checks that
/// each key is one the resource supports.
pub fn parse_fields(s: &str) -> Result<Selector, String> {
    let mut reqs = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let req = if let Some((k, v)) = part.split_once("!=") {
            Requirement { key: k.trim().into(), op: Op::NotEquals(v.trim().into()) }
        } else if let Some((k, v)) = part.split_once("==") {
            Requirement { key: k.trim().into(), op: Op::Equals(v.trim().into()) }
        } else if let Some((k, v)) = part.split_once('=') {
            Requirement { key: k.trim().into(), op: Op::Equals(v.trim().into()) }
        } else {
            return Err(format!("invalid selector: '{s}'; can't understand '{part}'"));
        };
        reqs.push(req);
    }
    Ok(Selector(reqs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn every_operator() {
        let l = labels(json!({"app": "web", "env": "prod"}));
        let m = |s: &str| parse_labels(s).unwrap().matches_labels(Some(&l));
        assert!(m("app=web"));
        assert!(m("app==web"));
        assert!(!m("app!=web"));
        assert!(m("tier!=db"));
        assert!(m("env in (prod, staging)"));
        assert!(!m("env notin (prod)"));
        assert!(m("app"));
        assert!(m("!canary"));
        assert!(!m("!app"));
        assert!(m("app=web,env in (prod)"));
        assert!(m(""));
    }

    #[test]
    fn bad_selectors_are_errors() {
        assert!(parse_labels("app=(x").is_err());
        assert!(parse_labels("a b").is_err());
        assert!(parse_fields("metadata.name").is_err());
    }
}
