//! The job controller, as upstream's: runs a Job's pods until
//! `completions` of them succeeded (or, without completions, one did; in
//! the Indexed completion mode, until each index of `0..completions` has
//! a succeeded pod, see `indexed`), replaces failed pods after a doubling
//! backoff until more than `backoffLimit` failed (or, with
//! `backoffLimitPerIndex`, an index failed more often than that and is
//! given up), stops at `activeDeadlineSeconds`, reads failed pods through
//! the `podFailurePolicy` (`failure_policy`), deletes the pods of a
//! suspended Job, writes the Complete and Failed conditions `kubectl wait`
//! waits for, and deletes a finished Job after `ttlSecondsAfterFinished`
//! (upstream's ttl-after-finished controller).
//!
//! Counts live in the Job's status and only grow; `tracking` makes sure
//! each finished pod is counted once. The Job is read from the API at the
//! start of every sync, so a count is never added to a stale one.
//! Replacements wait out one backoff per Job (upstream keeps one per index
//! with `backoffLimitPerIndex`).

pub mod decide;
pub mod failure_policy;
pub mod indexed;
pub mod tracking;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use component_base::events::{self, Recorder};
use component_base::label_selector::Selector;

use crate::expectations::{observe_pod, Expectations};
use crate::ownership::{claim, controller_reference};
use crate::pods::{self, controller_of};
use crate::replicaset::{message_of, pod_from_template};
use crate::retries::Retries;
use decide::{Outcome, Seen, Spec};
use failure_policy::Verdict;
use tracking::Uncounted;

/// Upstream's `--concurrent-job-syncs` default.
pub const DEFAULT_CONCURRENCY: u16 = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Manage(String),
}

struct Context {
    client: Client,
    pods: Store<Pod>,
    expectations: Arc<Expectations>,
    recorder: Recorder,
    retries: Retries,
    /// Per Job, pods failed in a row and when the last was counted: the
    /// backoff before a replacement (upstream keeps this in memory too).
    pod_failures: Mutex<HashMap<String, (u32, Instant)>>,
    /// Per Job, uids whose finalizer was removed but whose pod the cache
    /// still shows with it: counted already.
    released: Mutex<HashMap<String, HashSet<String>>>,
}

fn key_of(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The Job that controls `pod`, if one does.
fn owning_job(pod: &Pod) -> Option<ObjectRef<Job>> {
    let reference = controller_of(&pod.metadata).filter(|r| r.kind == "Job" && r.api_version.starts_with("batch/"))?;
    Some(ObjectRef::new(&reference.name).within(&pod.namespace().unwrap_or_default()))
}

/// Runs the job controller until its watches end.
pub async fn run(client: Client, concurrency: u16) {
    let (pods, pod_writer) = reflector::store::<Pod>();
    let expectations = Arc::new(Expectations::default());
    let observed = expectations.clone();
    let seen = pods.clone();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .map_ok(move |event| {
            observe_pod(&observed, &seen, &event, |pod| owning_job(pod).map(|job| key_of(job.namespace.as_deref().unwrap_or(""), &job.name)));
            event
        })
        .reflect(pod_writer)
        .touched_objects();
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default());
    let context = Arc::new(Context {
        client: client.clone(),
        pods,
        expectations,
        recorder: Recorder::new(client, "job-controller", None),
        retries: Retries::default(),
        pod_failures: Default::default(),
        released: Default::default(),
    });
    let for_orphans = context.clone();
    controller
        .with_config(Config::default().concurrency(concurrency))
        .watches_stream(pod_events, |pod: Pod| owning_job(&pod))
        .run(reconcile, error_policy, context)
        .for_each(move |result| {
            let context = for_orphans.clone();
            async move {
                match result {
                    Ok(_) => {}
                    // A pod whose Job is gone: nothing will count it, so its
                    // finalizer goes, or it could never be deleted.
                    Err(kube::runtime::controller::Error::ObjectNotFound(job)) => {
                        release_orphans(&context, job.namespace.as_deref().unwrap_or(""), &job.name).await;
                    }
                    Err(e) => tracing::warn!("job controller: {e}"),
                }
            }
        })
        .await;
}

async fn release_orphans(context: &Context, namespace: &str, job: &str) {
    let api: Api<Pod> = Api::namespaced(context.client.clone(), namespace);
    let orphans: Vec<Arc<Pod>> = context
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace) && tracking::is_tracked(p))
        .filter(|p| owning_job(p).is_some_and(|r| r.name == job))
        .collect();
    for pod in orphans {
        if let Err(e) = tracking::release(&api, &pod).await {
            tracing::warn!(pod = %pod.name_any(), "removing the job tracking finalizer of an orphan: {e}");
        }
    }
}

async fn reconcile(job: Arc<Job>, context: Arc<Context>) -> Result<Action, Error> {
    // As upstream's controllers start their workers only once their
    // informers have synced: a decision made on a half-listed cache (no
    // pods yet, after a restart) would create or drop what already exists.
    let _ = context.pods.wait_until_ready().await;
    let key = key_of(&job.namespace().unwrap_or_default(), &job.name_any());
    let action = sync(&job, &context).await?;
    context.retries.succeeded(&key);
    Ok(action)
}

fn error_policy(job: Arc<Job>, error: &Error, context: Arc<Context>) -> Action {
    let key = key_of(&job.namespace().unwrap_or_default(), &job.name_any());
    tracing::warn!(job = %key, "sync failed: {error}");
    Action::requeue(context.retries.failed(&key))
}

fn condition_true(status: Option<&JobStatus>, kind: &str) -> Option<JobCondition> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == kind && c.status == "True").cloned()
}

/// Sets a condition; its transition time changes only with its status.
fn set_condition(conditions: &mut Vec<JobCondition>, kind: &str, status: &str, reason: &str, message: &str, now: Timestamp) {
    match conditions.iter_mut().find(|c| c.type_ == kind) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Some(Time(now));
            }
            c.status = status.into();
            c.reason = Some(reason.into());
            c.message = Some(message.into());
            c.last_probe_time = Some(Time(now));
        }
        None => conditions.push(JobCondition {
            type_: kind.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_probe_time: Some(Time(now)),
            last_transition_time: Some(Time(now)),
        }),
    }
}

fn spec_of(job: &Job) -> Spec {
    let spec = job.spec.clone().unwrap_or_default();
    let restart = spec.template.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_default();
    Spec {
        completions: spec.completions,
        parallelism: spec.parallelism.unwrap_or(1),
        backoff_limit: spec.backoff_limit.unwrap_or(6),
        active_deadline_seconds: spec.active_deadline_seconds,
        suspend: spec.suspend.unwrap_or(false),
        restarts_in_place: restart == "OnFailure",
        per_index: (spec.completion_mode.as_deref() == Some("Indexed") && spec.backoff_limit_per_index.is_some())
            .then_some(decide::PerIndex { max_failed_indexes: spec.max_failed_indexes }),
    }
}

async fn write_status(api: &Api<Job>, job: &Job) -> Result<Job, kube::Error> {
    api.replace_status(&job.name_any(), &PostParams::default(), job).await
}

async fn sync(cached: &Job, context: &Context) -> Result<Action, Error> {
    let namespace = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let key = key_of(&namespace, &name);
    let jobs: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
    // Counts are added to what the status holds: read it as it is now, not
    // as a cache that may not have seen this controller's last write.
    let mut job = match jobs.get_opt(&name).await? {
        Some(job) => job,
        None => return Ok(Action::await_change()),
    };
    let reference = events::reference(&job);
    let pods_api: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    let selector = match Selector::parse(job.spec.as_ref().and_then(|s| s.selector.as_ref())) {
        Ok(selector) => selector,
        Err(e) => {
            context.recorder.warning(reference, "InvalidSelector", e.to_string());
            return Ok(Action::await_change());
        }
    };
    let candidates: Vec<Pod> = context.pods.state().iter().filter(|p| p.namespace().as_deref() == Some(namespace.as_str())).map(|p| (**p).clone()).collect();
    let deleting = job.metadata.deletion_timestamp.is_some();
    let claimed = claim(&pods_api, &controller_reference(&job), deleting, &selector, candidates).await?;

    // Count the pods that finished, each once.
    let released: HashSet<String> = {
        let mut all = context.released.lock().expect("not poisoned");
        let set = all.entry(key.clone()).or_default();
        // What the cache shows without the finalizer needs no memory.
        set.retain(|uid| claimed.iter().any(|p| p.uid().as_deref() == Some(uid) && tracking::is_tracked(p)));
        set.clone()
    };
    let mut status = job.status.clone().unwrap_or_default();
    // podFailurePolicy: what each failed pod means (None: counted as usual).
    let policy = job.spec.as_ref().and_then(|s| s.pod_failure_policy.clone());
    let verdict = |p: &Pod| policy.as_ref().filter(|_| pods::phase(p) == "Failed").and_then(|policy| failure_policy::judge(policy, p));
    let ignored = |p: &Pod| verdict(p) == Some(Verdict::Ignore);
    // Indexed: the indexes that have a succeeded pod, recorded with the
    // pods' uids so a pod gone after it was counted keeps its index.
    let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
    let indexed_mode = job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed");
    let completed: Option<BTreeSet<i32>> = indexed_mode.then(|| {
        let mut completed = indexed::parse(status.completed_indexes.as_deref(), completions);
        completed.extend(claimed.iter().filter(|p| tracking::is_succeeded(p)).filter_map(indexed::index_of).filter(|i| *i < completions));
        completed
    });
    let completed_indexes = completed.as_ref().map(indexed::format).filter(|s| !s.is_empty());
    // backoffLimitPerIndex: each index's failures, as its pods count them,
    // and the indexes failed for good (kept in the status as well).
    let per_index_limit = job.spec.as_ref().and_then(|s| s.backoff_limit_per_index).filter(|_| indexed_mode);
    let counted_failed = |p: &Pod| tracking::is_finished(p) && !tracking::is_succeeded(p) && !ignored(p);
    let index_failures = indexed::failures(&claimed.iter().collect::<Vec<_>>(), completions, counted_failed);
    let failed_indexes: Option<BTreeSet<i32>> = per_index_limit.map(|limit| {
        let mut failed = indexed::parse(status.failed_indexes.as_deref(), completions);
        failed.extend(indexed::over_limit(&index_failures, limit));
        let failing = claimed.iter().filter(|p| verdict(p) == Some(Verdict::FailIndex));
        failed.extend(failing.filter_map(indexed::index_of).filter(|i| *i < completions));
        failed
    });
    let failed_indexes_text = failed_indexes.as_ref().map(indexed::format);
    let mut uncounted = Uncounted::from_status(status.uncounted_terminated_pods.as_ref());
    // Ignored failures are never counted: they only lose the finalizer.
    let uncounted_ignored: Vec<&Pod> = claimed
        .iter()
        .filter(|p| tracking::is_tracked(p) && ignored(p))
        .filter(|p| p.uid().is_some_and(|uid| !released.contains(&uid) && !uncounted.contains(&uid)))
        .collect();
    let mut not_to_count = released.clone();
    not_to_count.extend(uncounted_ignored.iter().filter_map(|p| p.uid()));
    if uncounted.add_finished(&claimed, &not_to_count) {
        status.uncounted_terminated_pods = Some(uncounted.to_status());
        status.completed_indexes = completed_indexes.clone();
        status.failed_indexes = failed_indexes_text.clone();
        job.status = Some(status.clone());
        job = write_status(&jobs, &job).await?;
    }
    let counted = claimed.iter().filter(|p| tracking::is_tracked(p) && uncounted.contains(&p.uid().unwrap_or_default()));
    for pod in counted.chain(uncounted_ignored.iter().copied()) {
        tracking::release(&pods_api, pod).await?;
        context.released.lock().expect("not poisoned").entry(key.clone()).or_default().insert(pod.uid().unwrap_or_default());
    }
    let succeeded = match &completed {
        Some(indexes) => indexes.len() as i32,
        None => status.succeeded.unwrap_or(0) + uncounted.succeeded.len() as i32,
    };
    let failed = status.failed.unwrap_or(0) + uncounted.failed.len() as i32;
    {
        let mut failures = context.pod_failures.lock().expect("not poisoned");
        let record = failures.entry(key.clone()).or_insert((0, Instant::now()));
        if !uncounted.succeeded.is_empty() {
            *record = (0, Instant::now());
        }
        if !uncounted.failed.is_empty() {
            *record = (record.0 + uncounted.failed.len() as u32, Instant::now());
        }
    }

    let now = Timestamp::now();
    let mut next = status.clone();
    next.succeeded = (succeeded > 0).then_some(succeeded);
    next.failed = (failed > 0).then_some(failed);
    next.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    next.completed_indexes = completed_indexes;
    next.failed_indexes = failed_indexes_text;
    let mut conditions = next.conditions.take().unwrap_or_default();
    let finished = condition_true(job.status.as_ref(), "Complete").or_else(|| condition_true(job.status.as_ref(), "Failed"));

    let mut active: Vec<&Pod> = claimed.iter().filter(|p| !tracking::is_finished(p)).collect();
    // Indexed: the indexes that will run no more (succeeded, or failed for
    // good); pods of no valid index, of an ended one, or a second of one
    // go (upstream's duplicated-index removal), the rest run.
    let ended: Option<BTreeSet<i32>> = completed.as_ref().map(|done| done.iter().chain(failed_indexes.iter().flatten()).copied().collect());
    let surplus = match &ended {
        Some(done) if finished.is_none() && !deleting => indexed::surplus(&active, completions, done, |a, b| {
            let mut pair = [a, b];
            pods::sort_for_deletion(&mut pair, &[]);
            // The one sorted first is deleted first: keep the other.
            if std::ptr::eq(pair[0], a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Less
            }
        }),
        _ => vec![],
    };
    active.retain(|p| !surplus.iter().any(|s| std::ptr::eq(*s, *p)));
    let terminating = claimed.iter().filter(|p| p.metadata.deletion_timestamp.is_some() && !matches!(pods::phase(p), "Succeeded" | "Failed")).count() as i32;
    let mut requeue: Option<Duration> = None;
    let mut active_after = active.len() as i32;
    let mut failure = None;
    if !surplus.is_empty() && context.expectations.satisfied(&key) {
        delete_pods(&job, &surplus, context, &pods_api).await;
    }

    if finished.is_none() && !deleting {
        let spec = spec_of(&job);
        if !spec.suspend && next.start_time.is_none() {
            next.start_time = Some(Time(now));
        }
        let was_suspended = condition_true(job.status.as_ref(), "Suspended").is_some();
        let restarts =
            if spec.restarts_in_place { active.iter().filter(|p| matches!(pods::phase(p), "Running" | "Pending")).map(|p| restart_count(p)).sum() } else { 0 };
        let running_for = next.start_time.as_ref().map(|t| now.as_second() - t.0.as_second());
        let failed_indexes = failed_indexes.as_ref().map_or(0, |f| f.len() as i32);
        let fail_job = claimed.iter().find_map(|p| match verdict(p) {
            Some(Verdict::FailJob(message)) => Some(message),
            _ => None,
        });
        let seen = Seen { succeeded, failed, active: active.len() as i32, restarts, running_for, failed_indexes, fail_job };
        match decide::decide(&spec, &seen) {
            Outcome::Run { want_active } => {
                if was_suspended {
                    set_condition(&mut conditions, "Suspended", "False", "JobResumed", "Job resumed", now);
                    context.recorder.normal(reference.clone(), "Resumed", "Job resumed");
                }
                if context.expectations.satisfied(&key) {
                    if (active.len() as i32) < want_active {
                        let (failures, last) = *context.pod_failures.lock().expect("not poisoned").get(&key).unwrap_or(&(0, Instant::now()));
                        let wait = decide::failure_backoff(failures).saturating_sub(last.elapsed());
                        if wait.is_zero() {
                            let count = (want_active - active.len() as i32) as usize;
                            let slots: Vec<Option<Slot>> = match &ended {
                                Some(done) => {
                                    let running: BTreeSet<i32> = active.iter().filter_map(|p| indexed::index_of(p)).collect();
                                    let pending = indexed::pending(completions, done, &running, count);
                                    let failures = |i: i32| per_index_limit.map(|_| index_failures.get(&i).copied().unwrap_or(0));
                                    pending.into_iter().map(|index| Some(Slot { index, failures: failures(index) })).collect()
                                }
                                None => vec![None; count],
                            };
                            match create_pods(&job, slots, context, &pods_api).await {
                                Ok(created) => active_after += created as i32,
                                Err(e) => failure = Some(e),
                            }
                        } else {
                            requeue = Some(wait);
                        }
                    } else if (active.len() as i32) > want_active {
                        let mut order = active.clone();
                        pods::sort_for_deletion(&mut order, &active);
                        let doomed: Vec<&Pod> = order.into_iter().take((active.len() as i32 - want_active) as usize).collect();
                        active_after -= delete_pods(&job, &doomed, context, &pods_api).await as i32;
                    }
                }
                if let Some(limit) = spec.active_deadline_seconds {
                    let left = Duration::from_secs((limit - running_for.unwrap_or(0)).max(0) as u64);
                    requeue = Some(requeue.map_or(left, |r| r.min(left)));
                }
            }
            Outcome::Suspend => {
                active_after -= delete_pods(&job, &active, context, &pods_api).await as i32;
                if !was_suspended {
                    set_condition(&mut conditions, "Suspended", "True", "JobSuspended", "Job suspended", now);
                    context.recorder.normal(reference.clone(), "Suspended", "Job suspended");
                }
                next.start_time = None;
            }
            Outcome::Complete => {
                const REASON: &str = "CompletionsReached";
                const MESSAGE: &str = "Reached expected number of succeeded pods";
                set_condition(&mut conditions, "SuccessCriteriaMet", "True", REASON, MESSAGE, now);
                set_condition(&mut conditions, "Complete", "True", REASON, MESSAGE, now);
                next.completion_time = Some(Time(now));
                context.recorder.normal(reference.clone(), "Completed", "Job completed");
            }
            Outcome::Fail { reason, message } => {
                if condition_true(job.status.as_ref(), "FailureTarget").is_none() {
                    set_condition(&mut conditions, "FailureTarget", "True", reason, &message, now);
                    context.recorder.warning(reference.clone(), reason, message.clone());
                }
                let deleted = delete_pods(&job, &active, context, &pods_api).await as i32;
                active_after -= deleted;
                // Failed once no pod of the Job runs any more (upstream
                // waits for terminating pods since 1.31) and every pod has
                // been counted: pods deleted by this sync are counted as
                // failed by the next one (their deletion wakes it), so the
                // condition never shows a count that is still to grow.
                if deleted == 0 && active_after <= 0 && terminating == 0 {
                    set_condition(&mut conditions, "Failed", "True", reason, &message, now);
                }
            }
        }
    }

    next.active = (active_after > 0).then_some(active_after);
    let ready = active.iter().filter(|p| pods::is_ready(p)).count() as i32;
    next.ready = Some(ready);
    next.terminating = Some(terminating);
    next.conditions = (!conditions.is_empty()).then_some(conditions);
    if job.status.as_ref() != Some(&next) {
        job.status = Some(next);
        job = write_status(&jobs, &job).await?;
    }
    if let Some(message) = failure {
        return Err(Error::Manage(message));
    }
    if let Some(done) = condition_true(job.status.as_ref(), "Complete").or_else(|| condition_true(job.status.as_ref(), "Failed")) {
        context.pod_failures.lock().expect("not poisoned").remove(&key);
        return expire(&job, &done, &jobs, now).await;
    }
    Ok(requeue.map(Action::requeue).unwrap_or_else(Action::await_change))
}

fn restart_count(pod: &Pod) -> i32 {
    let status = pod.status.as_ref();
    let all = status.into_iter().flat_map(|s| s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()));
    all.map(|c| c.restart_count).sum()
}

/// An Indexed Job's pod to be: its index, and with `backoffLimitPerIndex`
/// the failures of that index so far.
#[derive(Debug, Clone, Copy)]
struct Slot {
    index: i32,
    failures: Option<i32>,
}

/// Creates a pod from the Job's template for each of `slots` (a [`Slot`]
/// in the Indexed mode, None otherwise), in batches of 1, 2, 4, ...
/// (upstream's slow start); how many were created.
async fn create_pods(job: &Job, slots: Vec<Option<Slot>>, context: &Context, api: &Api<Pod>) -> Result<usize, String> {
    let key = key_of(&job.namespace().unwrap_or_default(), &job.name_any());
    let reference = events::reference(job);
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut pod = pod_from_template(&template, &job.name_any(), controller_reference(job));
    pod.metadata.finalizers.get_or_insert_with(Vec::new).push(tracking::FINALIZER.into());
    let pods: Vec<Pod> = slots
        .iter()
        .map(|slot| {
            let mut pod = pod.clone();
            if let Some(slot) = slot {
                indexed::assign(&mut pod, &job.name_any(), slot.index);
                if let Some(failures) = slot.failures {
                    pod.annotations_mut().insert(indexed::FAILURE_COUNT.into(), failures.to_string());
                }
            }
            pod
        })
        .collect();
    let count = pods.len();
    context.expectations.expect_creations(&key, count);
    let (mut done, mut batch) = (0, 1);
    while done < count {
        let size = batch.min(count - done);
        let params = PostParams::default();
        let results = futures_util::future::join_all(pods[done..done + size].iter().map(|pod| api.create(&params, pod))).await;
        let mut failed = None;
        for result in results {
            match result {
                Ok(created) => context.recorder.normal(reference.clone(), "SuccessfulCreate", format!("Created pod: {}", created.name_any())),
                Err(e) => {
                    context.expectations.creation_observed(&key);
                    context.recorder.warning(reference.clone(), "FailedCreate", format!("Error creating: {}", message_of(&e)));
                    failed = Some(message_of(&e));
                }
            }
        }
        done += size;
        if let Some(message) = failed {
            for _ in done..count {
                context.expectations.creation_observed(&key);
            }
            return Err(message);
        }
        batch *= 2;
    }
    Ok(count)
}

/// Deletes `doomed`; how many deletions were accepted.
async fn delete_pods(job: &Job, doomed: &[&Pod], context: &Context, api: &Api<Pod>) -> usize {
    if doomed.is_empty() {
        return 0;
    }
    let key = key_of(&job.namespace().unwrap_or_default(), &job.name_any());
    let reference = events::reference(job);
    context.expectations.expect_deletions(&key, doomed.iter().map(|p| p.uid().unwrap_or_default()));
    let params = DeleteParams::default();
    let names: Vec<String> = doomed.iter().map(|p| p.name_any()).collect();
    let results = futures_util::future::join_all(names.iter().map(|name| api.delete(name, &params))).await;
    let mut deleted = 0;
    for (pod, result) in doomed.iter().zip(results) {
        match result {
            Ok(_) => {
                deleted += 1;
                context.recorder.normal(reference.clone(), "SuccessfulDelete", format!("Deleted pod: {}", pod.name_any()));
            }
            Err(e) => {
                context.expectations.deletion_observed(&key, &pod.uid().unwrap_or_default());
                if !matches!(&e, kube::Error::Api(s) if s.is_not_found()) {
                    context.recorder.warning(reference.clone(), "FailedDelete", format!("Error deleting: {}", message_of(&e)));
                }
            }
        }
    }
    deleted
}

/// Deletes a finished Job once `ttlSecondsAfterFinished` has passed since
/// it finished (upstream deletes in the foreground, its pods first).
async fn expire(job: &Job, done: &JobCondition, jobs: &Api<Job>, now: Timestamp) -> Result<Action, Error> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    let finished_at = job.status.as_ref().and_then(|s| s.completion_time.clone()).or_else(|| done.last_transition_time.clone()).map(|t| t.0).unwrap_or(now);
    let left = finished_at.as_second() + i64::from(ttl) - now.as_second();
    if left > 0 {
        return Ok(Action::requeue(Duration::from_secs(left as u64)));
    }
    let params = DeleteParams { propagation_policy: Some(PropagationPolicy::Foreground), ..DeleteParams::default() };
    match jobs.delete(&job.name_any(), &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}
