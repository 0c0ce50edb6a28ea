//! kubelab's controller-manager: control loops that watch the API and
//! write back through it until the cluster is as the API says. Each
//! controller is a module of its own and a row of [`CONTROLLERS`]; the
//! binary picks which run.

pub mod conditions;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod discovery;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod expectations;
pub mod garbage_collector;
pub mod job;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod ownership;
pub mod podautoscaler;
pub mod pods;
pub mod replicaset;
pub mod retries;
pub mod service_backends;
pub mod service_lb;
pub mod serviceaccount;
pub mod statefulset;
pub mod taint_eviction;
pub mod volume;

use anyhow::{bail, Result};
use futures_util::future::BoxFuture;

/// What every controller is started with: the API client and the
/// controller-manager's settings (its flags).
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    pub settings: Settings,
}

/// The controller-manager's settings that controllers read, each from the
/// upstream flag of the same name.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--concurrent-namespace-syncs`.
    pub namespace_syncs: u16,
    /// `--concurrent-replicaset-syncs`.
    pub replicaset_syncs: u16,
    /// `--concurrent-rc-syncs`.
    pub rc_syncs: u16,
    /// `--concurrent-deployment-syncs`.
    pub deployment_syncs: u16,
    /// `--concurrent-gc-syncs`.
    pub gc_syncs: u16,
    /// `--allocate-node-cidrs`, `--cluster-cidr`, `--node-cidr-mask-size*`.
    pub node_ipam: node_ipam::Settings,
    /// `--concurrent-endpoint-syncs`.
    pub endpoint_syncs: u16,
    /// `--concurrent-service-endpoint-syncs` (EndpointSlices).
    pub endpointslice_syncs: u16,
    /// `--node-monitor-period`, `--node-monitor-grace-period`,
    /// `--node-startup-grace-period`.
    pub node_timings: node_lifecycle::Timings,
    /// `--concurrent-daemonset-syncs`.
    pub daemonset_syncs: u16,
    /// `--concurrent-job-syncs`.
    pub job_syncs: u16,
    /// `--concurrent-cron-job-syncs`.
    pub cronjob_syncs: u16,
    /// `--concurrent-statefulset-syncs`.
    pub statefulset_syncs: u16,
    /// `--load-balancer-pool` (ours: upstream leaves addresses to a cloud
    /// provider): where LoadBalancer Services' addresses come from; empty,
    /// the service-lb controller does nothing.
    pub load_balancer_pool: service_lb::Pool,
    /// `--local-path-helper-image` (ours).
    pub local_path: volume::local_path::Settings,
    /// `--horizontal-pod-autoscaler-sync-period`.
    pub hpa_sync_period: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespace_syncs: namespace::DEFAULT_CONCURRENCY,
            replicaset_syncs: replicaset::DEFAULT_CONCURRENCY,
            rc_syncs: replicaset::DEFAULT_RC_CONCURRENCY,
            deployment_syncs: deployment::DEFAULT_CONCURRENCY,
            gc_syncs: garbage_collector::DEFAULT_CONCURRENCY,
            node_ipam: node_ipam::Settings::default(),
            endpoint_syncs: endpoints::DEFAULT_CONCURRENCY,
            endpointslice_syncs: endpointslice::DEFAULT_CONCURRENCY,
            node_timings: node_lifecycle::Timings::default(),
            daemonset_syncs: daemonset::DEFAULT_CONCURRENCY,
            job_syncs: job::DEFAULT_CONCURRENCY,
            cronjob_syncs: cronjob::DEFAULT_CONCURRENCY,
            statefulset_syncs: statefulset::DEFAULT_CONCURRENCY,
            load_balancer_pool: service_lb::Pool::default(),
            local_path: volume::local_path::Settings::default(),
            hpa_sync_period: podautoscaler::DEFAULT_SYNC_PERIOD,
        }
    }
}

/// One controller: its name in `--controllers` (upstream's), the older
/// names upstream still accepts for it, and how it runs.
pub struct ControllerRow {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub run: fn(Context) -> BoxFuture<'static, ()>,
}

/// Every controller this controller-manager has, all on by default.
pub const CONTROLLERS: &[ControllerRow] = &[
    ControllerRow { name: "cronjob-controller", aliases: &["cronjob"], run: |cx| Box::pin(cronjob::run(cx.client, cx.settings.cronjob_syncs)) },
    ControllerRow { name: "daemonset-controller", aliases: &["daemonset"], run: |cx| Box::pin(daemonset::run(cx.client, cx.settings.daemonset_syncs)) },
    ControllerRow { name: "endpoints-controller", aliases: &["endpoint"], run: |cx| Box::pin(endpoints::run(cx.client, cx.settings.endpoint_syncs)) },
    ControllerRow {
        name: "endpointslice-controller",
        aliases: &["endpointslice"],
        run: |cx| Box::pin(endpointslice::run(cx.client, cx.settings.endpointslice_syncs)),
    },
    ControllerRow { name: "disruption-controller", aliases: &["disruption"], run: |cx| Box::pin(disruption::run(cx.client)) },
    ControllerRow {
        name: "horizontal-pod-autoscaler-controller",
        aliases: &["horizontalpodautoscaling"],
        run: |cx| Box::pin(podautoscaler::run(cx.client, cx.settings.hpa_sync_period)),
    },
    ControllerRow { name: "job-controller", aliases: &["job"], run: |cx| Box::pin(job::run(cx.client, cx.settings.job_syncs)) },
    ControllerRow { name: "namespace-controller", aliases: &["namespace"], run: |cx| Box::pin(namespace::run(cx.client, cx.settings.namespace_syncs)) },
    ControllerRow { name: "deployment-controller", aliases: &["deployment"], run: |cx| Box::pin(deployment::run(cx.client, cx.settings.deployment_syncs)) },
    ControllerRow {
        name: "node-lifecycle-controller",
        aliases: &["nodelifecycle"],
        run: |cx| Box::pin(node_lifecycle::run(cx.client, cx.settings.node_timings)),
    },
    ControllerRow {
        name: "replicaset-controller",
        aliases: &["replicaset"],
        run: |cx| Box::pin(replicaset::run::<k8s_openapi::api::apps::v1::ReplicaSet>(cx.client, cx.settings.replicaset_syncs)),
    },
    ControllerRow {
        name: "replicationcontroller-controller",
        aliases: &["replicationcontroller"],
        run: |cx| Box::pin(replicaset::run::<k8s_openapi::api::core::v1::ReplicationController>(cx.client, cx.settings.rc_syncs)),
    },
    ControllerRow { name: "statefulset-controller", aliases: &["statefulset"], run: |cx| Box::pin(statefulset::run(cx.client, cx.settings.statefulset_syncs)) },
    ControllerRow { name: "taint-eviction-controller", aliases: &[], run: |cx| Box::pin(taint_eviction::run(cx.client)) },
    ControllerRow {
        name: "garbage-collector-controller",
        aliases: &["garbagecollector"],
        run: |cx| Box::pin(garbage_collector::run(cx.client, cx.settings.gc_syncs)),
    },
    ControllerRow { name: "node-ipam-controller", aliases: &["nodeipam"], run: |cx| Box::pin(node_ipam::run(cx.client, cx.settings.node_ipam)) },
    ControllerRow { name: "serviceaccount-controller", aliases: &["serviceaccount"], run: |cx| Box::pin(serviceaccount::run(cx.client)) },
    ControllerRow {
        name: "persistentvolume-binder-controller",
        aliases: &["persistentvolume-binder"],
        run: |cx| Box::pin(volume::binder::run(cx.client, volume::binder::DEFAULT_CONCURRENCY)),
    },
    ControllerRow {
        name: "persistentvolume-protection-controller",
        aliases: &["pv-protection", "pvc-protection", "persistentvolumeclaim-protection-controller"],
        run: |cx| Box::pin(volume::protection::run(cx.client)),
    },
    ControllerRow { name: "local-path-provisioner", aliases: &[], run: |cx| Box::pin(volume::local_path::run(cx.client, cx.settings.local_path)) },
    ControllerRow { name: "service-lb-controller", aliases: &["service"], run: |cx| Box::pin(service_lb::run(cx.client, cx.settings.load_balancer_pool)) },
];

fn find(name: &str) -> Option<&'static ControllerRow> {
    CONTROLLERS.iter().find(|c| c.name == name || c.aliases.contains(&name))
}

/// The controllers `--controllers` selects, with upstream's syntax: `*`
/// turns on every controller that is on by default, `name` turns one on,
/// `-name` turns one off (and wins over `*`). Names and aliases both work.
pub fn selected(flags: &[String]) -> Result<Vec<&'static str>> {
    for flag in flags {
        let name = flag.strip_prefix('-').unwrap_or(flag);
        if name != "*" && find(name).is_none() {
            let known: Vec<&str> = CONTROLLERS.iter().map(|c| c.name).collect();
            bail!("{name:?} is not in the list of known controllers: {}", known.join(", "));
        }
    }
    let all = flags.iter().any(|f| f == "*");
    let off = |c: &ControllerRow| flags.iter().filter_map(|f| f.strip_prefix('-')).any(|f| find(f).is_some_and(|o| o.name == c.name));
    let on = |c: &ControllerRow| flags.iter().filter(|f| !f.starts_with('-')).any(|f| find(f).is_some_and(|o| o.name == c.name));
    Ok(CONTROLLERS.iter().filter(|c| !off(c) && (all || on(c))).map(|c| c.name).collect())
}

/// Runs the selected controllers until they end.
pub async fn run_controllers(context: Context, controllers: &[&str]) {
    let mut running = Vec::new();
    for name in controllers {
        let row = find(name).expect("names are checked by selected()");
        tracing::info!("starting the {} controller", row.name);
        running.push(tokio::spawn((row.run)(context.clone())));
    }
    for handle in running {
        let _ = handle.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(s: &[&str]) -> Vec<String> {
        s.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn controllers_are_selected_as_upstream() {
        let all: Vec<&str> = CONTROLLERS.iter().map(|c| c.name).collect();
        assert_eq!(selected(&flags(&["*"])).unwrap(), all);
        assert!(!selected(&flags(&["*", "-namespace"])).unwrap().contains(&"namespace-controller"));
        assert!(!selected(&flags(&["*", "-namespace-controller"])).unwrap().contains(&"namespace-controller"));
        assert_eq!(selected(&flags(&["namespace"])).unwrap(), ["namespace-controller"]);
        assert!(selected(&flags(&[])).unwrap().is_empty());
        let err = selected(&flags(&["*", "bogus"])).unwrap_err().to_string();
        assert!(err.contains("\"bogus\" is not in the list of known controllers"), "{err}");
    }
}
