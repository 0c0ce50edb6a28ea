//! What one sync of a HorizontalPodAutoscaler decides, given its target's
//! scale, with no metrics pipeline: upstream's reconcileAutoscaler with
//! every metrics API absent. Out of bounds, the target is scaled to the
//! bound; at zero, autoscaling is off; otherwise every metric fails as
//! upstream's fail when the metrics APIs answer nothing, and the replica
//! count stays. Pure: the loop in `mod.rs` reads, writes and records.

use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus, MetricSpec, MetricStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// How upstream's resource metrics client fails when metrics.k8s.io is
/// not served (no metrics-server).
const NO_RESOURCE_METRICS: &str =
    "unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)";
const NO_CUSTOM_METRICS: &str = "unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered";
const NO_EXTERNAL_METRICS: &str = "unable to fetch metrics from external metrics API: no external metrics API (external.metrics.k8s.io) registered";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Event {
    fn warning(reason: &'static str, message: impl Into<String>) -> Event {
        Event { warning: true, reason, message: message.into() }
    }
}

/// One sync's outcome before any write.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The target is at zero replicas: autoscaling is off until it is not.
    Disabled,
    /// Outside minReplicas..maxReplicas: scale to the bound.
    Rescale { to: i32, reason: &'static str },
    /// Within bounds: the metrics decide, and none can be had.
    MetricsUnavailable { failures: Vec<MetricFailure> },
    /// The target's scale has no selector, so no pods to measure.
    NoSelector,
}

/// Why one metric could not be had: the event reason, the error as the
/// event says it, and as the wrapping error (`invalid metrics`) names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricFailure {
    pub reason: &'static str,
    pub error: String,
    pub wrapped: String,
}

pub fn min_replicas(hpa: &HorizontalPodAutoscaler) -> i32 {
    hpa.spec.as_ref().and_then(|s| s.min_replicas).unwrap_or(1)
}

pub fn max_replicas(hpa: &HorizontalPodAutoscaler) -> i32 {
    hpa.spec.as_ref().map(|s| s.max_replicas).unwrap_or(0)
}

pub fn metrics(hpa: &HorizontalPodAutoscaler) -> Vec<MetricSpec> {
    hpa.spec.as_ref().and_then(|s| s.metrics.clone()).unwrap_or_default()
}

/// Upstream's order of checks on the scale's `spec.replicas`.
pub fn decide(hpa: &HorizontalPodAutoscaler, current: i32, selector: &str) -> Decision {
    let (min, max) = (min_replicas(hpa), max_replicas(hpa));
    if current == 0 && min != 0 {
        Decision::Disabled
    } else if current > max {
        Decision::Rescale { to: max, reason: "Current number of replicas above Spec.MaxReplicas" }
    } else if current < min {
        Decision::Rescale { to: min, reason: "Current number of replicas below Spec.MinReplicas" }
    } else if selector.is_empty() {
        Decision::NoSelector
    } else {
        Decision::MetricsUnavailable { failures: metrics(hpa).iter().map(|m| metric_failure(m, hpa.metadata.namespace.as_deref().unwrap_or(""))).collect() }
    }
}

/// How fetching one metric fails with no metrics API served, in upstream's
/// words for each source type.
pub fn metric_failure(metric: &MetricSpec, namespace: &str) -> MetricFailure {
    let resource = |name: &str, utilization: bool, container: bool| {
        let what = if utilization { "utilization" } else { "usage" };
        let error = format!("failed to get {name} {what}: unable to get metrics for resource {name}: {NO_RESOURCE_METRICS}");
        let kind = if container { "container" } else { "resource" };
        let wrapped = format!("failed to get {name} {kind} metric value: {error}");
        (error, wrapped)
    };
    match metric.type_.as_str() {
        "Resource" => {
            let source = metric.resource.clone().unwrap_or_default();
            let (error, wrapped) = resource(&source.name, source.target.average_utilization.is_some(), false);
            MetricFailure { reason: "FailedGetResourceMetric", error, wrapped }
        }
        "ContainerResource" => {
            let source = metric.container_resource.clone().unwrap_or_default();
            let (error, wrapped) = resource(&source.name, source.target.average_utilization.is_some(), true);
            MetricFailure { reason: "FailedGetContainerResourceMetric", error, wrapped }
        }
        "Pods" => {
            let name = metric.pods.as_ref().map(|p| p.metric.name.clone()).unwrap_or_default();
            let error = format!("unable to get metric {name}: {NO_CUSTOM_METRICS}");
            MetricFailure { reason: "FailedGetPodsMetric", wrapped: format!("failed to get pods metric value: {error}"), error }
        }
        "Object" => {
            let name = metric.object.as_ref().map(|o| o.metric.name.clone()).unwrap_or_default();
            let error = format!("unable to get metric {name}: {NO_CUSTOM_METRICS}");
            MetricFailure { reason: "FailedGetObjectMetric", wrapped: format!("failed to get object metric value: {error}"), error }
        }
        "External" => {
            let name = metric.external.as_ref().map(|e| e.metric.name.clone()).unwrap_or_default();
            let error = format!("unable to get external metric {namespace}/{name}: {NO_EXTERNAL_METRICS}");
            MetricFailure { reason: "FailedGetExternalMetric", wrapped: format!("failed to get external metric value: {error}"), error }
        }
        other => {
            let error = format!("unknown metric source type {other:?}");
            MetricFailure { reason: "InvalidMetricSourceType", wrapped: error.clone(), error }
        }
    }
}

/// Sets a condition as upstream's setCondition: its transition time moves
/// only when its status changes; reason and message are always the new.
pub fn set_condition(status: &mut HorizontalPodAutoscalerStatus, type_: &str, value: bool, reason: &str, message: impl Into<String>, now: &Time) {
    let value = if value { "True" } else { "False" };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(now.clone());
            }
            c.status = value.into();
            c.reason = Some(reason.into());
            c.message = Some(message);
        }
        None => conditions.push(HorizontalPodAutoscalerCondition {
            type_: type_.into(),
            status: value.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(now.clone()),
        }),
    }
}

/// The status after a sync that did not scale, and the events it records.
/// `current` is the scale's replicas.
pub fn without_rescale(hpa: &HorizontalPodAutoscaler, decision: &Decision, current: i32, now: &Time) -> (HorizontalPodAutoscalerStatus, Vec<Event>) {
    let mut status = hpa.status.clone().unwrap_or_default();
    let mut events = Vec::new();
    set_condition(&mut status, "AbleToScale", true, "SucceededGetScale", "the HPA controller was able to get the target's current scale", now);
    match decision {
        Decision::Disabled => {
            set_condition(&mut status, "ScalingActive", false, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero", now);
            // Upstream's setStatus: desired is what is kept, which is zero.
            status.current_replicas = Some(current);
            status.desired_replicas = 0;
            status.current_metrics = None;
        }
        Decision::NoSelector => {
            events.push(Event::warning("SelectorRequired", "selector is required"));
            set_condition(&mut status, "ScalingActive", false, "InvalidSelector", "the HPA target's scale is missing a selector", now);
            events.push(Event::warning("FailedComputeMetricsReplicas", "selector is required"));
            status.current_replicas = Some(current);
            status.current_metrics = None;
        }
        Decision::MetricsUnavailable { failures } => {
            for f in failures {
                events.push(Event::warning(f.reason, f.error.clone()));
            }
            if let Some(first) = failures.first() {
                let message = format!("the HPA was unable to compute the replica count: {}", first.error);
                set_condition(&mut status, "ScalingActive", false, first.reason, message, now);
                let total = failures.len();
                events.push(Event::warning(
                    "FailedComputeMetricsReplicas",
                    format!("invalid metrics ({total} invalid out of {total}), first error is: {}", first.wrapped),
                ));
            }
            // One empty status per metric, as upstream writes for metrics
            // it could not read; desired stays what it was.
            status.current_replicas = Some(current);
            status.current_metrics = Some(failures.iter().map(|_| MetricStatus::default()).collect());
        }
        Decision::Rescale { .. } => unreachable!("a rescale goes through after_rescale"),
    }
    (status, events)
}

/// The status and events after scaling the target to `to` (`failed`: the
/// scale update's error, if it failed).
pub fn after_rescale(
    hpa: &HorizontalPodAutoscaler,
    current: i32,
    to: i32,
    reason: &str,
    failed: Option<&str>,
    now: &Time,
) -> (HorizontalPodAutoscalerStatus, Vec<Event>) {
    let mut status = hpa.status.clone().unwrap_or_default();
    set_condition(&mut status, "AbleToScale", true, "SucceededGetScale", "the HPA controller was able to get the target's current scale", now);
    status.current_replicas = Some(current);
    match failed {
        Some(error) => {
            set_condition(
                &mut status,
                "AbleToScale",
                false,
                "FailedUpdateScale",
                format!("the HPA controller was unable to update the target scale: {error}"),
                now,
            );
            status.current_metrics = None;
            (status, vec![Event::warning("FailedRescale", format!("New size: {to}; reason: {reason}; error: {error}"))])
        }
        None => {
            set_condition(&mut status, "AbleToScale", true, "SucceededRescale", format!("the HPA controller was able to update the target scale to {to}"), now);
            status.desired_replicas = to;
            status.current_metrics = None;
            status.last_scale_time = Some(now.clone());
            (status, vec![Event { warning: false, reason: "SuccessfulRescale", message: format!("New size: {to}; reason: {reason}") }])
        }
    }
}

/// The status and event when the target's scale cannot be read.
pub fn scale_unreadable(hpa: &HorizontalPodAutoscaler, error: &str, now: &Time) -> (HorizontalPodAutoscalerStatus, Vec<Event>) {
    let mut status = hpa.status.clone().unwrap_or_default();
    set_condition(
        &mut status,
        "AbleToScale",
        false,
        "FailedGetScale",
        format!("the HPA controller was unable to get the target's current scale: {error}"),
        now,
    );
    (status, vec![Event::warning("FailedGetScale", error)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscalerSpec, MetricTarget, ResourceMetricSource};
    use k8s_openapi::jiff::Timestamp;

    fn hpa(min: i32, max: i32, metrics: Vec<MetricSpec>) -> HorizontalPodAutoscaler {
        HorizontalPodAutoscaler {
            spec: Some(HorizontalPodAutoscalerSpec { min_replicas: Some(min), max_replicas: max, metrics: Some(metrics), ..Default::default() }),
            ..Default::default()
        }
    }

    fn cpu(percent: i32) -> MetricSpec {
        MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget { type_: "Utilization".into(), average_utilization: Some(percent), ..Default::default() },
            }),
            ..Default::default()
        }
    }

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    #[test]
    fn bounds_come_before_metrics_and_zero_before_bounds() {
        let h = hpa(3, 5, vec![cpu(50)]);
        assert_eq!(decide(&h, 1, "app=web"), Decision::Rescale { to: 3, reason: "Current number of replicas below Spec.MinReplicas" });
        assert_eq!(decide(&h, 9, "app=web"), Decision::Rescale { to: 5, reason: "Current number of replicas above Spec.MaxReplicas" });
        assert_eq!(decide(&h, 0, "app=web"), Decision::Disabled);
        assert_eq!(decide(&h, 4, ""), Decision::NoSelector);
        assert!(matches!(decide(&h, 4, "app=web"), Decision::MetricsUnavailable { failures } if failures.len() == 1));
    }

    #[test]
    fn no_metrics_api_reads_as_upstreams_without_metrics_server() {
        let h = hpa(1, 5, vec![cpu(50)]);
        let decision = decide(&h, 2, "app=web");
        let (status, events) = without_rescale(&h, &decision, 2, &at(10));
        let resource_error = "failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)";
        assert_eq!(events[0], Event::warning("FailedGetResourceMetric", resource_error));
        assert_eq!(
            events[1],
            Event::warning(
                "FailedComputeMetricsReplicas",
                format!("invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value: {resource_error}")
            )
        );
        let conditions = status.conditions.clone().unwrap();
        assert_eq!(
            (conditions[0].type_.as_str(), conditions[0].status.as_str(), conditions[0].reason.as_deref()),
            ("AbleToScale", "True", Some("SucceededGetScale"))
        );
        assert_eq!(
            (conditions[1].type_.as_str(), conditions[1].status.as_str(), conditions[1].reason.as_deref()),
            ("ScalingActive", "False", Some("FailedGetResourceMetric"))
        );
        assert_eq!(conditions[1].message.as_deref(), Some(format!("the HPA was unable to compute the replica count: {resource_error}").as_str()));
        assert_eq!((status.current_replicas, status.desired_replicas), (Some(2), 0));
        assert_eq!(status.current_metrics, Some(vec![MetricStatus::default()]));
    }

    #[test]
    fn a_condition_moves_its_time_only_when_its_status_changes() {
        let mut status = HorizontalPodAutoscalerStatus::default();
        set_condition(&mut status, "AbleToScale", true, "SucceededRescale", "a", &at(1));
        set_condition(&mut status, "AbleToScale", true, "SucceededGetScale", "b", &at(2));
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!((c.reason.as_deref(), c.message.as_deref(), c.last_transition_time.clone()), (Some("SucceededGetScale"), Some("b"), Some(at(1))));
        set_condition(&mut status, "AbleToScale", false, "FailedGetScale", "c", &at(3));
        assert_eq!(status.conditions.as_ref().unwrap()[0].last_transition_time, Some(at(3)));
    }

    #[test]
    fn a_rescale_says_its_new_size_and_why() {
        let h = hpa(3, 5, vec![cpu(50)]);
        let (status, events) = after_rescale(&h, 1, 3, "Current number of replicas below Spec.MinReplicas", None, &at(5));
        assert_eq!(events[0].message, "New size: 3; reason: Current number of replicas below Spec.MinReplicas");
        assert!(!events[0].warning);
        assert_eq!((status.current_replicas, status.desired_replicas, status.last_scale_time), (Some(1), 3, Some(at(5))));
        let (status, events) = after_rescale(&h, 1, 3, "r", Some("boom"), &at(5));
        assert_eq!(events[0].reason, "FailedRescale");
        assert_eq!(status.conditions.unwrap().last().unwrap().reason.as_deref(), Some("FailedUpdateScale"));
    }

    #[test]
    fn zero_replicas_turn_scaling_off() {
        let h = hpa(1, 5, vec![cpu(50)]);
        let (status, events) = without_rescale(&h, &Decision::Disabled, 0, &at(1));
        assert!(events.is_empty());
        assert_eq!(status.conditions.unwrap()[1].reason.as_deref(), Some("ScalingDisabled"));
    }
}
