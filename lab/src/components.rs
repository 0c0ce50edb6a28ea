//! The component catalogue: which images kubelab builds and from what.
//! Adding a component is one row here, a folder `components/<name>/` with its
//! Dockerfile (and crate, when it is our code), and its place in the plan.
//! Pod images (what pods run on a node, from the node's own image store) are
//! rows of [`POD_IMAGES`].

/// One image kubelab builds `FROM` the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    /// Image and folder name: `components/<name>/`, image `kubelab/<name>`.
    pub name: &'static str,
    /// Workspace release binaries put into the build context by name (the
    /// Dockerfile copies each, e.g. to `/usr/local/bin/<binary>`); empty for
    /// images of Debian's programs alone (etcd).
    pub binaries: &'static [&'static str],
    /// Other files of `components/<name>/` put into the build context under
    /// the same name (an entrypoint script).
    pub files: &'static [&'static str],
    /// Pod images (names in [`POD_IMAGES`]) put into the build context as
    /// `images/<name>.tar`, `docker save` archives the node imports.
    pub pod_images: &'static [&'static str],
}

impl Component {
    const fn of(name: &'static str, binaries: &'static [&'static str]) -> Component {
        Component { name, binaries, files: &[], pod_images: &[] }
    }
}

pub const COMPONENTS: &[Component] = &[
    Component::of("etcd", &[]),
    Component::of("apiserver", &["apiserver"]),
    Component::of("loadbalancer", &[]),
    Component::of("controller-manager", &["controller-manager"]),
    Component::of("scheduler", &["scheduler"]),
    Component::of("kube-proxy", &["kube-proxy"]),
    Component { name: "node", binaries: &["kubelet"], files: &["node-entrypoint"], pod_images: &["labhost", "busybox", "dns"] },
];

/// One image for pods, built `FROM scratch`: a static busybox built from
/// source (`scripts/build-busybox.sh`) with its applet links, plus workspace
/// binaries and the shared libraries they need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodImage {
    /// Folder `components/<name>/` (its Dockerfile); host image `kubelab/<name>:<hash>`.
    pub name: &'static str,
    /// The repository pods name it by on a node (tagged `latest` and `<hash>` there).
    pub repository: &'static str,
    /// Workspace release binaries put into the build context by name.
    pub binaries: &'static [&'static str],
}

pub const POD_IMAGES: &[PodImage] = &[
    PodImage { name: "labhost", repository: "kubelab/labhost", binaries: &["labhost"] },
    PodImage { name: "busybox", repository: "busybox", binaries: &[] },
    PodImage { name: "dns", repository: "kubelab/dns", binaries: &["cluster-dns"] },
];

/// Every workspace binary an image needs.
pub fn binaries() -> Vec<&'static str> {
    let mut all: Vec<&str> = COMPONENTS.iter().flat_map(|c| c.binaries.iter()).chain(POD_IMAGES.iter().flat_map(|p| p.binaries.iter())).copied().collect();
    all.sort();
    all.dedup();
    all
}

pub fn pod_image(name: &str) -> &'static PodImage {
    POD_IMAGES.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("pod image {name} is in the catalogue"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pod_image_a_component_carries_is_in_the_catalogue() {
        for component in COMPONENTS {
            for name in component.pod_images {
                assert!(POD_IMAGES.iter().any(|p| p.name == *name), "{} carries unknown pod image {name}", component.name);
            }
        }
        let mut names: Vec<&str> = COMPONENTS.iter().map(|c| c.name).chain(POD_IMAGES.iter().map(|p| p.name)).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "image names are unique across both catalogues");
    }
}
