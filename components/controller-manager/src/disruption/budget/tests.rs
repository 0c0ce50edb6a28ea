//! The budget arithmetic against upstream's cases: ints and percentages,
//! rounding up, expected counts from controllers' scale, disrupted pods
//! and their expiry, the condition.

use super::*;
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).unwrap()
}

fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.into())
}

fn pod(name: &str, ready: bool, owner: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: owner.map(|uid| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "rs".into(),
                    uid: uid.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition { type_: "Ready".into(), status: if ready { "True" } else { "False" }.into(), ..Default::default() }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn spec(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudgetSpec {
    PodDisruptionBudgetSpec { min_available: min, max_unavailable: max, ..Default::default() }
}

#[test]
fn percentages_round_up_as_upstream() {
    assert_eq!(scaled(&pct("50%"), 3, true), Ok(2));
    assert_eq!(scaled(&pct("50%"), 3, false), Ok(1));
    assert_eq!(scaled(&pct("34%"), 10, true), Ok(4));
    assert_eq!(scaled(&pct("1%"), 1, true), Ok(1));
    assert_eq!(scaled(&pct("0%"), 7, true), Ok(0));
    assert_eq!(scaled(&pct("100%"), 7, true), Ok(7));
    assert_eq!(scaled(&IntOrString::Int(5), 3, true), Ok(5));
    assert!(scaled(&pct("5"), 3, true).unwrap_err().contains("string is not a percentage"));
}

#[test]
fn min_available_as_an_int_counts_the_pods_there_are() {
    let needs = needs(&spec(Some(IntOrString::Int(2)), None), 3, None).unwrap();
    assert_eq!(needs, Needs { expected: 3, desired_healthy: 2 });
    assert!(!needs_scale(&spec(Some(IntOrString::Int(2)), None)));
}

#[test]
fn percentages_and_max_unavailable_count_the_controllers_scale() {
    let min = spec(Some(pct("50%")), None);
    assert!(needs_scale(&min));
    // 50% of 5 rounds up to 3 that must stay healthy.
    assert_eq!(needs(&min, 4, Some(5)).unwrap(), Needs { expected: 5, desired_healthy: 3 });
    // 30% of 5 may be unavailable: 1.5 rounds up to 2, so 3 must stay.
    let max = spec(None, Some(pct("30%")));
    assert_eq!(needs(&max, 5, Some(5)).unwrap(), Needs { expected: 5, desired_healthy: 3 });
    // More unavailable allowed than there are pods: none needed.
    assert_eq!(needs(&spec(None, Some(IntOrString::Int(9))), 5, Some(5)).unwrap(), Needs { expected: 5, desired_healthy: 0 });
    assert!(needs(&max, 5, None).is_err());
    assert_eq!(needs(&spec(None, None), 5, None).unwrap(), Needs::default());
}

#[test]
fn each_controller_counts_once_and_missing_ones_are_errors() {
    let (a, b, c, lone) = (pod("a", true, Some("rs-1")), pod("b", true, Some("rs-1")), pod("c", true, Some("rs-2")), pod("lone", true, None));
    let mut found = HashMap::new();
    // Two ReplicaSets of one Deployment count as the Deployment, once.
    found.insert("rs-1".to_string(), Scale { uid: "deploy".into(), replicas: 4 });
    found.insert("rs-2".to_string(), Scale { uid: "deploy".into(), replicas: 4 });
    assert_eq!(expected_scale(&[&a, &b, &c, &lone], &found), Ok((4, vec!["lone".to_string()])));
    found.insert("rs-2".to_string(), Scale { uid: "sts".into(), replicas: 3 });
    assert_eq!(expected_scale(&[&a, &c], &found), Ok((7, vec![])));
    found.remove("rs-2");
    assert_eq!(expected_scale(&[&a, &c], &found), Err("found no controllers for pod \"c\"".to_string()));
}

#[test]
fn granted_evictions_keep_pods_out_of_the_healthy_count_for_two_minutes() {
    let (a, b, c, unready) = (pod("a", true, None), pod("b", true, None), pod("c", true, None), pod("d", false, None));
    let mut going = pod("e", true, None);
    going.metadata.deletion_timestamp = Some(Time(at(1000)));
    let recorded: BTreeMap<String, Time> =
        [("a", 1000), ("b", 900), ("gone", 1000), ("e", 1000)].into_iter().map(|(n, t)| (n.to_string(), Time(at(t)))).collect();
    let pods = [&a, &b, &c, &unready, &going];
    // At 1030: b's entry (900 + 120) has lapsed, a's holds until 1120;
    // gone's pod no longer exists, e's is being deleted.
    let (kept, recheck, expired) = still_disrupted(&pods, Some(&recorded), at(1030));
    assert_eq!(kept.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(recheck, Some(at(1120)));
    assert_eq!(expired, ["b"]);
    // Healthy: b and c (a is about to go, d unready, e being deleted).
    assert_eq!(current_healthy(&pods, &kept, at(1030)), 2);
    assert_eq!(current_healthy(&pods, &kept, at(1121)), 3);
    assert_eq!(still_disrupted(&pods, None, at(1030)), (BTreeMap::new(), None, vec![]));
}

#[test]
fn allowed_disruptions_and_their_condition() {
    let mut budget = PodDisruptionBudget { metadata: ObjectMeta { generation: Some(2), ..Default::default() }, ..Default::default() };
    let needs = Needs { expected: 3, desired_healthy: 2 };
    let s = status(&budget, 3, needs, BTreeMap::new(), at(10));
    assert_eq!((s.disruptions_allowed, s.current_healthy, s.desired_healthy, s.expected_pods, s.observed_generation), (1, 3, 2, 3, Some(2)));
    let condition = &s.conditions.as_ref().unwrap()[0];
    assert_eq!((condition.type_.as_str(), condition.status.as_str(), condition.reason.as_str()), ("DisruptionAllowed", "True", "SufficientPods"));
    budget.status = Some(s.clone());
    assert!(unchanged(&budget, &status(&budget, 3, needs, BTreeMap::new(), at(20))));

    // One short: none allowed, and the condition turns at this time.
    let short = status(&budget, 1, needs, BTreeMap::new(), at(30));
    assert_eq!(short.disruptions_allowed, 0);
    let condition = &short.conditions.as_ref().unwrap()[0];
    assert_eq!((condition.status.as_str(), condition.reason.as_str(), condition.last_transition_time.0), ("False", "InsufficientPods", at(30)));
    assert!(!unchanged(&budget, &short));

    // No pods expected: none allowed, however many are healthy.
    assert_eq!(status(&budget, 3, Needs { expected: 0, desired_healthy: 0 }, BTreeMap::new(), at(40)).disruptions_allowed, 0);

    let failed = failed(&budget, "found no controllers for pod \"x\"", at(50));
    let condition = &failed.conditions.as_ref().unwrap()[0];
    assert_eq!((failed.disruptions_allowed, condition.reason.as_str(), condition.message.as_str()), (0, "SyncFailed", "found no controllers for pod \"x\""));
}
