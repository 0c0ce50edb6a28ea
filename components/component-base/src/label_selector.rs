//! `metav1.LabelSelector` matching, as upstream's
//! `LabelSelectorAsSelector` reads it: every `matchLabels` pair and every
//! `matchExpressions` requirement must hold. Controllers use it to find
//! their pods, the scheduler for affinity terms.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// Why a selector cannot be used (upstream refuses these at validation;
/// a controller that meets one selects nothing, as upstream's does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector: {0}")]
pub struct Invalid(String);

/// A parsed selector. `Nothing` matches no object (upstream's
/// `labels.Nothing()`, for a nil selector); an empty selector matches all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Nothing,
    Requirements(Vec<Requirement>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    /// The selector a `LabelSelector` means; None (absent) selects nothing.
    pub fn parse(selector: Option<&LabelSelector>) -> Result<Selector, Invalid> {
        let Some(selector) = selector else { return Ok(Selector::Nothing) };
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::In(key.clone(), vec![value.clone()]));
        }
        for expression in selector.match_expressions.iter().flatten() {
            requirements.push(requirement(expression)?);
        }
        Ok(Selector::Requirements(requirements))
    }

    /// The selector of an equality map (a Service's or a
    /// ReplicationController's `selector`; upstream's
    /// `SelectorFromSet`): every pair must be a label of the object.
    /// None (absent) selects nothing.
    pub fn from_set(set: Option<&BTreeMap<String, String>>) -> Selector {
        match set {
            Some(set) => Selector::Requirements(set.iter().map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()])).collect()),
            None => Selector::Nothing,
        }
    }

    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let empty = BTreeMap::new();
        let labels = labels.unwrap_or(&empty);
        match self {
            Selector::Nothing => false,
            Selector::Requirements(requirements) => requirements.iter().all(|r| r.matches(labels)),
        }
    }

    /// Whether it selects every object (an empty selector).
    pub fn is_everything(&self) -> bool {
        matches!(self, Selector::Requirements(r) if r.is_empty())
    }
}

fn requirement(expression: &LabelSelectorRequirement) -> Result<Requirement, Invalid> {
    let key = expression.key.clone();
    let values = expression.values.clone().unwrap_or_default();
    match expression.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => Err(Invalid(format!("{key}: values must be non-empty for operator {}", expression.operator))),
        "In" => Ok(Requirement::In(key, values)),
        "NotIn" => Ok(Requirement::NotIn(key, values)),
        "Exists" | "DoesNotExist" if !values.is_empty() => Err(Invalid(format!("{key}: values must be empty for operator {}", expression.operator))),
        "Exists" => Ok(Requirement::Exists(key)),
        "DoesNotExist" => Ok(Requirement::DoesNotExist(key)),
        other => Err(Invalid(format!("{other:?} is not a valid label selector operator"))),
    }
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: if values.is_empty() { None } else { Some(values.iter().map(|v| v.to_string()).collect()) },
        }
    }

    #[test]
    fn labels_and_expressions_must_all_hold() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                expression("tier", "In", &["a", "b"]),
                expression("canary", "DoesNotExist", &[]),
                expression("env", "NotIn", &["prod"]),
            ]),
        };
        let s = Selector::parse(Some(&selector)).unwrap();
        assert!(s.matches(Some(&labels(&[("app", "web"), ("tier", "a")]))));
        assert!(s.matches(Some(&labels(&[("app", "web"), ("tier", "b"), ("env", "dev")]))));
        assert!(!s.matches(Some(&labels(&[("app", "web"), ("tier", "c")]))));
        assert!(!s.matches(Some(&labels(&[("app", "web"), ("tier", "a"), ("canary", "")]))));
        assert!(!s.matches(Some(&labels(&[("app", "web"), ("tier", "a"), ("env", "prod")]))));
        assert!(!s.matches(None));
    }

    #[test]
    fn absent_selects_nothing_and_empty_selects_everything() {
        assert!(!Selector::parse(None).unwrap().matches(Some(&labels(&[("a", "b")]))));
        let empty = Selector::parse(Some(&LabelSelector::default())).unwrap();
        assert!(empty.is_everything() && empty.matches(None));
    }

    #[test]
    fn a_set_is_equality_on_every_pair() {
        let s = Selector::from_set(Some(&labels(&[("app", "web"), ("tier", "a")])));
        assert!(s.matches(Some(&labels(&[("app", "web"), ("tier", "a"), ("x", "y")]))));
        assert!(!s.matches(Some(&labels(&[("app", "web")]))));
        assert!(!s.matches(Some(&labels(&[("app", "web"), ("tier", "b")]))));
        assert!(!Selector::from_set(None).matches(Some(&labels(&[("a", "b")]))));
    }

    #[test]
    fn bad_operators_and_values_are_refused() {
        let bad = |e| Selector::parse(Some(&LabelSelector { match_expressions: Some(vec![e]), ..Default::default() })).unwrap_err().to_string();
        assert!(bad(expression("k", "Near", &["x"])).contains("\"Near\" is not a valid"));
        assert!(bad(expression("k", "In", &[])).contains("values must be non-empty"));
        assert!(bad(expression("k", "Exists", &["x"])).contains("values must be empty"));
    }
}
