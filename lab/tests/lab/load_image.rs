//! `lab load image` against the real engine, up to the node's kubelet: a
//! labelled stand-in node (busybox-static, and a `kubelet` script that
//! records the archive it is asked to import) must receive one `docker save`
//! archive holding the named image, at the path it is told, and have it
//! removed afterwards.

use std::process::{Command, Output};

const FAKE_KUBELET: &str = "#!/bin/sh\n\
    # kubelet images import ARCHIVE: list the archive where the test can read it.\n\
    [ \"$1 $2\" = \"images import\" ] || { echo \"unexpected arguments: $*\" >&2; exit 2; }\n\
    tar -tf \"$3\" > /imported-list && echo \"$3\" > /imported-path\n";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn ok(output: Output, what: &str) -> String {
    assert!(output.status.success(), "{what}: {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Removes the test's container and image, also when it fails.
struct Cleanup {
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = run("docker", &["rm", "-f", &self.container]);
        let _ = run("docker", &["rmi", "-f", &self.image]);
    }
}

#[test]
fn load_image_hands_each_node_one_archive_to_import() {
    let lab = format!("loadtest{}", std::process::id());
    let image = format!("kubelab-test/load-node:{}", std::process::id());
    let cleanup = Cleanup { container: format!("{lab}-worker"), image: image.clone() };

    let context = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/busybox", context.path().join("busybox")).expect("busybox-static is installed (scripts/setup.sh)");
    std::fs::write(context.path().join("kubelet"), FAKE_KUBELET).unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         COPY kubelet /usr/local/bin/kubelet\nRUN [\"/bin/busybox\", \"chmod\", \"755\", \"/usr/local/bin/kubelet\"]\n",
    )
    .unwrap();
    ok(run("docker", &["build", "-q", "--label", &format!("dev.kubelab.lab={lab}"), "-t", &image, context.path().to_str().unwrap()]), "docker build");
    ok(
        run(
            "docker",
            &[
                "run",
                "-d",
                "--name",
                &cleanup.container,
                "--label",
                &format!("dev.kubelab.lab={lab}"),
                "--label",
                "dev.kubelab.role=node",
                "--network",
                "none",
                &image,
                "sleep",
                "3600",
            ],
        ),
        "docker run",
    );

    let lab_bin = env!("CARGO_BIN_EXE_lab");
    let loaded = run(lab_bin, &["load", "image", &image, "--name", &lab]);
    ok(loaded, "lab load image");
    let listed = ok(run("docker", &["exec", &cleanup.container, "cat", "/imported-list"]), "reading what the kubelet was given");
    assert!(listed.lines().any(|l| l == "manifest.json"), "a docker save archive: {listed}");
    let path = ok(run("docker", &["exec", &cleanup.container, "cat", "/imported-path"]), "reading the archive's path");
    assert!(path.trim().starts_with("/var/lib/kubelab/imports/load-") && path.trim().ends_with(".tar"), "{path}");
    let left = ok(run("docker", &["exec", &cleanup.container, "ls", "-A", "/var/lib/kubelab/imports"]), "listing the import folder");
    assert_eq!(left.trim(), "", "the archive is removed once imported");

    let missing = run(lab_bin, &["load", "image", "kubelab-test/no-such-image:1", "--name", &lab]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("is not in the local Docker engine"), "{}", String::from_utf8_lossy(&missing.stderr));
    let nowhere = run(lab_bin, &["load", "image", &image, "--name", &format!("{lab}-none")]);
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("has no running node"), "{}", String::from_utf8_lossy(&nowhere.stderr));
    drop(cleanup);
}
