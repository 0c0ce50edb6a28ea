//! A PodDisruptionBudget's status from its pods and their controllers'
//! scale, as upstream's disruption controller computes it: how many pods
//! are expected, how many must be healthy, how many are, and so how many
//! may be disrupted now. No I/O: the loop in `mod.rs` gathers the pods
//! and scales and writes what comes out.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::pods::{controller_of, is_ready};

/// How long an eviction's entry in `status.disruptedPods` keeps its pod
/// out of the healthy count; a pod not deleted by then counts again
/// (upstream's `DeletionTimeout`).
pub const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(2 * 60);

pub const CONDITION: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";

/// `value` of `total`: an int as it is, a percentage of `total`, rounded
/// up or down (upstream's `GetScaledValueFromIntOrPercent`).
pub fn scaled(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| "invalid value for IntOrString: invalid type: string is not a percentage".to_string())?;
            let product = percent * i64::from(total);
            let value = if round_up { (product + 99).div_euclid(100) } else { product.div_euclid(100) };
            Ok(value as i32)
        }
    }
}

/// Whether the budget is a share of its controllers' scale (and so needs
/// their scale): maxUnavailable, or minAvailable as a percentage.
pub fn needs_scale(spec: &PodDisruptionBudgetSpec) -> bool {
    spec.max_unavailable.is_some() || matches!(spec.min_available, Some(IntOrString::String(_)))
}

/// How many pods the budget expects and how many of them must be healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    pub expected: i32,
    pub desired_healthy: i32,
}

/// What `spec` asks of `pods` pods whose controllers' scale adds up to
/// `scale` (needed only when [`needs_scale`]), in upstream's order:
/// maxUnavailable first; minAvailable as an int counts the pods there are.
pub fn needs(spec: &PodDisruptionBudgetSpec, pods: usize, scale: Option<i32>) -> Result<Needs, String> {
    let known_scale = || scale.ok_or_else(|| "the controllers' scale is not known".to_string());
    if let Some(max) = &spec.max_unavailable {
        let expected = known_scale()?;
        let unavailable = scaled(max, expected, true)?;
        return Ok(Needs { expected, desired_healthy: (expected - unavailable).max(0) });
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok(Needs { expected: pods as i32, desired_healthy: *n }),
        Some(min @ IntOrString::String(_)) => {
            let expected = known_scale()?;
            Ok(Needs { expected, desired_healthy: scaled(min, expected, true)? })
        }
        None => Ok(Needs::default()),
    }
}

/// A pod's controller as the loop found it: the object whose scale counts
/// (a Deployment for its ReplicaSets' pods) and that scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    pub uid: String,
    pub replicas: i32,
}

/// The sum of the scales of the pods' controllers, each counted once
/// (`found` maps a pod's controller reference uid to what it resolved
/// to), and the pods that have no controller. A controller reference that
/// resolved to nothing is an error, as upstream's.
pub fn expected_scale(pods: &[&Pod], found: &HashMap<String, Scale>) -> Result<(i32, Vec<String>), String> {
    let mut scales: HashMap<&str, i32> = HashMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(reference) = controller_of(&pod.metadata) else {
            unmanaged.push(name);
            continue;
        };
        let scale = found.get(&reference.uid).ok_or_else(|| format!("found no controllers for pod {name:?}"))?;
        scales.insert(&scale.uid, scale.replicas);
    }
    Ok((scales.values().sum(), unmanaged))
}

/// The entries of `recorded` (evictions the apiserver granted) whose pods
/// still exist, are not yet being deleted and are within
/// [`DELETION_TIMEOUT`]; when the earliest of them expires; and the pods
/// whose entries expired (they were not deleted after all).
pub fn still_disrupted(pods: &[&Pod], recorded: Option<&BTreeMap<String, Time>>, now: Timestamp) -> (BTreeMap<String, Time>, Option<Timestamp>, Vec<String>) {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let mut expired = Vec::new();
    let Some(recorded) = recorded else { return (kept, recheck, expired) };
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(at) = recorded.get(&name) else { continue };
        let deadline = expires(at);
        if deadline < now {
            expired.push(name);
        } else {
            recheck = Some(recheck.map_or(deadline, |r| r.min(deadline)));
            kept.insert(name, at.clone());
        }
    }
    (kept, recheck, expired)
}

/// When an entry of `status.disruptedPods` written at `at` lapses.
fn expires(at: &Time) -> Timestamp {
    at.0.checked_add(DELETION_TIMEOUT).unwrap_or(Timestamp::MAX)
}

/// Ready pods that are neither being deleted nor about to be (an
/// eviction granted within [`DELETION_TIMEOUT`]).
pub fn current_healthy(pods: &[&Pod], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    let about_to_go = |pod: &Pod| {
        let name = pod.metadata.name.as_deref().unwrap_or("");
        disrupted.get(name).is_some_and(|at| expires(at) > now)
    };
    pods.iter().copied().filter(|p| p.metadata.deletion_timestamp.is_none() && !about_to_go(p) && is_ready(p)).count() as i32
}

/// The budget's new status: disruptions allowed are the healthy pods
/// beyond those needed, none while no pods are expected (a budget whose
/// pods have not been seen yet is safe); its condition says which.
pub fn status(budget: &PodDisruptionBudget, healthy: i32, needs: Needs, disrupted: BTreeMap<String, Time>, now: Timestamp) -> PodDisruptionBudgetStatus {
    let allowed = if needs.expected <= 0 { 0 } else { (healthy - needs.desired_healthy).max(0) };
    let old = budget.status.clone().unwrap_or_default();
    let generation = budget.metadata.generation;
    let mut conditions = old.conditions.unwrap_or_default();
    let (state, reason) = if allowed > 0 { ("True", SUFFICIENT_PODS) } else { ("False", INSUFFICIENT_PODS) };
    set_condition(&mut conditions, state, reason, "", generation, now);
    PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: needs.desired_healthy,
        expected_pods: needs.expected,
        disruptions_allowed: allowed,
        // An empty map is left out, as Go's omitempty leaves it.
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: generation,
        conditions: Some(conditions),
    }
}

/// The status after a failed sync: no disruptions allowed and why, so
/// that no eviction is granted on numbers that may be wrong (upstream's
/// `failSafe`).
pub fn failed(budget: &PodDisruptionBudget, why: &str, now: Timestamp) -> PodDisruptionBudgetStatus {
    let mut status = budget.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    let mut conditions = status.conditions.take().unwrap_or_default();
    set_condition(&mut conditions, "False", SYNC_FAILED, why, status.observed_generation, now);
    status.conditions = Some(conditions);
    status
}

/// Whether `new` says nothing `budget`'s status does not already say
/// (disrupted pods compared by name and time, an absent map as empty).
pub fn unchanged(budget: &PodDisruptionBudget, new: &PodDisruptionBudgetStatus) -> bool {
    let Some(old) = &budget.status else { return false };
    let empty = BTreeMap::new();
    old.current_healthy == new.current_healthy
        && old.desired_healthy == new.desired_healthy
        && old.expected_pods == new.expected_pods
        && old.disruptions_allowed == new.disruptions_allowed
        && old.observed_generation == new.observed_generation
        && old.disrupted_pods.as_ref().unwrap_or(&empty) == new.disrupted_pods.as_ref().unwrap_or(&empty)
        && old.conditions == new.conditions
}

/// Sets the DisruptionAllowed condition as apimachinery's
/// `SetStatusCondition` does: its transition time moves only when its
/// status changes.
fn set_condition(conditions: &mut Vec<Condition>, state: &str, reason: &str, message: &str, generation: Option<i64>, now: Timestamp) {
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == CONDITION) {
        if c.status != state {
            c.status = state.into();
            c.last_transition_time = Time(now);
        }
        c.reason = reason.into();
        c.message = message.into();
        c.observed_generation = generation;
        return;
    }
    conditions.push(Condition {
        type_: CONDITION.into(),
        status: state.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(now),
    });
}

#[cfg(test)]
mod tests;
