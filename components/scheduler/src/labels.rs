//! Label selectors and node selector terms, matched as upstream's
//! `labels.Selector` and `nodeaffinity.NodeSelector` match them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

/// Whether `labels` match `selector`. An empty selector matches
/// everything; requirements with unknown operators match nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let by_labels = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    by_labels
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
                "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
                "Exists" => labels.contains_key(&e.key),
                "DoesNotExist" => !labels.contains_key(&e.key),
                _ => false,
            }
        })
}

/// A node's identity as node selector terms see it.
pub struct NodeFields<'a> {
    pub name: &'a str,
    pub labels: &'a Labels,
}

fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let as_integer = |v: &str| v.parse::<i64>().ok();
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|w| w == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|w| w == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        // Gt and Lt take exactly one integer value, as validation demands.
        "Gt" | "Lt" => {
            let (Some(have), [bound]) = (value.and_then(as_integer), values) else { return false };
            let Some(bound) = as_integer(bound) else { return false };
            if requirement.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// One term: all its expressions (on labels) and fields (only
/// `metadata.name`) hold. A term with neither matches no node, as upstream.
pub fn term_matches(term: &NodeSelectorTerm, node: &NodeFields) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions.iter().all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| r.key == "metadata.name" && requirement_matches(r, Some(node.name)))
}

/// A node selector: any of its terms matches.
pub fn node_selector_matches(selector: &NodeSelector, node: &NodeFields) -> bool {
    selector.node_selector_terms.iter().any(|t| term_matches(t, node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement { key: key.into(), operator: operator.into(), values: Some(values.iter().map(|v| v.to_string()).collect()) }
    }

    #[test]
    fn node_selector_operators() {
        let node_labels = labels(&[("disk", "ssd"), ("cores", "8")]);
        let node = NodeFields { name: "n1", labels: &node_labels };
        let matches = |r: NodeSelectorRequirement| term_matches(&NodeSelectorTerm { match_expressions: Some(vec![r]), match_fields: None }, &node);
        assert!(matches(requirement("disk", "In", &["ssd", "nvme"])));
        assert!(!matches(requirement("disk", "NotIn", &["ssd"])));
        assert!(matches(requirement("gpu", "NotIn", &["yes"])));
        assert!(matches(requirement("disk", "Exists", &[])));
        assert!(matches(requirement("gpu", "DoesNotExist", &[])));
        assert!(matches(requirement("cores", "Gt", &["4"])));
        assert!(!matches(requirement("cores", "Lt", &["4"])));
        assert!(!matches(requirement("disk", "Gt", &["4"])));
        assert!(!matches(requirement("cores", "Gt", &["4", "5"])));
        assert!(!matches(requirement("disk", "Like", &["ssd"])));
        let by_name =
            |values: &[&str], op: &str| NodeSelectorTerm { match_expressions: None, match_fields: Some(vec![requirement("metadata.name", op, values)]) };
        assert!(term_matches(&by_name(&["n1"], "In"), &node));
        assert!(!term_matches(&by_name(&["n1"], "NotIn"), &node));
        assert!(!term_matches(&NodeSelectorTerm::default(), &node));
    }

    #[test]
    fn label_selectors() {
        let pod = labels(&[("app", "web"), ("tier", "front")]);
        let expression = |key: &str, operator: &str, values: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        };
        assert!(selector_matches(&LabelSelector::default(), &pod));
        let selector = LabelSelector { match_labels: Some(labels(&[("app", "web")])), match_expressions: Some(vec![expression("tier", "In", &["front"])]) };
        assert!(selector_matches(&selector, &pod));
        let selector = LabelSelector { match_labels: None, match_expressions: Some(vec![expression("tier", "NotIn", &["front"])]) };
        assert!(!selector_matches(&selector, &pod));
        let selector = LabelSelector { match_labels: None, match_expressions: Some(vec![expression("canary", "DoesNotExist", &[])]) };
        assert!(selector_matches(&selector, &pod));
    }
}
