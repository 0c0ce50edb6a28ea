//! The `lab` binary on bad input: every error says what is wrong and what to
//! do, and none of them touches the Docker engine's objects.

use std::process::Command;

fn lab(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lab")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().expect("lab runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn unknown_topology_lists_the_known_ones() {
    let (ok, text) = lab(&["up", "7-node"]);
    assert!(!ok);
    assert!(text.contains("unknown topology \"7-node\""), "{text}");
    assert!(text.contains("1-node, 3-node, ha"), "{text}");
}

#[test]
fn invalid_lab_name_is_refused_before_anything_else() {
    let (ok, text) = lab(&["up", "1-node", "--name", "Not_A_Name"]);
    assert!(!ok);
    assert!(text.contains("invalid lab name \"Not_A_Name\""), "{text}");
}

#[test]
fn unreachable_docker_says_how_to_start_it() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_lab")).args(["status", "nothing"]).env("DOCKER_HOST", "unix:///nonexistent/docker.sock").output().expect("lab runs");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("cannot reach the Docker engine"), "{text}");
    assert!(text.contains("systemctl start docker"), "{text}");
}

#[test]
fn validate_prints_the_topology_with_defaults() {
    let (ok, text) = lab(&["validate", "1-node"]);
    assert!(ok, "{text}");
    assert!(text.contains("name: node-1"), "{text}");
    assert!(text.contains("pods: 110"), "{text}");
}

#[test]
fn validate_reports_file_line_and_field() {
    let dir = std::env::temp_dir().join(format!("kubelab-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(&file, "apiVersion: kubelab.dev/v1alpha1\nkind: Topology\nnetworking:\n  podSubnet: nonsense\n").unwrap();
    let (ok, text) = lab(&["validate", file.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!ok);
    assert!(text.contains("bad.yaml:4:14: networking.podSubnet: invalid CIDR \"nonsense\""), "{text}");
}
