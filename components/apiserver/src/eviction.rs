//! pods/eviction: a pod deleted only if its PodDisruptionBudget allows, as
//! upstream's eviction subresource decides. The budget's status (written
//! by the disruption controller) says how many disruptions are allowed;
//! an eviction takes one by writing the budget back on the revision it
//! read, so two evictions never spend the same disruption.

use std::time::Duration;

use serde_json::{json, Value};

use crate::meta;
use crate::registry::{DeleteOptions, ListOptions, Registry};
use crate::resources::{self, Resource};
use crate::status::{ApiError, ApiResult, Subject};
use crate::strategy::apps::label_selector;

/// Upstream's bound on `status.disruptedPods`: past it, evictions the
/// controller has not yet confirmed are too many.
const MAX_DISRUPTED_PODS: usize = 2000;

/// Tries when the pod changes under a delete with a resourceVersion
/// precondition, and the pause between them (upstream: 20 × 0.5 s).
const DELETE_TRIES: u32 = 20;
const DELETE_PAUSE: Duration = Duration::from_millis(500);

const VIOLATES: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn pods() -> &'static Resource {
    resources::find("", "v1", "pods").expect("pods are in the table")
}

fn budgets() -> &'static Resource {
    resources::find("policy", "v1", "poddisruptionbudgets").expect("poddisruptionbudgets are in the table")
}

/// Evicts pod `name` of `namespace` as `eviction` (a policy/v1 or v1beta1
/// Eviction) asks; the Status to answer with.
pub async fn evict(registry: &Registry, namespace: &str, name: &str, eviction: &Value, dry_run: bool) -> ApiResult<Value> {
    let mut options = options_of(eviction, name)?;
    options.dry_run |= dry_run;
    let user_precondition = options.resource_version.is_some();

    // A pod that is not running yet, has finished or is going anyway
    // disrupts nothing more by going: deleted with no budget asked. A pod
    // still pending is deleted only as it was read, so it cannot turn
    // running (and budgeted) meanwhile.
    let mut tries = 0;
    let pod = loop {
        let pod = registry.get(pods(), Some(namespace), name).await?;
        if !budget_ignored(&pod) {
            break pod;
        }
        let mut delete = options.clone();
        if precondition_needed(&pod) && !user_precondition {
            delete.resource_version = meta::resource_version(&pod).map(str::to_string);
        }
        match registry.delete(pods(), Some(namespace), name, &delete).await {
            Ok(_) => return Ok(success()),
            Err(e) if e.code == 409 && !user_precondition && tries + 1 < DELETE_TRIES => {
                tries += 1;
                tokio::time::sleep(DELETE_PAUSE).await;
            }
            Err(e) => return Err(e),
        }
    };

    let mut matching = budgets_of(registry, namespace, &pod).await?;
    if matching.len() > 1 {
        return Err(ApiError::plain("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."));
    }
    let Some(budget) = matching.pop() else {
        registry.delete(pods(), Some(namespace), name, &options).await?;
        return Ok(success());
    };
    let budget_name = meta::name(&budget).to_string();

    // An unready pod counts for nothing in the budget: it goes without
    // spending a disruption when the policy says so, or the budget is met
    // without it; only as it was read, so it cannot turn ready meanwhile.
    if !is_ready(&pod) && unready_may_go(&budget) {
        let mut delete = options.clone();
        if !user_precondition {
            delete.resource_version = meta::resource_version(&pod).map(str::to_string);
        }
        return match registry.delete(pods(), Some(namespace), name, &delete).await {
            Ok(_) => Ok(success()),
            Err(e) if e.code == 409 && !user_precondition => Err(still_processing(&budget_name)),
            Err(e) => Err(e),
        };
    }

    if options.dry_run {
        take_disruption(&mut budget.clone(), name)?;
    } else {
        registry.guaranteed_update(budgets(), Some(namespace), &budget_name, |budget| take_disruption(budget, name)).await?;
    }
    registry.delete(pods(), Some(namespace), name, &options).await?;
    Ok(success())
}

fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

/// The Eviction's own checks, and the delete options it carries.
fn options_of(eviction: &Value, name: &str) -> ApiResult<DeleteOptions> {
    let version = eviction.get("apiVersion").and_then(Value::as_str).unwrap_or("policy/v1");
    if !matches!(version, "policy/v1" | "policy/v1beta1") {
        return Err(ApiError::bad_request(format!("the API version in the data ({version}) does not match the expected API version (policy/v1)")));
    }
    if let Some(kind) = eviction.get("kind").and_then(Value::as_str).filter(|k| *k != "Eviction") {
        return Err(ApiError::bad_request(format!("the kind in the data ({kind}) does not match the expected kind (Eviction)")));
    }
    // v1beta1's Eviction has the same fields as v1's.
    let mut typed = eviction.clone();
    typed["apiVersion"] = json!("policy/v1");
    typed["kind"] = json!("Eviction");
    resources::decodes_as::<k8s_openapi::api::policy::v1::Eviction>(&typed)
        .map_err(|why| ApiError::bad_request(format!("Eviction in version \"v1\" cannot be handled as a Eviction: {why}")))?;
    if meta::name(eviction) != name {
        return Err(ApiError::bad_request("name in URL does not match name in Eviction object"));
    }
    let mut options = DeleteOptions::default();
    if let Some(given) = eviction.get("deleteOptions").filter(|o| o.is_object()) {
        crate::handlers::delete_options_from(given, &mut options);
    }
    Ok(options)
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")
}

fn being_deleted(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

/// Upstream's `canIgnorePDB`: finished, pending or being deleted.
fn budget_ignored(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending") || being_deleted(pod)
}

/// Whether a pod deleted without asking its budget must be deleted as it
/// was read: all but those finished or already going.
fn precondition_needed(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !being_deleted(pod)
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn int(budget: &Value, pointer: &str) -> i64 {
    budget.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// Whether an unready pod of `budget` may go without spending a
/// disruption: always under `AlwaysAllow`; under `IfHealthyBudget` (the
/// default) only while the budget has the healthy pods it needs.
fn unready_may_go(budget: &Value) -> bool {
    if budget.pointer("/spec/unhealthyPodEvictionPolicy").and_then(Value::as_str) == Some("AlwaysAllow") {
        return true;
    }
    let (current, desired) = (int(budget, "/status/currentHealthy"), int(budget, "/status/desiredHealthy"));
    current >= desired && desired > 0
}

/// The budgets of the pod's namespace whose selector matches its labels.
/// A budget with no selector or an empty one matches nothing here (as
/// upstream's eviction reads it), nor does one whose selector is invalid.
async fn budgets_of(registry: &Registry, namespace: &str, pod: &Value) -> ApiResult<Vec<Value>> {
    let listed = registry.list(budgets(), Some(namespace), &ListOptions::default()).await?;
    let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
    Ok(listed
        .items
        .into_iter()
        .filter(|budget| {
            let Some(selector) = budget.pointer("/spec/selector").filter(|s| !s.is_null()) else { return false };
            label_selector(selector).is_ok_and(|s| !s.is_empty() && s.matches_labels(labels))
        })
        .collect())
}

/// 429 while the controller has not yet read the budget's latest spec.
fn still_processing(budget: &str) -> ApiError {
    ApiError::too_many_requests(VIOLATES, 10, &[("DisruptionBudget", format!("The disruption budget {budget} is still being processed by the server."))])
}

/// Spends one of the budget's allowed disruptions on pod `pod`, or says
/// why there is none (upstream's `checkAndDecrement`).
fn take_disruption(budget: &mut Value, pod: &str) -> ApiResult<()> {
    let name = meta::name(budget).to_string();
    if int(budget, "/status/observedGeneration") < int(budget, "/metadata/generation") {
        return Err(still_processing(&name));
    }
    let allowed = int(budget, "/status/disruptionsAllowed");
    let forbidden = |why: &str| ApiError::forbidden(&Subject { group: "policy".into(), kind: "poddisruptionbudget".into(), name: name.clone() }, why);
    if allowed < 0 {
        return Err(forbidden("pdb disruptions allowed is negative"));
    }
    let disrupted = budget.pointer("/status/disruptedPods").and_then(Value::as_object).map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(forbidden("DisruptedPods map too big - too many evictions not confirmed by PDB controller"));
    }
    if allowed == 0 {
        let (desired, current) = (int(budget, "/status/desiredHealthy"), int(budget, "/status/currentHealthy"));
        return Err(ApiError::too_many_requests(
            VIOLATES,
            0,
            &[("DisruptionBudget", format!("The disruption budget {name} needs {desired} healthy pods and has {current} currently"))],
        ));
    }
    let status = &mut budget["status"];
    status["disruptionsAllowed"] = json!(allowed - 1);
    if allowed - 1 == 0 {
        no_disruption_allowed(status);
    }
    if !status["disruptedPods"].is_object() {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod] = json!(meta::now_rfc3339());
    Ok(())
}

/// The DisruptionAllowed condition once the last disruption is spent, as
/// the controller would write it.
fn no_disruption_allowed(status: &mut Value) {
    let generation = status.get("observedGeneration").cloned().unwrap_or(json!(0));
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let conditions = status["conditions"].as_array_mut().expect("an array");
    let existing = conditions.iter_mut().find(|c| c["type"] == "DisruptionAllowed");
    match existing {
        Some(c) => {
            if c["status"] != "False" {
                c["lastTransitionTime"] = json!(meta::now_rfc3339());
            }
            c["status"] = json!("False");
            c["reason"] = json!("InsufficientPods");
            c["observedGeneration"] = generation;
        }
        None => conditions.push(json!({
            "type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods", "message": "",
            "observedGeneration": generation, "lastTransitionTime": meta::now_rfc3339(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(allowed: i64, generation: i64, observed: i64) -> Value {
        json!({"metadata": {"name": "db", "generation": generation},
            "status": {"disruptionsAllowed": allowed, "observedGeneration": observed, "currentHealthy": 2, "desiredHealthy": 2}})
    }

    #[test]
    fn a_disruption_is_spent_and_recorded() {
        let mut b = budget(1, 1, 1);
        take_disruption(&mut b, "web-1").unwrap();
        assert_eq!(b["status"]["disruptionsAllowed"], 0);
        assert!(b["status"]["disruptedPods"]["web-1"].is_string());
        assert_eq!(b["status"]["conditions"][0]["reason"], "InsufficientPods");
    }

    #[test]
    fn none_left_or_unread_answers_429_as_upstream() {
        let e = take_disruption(&mut budget(0, 1, 1), "web-1").unwrap_err();
        assert_eq!((e.code, e.reason, e.message.as_str()), (429, "TooManyRequests", VIOLATES));
        let causes = &e.details.as_ref().unwrap()["causes"];
        assert_eq!(causes[0]["reason"], "DisruptionBudget");
        assert_eq!(causes[0]["message"], "The disruption budget db needs 2 healthy pods and has 2 currently");
        let e = take_disruption(&mut budget(3, 2, 1), "web-1").unwrap_err();
        assert_eq!(e.details.as_ref().unwrap()["retryAfterSeconds"], 10);
        assert_eq!(take_disruption(&mut budget(-1, 1, 1), "web-1").unwrap_err().code, 403);
    }

    #[test]
    fn pending_finished_and_going_pods_skip_the_budget() {
        assert!(budget_ignored(&json!({"status": {"phase": "Pending"}})));
        assert!(budget_ignored(&json!({"status": {"phase": "Succeeded"}})));
        assert!(budget_ignored(&json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}})));
        assert!(!budget_ignored(&json!({"status": {"phase": "Running"}})));
        assert!(precondition_needed(&json!({"status": {"phase": "Pending"}})));
        assert!(!precondition_needed(&json!({"status": {"phase": "Failed"}})));
    }

    #[test]
    fn unready_pods_go_under_always_allow_or_a_met_budget() {
        let met = json!({"status": {"currentHealthy": 2, "desiredHealthy": 2}});
        let short = json!({"status": {"currentHealthy": 1, "desiredHealthy": 2}});
        assert!(unready_may_go(&met));
        assert!(!unready_may_go(&short));
        let always = json!({"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}, "status": {"currentHealthy": 1, "desiredHealthy": 2}});
        assert!(unready_may_go(&always));
    }

    #[test]
    fn evictions_name_their_pod() {
        let e = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}});
        assert_eq!(options_of(&e, "web").unwrap_err().message, "name in URL does not match name in Eviction object");
        let e = json!({"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "web"}, "deleteOptions": {"gracePeriodSeconds": 5}});
        assert_eq!(options_of(&e, "web").unwrap().grace_period_seconds, Some(5));
    }
}
