//! The node IPAM controller against the real apiserver: Nodes (created by
//! the test, as kwok would) get distinct pod CIDRs from the cluster CIDR,
//! keep them across a controller restart, and a full range says so.

use std::collections::BTreeMap;
use std::time::Duration;

use controller_manager::node_ipam;
use kubelab_scenarios::apiserver::{ControllerManager, TestApi};
use serde_json::Value;

const IPAM: &str = "node-ipam-controller";

const DEADLINE: Duration = Duration::from_secs(60);

fn ipam(api: &TestApi, cluster_cidr: &str) -> ControllerManager {
    let node_ipam = node_ipam::Settings { allocate_node_cidrs: true, cluster_cidrs: vec![cluster_cidr.parse().unwrap()], ..Default::default() };
    api.controller_manager_with(&[IPAM], controller_manager::Settings { node_ipam, ..Default::default() })
}

fn add_nodes(api: &TestApi, names: &[&str]) {
    let manifest: String = names.iter().map(|n| format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {n}}}\n---\n")).collect();
    api.kubectl_stdin(&["create", "-f", "-"], &manifest).succeeded();
}

/// Each Node's spec.podCIDR, or "" for none; podCIDRs must agree with it.
fn pod_cidrs(api: &TestApi) -> BTreeMap<String, String> {
    let out = api.kubectl(&["get", "nodes", "-o", "json"]).succeeded();
    let nodes: Value = serde_json::from_str(&out).unwrap();
    nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let cidr = n["spec"]["podCIDR"].as_str().unwrap_or("").to_string();
            let list: Vec<&str> = n["spec"]["podCIDRs"].as_array().into_iter().flatten().map(|c| c.as_str().unwrap()).collect();
            let expected: Vec<&str> = if cidr.is_empty() { vec![] } else { vec![cidr.as_str()] };
            assert_eq!(list, expected, "podCIDRs and podCIDR disagree on {}", n["metadata"]["name"]);
            (n["metadata"]["name"].as_str().unwrap().to_string(), cidr)
        })
        .collect()
}

/// Waits until every Node has a pod CIDR; returns them.
fn all_assigned(api: &TestApi) -> BTreeMap<String, String> {
    kubelab_scenarios::wait::until_blocking("a pod CIDR on every Node", DEADLINE, || {
        let cidrs = pod_cidrs(api);
        let missing: Vec<&String> = cidrs.iter().filter(|(_, c)| c.is_empty()).map(|(n, _)| n).collect();
        if missing.is_empty() {
            Ok(cidrs.clone())
        } else {
            Err(format!("Nodes {missing:?} have none: {cidrs:?}"))
        }
    })
}

fn distinct(cidrs: &BTreeMap<String, String>) {
    let mut seen = BTreeMap::new();
    for (node, cidr) in cidrs {
        if let Some(other) = seen.insert(cidr, node) {
            panic!("{node} and {other} both have {cidr}");
        }
    }
}

#[test]
fn nodes_get_distinct_ranges_kept_across_restarts_and_reused_when_freed() {
    let api = TestApi::start();
    let controller = ipam(&api, "10.244.0.0/16");
    add_nodes(&api, &["node-a", "node-b", "node-c"]);
    let first = all_assigned(&api);
    distinct(&first);
    let mut handed: Vec<&str> = first.values().map(String::as_str).collect();
    handed.sort();
    assert_eq!(handed, ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"], "the first three /24s of the cluster CIDR");

    // A restart: a Node added while no controller runs gets a range no
    // other Node has, because what Nodes hold is read back first.
    drop(controller);
    add_nodes(&api, &["node-d"]);
    let controller = ipam(&api, "10.244.0.0/16");
    let second = all_assigned(&api);
    distinct(&second);
    for (node, cidr) in &first {
        assert_eq!(&second[node], cidr, "{node} changed its range across the restart");
    }
    assert_eq!(second["node-d"], "10.244.3.0/24");

    // Deleting a Node frees its range for a later one. The allocator goes
    // round (as upstream's), so the freed range is handed out again once
    // the ranges after it are taken: fill a small cluster CIDR to see it.
    drop(controller);
    let small = TestApi::start();
    let _controller = ipam(&small, "10.10.0.0/23");
    add_nodes(&small, &["one", "two"]);
    let held = all_assigned(&small);
    small.kubectl(&["delete", "node", "one"]).succeeded();
    add_nodes(&small, &["three"]);
    let after = all_assigned(&small);
    assert_eq!(after["three"], held["one"], "the freed range was not reused: {after:?}");
    assert_eq!(after["two"], held["two"]);
}

#[test]
fn a_full_range_gives_the_event_and_a_freed_range_goes_to_the_waiting_node() {
    let api = TestApi::start();
    // Two /24s in all.
    let _controller = ipam(&api, "10.20.0.0/23");
    add_nodes(&api, &["first", "second"]);
    let held = all_assigned(&api);
    add_nodes(&api, &["third"]);
    let event = kubelab_scenarios::wait::until_blocking("a CIDRNotAvailable event for Node third", DEADLINE, || {
        let out = api.kubectl(&["get", "events", "-n", "default", "--field-selector", "involvedObject.name=third", "-o", "json"]).succeeded();
        let events: Value = serde_json::from_str(&out).unwrap();
        events["items"].as_array().unwrap().iter().find(|e| e["reason"] == "CIDRNotAvailable").cloned().ok_or_else(|| format!("events: {events}"))
    });
    assert_eq!(event["message"], "Node third status is now: CIDRNotAvailable");
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["involvedObject"]["kind"], "Node");
    assert_eq!(event["source"]["component"], "cidrAllocator");
    assert_eq!(pod_cidrs(&api)["third"], "", "a Node got a range the cluster CIDR does not have");

    api.kubectl(&["delete", "node", "first"]).succeeded();
    let after = all_assigned(&api);
    assert_eq!(after["third"], held["first"]);
    distinct(&after);
}
