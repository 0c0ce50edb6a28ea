//! Tests on labs: topologies brought up on the real Docker engine, in one
//! binary. One module per subject; a lab is taken down when its test ends,
//! also when it fails.

mod etcd_cluster;
mod kubelet_pods;
mod lab_ha;
mod lab_kubectl;
mod scenarios;
mod services;
