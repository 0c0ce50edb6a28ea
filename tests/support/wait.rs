//! The one way tests wait: the lab library's helpers (scenarios use them too).

pub use kubelab::wait::*;
