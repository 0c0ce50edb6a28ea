//! The serviceaccount controller against the real apiserver: a `default`
//! ServiceAccount in every active namespace, made again when deleted,
//! none in a namespace being deleted.

use std::time::Duration;

use kubelab_scenarios::apiserver::TestApi;

const DEADLINE: Duration = Duration::from_secs(60);

/// The uid of `namespace`'s default ServiceAccount once it exists.
fn default_account(api: &TestApi, namespace: &str) -> String {
    kubelab_scenarios::wait::until_blocking(&format!("namespace {namespace}'s default ServiceAccount"), DEADLINE, || {
        let out = api.kubectl(&["get", "serviceaccount", "default", "-n", namespace, "-o", "jsonpath={.metadata.uid}", "--ignore-not-found"]);
        if out.code == 0 && !out.stdout.trim().is_empty() {
            Ok(out.stdout.trim().to_string())
        } else {
            Err(format!("none yet: {}", out.stderr))
        }
    })
}

#[test]
fn every_active_namespace_has_a_default_serviceaccount() {
    let api = TestApi::start();
    let _controller = api.controller_manager_with(&["serviceaccount-controller"], controller_manager::Settings::default());
    // The namespaces the apiserver made at its start, and a new one.
    for namespace in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        default_account(&api, namespace);
    }
    api.kubectl(&["create", "namespace", "team"]).succeeded();
    let first = default_account(&api, "team");

    // Deleted, it comes back (another object, so another uid).
    api.kubectl(&["delete", "serviceaccount", "default", "-n", "team"]).succeeded();
    let again = default_account(&api, "team");
    assert_ne!(first, again, "the deleted ServiceAccount is still there");

    // A namespace being deleted (it stays Terminating: no namespace
    // controller runs here) does not get it back.
    api.kubectl(&["create", "namespace", "leaving"]).succeeded();
    default_account(&api, "leaving");
    api.kubectl(&["delete", "namespace", "leaving", "--wait=false"]).succeeded();
    api.kubectl(&["delete", "serviceaccount", "default", "-n", "leaving"]).succeeded();
    // The controller has caught up with later events once a namespace made
    // after these gets its account.
    api.kubectl(&["create", "namespace", "later"]).succeeded();
    default_account(&api, "later");
    let out = api.kubectl(&["get", "serviceaccounts", "-n", "leaving", "-o", "name"]).succeeded();
    assert_eq!(out, "", "a terminating namespace got a ServiceAccount");
}
