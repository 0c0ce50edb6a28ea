//! kubelab's container runtime library, used by the kubelet: the node's image store.
pub mod images;
