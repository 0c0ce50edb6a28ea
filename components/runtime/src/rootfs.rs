//! A container's root, built by its init in its own mount namespace: an
//! overlay of the image's layers and a writable layer, `/proc`, a minimal
//! `/dev`, `/sys` read-only, the pod's mounts; then `pivot_root` into it.
//! Everything mounted here goes away with the namespace when the
//! container ends: nothing to clean up on the node but the writable layer.

use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;

use crate::spec::{ContainerConfig, Mount};
use crate::{io, sys, Error, Result};

/// The device nodes a container gets, bound from the node's own.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// The writable layer's folders of a container.
pub struct Layer {
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
}

impl Layer {
    pub fn at(dir: &Path) -> Layer {
        Layer { upper: dir.join("upper"), work: dir.join("work"), merged: dir.join("merged") }
    }

    pub fn create(&self) -> Result<()> {
        for d in [&self.upper, &self.work, &self.merged] {
            std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
        }
        Ok(())
    }
}

/// The overlay's options: lower layers top first, as overlayfs wants them.
pub fn overlay_options(layers: &[PathBuf], layer: &Layer) -> Result<String> {
    if layers.is_empty() {
        return Err(Error::Invalid("an image with no layers".into()));
    }
    let lower: Vec<String> = layers.iter().rev().map(|p| p.display().to_string()).collect();
    for p in &lower {
        if p.contains(':') || p.contains(',') {
            return Err(Error::Invalid(format!("layer path {p} holds ':' or ','")));
        }
    }
    Ok(format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), layer.upper.display(), layer.work.display()))
}

/// A path inside `root` for the absolute container path `inside`, refusing
/// `..` (a destination must not climb out of the root).
pub fn inside(root: &Path, inside: &str) -> Result<PathBuf> {
    let rel = Path::new(inside);
    if !rel.is_absolute() {
        return Err(Error::Invalid(format!("{inside:?} is not an absolute path")));
    }
    let mut out = root.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return Err(Error::Invalid(format!("{inside:?} climbs out of the root"))),
        }
    }
    Ok(out)
}

/// Builds the root and enters it. Runs in the container's init, after it
/// unshared its mount namespace.
pub fn enter(config: &ContainerConfig, layer: &Layer) -> Result<()> {
    // Nothing mounted here reaches the node, nor the other way.
    sys::mount(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)?;
    let root = &layer.merged;
    sys::mount(Some("overlay"), root, Some("overlay"), MsFlags::empty(), Some(&overlay_options(&config.layers, layer)?))?;

    mount_dir(root, "/proc", |p| sys::mount(Some("proc"), p, Some("proc"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, None))?;
    mount_dir(root, "/sys", |p| {
        sys::mount(Some("sysfs"), p, Some("sysfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY, None)
    })?;
    make_dev(root)?;
    for m in &config.mounts {
        bind(root, m)?;
    }
    sys::chdir(root)?;
    sys::pivot_root_here()
}

fn mount_dir(root: &Path, at: &str, mount: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let path = inside(root, at)?;
    std::fs::create_dir_all(&path).map_err(io(format!("creating {}", path.display())))?;
    mount(&path)
}

fn make_dev(root: &Path) -> Result<()> {
    let dev = inside(root, "/dev")?;
    std::fs::create_dir_all(&dev).map_err(io("creating /dev"))?;
    sys::mount(Some("tmpfs"), &dev, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME, Some("mode=755,size=65536k"))?;
    for name in DEVICES {
        let target = dev.join(name);
        std::fs::File::create(&target).map_err(io(format!("creating {}", target.display())))?;
        sys::mount(Some(&format!("/dev/{name}")), &target, None, MsFlags::MS_BIND, None)?;
    }
    let pts = dev.join("pts");
    std::fs::create_dir_all(&pts).map_err(io("creating /dev/pts"))?;
    sys::mount(Some("devpts"), &pts, Some("devpts"), MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, Some("newinstance,ptmxmode=0666,mode=0620"))?;
    let shm = dev.join("shm");
    std::fs::create_dir_all(&shm).map_err(io("creating /dev/shm"))?;
    sys::mount(Some("shm"), &shm, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, Some("mode=1777,size=65536k"))?;
    for (link, to) in
        [("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")]
    {
        std::os::unix::fs::symlink(to, dev.join(link)).map_err(io(format!("linking /dev/{link}")))?;
    }
    Ok(())
}

fn bind(root: &Path, m: &Mount) -> Result<()> {
    let target = inside(root, &m.destination)?;
    let is_dir = std::fs::metadata(&m.source).map_err(io(format!("mount source {}", m.source.display())))?.is_dir();
    if is_dir {
        std::fs::create_dir_all(&target).map_err(io(format!("creating {}", target.display())))?;
    } else {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
        }
        if !target.exists() {
            std::fs::File::create(&target).map_err(io(format!("creating {}", target.display())))?;
        }
    }
    let source = m.source.to_string_lossy();
    sys::mount(Some(&source), &target, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    if m.read_only {
        sys::mount(None, &target, None, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC, None)?;
    }
    Ok(())
}

/// The program `name` on the container's PATH (its env's, else the
/// default one), as execvp would look it up but from inside the root.
pub fn look_up(name: &str, env: &[String]) -> Result<PathBuf> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let path = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(Error::Invalid(format!("exec: {name:?}: executable file not found in $PATH")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_lists_the_top_layer_first() {
        let layer = Layer::at(Path::new("/c"));
        let opts = overlay_options(&["/l/base".into(), "/l/top".into()], &layer).unwrap();
        assert_eq!(opts, "lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work");
        assert!(overlay_options(&[], &layer).is_err());
    }

    #[test]
    fn destinations_stay_inside_the_root() {
        assert_eq!(inside(Path::new("/r"), "/etc/hosts").unwrap(), PathBuf::from("/r/etc/hosts"));
        assert!(inside(Path::new("/r"), "/../etc").is_err());
        assert!(inside(Path::new("/r"), "etc").is_err());
    }

    #[test]
    fn programs_are_found_on_the_containers_path() {
        let env = vec!["PATH=/nowhere:/bin".to_string()];
        assert_eq!(look_up("sh", &env).unwrap(), PathBuf::from("/bin/sh"));
        assert_eq!(look_up("/x/y", &env).unwrap(), PathBuf::from("/x/y"));
        let err = look_up("no-such-program-here", &env).unwrap_err().to_string();
        assert!(err.contains("executable file not found in $PATH"), "{err}");
    }
}
