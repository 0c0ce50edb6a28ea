//! A Deployment's status and conditions, computed as upstream's
//! deployment controller computes them (`calculateStatus`,
//! `syncRolloutStatus`), and the sizes its strategy allows (maxSurge and
//! maxUnavailable resolved against the replica count).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

// Upstream's reasons (pkg/controller/deployment/util).
pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";

pub fn replicas(deployment: &Deployment) -> i32 {
    deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn set_replicas(set: &ReplicaSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn is_recreate(deployment: &Deployment) -> bool {
    deployment.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()) == Some("Recreate")
}

/// An int-or-percent resolved against `total`, rounding percentages up or
/// down (upstream's GetScaledValueFromIntOrPercent).
fn scaled(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => scaled(Some(&IntOrString::String("25%".into())), total, round_up),
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let percent: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let product = percent * i64::from(total);
            (if round_up { (product + 99) / 100 } else { product / 100 }) as i32
        }
    }
}

/// maxSurge and maxUnavailable as pod counts; when both come to 0,
/// one pod may be unavailable, or the rollout could never move
/// (upstream's ResolveFenceposts).
fn fenceposts(deployment: &Deployment) -> (i32, i32) {
    let rolling = deployment.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let desired = replicas(deployment);
    let surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()), desired, true);
    let unavailable = scaled(rolling.and_then(|r| r.max_unavailable.as_ref()), desired, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

pub fn max_surge(deployment: &Deployment) -> i32 {
    if is_recreate(deployment) {
        0
    } else {
        fenceposts(deployment).0
    }
}

pub fn max_unavailable(deployment: &Deployment) -> i32 {
    let desired = replicas(deployment);
    if is_recreate(deployment) || desired == 0 {
        0
    } else {
        fenceposts(deployment).1.min(desired)
    }
}

fn sum(sets: &[&ReplicaSet], f: impl Fn(&ReplicaSet) -> i32) -> i32 {
    sets.iter().map(|s| f(s)).sum()
}

fn status_replicas(set: &ReplicaSet) -> i32 {
    set.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

pub fn available_replicas(set: &ReplicaSet) -> i32 {
    set.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

/// The status `sets` give the Deployment, with its Available condition
/// (upstream's calculateStatus). Other conditions are carried over.
pub fn calculate(deployment: &Deployment, sets: &[&ReplicaSet], new: Option<&ReplicaSet>, now: Timestamp) -> DeploymentStatus {
    let available = sum(sets, available_replicas);
    let total = sum(sets, set_replicas);
    let old = deployment.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: deployment.metadata.generation,
        replicas: Some(sum(sets, status_replicas)),
        updated_replicas: Some(new.map(status_replicas).unwrap_or(0)),
        ready_replicas: Some(sum(sets, |s| s.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0))),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions,
        terminating_replicas: old.terminating_replicas,
    };
    let condition = if available >= replicas(deployment) - max_unavailable(deployment) {
        condition(AVAILABLE, "True", MINIMUM_REPLICAS_AVAILABLE, "Deployment has minimum availability.", now)
    } else {
        condition(AVAILABLE, "False", MINIMUM_REPLICAS_UNAVAILABLE, "Deployment does not have minimum availability.", now)
    };
    set_condition(&mut status, condition);
    status
}

pub fn condition(type_: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub fn get_condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.iter().flatten().find(|c| c.type_ == type_)
}

/// Sets a condition unless one of the same status and reason is there
/// (upstream's SetDeploymentCondition): a condition whose status stays
/// keeps its transition time.
pub fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = get_condition(status, &condition.type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &condition.type_);
    status.conditions.get_or_insert_with(Vec::new).push(condition);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
    }
}

pub fn progress_deadline(deployment: &Deployment) -> Option<i32> {
    // Upstream's default is 600; math.MaxInt32 means "no deadline".
    deployment.spec.as_ref().map(|s| s.progress_deadline_seconds.unwrap_or(600)).filter(|s| *s != i32::MAX)
}

/// Every pod is updated and available, and no old one is left
/// (upstream's DeploymentComplete).
pub fn complete(deployment: &Deployment, status: &DeploymentStatus) -> bool {
    let desired = replicas(deployment);
    status.updated_replicas == Some(desired)
        && status.replicas == Some(desired)
        && status.available_replicas == Some(desired)
        && status.observed_generation >= deployment.metadata.generation
}

/// The rollout moved since the status `deployment` holds (upstream's
/// DeploymentProgressing).
pub fn progressing(deployment: &Deployment, new: &DeploymentStatus) -> bool {
    let old = deployment.status.clone().unwrap_or_default();
    let old_pods = |s: &DeploymentStatus| s.replicas.unwrap_or(0) - s.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || old_pods(new) < old_pods(&old)
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

/// Seconds until the rollout's progress deadline passes (0 or less: it
/// has), if a deadline applies.
pub fn seconds_to_deadline(deployment: &Deployment, status: &DeploymentStatus, now: Timestamp) -> Option<i64> {
    let deadline = progress_deadline(deployment)?;
    let condition = get_condition(status, PROGRESSING)?;
    if condition.reason.as_deref() == Some(NEW_RS_AVAILABLE) || condition.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let from = condition.last_update_time.as_ref()?.0.as_second();
    Some(from + i64::from(deadline) - now.as_second())
}

/// The Progressing condition a rollout's new status earns (upstream's
/// syncRolloutStatus), and the ReplicaSet's ReplicaFailure carried over.
pub fn rollout_conditions(deployment: &Deployment, status: &mut DeploymentStatus, new: Option<&ReplicaSet>, now: Timestamp) {
    if progress_deadline(deployment).is_none() {
        remove_condition(status, PROGRESSING);
    }
    let current = get_condition(status, PROGRESSING).cloned();
    let already_complete = status.replicas == status.updated_replicas && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
    if progress_deadline(deployment).is_some() && !already_complete {
        let subject = match new {
            Some(set) => format!("ReplicaSet \"{}\"", set.metadata.name.as_deref().unwrap_or("")),
            None => format!("Deployment \"{}\"", deployment.metadata.name.as_deref().unwrap_or("")),
        };
        if complete(deployment, status) {
            set_condition(status, condition(PROGRESSING, "True", NEW_RS_AVAILABLE, &format!("{subject} has successfully progressed."), now));
        } else if progressing(deployment, status) {
            let mut updated = condition(PROGRESSING, "True", RS_UPDATED, &format!("{subject} is progressing."), now);
            if let Some(current) = current.as_ref().filter(|c| c.status == "True") {
                updated.last_transition_time = current.last_transition_time.clone();
            }
            // Progress always moves lastUpdateTime, even with the same reason.
            remove_condition(status, PROGRESSING);
            set_condition(status, updated);
        } else if seconds_to_deadline(deployment, status, now).is_some_and(|s| s <= 0) {
            set_condition(status, condition(PROGRESSING, "False", TIMED_OUT, &format!("{subject} has timed out progressing."), now));
        }
    }
    let failure = new.and_then(|s| s.status.as_ref()).and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == REPLICA_FAILURE));
    match failure {
        Some(f) => set_condition(
            status,
            DeploymentCondition {
                type_: REPLICA_FAILURE.into(),
                status: f.status.clone(),
                reason: f.reason.clone(),
                message: f.message.clone(),
                last_update_time: f.last_transition_time.clone(),
                last_transition_time: f.last_transition_time.clone(),
            },
        ),
        None => remove_condition(status, REPLICA_FAILURE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};

    fn deployment(replicas: i32, surge: &str, unavailable: &str) -> Deployment {
        let value = |s: &str| if s.ends_with('%') { IntOrString::String(s.into()) } else { IntOrString::Int(s.parse().unwrap()) };
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment { max_surge: Some(value(surge)), max_unavailable: Some(value(unavailable)) }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        let d = deployment(10, "25%", "25%");
        assert_eq!((max_surge(&d), max_unavailable(&d)), (3, 2));
        let d = deployment(3, "0", "0");
        assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 1));
        let d = deployment(2, "1", "5");
        assert_eq!(max_unavailable(&d), 2);
    }

    #[test]
    fn a_condition_of_the_same_status_keeps_its_transition_time() {
        let mut status = DeploymentStatus::default();
        let t0 = Timestamp::from_second(100).unwrap();
        let t1 = Timestamp::from_second(200).unwrap();
        set_condition(&mut status, condition(PROGRESSING, "True", NEW_RS_CREATED, "a", t0));
        set_condition(&mut status, condition(PROGRESSING, "True", RS_UPDATED, "b", t1));
        let c = get_condition(&status, PROGRESSING).unwrap();
        assert_eq!((c.reason.as_deref(), c.last_transition_time.as_ref().unwrap().0, c.last_update_time.as_ref().unwrap().0), (Some(RS_UPDATED), t0, t1));
    }
}
