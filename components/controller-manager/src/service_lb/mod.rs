//! The service-lb controller (upstream's controller name; upstream leaves
//! the work to a cloud provider, here the lab is the provider, in the
//! manner of MetalLB's controller): every `type: LoadBalancer` Service of
//! our class gets an address from `--load-balancer-pool` in
//! `status.loadBalancer.ingress`, and gives it back when it is deleted or
//! stops being a LoadBalancer.
//!
//! As the node IPAM controller, one task watches Services and makes every
//! decision in the order events come, so two Services never race for an
//! address. What is held lives only in the Services' statuses: each
//! (re)list rebuilds the allocator from them before anything is handed
//! out, so a restarted (or newly elected) controller keeps every address.
//! A Service the pool has no room for (or whose `spec.loadBalancerIP` is
//! held) stays pending with a Warning event and is tried again, oldest
//! first, whenever an address is freed.

mod pool;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use component_base::events::{self, Recorder};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use serde_json::json;

pub use pool::{Allocator, Pool, Refusal};

/// The `spec.loadBalancerClass` this controller answers for, besides
/// Services that name no class (it is the lab's default implementation).
pub const LOAD_BALANCER_CLASS: &str = "kubelab.dev/service-lb";

/// The source of its events.
const COMPONENT: &str = "service-lb-controller";

/// How often status writes that failed are tried again.
const RETRY: Duration = Duration::from_secs(2);

/// Whether this controller gives `service` an address: a LoadBalancer
/// without a class or with ours.
pub fn is_ours(service: &Service) -> bool {
    let spec = service.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer") && class_is_ours(service)
}

/// Whether the Service's class (if any) is ours: another implementation's
/// Services, and their statuses, are never touched.
fn class_is_ours(service: &Service) -> bool {
    match service.spec.as_ref().and_then(|s| s.load_balancer_class.as_deref()) {
        None | Some("") => true,
        Some(class) => class == LOAD_BALANCER_CLASS,
    }
}

/// The IPv4 addresses the Service's status shows.
fn ingress_ips(service: &Service) -> Vec<Ipv4Addr> {
    let ingress = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
    ingress.into_iter().flatten().filter_map(|i| i.ip.as_deref()?.parse().ok()).collect()
}

fn has_ingress(service: &Service) -> bool {
    let ingress = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
    ingress.is_some_and(|i| !i.is_empty())
}

/// What `spec.loadBalancerIP` asks for: nothing, an address, or text that
/// is not an IPv4 address.
fn wanted(service: &Service) -> Result<Option<Ipv4Addr>, String> {
    match service.spec.as_ref().and_then(|s| s.load_balancer_ip.as_deref()).map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| format!("spec.loadBalancerIP {text:?} is not an IPv4 address")),
    }
}

fn key_of(service: &Service) -> String {
    format!("{}/{}", service.namespace().unwrap_or_default(), service.name_any())
}

/// Oldest first, then by key: who keeps a disputed address at a rebuild,
/// and who gets a freed one first.
fn age_order(service: &Service) -> (Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>, String) {
    (service.metadata.creation_timestamp.clone(), key_of(service))
}

/// Runs the controller until the Service watch ends; with an empty pool
/// it does nothing.
pub async fn run(client: Client, pool: Pool) {
    if pool.is_empty() {
        tracing::info!("service-lb: no --load-balancer-pool; LoadBalancer Services get no address");
        return;
    }
    tracing::info!("service-lb: allocating load balancer addresses from {pool} (class {LOAD_BALANCER_CLASS} or none)");
    let services: Api<Service> = Api::all(client.clone());
    let mut controller = Controller {
        client: client.clone(),
        recorder: Recorder::new(client, COMPONENT, None),
        pool: pool.clone(),
        allocator: Allocator::new(pool),
        services: BTreeMap::new(),
        waiting: BTreeSet::new(),
        unwritten: BTreeSet::new(),
    };
    let mut stream = watcher::watcher(services, watcher::Config::default()).default_backoff().boxed();
    let mut listing = Vec::new();
    let mut retry = tokio::time::interval(RETRY);
    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(Event::Init)) => listing.clear(),
                Some(Ok(Event::InitApply(service))) => listing.push(service),
                Some(Ok(Event::InitDone)) => controller.rebuild(std::mem::take(&mut listing)).await,
                Some(Ok(Event::Apply(service))) => controller.changed(service).await,
                Some(Ok(Event::Delete(service))) => controller.deleted(&service).await,
                Some(Err(e)) => tracing::warn!("service-lb: watching Services failed (retrying): {e}"),
                None => return,
            },
            _ = retry.tick() => controller.retry_unwritten().await,
        }
    }
}

struct Controller {
    client: Client,
    recorder: Recorder,
    pool: Pool,
    allocator: Allocator,
    /// Every Service as the watch last showed it, by key.
    services: BTreeMap<String, Service>,
    /// Services refused for a reason a release may lift, by key.
    waiting: BTreeSet<String>,
    /// Services whose status write failed, by key: tried again on a timer.
    unwritten: BTreeSet<String>,
}

impl Controller {
    /// Starts again from the Services as listed: first the addresses their
    /// statuses show (the oldest claim of an address wins), then every
    /// Service is brought in line (addresses for those without, statuses
    /// cleared for those no longer LoadBalancers).
    async fn rebuild(&mut self, mut listed: Vec<Service>) {
        listed.sort_by_key(age_order);
        self.allocator = Allocator::new(self.pool.clone());
        self.waiting.clear();
        self.unwritten.clear();
        self.services = listed.iter().map(|s| (key_of(s), s.clone())).collect();
        for service in listed.iter().filter(|s| is_ours(s)) {
            let Some(&ip) = ingress_ips(service).first() else { continue };
            if wanted(service).ok().flatten().is_some_and(|w| w != ip) {
                continue; // it asks for another address now: synced below
            }
            if let Err(refusal) = self.allocator.occupy(&key_of(service), ip) {
                tracing::warn!(service = %key_of(service), "service-lb: the address {ip} in the status is not kept: {refusal}");
            }
        }
        let held = listed.iter().filter(|s| self.allocator.holds(&key_of(s)).is_some()).count();
        tracing::info!("service-lb: {held} Services hold load balancer addresses");
        let mut freed = false;
        for service in &listed {
            freed |= self.sync(service).await;
        }
        // A Service that now asks for another address gave one back, which
        // an older Service refused above may take.
        if freed {
            self.pass_waiting().await;
        }
    }

    async fn changed(&mut self, service: Service) {
        self.services.insert(key_of(&service), service.clone());
        if self.sync(&service).await {
            self.pass_waiting().await;
        }
    }

    async fn deleted(&mut self, service: &Service) {
        let key = key_of(service);
        self.services.remove(&key);
        self.waiting.remove(&key);
        self.unwritten.remove(&key);
        if let Some(ip) = self.allocator.release(&key) {
            tracing::info!(service = %key, "service-lb: released {ip} (the Service is deleted)");
            self.pass_waiting().await;
        }
    }

    /// Brings one Service's address and status in line with its spec;
    /// says whether an address was freed.
    async fn sync(&mut self, service: &Service) -> bool {
        let key = key_of(service);
        if !is_ours(service) {
            self.waiting.remove(&key);
            self.unwritten.remove(&key);
            let released = self.allocator.release(&key);
            if let Some(ip) = released {
                tracing::info!(service = %key, "service-lb: released {ip} (no longer a LoadBalancer of this class)");
                self.recorder.normal(events::reference(service), "IPReleased", format!("Released load balancer address {ip}"));
            }
            // A Service that stopped being a LoadBalancer keeps no stale
            // address in its status; another class's status is not ours.
            if class_is_ours(service) && has_ingress(service) {
                self.write_status(service, None).await;
            }
            return released.is_some();
        }
        let (ip, freed) = match wanted(service) {
            Err(why) => {
                self.refuse(service, &why, false).await;
                (None, self.allocator.release(&key).is_some())
            }
            Ok(wanted) => {
                let before = self.allocator.holds(&key);
                match self.allocator.allocate(&key, wanted) {
                    Ok(ip) => {
                        self.waiting.remove(&key);
                        if before != Some(ip) {
                            tracing::info!(service = %key, "service-lb: assigned {ip}");
                            self.recorder.normal(events::reference(service), "IPAllocated", format!("Assigned load balancer address {ip}"));
                        }
                        (Some(ip), before.is_some_and(|b| b != ip))
                    }
                    Err(refusal) => {
                        // A refused move (another loadBalancerIP) gives up
                        // the old address: the status never shows an
                        // address the spec no longer asks for.
                        let freed = self.allocator.release(&key).is_some();
                        self.refuse(service, &refusal.to_string(), refusal.may_pass_later()).await;
                        (None, freed)
                    }
                }
            }
        };
        let shown = ingress_ips(service);
        let in_line = match ip {
            Some(ip) => shown == [ip] && service.status.as_ref().and_then(|s| s.load_balancer.as_ref()?.ingress.as_ref()).is_some_and(|i| i.len() == 1),
            None => !has_ingress(service),
        };
        if !in_line {
            self.write_status(service, ip).await;
        }
        freed
    }

    /// Leaves the Service pending with a Warning event saying why.
    async fn refuse(&mut self, service: &Service, why: &str, may_pass_later: bool) {
        let key = key_of(service);
        tracing::warn!(service = %key, "service-lb: no address: {why}");
        self.recorder.warning(events::reference(service), "AllocationFailed", format!("Failed to allocate a load balancer address: {why}"));
        if may_pass_later {
            self.waiting.insert(key);
        } else {
            self.waiting.remove(&key);
        }
    }

    /// Addresses were freed: the waiting Services are tried again, oldest
    /// first.
    async fn pass_waiting(&mut self) {
        let mut waiting: Vec<Service> = self.waiting.iter().filter_map(|k| self.services.get(k).cloned()).collect();
        waiting.sort_by_key(age_order);
        for service in waiting {
            self.sync(&service).await;
        }
    }

    /// Writes `status.loadBalancer.ingress`: the address (with upstream's
    /// `ipMode: VIP`: traffic for it is delivered to the node as it is, and
    /// kube-proxy routes it) or nothing.
    async fn write_status(&mut self, service: &Service, ip: Option<Ipv4Addr>) {
        let key = key_of(service);
        let ingress = match ip {
            Some(ip) => json!([{"ip": ip.to_string(), "ipMode": "VIP"}]),
            None => serde_json::Value::Null,
        };
        let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        let api: Api<Service> = Api::namespaced(self.client.clone(), &service.namespace().unwrap_or_default());
        match api.patch_status(&service.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {
                self.unwritten.remove(&key);
            }
            // Deleted meanwhile: its Delete event releases the address.
            Err(kube::Error::Api(s)) if s.is_not_found() => {
                self.unwritten.remove(&key);
            }
            Err(e) => {
                tracing::warn!(service = %key, "service-lb: writing the status failed (will retry): {e}");
                self.unwritten.insert(key);
            }
        }
    }

    async fn retry_unwritten(&mut self) {
        for key in std::mem::take(&mut self.unwritten) {
            if let Some(service) = self.services.get(&key).cloned() {
                // The cached status is the one before the failed write, so
                // the sync sees the difference and writes again.
                self.sync(&service).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(json: &str) -> Service {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn only_load_balancers_without_a_class_or_with_ours_are_ours() {
        let lb = service(r#"{"metadata": {"name": "a", "namespace": "ns"}, "spec": {"type": "LoadBalancer"}}"#);
        assert!(is_ours(&lb));
        let ours = service(r#"{"metadata": {"name": "a"}, "spec": {"type": "LoadBalancer", "loadBalancerClass": "kubelab.dev/service-lb"}}"#);
        assert!(is_ours(&ours));
        let theirs = service(r#"{"metadata": {"name": "a"}, "spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/other"}}"#);
        assert!(!is_ours(&theirs) && !class_is_ours(&theirs));
        let node_port = service(r#"{"metadata": {"name": "a"}, "spec": {"type": "NodePort"}}"#);
        assert!(!is_ours(&node_port) && class_is_ours(&node_port));
        assert_eq!(key_of(&lb), "ns/a");
    }

    #[test]
    fn the_requested_address_is_read_from_the_spec() {
        let asks = |ip: &str| service(&format!(r#"{{"metadata": {{"name": "a"}}, "spec": {{"type": "LoadBalancer", "loadBalancerIP": "{ip}"}}}}"#));
        assert_eq!(wanted(&asks("10.0.0.5")), Ok(Some("10.0.0.5".parse().unwrap())));
        assert_eq!(wanted(&asks("")), Ok(None));
        assert_eq!(wanted(&asks("fd00::1")).unwrap_err(), "spec.loadBalancerIP \"fd00::1\" is not an IPv4 address");
    }

    #[test]
    fn the_status_addresses_are_read_ipv4_only() {
        let shown = service(
            r#"{"metadata": {"name": "a"}, "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.5", "ipMode": "VIP"}, {"ip": "fd00::5"}, {"hostname": "x"}]}}}"#,
        );
        assert_eq!(ingress_ips(&shown), [Ipv4Addr::new(10, 0, 0, 5)]);
        assert!(has_ingress(&shown));
        assert!(!has_ingress(&service(r#"{"metadata": {"name": "a"}, "status": {"loadBalancer": {}}}"#)));
    }
}
