//! The node's image store. There is no registry: images arrive as
//! `docker save` archives (the node image's built-in ones, and `lab load
//! image`), are unpacked once per layer and looked up by reference.
//!
//! On disk, under the store's root:
//! - `layers/<hex>/` — a layer unpacked for overlayfs, named by its diff id
//!   (the digest of its uncompressed tar), shared by every image using it;
//! - `images/<hex>.json` — an image: its names, layer diff ids and config,
//!   named by its id (the digest of its config blob);
//! - `archives.json` — which archive files `import_dir` has imported;
//! - `tmp/`, `layers/.tmp-*` — scratch; swept when the store is opened;
//! - `lock` — held while importing, so concurrent imports never interleave.

mod archive;
mod layer;
mod reference;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use reference::{normalize, Reference};

/// The image store rooted at a directory (on a node, `/var/lib/kubelab/images`).
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `sha256:<hex>` of the image's config.
    pub id: String,
    /// Normalised references, e.g. `docker.io/library/busybox:latest`.
    pub names: Vec<String>,
    /// Unpacked layer directories, lowest layer first (overlayfs lists lower dirs highest first).
    pub layers: Vec<PathBuf>,
    pub config: ImageConfig,
}

/// What an image says about running it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value`.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("not a readable docker save archive: {0}")]
    BadArchive(String),
    #[error("layer {layer} is not a readable tar archive: {reason}")]
    BadLayer { layer: String, reason: String },
    #[error("layer {layer} has the entry {path}, which would be written outside the layer")]
    UnsafePath { layer: String, path: String },
    #[error("{what} digest mismatch: expected {expected}, the content hashes to {actual}")]
    DigestMismatch { what: String, expected: String, actual: String },
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("the image store's record {path} is damaged: {reason}")]
    BadRecord { path: PathBuf, reason: String },
    #[error("image ID prefix {prefix:?} is ambiguous: {ids:?}")]
    AmbiguousId { prefix: String, ids: Vec<String> },
}

pub(crate) fn io_error(path: &Path, source: io::Error) -> ImageError {
    ImageError::Io { path: path.to_path_buf(), source }
}

/// An image's record under `images/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: String,
    names: Vec<String>,
    /// Manifest digests the image was imported under (OCI layouts carry them), for `name@digest`.
    #[serde(default)]
    manifest_digests: Vec<String>,
    /// Diff ids, lowest layer first.
    layers: Vec<String>,
    config: ImageConfig,
}

/// What `import_dir` remembers of an archive file, to skip it next time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ArchiveStamp {
    size: u64,
    modified_ns: i128,
    ids: Vec<String>,
}

/// The shortest ID prefix `resolve` takes, as Docker's CLI shows IDs.
const MIN_ID_PREFIX: usize = 12;

impl ImageStore {
    /// Opens (creating) the store at `root`, sweeping what interrupted imports left.
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        let store = ImageStore { root: root.to_path_buf() };
        for dir in [store.layers_dir(), store.images_dir(), store.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        }
        let _lock = store.lock()?;
        store.sweep()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Imports a `docker save` archive (legacy or OCI layout). Layers already
    /// in the store are not unpacked again. An image's names move to it
    /// from any image that had them (as `docker load` retags).
    pub fn import(&self, archive: impl Read) -> Result<Vec<Image>, ImageError> {
        let _lock = self.lock()?;
        self.import_locked(archive)
    }

    fn import_locked(&self, archive: impl Read) -> Result<Vec<Image>, ImageError> {
        let spool_dir = self.tmp_dir().join(format!("import-{}-{}", std::process::id(), unique()));
        fs::create_dir(&spool_dir).map_err(|e| io_error(&spool_dir, e))?;
        let spool = archive::Spool::read(spool_dir, archive)?;
        let archived = spool.images()?;
        let mut imported = Vec::new();
        for image in archived {
            let mut layers = Vec::new();
            for (diff_id, file) in &image.layers {
                let tarball = fs::File::open(file).map_err(|e| io_error(file, e))?;
                layer::unpack(&self.layers_dir(), diff_id, tarball)?;
                layers.push(diff_id.clone());
            }
            let mut names = Vec::new();
            for name in &image.names {
                let normalised = normalize(name)?;
                if !names.contains(&normalised) {
                    names.push(normalised);
                }
            }
            let mut record = match self.record(&image.id)? {
                Some(existing) => existing,
                None => Record { id: image.id.clone(), names: vec![], manifest_digests: vec![], layers: layers.clone(), config: image.config.clone() },
            };
            for name in &names {
                if !record.names.contains(name) {
                    record.names.push(name.clone());
                }
            }
            for digest in image.manifest_digests {
                if !record.manifest_digests.contains(&digest) {
                    record.manifest_digests.push(digest);
                }
            }
            self.untag_others(&record.id, &names)?;
            self.write_record(&record)?;
            imported.push(self.image(record));
        }
        Ok(imported)
    }

    /// Imports every `*.tar` in `dir` (the node's built-in images), skipping
    /// archives imported before whose size and modification time are unchanged.
    pub fn import_dir(&self, dir: &Path) -> Result<Vec<Image>, ImageError> {
        let _lock = self.lock()?;
        let mut archives: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|e| io_error(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "tar") && p.is_file())
            .collect();
        archives.sort();
        let mut stamps = self.stamps()?;
        let mut images = Vec::new();
        for path in archives {
            let meta = fs::metadata(&path).map_err(|e| io_error(&path, e))?;
            let modified_ns = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as i128);
            let key = path.canonicalize().unwrap_or_else(|_| path.clone()).display().to_string();
            if let Some(stamp) = stamps.get(&key) {
                if stamp.size == meta.len() && stamp.modified_ns == modified_ns {
                    let found: Vec<Option<Record>> = stamp.ids.iter().map(|id| self.record(id)).collect::<Result<_, _>>()?;
                    let known: Option<Vec<Record>> = found.into_iter().collect();
                    if let Some(records) = known {
                        images.extend(records.into_iter().map(|r| self.image(r)));
                        continue;
                    }
                }
            }
            let file = fs::File::open(&path).map_err(|e| io_error(&path, e))?;
            let imported = self.import_locked(io::BufReader::new(file))?;
            stamps.insert(key, ArchiveStamp { size: meta.len(), modified_ns, ids: imported.iter().map(|i| i.id.clone()).collect() });
            images.extend(imported);
        }
        write_json(&self.root.join("archives.json"), &stamps)?;
        Ok(images)
    }

    /// Finds an image by reference (normalised as Docker does: `busybox`,
    /// `kubelab/labhost:v1`, `docker.io/library/busybox:latest`,
    /// `name@sha256:…`) or by ID (`sha256:<hex>`, or a prefix of at least 12 hex digits).
    pub fn resolve(&self, reference: &str) -> Result<Option<Image>, ImageError> {
        let records = self.records()?;
        if let Some(hex) = reference.strip_prefix("sha256:") {
            if let Some(found) = self.by_id_prefix(&records, hex)? {
                return Ok(Some(found));
            }
            return Ok(None);
        }
        match Reference::parse(reference) {
            Ok(parsed) => {
                if let Some(found) = find_by_reference(&records, &parsed) {
                    return Ok(Some(self.image(found.clone())));
                }
            }
            Err(e) if !is_hex(reference) => return Err(e),
            Err(_) => {}
        }
        if is_hex(reference) && reference.len() >= MIN_ID_PREFIX {
            return self.by_id_prefix(&records, reference);
        }
        Ok(None)
    }

    /// Every image, by ID.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        Ok(self.records()?.into_iter().map(|r| self.image(r)).collect())
    }

    fn by_id_prefix(&self, records: &[Record], hex: &str) -> Result<Option<Image>, ImageError> {
        if !is_hex(hex) || hex.len() < MIN_ID_PREFIX {
            return Err(ImageError::InvalidReference {
                reference: format!("sha256:{hex}"),
                reason: format!("an image ID has at least {MIN_ID_PREFIX} hex digits"),
            });
        }
        let matches: Vec<&Record> = records.iter().filter(|r| r.id.trim_start_matches("sha256:").starts_with(hex)).collect();
        match matches.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(self.image((*one).clone()))),
            many => Err(ImageError::AmbiguousId { prefix: hex.to_string(), ids: many.iter().map(|r| r.id.clone()).collect() }),
        }
    }

    fn image(&self, record: Record) -> Image {
        let layers = record.layers.iter().map(|d| self.layers_dir().join(d.trim_start_matches("sha256:"))).collect();
        Image { id: record.id, names: record.names, layers, config: record.config }
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn record_path(&self, id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.images_dir().join(format!("{}.json", layer::digest_hex(id)?)))
    }

    fn record(&self, id: &str) -> Result<Option<Record>, ImageError> {
        let path = self.record_path(id)?;
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| ImageError::BadRecord { path, reason: e.to_string() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    fn records(&self) -> Result<Vec<Record>, ImageError> {
        let dir = self.images_dir();
        let mut records = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io_error(&dir, e))? {
            let path = entry.map_err(|e| io_error(&dir, e))?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let bytes = fs::read(&path).map_err(|e| io_error(&path, e))?;
            let record: Record = serde_json::from_slice(&bytes).map_err(|e| ImageError::BadRecord { path: path.clone(), reason: e.to_string() })?;
            records.push(record);
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(records)
    }

    fn write_record(&self, record: &Record) -> Result<(), ImageError> {
        write_json(&self.record_path(&record.id)?, record)
    }

    /// Takes `names` off every image but `keep`.
    fn untag_others(&self, keep: &str, names: &[String]) -> Result<(), ImageError> {
        for mut other in self.records()? {
            if other.id == keep || !other.names.iter().any(|n| names.contains(n)) {
                continue;
            }
            other.names.retain(|n| !names.contains(n));
            self.write_record(&other)?;
        }
        Ok(())
    }

    fn stamps(&self) -> Result<BTreeMap<String, ArchiveStamp>, ImageError> {
        let path = self.root.join("archives.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ImageError::BadRecord { path, reason: e.to_string() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    /// Removes scratch left by imports that were killed (under the lock, so no import is running).
    fn sweep(&self) -> Result<(), ImageError> {
        let tmp = self.tmp_dir();
        for entry in fs::read_dir(&tmp).map_err(|e| io_error(&tmp, e))?.flatten() {
            layer::remove_tree(&entry.path());
        }
        let images = self.images_dir();
        for entry in fs::read_dir(&images).map_err(|e| io_error(&images, e))?.flatten() {
            if entry.file_name().to_string_lossy().contains(".tmp-") {
                let _ = fs::remove_file(entry.path());
            }
        }
        let layers = self.layers_dir();
        for entry in fs::read_dir(&layers).map_err(|e| io_error(&layers, e))?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(layer::TEMP_PREFIX) {
                layer::remove_tree(&entry.path());
            }
        }
        Ok(())
    }

    /// An exclusive lock on the store, released when dropped.
    fn lock(&self) -> Result<StoreLock, ImageError> {
        let path = self.root.join("lock");
        let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| io_error(&path, e))?;
        // SAFETY: flock on a descriptor this function owns for the lock's lifetime.
        if unsafe { nix::libc::flock(file.as_raw_fd(), nix::libc::LOCK_EX) } != 0 {
            return Err(io_error(&path, io::Error::last_os_error()));
        }
        Ok(StoreLock { _file: file })
    }
}

/// Held while the store changes; the kernel drops the flock with the file.
struct StoreLock {
    _file: fs::File,
}

fn find_by_reference<'a>(records: &'a [Record], wanted: &Reference) -> Option<&'a Record> {
    match &wanted.digest {
        // name@digest: an image of that repository whose config (ID) or manifest has the digest.
        Some(digest) => records.iter().find(|r| {
            let pinned = r.id == *digest || r.manifest_digests.contains(digest);
            pinned && r.names.iter().any(|n| Reference::parse(n).is_ok_and(|n| n.repository == wanted.repository))
        }),
        None => {
            let normalised = wanted.normalized();
            records.iter().find(|r| r.names.contains(&normalised))
        }
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Writes a JSON file whole: a temporary file beside it, then rename.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ImageError> {
    let temp = path.with_extension(format!("json.tmp-{}-{}", std::process::id(), unique()));
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| io_error(path, io::Error::other(e)))?;
    let written = (|| {
        use std::io::Write;
        let mut file = fs::File::create(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_error(path, e));
    }
    Ok(())
}
