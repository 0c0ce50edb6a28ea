//! The service-lb controller against the real apiserver: LoadBalancer
//! Services get distinct addresses from the pool in their status, a
//! deleted Service or one that changes type frees its address for the
//! next, an exhausted pool leaves a Service pending with a Warning event,
//! `spec.loadBalancerIP` and `spec.loadBalancerClass` are honoured, and a
//! restarted controller keeps every address (rebuilt from the statuses).

use k8s_openapi::api::core::v1::{Event, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kubelab_scenarios::apiserver::{ControllerManager, TestApi};
use kubelab_scenarios::wait::until;

/// Two addresses, so that exhaustion is quick to reach.
const POOL: &str = "10.250.0.1-10.250.0.2";

fn service_lb(api: &TestApi) -> ControllerManager {
    let settings = controller_manager::Settings { load_balancer_pool: POOL.parse().unwrap(), ..Default::default() };
    api.controller_manager_with(&["service-lb-controller"], settings)
}

/// A LoadBalancer Service with the fields of `spec` added.
async fn create(services: &Api<Service>, name: &str, spec: serde_json::Value) {
    let mut body = serde_json::json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    });
    for (field, value) in spec.as_object().unwrap() {
        body["spec"][field] = value.clone();
    }
    let service: Service = serde_json::from_value(body).unwrap();
    services.create(&PostParams::default(), &service).await.unwrap();
}

/// The Service's ingress as `ip ipMode` strings.
async fn ingress(services: &Api<Service>, name: &str) -> Vec<String> {
    let service = services.get(name).await.unwrap();
    let ingress = service.status.and_then(|s| s.load_balancer).and_then(|l| l.ingress).unwrap_or_default();
    ingress.iter().map(|i| format!("{} {}", i.ip.as_deref().unwrap_or("-"), i.ip_mode.as_deref().unwrap_or("-"))).collect()
}

/// Waits until the Service's status shows exactly `ip` (with ipMode VIP).
async fn assigned(services: &Api<Service>, name: &str, ip: &str) {
    let expected = vec![format!("{ip} VIP")];
    until(&format!("{name} assigned {ip}"), || async {
        let shown = ingress(services, name).await;
        (shown == expected).then_some(()).ok_or(format!("status shows {shown:?}"))
    })
    .await;
}

/// Waits for an event of `reason` about the Service; returns its message.
async fn event(events: &Api<Event>, name: &str, reason: &str) -> (String, String) {
    until(&format!("a {reason} event for {name}"), || async {
        let list = events.list(&ListParams::default().fields(&format!("involvedObject.name={name}"))).await.unwrap().items;
        let found = list.iter().find(|e| e.reason.as_deref() == Some(reason));
        let reasons: Vec<_> = list.iter().filter_map(|e| e.reason.clone()).collect();
        found.map(|e| (e.type_.clone().unwrap_or_default(), e.message.clone().unwrap_or_default())).ok_or(format!("events: {reasons:?}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancers_get_distinct_addresses_given_back_when_freed() {
    let api = TestApi::start();
    let client = api.client().await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let controller = service_lb(&api);

    // The first address, then the second for another Service.
    create(&services, "first", serde_json::json!({})).await;
    assigned(&services, "first", "10.250.0.1").await;
    let (kind, message) = event(&events, "first", "IPAllocated").await;
    assert_eq!((kind.as_str(), message.as_str()), ("Normal", "Assigned load balancer address 10.250.0.1"));
    create(&services, "second", serde_json::json!({})).await;
    assigned(&services, "second", "10.250.0.2").await;
    let printed = api.kubectl(&["get", "service", "second", "--no-headers"]).succeeded();
    assert!(printed.contains("10.250.0.2"), "kubectl shows the EXTERNAL-IP: {printed}");

    // The pool is exhausted: the third waits, pending, with a Warning.
    create(&services, "third", serde_json::json!({})).await;
    let (kind, message) = event(&events, "third", "AllocationFailed").await;
    assert_eq!(kind, "Warning");
    assert_eq!(message, "Failed to allocate a load balancer address: the load balancer pool is exhausted: all 2 addresses are in use");
    assert!(ingress(&services, "third").await.is_empty(), "an exhausted pool gave an address");
    let printed = api.kubectl(&["get", "service", "third", "--no-headers"]).succeeded();
    assert!(printed.contains("<pending>"), "{printed}");

    // Deleting the first frees its address, which goes to the one waiting.
    services.delete("first", &DeleteParams::default()).await.unwrap();
    assigned(&services, "third", "10.250.0.1").await;

    // A Service that stops being a LoadBalancer loses its status and
    // frees its address; a Service asking for it by loadBalancerIP gets it.
    let to_cluster_ip = serde_json::json!({"spec": {"type": "ClusterIP"}});
    services.patch("second", &PatchParams::default(), &Patch::Merge(&to_cluster_ip)).await.unwrap();
    until("second's status cleared", || async {
        let shown = ingress(&services, "second").await;
        shown.is_empty().then_some(()).ok_or(format!("status shows {shown:?}"))
    })
    .await;
    create(&services, "asks", serde_json::json!({"loadBalancerIP": "10.250.0.2"})).await;
    assigned(&services, "asks", "10.250.0.2").await;

    // An address outside the pool, or one held, is refused with an event.
    create(&services, "outside", serde_json::json!({"loadBalancerIP": "10.9.9.9"})).await;
    let (kind, message) = event(&events, "outside", "AllocationFailed").await;
    assert_eq!(kind, "Warning");
    assert_eq!(message, "Failed to allocate a load balancer address: the requested address 10.9.9.9 is not in the load balancer pool");
    create(&services, "held", serde_json::json!({"loadBalancerIP": "10.250.0.1"})).await;
    let (_, message) = event(&events, "held", "AllocationFailed").await;
    assert_eq!(message, "Failed to allocate a load balancer address: the requested address 10.250.0.1 is already in use by Service default/third");

    // Another implementation's class is left alone.
    create(&services, "other-class", serde_json::json!({"loadBalancerClass": "example.com/other"})).await;
    create(&services, "our-class", serde_json::json!({"loadBalancerClass": "kubelab.dev/service-lb"})).await;
    let (_, message) = event(&events, "our-class", "AllocationFailed").await;
    assert!(message.contains("exhausted"), "{message}");
    services.delete("asks", &DeleteParams::default()).await.unwrap();
    // Oldest waiting first: `outside` is not waiting (no release can help
    // it), `held` waits for 10.250.0.1, so the freed .2 goes to our-class.
    assigned(&services, "our-class", "10.250.0.2").await;
    assert!(ingress(&services, "other-class").await.is_empty(), "another class's Service was given an address");
    assert!(ingress(&services, "held").await.is_empty());

    // A restart rebuilds who holds what from the statuses alone: every
    // address stays, and nothing is handed out twice.
    drop(controller);
    create(&services, "late", serde_json::json!({})).await;
    let _controller = service_lb(&api);
    let (_, message) = event(&events, "late", "AllocationFailed").await;
    assert!(message.contains("exhausted"), "{message}");
    assigned(&services, "third", "10.250.0.1").await;
    assigned(&services, "our-class", "10.250.0.2").await;
    assert!(ingress(&services, "late").await.is_empty());
}

/// A lab's pool: `networking.loadBalancerPool` is checked against the lab
/// subnet (every problem with its line and column), and the pool, the
/// topology's or the default at the top of the lab subnet, reaches the
/// controller-manager while Docker keeps to the subnet's lower half.
#[test]
fn a_labs_pool_lies_above_dockers_range_and_reaches_the_controller_manager() {
    use kubelab::{components, images::Images, plan, topology};
    use std::path::Path;

    let head = "apiVersion: kubelab.dev/v1alpha1\nkind: Topology\nnodes: [{name: n1}]\nnetworking:\n";
    let error_of = |networking: &str| topology::parse(&format!("{head}{networking}"), Path::new("t.yaml")).unwrap_err().to_string();
    assert_eq!(
        error_of("  loadBalancerPool: 172.30.0.240-172.30.0.250\n"),
        "t.yaml:5:21: networking.loadBalancerPool: a load balancer pool needs networking.labSubnet to lie in (without one, lab picks the subnet itself)"
    );
    assert_eq!(
        error_of("  labSubnet: 172.30.0.0/24\n  loadBalancerPool: 172.30.0.100-172.30.0.140\n"),
        "t.yaml:6:21: networking.loadBalancerPool: 172.30.0.100-172.30.0.140 overlaps 172.30.0.0/25, where Docker gives containers their addresses (the lower half of networking.labSubnet)"
    );
    assert_eq!(
        error_of("  labSubnet: 172.30.0.0/24\n  loadBalancerPool: 10.0.0.1-10.0.0.9\n"),
        "t.yaml:6:21: networking.loadBalancerPool: 10.0.0.1-10.0.0.9 is not inside networking.labSubnet (172.30.0.0/24)"
    );

    let images = Images {
        base: "kubelab/base:test".into(),
        components: components::COMPONENTS.iter().map(|c| (c.name, format!("kubelab/{}:test", c.name))).collect(),
        pod_images: components::POD_IMAGES.iter().map(|p| (p.name, format!("kubelab/{}:test", p.name))).collect(),
    };
    let plan_of = |networking: &str, subnet: &str| {
        let topology = topology::parse(&format!("{head}{networking}"), Path::new("t.yaml")).unwrap();
        let state = tempfile::tempdir().unwrap();
        let pki = plan::load_pki(state.path(), "t", &topology).unwrap();
        plan::plan("t", &topology, subnet.parse().unwrap(), &images, &pki)
    };
    let pool_flag = |plan: &plan::Plan| {
        let member = plan.members().find(|m| m.instance.starts_with(plan::CONTROLLER_MANAGER)).unwrap();
        member.spec.cmd.iter().find_map(|f| f.strip_prefix("--load-balancer-pool=")).unwrap().to_string()
    };
    let chosen = plan_of("  labSubnet: 192.168.50.0/24\n  loadBalancerPool: 192.168.50.200/29\n", "192.168.50.0/24");
    assert_eq!(pool_flag(&chosen), "192.168.50.200-192.168.50.207");
    assert_eq!(chosen.ip_range.to_string(), "192.168.50.0/25");
    let default = plan_of("  podSubnet: 10.244.0.0/16\n", "172.30.7.0/24");
    assert_eq!(pool_flag(&default), "172.30.7.240-172.30.7.254");
    assert_eq!((default.subnet.to_string(), default.ip_range.to_string()), ("172.30.7.0/24".into(), "172.30.7.0/25".into()));
    assert_eq!(default.load_balancer_pool, "172.30.7.240-172.30.7.254");
}

/// What a node's speaker did, as its announcer saw it.
#[derive(Default)]
struct Recorded {
    held: std::collections::BTreeSet<std::net::Ipv4Addr>,
    broadcasts: usize,
}

struct Recording(std::sync::Mutex<Recorded>);

impl kubelet::speaker::Announcer for Recording {
    fn add(&self, ip: std::net::Ipv4Addr) -> anyhow::Result<()> {
        self.0.lock().unwrap().held.insert(ip);
        Ok(())
    }
    fn remove(&self, ip: std::net::Ipv4Addr) -> anyhow::Result<()> {
        self.0.lock().unwrap().held.remove(&ip);
        Ok(())
    }
    fn broadcast(&self, _: std::net::Ipv4Addr) -> anyhow::Result<()> {
        self.0.lock().unwrap().broadcasts += 1;
        Ok(())
    }
}

/// One node's speaker on a thread and runtime of its own, recording
/// instead of touching interfaces; stopped (as a node that dies: its
/// Leases are not given up) when dropped.
struct Speaker {
    recorded: std::sync::Arc<Recording>,
    _running: kubelab_scenarios::apiserver::InProcess,
}

impl Speaker {
    fn start(api: &TestApi, node: &str) -> Speaker {
        let recorded = std::sync::Arc::new(Recording(Default::default()));
        let (node, announcer) = (node.to_string(), recorded.clone());
        let running = api.in_process(kubelab::pki::ADMIN, move |client| async move {
            let result = kubelet::speaker::run_with(client, node, announcer).await;
            panic!("the speaker stopped: {result:?}")
        });
        Speaker { recorded, _running: running }
    }

    fn holds(&self, ip: &str) -> bool {
        self.recorded.0.lock().unwrap().held.contains(&ip.parse().unwrap())
    }

    fn broadcasts(&self) -> usize {
        self.recorded.0.lock().unwrap().broadcasts
    }
}

/// The holder of a Lease in kube-system, if any.
async fn lease_holder(leases: &Api<k8s_openapi::api::coordination::v1::Lease>, name: &str) -> Option<String> {
    leases.get_opt(name).await.unwrap().and_then(|l| l.spec?.holder_identity).filter(|h| !h.is_empty())
}

/// The speakers' elections against the real apiserver: one node announces
/// each address (the holder of its Lease, with a gratuitous ARP), another
/// takes over when the holder dies, the address goes with its Service, and
/// under `externalTrafficPolicy: Local` only a node with a ready endpoint
/// announces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_announces_each_address_and_another_takes_over() {
    let api = TestApi::start();
    let client = api.client().await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), "kube-system");
    let _controller = service_lb(&api);
    let mut speakers: std::collections::BTreeMap<&str, Speaker> = ["node-a", "node-b"].into_iter().map(|n| (n, Speaker::start(&api, n))).collect();

    create(&services, "web", serde_json::json!({})).await;
    assigned(&services, "web", "10.250.0.1").await;
    let holder = until("one node announcing web", || async {
        let holder = lease_holder(&leases, "svc-lb.default.web").await;
        let announcing: Vec<&str> = speakers.iter().filter(|(_, s)| s.holds("10.250.0.1") && s.broadcasts() > 0).map(|(n, _)| *n).collect();
        match (announcing.as_slice(), holder.as_deref()) {
            ([node], Some(holder)) if *node == holder => Ok(*node),
            seen => Err(format!("announcing, Lease holder: {seen:?}")),
        }
    })
    .await;

    // The holder dies without giving anything up: the other node takes
    // over once the Lease has gone unrenewed for its duration (15 s).
    drop(speakers.remove(holder));
    let (other, survivor) = speakers.iter().next().map(|(n, s)| (*n, s)).unwrap();
    until(&format!("{other} taking web over"), || async {
        let holder = lease_holder(&leases, "svc-lb.default.web").await;
        (survivor.holds("10.250.0.1") && survivor.broadcasts() > 0 && holder.as_deref() == Some(other))
            .then_some(())
            .ok_or(format!("{other} holds it: {}, Lease holder: {holder:?}", survivor.holds("10.250.0.1")))
    })
    .await;

    // A Local Service is announced only where a ready endpoint is: a
    // slice (written by hand, as the endpointslice controller would) puts
    // its only endpoint on a node with no speaker, then on the survivor.
    create(&services, "local", serde_json::json!({"externalTrafficPolicy": "Local"})).await;
    assigned(&services, "local", "10.250.0.2").await;
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice = |node: &str| -> k8s_openapi::api::discovery::v1::EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "local-1", "labels": {"kubernetes.io/service-name": "local"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.9.9"], "nodeName": node, "conditions": {"ready": true}}],
        }))
        .unwrap()
    };
    slices.create(&PostParams::default(), &slice("node-elsewhere")).await.unwrap();
    // The survivor competes for web already; give it time to see the slice.
    let quiet = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    until("the Local Service left alone", || async {
        if survivor.holds("10.250.0.2") {
            panic!("{other} announces a Local Service without a local endpoint");
        }
        (tokio::time::Instant::now() > quiet).then_some(()).ok_or("watching".to_string())
    })
    .await;
    assert_eq!(lease_holder(&leases, "svc-lb.default.local").await, None);
    slices.delete("local-1", &DeleteParams::default()).await.unwrap();
    slices.create(&PostParams::default(), &slice(other)).await.unwrap();
    until(&format!("{other} announcing local"), || async { survivor.holds("10.250.0.2").then_some(()).ok_or("not yet".to_string()) }).await;

    // The address goes with its Service, and so does the Lease.
    services.delete("web", &DeleteParams::default()).await.unwrap();
    until("web's address and Lease gone", || async {
        let lease = leases.get_opt("svc-lb.default.web").await.unwrap();
        (!survivor.holds("10.250.0.1") && lease.is_none()).then_some(()).ok_or(format!("held: {}, Lease: {}", survivor.holds("10.250.0.1"), lease.is_some()))
    })
    .await;
}
