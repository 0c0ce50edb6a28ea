//! The busybox image's network tools as tutorials and upstream's e2e tests
//! type them, in a pod: `wget -T` fetches from a pod (and fails, rather
//! than crashing, against a closed port), `nc -z` tells an open port from
//! a closed one, and nslookup finds the kubernetes Service through cluster
//! DNS, by its full name and by the pod's search path. Debian's
//! busybox-static, which pod images were once built around, crashed on
//! `wget -T` (exit 139) and had no `nc -z`.

use kubelab_scenarios::cluster::{s, Cluster as Lab};
use kubelab_scenarios::wait::until;

use super::PodInfo;

/// `cmd` in pod `tools` by kubectl exec: exit code and output (stdout and
/// stderr). kubectl's "Unknown stream id" race (see the connectivity
/// matrix) is asked again.
fn exec(lab: &Lab, cmd: &[&str]) -> (i32, String) {
    let mut args = vec!["exec", "tools", "--"];
    args.extend(cmd);
    let (code, out) = lab.k(&args);
    if out.contains("Unknown stream id") {
        return lab.k(&args);
    }
    (code, out)
}

pub async fn busybox_tools(lab: &Lab, pods: &[PodInfo]) {
    lab.ok(&["run", "tools", "--image=busybox", "--restart=Never", "--", "sleep", "3600"]);
    until("tools to run", || async {
        let phase = lab.ok(&["get", "pod", "tools", "-o", "jsonpath={.status.phase}"]);
        if phase == "Running" {
            Ok(())
        } else {
            Err(format!("phase {phase:?}"))
        }
    })
    .await;

    // wget with a timeout: labhost's /hostname answers with the pod's name.
    let web = &pods[0];
    let (code, out) = exec(lab, &["wget", "-qO-", "-T", "2", &format!("http://{}:8080/hostname", web.ip)]);
    assert_eq!((code, out.trim()), (0, web.name.as_str()), "wget -T 2 from {}", web.name);
    // A closed port is an error (1), not a crash (139).
    let (code, out) = exec(lab, &["wget", "-qO-", "-T", "2", &format!("http://{}:1/", web.ip)]);
    assert_eq!(code, 1, "wget -T 2 to a closed port: {out}");

    // nc -z: a zero-I/O connect, success on the open port only.
    let (code, out) = exec(lab, &["nc", "-z", "-w", "2", &web.ip, "8080"]);
    assert_eq!(code, 0, "nc -z to {}:8080: {out}", web.ip);
    let (code, out) = exec(lab, &["nc", "-zv", "-w", "2", &web.ip, "8080"]);
    assert!(code == 0 && out.contains("open"), "nc -zv to {}:8080 ({code}): {out}", web.ip);
    let (code, out) = exec(lab, &["nc", "-z", "-w", "2", &web.ip, "1"]);
    assert_eq!(code, 1, "nc -z to a closed port: {out}");

    // nslookup through cluster DNS. busybox's nslookup applies the search
    // path only to names without a dot, so `kubernetes.default` is asked as
    // it stands (and is not found, as with upstream's busybox image). The
    // full name is found; so is the bare name, through the search path, but
    // busybox asks every search domain and exits 1 for the ones that answer
    // NXDOMAIN, so there only the answer counts.
    let cluster_ip = s(&lab.json(&["get", "service", "kubernetes"])["spec"]["clusterIP"]);
    let answers = |out: &str| out.lines().any(|l| l.strip_prefix("Address: ").is_some_and(|a| a.trim() == cluster_ip));
    until(&format!("nslookup kubernetes.default.svc.cluster.local to answer {cluster_ip}"), || async {
        let (code, out) = exec(lab, &["nslookup", "-type=a", "kubernetes.default.svc.cluster.local"]);
        if code == 0 && answers(&out) {
            Ok(())
        } else {
            Err(format!("exit {code}: {out}"))
        }
    })
    .await;
    let (code, out) = exec(lab, &["nslookup", "-type=a", "kubernetes"]);
    assert!(answers(&out), "nslookup kubernetes (exit {code}): {out}");

    lab.ok(&["delete", "pod", "tools", "--grace-period=1"]);
}
