//! What every kubelab component but the apiserver shares, as upstream's
//! `k8s.io/component-base` and `k8s.io/client-go` give its components: the
//! API client built from `--kubeconfig`/`--master` (or the in-cluster
//! configuration), the secure port serving `/healthz` with a self-signed
//! certificate, events, and logging. No component depends on another component's
//! crate; what two of them need lives here.

pub mod client;
pub mod cron;
pub mod events;
pub mod flags;
pub mod label_selector;
pub mod leader_election;
pub mod logging;
pub mod quantity;
pub mod serving;
pub mod taints;
pub mod tls;
pub mod watch;
