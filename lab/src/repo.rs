//! Where the kubelab source tree is: topologies, component folders and the
//! cargo target directory all hang off it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

#[derive(Debug, Clone)]
pub struct Repo {
    pub root: PathBuf,
}

impl Repo {
    /// `KUBELAB_ROOT`, else the nearest folder above the working directory or
    /// above the running binary that holds `components/` and `topologies/`.
    pub fn locate() -> Result<Repo> {
        if let Some(root) = std::env::var_os("KUBELAB_ROOT") {
            let root = PathBuf::from(root);
            if is_root(&root) {
                return Ok(Repo { root });
            }
            bail!("KUBELAB_ROOT={} is not a kubelab source tree (no components/ and topologies/)", root.display());
        }
        let starts = [std::env::current_dir().ok(), std::env::current_exe().ok()];
        for start in starts.into_iter().flatten() {
            if let Some(root) = start.ancestors().find(|p| is_root(p)) {
                return Ok(Repo { root: root.to_path_buf() });
            }
        }
        bail!("cannot find the kubelab source tree: run lab inside it, or set KUBELAB_ROOT")
    }

    pub fn topologies(&self) -> PathBuf {
        self.root.join("topologies")
    }

    pub fn component_dir(&self, name: &str) -> PathBuf {
        self.root.join("components").join(name)
    }

    /// Where cargo puts release binaries (honours CARGO_TARGET_DIR).
    pub fn release_dir(&self) -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| self.root.join("target"));
        target.join("release")
    }

    /// Scratch space for image builds, inside the target directory.
    pub fn scratch(&self) -> PathBuf {
        self.release_dir().join("kubelab-scratch")
    }
}

fn is_root(p: &Path) -> bool {
    p.join("components").is_dir() && p.join("topologies").is_dir() && p.join("Cargo.toml").is_file()
}
