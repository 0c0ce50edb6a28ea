//! The strategies: RollingUpdate (grow the new ReplicaSet within
//! maxSurge, shrink the old ones within maxUnavailable), Recreate (old
//! pods all gone before new ones start), and proportional scaling when the
//! Deployment's size changes mid-rollout or while paused. Upstream's
//! rolling.go, recreate.go and sync.go are the specification.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::runtime::controller::Action;
use kube::ResourceExt;

use super::revisions::{self, sort_by_age, MAX_REPLICAS};
use super::status::{self, available_replicas, set_replicas};
use super::{Error, Sync};
use crate::pods::controller_of;

/// How many replicas the new ReplicaSet may have now (upstream's
/// NewRSNewReplicas): all of them for Recreate; for RollingUpdate, as
/// many as maxSurge leaves room for.
pub fn new_set_replicas(deployment: &Deployment, all: &[&ReplicaSet], new: &ReplicaSet) -> i32 {
    let desired = status::replicas(deployment);
    if status::is_recreate(deployment) {
        return desired;
    }
    let current: i32 = all.iter().map(|s| set_replicas(s)).sum();
    let max_total = desired + status::max_surge(deployment);
    if current >= max_total {
        return set_replicas(new);
    }
    let up = (max_total - current).min(desired - set_replicas(new));
    set_replicas(new) + up
}

impl Sync<'_> {
    /// RollingUpdate (upstream's rolloutRolling).
    pub(super) async fn rolling(&mut self, sets: Vec<ReplicaSet>) -> Result<Action, Error> {
        let (new, mut old) = self.all_sets(sets, true).await?;
        let Some(mut new) = new else {
            return self.sync_rollout_status(None, &old).await;
        };
        if self.grow_new(&mut new, &old).await? {
            return self.sync_rollout_status(Some(&new), &old).await;
        }
        if self.shrink_old(&new, &mut old).await? {
            return self.sync_rollout_status(Some(&new), &old).await;
        }
        let status = self.deployment.status.clone().unwrap_or_default();
        if status::complete(&self.deployment, &status) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(Some(&new), &old).await
    }

    /// Grows (or trims) the new ReplicaSet towards the Deployment's size.
    async fn grow_new(&mut self, new: &mut ReplicaSet, old: &[ReplicaSet]) -> Result<bool, Error> {
        let desired = status::replicas(&self.deployment);
        let current = set_replicas(new);
        if current == desired {
            return Ok(false);
        }
        if current > desired {
            return self.scale(new, desired).await;
        }
        let mut all: Vec<&ReplicaSet> = old.iter().collect();
        all.push(new);
        let target = new_set_replicas(&self.deployment, &all, new);
        self.scale(new, target).await
    }

    /// Shrinks old ReplicaSets as far as maxUnavailable allows: unhealthy
    /// pods first, then the oldest ReplicaSets' (upstream's
    /// reconcileOldReplicaSets).
    async fn shrink_old(&mut self, new: &ReplicaSet, old: &mut [ReplicaSet]) -> Result<bool, Error> {
        let old_pods: i32 = old.iter().map(set_replicas).sum();
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods = old_pods + set_replicas(new);
        let min_available = status::replicas(&self.deployment) - status::max_unavailable(&self.deployment);
        let new_unavailable = set_replicas(new) - available_replicas(new);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        sort_by_age(old);
        // Unhealthy replicas first: removing them costs no availability.
        let mut cleaned = 0;
        for set in old.iter_mut() {
            if cleaned >= max_scaled_down {
                break;
            }
            let (replicas, available) = (set_replicas(set), available_replicas(set));
            if replicas == 0 || replicas == available {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(replicas - available);
            self.scale(set, replicas - down).await?;
            cleaned += down;
        }
        // Then healthy ones, keeping minAvailable.
        let available: i32 = old.iter().map(available_replicas).sum::<i32>() + available_replicas(new);
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for set in old.iter_mut() {
                if scaled >= total {
                    break;
                }
                let replicas = set_replicas(set);
                if replicas == 0 {
                    continue;
                }
                let down = replicas.min(total - scaled);
                self.scale(set, replicas - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    /// Recreate (upstream's rolloutRecreate).
    pub(super) async fn recreate(&mut self, sets: Vec<ReplicaSet>) -> Result<Action, Error> {
        let (new, mut old) = self.all_sets(sets.clone(), false).await?;
        let mut scaled_down = false;
        for set in old.iter_mut().filter(|s| set_replicas(s) > 0) {
            scaled_down |= self.scale(set, 0).await?;
        }
        if scaled_down || self.old_pods_running(new.as_ref(), &old) {
            return self.sync_rollout_status(new.as_ref(), &old).await;
        }
        let (new, old) = match new {
            Some(new) => (new, old),
            None => match self.all_sets(sets, true).await? {
                (Some(new), old) => (new, old),
                (None, old) => return self.sync_rollout_status(None, &old).await,
            },
        };
        let mut new = new;
        let desired = status::replicas(&self.deployment);
        self.scale(&mut new, desired).await?;
        let status = self.deployment.status.clone().unwrap_or_default();
        if status::complete(&self.deployment, &status) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(Some(&new), &old).await
    }

    /// Whether pods of old ReplicaSets still run (or are still stopping).
    fn old_pods_running(&self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> bool {
        if old.iter().any(|s| s.status.as_ref().is_some_and(|s| s.replicas > 0)) {
            return true;
        }
        let old_uids: Vec<String> = old.iter().filter(|s| new.is_none_or(|n| n.uid() != s.uid())).filter_map(|s| s.uid()).collect();
        self.context.pods.state().iter().any(|pod| {
            controller_of(&pod.metadata).is_some_and(|r| old_uids.contains(&r.uid))
                && !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed"))
        })
    }

    /// Paused, or resized: every ReplicaSet is scaled, none rolled
    /// (upstream's sync).
    pub(super) async fn scale_only(&mut self, sets: Vec<ReplicaSet>) -> Result<Action, Error> {
        let (mut new, mut old) = self.all_sets(sets, false).await?;
        self.scale_proportionally(new.as_mut(), &mut old).await?;
        if self.spec().paused == Some(true) {
            self.cleanup(&old).await?;
        }
        self.sync_status(new.as_ref(), &old).await?;
        Ok(Action::await_change())
    }

    /// Upstream's scale: a lone active ReplicaSet takes the whole size; a
    /// saturated new one leaves the old ones nothing; otherwise the
    /// difference is shared out in proportion to each ReplicaSet's size.
    async fn scale_proportionally(&mut self, mut new: Option<&mut ReplicaSet>, old: &mut [ReplicaSet]) -> Result<(), Error> {
        let desired = status::replicas(&self.deployment);
        let active = old.iter().filter(|s| set_replicas(s) > 0).count() + new.as_ref().filter(|s| set_replicas(s) > 0).map_or(0, |_| 1);
        if active <= 1 {
            // The active one, else the new one, else the newest old one.
            let target: Option<&mut ReplicaSet> = if let Some(n) = new.as_deref_mut().filter(|s| set_replicas(s) > 0) {
                Some(n)
            } else if let Some(i) = old.iter().position(|s| set_replicas(s) > 0) {
                Some(&mut old[i])
            } else if new.is_some() {
                new.as_deref_mut()
            } else {
                sort_by_age(old);
                old.last_mut()
            };
            if let Some(set) = target {
                self.scale(set, desired).await?;
            }
            return Ok(());
        }
        let saturated = new.as_ref().is_some_and(|n| {
            revisions::size_annotation(n, revisions::DESIRED_REPLICAS) == Some(desired) && set_replicas(n) == desired && available_replicas(n) == desired
        });
        if saturated {
            for set in old.iter_mut().filter(|s| set_replicas(s) > 0) {
                self.scale(set, 0).await?;
            }
            return Ok(());
        }
        let allowed = if desired > 0 { desired + status::max_surge(&self.deployment) } else { 0 };
        let mut sets: Vec<&mut ReplicaSet> = old.iter_mut().filter(|s| set_replicas(s) > 0).collect();
        if let Some(n) = new.filter(|s| set_replicas(s) > 0) {
            sets.push(n);
        }
        let current: i32 = sets.iter().map(|s| set_replicas(s)).sum();
        let to_add = allowed - current;
        // Larger first; among equals, newer first when growing and older
        // first when shrinking.
        sets.sort_by(|a, b| {
            let age = a.metadata.creation_timestamp.as_ref().map(|t| t.0).cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0));
            set_replicas(b).cmp(&set_replicas(a)).then(if to_add > 0 { age.reverse() } else { age })
        });
        let status_replicas = self.deployment.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::new();
        for set in &sets {
            let replicas = set_replicas(set);
            let proportion = if to_add == 0 || to_add == added {
                0
            } else {
                let annotated = revisions::size_annotation(set, MAX_REPLICAS).unwrap_or(status_replicas).max(1);
                let fraction =
                    if desired == 0 { -replicas } else { ((f64::from(replicas) * f64::from(allowed)) / f64::from(annotated)).round() as i32 - replicas };
                let left = to_add - added;
                if to_add > 0 {
                    fraction.min(left)
                } else {
                    fraction.max(left)
                }
            };
            added += proportion;
            sizes.push(replicas + proportion);
        }
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
        for (set, size) in sets.into_iter().zip(sizes) {
            self.scale(set, size).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetSpec};

    fn set(replicas: i32) -> ReplicaSet {
        ReplicaSet { spec: Some(ReplicaSetSpec { replicas: Some(replicas), ..Default::default() }), ..Default::default() }
    }

    #[test]
    fn the_new_set_grows_within_max_surge() {
        // 4 replicas, 25% surge: 1 extra pod at most.
        let d = Deployment { spec: Some(DeploymentSpec { replicas: Some(4), ..Default::default() }), ..Default::default() };
        let (old, new) = (set(4), set(0));
        assert_eq!(new_set_replicas(&d, &[&old, &new], &new), 1);
        let (old, new) = (set(3), set(1));
        assert_eq!(new_set_replicas(&d, &[&old, &new], &new), 2);
        let (old, new) = (set(0), set(4));
        assert_eq!(new_set_replicas(&d, &[&old, &new], &new), 4);
    }
}
