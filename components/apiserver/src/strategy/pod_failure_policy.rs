//! A Job's `podFailurePolicy`: its defaults and upstream's checks of its
//! rules (an action, and either exit codes of named containers or pod
//! conditions to match on).

use serde_json::{json, Value};

use crate::status::Cause;
use crate::validation::qualified_name;

const ACTIONS: &[&str] = &["Count", "FailIndex", "FailJob", "Ignore"];
const OPERATORS: &[&str] = &["In", "NotIn"];
const STATUSES: &[&str] = &["False", "True", "Unknown"];
/// Upstream's caps on rules, exit codes and condition patterns.
const MAX_RULES: usize = 20;
const MAX_EXIT_CODES: usize = 255;
const MAX_CONDITIONS: usize = 20;

/// A condition pattern without a status matches `True` (upstream's default).
pub fn default(policy: &mut Value) {
    let Some(rules) = policy.get_mut("rules").and_then(Value::as_array_mut) else { return };
    for pattern in rules.iter_mut().filter_map(|r| r.get_mut("onPodConditions")).filter_map(Value::as_array_mut).flatten() {
        if pattern.is_object() && pattern.get("status").is_none_or(|s| s.is_null() || s == "") {
            pattern["status"] = json!("True");
        }
    }
}

/// Go's `%q` of a list of strings: `["a" "b"]`.
fn quoted(items: &[&str]) -> String {
    let inner: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", inner.join(" "))
}

fn required(field: String, valid: &[&str]) -> Cause {
    Cause { message: format!("Required value: valid values: {}", quoted(valid)), ..Cause::required(field) }
}

fn too_many(field: String, count: usize, max: usize) -> Cause {
    Cause { reason: "FieldValueTooMany", field, message: format!("Too many: {count}: must have at most {max} items") }
}

/// An invalid value upstream does not show.
fn invalid_unshown(field: String, why: &str) -> Cause {
    Cause { reason: "FieldValueInvalid", field, message: format!("Invalid value: {why}") }
}

/// The policy's checks; `spec` is the Job's spec, whose template names the
/// containers and whose `backoffLimitPerIndex` `FailIndex` needs.
pub fn validate(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let Some(policy) = spec.get("podFailurePolicy").filter(|p| !p.is_null()) else { return };
    let rules_path = format!("{path}.podFailurePolicy.rules");
    let rules = policy.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
    if rules.len() > MAX_RULES {
        causes.push(too_many(rules_path.clone(), rules.len(), MAX_RULES));
    }
    let template = spec.pointer("/template/spec");
    let names: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .filter_map(|list| template.and_then(|t| t.get(*list)).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let per_index = spec.get("backoffLimitPerIndex").is_some_and(|v| !v.is_null());
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("{rules_path}[{i}]");
        match rule.get("action").and_then(Value::as_str).unwrap_or("") {
            "" => causes.push(required(format!("{at}.action"), ACTIONS)),
            "FailIndex" if !per_index => {
                causes.push(Cause::invalid(format!("{at}.action"), &json!("FailIndex"), "requires the backoffLimitPerIndex to be set"))
            }
            action if !ACTIONS.contains(&action) => causes.push(Cause::not_supported(format!("{at}.action"), &json!(action), ACTIONS)),
            _ => {}
        }
        let exit_codes = rule.get("onExitCodes").filter(|v| !v.is_null());
        let conditions = rule.get("onPodConditions").and_then(Value::as_array).filter(|c| !c.is_empty());
        if let Some(requirement) = exit_codes {
            validate_exit_codes(requirement, &format!("{at}.onExitCodes"), &names, causes);
        }
        if let Some(patterns) = conditions {
            validate_conditions(patterns, &format!("{at}.onPodConditions"), causes);
        }
        match (exit_codes.is_some(), conditions.is_some()) {
            (true, true) => causes.push(invalid_unshown(at, "specifying both OnExitCodes and OnPodConditions is not supported")),
            (false, false) => causes.push(invalid_unshown(at, "specifying one of OnExitCodes and OnPodConditions is required")),
            _ => {}
        }
    }
}

fn validate_exit_codes(requirement: &Value, at: &str, names: &[&str], causes: &mut Vec<Cause>) {
    let operator = requirement.get("operator").and_then(Value::as_str).unwrap_or("");
    match operator {
        "" => causes.push(required(format!("{at}.operator"), OPERATORS)),
        op if !OPERATORS.contains(&op) => causes.push(Cause::not_supported(format!("{at}.operator"), &json!(op), OPERATORS)),
        _ => {}
    }
    if let Some(name) = requirement.get("containerName").and_then(Value::as_str) {
        if !names.contains(&name) {
            causes.push(Cause::invalid(format!("{at}.containerName"), &json!(name), "must be one of the container or initContainer names in the pod template"));
        }
    }
    let values_path = format!("{at}.values");
    let values: Vec<i64> = requirement.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_i64).collect();
    if values.is_empty() {
        causes.push(Cause::invalid(values_path.clone(), &json!(values), "at least one value is required"));
    } else if values.len() > MAX_EXIT_CODES {
        causes.push(too_many(values_path.clone(), values.len(), MAX_EXIT_CODES));
    }
    for (j, value) in values.iter().enumerate() {
        if operator == "In" && *value == 0 {
            causes.push(Cause::invalid(format!("{values_path}[{j}]"), &json!(value), "must not be 0 for the In operator"));
        }
        if values[..j].contains(value) {
            causes.push(Cause::duplicate(format!("{values_path}[{j}]"), &json!(value)));
        }
    }
    if values.windows(2).any(|pair| pair[0] > pair[1]) {
        causes.push(Cause::invalid(values_path, &json!(values), "must be ordered"));
    }
}

fn validate_conditions(patterns: &[Value], at: &str, causes: &mut Vec<Cause>) {
    if patterns.len() > MAX_CONDITIONS {
        causes.push(too_many(at.to_string(), patterns.len(), MAX_CONDITIONS));
    }
    for (j, pattern) in patterns.iter().enumerate() {
        let kind = pattern.get("type").and_then(Value::as_str).unwrap_or("");
        if let Some(why) = qualified_name(kind) {
            causes.push(Cause::invalid(format!("{at}[{j}].type"), &json!(kind), why));
        }
        match pattern.get("status").and_then(Value::as_str).unwrap_or("") {
            "" => causes.push(required(format!("{at}[{j}].status"), STATUSES)),
            status if !STATUSES.contains(&status) => causes.push(Cause::not_supported(format!("{at}[{j}].status"), &json!(status), STATUSES)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(spec: Value) -> Vec<String> {
        let mut causes = Vec::new();
        validate(&spec, "spec", &mut causes);
        causes.iter().map(Cause::line).collect()
    }

    fn spec(rules: Value) -> Value {
        json!({"podFailurePolicy": {"rules": rules}, "template": {"spec": {"containers": [{"name": "main"}]}}})
    }

    #[test]
    fn good_rules_pass_and_statuses_default_to_true() {
        let mut s = spec(json!([
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [1, 42]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]));
        default(&mut s["podFailurePolicy"]);
        assert_eq!(s["podFailurePolicy"]["rules"][1]["onPodConditions"][0]["status"], "True");
        assert!(lines(s).is_empty());
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let s = spec(json!([
            {"action": "FailIndex", "onExitCodes": {"containerName": "other", "operator": "In", "values": [0, 3, 2, 3]}},
            {"action": "Stop", "onPodConditions": [{"type": "Ready", "status": "Maybe"}]},
            {"action": "Count"},
        ]));
        assert_eq!(
            lines(s),
            [
                "spec.podFailurePolicy.rules[0].action: Invalid value: \"FailIndex\": requires the backoffLimitPerIndex to be set",
                "spec.podFailurePolicy.rules[0].onExitCodes.containerName: Invalid value: \"other\": must be one of the container or initContainer names in the pod template",
                "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator",
                "spec.podFailurePolicy.rules[0].onExitCodes.values[3]: Duplicate value: 3",
                "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: [0,3,2,3]: must be ordered",
                "spec.podFailurePolicy.rules[1].action: Unsupported value: \"Stop\": supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\"",
                "spec.podFailurePolicy.rules[1].onPodConditions[0].status: Unsupported value: \"Maybe\": supported values: \"False\", \"True\", \"Unknown\"",
                "spec.podFailurePolicy.rules[2]: Invalid value: specifying one of OnExitCodes and OnPodConditions is required",
            ]
        );
        let s = spec(json!([{"onExitCodes": {"values": []}, "onPodConditions": [{"type": "Ready", "status": "True"}]}]));
        assert_eq!(
            lines(s),
            [
                "spec.podFailurePolicy.rules[0].action: Required value: valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]",
                "spec.podFailurePolicy.rules[0].onExitCodes.operator: Required value: valid values: [\"In\" \"NotIn\"]",
                "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: []: at least one value is required",
                "spec.podFailurePolicy.rules[0]: Invalid value: specifying both OnExitCodes and OnPodConditions is not supported",
            ]
        );
    }
}
