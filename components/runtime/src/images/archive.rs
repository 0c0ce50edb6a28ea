//! `docker save` archives: the legacy layout Docker 20.10 writes
//! (`manifest.json`, `<id>/layer.tar`, `<config>.json`) and the OCI image
//! layout (`index.json`, `blobs/sha256/…`). An archive is a stream whose
//! index may come last, so its files are first spooled into a scratch
//! directory of the store, then read in the index's order.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{io_error, ImageConfig, ImageError};

/// One image described by an archive, its files still in the spool.
#[derive(Debug)]
pub(crate) struct ArchivedImage {
    /// `sha256:<hex>` of the config blob.
    pub id: String,
    /// References as the archive gives them (not yet normalised).
    pub names: Vec<String>,
    /// Digests of the manifests that name this image (OCI layout only).
    pub manifest_digests: Vec<String>,
    pub config: ImageConfig,
    /// (diff id, file in the spool), lowest layer first.
    pub layers: Vec<(String, PathBuf)>,
}

/// The files of an archive, unpacked under a scratch directory.
pub(crate) struct Spool {
    dir: PathBuf,
    /// Archive path → link target, for symlinked files (legacy archives link repeated layers).
    links: HashMap<String, String>,
}

impl Spool {
    pub fn read(dir: PathBuf, archive: impl Read) -> Result<Spool, ImageError> {
        let bad = |e: io::Error| ImageError::BadArchive(e.to_string());
        let mut links = HashMap::new();
        let mut tar = tar::Archive::new(archive);
        for entry in tar.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let path = entry.path().map_err(bad)?;
            let Some(name) = clean(&path) else {
                return Err(ImageError::BadArchive(format!("entry {} leaves the archive", path.display())));
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let target = dir.join(&name);
                    if let Some(parent) = target.parent() {
                        fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
                    }
                    let mut file = fs::File::create(&target).map_err(|e| io_error(&target, e))?;
                    io::copy(&mut entry, &mut file).map_err(|e| io_error(&target, e))?;
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry.link_name().map_err(bad)?.ok_or_else(|| ImageError::BadArchive(format!("link {name} has no target")))?;
                    let target = target.to_string_lossy().into_owned();
                    // A symlink is relative to its folder; a hard link names a path from the top.
                    let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                        let parent = Path::new(&name).parent().unwrap_or(Path::new(""));
                        clean(&parent.join(&target))
                    } else {
                        clean(Path::new(&target))
                    };
                    let resolved = resolved.ok_or_else(|| ImageError::BadArchive(format!("link {name} → {target} leaves the archive")))?;
                    links.insert(name, resolved);
                }
                _ => {}
            }
        }
        Ok(Spool { dir, links })
    }

    /// The spooled file for an archive path, through links.
    fn file(&self, name: &str) -> Result<PathBuf, ImageError> {
        let mut name = clean(Path::new(name)).ok_or_else(|| ImageError::BadArchive(format!("{name} leaves the archive")))?;
        for _ in 0..16 {
            match self.links.get(&name) {
                Some(next) => name = next.clone(),
                None => {
                    let path = self.dir.join(&name);
                    return if path.is_file() { Ok(path) } else { Err(ImageError::BadArchive(format!("the archive has no file {name}"))) };
                }
            }
        }
        Err(ImageError::BadArchive(format!("too many links to follow from {name}")))
    }

    fn has(&self, name: &str) -> bool {
        self.file(name).is_ok()
    }

    fn bytes(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.file(name)?;
        fs::read(&path).map_err(|e| io_error(&path, e))
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<T, ImageError> {
        serde_json::from_slice(&self.bytes(name)?).map_err(|e| ImageError::BadArchive(format!("{name}: {e}")))
    }

    /// The images the archive holds: `manifest.json` when present (it has
    /// Docker's repository tags), else the OCI `index.json`.
    pub fn images(&self) -> Result<Vec<ArchivedImage>, ImageError> {
        if self.has("manifest.json") {
            let entries: Vec<LegacyEntry> = self.json("manifest.json")?;
            entries.into_iter().map(|e| self.image(&e.config, e.repo_tags.unwrap_or_default(), vec![], &e.layers)).collect()
        } else if self.has("index.json") {
            let mut images = Vec::new();
            let index: OciIndex = self.json("index.json")?;
            self.oci_index(&index, None, &mut images)?;
            Ok(images)
        } else {
            Err(ImageError::BadArchive("neither manifest.json nor index.json is in the archive: is it a docker save archive?".into()))
        }
    }

    fn oci_index(&self, index: &OciIndex, outer_name: Option<&str>, images: &mut Vec<ArchivedImage>) -> Result<(), ImageError> {
        for descriptor in &index.manifests {
            let name = descriptor.reference_name().or(outer_name);
            match descriptor.media_type.as_str() {
                OCI_INDEX | DOCKER_LIST => {
                    let nested: OciIndex = self.json(&blob_path(&descriptor.digest)?)?;
                    let for_here: Vec<OciDescriptor> = nested.manifests.into_iter().filter(|d| d.platform.as_ref().is_none_or(Platform::runs_here)).collect();
                    self.oci_index(&OciIndex { manifests: for_here }, name, images)?;
                }
                OCI_MANIFEST | DOCKER_MANIFEST => {
                    let manifest: OciManifest = self.json(&blob_path(&descriptor.digest)?)?;
                    let layers: Vec<String> = manifest.layers.iter().map(|l| blob_path(&l.digest)).collect::<Result<_, _>>()?;
                    let names = name.map(|n| vec![n.to_string()]).unwrap_or_default();
                    let image = self.image(&blob_path(&manifest.config.digest)?, names, vec![descriptor.digest.clone()], &layers)?;
                    match images.iter_mut().find(|i| i.id == image.id) {
                        Some(same) => {
                            same.names.extend(image.names);
                            same.manifest_digests.extend(image.manifest_digests);
                        }
                        None => images.push(image),
                    }
                }
                other => tracing::debug!("skipping index entry {} of media type {other}", descriptor.digest),
            }
        }
        Ok(())
    }

    fn image(&self, config_path: &str, names: Vec<String>, manifest_digests: Vec<String>, layer_paths: &[String]) -> Result<ArchivedImage, ImageError> {
        let bytes = self.bytes(config_path)?;
        let id = format!("sha256:{:x}", Sha256::digest(&bytes));
        let config: ConfigFile = serde_json::from_slice(&bytes).map_err(|e| ImageError::BadArchive(format!("image config {config_path}: {e}")))?;
        let diff_ids = config.rootfs.diff_ids;
        if diff_ids.len() != layer_paths.len() {
            return Err(ImageError::BadArchive(format!(
                "image {id} lists {} layers in its manifest but {} in its config's rootfs.diff_ids",
                layer_paths.len(),
                diff_ids.len()
            )));
        }
        let layers = diff_ids.into_iter().zip(layer_paths).map(|(diff_id, path)| Ok((diff_id, self.file(path)?))).collect::<Result<Vec<_>, ImageError>>()?;
        let c = config.config.unwrap_or_default();
        let config = ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.filter(|d| !d.is_empty()),
            user: c.user.filter(|u| !u.is_empty()),
        };
        Ok(ArchivedImage { id, names, manifest_digests, config, layers })
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        super::layer::remove_tree(&self.dir);
    }
}

/// A relative path inside the archive, without `.`; None when it climbs out.
fn clean(path: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

fn blob_path(digest: &str) -> Result<String, ImageError> {
    let (algorithm, hex) = digest.split_once(':').ok_or_else(|| ImageError::BadArchive(format!("descriptor digest {digest:?} has no algorithm")))?;
    if algorithm.contains('/') || hex.contains('/') {
        return Err(ImageError::BadArchive(format!("descriptor digest {digest:?} is not valid")));
    }
    Ok(format!("blobs/{algorithm}/{hex}"))
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The full reference containerd and Docker put on an OCI index entry.
const IMAGE_NAME_ANNOTATION: &str = "io.containerd.image.name";
/// OCI's own annotation: often only a tag, a full reference when it has a '/' or ':'.
const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

#[derive(Deserialize)]
struct LegacyEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct OciIndex {
    manifests: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
struct OciDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
    platform: Option<Platform>,
}

impl OciDescriptor {
    fn reference_name(&self) -> Option<&str> {
        if let Some(name) = self.annotations.get(IMAGE_NAME_ANNOTATION) {
            return Some(name);
        }
        self.annotations.get(REF_NAME_ANNOTATION).map(String::as_str).filter(|n| n.contains(['/', ':']))
    }
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

impl Platform {
    fn runs_here(&self) -> bool {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        self.os == "linux" && self.architecture == arch
    }
}

#[derive(Deserialize)]
struct OciManifest {
    config: OciBlob,
    layers: Vec<OciBlob>,
}

#[derive(Deserialize)]
struct OciBlob {
    digest: String,
}

#[derive(Deserialize)]
struct ConfigFile {
    config: Option<ContainerConfig>,
    rootfs: RootFs,
}

#[derive(Deserialize, Default)]
struct ContainerConfig {
    #[serde(rename = "Entrypoint")]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd")]
    cmd: Option<Vec<String>>,
    #[serde(rename = "Env")]
    env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir")]
    working_dir: Option<String>,
    #[serde(rename = "User")]
    user: Option<String>,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}
