//! A lab from `topologies/1-node.yaml` on the real Docker engine: the
//! apiserver container comes up behind its health gate, the lab's
//! kubeconfig reaches it from this machine, kubectl writes through it into
//! the lab's etcd, the controller-manager empties and removes a deleted
//! namespace, and `down` takes the PKI away with the containers.

use kubelab::docker::Engine;
use kubelab::{lab, pki, plan};
use kubelab_scenarios::{assert_nothing_left, kubectl, kubectl_stdin, lab_name, topology, up, LabGuard};

#[tokio::test]
async fn kubectl_reaches_the_labs_apiserver() {
    let engine = Engine::connect().await.unwrap();
    let name = lab_name("kubectl");
    let guard = LabGuard::new(&name);
    let source = topology("1-node");
    up(&engine, &source, &name).await.unwrap();

    let config = lab::kubeconfig(&engine, &name).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config");
    std::fs::write(&file, config.to_yaml()).unwrap();

    let (code, out) = kubectl(&file, &["get", "namespaces", "-o", "name"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "namespace/default\nnamespace/kube-node-lease\nnamespace/kube-public\nnamespace/kube-system\n");
    // The kubernetes Service's endpoints are the apiserver's address.
    let apiserver_ip = engine
        .containers(Some(&name))
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == plan::container_name(&name, "apiserver-0"))
        .and_then(|c| c.address)
        .unwrap();
    let (code, out) = kubectl(&file, &["get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}"]);
    assert_eq!((code, out), (0, format!("{apiserver_ip}:6443")));
    let (code, out) = kubectl(&file, &["get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]);
    assert_eq!((code, out.as_str()), (0, "10.96.0.1"));
    let (code, out) = kubectl(&file, &["apply", "-f", "-", "--dry-run=server"]);
    assert_ne!(code, 0, "no manifest on stdin is an error: {out}");
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\ndata:\n  written: via-kubectl\n";
    let (code, out) = kubectl_stdin(&file, &["apply", "-f", "-"], cm);
    assert_eq!(code, 0, "{out}");

    // What kubectl wrote is in etcd, as JSON under upstream's key.
    let etcd = plan::container_name(&name, "etcd-0");
    let args = plan::etcdctl(&["get", "--print-value-only", "/registry/configmaps/default/probe"]);
    let (code, stored) = engine.exec(&etcd, &args).await.unwrap();
    assert_eq!(code, 0, "{stored}");
    let stored: serde_json::Value = serde_json::from_str(stored.trim()).unwrap();
    assert_eq!(stored["data"]["written"], "via-kubectl");

    // Server-side apply through the lab's kubeconfig: the object moves from
    // client-side apply and kubectl becomes its Apply manager.
    let (code, out) = kubectl_stdin(&file, &["apply", "--server-side", "-f", "-"], &cm.replace("via-kubectl", "via-ssa"));
    assert_eq!((code, out.trim()), (0, "configmap/probe serverside-applied"));
    let (code, out) = kubectl(
        &file,
        &[
            "get",
            "cm",
            "probe",
            "--show-managed-fields",
            "-o",
            // By name: kubectl's migration leaves a `kubectl-last-applied`
            // Apply entry too, which sorts first when it is a second older.
            r#"jsonpath={.data.written} {.metadata.managedFields[?(@.manager=="kubectl")].manager} {.metadata.managedFields[?(@.manager=="kubectl")].operation}"#,
        ],
    );
    assert_eq!((code, out.as_str()), (0, "via-ssa kubectl Apply"));

    // The apiserver finds the controller-manager and the scheduler by
    // their aliases and asks their /healthz.
    for component in ["controller-manager", "scheduler"] {
        let (code, out) = kubectl(&file, &["get", "componentstatus", component, "--no-headers"]);
        assert_eq!(code, 0, "{out}");
        let columns: Vec<&str> = out.lines().find(|l| l.starts_with(component)).unwrap_or("").split_whitespace().take(2).collect();
        assert_eq!(columns, [component, "Healthy"], "{out}");
    }

    // kubectl's default wait on a namespace returns once the namespace
    // controller has emptied it and released it. Run without the 5 s
    // request timeout of `kubectl()`: the wait is one long watch.
    let (code, out) = kubectl(&file, &["create", "namespace", "doomed"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = kubectl(&file, &["create", "configmap", "inside", "-n", "doomed", "--from-literal=a=1"]);
    assert_eq!(code, 0, "{out}");
    let deleted = std::process::Command::new("kubectl").args(["delete", "namespace", "doomed", "--timeout=60s"]).env("KUBECONFIG", &file).output().unwrap();
    assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
    assert_eq!(String::from_utf8_lossy(&deleted.stdout), "namespace \"doomed\" deleted\n");
    let (code, out) = kubectl(&file, &["get", "namespace", "doomed"]);
    assert_eq!((code, out.trim()), (1, "Error from server (NotFound): namespaces \"doomed\" not found"));
    let args = plan::etcdctl(&["get", "--prefix", "--keys-only", "/registry/configmaps/doomed/"]);
    let (code, keys) = engine.exec(&plan::container_name(&name, "etcd-0"), &args).await.unwrap();
    assert_eq!((code, keys.trim()), (0, ""), "the namespace's configmap is left in etcd");

    // Without the admin certificate, the API answers 401.
    let apiserver = plan::container_name(&name, "apiserver-0");
    let curl = ["curl", "-sk", "https://127.0.0.1:6443/api/v1/namespaces"].map(String::from).to_vec();
    let (_, body) = engine.exec(&apiserver, &curl).await.unwrap();
    assert!(body.contains("\"code\":401"), "{body}");

    let pki_dir = pki::dir(&name).unwrap();
    assert!(pki_dir.join("ca.crt").is_file());
    assert!(lab::down(&engine, &name, false).await.unwrap());
    assert!(!pki_dir.exists(), "down removes the lab's PKI");
    assert_nothing_left(&engine, &name).await;
    drop(guard);
}
