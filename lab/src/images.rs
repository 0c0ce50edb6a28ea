//! Images without a registry: a Debian base made by debootstrap and
//! `docker import`, and one image per component `FROM` it. Tags are hashes of
//! their inputs, so an image whose inputs did not change is never rebuilt.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use tokio::process::Command;

use std::os::unix::fs::PermissionsExt;

use crate::components::{self, Component, PodImage, COMPONENTS, POD_IMAGES};
use crate::docker::{Engine, IMAGES_LABEL_VALUE, IMAGE_LABEL, LAB_LABEL};
use crate::pod_images;
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
    /// Pod images by catalogue name, as tagged on the host (`kubelab/<name>:<hash>`).
    pub pod_images: BTreeMap<&'static str, String>,
}

impl Images {
    pub fn of(&self, component: &str) -> &str {
        self.components.get(component).map(String::as_str).unwrap_or_else(|| panic!("component {component} is in the catalogue"))
    }

    /// The host tag of a pod image (`kubelab/dns:<hash>`), which is also
    /// how pods on a node name it when its repository is `kubelab/<name>`.
    pub fn pod_image(&self, name: &str) -> &str {
        self.pod_images.get(name).map(String::as_str).unwrap_or_else(|| panic!("pod image {name} is in the catalogue"))
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

    let binaries = components::binaries();
    if !binaries.is_empty() {
        let task = progress.task("cargo build");
        task.update("release binaries");
        cargo_build(repo, &binaries).await?;
        task.done("release binaries up to date");
    }

    // Pod images first: the node image carries them, so its tag depends on theirs.
    let mut pod_images = BTreeMap::new();
    for pod_image in POD_IMAGES {
        let context = BuildContext::for_pod_image(repo, pod_image).await?;
        let tag = format!("kubelab/{}:{}", pod_image.name, short_hash(&context.inputs(&[])));
        build_if_missing(engine, progress, pod_image.name, &tag, context, HashMap::new()).await?;
        pod_images.insert(pod_image.name, tag);
    }

    let mut components = BTreeMap::new();
    for component in COMPONENTS {
        let mut context = BuildContext::for_component(repo, component)?;
        let carried: Vec<&str> = component.pod_images.iter().map(|name| pod_images[name].as_str()).collect();
        let parents: Vec<&str> = std::iter::once(base.as_str()).chain(carried.iter().copied()).collect();
        let tag = format!("kubelab/{}:{}", component.name, short_hash(&context.inputs(&parents)));
        if !engine.image_exists(&tag).await? {
            for (name, host_tag) in component.pod_images.iter().zip(&carried) {
                context.entries.push(ContextEntry::dir("images"));
                context.entries.push(ContextEntry::file(&format!("images/{name}.tar"), pod_image_archive(engine, name, host_tag).await?, 0o644));
            }
            let args = HashMap::from([("BASE".to_string(), base.clone())]);
            build_if_missing(engine, progress, component.name, &tag, context, args).await?;
        }
        components.insert(component.name, tag);
    }
    Ok(Images { base, components, pod_images })
}

async fn build_if_missing(engine: &Engine, progress: &Progress, name: &str, tag: &str, context: BuildContext, args: HashMap<String, String>) -> Result<()> {
    if engine.image_exists(tag).await? {
        return Ok(());
    }
    let task = progress.task(&format!("image {name}"));
    task.update("building");
    let labels = HashMap::from([(LAB_LABEL.to_string(), IMAGES_LABEL_VALUE.to_string()), (IMAGE_LABEL.to_string(), name.to_string())]);
    engine.build_image(tag, context.tar()?, args, labels).await.inspect_err(|_| task.failed("failed"))?;
    task.done(tag);
    Ok(())
}

/// A pod image as a node imports it: `docker save` of its host tag, tagged
/// `<repository>:latest` and `<repository>:<hash>` for pods to name.
async fn pod_image_archive(engine: &Engine, name: &str, host_tag: &str) -> Result<Vec<u8>> {
    let pod_image = components::pod_image(name);
    let hash = host_tag.rsplit_once(':').map_or("latest", |(_, h)| h);
    let names = vec![format!("{}:latest", pod_image.repository), format!("{}:{hash}", pod_image.repository)];
    let saved = engine.save_image(host_tag).await?;
    pod_images::retag_archive(&saved, &names).with_context(|| format!("retagging the docker save archive of {host_tag}"))
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

async fn cargo_build(repo: &Repo, binaries: &[&str]) -> Result<()> {
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
    // `just build` does it back. `binaries` names what must come out.
    command.arg("--workspace");
    let output = command.stdin(Stdio::null()).output().await.context("running cargo")?;
    if !output.status.success() {
        bail!("cargo build --release failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    for binary in binaries {
        if !repo.release_dir().join(binary).is_file() {
            bail!("cargo build --release --workspace did not produce {binary}: is it a [[bin]] of a workspace member?");
        }
    }
    Ok(())
}

/// One file, folder or symlink of a build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextEntry {
    File { path: String, bytes: Vec<u8>, mode: u32 },
    Dir { path: String, mode: u32 },
    Symlink { path: String, target: String },
}

impl ContextEntry {
    pub fn file(path: &str, bytes: Vec<u8>, mode: u32) -> ContextEntry {
        ContextEntry::File { path: path.to_string(), bytes, mode }
    }

    pub fn dir(path: &str) -> ContextEntry {
        ContextEntry::dir_mode(path, 0o755)
    }

    pub fn dir_mode(path: &str, mode: u32) -> ContextEntry {
        ContextEntry::Dir { path: path.to_string(), mode }
    }

    pub fn symlink(path: &str, target: &str) -> ContextEntry {
        ContextEntry::Symlink { path: path.to_string(), target: target.to_string() }
    }
}

/// The files an image is built from.
struct BuildContext {
    entries: Vec<ContextEntry>,
}

impl BuildContext {
    fn for_component(repo: &Repo, component: &Component) -> Result<BuildContext> {
        let dir = repo.component_dir(component.name);
        let mut entries = vec![ContextEntry::file("Dockerfile", read(&dir.join("Dockerfile"))?, 0o644)];
        entries.extend(binaries(repo, component.binaries)?);
        for file in component.files {
            let path = dir.join(file);
            let mode = std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?.permissions().mode() & 0o777;
            entries.push(ContextEntry::file(file, read(&path)?, mode));
        }
        Ok(BuildContext { entries })
    }

    async fn for_pod_image(repo: &Repo, pod_image: &PodImage) -> Result<BuildContext> {
        let dir = repo.component_dir(pod_image.name);
        let mut entries = vec![ContextEntry::file("Dockerfile", read(&dir.join("Dockerfile"))?, 0o644)];
        entries.extend(binaries(repo, pod_image.binaries)?);
        let paths: Vec<PathBuf> = pod_image.binaries.iter().map(|b| repo.release_dir().join(b)).collect();
        let busybox = pod_images::busybox(repo).await?;
        entries.extend(pod_images::rootfs(&busybox, &paths.iter().map(PathBuf::as_path).collect::<Vec<_>>()).await?);
        Ok(BuildContext { entries })
    }

    /// What the image's tag is a hash of: the images it builds on (its base,
    /// the pod images it carries) and every entry.
    fn inputs(&self, parents: &[&str]) -> Vec<u8> {
        let mut hasher = Sha256::new();
        for parent in parents {
            hasher.update(parent.as_bytes());
            hasher.update([0]);
        }
        for entry in &self.entries {
            match entry {
                ContextEntry::File { path, bytes, mode } => {
                    hasher.update(format!("F {path} {mode:o} {}\0", bytes.len()).as_bytes());
                    hasher.update(bytes);
                }
                ContextEntry::Dir { path, mode } => hasher.update(format!("D {path} {mode:o}\0").as_bytes()),
                ContextEntry::Symlink { path, target } => hasher.update(format!("L {path} {target}\0").as_bytes()),
            }
        }
        hasher.finalize().to_vec()
    }

    fn tar(&self) -> Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut dirs_done = std::collections::HashSet::new();
        for entry in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(0);
            match entry {
                ContextEntry::File { path, bytes, mode } => {
                    header.set_size(bytes.len() as u64);
                    header.set_mode(*mode);
                    builder.append_data(&mut header, path, &bytes[..])?;
                }
                ContextEntry::Dir { path, mode } => {
                    if !dirs_done.insert(path.clone()) {
                        continue;
                    }
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    header.set_mode(*mode);
                    builder.append_data(&mut header, format!("{path}/"), &[][..])?;
                }
                ContextEntry::Symlink { path, target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    header.set_mode(0o777);
                    builder.append_link(&mut header, path, target)?;
                }
            }
        }
        Ok(builder.into_inner()?)
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Release binaries, each under its own name at the context's top.
fn binaries(repo: &Repo, names: &[&str]) -> Result<Vec<ContextEntry>> {
    names.iter().map(|name| Ok(ContextEntry::file(name, read(&repo.release_dir().join(name))?, 0o755))).collect()
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
