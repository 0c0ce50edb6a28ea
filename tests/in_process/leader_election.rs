//! Leader election on a Lease (component-base), against the real
//! apiserver: of two candidates one works; when it stops (as a killed
//! process stops renewing), the other takes over within the lease
//! duration and the Lease records the transition.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use component_base::leader_election::Election;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kubelab_scenarios::apiserver::TestApi;

fn election(identity: &str) -> Election {
    Election {
        namespace: "kube-system".into(),
        name: "kube-controller-manager".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(300),
    }
}

/// Who is working now, as the candidates' work reports it.
type Working = Arc<Mutex<Vec<String>>>;

fn candidate(client: kube::Client, identity: &'static str, working: Working) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        election(identity)
            .run(client, || {
                let working = working.clone();
                async move {
                    working.lock().unwrap().push(identity.to_string());
                    // Work until cancelled; the guard says when it stopped.
                    struct Stop(Working, &'static str);
                    impl Drop for Stop {
                        fn drop(&mut self) {
                            self.0.lock().unwrap().retain(|w| w != self.1);
                        }
                    }
                    let _stop = Stop(working, identity);
                    std::future::pending::<()>().await
                }
            })
            .await
    })
}

async fn until_working(working: &Working, want: &[&str], what: &str) {
    kubelab_scenarios::wait::until_within(what, Duration::from_secs(30), || async {
        let now = working.lock().unwrap().clone();
        if now == want {
            Ok(())
        } else {
            Err(format!("working {now:?}, wanted {want:?}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_candidate_works_and_the_other_takes_over() {
    let api = TestApi::start();
    let client = api.client().await;
    let working: Working = Default::default();
    let first = candidate(client.clone(), "cm-a", working.clone());
    until_working(&working, &["cm-a"], "the first candidate leads").await;
    let second = candidate(client.clone(), "cm-b", working.clone());
    // Several retry periods: the second must not start while the first renews.
    kubelab_scenarios::wait::holds_for("only the holder works", Duration::from_secs(3), || async {
        let now = working.lock().unwrap().clone();
        if now == ["cm-a"] {
            Ok(())
        } else {
            Err(format!("working {now:?}"))
        }
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease = leases.get("kube-controller-manager").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("cm-a"));
    assert_eq!((lease.lease_duration_seconds, lease.lease_transitions), (Some(3), Some(0)));

    // The holder stops renewing, as a killed process does.
    first.abort();
    let _ = first.await;
    let stopped = tokio::time::Instant::now();
    until_working(&working, &["cm-b"], "the second candidate takes over").await;
    let took = stopped.elapsed();
    assert!(took <= Duration::from_secs(3) + Duration::from_secs(2), "took over after {took:?}, lease duration 3 s");
    let lease = leases.get("kube-controller-manager").await.unwrap().spec.unwrap();
    assert_eq!((lease.holder_identity.as_deref(), lease.lease_transitions), (Some("cm-b"), Some(1)));
    second.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_stops_working() {
    let api = TestApi::start();
    let client = api.client().await;
    let working: Working = Default::default();
    let only = candidate(client.clone(), "cm-a", working.clone());
    until_working(&working, &["cm-a"], "the candidate leads").await;
    // Someone else takes the Lease (as after a partition): the leader's
    // renewals fail, and within the renew deadline it stops.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let mut lease = leases.get("kube-controller-manager").await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    lease.spec.as_mut().unwrap().renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now()));
    leases.replace("kube-controller-manager", &Default::default(), &lease).await.unwrap();
    until_working(&working, &[], "the leader stops once it cannot renew").await;
    only.abort();
}
