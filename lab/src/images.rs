//! Images without a registry: a Debian base made by debootstrap and
//! `docker import`, and one image per component `FROM` it. Tags are hashes of
//! their inputs, so an image whose inputs did not change is never rebuilt.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::components::{Component, COMPONENTS};
use crate::docker::{Engine, IMAGES_LABEL_VALUE, IMAGE_LABEL, LAB_LABEL};
use crate::progress::Progress;
use crate::repo::Repo;

/// Bumped when the way the base is made changes, so that its tag changes too.
const BASE_RECIPE: &str = "debootstrap --variant=minbase bookworm; apt caches removed; v1";
const SUITE: &str = "bookworm";

/// The tags of a complete image set.
#[derive(Debug, Clone)]
pub struct Images {
    pub base: String,
    pub components: BTreeMap<&'static str, String>,
}

impl Images {
    pub fn of(&self, component: &str) -> &str {
        self.components.get(component).map(String::as_str).unwrap_or_else(|| panic!("component {component} is in the catalogue"))
    }
}

/// Builds whatever image is missing or stale and returns every tag.
pub async fn ensure(engine: &Engine, repo: &Repo, progress: &Progress) -> Result<Images> {
    let packages = base_packages(repo)?;
    let base = format!("kubelab/base:{}", short_hash(&base_inputs(&packages)));
    if !engine.image_exists(&base).await? {
        let task = progress.task("image base");
        task.update("debootstrap of Debian bookworm (about 40 s)");
        match build_base(engine, repo, &base, &packages).await {
            Ok(()) => task.done(&base),
            Err(e) => {
                task.failed("failed");
                return Err(e);
            }
        }
    }

    let with_binaries: Vec<&Component> = COMPONENTS.iter().filter(|c| c.binary.is_some()).collect();
    if !with_binaries.is_empty() {
        let task = progress.task("cargo build");
        task.update("release binaries");
        cargo_build(repo, &with_binaries).await?;
        task.done("release binaries up to date");
    }

    let mut components = BTreeMap::new();
    for component in COMPONENTS {
        let context = BuildContext::read(repo, component)?;
        let tag = format!("kubelab/{}:{}", component.name, short_hash(&context.inputs(&base)));
        if !engine.image_exists(&tag).await? {
            let task = progress.task(&format!("image {}", component.name));
            task.update("building");
            let labels = HashMap::from([(LAB_LABEL.to_string(), IMAGES_LABEL_VALUE.to_string()), (IMAGE_LABEL.to_string(), component.name.to_string())]);
            let args = HashMap::from([("BASE".to_string(), base.clone())]);
            engine.build_image(&tag, context.tar()?, args, labels).await.inspect_err(|_| task.failed("failed"))?;
            task.done(&tag);
        }
        components.insert(component.name, tag);
    }
    Ok(Images { base, components })
}

/// The package list of the base image, from `components/base/packages.txt`.
fn base_packages(repo: &Repo) -> Result<Vec<String>> {
    let path = repo.component_dir("base").join("packages.txt");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut packages: Vec<String> = text.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty()).map(str::to_string).collect();
    packages.sort();
    packages.dedup();
    Ok(packages)
}

fn base_inputs(packages: &[String]) -> Vec<u8> {
    format!("{BASE_RECIPE}\n{SUITE}\n{}\n", packages.join("\n")).into_bytes()
}

fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

async fn build_base(engine: &Engine, repo: &Repo, tag: &str, packages: &[String]) -> Result<()> {
    ensure_debootstrap().await?;
    let mirror = debian_mirror()?;
    let rootfs = ScratchDir::new(repo.scratch().join("base-rootfs"))?;
    let log_path = repo.scratch().join("debootstrap.log");
    let log = std::fs::File::create(&log_path)?;
    let status = Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", packages.join(",")))
        .arg(SUITE)
        .arg(&rootfs.0)
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .status()
        .await
        .context("running debootstrap")?;
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        bail!(
            "debootstrap of {SUITE} from {mirror} failed ({status}); last lines of {}:\n{}",
            log_path.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    // Package caches and lists are of no use in an image with no network.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let dir = rootfs.0.join(dir);
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    let mut tar = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(&rootfs.0)
        .args(["-c", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running tar")?;
    let stdout = tar.stdout.take().expect("piped stdout");
    let changes = vec![
        format!("LABEL {LAB_LABEL}={IMAGES_LABEL_VALUE}"),
        format!("LABEL {IMAGE_LABEL}=base"),
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
    ];
    engine.import_rootfs(tag, tokio_util::io::ReaderStream::new(stdout), changes).await?;
    let status = tar.wait().await?;
    if !status.success() {
        bail!("tar of the base root filesystem failed ({status})");
    }
    Ok(())
}

/// debootstrap is the one build tool the base needs beyond Docker; install
/// it where we may (root with apt), and otherwise say how.
async fn ensure_debootstrap() -> Result<()> {
    if which("debootstrap") {
        return Ok(());
    }
    let is_root = nix::unistd::Uid::effective().is_root();
    if is_root && which("apt-get") {
        eprintln!("debootstrap is missing; installing it with apt-get");
        let status =
            Command::new("sh").args(["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap"]).status().await?;
        if status.success() && which("debootstrap") {
            return Ok(());
        }
    }
    bail!(
        "debootstrap is needed to build kubelab's base image and is not installed.\n\
         On Debian or Ubuntu: sudo apt-get install debootstrap"
    )
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file())).unwrap_or(false)
}

/// The Debian mirror: `KUBELAB_DEBIAN_MIRROR`, else the first bookworm main
/// archive in this machine's apt sources.
pub fn debian_mirror() -> Result<String> {
    if let Ok(mirror) = std::env::var("KUBELAB_DEBIAN_MIRROR") {
        return Ok(mirror);
    }
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    let mut more: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d").into_iter().flatten().flatten().map(|e| e.path()).collect();
    more.sort();
    files.extend(more);
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let found = if file.extension().is_some_and(|e| e == "sources") { mirror_in_deb822(&text) } else { mirror_in_one_line(&text) };
        if let Some(m) = found {
            return Ok(m);
        }
    }
    bail!("no Debian {SUITE} mirror in /etc/apt/sources.list(.d); set KUBELAB_DEBIAN_MIRROR to one")
}

/// `deb [opts] URI SUITE COMPONENTS...` lines.
fn mirror_in_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace().filter(|w| !w.starts_with('[') && !w.ends_with(']'));
        if words.next()? != "deb" {
            return None;
        }
        let uri = words.next()?;
        let suite = words.next()?;
        (suite == SUITE).then(|| uri.to_string())
    })
}

/// deb822 stanzas: `URIs:`, `Suites:` and `Types:` fields.
fn mirror_in_deb822(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| stanza.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(':')).map(|v| v.trim().to_string()));
        let types = field("Types")?;
        let suites = field("Suites")?;
        let uri = field("URIs")?;
        let is_main = types.split_whitespace().any(|t| t == "deb") && suites.split_whitespace().any(|s| s == SUITE);
        is_main.then(|| uri.split_whitespace().next().unwrap_or_default().to_string())
    })
}

async fn cargo_build(repo: &Repo, components: &[&Component]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(&repo.root).args(["build", "--release"]);
    // Under `cargo test` this process carries the variables cargo sets for
    // the test's own package; ring's build script watches some of them
    // (CARGO_MANIFEST_DIR, CARGO_PKG_*), so passing them on would rebuild
    // ring and everything above it on every lab up from a test.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let set_for_package = key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || matches!(key, "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "OUT_DIR");
        if set_for_package {
            command.env_remove(key);
        }
    }
    // The whole workspace, as `just build` builds it, rather than `-p` for
    // each binary: cargo unifies dependency features over the packages it
    // is asked for, so a narrower build compiles the shared dependencies
    // again with other features (about 5 minutes on 2 cores) and the next
    // `just build` does it back. `components` names what must come out.
    command.arg("--workspace");
    let output = command.stdin(Stdio::null()).output().await.context("running cargo")?;
    if !output.status.success() {
        bail!("cargo build --release failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    for c in components {
        let binary = c.binary.expect("filtered to binaries");
        if !repo.release_dir().join(binary).is_file() {
            bail!("cargo build --release --workspace did not produce {binary}: is it a [[bin]] of a workspace member?");
        }
    }
    Ok(())
}

/// The files an image is built from.
struct BuildContext {
    dockerfile: Vec<u8>,
    binary: Option<(String, Vec<u8>)>,
    /// The component's further files (name, bytes, mode).
    files: Vec<(String, Vec<u8>, u32)>,
}

impl BuildContext {
    fn read(repo: &Repo, component: &Component) -> Result<BuildContext> {
        let path = repo.component_dir(component.name).join("Dockerfile");
        let dockerfile = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let binary = match component.binary {
            None => None,
            Some(name) => {
                let path = repo.release_dir().join(name);
                let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                Some((name.to_string(), bytes))
            }
        };
        let mut files = vec![];
        for name in component.files {
            let path = repo.component_dir(component.name).join(name);
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
            files.push((name.to_string(), bytes, mode));
        }
        Ok(BuildContext { dockerfile, binary, files })
    }

    /// What the image's tag is a hash of.
    fn inputs(&self, base: &str) -> Vec<u8> {
        let mut hasher = Sha256::new();
        hasher.update(base.as_bytes());
        hasher.update([0]);
        hasher.update(&self.dockerfile);
        if let Some((name, bytes)) = &self.binary {
            hasher.update([0]);
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(bytes);
        }
        for (name, bytes, mode) in &self.files {
            hasher.update([0]);
            hasher.update(name.as_bytes());
            hasher.update(mode.to_le_bytes());
            hasher.update(bytes);
        }
        hasher.finalize().to_vec()
    }

    fn tar(&self) -> Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        append(&mut builder, "Dockerfile", &self.dockerfile, 0o644)?;
        if let Some((name, bytes)) = &self.binary {
            append(&mut builder, name, bytes, 0o755)?;
        }
        for (name, bytes, mode) in &self.files {
            append(&mut builder, name, bytes, *mode)?;
        }
        Ok(builder.into_inner()?)
    }
}

fn append(builder: &mut tar::Builder<Vec<u8>>, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_cksum();
    builder.append_data(&mut header, name, bytes)?;
    Ok(())
}

/// A folder removed when dropped, also when a build is interrupted.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(path: PathBuf) -> Result<ScratchDir> {
        // A leftover of an earlier, interrupted build goes the same way.
        drop(ScratchDir(path.clone()));
        if path.exists() {
            bail!("{} is left from an earlier build and could not be removed", path.display());
        }
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))?;
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // debootstrap mounts /proc, /sys and sometimes /dev inside the root it
        // builds; an interrupted run can leave them there. Detach them first,
        // so that removing the folder never reaches into the host's.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut inside: Vec<PathBuf> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(|m| PathBuf::from(m.replace("\\040", " ")))
            .filter(|m| m.starts_with(&self.0))
            .collect();
        inside.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for mount in &inside {
            if let Err(e) = nix::mount::umount2(mount, nix::mount::MntFlags::MNT_DETACH) {
                eprintln!("could not unmount {}: {e}; leaving {} in place", mount.display(), self.0.display());
                return;
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mirror_in_both_source_formats() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(mirror_in_deb822(deb822).as_deref(), Some("http://mirror.example/debian"));
        let one_line = "deb-src http://x/debian bookworm main\ndeb [arch=amd64] http://y/debian bookworm main contrib\n";
        assert_eq!(mirror_in_one_line(one_line).as_deref(), Some("http://y/debian"));
        assert_eq!(mirror_in_one_line("deb http://z/debian bullseye main\n"), None);
    }

    #[test]
    fn base_tag_follows_the_package_list() {
        let a = short_hash(&base_inputs(&["curl".into(), "iproute2".into()]));
        let b = short_hash(&base_inputs(&["curl".into(), "iptables".into()]));
        assert_ne!(a, b);
        assert_eq!(a.len(), 12);
    }
}
