//! kubectl's `create` commands against our apiserver. Since 1.32 kubectl
//! sends the objects its `create <kind>` generators build as protobuf
//! (application/vnd.kubernetes.protobuf); `run` and `expose` still send
//! JSON. Each test checks which one kubectl sent, that a protobuf body
//! decodes to exactly the JSON kubectl prints for `--dry-run=client -o
//! json`, that the stored object contains that JSON, and that it has the
//! fields the command set.
//!
//! KUBECTL_BIN=/path/to/kubectl runs another kubectl release; releases
//! before 1.32 send JSON, which fails the protobuf checks.

use std::process::{Command, Stdio};

use kubelab_scenarios::apiserver::{Output, TestApi};
use serde_json::{json, Value};

/// Runs kubectl, or the binary $KUBECTL_BIN names (to try another release).
fn kubectl(api: &TestApi, args: &[&str]) -> Output {
    let Some(bin) = std::env::var_os("KUBECTL_BIN") else {
        return api.kubectl(args);
    };
    let out = Command::new(&bin)
        .args(args)
        .env("KUBECONFIG", &api.kubeconfig)
        .env("HOME", api.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin:?}: {e}"));
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs kubectl; fails the test unless it succeeds.
fn ok(api: &TestApi, args: &[&str]) -> String {
    let out = kubectl(api, args);
    assert_eq!(out.code, 0, "kubectl {args:?} failed:\n{}{}", out.stdout, out.stderr);
    out.stdout
}

fn get(api: &TestApi, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&ok(api, &all)).expect("kubectl get -o json prints JSON")
}

/// Whether every field of `want` is in `have` with the same value (lists
/// element by element). Fields the server owns are not compared: the
/// creation time kubectl leaves null and the status.
fn contains(have: &Value, want: &Value, path: &str) -> Result<(), String> {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => {
            for (k, wv) in w {
                let here = format!("{path}.{k}");
                if here.ends_with(".creationTimestamp") && wv.is_null() || here == ".status" {
                    continue;
                }
                contains(h.get(k).ok_or_else(|| format!("{here} is missing"))?, wv, &here)?;
            }
            Ok(())
        }
        (Value::Array(h), Value::Array(w)) if h.len() == w.len() => {
            h.iter().zip(w).enumerate().try_for_each(|(i, (h, w))| contains(h, w, &format!("{path}[{i}]")))
        }
        _ if have == want => Ok(()),
        _ => Err(format!("{path} is {have}, kubectl sent {want}")),
    }
}

/// `args` with `flags` added before any `--` (after it they would be the
/// container's arguments).
fn with_flags<'a>(args: &[&'a str], flags: &[&'a str]) -> Vec<&'a str> {
    let at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    let mut all = args[..at].to_vec();
    all.extend_from_slice(flags);
    all.extend_from_slice(&args[at..]);
    all
}

/// How kubectl (1.32 and 1.33) sends the object of a command.
#[derive(PartialEq)]
enum Sends {
    /// The `create <kind>` generators: protobuf.
    Protobuf,
    /// `kubectl run` and `kubectl expose`: JSON.
    Json,
}

/// The protobuf body of the request -v=10 logged, from its hex dump:
/// lines like `00000000  6b 38 73 00 0a 0f ...  |k8s.....|` after
/// `"Request Body" body=<`, up to a line ` >`.
fn logged_body(stderr: &str) -> Option<Vec<u8>> {
    let start = stderr.find("\"Request Body\" body=<\n")?;
    let mut body = Vec::new();
    for line in stderr[start..].lines().skip(1) {
        if line.trim() == ">" {
            return Some(body);
        }
        let dump = line.trim().split('|').next()?;
        for byte in dump.split_whitespace().skip(1) {
            body.push(u8::from_str_radix(byte, 16).ok()?);
        }
    }
    None
}

/// Runs a `kubectl create`-like command: first with `--dry-run=client -o
/// json` for the object kubectl builds, then for real with `-v=10`, which
/// logs the request's Content-Type and whole body. A protobuf body must decode to
/// exactly kubectl's JSON; the stored object must contain it. Returns the
/// object as stored.
fn create(api: &TestApi, args: &[&str], get_args: &[&str], sends: Sends) -> Value {
    let dry = with_flags(args, &["--dry-run=client", "-o", "json"]);
    let sent: Value = serde_json::from_str(&ok(api, &dry)).expect("kubectl --dry-run=client -o json prints JSON");

    let out = kubectl(api, &with_flags(args, &["-v=10"]));
    assert_eq!(out.code, 0, "kubectl {args:?} failed:\n{}{}", out.stdout, out.stderr);
    let want = match sends {
        Sends::Protobuf => "Content-Type: application/vnd.kubernetes.protobuf",
        Sends::Json => "Content-Type: application/json",
    };
    // -v=10 logs each request as a curl command line.
    let post = out.stderr.lines().find(|l| l.contains("curl -v -XPOST")).unwrap_or("");
    assert!(post.contains(want), "kubectl {args:?} did not POST with {want}:\n{}", out.stderr);
    if sends == Sends::Protobuf {
        let body = logged_body(&out.stderr).unwrap_or_else(|| panic!("no request body in kubectl's log:\n{}", out.stderr));
        let decoded = apiserver::protobuf::decode(&body).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}\n{}", out.stderr));
        assert_eq!(decoded, sent, "kubectl {args:?}: the protobuf body decodes to\n{decoded:#}\nkubectl's JSON is\n{sent:#}");
    }

    let stored = get(api, get_args);
    if let Err(e) = contains(&stored, &sent, "") {
        panic!("kubectl {args:?}: {e}\nsent: {sent:#}\nstored: {stored:#}");
    }
    stored
}

#[test]
fn namespace_configmap_secret_serviceaccount() {
    let api = TestApi::start();

    let ns = create(&api, &["create", "namespace", "team-a"], &["namespace", "team-a"], Sends::Protobuf);
    assert_eq!(ns["metadata"]["name"], "team-a");
    assert_eq!(ns["kind"], "Namespace");

    let cm = create(
        &api,
        &["create", "configmap", "settings", "--from-literal=mode=fast", "--from-literal=greeting=hello world", "-n", "team-a"],
        &["configmap", "settings", "-n", "team-a"],
        Sends::Protobuf,
    );
    assert_eq!(cm["data"], json!({"mode": "fast", "greeting": "hello world"}));
    assert_eq!(cm["metadata"]["namespace"], "team-a");

    let secret = create(
        &api,
        &["create", "secret", "generic", "creds", "--from-literal=user=admin", "--from-literal=password=s3cr=t!"],
        &["secret", "creds"],
        Sends::Protobuf,
    );
    // base64 of "admin" and "s3cr=t!".
    assert_eq!(secret["data"], json!({"user": "YWRtaW4=", "password": "czNjcj10IQ=="}));
    assert_eq!(secret["type"], "Opaque");

    let registry = create(
        &api,
        &["create", "secret", "docker-registry", "pull", "--docker-server=registry.example", "--docker-username=u", "--docker-password=p"],
        &["secret", "pull"],
        Sends::Protobuf,
    );
    assert_eq!(registry["type"], "kubernetes.io/dockerconfigjson");
    assert!(registry["data"][".dockerconfigjson"].as_str().is_some_and(|d| !d.is_empty()));

    let sa = create(&api, &["create", "serviceaccount", "robot"], &["serviceaccount", "robot"], Sends::Protobuf);
    assert_eq!(sa["metadata"]["name"], "robot");
    assert_eq!(sa["metadata"]["namespace"], "default");
}

#[test]
fn services() {
    let api = TestApi::start();

    let svc = create(&api, &["create", "service", "clusterip", "web", "--tcp=80:8080"], &["service", "web"], Sends::Protobuf);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["name"], "80-8080");
    assert_eq!(svc["spec"]["selector"], json!({"app": "web"}));

    let headless = create(&api, &["create", "service", "clusterip", "headless", "--clusterip=None", "--tcp=53:53"], &["service", "headless"], Sends::Protobuf);
    assert_eq!(headless["spec"]["clusterIP"], "None");

    let np = create(&api, &["create", "service", "nodeport", "np", "--tcp=8080:80", "--node-port=30080"], &["service", "np"], Sends::Protobuf);
    assert_eq!(np["spec"]["type"], "NodePort");
    assert_eq!(np["spec"]["ports"][0]["nodePort"], 30080);
    assert_eq!(np["spec"]["ports"][0]["port"], 8080);
    assert_eq!(np["spec"]["ports"][0]["targetPort"], 80);

    let lb = create(&api, &["create", "service", "loadbalancer", "lb", "--tcp=443:8443"], &["service", "lb"], Sends::Protobuf);
    assert_eq!(lb["spec"]["type"], "LoadBalancer");
    assert_eq!(lb["spec"]["ports"][0]["port"], 443);
    assert_eq!(lb["spec"]["ports"][0]["targetPort"], 8443);

    let ext = create(&api, &["create", "service", "externalname", "ext", "--external-name=db.example.com"], &["service", "ext"], Sends::Protobuf);
    assert_eq!(ext["spec"]["type"], "ExternalName");
    assert_eq!(ext["spec"]["externalName"], "db.example.com");
}

#[test]
fn deployment_and_expose() {
    let api = TestApi::start();

    let d = create(&api, &["create", "deployment", "web", "--image=nginx:1.27", "--replicas=3", "--port=80"], &["deployment", "web"], Sends::Protobuf);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
    assert_eq!(d["spec"]["template"]["metadata"]["labels"], json!({"app": "web"}));
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["name"], "nginx");
    assert_eq!(c["image"], "nginx:1.27");
    assert_eq!(c["ports"], json!([{"containerPort": 80, "protocol": "TCP"}]));

    // Zero replicas is a value, not an absent field.
    let idle = create(&api, &["create", "deployment", "idle", "--image=busybox", "--replicas=0"], &["deployment", "idle"], Sends::Protobuf);
    assert_eq!(idle["spec"]["replicas"], 0);

    // Words after -- are the container's command.
    let sleeper = create(&api, &["create", "deployment", "sleeper", "--image=busybox", "--", "sleep", "3600"], &["deployment", "sleeper"], Sends::Protobuf);
    assert_eq!(sleeper["spec"]["template"]["spec"]["containers"][0]["command"], json!(["sleep", "3600"]));

    let svc = create(&api, &["expose", "deployment", "web", "--port=8080", "--target-port=80", "--name=web-svc"], &["service", "web-svc"], Sends::Json);
    assert_eq!(svc["spec"]["selector"], json!({"app": "web"}));
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
}

#[test]
fn run_pod() {
    let api = TestApi::start();

    let pod = create(
        &api,
        &[
            "run",
            "box",
            "--image=busybox:1.36",
            "--port=8080",
            "--env=GREETING=hi",
            "--env=EMPTY=",
            "--labels=app=box,tier=test",
            "--restart=Never",
            "--",
            "sleep",
            "3600",
        ],
        &["pod", "box"],
        Sends::Json,
    );
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["name"], "box");
    assert_eq!(c["image"], "busybox:1.36");
    assert_eq!(c["args"], json!(["sleep", "3600"]));
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["env"], json!([{"name": "GREETING", "value": "hi"}, {"name": "EMPTY"}]));
    assert_eq!(pod["metadata"]["labels"], json!({"app": "box", "tier": "test"}));
    assert_eq!(pod["spec"]["restartPolicy"], "Never");

    // --command: the words are the command, not the arguments.
    let cmd = create(&api, &["run", "cmd", "--image=busybox", "--restart=Never", "--command", "--", "sh", "-c", "echo hi"], &["pod", "cmd"], Sends::Json);
    assert_eq!(cmd["spec"]["containers"][0]["command"], json!(["sh", "-c", "echo hi"]));
}

#[test]
fn jobs_and_cronjobs() {
    let api = TestApi::start();

    let job = create(&api, &["create", "job", "once", "--image=busybox", "--", "echo", "hi"], &["job", "once"], Sends::Protobuf);
    let spec = &job["spec"]["template"]["spec"];
    assert_eq!(spec["containers"][0]["image"], "busybox");
    assert_eq!(spec["containers"][0]["command"], json!(["echo", "hi"]));
    assert_eq!(spec["restartPolicy"], "Never");

    let cron = create(
        &api,
        &["create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *", "--restart=OnFailure", "--", "date"],
        &["cronjob", "tick"],
        Sends::Protobuf,
    );
    assert_eq!(cron["spec"]["schedule"], "*/5 * * * *");
    let template = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(template["containers"][0]["command"], json!(["date"]));
    assert_eq!(template["restartPolicy"], "OnFailure");

    // A Job made by hand from the CronJob's template, owned by it.
    let manual = create(&api, &["create", "job", "manual", "--from=cronjob/tick"], &["job", "manual"], Sends::Protobuf);
    assert_eq!(manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"], "manual");
    assert_eq!(manual["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(manual["metadata"]["ownerReferences"][0]["name"], "tick");
    assert_eq!(manual["spec"]["template"]["spec"]["containers"][0]["command"], json!(["date"]));
}

#[test]
fn roles_and_bindings() {
    let api = TestApi::start();

    let role = create(&api, &["create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods,pods/log"], &["role", "pod-reader"], Sends::Protobuf);
    assert_eq!(role["rules"], json!([{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}]));

    let binding = create(
        &api,
        &["create", "rolebinding", "read-pods", "--role=pod-reader", "--user=alice", "--serviceaccount=default:robot"],
        &["rolebinding", "read-pods"],
        Sends::Protobuf,
    );
    assert_eq!(binding["roleRef"], json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"}));
    let subjects = &binding["subjects"];
    assert_eq!(subjects[0], json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}));
    assert_eq!((&subjects[1]["kind"], &subjects[1]["name"], &subjects[1]["namespace"]), (&json!("ServiceAccount"), &json!("robot"), &json!("default")));

    let cluster_role = create(
        &api,
        &["create", "clusterrole", "deployment-scaler", "--verb=get", "--resource=deployments.apps/scale", "--non-resource-url=/healthz"],
        &["clusterrole", "deployment-scaler"],
        Sends::Protobuf,
    );
    assert_eq!(
        cluster_role["rules"],
        json!([
            {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get"]},
            {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
        ])
    );

    let cluster_binding =
        create(&api, &["create", "clusterrolebinding", "ops-view", "--clusterrole=view", "--group=ops"], &["clusterrolebinding", "ops-view"], Sends::Protobuf);
    assert_eq!(cluster_binding["roleRef"], json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}));
    assert_eq!(cluster_binding["subjects"], json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "ops"}]));
}

#[test]
fn pdb_quota_ingress() {
    let api = TestApi::start();

    let pdb =
        create(&api, &["create", "poddisruptionbudget", "web", "--selector=app=web", "--min-available=1"], &["poddisruptionbudget", "web"], Sends::Protobuf);
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(pdb["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));

    let percent = create(&api, &["create", "pdb", "half", "--selector=app=half", "--max-unavailable=50%"], &["pdb", "half"], Sends::Protobuf);
    assert_eq!(percent["spec"]["maxUnavailable"], "50%");

    let quota =
        create(&api, &["create", "quota", "small", "--hard=pods=10,cpu=2,memory=1Gi", "--scopes=NotTerminating"], &["resourcequota", "small"], Sends::Protobuf);
    assert_eq!(quota["spec"]["hard"], json!({"pods": "10", "cpu": "2", "memory": "1Gi"}));
    assert_eq!(quota["spec"]["scopes"], json!(["NotTerminating"]));

    let ingress = create(
        &api,
        &["create", "ingress", "web", "--class=default", "--rule=example.com/=web:80", "--rule=example.com/api*=api:http,tls=example-cert"],
        &["ingress", "web"],
        Sends::Protobuf,
    );
    assert_eq!(ingress["spec"]["ingressClassName"], "default");
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(rule["host"], "example.com");
    assert_eq!(
        rule["http"]["paths"],
        json!([
            {"path": "/", "pathType": "Exact", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
            {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": {"name": "http"}}}},
        ])
    );
    assert_eq!(ingress["spec"]["tls"], json!([{"hosts": ["example.com"], "secretName": "example-cert"}]));
}
