//! batch/v1: Jobs and CronJobs. A Job's pods are found by a selector the
//! server generates from the Job's uid (unless `manualSelector`), so two
//! Jobs of one name at different times never adopt each other's pods.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::apps::{check_template_labels, containers_images, label_selector, selector_string, CONTAINERS, IMAGES};
use super::core::{default_pod_spec, validate_pod_spec};
use super::pod_failure_policy;
use super::{age, array_at, col, default_at, human_duration, int_at, name, str_at, updates, wide, Column, Strategy, AGE, NAME};
use crate::status::Cause;
use crate::validation::dns1123_label;

/// The labels the server puts on a Job's pod template (upstream writes the
/// legacy unprefixed pair as well, which older tools still select on).
pub const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";

fn default_job_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    if spec.get("completions").is_none_or(Value::is_null) && spec.get("parallelism").is_none_or(Value::is_null) {
        spec["completions"] = json!(1);
    }
    default_at(spec, &["parallelism"], json!(1));
    let backoff = if spec.get("backoffLimitPerIndex").is_some_and(|v| !v.is_null()) { i32::MAX as i64 } else { 6 };
    default_at(spec, &["backoffLimit"], json!(backoff));
    default_at(spec, &["completionMode"], json!("NonIndexed"));
    default_at(spec, &["suspend"], json!(false));
    let replacement = if spec.get("podFailurePolicy").is_some_and(|v| !v.is_null()) { "Failed" } else { "TerminatingOrFailed" };
    default_at(spec, &["podReplacementPolicy"], json!(replacement));
    if let Some(pod) = spec.pointer_mut("/template/spec") {
        default_pod_spec(pod);
    }
    if let Some(policy) = spec.get_mut("podFailurePolicy") {
        pod_failure_policy::default(policy);
    }
}

fn validate_job_spec(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        causes.push(Cause::required(path));
        return;
    };
    for field in ["parallelism", "completions", "backoffLimit", "backoffLimitPerIndex", "maxFailedIndexes"] {
        if let Some(v) = spec.get(field).filter(|v| !v.is_null()) {
            if v.as_i64().is_none_or(|n| n < 0) {
                causes.push(Cause::invalid(format!("{path}.{field}"), v, "must be greater than or equal to 0"));
            }
        }
    }
    if let Some(v) = spec.get("activeDeadlineSeconds").filter(|v| !v.is_null()) {
        if v.as_i64().is_none_or(|n| n <= 0) {
            causes.push(Cause::invalid(format!("{path}.activeDeadlineSeconds"), v, "must be greater than 0"));
        }
    }
    if let Some(mode) = spec.get("completionMode") {
        if !matches!(mode.as_str(), Some("NonIndexed" | "Indexed")) {
            causes.push(Cause::not_supported(format!("{path}.completionMode"), mode, &["NonIndexed", "Indexed"]));
        }
    }
    let given = |field: &str| spec.get(field).filter(|v| !v.is_null());
    if given("maxFailedIndexes").is_some() && given("backoffLimitPerIndex").is_none() {
        causes.push(Cause { message: "Required value: when maxFailedIndexes is specified".into(), ..Cause::required(format!("{path}.backoffLimitPerIndex")) });
    }
    if spec.get("completionMode") == Some(&json!("Indexed")) {
        validate_indexed(spec, path, causes);
    } else {
        for field in ["backoffLimitPerIndex", "maxFailedIndexes"] {
            if let Some(v) = given(field) {
                causes.push(Cause::invalid(format!("{path}.{field}"), v, "requires indexed completion mode"));
            }
        }
    }
    match spec.get("selector").filter(|s| !s.is_null()) {
        None if spec.get("manualSelector") == Some(&json!(true)) => causes.push(Cause::required(format!("{path}.selector"))),
        None => {}
        Some(sel) => match label_selector(sel) {
            Err(why) => causes.push(Cause::invalid(format!("{path}.selector"), sel, why)),
            Ok(s) => check_template_labels(&s, spec, path, causes),
        },
    }
    pod_failure_policy::validate(spec, path, causes);
    let with_policy = spec.get("podFailurePolicy").is_some_and(|p| !p.is_null());
    if let Some(replacement) = spec.get("podReplacementPolicy").filter(|v| !v.is_null()) {
        let allowed: &[&str] = if with_policy { &["Failed"] } else { &["Failed", "TerminatingOrFailed"] };
        if !replacement.as_str().is_some_and(|r| allowed.contains(&r)) {
            causes.push(Cause::not_supported(format!("{path}.podReplacementPolicy"), replacement, allowed));
        }
    }
    let pod_path = format!("{path}.template.spec");
    validate_pod_spec(spec.pointer("/template/spec"), &pod_path, causes);
    if let Some(policy) = spec.pointer("/template/spec/restartPolicy") {
        if !matches!(policy.as_str(), Some("OnFailure" | "Never")) {
            causes.push(Cause::not_supported(format!("{pod_path}.restartPolicy"), policy, &["OnFailure", "Never"]));
        } else if with_policy && policy != "Never" {
            causes.push(Cause::invalid(format!("{pod_path}.restartPolicy"), policy, "only \"Never\" is supported when podFailurePolicy is specified"));
        }
    }
}

/// Upstream's bounds on an Indexed Job, which cap the size of the
/// status's index lists: parallelism and failed indexes at most 10^5;
/// past 10^5 completions with per-index limits, 10^4 of each.
const MAX_INDEXED_PARALLELISM: i64 = 100_000;
const MAX_FAILED_INDEXES: i64 = 100_000;
const COMPLETIONS_SOFT_LIMIT: i64 = 100_000;
const LIMIT_FOR_HIGH_COMPLETIONS: i64 = 10_000;

/// What the Indexed completion mode asks of the spec (upstream's checks).
fn validate_indexed(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let when = "when completion mode is Indexed";
    if spec.get("completions").is_none_or(Value::is_null) {
        causes.push(Cause { message: format!("Required value: {when}"), ..Cause::required(format!("{path}.completions")) });
    }
    if let Some(v) = spec.get("parallelism").filter(|v| v.as_i64().is_some_and(|n| n > MAX_INDEXED_PARALLELISM)) {
        causes.push(Cause::invalid(format!("{path}.parallelism"), v, format!("must be less than or equal to {MAX_INDEXED_PARALLELISM} {when}")));
    }
    let number = |field: &str| spec.get(field).and_then(Value::as_i64);
    let max_failed = spec.get("maxFailedIndexes").filter(|v| v.is_i64());
    if let (Some(v), Some(completions)) = (max_failed, number("completions")) {
        if v.as_i64().is_some_and(|m| m > completions) {
            causes.push(Cause::invalid(format!("{path}.maxFailedIndexes"), v, "must be less than or equal to completions"));
        }
    }
    if let Some(v) = max_failed.filter(|v| v.as_i64().is_some_and(|m| m > MAX_FAILED_INDEXES)) {
        causes.push(Cause::invalid(format!("{path}.maxFailedIndexes"), v, format!("must be less than or equal to {MAX_FAILED_INDEXES}")));
    }
    let per_index = spec.get("backoffLimitPerIndex").is_some_and(|v| !v.is_null());
    if per_index && number("completions").is_some_and(|n| n > COMPLETIONS_SOFT_LIMIT) {
        let high = format!("must be less than or equal to {LIMIT_FOR_HIGH_COMPLETIONS} when completions are above {COMPLETIONS_SOFT_LIMIT} and used with backoff limit per index");
        if max_failed.is_none() {
            causes.push(Cause {
                message: format!("Required value: must be specified when completions is above {COMPLETIONS_SOFT_LIMIT}"),
                ..Cause::required(format!("{path}.maxFailedIndexes"))
            });
        }
        for field in ["parallelism", "maxFailedIndexes"] {
            if let Some(v) = spec.get(field).filter(|v| v.as_i64().is_some_and(|n| n > LIMIT_FOR_HIGH_COMPLETIONS)) {
                causes.push(Cause::invalid(format!("{path}.{field}"), v, &high));
            }
        }
    }
}

/// An Indexed Job's pods are named by hostname `<job>-<index>`: the
/// highest must be a DNS label, or no pod could be made (upstream's check).
fn validate_indexed_hostnames(obj: &Value, causes: &mut Vec<Cause>) {
    let Some(completions) = obj.pointer("/spec/completions").and_then(Value::as_i64).filter(|n| *n > 0) else { return };
    if obj.pointer("/spec/completionMode") != Some(&json!("Indexed")) {
        return;
    }
    let highest = format!("{}-{}", name(obj), completions - 1);
    if dns1123_label(&highest).is_some() {
        causes.push(Cause::invalid("metadata.name", &json!(name(obj)), format!("will not able to create pod with invalid DNS label: {highest}")));
    }
}

pub struct Jobs;
impl Strategy for Jobs {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            default_job_spec(spec);
        }
        // Upstream's PrepareForCreate: select the Job's own pods by its uid.
        let manual = obj.pointer("/spec/manualSelector") == Some(&json!(true));
        let uid = str_at(obj, "/metadata/uid").unwrap_or("").to_string();
        let job = name(obj).to_string();
        if !manual && !uid.is_empty() && obj.get("spec").is_some_and(Value::is_object) {
            for (key, value) in [(CONTROLLER_UID, &uid), ("controller-uid", &uid), (JOB_NAME, &job), ("job-name", &job)] {
                default_at(obj, &["spec", "template", "metadata", "labels", key], json!(value));
            }
            default_at(obj, &["spec", "selector"], json!({"matchLabels": {CONTROLLER_UID: uid}}));
        }
        // A Job without labels of its own takes its template's.
        let own = obj.pointer("/metadata/labels").and_then(Value::as_object).is_some_and(|l| !l.is_empty());
        if let (false, Some(labels)) = (own, obj.pointer("/spec/template/metadata/labels").cloned()) {
            obj["metadata"]["labels"] = labels;
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_job_spec(obj.get("spec"), "spec", &mut causes);
        validate_indexed_hostnames(obj, &mut causes);
        causes
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        updates::immutable(new, old, "/spec/selector", "spec.selector", &mut causes);
        updates::immutable(new, old, "/spec/completionMode", "spec.completionMode", &mut causes);
        updates::immutable(new, old, "/spec/backoffLimitPerIndex", "spec.backoffLimitPerIndex", &mut causes);
        updates::immutable(new, old, "/spec/podFailurePolicy", "spec.podFailurePolicy", &mut causes);
        if new.pointer("/spec/completionMode") != Some(&json!("Indexed")) {
            updates::immutable(new, old, "/spec/completions", "spec.completions", &mut causes);
        }
        // The template changes only while the Job is suspended (upstream
        // allows scheduling directives then, so a queue can place it).
        if old.pointer("/spec/suspend") != Some(&json!(true)) {
            updates::immutable(new, old, "/spec/template", "spec.template", &mut causes);
        }
        causes
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Status", "string", "Status of the job."),
                col("Completions", "string", "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs."),
                col("Duration", "string", "Time required to complete the job."),
                AGE,
                CONTAINERS,
                IMAGES,
                wide("Selector", "string", "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let (containers, images) = containers_images(obj);
        vec![
            json!(name(obj)),
            json!(job_status(obj)),
            json!(job_completions(obj)),
            json!(job_duration(obj, now)),
            json!(age(obj, now)),
            json!(containers),
            json!(images),
            json!(selector_string(obj)),
        ]
    }
}

/// Whether a condition of `kind` is True in a Job's status.
pub fn has_condition(obj: &Value, kind: &str) -> bool {
    array_at(obj, "/status/conditions").iter().any(|c| c["type"] == kind && c["status"] == "True")
}

/// The STATUS column, as upstream decides it (first match wins).
fn job_status(obj: &Value) -> &'static str {
    if has_condition(obj, "Complete") {
        "Complete"
    } else if has_condition(obj, "Failed") {
        "Failed"
    } else if obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        "Terminating"
    } else if has_condition(obj, "Suspended") {
        "Suspended"
    } else if has_condition(obj, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(obj, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

fn job_completions(obj: &Value) -> String {
    let succeeded = int_at(obj, "/status/succeeded");
    match obj.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(n) => format!("{succeeded}/{n}"),
        None => match int_at(obj, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    }
}

fn timestamp(obj: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    str_at(obj, pointer).and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
}

fn job_duration(obj: &Value, now: DateTime<Utc>) -> String {
    match (timestamp(obj, "/status/startTime"), timestamp(obj, "/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.signed_duration_since(start).num_seconds()),
        (Some(start), Some(end)) => human_duration(end.signed_duration_since(start).num_seconds()),
    }
}

pub struct CronJobs;
impl Strategy for CronJobs {
    fn default(&self, obj: &mut Value) {
        if !obj.get("spec").is_some_and(Value::is_object) {
            return;
        }
        default_at(obj, &["spec", "concurrencyPolicy"], json!("Allow"));
        default_at(obj, &["spec", "suspend"], json!(false));
        default_at(obj, &["spec", "successfulJobsHistoryLimit"], json!(3));
        default_at(obj, &["spec", "failedJobsHistoryLimit"], json!(1));
        if let Some(spec) = obj.pointer_mut("/spec/jobTemplate/spec") {
            default_job_spec(spec);
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let zone = obj.pointer("/spec/timeZone").filter(|v| !v.is_null());
        if let Some(tz) = zone {
            if let Err(why) = tz.as_str().ok_or_else(|| "must be a string".to_string()).and_then(|t| component_base::cron::zone(t).map(drop)) {
                causes.push(Cause::invalid("spec.timeZone", tz, why));
            }
        }
        match obj.pointer("/spec/schedule").and_then(Value::as_str) {
            None | Some("") => causes.push(Cause::required("spec.schedule")),
            Some(s) => {
                // The zone was checked above; the schedule is checked alone.
                if let Err(why) = component_base::cron::Schedule::parse(s, None) {
                    causes.push(Cause::invalid("spec.schedule", &json!(s), why));
                }
            }
        }
        if let Some(policy) = obj.pointer("/spec/concurrencyPolicy") {
            if !matches!(policy.as_str(), Some("Allow" | "Forbid" | "Replace")) {
                causes.push(Cause::not_supported("spec.concurrencyPolicy", policy, &["Allow", "Forbid", "Replace"]));
            }
        }
        for field in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit", "startingDeadlineSeconds"] {
            if let Some(v) = obj.pointer(&format!("/spec/{field}")).filter(|v| !v.is_null()) {
                if v.as_i64().is_none_or(|n| n < 0) {
                    causes.push(Cause::invalid(format!("spec.{field}"), v, "must be greater than or equal to 0"));
                }
            }
        }
        // Upstream's name limit: a Job's name is the CronJob's plus 11 characters.
        let n = name(obj);
        if n.len() > 52 {
            causes.push(Cause::invalid("metadata.name", &json!(n), "must be no more than 52 characters"));
        }
        validate_job_spec(obj.pointer("/spec/jobTemplate/spec"), "spec.jobTemplate.spec", &mut causes);
        causes
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
                col("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones"),
                Column { kind: "boolean", ..col("Suspend", "", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.") },
                col("Active", "integer", "A list of pointers to currently running jobs."),
                col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
                AGE,
                CONTAINERS,
                IMAGES,
                wide("Selector", "string", "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let template = obj.pointer("/spec/jobTemplate").cloned().unwrap_or(json!({}));
        let (containers, images) = containers_images(&template);
        let last = match timestamp(obj, "/status/lastScheduleTime") {
            Some(t) => human_duration(now.signed_duration_since(t).num_seconds()),
            None => "<none>".into(),
        };
        let suspend = match obj.pointer("/spec/suspend").and_then(Value::as_bool) {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        vec![
            json!(name(obj)),
            json!(str_at(obj, "/spec/schedule").unwrap_or("")),
            json!(str_at(obj, "/spec/timeZone").unwrap_or("<none>")),
            json!(suspend),
            json!(array_at(obj, "/status/active").len()),
            json!(last),
            json!(age(obj, now)),
            json!(containers),
            json!(images),
            json!(selector_string(&template)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: Value) -> Value {
        json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": spec})
    }

    #[test]
    fn jobs_default_and_select_their_own_pods() {
        let mut j = job(json!({"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}));
        Jobs.default(&mut j);
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(j["spec"]["parallelism"], 1);
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(j["spec"]["selector"], json!({"matchLabels": {CONTROLLER_UID: "u-1"}}));
        assert_eq!(j["spec"]["template"]["metadata"]["labels"][JOB_NAME], "pi");
        assert_eq!(j["metadata"]["labels"]["job-name"], "pi");
        assert!(Jobs.validate(&j).is_empty(), "{:?}", Jobs.validate(&j));
    }

    /// A template whose pods never restart, as Jobs need.
    fn never_pod() -> Value {
        json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "b"}]}})
    }

    /// The causes a Job of `spec` (defaulted) is refused for, as lines.
    fn validated(spec: Value) -> Vec<String> {
        let mut j = job(spec);
        Jobs.default(&mut j);
        Jobs.validate(&j).iter().map(Cause::line).collect()
    }

    #[test]
    fn indexed_jobs_need_completions_and_hostnames_that_fit() {
        let (pod, lines) = (never_pod(), validated);
        assert_eq!(
            lines(json!({"completionMode": "Indexed", "parallelism": 2, "template": pod})),
            ["spec.completions: Required value: when completion mode is Indexed"]
        );
        assert_eq!(
            lines(json!({"completionMode": "Indexed", "completions": 2, "parallelism": 100001, "template": pod})),
            ["spec.parallelism: Invalid value: 100001: must be less than or equal to 100000 when completion mode is Indexed"]
        );
        let mut long = job(json!({"completionMode": "Indexed", "completions": 10, "template": pod}));
        long["metadata"]["name"] = json!("j".repeat(62));
        Jobs.default(&mut long);
        let named: Vec<String> = Jobs.validate(&long).iter().map(Cause::line).collect();
        assert_eq!(named, [format!("metadata.name: Invalid value: \"{0}\": will not able to create pod with invalid DNS label: {0}-9", "j".repeat(62))]);
        assert!(lines(json!({"completionMode": "Indexed", "completions": 3, "template": pod})).is_empty());
    }

    #[test]
    fn per_index_limits_need_the_indexed_mode() {
        let (pod, lines) = (never_pod(), validated);
        assert_eq!(
            lines(json!({"backoffLimitPerIndex": 1, "maxFailedIndexes": 1, "template": pod})),
            [
                "spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode",
                "spec.maxFailedIndexes: Invalid value: 1: requires indexed completion mode"
            ]
        );
        assert_eq!(
            lines(json!({"completionMode": "Indexed", "completions": 2, "maxFailedIndexes": 3, "template": pod})),
            [
                "spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified",
                "spec.maxFailedIndexes: Invalid value: 3: must be less than or equal to completions"
            ]
        );
        assert_eq!(
            lines(json!({"completionMode": "Indexed", "completions": 200000, "parallelism": 20000, "backoffLimitPerIndex": -1, "template": pod})),
            [
                "spec.backoffLimitPerIndex: Invalid value: -1: must be greater than or equal to 0",
                "spec.maxFailedIndexes: Required value: must be specified when completions is above 100000",
                "spec.parallelism: Invalid value: 20000: must be less than or equal to 10000 when completions are above 100000 and used with backoff limit per index"
            ]
        );
        assert!(lines(json!({"completionMode": "Indexed", "completions": 3, "backoffLimitPerIndex": 1, "maxFailedIndexes": 1, "template": pod})).is_empty());
        let mut old = job(json!({"completionMode": "Indexed", "completions": 3, "backoffLimitPerIndex": 1, "template": pod}));
        Jobs.default(&mut old);
        let mut new = old.clone();
        new["spec"]["backoffLimitPerIndex"] = json!(2);
        let lines: Vec<String> = Jobs.validate_update(&new, &old).iter().map(Cause::line).collect();
        assert!(lines.iter().any(|l| l.starts_with("spec.backoffLimitPerIndex: Invalid value: 2: field is immutable")), "{lines:?}");
    }

    #[test]
    fn a_pod_failure_policy_needs_pods_that_never_restart() {
        let mut j = job(json!({"podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
            "podReplacementPolicy": "TerminatingOrFailed",
            "template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "b"}]}}}));
        Jobs.default(&mut j);
        let lines: Vec<String> = Jobs.validate(&j).iter().map(Cause::line).collect();
        assert_eq!(
            lines,
            [
                "spec.podReplacementPolicy: Unsupported value: \"TerminatingOrFailed\": supported values: \"Failed\"",
                "spec.template.spec.restartPolicy: Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified"
            ]
        );
        assert_eq!(j["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"], "True");
    }

    #[test]
    fn job_pods_may_not_restart_always() {
        let mut j = job(json!({"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}));
        Jobs.default(&mut j);
        let lines: Vec<String> = Jobs.validate(&j).iter().map(Cause::line).collect();
        assert_eq!(lines, ["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""]);
    }

    #[test]
    fn parallel_jobs_without_completions_stay_so() {
        let mut j = job(json!({"parallelism": 3, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "b"}]}}}));
        Jobs.default(&mut j);
        assert!(j["spec"].get("completions").is_none());
        assert_eq!(job_completions(&j), "0/1 of 3");
    }

    #[test]
    fn job_status_column_follows_conditions() {
        let mut j = job(json!({"completions": 3}));
        assert_eq!(job_status(&j), "Running");
        j["status"] = json!({"succeeded": 3, "conditions": [{"type": "Complete", "status": "True"}], "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:07Z"});
        assert_eq!(job_status(&j), "Complete");
        assert_eq!(job_completions(&j), "3/3");
        assert_eq!(job_duration(&j, Utc::now()), "7s");
    }

    #[test]
    fn cronjobs_check_their_schedule() {
        let template = json!({"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "b"}]}}}});
        let mut good = json!({"metadata": {"name": "hello"}, "spec": {"schedule": "*/1 * * * *", "jobTemplate": template}});
        CronJobs.default(&mut good);
        assert!(CronJobs.validate(&good).is_empty(), "{:?}", CronJobs.validate(&good));
        assert_eq!(good["spec"]["successfulJobsHistoryLimit"], 3);
        let mut bad = good.clone();
        bad["spec"]["schedule"] = json!("every minute");
        let lines: Vec<String> = CronJobs.validate(&bad).iter().map(Cause::line).collect();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("spec.schedule: Invalid value: \"every minute\""), "{lines:?}");
    }
}
