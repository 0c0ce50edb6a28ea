//! Stable names for what changes from run to run, so observations can be
//! snapshots: each address becomes the name of what owns it, generated
//! names (a ReplicaSet's hash, a pod's suffix) become placeholders, and
//! uids and timestamps become `<uid>` and `<time>`.

use std::sync::LazyLock;

use regex::Regex;

static UID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b").expect("a valid pattern"));
static TIME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z\b").expect("a valid pattern"));

/// Literal replacements, applied longest first (so 10.244.1.10 is never
/// taken for 10.244.1.1 followed by a 0), then uids and timestamps.
#[derive(Debug, Default, Clone)]
pub struct Names {
    literals: Vec<(String, String)>,
}

impl Names {
    pub fn new() -> Names {
        Names::default()
    }

    /// From now on `literal` reads as `stable`.
    pub fn insert(&mut self, literal: impl Into<String>, stable: impl Into<String>) {
        let literal = literal.into();
        if !literal.is_empty() {
            self.literals.push((literal, stable.into()));
            self.literals.sort_by_key(|(l, _)| std::cmp::Reverse(l.len()));
        }
    }

    /// Names each of `generated` (in the order given) `<prefix>-1`, `<prefix>-2`, ...
    pub fn number(&mut self, prefix: &str, generated: impl IntoIterator<Item = impl Into<String>>) {
        for (i, name) in generated.into_iter().enumerate() {
            self.insert(name, format!("{prefix}-{}", i + 1));
        }
    }

    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (literal, stable) in &self.literals {
            out = out.replace(literal.as_str(), stable);
        }
        let out = UID.replace_all(&out, "<uid>");
        TIME.replace_all(&out, "<time>").into_owned()
    }
}

/// `text`'s lines sorted, for observations whose order is not part of them.
pub fn sorted_lines(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_replace_addresses_longest_first_then_uids_and_times() {
        let mut names = Names::new();
        names.insert("10.244.1.1", "<pod a>");
        names.insert("10.244.1.10", "<pod b>");
        names.number("web-<hash>", ["web-7d4b9-xk2lp", "web-7d4b9-q9zzt"]);
        names.insert("7d4b9", "<hash>");
        let text = "10.244.1.10 10.244.1.1 web-7d4b9-q9zzt web-7d4b9 uid 0f3e2c1a-1b2c-4d5e-8f90-a1b2c3d4e5f6 at 2026-12-07T08:30:01Z";
        assert_eq!(names.apply(text), "<pod b> <pod a> web-<hash>-2 web-<hash> uid <uid> at <time>");
    }

    #[test]
    fn sorts_lines() {
        assert_eq!(sorted_lines("b\na\nc"), "a\nb\nc");
    }
}
