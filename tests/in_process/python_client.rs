//! The second real client: the Python `kubernetes` package (from PyPI;
//! `just setup` installs it) runs tests/python/client.py against our
//! apiserver over a real etcd.

use kubelab_scenarios::apiserver::TestApi;

/// Runs `tests/python/<script>` against `api`; its output, once it
/// succeeded.
pub fn python(api: &TestApi, script: &str) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python").join(script);
    let out = std::process::Command::new("python3").arg(&script).env("KUBECONFIG", &api.kubeconfig).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn python_client_lists_creates_watches_and_deletes() {
    let api = TestApi::start();
    insta::assert_snapshot!(python(&api, "client.py"));
}
