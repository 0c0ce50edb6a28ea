//! Add-ons: what `lab up` creates through the API once the containers are
//! healthy, as kubeadm installs CoreDNS and kind its default StorageClass
//! (`standard`, whose claims the controller-manager's local-path
//! provisioner serves). Cluster DNS is the `coredns` Deployment (two replicas of `kubelab/dns`) behind the `kube-dns`
//! Service at the tenth address of the service subnet, which every pod's
//! resolv.conf names. Applied server-side with one field manager, so a
//! second `lab up` changes nothing and a changed image rolls the pods.
//! `lab up` waits for the Deployment to be available as its last gate, as
//! kubeadm waits for CoreDNS, so that names resolve once it returns.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, HTTPGetAction, PodSpec, PodTemplateSpec, Probe, SecretVolumeSource, Service, ServicePort, ServiceSpec, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams};
use kube::Api;

use crate::images::Images;
use crate::kubeconfig::{self, Kubeconfig};
use crate::pki::{self, Pki};
use crate::topology::Topology;

/// Where add-ons live, as upstream's.
pub const NAMESPACE: &str = "kube-system";
/// The Deployment and its pods' label, kubeadm's names (tools look for them).
pub const DNS_DEPLOYMENT: &str = "coredns";
pub const DNS_SERVICE: &str = "kube-dns";
pub const DNS_APP_LABEL: (&str, &str) = ("k8s-app", "kube-dns");
/// The Secret with the kubeconfig cluster DNS reads the API with: our
/// kubelet mounts secrets but issues no service-account tokens yet.
pub const DNS_KUBECONFIG_SECRET: &str = "coredns-kubeconfig";
/// The progress task `lab up` shows while it applies the add-ons (as soon
/// as the API answers).
pub const TASK: &str = "add-ons";
/// The progress task of the wait for the add-ons, once every container is
/// healthy: cluster DNS's share of `lab up`.
pub const WAIT_TASK: &str = "cluster DNS";
/// The field manager of everything the lab applies.
const FIELD_MANAGER: &str = "kubelab-lab";
/// The default StorageClass, kind's name for it.
pub const STORAGE_CLASS: &str = "standard";
/// The cluster domain every kubelet is started with (its default).
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The objects `lab up` applies: the Secret, the Services (their fixed
/// addresses claimed first), then the Deployments.
#[derive(Debug, Clone, Default)]
pub struct Addons {
    pub secrets: Vec<Secret>,
    pub deployments: Vec<Deployment>,
    pub services: Vec<Service>,
    pub storage_classes: Vec<StorageClass>,
}

impl Addons {
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.deployments.is_empty() && self.services.is_empty() && self.storage_classes.is_empty()
    }
}

/// The add-ons of a topology: cluster DNS when it has nodes to run it on.
pub fn addons(t: &Topology, images: &Images, pki: &Pki) -> Addons {
    if t.nodes.is_empty() {
        return Addons::default();
    }
    let service = t.networking.service_subnet.net();
    let nth = |n: u32| std::net::Ipv4Addr::from(u32::from(service.network()).saturating_add(n));
    // Pods reach the API through the `kubernetes` Service (its address is
    // in the serving certificate), as in-cluster clients do.
    let server = format!("https://{}:443", nth(1));
    let identity = pki.identity(pki::CLUSTER_DNS).expect("the PKI holds cluster DNS's identity");
    let config: Kubeconfig = kubeconfig::for_lab("cluster-dns", &server, None, pki.ca_pem(), &identity.cert_pem, &identity.key_pem);
    Addons {
        secrets: vec![Secret {
            metadata: meta(DNS_KUBECONFIG_SECRET),
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([("kubeconfig".to_string(), ByteString(config.to_yaml().into_bytes()))])),
            ..Default::default()
        }],
        deployments: vec![dns_deployment(images.pod_image("dns"))],
        services: vec![dns_service(&nth(10).to_string())],
        storage_classes: vec![standard_storage_class()],
    }
}

/// kind's default StorageClass: claims that name no class get a directory
/// on the node their first pod goes to (the controller-manager's
/// local-path provisioner, under the provisioner name kind's uses).
fn standard_storage_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(STORAGE_CLASS.into()),
            annotations: Some(BTreeMap::from([("storageclass.kubernetes.io/is-default-class".to_string(), "true".to_string())])),
            ..Default::default()
        },
        provisioner: "rancher.io/local-path".into(),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        reclaim_policy: Some("Delete".into()),
        ..Default::default()
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), namespace: Some(NAMESPACE.into()), labels: Some(app_labels()), ..Default::default() }
}

fn app_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(DNS_APP_LABEL.0.to_string(), DNS_APP_LABEL.1.to_string())])
}

fn port(name: &str, number: i32, protocol: &str) -> ContainerPort {
    ContainerPort { name: Some(name.into()), container_port: number, protocol: Some(protocol.into()), ..Default::default() }
}

/// kubeadm's CoreDNS Deployment, with our image and its kubeconfig.
fn dns_deployment(image: &str) -> Deployment {
    let container = Container {
        name: "coredns".into(),
        image: Some(image.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(vec!["--kubeconfig=/etc/coredns/kubeconfig".into(), format!("--cluster-domain={CLUSTER_DOMAIN}")]),
        ports: Some(vec![port("dns", 53, "UDP"), port("dns-tcp", 53, "TCP"), port("metrics", 9153, "TCP")]),
        volume_mounts: Some(vec![VolumeMount { name: "kubeconfig".into(), mount_path: "/etc/coredns".into(), read_only: Some(true), ..Default::default() }]),
        // kubeadm's probes for CoreDNS: alive on /health, ready once the
        // zone is built on /ready. They take effect when the kubelet runs probes.
        liveness_probe: Some(Probe {
            http_get: Some(HTTPGetAction { path: Some("/health".into()), port: IntOrString::Int(8080), scheme: Some("HTTP".into()), ..Default::default() }),
            initial_delay_seconds: Some(60),
            timeout_seconds: Some(5),
            success_threshold: Some(1),
            failure_threshold: Some(5),
            ..Default::default()
        }),
        // kubeadm leaves the period at its default (10 s); `lab up` waits for
        // these pods to be ready, and a first probe that comes before the
        // zone is built would cost it 10 s, so ours asks every second.
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction { path: Some("/ready".into()), port: IntOrString::Int(8181), scheme: Some("HTTP".into()), ..Default::default() }),
            period_seconds: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    let toleration = |key: &str, effect: Option<&str>| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: effect.map(str::to_string),
        ..Default::default()
    };
    Deployment {
        metadata: meta(DNS_DEPLOYMENT),
        spec: Some(DeploymentSpec {
            replicas: Some(2),
            selector: LabelSelector { match_labels: Some(app_labels()), ..Default::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(app_labels()), ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    // Its own resolver is not itself (upstream's choice too).
                    dns_policy: Some("Default".into()),
                    tolerations: Some(vec![toleration("CriticalAddonsOnly", None), toleration("node-role.kubernetes.io/control-plane", Some("NoSchedule"))]),
                    volumes: Some(vec![Volume {
                        name: "kubeconfig".into(),
                        secret: Some(SecretVolumeSource { secret_name: Some(DNS_KUBECONFIG_SECRET.into()), ..Default::default() }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// kubeadm's kube-dns Service: dns/UDP, dns-tcp/TCP and metrics at `cluster_ip`.
fn dns_service(cluster_ip: &str) -> Service {
    let port = |name: &str, number: i32, protocol: &str| ServicePort {
        name: Some(name.into()),
        port: number,
        protocol: Some(protocol.into()),
        target_port: Some(IntOrString::Int(number)),
        ..Default::default()
    };
    Service {
        metadata: meta(DNS_SERVICE),
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            selector: Some(app_labels()),
            ports: Some(vec![port("dns", 53, "UDP"), port("dns-tcp", 53, "TCP"), port("metrics", 9153, "TCP")]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A client of the lab's API from its admin kubeconfig.
pub async fn client(config: &Kubeconfig) -> Result<kube::Client> {
    let parsed = kube::config::Kubeconfig::from_yaml(&config.to_yaml()).context("reading the lab's kubeconfig")?;
    let options = kube::config::KubeConfigOptions::default();
    let client_config = kube::Config::from_custom_kubeconfig(parsed, &options).await.context("the lab's kubeconfig as a client")?;
    kube::Client::try_from(client_config).context("a client of the lab's API")
}

/// Applies the add-ons through the lab's API with the admin client.
pub async fn install(client: &kube::Client, addons: &Addons) -> Result<()> {
    if addons.is_empty() {
        return Ok(());
    }
    let client = client.clone();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for secret in &addons.secrets {
        apply(&Api::<Secret>::namespaced(client.clone(), NAMESPACE), secret, &secret.metadata, &params).await?;
    }
    for class in &addons.storage_classes {
        apply(&Api::<StorageClass>::all(client.clone()), class, &class.metadata, &params).await?;
    }
    // The Service first: its address is the one every kubelet names, and
    // nothing else may take it while the Deployment is being created.
    for service in &addons.services {
        apply(&Api::<Service>::namespaced(client.clone(), NAMESPACE), service, &service.metadata, &params).await?;
    }
    for deployment in &addons.deployments {
        apply(&Api::<Deployment>::namespaced(client.clone(), NAMESPACE), deployment, &deployment.metadata, &params).await?;
    }
    Ok(())
}

/// Waits until every add-on Deployment has all its replicas updated and
/// available (`lab up`'s last gate, as kubeadm waits for CoreDNS); when
/// `timeout` runs out, says what each one still lacked and why its pods
/// are not there.
pub async fn wait_available(client: &kube::Client, addons: &Addons, timeout: Duration, poll: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    loop {
        let mut missing = Vec::new();
        for wanted in &addons.deployments {
            let name = wanted.metadata.name.as_deref().unwrap_or_default();
            match deployments.get_opt(name).await {
                Ok(Some(found)) => {
                    if let Some(lack) = lacks(&found) {
                        missing.push(format!("deployment {NAMESPACE}/{name}: {lack}"));
                    }
                }
                Ok(None) => missing.push(format!("deployment {NAMESPACE}/{name} does not exist")),
                Err(e) => missing.push(format!("deployment {NAMESPACE}/{name}: {e}")),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let pods = pod_states(client).await;
            bail!("add-ons not available after {timeout:?}: {}; pods in {NAMESPACE}: {pods}", missing.join("; "));
        }
        tokio::time::sleep(poll).await;
    }
}

/// What a Deployment lacks to be rolled out and available, or None.
fn lacks(found: &Deployment) -> Option<String> {
    let wanted = found.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = found.status.clone().unwrap_or_default();
    let observed = status.observed_generation.unwrap_or(0) >= found.metadata.generation.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    if observed && updated == wanted && available == wanted && total == wanted {
        None
    } else {
        Some(format!("{available}/{wanted} available, {updated} updated, {total} in all"))
    }
}

/// The add-on pods' phases and waiting reasons, for the timeout's message.
async fn pod_states(client: &kube::Client) -> String {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NAMESPACE);
    match pods.list(&kube::api::ListParams::default().labels(&format!("{}={}", DNS_APP_LABEL.0, DNS_APP_LABEL.1))).await {
        Ok(list) if list.items.is_empty() => "none".into(),
        Ok(list) => list
            .items
            .iter()
            .map(|p| {
                let name = p.metadata.name.clone().unwrap_or_default();
                let status = p.status.clone().unwrap_or_default();
                let waiting: Vec<String> = status
                    .container_statuses
                    .iter()
                    .flatten()
                    .filter_map(|c| c.state.as_ref()?.waiting.as_ref().map(|w| format!("{}: {}", c.name, w.reason.clone().unwrap_or_default())))
                    .collect();
                let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_else(|| "unscheduled".into());
                format!(
                    "{name} {} on {node}{}",
                    status.phase.unwrap_or_default(),
                    if waiting.is_empty() { String::new() } else { format!(" ({})", waiting.join(", ")) }
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => format!("cannot list them: {e}"),
    }
}

async fn apply<K>(api: &Api<K>, object: &K, meta: &ObjectMeta, params: &PatchParams) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = meta.name.as_deref().unwrap_or_default();
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let at = match &meta.namespace {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_string(),
    };
    api.patch(name, params, &Patch::Apply(object)).await.with_context(|| format!("applying {kind} {at}"))?;
    Ok(())
}
