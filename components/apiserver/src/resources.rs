//! The resource table: one row per resource the apiserver serves. It drives
//! routing, discovery, storage keys and which strategy applies; nothing
//! else in the server names a resource.

use crate::status::Subject;
use crate::strategy::{self, Strategy};

pub struct Resource {
    /// API group; "" is the core group served under /api.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources beyond the object itself: "status", "scale", ...
    pub subresources: &'static [&'static str],
    /// The key path under /registry/ (upstream's: pods are `pods`, nodes
    /// `minions`, services `services/specs`).
    pub storage: &'static str,
    pub strategy: &'static dyn Strategy,
    /// The kind's schema (from k8s-openapi), for OpenAPI documents.
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    /// Decodes the object as its k8s-openapi type and writes it back: an
    /// error names the field whose value has the wrong type; what comes
    /// back holds only the fields the kind has.
    pub decode_check: fn(&serde_json::Value) -> Result<serde_json::Value, String>,
    /// Asked at read time instead of stored (componentstatuses): get and
    /// list only.
    pub probed: bool,
    /// Another version of a stored resource: kept in that version's form,
    /// converted on every read, write, list and watch (see `conversion`).
    pub conversion: Option<&'static crate::conversion::Conversion>,
    /// Made from the server's own state at read time, never stored
    /// (apiservices): get, list and watch only.
    pub computed: Option<fn() -> Vec<serde_json::Value>>,
}

/// `value` through `T` and back, or where and why it does not decode.
pub fn decodes_as<T: serde::de::DeserializeOwned + serde::Serialize>(value: &serde_json::Value) -> Result<serde_json::Value, String> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(typed) => serde_json::to_value(typed).map_err(|e| e.to_string()),
        Err(e) => Err(format!("{}: {}", e.path(), e.inner())),
    }
}

/// Every verb a stored resource supports.
pub const VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn verbs(&self) -> &'static [&'static str] {
        if self.probed {
            &["get", "list"]
        } else if self.computed.is_some() {
            &["get", "list", "watch"]
        } else {
            VERBS
        }
    }

    /// Whether objects of this row are kept in etcd under its own key and
    /// form (not probed, computed or another version's).
    pub fn stored(&self) -> bool {
        !self.probed && self.computed.is_none() && self.conversion.is_none()
    }

    /// The row whose form objects of this one are kept in: itself, or the
    /// stored version it converts to.
    pub fn storage_row(&'static self) -> &'static Resource {
        match self.conversion {
            Some(c) => find(self.group, c.stored_version, self.plural).expect("a conversion names a row of the table"),
            None => self,
        }
    }

    pub fn has_status(&self) -> bool {
        self.subresources.contains(&"status")
    }

    /// The etcd key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{ns}/{name}", self.storage),
            _ => format!("/registry/{}/{name}", self.storage),
        }
    }

    /// The etcd prefix of all objects (`namespace` None) or one namespace's.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{ns}/", self.storage),
            _ => format!("/registry/{}/", self.storage),
        }
    }

    /// How errors name this resource: `pods "web"`, `deployments.apps "d"`.
    pub fn subject(&self, name: &str) -> Subject {
        Subject { group: self.group.into(), kind: self.plural.into(), name: name.into() }
    }

    /// How `Invalid` errors name it: `Pod "web" is invalid`.
    pub fn kind_subject(&self, name: &str) -> Subject {
        Subject { group: self.group.into(), kind: self.kind.into(), name: name.into() }
    }
}

macro_rules! resource {
    ($group:expr, $version:expr, $plural:expr, $singular:expr, $kind:expr, namespaced: $ns:expr,
     short: $short:expr, categories: $cat:expr, sub: $sub:expr, storage: $storage:expr, strategy: $strategy:expr,
     schema: $ty:ty) => {
        resource!($group, $version, $plural, $singular, $kind, namespaced: $ns, short: $short, categories: $cat,
            sub: $sub, storage: $storage, strategy: $strategy, schema: $ty, probed: false)
    };
    ($group:expr, $version:expr, $plural:expr, $singular:expr, $kind:expr, namespaced: $ns:expr,
     short: $short:expr, categories: $cat:expr, sub: $sub:expr, storage: $storage:expr, strategy: $strategy:expr,
     schema: $ty:ty, probed: $probed:expr) => {
        Resource {
            group: $group,
            version: $version,
            plural: $plural,
            singular: $singular,
            kind: $kind,
            namespaced: $ns,
            short_names: $short,
            categories: $cat,
            subresources: $sub,
            storage: $storage,
            strategy: $strategy,
            schema: |g| g.subschema_for::<$ty>(),
            decode_check: decodes_as::<$ty>,
            probed: $probed,
            conversion: None,
            computed: None,
        }
    };
    // Another version of a stored row, converted by `$conversion`.
    ($group:expr, $version:expr, $plural:expr, $singular:expr, $kind:expr, namespaced: $ns:expr,
     short: $short:expr, categories: $cat:expr, sub: $sub:expr, converts: $conversion:expr, strategy: $strategy:expr,
     schema: $ty:ty) => {
        Resource {
            conversion: Some($conversion),
            ..resource!($group, $version, $plural, $singular, $kind, namespaced: $ns, short: $short, categories: $cat,
                sub: $sub, storage: "", strategy: $strategy, schema: $ty)
        }
    };
    // Made at read time by `$objects`.
    ($group:expr, $version:expr, $plural:expr, $singular:expr, $kind:expr, namespaced: $ns:expr,
     short: $short:expr, categories: $cat:expr, computed: $objects:expr, strategy: $strategy:expr, schema: $ty:ty) => {
        Resource {
            computed: Some($objects),
            ..resource!($group, $version, $plural, $singular, $kind, namespaced: $ns, short: $short, categories: $cat,
                sub: &[], storage: "", strategy: $strategy, schema: $ty)
        }
    };
}

pub static RESOURCES: &[Resource] = &[
    resource!("", "v1", "namespaces", "namespace", "Namespace", namespaced: false,
        short: &["ns"], categories: &[], sub: &["status", "finalize"], storage: "namespaces", strategy: &strategy::core::Namespaces, schema: k8s_openapi::api::core::v1::Namespace),
    resource!("", "v1", "pods", "pod", "Pod", namespaced: true,
        short: &["po"], categories: &["all"], sub: &["status", "binding", "eviction", "log", "exec", "attach", "portforward", "ephemeralcontainers"], storage: "pods", strategy: &strategy::core::Pods, schema: k8s_openapi::api::core::v1::Pod),
    resource!("", "v1", "nodes", "node", "Node", namespaced: false,
        short: &["no"], categories: &[], sub: &["status"], storage: "minions", strategy: &strategy::core::Nodes, schema: k8s_openapi::api::core::v1::Node),
    resource!("", "v1", "services", "service", "Service", namespaced: true,
        short: &["svc"], categories: &["all"], sub: &["status"], storage: "services/specs", strategy: &strategy::core::Services, schema: k8s_openapi::api::core::v1::Service),
    resource!("", "v1", "endpoints", "endpoints", "Endpoints", namespaced: true,
        short: &["ep"], categories: &[], sub: &[], storage: "services/endpoints", strategy: &strategy::core::Endpoints, schema: k8s_openapi::api::core::v1::Endpoints),
    resource!("", "v1", "configmaps", "configmap", "ConfigMap", namespaced: true,
        short: &["cm"], categories: &[], sub: &[], storage: "configmaps", strategy: &strategy::core::ConfigMaps, schema: k8s_openapi::api::core::v1::ConfigMap),
    resource!("", "v1", "secrets", "secret", "Secret", namespaced: true,
        short: &[], categories: &[], sub: &[], storage: "secrets", strategy: &strategy::core::Secrets, schema: k8s_openapi::api::core::v1::Secret),
    resource!("", "v1", "events", "event", "Event", namespaced: true,
        short: &["ev"], categories: &[], sub: &[], storage: "events", strategy: &strategy::core::Events, schema: k8s_openapi::api::core::v1::Event),
    resource!("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", namespaced: true,
        short: &["sa"], categories: &[], sub: &[], storage: "serviceaccounts", strategy: &strategy::core::ServiceAccounts, schema: k8s_openapi::api::core::v1::ServiceAccount),
    resource!("", "v1", "componentstatuses", "componentstatus", "ComponentStatus", namespaced: false,
        short: &["cs"], categories: &[], sub: &[], storage: "", strategy: &strategy::core::ComponentStatuses,
        schema: k8s_openapi::api::core::v1::ComponentStatus, probed: true),
    resource!("", "v1", "replicationcontrollers", "replicationcontroller", "ReplicationController", namespaced: true,
        short: &["rc"], categories: &["all"], sub: &["status", "scale"], storage: "controllers", strategy: &strategy::replication::ReplicationControllers, schema: k8s_openapi::api::core::v1::ReplicationController),
    resource!("", "v1", "podtemplates", "podtemplate", "PodTemplate", namespaced: true,
        short: &[], categories: &[], sub: &[], storage: "podtemplates", strategy: &strategy::replication::PodTemplates, schema: k8s_openapi::api::core::v1::PodTemplate),
    resource!("", "v1", "persistentvolumes", "persistentvolume", "PersistentVolume", namespaced: false,
        short: &["pv"], categories: &[], sub: &["status"], storage: "persistentvolumes", strategy: &strategy::storage::PersistentVolumes, schema: k8s_openapi::api::core::v1::PersistentVolume),
    resource!("", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", namespaced: true,
        short: &["pvc"], categories: &[], sub: &["status"], storage: "persistentvolumeclaims", strategy: &strategy::storage::PersistentVolumeClaims, schema: k8s_openapi::api::core::v1::PersistentVolumeClaim),
    resource!("", "v1", "resourcequotas", "resourcequota", "ResourceQuota", namespaced: true,
        short: &["quota"], categories: &[], sub: &["status"], storage: "resourcequotas", strategy: &strategy::policy::ResourceQuotas, schema: k8s_openapi::api::core::v1::ResourceQuota),
    resource!("", "v1", "limitranges", "limitrange", "LimitRange", namespaced: true,
        short: &["limits"], categories: &[], sub: &[], storage: "limitranges", strategy: &strategy::policy::LimitRanges, schema: k8s_openapi::api::core::v1::LimitRange),
    // The aggregator's own group comes first after the core group in
    // upstream's discovery.
    resource!("apiregistration.k8s.io", "v1", "apiservices", "apiservice", "APIService", namespaced: false,
        short: &[], categories: &["api-extensions"], computed: crate::apiservices::all, strategy: &strategy::apiregistration::APIServices,
        schema: k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService),
    resource!("apps", "v1", "deployments", "deployment", "Deployment", namespaced: true,
        short: &["deploy"], categories: &["all"], sub: &["status", "scale"], storage: "deployments", strategy: &strategy::apps::Deployments, schema: k8s_openapi::api::apps::v1::Deployment),
    resource!("apps", "v1", "replicasets", "replicaset", "ReplicaSet", namespaced: true,
        short: &["rs"], categories: &["all"], sub: &["status", "scale"], storage: "replicasets", strategy: &strategy::apps::ReplicaSets, schema: k8s_openapi::api::apps::v1::ReplicaSet),
    resource!("apps", "v1", "daemonsets", "daemonset", "DaemonSet", namespaced: true,
        short: &["ds"], categories: &["all"], sub: &["status"], storage: "daemonsets", strategy: &strategy::apps::DaemonSets, schema: k8s_openapi::api::apps::v1::DaemonSet),
    resource!("apps", "v1", "statefulsets", "statefulset", "StatefulSet", namespaced: true,
        short: &["sts"], categories: &["all"], sub: &["status", "scale"], storage: "statefulsets", strategy: &strategy::apps::StatefulSets, schema: k8s_openapi::api::apps::v1::StatefulSet),
    resource!("apps", "v1", "controllerrevisions", "controllerrevision", "ControllerRevision", namespaced: true,
        short: &[], categories: &[], sub: &[], storage: "controllerrevisions", strategy: &strategy::apps::ControllerRevisions, schema: k8s_openapi::api::apps::v1::ControllerRevision),
    resource!("autoscaling", "v2", "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", namespaced: true,
        short: &["hpa"], categories: &["all"], sub: &["status"], storage: "horizontalpodautoscalers", strategy: &strategy::autoscaling::HorizontalPodAutoscalers,
        schema: k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler),
    resource!("autoscaling", "v1", "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", namespaced: true,
        short: &["hpa"], categories: &["all"], sub: &["status"], converts: &crate::conversion::autoscaling::V1_HORIZONTAL_POD_AUTOSCALERS,
        strategy: &strategy::autoscaling::HorizontalPodAutoscalers, schema: k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler),
    resource!("batch", "v1", "jobs", "job", "Job", namespaced: true,
        short: &[], categories: &["all"], sub: &["status"], storage: "jobs", strategy: &strategy::batch::Jobs, schema: k8s_openapi::api::batch::v1::Job),
    resource!("batch", "v1", "cronjobs", "cronjob", "CronJob", namespaced: true,
        short: &["cj"], categories: &["all"], sub: &["status"], storage: "cronjobs", strategy: &strategy::batch::CronJobs, schema: k8s_openapi::api::batch::v1::CronJob),
    resource!("networking.k8s.io", "v1", "ingresses", "ingress", "Ingress", namespaced: true,
        short: &["ing"], categories: &[], sub: &["status"], storage: "ingress", strategy: &strategy::networking::Ingresses, schema: k8s_openapi::api::networking::v1::Ingress),
    resource!("networking.k8s.io", "v1", "ingressclasses", "ingressclass", "IngressClass", namespaced: false,
        short: &[], categories: &[], sub: &[], storage: "ingressclasses", strategy: &strategy::networking::IngressClasses, schema: k8s_openapi::api::networking::v1::IngressClass),
    resource!("networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy", namespaced: true,
        short: &["netpol"], categories: &[], sub: &[], storage: "networkpolicies", strategy: &strategy::networking::NetworkPolicies, schema: k8s_openapi::api::networking::v1::NetworkPolicy),
    resource!("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", namespaced: true,
        short: &["pdb"], categories: &[], sub: &["status"], storage: "poddisruptionbudgets", strategy: &strategy::policy::PodDisruptionBudgets, schema: k8s_openapi::api::policy::v1::PodDisruptionBudget),
    resource!("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", namespaced: true,
        short: &[], categories: &[], sub: &[], storage: "roles", strategy: &strategy::rbac::Roles { cluster: false }, schema: k8s_openapi::api::rbac::v1::Role),
    resource!("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding", namespaced: true,
        short: &[], categories: &[], sub: &[], storage: "rolebindings", strategy: &strategy::rbac::Bindings { cluster: false }, schema: k8s_openapi::api::rbac::v1::RoleBinding),
    resource!("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", namespaced: false,
        short: &[], categories: &[], sub: &[], storage: "clusterroles", strategy: &strategy::rbac::Roles { cluster: true }, schema: k8s_openapi::api::rbac::v1::ClusterRole),
    resource!("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", namespaced: false,
        short: &[], categories: &[], sub: &[], storage: "clusterrolebindings", strategy: &strategy::rbac::Bindings { cluster: true }, schema: k8s_openapi::api::rbac::v1::ClusterRoleBinding),
    resource!("storage.k8s.io", "v1", "storageclasses", "storageclass", "StorageClass", namespaced: false,
        short: &["sc"], categories: &[], sub: &[], storage: "storageclasses", strategy: &strategy::storage::StorageClasses, schema: k8s_openapi::api::storage::v1::StorageClass),
    resource!("coordination.k8s.io", "v1", "leases", "lease", "Lease", namespaced: true,
        short: &[], categories: &[], sub: &[], storage: "leases", strategy: &strategy::other::Leases, schema: k8s_openapi::api::coordination::v1::Lease),
    resource!("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", namespaced: true,
        short: &[], categories: &[], sub: &[], storage: "endpointslices", strategy: &strategy::other::EndpointSlices, schema: k8s_openapi::api::discovery::v1::EndpointSlice),
];

/// The groups served under /apis, in discovery order.
pub fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !groups.contains(&r.group) {
            groups.push(r.group);
        }
    }
    groups
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn in_group_version<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES.iter().filter(move |r| r.group == group && r.version == version)
}

/// The versions served of a group, the preferred (the stored, listed
/// first in the table) first.
pub fn versions(group: &str) -> Vec<&'static str> {
    let mut versions: Vec<&'static str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group) {
        if !versions.contains(&r.version) {
            versions.push(r.version);
        }
    }
    versions
}

/// The version clients should use of a group: its first in the table.
pub fn preferred_version(group: &str) -> &'static str {
    versions(group).first().copied().unwrap_or("v1")
}

pub fn namespaces() -> &'static Resource {
    find("", "v1", "namespaces").expect("namespaces are in the table")
}
