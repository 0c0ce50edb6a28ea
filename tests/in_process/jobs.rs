//! The job controller against the real apiserver. There is no kubelet
//! here: the test plays it, moving pods to Succeeded or Failed.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use kubelab_scenarios::apiserver::TestApi;
use kubelab_scenarios::wait::until;

const TRACKING: &str = "batch.kubernetes.io/job-tracking";

fn job(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n{extra_spec}  template:\n    spec:\n      restartPolicy: Never\n      \
         containers:\n      - name: work\n        image: busybox:1.36\n        command: [\"true\"]\n"
    )
}

/// The Job's pods that have not finished, as the kubelet would see them.
async fn running(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    let all = pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"))).await.unwrap().items;
    all.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
        .collect()
}

/// Ends `pod` as a kubelet would report it.
async fn finish(pods: &Api<Pod>, pod: &Pod, phase: &str) {
    let patch = serde_json::json!({"status": {"phase": phase}});
    pods.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

fn condition(job: &Job, kind: &str) -> Option<(String, String)> {
    let c = job.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == kind && c.status == "True")?;
    Some((c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_completions_two_at_a_time() {
    let api = TestApi::start();
    let client = api.client().await;
    let _controllers = api.controller_manager_with(&["job"], Default::default());
    api.kubectl_stdin(&["apply", "-f", "-"], &job("pi", "  completions: 3\n  parallelism: 2\n")).succeeded();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    for round in 0..3 {
        // Never more pods than parallelism or than completions left.
        let want = if round == 2 { 1 } else { 2 };
        let now = until(&format!("{want} running pods in round {round}"), || async {
            let now = running(&pods, "pi").await;
            assert!(now.len() <= want, "round {round}: {} pods run, at most {want} may", now.len());
            (now.len() == want).then_some(now.clone()).ok_or(format!("{} running", now.len()))
        })
        .await;
        assert!(now.iter().all(|p| p.finalizers().iter().any(|f| f == TRACKING)), "every pod carries the tracking finalizer");
        finish(&pods, &now[0], "Succeeded").await;
        until(&format!("{} succeeded", round + 1), || async {
            let s = jobs.get("pi").await.unwrap().status.unwrap_or_default();
            (s.succeeded == Some(round + 1)).then_some(()).ok_or(format!("{s:?}"))
        })
        .await;
    }
    let waited = api.kubectl(&["wait", "--for=condition=complete", "job/pi", "--timeout=30s"]);
    assert_eq!(waited.succeeded().trim(), "job.batch/pi condition met");
    let done = jobs.get("pi").await.unwrap();
    assert_eq!(condition(&done, "Complete"), Some(("CompletionsReached".into(), "Reached expected number of succeeded pods".into())));
    let status = done.status.unwrap();
    assert!(status.completion_time.is_some() && status.start_time.is_some());
    assert_eq!((status.succeeded, status.failed, status.active), (Some(3), None, None));
    // Counted pods lose the finalizer; the rest of the second round's pod
    // is left to finish as it is (kubectl shows it), none is tracked.
    until("no pod still tracked", || async {
        let all = pods.list(&ListParams::default().labels("job-name=pi")).await.unwrap().items;
        let tracked: Vec<String> = all
            .iter()
            .filter(|p| p.finalizers().iter().any(|f| f == TRACKING) && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
            .map(|p| p.name_any())
            .collect();
        tracked.is_empty().then_some(()).ok_or(format!("{tracked:?}"))
    })
    .await;
    let table = api.kubectl(&["get", "job", "pi"]).succeeded();
    assert!(table.contains("Complete") && table.contains("3/3"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_stop_at_the_backoff_limit() {
    let api = TestApi::start();
    let client = api.client().await;
    let _controllers = api.controller_manager_with(&["job"], Default::default());
    api.kubectl_stdin(&["apply", "-f", "-"], &job("flaky", "  backoffLimit: 1\n")).succeeded();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    // Two pods fail (the second after the controller's 10 s backoff): one
    // more than backoffLimit allows.
    for attempt in 1..=2 {
        let now = until(&format!("attempt {attempt} running"), || async {
            let now = running(&pods, "flaky").await;
            (now.len() == 1).then_some(now.clone()).ok_or(format!("{} running", now.len()))
        })
        .await;
        finish(&pods, &now[0], "Failed").await;
    }
    let failed = until("the Failed condition", || async {
        let j = jobs.get("flaky").await.unwrap();
        condition(&j, "Failed").ok_or(format!("{:?}", j.status))
    })
    .await;
    assert_eq!(failed, ("BackoffLimitExceeded".into(), "Job has reached the specified backoff limit".into()));
    let j = jobs.get("flaky").await.unwrap();
    assert!(condition(&j, "FailureTarget").is_some());
    assert_eq!(j.status.unwrap().failed, Some(2));
    let all = pods.list(&ListParams::default().labels("job-name=flaky")).await.unwrap().items;
    assert_eq!(all.len(), 2, "no pod after the limit: {:?}", all.iter().map(|p| p.name_any()).collect::<Vec<_>>());
    let table = api.kubectl(&["get", "job", "flaky"]).succeeded();
    assert!(table.contains("Failed") && table.contains("0/1"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_resume_and_expire() {
    let api = TestApi::start();
    let client = api.client().await;
    let _controllers = api.controller_manager_with(&["job", "garbagecollector"], Default::default());
    api.kubectl_stdin(&["apply", "-f", "-"], &job("batch", "  parallelism: 2\n  completions: 2\n  ttlSecondsAfterFinished: 0\n")).succeeded();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    until("two running", || async {
        let n = running(&pods, "batch").await.len();
        (n == 2).then_some(()).ok_or(format!("{n}"))
    })
    .await;
    // Suspended: its pods go (their finalizers with them) and it says so.
    api.kubectl(&["patch", "job", "batch", "--type=merge", "-p", r#"{"spec":{"suspend":true}}"#]).succeeded();
    until("no pods and Suspended", || async {
        let left = pods.list(&ListParams::default().labels("job-name=batch")).await.unwrap().items.len();
        let j = jobs.get("batch").await.unwrap();
        (left == 0 && condition(&j, "Suspended").is_some()).then_some(()).ok_or(format!("{left} pods, {:?}", j.status))
    })
    .await;
    api.kubectl(&["patch", "job", "batch", "--type=merge", "-p", r#"{"spec":{"suspend":false}}"#]).succeeded();
    let now = until("two running again", || async {
        let now = running(&pods, "batch").await;
        (now.len() == 2).then_some(now.clone()).ok_or(format!("{}", now.len()))
    })
    .await;
    for pod in &now {
        finish(&pods, pod, "Succeeded").await;
    }
    // ttlSecondsAfterFinished: 0 deletes it as soon as it completed.
    until("the finished Job deleted", || async {
        match jobs.get_opt("batch").await.unwrap() {
            None => Ok(()),
            Some(j) => Err(format!("{:?}", j.status)),
        }
    })
    .await;

    // A Job deleted while its pods run: their finalizers go, so they go.
    api.kubectl_stdin(&["apply", "-f", "-"], &job("gone", "")).succeeded();
    until("one running", || async {
        let n = running(&pods, "gone").await.len();
        (n == 1).then_some(()).ok_or(format!("{n}"))
    })
    .await;
    jobs.delete("gone", &DeleteParams::background()).await.unwrap();
    until("the orphan pod deleted", || async {
        let left: Vec<String> = pods.list(&ListParams::default().labels("job-name=gone")).await.unwrap().items.iter().map(|p| p.name_any()).collect();
        left.is_empty().then_some(()).ok_or(format!("{left:?}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjobs_make_jobs_on_schedule() {
    use k8s_openapi::api::batch::v1::CronJob;
    let api = TestApi::start();
    let client = api.client().await;
    let _controllers = api.controller_manager_with(&["cronjob", "job"], Default::default());
    let manifest = "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: tick\nspec:\n  schedule: \"* * * * *\"\n  jobTemplate:\n    spec:\n      \
                    template:\n        spec:\n          restartPolicy: Never\n          containers:\n          - name: work\n            image: busybox:1.36\n";
    api.kubectl_stdin(&["apply", "-f", "-"], manifest).succeeded();
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Rather than wait for the next minute, say the last run was three
    // minutes ago: a scheduled time is due now.
    let earlier = chrono::Utc::now() - chrono::Duration::minutes(3);
    let patch = serde_json::json!({"status": {"lastScheduleTime": earlier.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}});
    cronjobs.patch_status("tick", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let job = until("a scheduled Job", || async {
        let list = jobs.list(&ListParams::default()).await.unwrap().items;
        list.into_iter().find(|j| j.name_any().starts_with("tick-")).ok_or("no Job yet".to_string())
    })
    .await;
    let scheduled = job.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"].clone();
    let minutes = chrono::DateTime::parse_from_rfc3339(&scheduled).unwrap().timestamp() / 60;
    assert_eq!(job.name_any(), format!("tick-{minutes}"), "named after its scheduled minute");
    assert_eq!(job.owner_references()[0].kind, "CronJob");
    until("the CronJob lists it as active", || async {
        let s = cronjobs.get("tick").await.unwrap().status.unwrap_or_default();
        let active: Vec<String> = s.active.iter().flatten().filter_map(|a| a.name.clone()).collect();
        let last = s.last_schedule_time.map(|t| t.0.as_second());
        (active == [job.name_any()] && last == Some(minutes * 60)).then_some(()).ok_or(format!("active {active:?}, last schedule {last:?}"))
    })
    .await;
    let pod = until("its pod", || async {
        let now = running(&pods, &job.name_any()).await;
        now.into_iter().next().ok_or("no pod".to_string())
    })
    .await;
    finish(&pods, &pod, "Succeeded").await;
    until("no active Job and a last success", || async {
        let s = cronjobs.get("tick").await.unwrap().status.unwrap_or_default();
        (s.active.is_none() && s.last_successful_time.is_some()).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    // A run by hand: kubectl sends the Job as protobuf.
    let created = api.kubectl(&["create", "job", "by-hand", "--from=cronjob/tick"]).succeeded();
    assert_eq!(created.trim(), "job.batch/by-hand created");
    let by_hand = jobs.get("by-hand").await.unwrap();
    assert_eq!(by_hand.annotations().get("cronjob.kubernetes.io/instantiate").map(String::as_str), Some("manual"));
    assert_eq!(by_hand.owner_references()[0].name, "tick");
    let table = api.kubectl(&["get", "cronjob", "tick"]).succeeded();
    assert!(table.contains("* * * * *") && table.contains("False"), "{table}");
}

const INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// The completion indexes of `pods`, sorted.
fn indexes(pods: &[Pod]) -> Vec<String> {
    let mut all: Vec<String> = pods.iter().map(|p| p.annotations().get(INDEX).cloned().unwrap_or_default()).collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_jobs_run_each_index_to_success() {
    let api = TestApi::start();
    let client = api.client().await;
    let _controllers = api.controller_manager_with(&["job"], Default::default());
    // Upstream's checks on the mode: completions are needed.
    let refused = api.kubectl_stdin(&["apply", "-f", "-"], &job("bad", "  completionMode: Indexed\n  parallelism: 2\n"));
    assert!(refused.stderr.contains("spec.completions: Required value: when completion mode is Indexed"), "{}", refused.stderr);

    let spec = "  completionMode: Indexed\n  completions: 4\n  parallelism: 2\n";
    api.kubectl_stdin(&["apply", "-f", "-"], &job("idx", spec)).succeeded();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let first = until("indexes 0 and 1 running", || async {
        let now = running(&pods, "idx").await;
        (indexes(&now) == ["0", "1"]).then_some(now.clone()).ok_or(format!("indexes {:?}", indexes(&now)))
    })
    .await;
    // Each pod knows its index: annotation, label, hostname, variable.
    for pod in &first {
        let index = pod.annotations()[INDEX].clone();
        assert_eq!(pod.labels().get(INDEX), Some(&index));
        assert!(pod.name_any().starts_with(&format!("idx-{index}-")), "{}", pod.name_any());
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("idx-{index}").as_str()));
        let var = spec.containers[0].env.iter().flatten().find(|v| v.name == "JOB_COMPLETION_INDEX").expect("the index variable");
        let path = var.value_from.as_ref().and_then(|v| v.field_ref.as_ref()).map(|f| f.field_path.as_str());
        assert_eq!(path, Some("metadata.labels['batch.kubernetes.io/job-completion-index']"));
    }

    // Index 1 succeeds: the next free index, 2, takes its place.
    let one = first.iter().find(|p| p.annotations()[INDEX] == "1").unwrap();
    finish(&pods, one, "Succeeded").await;
    let second = until("indexes 0 and 2 running, 1 completed", || async {
        let now = running(&pods, "idx").await;
        let s = jobs.get("idx").await.unwrap().status.unwrap_or_default();
        let seen = (indexes(&now), s.completed_indexes.clone(), s.succeeded);
        (seen == (vec!["0".to_string(), "2".to_string()], Some("1".to_string()), Some(1))).then_some(now.clone()).ok_or(format!("{seen:?}"))
    })
    .await;
    for pod in &second {
        finish(&pods, pod, "Succeeded").await;
    }
    // Three indexes in a row are written as a range.
    let last = until("index 3 running, 0-2 completed", || async {
        let now = running(&pods, "idx").await;
        let s = jobs.get("idx").await.unwrap().status.unwrap_or_default();
        let seen = (indexes(&now), s.completed_indexes.clone(), s.succeeded);
        (seen == (vec!["3".to_string()], Some("0-2".to_string()), Some(3))).then_some(now.clone()).ok_or(format!("{seen:?}"))
    })
    .await;
    finish(&pods, &last[0], "Succeeded").await;
    let done = until("the Job complete", || async {
        let j = jobs.get("idx").await.unwrap();
        condition(&j, "Complete").map(|_| j.clone()).ok_or(format!("{:?}", j.status))
    })
    .await;
    let s = done.status.unwrap();
    assert_eq!((s.completed_indexes.as_deref(), s.succeeded, s.failed), (Some("0-3"), Some(4), None));
    let table = api.kubectl(&["get", "job", "idx"]).succeeded();
    assert!(table.contains("Complete") && table.contains("4/4"), "{table}");
}

const FAILURES: &str = "batch.kubernetes.io/job-index-failure-count";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_fails_for_good_past_its_own_backoff_limit() {
    let api = TestApi::start();
    let client = api.client().await;
    let _controllers = api.controller_manager_with(&["job"], Default::default());
    let refused = api.kubectl_stdin(&["apply", "-f", "-"], &job("bad", "  backoffLimitPerIndex: 1\n"));
    assert!(refused.stderr.contains("spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode"), "{}", refused.stderr);

    let spec = "  completionMode: Indexed\n  completions: 3\n  parallelism: 3\n  backoffLimitPerIndex: 1\n  maxFailedIndexes: 1\n";
    api.kubectl_stdin(&["apply", "-f", "-"], &job("per", spec)).succeeded();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let of_index = |now: &[Pod], index: &str| now.iter().find(|p| p.annotations()[INDEX] == index).cloned();
    let first = until("indexes 0, 1 and 2 running", || async {
        let now = running(&pods, "per").await;
        (indexes(&now) == ["0", "1", "2"]).then_some(now.clone()).ok_or(format!("indexes {:?}", indexes(&now)))
    })
    .await;
    assert!(first.iter().all(|p| p.annotations().get(FAILURES).map(String::as_str) == Some("0")), "each pod starts with no failures");

    // Index 0 fails once: it runs again (after the backoff), knowing it failed once.
    finish(&pods, &of_index(&first, "0").unwrap(), "Failed").await;
    let retry = until("index 0 running again", || async {
        let now = running(&pods, "per").await;
        of_index(&now, "0").ok_or(format!("indexes {:?}", indexes(&now)))
    })
    .await;
    assert_eq!(retry.annotations().get(FAILURES).map(String::as_str), Some("1"));
    // A second failure passes backoffLimitPerIndex: the index fails for
    // good and is not run again; the others go on.
    finish(&pods, &retry, "Failed").await;
    until("index 0 failed for good", || async {
        let s = jobs.get("per").await.unwrap().status.unwrap_or_default();
        (s.failed_indexes.as_deref() == Some("0") && s.failed == Some(2)).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    for index in ["1", "2"] {
        finish(&pods, &of_index(&first, index).unwrap(), "Succeeded").await;
    }
    let failed = until("the Failed condition", || async {
        let j = jobs.get("per").await.unwrap();
        condition(&j, "Failed").ok_or(format!("{:?}", j.status))
    })
    .await;
    assert_eq!(failed, ("FailedIndexes".into(), "Job has failed indexes".into()));
    let s = jobs.get("per").await.unwrap().status.unwrap();
    assert_eq!((s.completed_indexes.as_deref(), s.failed_indexes.as_deref(), s.succeeded), (Some("1,2"), Some("0"), Some(2)));
    assert!(running(&pods, "per").await.is_empty(), "no pod of the failed index started again");
}

/// Fails `pod` as a kubelet would report it: its container `work` exited
/// with `code`, and the pod has the conditions `conditions` (type, status).
async fn fail_with(pods: &Api<Pod>, pod: &Pod, code: i32, conditions: &[(&str, &str)]) {
    let conditions: Vec<serde_json::Value> = conditions.iter().map(|(t, s)| serde_json::json!({"type": t, "status": s})).collect();
    let patch = serde_json::json!({"status": {
        "phase": "Failed",
        "conditions": conditions,
        "containerStatuses": [{"name": "work", "image": "busybox:1.36", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": "Error"}}}],
    }});
    pods.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_failure_policy_ignores_disruptions_and_fails_on_an_exit_code() {
    let api = TestApi::start();
    let client = api.client().await;
    let _controllers = api.controller_manager_with(&["job"], Default::default());
    let policy = "  podFailurePolicy:\n    rules:\n    - action: Ignore\n      onPodConditions: [{type: DisruptionTarget}]\n    \
                  - action: FailJob\n      onExitCodes: {containerName: work, operator: In, values: [42]}\n";
    // Upstream's checks: rules name containers of the template.
    let bad = policy.replace("containerName: work", "containerName: other");
    let refused = api.kubectl_stdin(&["apply", "-f", "-"], &job("bad", &bad));
    assert!(
        refused.stderr.contains("spec.podFailurePolicy.rules[1].onExitCodes.containerName: Invalid value: \"other\": must be one of the container or initContainer names in the pod template"),
        "{}",
        refused.stderr
    );

    let spec = format!("  completions: 2\n  parallelism: 2\n  backoffLimit: 0\n{policy}");
    api.kubectl_stdin(&["apply", "-f", "-"], &job("policed", &spec)).succeeded();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let first = until("two running", || async {
        let now = running(&pods, "policed").await;
        (now.len() == 2).then_some(now.clone()).ok_or(format!("{} running", now.len()))
    })
    .await;
    // A disrupted pod's failure is ignored (backoffLimit 0 would fail the
    // Job otherwise): not counted, and replaced.
    fail_with(&pods, &first[0], 137, &[("DisruptionTarget", "True")]).await;
    let now = until("a replacement for the disrupted pod", || async {
        let now = running(&pods, "policed").await;
        let replaced = now.len() == 2 && now.iter().all(|p| p.name_any() != first[0].name_any());
        replaced.then_some(now.clone()).ok_or(format!("{:?}", now.iter().map(|p| p.name_any()).collect::<Vec<_>>()))
    })
    .await;
    until("the disrupted pod released, uncounted", || async {
        let gone = pods.get(&first[0].name_any()).await.unwrap();
        let s = jobs.get("policed").await.unwrap().status.unwrap_or_default();
        let released = !gone.finalizers().iter().any(|f| f == TRACKING);
        (released && s.failed.is_none()).then_some(()).ok_or(format!("finalizers {:?}, {s:?}", gone.finalizers()))
    })
    .await;

    // Exit code 42 of container `work` fails the Job at once.
    let doomed = now.iter().find(|p| p.name_any() == first[1].name_any()).unwrap();
    fail_with(&pods, doomed, 42, &[]).await;
    let failed = until("the Failed condition", || async {
        let j = jobs.get("policed").await.unwrap();
        condition(&j, "Failed").ok_or(format!("{:?}", j.status))
    })
    .await;
    let message = format!("Container work for pod default/{} failed with exit code 42 matching FailJob rule at index 1", doomed.name_any());
    assert_eq!(failed, ("PodFailurePolicy".into(), message));
    // Counted: the pod that exited 42 and the replacement the failed Job
    // deleted (a pod deleted unfinished counts as failed, as upstream's);
    // never the ignored one.
    assert_eq!(jobs.get("policed").await.unwrap().status.unwrap().failed, Some(2));
}
