//! One layer tarball unpacked into a directory that overlayfs can use as a
//! lower dir: ownership, modes, symlinks, hard links, device nodes and
//! xattrs as in the tarball; Docker's whiteouts turned into overlay's
//! (`.wh.NAME` → a 0:0 character device NAME, `.wh..wh..opq` →
//! `trusted.overlay.opaque=y` on its directory). Nothing is written outside
//! the layer's directory, and the layer appears under its final name only
//! once whole and verified (unpacked into a temporary directory, renamed).

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use sha2::{Digest, Sha256};

use super::{io_error, ImageError};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Other `.wh..wh.` names are aufs bookkeeping (hard-link dirs), not content.
const AUFS_META_PREFIX: &str = ".wh..wh.";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const XATTR_PAX_PREFIX: &str = "SCHILY.xattr.";

/// Prefix of temporary layer directories; `<prefix><pid>-<n>-<hex>`.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Unpacks `tarball` (plain or gzip) as layer `diff_id` (`sha256:<hex>` of
/// the uncompressed tar) into `layers/<hex>`, unless it is there already.
/// Returns the layer's directory.
pub(crate) fn unpack(layers: &Path, diff_id: &str, tarball: impl Read) -> Result<PathBuf, ImageError> {
    let hex = digest_hex(diff_id)?;
    let target = layers.join(hex);
    if target.is_dir() {
        return Ok(target);
    }
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = layers.join(format!("{TEMP_PREFIX}{}-{n}-{hex}", std::process::id()));
    fs::create_dir(&temp).map_err(|e| io_error(&temp, e))?;
    let result = unpack_into(&temp, diff_id, tarball).and_then(|()| match fs::rename(&temp, &target) {
        Ok(()) => Ok(()),
        // Another import finished the same layer first; keep theirs.
        Err(_) if target.is_dir() => {
            remove_tree(&temp);
            Ok(())
        }
        Err(e) => Err(io_error(&target, e)),
    });
    if result.is_err() {
        remove_tree(&temp);
    }
    result.map(|()| target)
}

fn unpack_into(dir: &Path, diff_id: &str, tarball: impl Read) -> Result<(), ImageError> {
    let mut buffered = BufReader::new(tarball);
    let magic = buffered.fill_buf().map_err(|e| io_error(dir, e))?;
    let stream: Box<dyn Read> = match magic {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(buffered)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => return Err(ImageError::Unsupported(format!("layer {diff_id} is zstd-compressed, which kubelab does not read"))),
        _ => Box::new(buffered),
    };
    let mut hashing = HashingReader { inner: stream, hasher: Sha256::new() };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_unpack_xattrs(true);
        archive.set_preserve_mtime(true);
        archive.set_overwrite(true);
        let bad = |e: io::Error| ImageError::BadLayer { layer: diff_id.to_string(), reason: e.to_string() };
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            unpack_entry(dir, diff_id, &mut entry)?;
        }
    }
    // The digest covers the whole tar stream, its end-of-archive blocks too.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| ImageError::BadLayer { layer: diff_id.to_string(), reason: e.to_string() })?;
    let actual = format!("sha256:{:x}", hashing.hasher.finalize());
    if actual != diff_id {
        return Err(ImageError::DigestMismatch { what: "layer".into(), expected: diff_id.to_string(), actual });
    }
    Ok(())
}

fn unpack_entry<R: Read>(dir: &Path, diff_id: &str, entry: &mut tar::Entry<R>) -> Result<(), ImageError> {
    let path = entry.path().map_err(|e| ImageError::BadLayer { layer: diff_id.to_string(), reason: e.to_string() })?.into_owned();
    let unsafe_path = || ImageError::UnsafePath { layer: diff_id.to_string(), path: path.display().to_string() };
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return Err(unsafe_path()),
        }
    }
    let Some((name, parents)) = parts.split_last() else {
        return Ok(()); // the layer's root itself
    };
    let name = name.to_str().unwrap_or_default().to_string();
    let kind = entry.header().entry_type();

    if name == OPAQUE_MARKER {
        let directory = inside(dir, parents, diff_id, &path)?;
        return xattr::set(&directory, OPAQUE_XATTR, b"y").map_err(|e| io_error(&directory, e));
    }
    if name.starts_with(AUFS_META_PREFIX) {
        return Ok(());
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        let parent = inside(dir, parents, diff_id, &path)?;
        let target = parent.join(hidden);
        remove_existing(&target)?;
        mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|e| io_error(&target, e.into()))?;
        let (uid, gid) = owner(entry.header(), diff_id)?;
        return lchown(&target, uid, gid);
    }
    if matches!(kind, tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo) {
        return make_node(dir, parents, &name, entry, diff_id, &path);
    }
    // Files, directories, symlinks and hard links: tar's own unpacking, which
    // refuses anything that would land (or link) outside `dir`.
    match entry.unpack_in(dir) {
        Ok(true) => Ok(()),
        Ok(false) => Err(unsafe_path()),
        Err(e) => Err(ImageError::BadLayer { layer: diff_id.to_string(), reason: format!("{}: {e}", path.display()) }),
    }
}

fn make_node<R: Read>(dir: &Path, parents: &[&std::ffi::OsStr], name: &str, entry: &mut tar::Entry<R>, diff_id: &str, path: &Path) -> Result<(), ImageError> {
    let header = entry.header();
    let bad = |reason: String| ImageError::BadLayer { layer: diff_id.to_string(), reason: format!("{}: {reason}", path.display()) };
    let kind = match header.entry_type() {
        tar::EntryType::Char => SFlag::S_IFCHR,
        tar::EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    let mode = header.mode().map_err(|e| bad(e.to_string()))? & 0o7777;
    let major = header.device_major().map_err(|e| bad(e.to_string()))?.unwrap_or(0);
    let minor = header.device_minor().map_err(|e| bad(e.to_string()))?.unwrap_or(0);
    let (uid, gid) = owner(header, diff_id)?;
    let target = inside(dir, parents, diff_id, path)?.join(name);
    remove_existing(&target)?;
    mknod(&target, kind, Mode::from_bits_truncate(mode), makedev(major.into(), minor.into())).map_err(|e| io_error(&target, e.into()))?;
    lchown(&target, uid, gid)?;
    // mknod's mode passed through the umask; set it as the tarball says.
    fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(mode)).map_err(|e| io_error(&target, e))?;
    if let Some(extensions) = entry.pax_extensions().map_err(|e| bad(e.to_string()))? {
        for extension in extensions {
            let extension = extension.map_err(|e| bad(e.to_string()))?;
            let Ok(key) = extension.key() else { continue };
            if let Some(attribute) = key.strip_prefix(XATTR_PAX_PREFIX) {
                xattr::set(&target, attribute, extension.value_bytes()).map_err(|e| io_error(&target, e))?;
            }
        }
    }
    Ok(())
}

/// The directory `dir/parents…`, made where missing, refusing any step that
/// leaves `dir` (through `..` or a symlink pointing out).
fn inside(dir: &Path, parents: &[&std::ffi::OsStr], diff_id: &str, path: &Path) -> Result<PathBuf, ImageError> {
    let root = dir.canonicalize().map_err(|e| io_error(dir, e))?;
    let mut current = root.clone();
    for part in parents {
        let next = current.join(part);
        match fs::symlink_metadata(&next) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&next).map_err(|e| io_error(&next, e))?,
            Err(e) => return Err(io_error(&next, e)),
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                let resolved = next.canonicalize().map_err(|e| io_error(&next, e))?;
                if !resolved.starts_with(&root) || !resolved.is_dir() {
                    return Err(ImageError::UnsafePath { layer: diff_id.to_string(), path: path.display().to_string() });
                }
                current = resolved;
                continue;
            }
        }
        current = next;
    }
    Ok(current)
}

fn remove_existing(target: &Path) -> Result<(), ImageError> {
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(target, e)),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(target).map_err(|e| io_error(target, e)),
        Ok(_) => fs::remove_file(target).map_err(|e| io_error(target, e)),
    }
}

fn owner(header: &tar::Header, diff_id: &str) -> Result<(u32, u32), ImageError> {
    let bad = |e: io::Error| ImageError::BadLayer { layer: diff_id.to_string(), reason: e.to_string() };
    let uid = header.uid().map_err(bad)?;
    let gid = header.gid().map_err(bad)?;
    let fit = |id: u64| u32::try_from(id).map_err(|_| ImageError::BadLayer { layer: diff_id.to_string(), reason: format!("owner id {id} is out of range") });
    Ok((fit(uid)?, fit(gid)?))
}

fn lchown(target: &Path, uid: u32, gid: u32) -> Result<(), ImageError> {
    std::os::unix::fs::lchown(target, Some(uid), Some(gid)).map_err(|e| io_error(target, e))
}

/// `sha256:<64 hex>` → the hex.
pub(crate) fn digest_hex(digest: &str) -> Result<&str, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(hex),
        _ => Err(ImageError::Unsupported(format!("digest {digest:?} is not sha256:<64 hex digits>"))),
    }
}

/// Removes a temporary tree; overlay whiteouts and read-only modes are no
/// obstacle to root, and a failure only leaves garbage for the next sweep.
pub(crate) fn remove_tree(path: &Path) {
    if let Err(e) = fs::remove_dir_all(path) {
        tracing::warn!("could not remove {}: {e}", path.display());
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
