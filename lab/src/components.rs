//! The component catalogue: which images kubelab builds and from what.
//! Adding a component is one row here, a folder `components/<name>/` with its
//! Dockerfile (and crate, when it is our code), and its place in the plan.

/// One image kubelab builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    /// Image and folder name: `components/<name>/`, image `kubelab/<name>`.
    pub name: &'static str,
    /// The cargo package whose release binary of the same name goes into
    /// the image as `/usr/local/bin/<binary>`; None for images of Debian's
    /// programs alone (etcd).
    pub binary: Option<&'static str>,
    /// Further files of `components/<name>/` the Dockerfile copies.
    pub files: &'static [&'static str],
}

pub const COMPONENTS: &[Component] = &[
    Component { name: "etcd", binary: None, files: &[] },
    Component { name: "apiserver", binary: Some("apiserver"), files: &[] },
    Component { name: "loadbalancer", binary: None, files: &[] },
    Component { name: "controller-manager", binary: Some("controller-manager"), files: &[] },
    Component { name: "scheduler", binary: Some("scheduler"), files: &[] },
    Component { name: "node", binary: Some("kubelet"), files: &["node-entrypoint"] },
];
