//! kubelab's harness: topologies, images and labs on Docker.
//!
//! - [`topology`]: the topology files, parsed and validated.
//! - [`images`]: the base and component images, built without a registry;
//!   [`pod_images`]: what the `FROM scratch` images pods run are made of.
//! - [`plan`]: a topology turned into containers, stages and health gates.
//! - [`addons`]: what `lab up` applies through the API (cluster DNS).
//! - [`lab`]: labs brought up, reconciled, inspected and taken down.
//! - [`load`]: `lab load image`, local images into every node's store.
//! - [`docker`]: the provider; the only module that speaks to Docker.
//! - [`pki`]: a lab's CA, certificates and service-account keys on the host.
//! - [`kubeconfig`]: a lab's kubeconfig, merged into the user's.
//! - [`state`], [`files`]: where host-side state lives; files written whole.

pub mod addons;
pub mod cancel;
pub mod components;
pub mod docker;
pub mod files;
pub mod images;
pub mod kubeconfig;
pub mod lab;
pub mod load;
pub mod pki;
pub mod plan;
pub mod pod_images;
pub mod progress;
pub mod repo;
pub mod scenario;
pub mod state;
pub mod topology;
pub mod wait;
