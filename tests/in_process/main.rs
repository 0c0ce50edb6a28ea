//! Tests without Docker, in one binary: the apiserver over a real etcd on
//! loopback, the controllers and the scheduler against it in-process, the
//! real kubectl and Python client against it, and topology plans. One
//! module per subject; each test starts what it needs and stops it.

mod api;
mod api_breadth;
mod api_hardening;
mod api_limits;
mod autoscaling;
mod controller_restart;
mod daemonsets;
mod deployments;
mod disruption;
mod garbage_collector;
mod jobs;
mod kubectl;
mod kubectl_create;
mod kubelet_proxy;
mod leader_election;
mod node_ipam;
mod node_lifecycle;
mod python_client;
mod replication_controllers;
mod request_fuzz;
mod scheduler;
mod service_endpoints;
mod service_lb;
mod serviceaccount;
mod statefulsets;
mod topology;
mod volumes;
mod watch_limits;
mod zero_values;
