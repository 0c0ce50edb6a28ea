//! The second real client: the Python `kubernetes` package (from PyPI;
//! `just setup` installs it) runs tests/python/client.py against our
//! apiserver over a real etcd.

use kubelab_scenarios::apiserver::TestApi;

#[test]
fn python_client_lists_creates_watches_and_deletes() {
    let api = TestApi::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/client.py");
    let out = std::process::Command::new("python3").arg(&script).env("KUBECONFIG", &api.kubeconfig).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    insta::assert_snapshot!(stdout);
}
