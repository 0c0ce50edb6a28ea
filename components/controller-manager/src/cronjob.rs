//! The cronjob controller, as upstream's (its second version): at each
//! time a CronJob's schedule names, it creates a Job from the CronJob's
//! jobTemplate, named `<cronjob>-<minutes since the epoch>` so that one
//! scheduled time never makes two Jobs; it honours `concurrencyPolicy`,
//! `startingDeadlineSeconds` and `suspend`, keeps `status.active` and the
//! last schedule and success times, and deletes finished Jobs beyond the
//! history limits. It sleeps until the next scheduled time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use component_base::cron::Schedule;
use component_base::events::{self, Recorder};

use crate::ownership::controller_reference;
use crate::pods::controller_of;
use crate::replicaset::message_of;
use crate::retries::Retries;

/// Upstream's `--concurrent-cron-job-syncs` default.
pub const DEFAULT_CONCURRENCY: u16 = 5;

/// The annotation a scheduled Job carries: the time it was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// More missed start times than this and the CronJob only says so (upstream).
const TOO_MANY_MISSED: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
}

struct Context {
    client: Client,
    jobs: Store<Job>,
    recorder: Recorder,
    retries: Retries,
}

fn owning_cronjob(job: &Job) -> Option<ObjectRef<CronJob>> {
    let reference = controller_of(&job.metadata).filter(|r| r.kind == "CronJob" && r.api_version.starts_with("batch/"))?;
    Some(ObjectRef::new(&reference.name).within(&job.namespace().unwrap_or_default()))
}

/// Runs the cronjob controller until its watches end.
pub async fn run(client: Client, concurrency: u16) {
    let (jobs, job_writer) = reflector::store::<Job>();
    let job_events = watcher(Api::<Job>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(job_writer).touched_objects();
    let context =
        Arc::new(Context { client: client.clone(), jobs, recorder: Recorder::new(client.clone(), "cronjob-controller", None), retries: Retries::default() });
    Controller::new(Api::<CronJob>::all(client), watcher::Config::default())
        .with_config(Config::default().concurrency(concurrency))
        .watches_stream(job_events, |job: Job| owning_cronjob(&job))
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok(_) | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!("cronjob controller: {e}"),
            }
        })
        .await;
}

fn key_of(cronjob: &CronJob) -> String {
    format!("{}/{}", cronjob.namespace().unwrap_or_default(), cronjob.name_any())
}

async fn reconcile(cronjob: Arc<CronJob>, context: Arc<Context>) -> Result<Action, Error> {
    // As upstream's controllers start their workers only once their
    // informers have synced: a decision made on a half-listed cache (no
    // pods yet, after a restart) would create or drop what already exists.
    let _ = context.jobs.wait_until_ready().await;
    let action = sync(&cronjob, &context, Utc::now()).await?;
    context.retries.succeeded(&key_of(&cronjob));
    Ok(action)
}

fn error_policy(cronjob: Arc<CronJob>, error: &Error, context: Arc<Context>) -> Action {
    let key = key_of(&cronjob);
    tracing::warn!(cronjob = %key, "sync failed: {error}");
    Action::requeue(context.retries.failed(&key))
}

/// The condition a finished Job ended with, if it has.
fn finished(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    if conditions.iter().any(|c| c.type_ == "Complete" && c.status == "True") {
        Some("Complete")
    } else if conditions.iter().any(|c| c.type_ == "Failed" && c.status == "True") {
        Some("Failed")
    } else {
        None
    }
}

fn to_chrono(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32).unwrap_or_default()
}

fn to_time(t: DateTime<Utc>) -> Time {
    Time(Timestamp::from_second(t.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The Job name for a scheduled time: minutes since the epoch, as upstream.
pub fn job_name(cronjob: &str, scheduled: DateTime<Utc>) -> String {
    format!("{cronjob}-{}", scheduled.timestamp() / 60)
}

/// What is due: the latest scheduled time in (`since`, `now`], and how many
/// there were (up to the limit), as upstream's mostRecentScheduleTime.
pub fn most_recent(schedule: &Schedule, since: DateTime<Utc>, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, usize) {
    let times = schedule.times_between(since, now, TOO_MANY_MISSED + 1);
    (times.last().copied(), times.len())
}

async fn sync(cronjob: &CronJob, context: &Context, now: DateTime<Utc>) -> Result<Action, Error> {
    let namespace = cronjob.namespace().unwrap_or_default();
    let reference = events::reference(cronjob);
    let api: Api<CronJob> = Api::namespaced(context.client.clone(), &namespace);
    let jobs_api: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
    let spec = cronjob.spec.clone().unwrap_or_default();
    let old = cronjob.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let owned: Vec<Arc<Job>> = context
        .jobs
        .state()
        .into_iter()
        .filter(|j| {
            j.namespace().as_deref() == Some(namespace.as_str()) && controller_of(&j.metadata).is_some_and(|r| Some(&r.uid) == cronjob.metadata.uid.as_ref())
        })
        .collect();

    // status.active: the owned Jobs still running; a finished one is seen once.
    let mut active: Vec<ObjectReference> = Vec::new();
    for job in &owned {
        match finished(job) {
            None if job.metadata.deletion_timestamp.is_none() => active.push(events::reference(job.as_ref())),
            None => {}
            Some(outcome) => {
                let listed = old.active.iter().flatten().any(|a| a.uid == job.metadata.uid);
                if listed {
                    context.recorder.normal(reference.clone(), "SawCompletedJob", format!("Saw completed job: {}, condition: {outcome}", job.name_any()));
                }
                if outcome == "Complete" {
                    let done = job.status.as_ref().and_then(|s| s.completion_time.clone());
                    if done.as_ref().map(|t| t.0) > status.last_successful_time.as_ref().map(|t| t.0) {
                        status.last_successful_time = done;
                    }
                }
            }
        }
    }
    active.sort_by(|a, b| a.name.cmp(&b.name));

    // History: finished Jobs beyond the limits go, oldest first.
    for (outcome, limit) in [("Complete", spec.successful_jobs_history_limit.unwrap_or(3)), ("Failed", spec.failed_jobs_history_limit.unwrap_or(1))] {
        let mut done: Vec<&Arc<Job>> = owned.iter().filter(|j| finished(j) == Some(outcome) && j.metadata.deletion_timestamp.is_none()).collect();
        done.sort_by_key(|j| j.status.as_ref().and_then(|s| s.start_time.clone()).or_else(|| j.metadata.creation_timestamp.clone()).map(|t| t.0));
        let excess = done.len().saturating_sub(limit.max(0) as usize);
        for job in done.into_iter().take(excess) {
            delete_job(&jobs_api, job, context, &reference).await?;
        }
    }

    let schedule = match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
        Ok(s) => s,
        Err(why) => {
            context.recorder.warning(reference.clone(), "InvalidSchedule", format!("invalid schedule: {}: {why}", spec.schedule));
            write_status(&api, cronjob, &old, status, active).await?;
            return Ok(Action::await_change());
        }
    };
    let next = schedule.next_after(now);
    let wake = |next: Option<DateTime<Utc>>| match next {
        // A little past the minute, so the time is due when we look.
        Some(t) => Action::requeue((t - now).to_std().unwrap_or_default() + Duration::from_millis(100)),
        None => Action::await_change(),
    };
    if spec.suspend.unwrap_or(false) || cronjob.metadata.deletion_timestamp.is_some() {
        write_status(&api, cronjob, &old, status, active).await?;
        return Ok(wake(next));
    }

    let since = old.last_schedule_time.as_ref().or(cronjob.metadata.creation_timestamp.as_ref()).map(to_chrono).unwrap_or(now);
    let (due, missed) = most_recent(&schedule, since, now);
    if missed > TOO_MANY_MISSED {
        context.recorder.warning(
            reference.clone(),
            "TooManyMissedTimes",
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
        );
    }
    let Some(scheduled) = due else {
        write_status(&api, cronjob, &old, status, active).await?;
        return Ok(wake(next));
    };
    if let Some(deadline) = spec.starting_deadline_seconds {
        if (now - scheduled).num_seconds() > deadline {
            context.recorder.warning(reference.clone(), "MissSchedule", format!("Missed scheduled time to start a job: {}", scheduled.to_rfc3339()));
            write_status(&api, cronjob, &old, status, active).await?;
            return Ok(wake(next));
        }
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if policy == "Forbid" && !active.is_empty() {
        context.recorder.normal(reference.clone(), "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid");
        write_status(&api, cronjob, &old, status, active).await?;
        return Ok(wake(next));
    }
    if policy == "Replace" {
        for job in owned.iter().filter(|j| active.iter().any(|a| a.uid == j.metadata.uid)) {
            delete_job(&jobs_api, job, context, &reference).await?;
        }
        active.clear();
    }

    let job = job_from_template(cronjob, scheduled);
    match jobs_api.create(&PostParams::default(), &job).await {
        Ok(created) => {
            context.recorder.normal(reference.clone(), "SuccessfulCreate", format!("Created job {}", created.name_any()));
            active.push(events::reference(&created));
        }
        // Made already (by an earlier sync whose status write was lost).
        Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => {}
        Err(e) => {
            context.recorder.warning(reference.clone(), "FailedCreate", format!("Error creating job: {}", message_of(&e)));
            return Err(e.into());
        }
    }
    status.last_schedule_time = Some(to_time(scheduled));
    write_status(&api, cronjob, &old, status, active).await?;
    Ok(wake(next))
}

/// A Job as the CronJob's template describes it, for one scheduled time.
pub fn job_from_template(cronjob: &CronJob, scheduled: DateTime<Utc>) -> Job {
    let template = cronjob.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), scheduled.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cronjob.name_any(), scheduled)),
            namespace: cronjob.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_reference(cronjob)]),
            ..Default::default()
        },
        spec: Some(template.spec.unwrap_or_default()),
        status: None,
    }
}

async fn delete_job(api: &Api<Job>, job: &Job, context: &Context, reference: &ObjectReference) -> Result<(), kube::Error> {
    match api.delete(&job.name_any(), &DeleteParams::background()).await {
        Ok(_) => {
            context.recorder.normal(reference.clone(), "SuccessfulDelete", format!("Deleted job {}", job.name_any()));
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

async fn write_status(
    api: &Api<CronJob>,
    cronjob: &CronJob,
    old: &CronJobStatus,
    mut status: CronJobStatus,
    active: Vec<ObjectReference>,
) -> Result<(), kube::Error> {
    status.active = (!active.is_empty()).then_some(active);
    if &status == old {
        return Ok(());
    }
    let mut body = serde_json::to_value(&status).expect("a status serializes");
    // A merge patch keeps what is absent: an emptied list must be null.
    if status.active.is_none() {
        body["active"] = serde_json::Value::Null;
    }
    match api.patch_status(&cronjob.name_any(), &PatchParams::default(), &Patch::Merge(&serde_json::json!({"status": body}))).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_latest_due_time_is_taken() {
        let every = Schedule::parse("*/5 * * * *", None).unwrap();
        assert_eq!(most_recent(&every, at("2026-12-07T10:01:00Z"), at("2026-12-07T10:04:59Z")), (None, 0));
        assert_eq!(most_recent(&every, at("2026-12-07T10:01:00Z"), at("2026-12-07T10:17:00Z")), (Some(at("2026-12-07T10:15:00Z")), 3));
        assert_eq!(job_name("hello", at("2026-12-07T10:15:00Z")), "hello-29943975");
    }
}
