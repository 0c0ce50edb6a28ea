//! The Indexed completion mode, as upstream's job controller runs it: each
//! pod gets a completion index in `0..completions` (an annotation and a
//! label on the pod, the `JOB_COMPLETION_INDEX` variable read from that
//! label through the downward API, the hostname `<job>-<index>`), the Job
//! is complete once every index has a succeeded pod, and the succeeded
//! indexes are written as intervals ("0-2,4"). Pure: no API calls here.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use kube::ResourceExt;

/// The annotation and label that carry a pod's completion index.
pub const INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The variable every container of an Indexed Job's pod reads it from.
pub const INDEX_VARIABLE: &str = "JOB_COMPLETION_INDEX";

/// On each pod of a Job with `backoffLimitPerIndex`: how many pods of its
/// index failed before it.
pub const FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";

/// The pod's completion index, from its annotation as upstream reads it;
/// None when absent, not a number or negative.
pub fn index_of(pod: &Pod) -> Option<i32> {
    pod.annotations().get(INDEX)?.parse::<i32>().ok().filter(|i| *i >= 0)
}

/// Indexes as upstream writes `status.completedIndexes`: ascending runs
/// of consecutive indexes joined by commas, a run of one as its number, a
/// run of two as both numbers ("5,6"), longer ones as `first-last`.
pub fn format(indexes: &BTreeSet<i32>) -> String {
    let mut runs: Vec<(i32, i32)> = Vec::new();
    for &i in indexes {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == i => *last = i,
            _ => runs.push((i, i)),
        }
    }
    let run = |(first, last): &(i32, i32)| match last - first {
        0 => first.to_string(),
        1 => format!("{first},{last}"),
        _ => format!("{first}-{last}"),
    };
    runs.iter().map(run).collect::<Vec<_>>().join(",")
}

/// The indexes below `completions` that `text` (as [`format`] writes it)
/// names; what does not parse is left out, as upstream skips it.
pub fn parse(text: Option<&str>, completions: i32) -> BTreeSet<i32> {
    let mut indexes = BTreeSet::new();
    for part in text.unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bounds = match part.split_once('-') {
            Some((first, last)) => first.parse::<i32>().ok().zip(last.parse::<i32>().ok()),
            None => part.parse::<i32>().ok().map(|i| (i, i)),
        };
        if let Some((first, last)) = bounds.filter(|(f, l)| *f >= 0 && f <= l) {
            indexes.extend(first..=last.min(completions - 1));
        }
    }
    indexes
}

/// The active pods that should go: those without a valid index, those of
/// an index that already succeeded, and all but one of each index (the
/// one kept is the first `prefer` orders first).
pub fn surplus<'a>(active: &[&'a Pod], completions: i32, succeeded: &BTreeSet<i32>, prefer: impl Fn(&Pod, &Pod) -> std::cmp::Ordering) -> Vec<&'a Pod> {
    let mut doomed = Vec::new();
    let mut by_index: BTreeMap<i32, Vec<&'a Pod>> = BTreeMap::new();
    for &pod in active {
        match index_of(pod) {
            Some(i) if i < completions && !succeeded.contains(&i) => by_index.entry(i).or_default().push(pod),
            _ => doomed.push(pod),
        }
    }
    for mut pods in by_index.into_values() {
        pods.sort_by(|a, b| prefer(a, b));
        doomed.extend(pods.into_iter().skip(1));
    }
    doomed
}

/// Failures of pods of the index before `pod` (its annotation, 0 when
/// absent or not a number).
pub fn failures_before(pod: &Pod) -> i32 {
    pod.annotations().get(FAILURE_COUNT).and_then(|v| v.parse::<i32>().ok()).filter(|n| *n >= 0).unwrap_or(0)
}

/// Per index below `completions`, how many of its pods failed so far, as
/// its pods tell: a failed pod adds one to the failures before it, the
/// index's count is the highest its pods show (upstream's per-index
/// failure count). `failed` says which pods count as failed.
pub fn failures(pods: &[&Pod], completions: i32, failed: impl Fn(&Pod) -> bool) -> BTreeMap<i32, i32> {
    let mut counts = BTreeMap::new();
    for pod in pods {
        let Some(index) = index_of(pod).filter(|i| *i < completions) else { continue };
        let count = failures_before(pod) + i32::from(failed(pod));
        let entry = counts.entry(index).or_insert(0);
        *entry = count.max(*entry);
    }
    counts
}

/// The indexes whose failures passed `limit` (upstream's backoffLimitPerIndex).
pub fn over_limit(failures: &BTreeMap<i32, i32>, limit: i32) -> BTreeSet<i32> {
    failures.iter().filter(|(_, n)| **n > limit).map(|(i, _)| *i).collect()
}

/// The `count` lowest indexes that have neither succeeded nor a pod running.
pub fn pending(completions: i32, succeeded: &BTreeSet<i32>, running: &BTreeSet<i32>, count: usize) -> Vec<i32> {
    (0..completions).filter(|i| !succeeded.contains(i) && !running.contains(i)).take(count).collect()
}

/// Makes `pod` (from the Job's template) the pod of index `index` of Job
/// `job`: annotation, label, hostname, and the variable in every container.
pub fn assign(pod: &mut Pod, job: &str, index: i32) {
    let value = index.to_string();
    pod.annotations_mut().insert(INDEX.into(), value.clone());
    pod.labels_mut().insert(INDEX.into(), value);
    pod.metadata.generate_name = Some(generate_name(job, index));
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = Some(format!("{job}-{index}"));
        for container in spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut()) {
            add_index_variable(container);
        }
    }
}

/// Upstream's names for generated pods are at most 58 characters before
/// the random suffix; the index stays, the Job's name is cut.
const MAX_GENERATED_NAME: usize = 58;

fn generate_name(job: &str, index: i32) -> String {
    let suffix = format!("-{index}-");
    let room = MAX_GENERATED_NAME.saturating_sub(suffix.len());
    let cut: String = job.chars().take(room).collect();
    format!("{cut}{suffix}")
}

/// The index variable, unless the container names one itself.
fn add_index_variable(container: &mut Container) {
    let env = container.env.get_or_insert_with(Vec::new);
    if env.iter().any(|v| v.name == INDEX_VARIABLE) {
        return;
    }
    env.push(EnvVar {
        name: INDEX_VARIABLE.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { api_version: None, field_path: format!("metadata.labels['{INDEX}']") }),
            ..Default::default()
        }),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn set(items: &[i32]) -> BTreeSet<i32> {
        items.iter().copied().collect()
    }

    fn pod(name: &str, index: Option<&str>) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        if let Some(i) = index {
            pod.annotations_mut().insert(INDEX.into(), i.into());
        }
        pod
    }

    #[test]
    fn indexes_are_written_as_runs() {
        assert_eq!(format(&set(&[])), "");
        assert_eq!(format(&set(&[0, 1, 2, 4])), "0-2,4");
        assert_eq!(format(&set(&[1, 3, 5, 6])), "1,3,5,6");
        assert_eq!(format(&set(&[1, 3, 5, 6, 7])), "1,3,5-7");
        assert_eq!(parse(Some("0-2,4"), 10), set(&[0, 1, 2, 4]));
        assert_eq!(parse(Some("1,3,5,6"), 6), set(&[1, 3, 5]));
        assert_eq!(parse(Some("1,3,5-7"), 10), set(&[1, 3, 5, 6, 7]));
        assert_eq!(parse(Some("x,2-1,7"), 10), set(&[7]));
        assert_eq!(parse(None, 3), set(&[]));
    }

    #[test]
    fn failures_are_counted_per_index() {
        let mut p0 = pod("a", Some("0"));
        p0.annotations_mut().insert(FAILURE_COUNT.into(), "1".into());
        let p0_retry = {
            let mut p = pod("b", Some("0"));
            p.annotations_mut().insert(FAILURE_COUNT.into(), "2".into());
            p
        };
        let p1 = pod("c", Some("1"));
        let p9 = pod("d", Some("9"));
        let pods = [&p0, &p0_retry, &p1, &p9];
        let failed = |p: &Pod| ["a", "c"].contains(&p.name_any().as_str());
        let counts = failures(&pods, 3, failed);
        assert_eq!(counts, [(0, 2), (1, 1)].into_iter().collect::<BTreeMap<i32, i32>>());
        assert_eq!(over_limit(&counts, 1), set(&[0]));
        assert_eq!(over_limit(&counts, 2), set(&[]));
    }

    #[test]
    fn the_lowest_free_indexes_run_next() {
        assert_eq!(pending(5, &set(&[0, 2]), &set(&[1]), 2), vec![3, 4]);
        assert_eq!(pending(3, &set(&[]), &set(&[]), 5), vec![0, 1, 2]);
        assert_eq!(pending(3, &set(&[0, 1, 2]), &set(&[]), 1), Vec::<i32>::new());
    }

    #[test]
    fn invalid_done_and_duplicate_indexes_go() {
        let pods = [pod("a", Some("0")), pod("b", Some("0")), pod("c", Some("7")), pod("d", None), pod("e", Some("1")), pod("f", Some("2"))];
        let refs: Vec<&Pod> = pods.iter().collect();
        let doomed = surplus(&refs, 3, &set(&[1]), |a, b| a.name_any().cmp(&b.name_any()));
        let names: BTreeSet<String> = doomed.iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["b", "c", "d", "e"].iter().map(|s| s.to_string()).collect::<BTreeSet<String>>());
        assert_eq!(index_of(&pod("x", Some("-1"))), None);
    }

    #[test]
    fn a_pod_is_given_its_index() {
        let mut p = Pod {
            spec: Some(PodSpec { containers: vec![Container { name: "work".into(), ..Default::default() }], ..Default::default() }),
            ..Default::default()
        };
        assign(&mut p, "sample", 2);
        assert_eq!(p.annotations()[INDEX], "2");
        assert_eq!(p.labels()[INDEX], "2");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("sample-2-"));
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("sample-2"));
        let var = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(var.name, INDEX_VARIABLE);
        assert_eq!(var.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path, format!("metadata.labels['{INDEX}']"));
        assert_eq!(generate_name(&"j".repeat(70), 12).len(), MAX_GENERATED_NAME);
    }
}
