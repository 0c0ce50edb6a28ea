//! `lab load image`: images from the local Docker engine into every node's
//! image store, as `kind load docker-image` does. One `docker save` of all
//! of them, copied into each node and imported there by the node's kubelet
//! (`kubelet images import <archive>`, which calls the runtime's
//! `ImageStore::import`), then removed.

use anyhow::{bail, Context, Result};

use crate::docker::{Engine, Found, ROLE_LABEL};
use crate::progress::Progress;
use crate::repo::Repo;

/// The kubelet binary in the node image.
pub const KUBELET: &str = "/usr/local/bin/kubelet";
/// Where an archive waits in a node until its kubelet has imported it: on
/// the node's /var volume, beside the store, not in its tmpfs.
pub const IMPORT_DIR: &str = "/var/lib/kubelab/imports";

/// What `lab load image` runs in a node to import an archive there.
pub fn import_command(archive: &str) -> Vec<String> {
    vec![KUBELET.to_string(), "images".to_string(), "import".to_string(), archive.to_string()]
}

/// The running node containers of a lab, by name.
pub fn nodes(containers: &[Found]) -> Vec<String> {
    let mut nodes: Vec<String> =
        containers.iter().filter(|c| c.running && c.labels.get(ROLE_LABEL).map(String::as_str) == Some("node")).map(|c| c.name.clone()).collect();
    nodes.sort();
    nodes
}

/// Loads `images` (as the local engine names them) into every node of `lab`.
pub async fn load_images(engine: &Engine, repo: &Repo, lab: &str, images: &[String], progress: &Progress) -> Result<Vec<String>> {
    if images.is_empty() {
        bail!("name at least one image to load");
    }
    let nodes = nodes(&engine.containers(Some(lab)).await?);
    if nodes.is_empty() {
        bail!("lab {lab:?} has no running node (see: lab status {lab})");
    }
    for image in images {
        if !engine.image_exists(image).await? {
            bail!("image {image:?} is not in the local Docker engine: docker build or docker pull it first");
        }
    }
    std::fs::create_dir_all(repo.scratch()).with_context(|| format!("creating {}", repo.scratch().display()))?;
    let archive = tempfile::Builder::new().prefix("load-").suffix(".tar").tempfile_in(repo.scratch()).context("creating the archive's temporary file")?;
    let task = progress.task("docker save");
    task.update(&images.join(" "));
    let size = engine.save_images_to(images, archive.path()).await.inspect_err(|_| task.failed("failed"))?;
    task.done(&format!("{} MB", size / 1_000_000));

    let name = archive.path().file_name().and_then(|n| n.to_str()).context("the archive's file name")?.to_string();
    let in_node = format!("{IMPORT_DIR}/{name}");
    for node in &nodes {
        let task = progress.task(&format!("load {node}"));
        task.update("copying the archive");
        let result = import_into(engine, node, archive.path(), &in_node).await;
        match &result {
            Ok(()) => task.done(&format!("{} imported", images.len())),
            Err(_) => task.failed("failed"),
        }
        result?;
    }
    Ok(nodes)
}

async fn import_into(engine: &Engine, node: &str, archive: &std::path::Path, in_node: &str) -> Result<()> {
    engine.upload_file(node, in_node, archive).await?;
    let (code, output) = engine.exec(node, &import_command(in_node)).await.with_context(|| format!("running {KUBELET} images import in {node}"))?;
    let (removed, removal_output) = engine.exec(node, &["rm".to_string(), "-f".to_string(), in_node.to_string()]).await?;
    if code != 0 {
        bail!("{} in {node} exited with {code}:\n{}", import_command(in_node).join(" "), output.trim_end());
    }
    if removed != 0 {
        bail!("removing {in_node} from {node} failed ({removed}): {}", removal_output.trim_end());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn found(name: &str, role: &str, running: bool) -> Found {
        Found {
            id: String::new(),
            name: name.into(),
            running,
            state: if running { "running" } else { "exited" }.into(),
            labels: HashMap::from([(ROLE_LABEL.to_string(), role.to_string())]),
            address: None,
        }
    }

    #[test]
    fn loads_into_running_nodes_only() {
        let containers = [
            found("kubelab-worker-1", "node", true),
            found("kubelab-apiserver", "apiserver", true),
            found("kubelab-worker-0", "node", true),
            found("kubelab-worker-2", "node", false),
        ];
        assert_eq!(nodes(&containers), vec!["kubelab-worker-0", "kubelab-worker-1"]);
    }

    #[test]
    fn the_kubelet_imports_the_archive() {
        assert_eq!(import_command("/var/lib/kubelab/imports/load-x.tar"), vec![KUBELET, "images", "import", "/var/lib/kubelab/imports/load-x.tar"]);
    }
}
