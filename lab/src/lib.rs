//! kubelab's harness: topologies, images and labs on Docker.
//!
//! - [`topology`]: the topology files, parsed and validated.
//! - [`images`]: the base and component images, built without a registry.
//! - [`plan`]: a topology turned into containers, stages and health gates.
//! - [`lab`]: labs brought up, reconciled, inspected and taken down.
//! - [`docker`]: the provider; the only module that speaks to Docker.

pub mod cancel;
pub mod components;
pub mod docker;
pub mod images;
pub mod lab;
pub mod plan;
pub mod progress;
pub mod repo;
pub mod topology;
