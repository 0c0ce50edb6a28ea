//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's
//! `leaderelection` package does it for upstream's components, with the
//! same flags and defaults: of several replicas of a component, only the
//! Lease's holder works; the others wait and take over when the holder
//! stops renewing.
//!
//! - A candidate tries every retry period. It takes the Lease when it does
//!   not exist, has no holder, or its holder has not renewed it for the
//!   lease duration, measured on this candidate's clock from when it
//!   *saw* the Lease change, so clocks need not agree.
//! - The leader renews every retry period; if no renewal succeeds within
//!   the renew deadline it stops working (its work is cancelled) and
//!   becomes a candidate again.
//! - Every write carries the resourceVersion read, so two candidates can
//!   never both take the Lease.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

/// Upstream's `--leader-elect*` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct LeaderElectionFlags {
    /// Take a Lease before working, so that of several replicas one works.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// How long a Lease not renewed keeps other candidates waiting.
    #[arg(long, default_value = "15s", value_parser = crate::flags::duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops working.
    #[arg(long, default_value = "10s", value_parser = crate::flags::duration)]
    pub leader_elect_renew_deadline: Duration,
    /// How long candidates and the leader wait between tries.
    #[arg(long, default_value = "2s", value_parser = crate::flags::duration)]
    pub leader_elect_retry_period: Duration,
    /// The Lease's name (the component's, when not given).
    #[arg(long)]
    pub leader_elect_resource_name: Option<String>,
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
}

impl LeaderElectionFlags {
    /// The election these flags describe, for a component whose Lease is
    /// named `default_name` unless the flags say otherwise.
    pub fn election(&self, default_name: &str) -> Result<Election, String> {
        let e = Election {
            namespace: self.leader_elect_resource_namespace.clone(),
            name: self.leader_elect_resource_name.clone().unwrap_or_else(|| default_name.into()),
            identity: identity(),
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
        };
        // Upstream's checks: the leader must give up before others may take over.
        if e.lease_duration <= e.renew_deadline {
            return Err("--leader-elect-lease-duration must be greater than --leader-elect-renew-deadline".into());
        }
        if e.renew_deadline.as_secs_f64() <= 1.2 * e.retry_period.as_secs_f64() {
            return Err("--leader-elect-renew-deadline must be greater than 1.2 × --leader-elect-retry-period".into());
        }
        Ok(e)
    }
}

/// This process's identity in a Lease: host name and a random suffix, as
/// upstream's components write it.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "unknown".into());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// One election: which Lease, who this candidate is, and the timings.
#[derive(Debug, Clone)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// What this candidate last saw of the Lease, and when it saw it change.
struct Observed {
    record: Option<(String, MicroTime)>,
    at: Instant,
}

impl Election {
    /// Runs `work` whenever this process holds the Lease, forever: when
    /// leadership is lost the work is cancelled (dropped) and this process
    /// campaigns again. Ends only if `work` ends while leading.
    pub async fn run<F, Fut>(&self, client: kube::Client, mut work: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        let leases: Api<Lease> = Api::namespaced(client, &self.namespace);
        let mut observed = Observed { record: None, at: Instant::now() };
        loop {
            while !self.try_acquire_or_renew(&leases, &mut observed).await {
                tokio::time::sleep(jittered(self.retry_period)).await;
            }
            tracing::info!(lease = %format!("{}/{}", self.namespace, self.name), identity = %self.identity, "successfully acquired lease");
            let lost = async {
                let mut last_renewal = Instant::now();
                loop {
                    tokio::time::sleep(self.retry_period).await;
                    if self.try_acquire_or_renew(&leases, &mut observed).await {
                        last_renewal = Instant::now();
                    } else if last_renewal.elapsed() >= self.renew_deadline {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = work() => return,
                _ = lost => tracing::warn!(lease = %self.name, "leader election lost: the lease was not renewed within the renew deadline"),
            }
        }
    }

    /// One try (upstream's tryAcquireOrRenew); whether this process holds
    /// the Lease now.
    async fn try_acquire_or_renew(&self, leases: &Api<Lease>, observed: &mut Observed) -> bool {
        let now = MicroTime(Timestamp::now());
        let seconds = self.lease_duration.as_secs().max(1) as i32;
        let existing = match leases.get_opt(&self.name).await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::debug!("reading the lease: {e}");
                return false;
            }
        };
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), namespace: Some(self.namespace.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now.clone()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            let created = leases.create(&PostParams::default(), &lease).await.is_ok();
            if created {
                *observed = Observed { record: Some((self.identity.clone(), now)), at: Instant::now() };
            }
            return created;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let record = spec.renew_time.clone().map(|t| (holder.clone(), t));
        if record.as_ref().map(|(h, t)| (h, t.0)) != observed.record.as_ref().map(|(h, t)| (h, t.0)) {
            *observed = Observed { record, at: Instant::now() };
        }
        let ours = holder == self.identity;
        let held_by_other =
            !holder.is_empty() && !ours && observed.at.elapsed() < Duration::from_secs(spec.lease_duration_seconds.unwrap_or(seconds).max(0) as u64);
        if held_by_other {
            return false;
        }
        let mut next = spec;
        if !ours {
            next.acquire_time = Some(now.clone());
            next.lease_transitions = Some(next.lease_transitions.unwrap_or(0) + 1);
        }
        next.holder_identity = Some(self.identity.clone());
        next.lease_duration_seconds = Some(seconds);
        next.renew_time = Some(now.clone());
        lease.spec = Some(next);
        // The resourceVersion read makes this a compare-and-swap.
        match leases.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => {
                *observed = Observed { record: Some((self.identity.clone(), now)), at: Instant::now() };
                true
            }
            Err(e) => {
                tracing::debug!("writing the lease: {e}");
                false
            }
        }
    }
}

/// Upstream waits a retry period plus up to 20% more, so candidates that
/// started together spread out.
fn jittered(period: Duration) -> Duration {
    let fraction = f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 255.0 * 0.2;
    period.mul_f64(1.0 + fraction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        election: LeaderElectionFlags,
    }

    #[test]
    fn defaults_are_upstreams_and_bad_timings_are_refused() {
        let flags = Flags::parse_from(["x"]).election;
        let e = flags.election("kube-scheduler").unwrap();
        assert_eq!((e.lease_duration, e.renew_deadline, e.retry_period), (Duration::from_secs(15), Duration::from_secs(10), Duration::from_secs(2)));
        assert_eq!((e.namespace.as_str(), e.name.as_str()), ("kube-system", "kube-scheduler"));
        assert!(flags.leader_elect);
        let bad = Flags::parse_from(["x", "--leader-elect-lease-duration=5s"]).election.election("x").unwrap_err();
        assert!(bad.contains("must be greater than --leader-elect-renew-deadline"), "{bad}");
        assert!(!Flags::parse_from(["x", "--leader-elect=false"]).election.leader_elect);
    }
}
