//! The Docker provider: every call kubelab makes to the Docker engine goes
//! through here, so cluster logic (plan, lab) never sees bollard's types.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerSummary, EndpointSettings, HostConfig, Ipam, IpamConfig, Mount, MountType, NetworkCreateRequest, NetworkingConfig,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions, ListImagesOptions, ListNetworksOptions,
    ListVolumesOptions, LogsOptions, RemoveContainerOptions, RemoveVolumeOptions, StartContainerOptions, UploadToContainerOptions,
};
use bollard::{body_full, body_try_stream, Docker};
use futures_util::{Stream, StreamExt};
use ipnet::Ipv4Net;
use serde::Serialize;

/// Every Docker object kubelab creates carries this label; its value is the
/// lab's name (or [`IMAGES_LABEL_VALUE`] for the shared images).
pub const LAB_LABEL: &str = "dev.kubelab.lab";
/// The lab-label value of images, which all labs share and `lab down` keeps.
pub const IMAGES_LABEL_VALUE: &str = "kubelab-images";
pub const COMPONENT_LABEL: &str = "dev.kubelab.component";
pub const ROLE_LABEL: &str = "dev.kubelab.role";
pub const SPEC_LABEL: &str = "dev.kubelab.spec";
pub const PRIVILEGE_LABEL: &str = "dev.kubelab.privilege";
pub const IMAGE_LABEL: &str = "dev.kubelab.image";

/// What a container is to look like; the plan builds these.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerSpec {
    pub name: String,
    pub hostname: String,
    pub image: String,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub network: Attachment,
    /// Named volumes and where they are mounted.
    pub volumes: Vec<(String, String)>,
    pub tmpfs: Vec<String>,
    /// Needs network namespaces, iptables and a writable /proc/sys.
    pub privileged: bool,
    /// Files put into the container before it starts (certificates). They
    /// are part of the spec, so a changed file replaces the container.
    pub files: Vec<File>,
}

/// A file copied into a container: absolute path, mode, contents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct File {
    pub path: String,
    pub mode: u32,
    pub contents: String,
}

/// The files as a tar archive rooted at `/`.
fn files_tar(files: &[File]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for f in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(f.contents.len() as u64);
        header.set_mode(f.mode);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, f.path.trim_start_matches('/'), f.contents.as_bytes())?;
    }
    Ok(builder.into_inner()?)
}

/// The bytes before and after a file's contents in a tar archive holding
/// only that file: its header, then the padding to a whole block and the
/// two zero blocks that end an archive.
fn one_file_tar(path: &str, size: u64) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut header = tar::Header::new_gnu();
    header.set_path(path.trim_start_matches('/'))?;
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(0);
    header.set_cksum();
    let padding = (512 - (size % 512) as usize) % 512;
    Ok((header.as_bytes().to_vec(), vec![0u8; padding + 1024]))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Attachment {
    /// On the lab's network, reachable by these extra DNS names.
    Network { network: String, aliases: Vec<String> },
    /// In another container's network namespace (kube-proxy in its node's).
    Container(String),
}

/// A container as found on the engine.
#[derive(Debug, Clone)]
pub struct Found {
    /// The engine's full container id (its cgroup's name, for one).
    pub id: String,
    pub name: String,
    pub running: bool,
    pub state: String,
    pub labels: HashMap<String, String>,
    pub address: Option<String>,
}

/// One IPv4 subnet of a Docker network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSubnet {
    pub network: String,
    pub subnet: Ipv4Net,
    /// Where Docker gives containers addresses (`--ip-range`); None: the
    /// whole subnet.
    pub ip_range: Option<Ipv4Net>,
}

/// How privileged containers are run on this engine, found on first use.
const PRIVILEGE_UNKNOWN: u8 = 0;
const PRIVILEGE_FULL: u8 = 1;
const PRIVILEGE_FALLBACK: u8 = 2;

pub struct Engine {
    docker: Docker,
    privilege: AtomicU8,
}

impl Engine {
    /// Connects to the engine named by DOCKER_HOST, or the local socket.
    pub async fn connect() -> Result<Engine> {
        let unreachable = |e: &dyn std::fmt::Display| {
            anyhow!(
                "cannot reach the Docker engine ({e}).\n\
                 Start it (`sudo systemctl start docker`, or `sudo dockerd &` where there is no systemd), \
                 and check that DOCKER_HOST, if set, names it and that you may use its socket."
            )
        };
        let docker = Docker::connect_with_defaults().map_err(|e| unreachable(&e))?;
        docker.ping().await.map_err(|e| unreachable(&e))?;
        let docker = docker.negotiate_version().await.map_err(|e| unreachable(&e))?;
        Ok(Engine { docker, privilege: AtomicU8::new(PRIVILEGE_UNKNOWN) })
    }

    // ---- containers ----

    /// Containers with the lab label, all of them when `lab` is None.
    pub async fn containers(&self, lab: Option<&str>) -> Result<Vec<Found>> {
        let options = ListContainersOptions { all: true, filters: Some(label_filter(lab)), ..Default::default() };
        let list = self.docker.list_containers(Some(options)).await?;
        Ok(list.into_iter().map(found).collect())
    }

    /// Creates and starts a container. Privileged containers fall back to
    /// every capability the engine grants when `--privileged` is refused.
    pub async fn run(&self, spec: &ContainerSpec) -> Result<()> {
        if !spec.privileged {
            return self.create_and_start(spec, Privilege::None).await;
        }
        if self.privilege.load(Ordering::Relaxed) != PRIVILEGE_FALLBACK {
            match self.create_and_start(spec, Privilege::Full).await {
                Ok(()) => {
                    self.privilege.store(PRIVILEGE_FULL, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) if format!("{e:#}").contains("unable to apply caps") => {
                    tracing::info!("--privileged is refused here ({e:#}); falling back to all granted capabilities");
                    self.remove_container(&spec.name).await?;
                    self.privilege.store(PRIVILEGE_FALLBACK, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        self.create_and_start(spec, Privilege::Fallback).await
    }

    async fn create_and_start(&self, spec: &ContainerSpec, privilege: Privilege) -> Result<()> {
        let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        let mut host = HostConfig {
            init: Some(true),
            mounts: Some(
                spec.volumes
                    .iter()
                    .map(|(volume, target)| Mount {
                        source: Some(volume.clone()),
                        target: Some(target.clone()),
                        typ: Some(MountType::VOLUME),
                        ..Default::default()
                    })
                    .collect(),
            ),
            tmpfs: Some(spec.tmpfs.iter().map(|p| (p.clone(), String::new())).collect()),
            ..Default::default()
        };
        match privilege {
            Privilege::None => {}
            Privilege::Full => {
                host.privileged = Some(true);
                labels.insert(PRIVILEGE_LABEL.into(), "privileged".into());
            }
            Privilege::Fallback => {
                // What `--privileged` gives, less what this engine cannot grant.
                host.cap_add = Some(vec!["ALL".into()]);
                host.cap_drop = Some(vec!["SYS_RESOURCE".into()]);
                host.security_opt = Some(vec!["seccomp=unconfined".into(), "apparmor=unconfined".into()]);
                // The CLI's `--security-opt systempaths=unconfined`: no masked
                // or read-only paths, so /proc/sys is writable.
                host.masked_paths = Some(vec![]);
                host.readonly_paths = Some(vec![]);
                labels.insert(PRIVILEGE_LABEL.into(), "all-capabilities".into());
            }
        }
        let mut networking = None;
        let mut hostname = Some(spec.hostname.clone());
        match &spec.network {
            Attachment::Network { network, aliases } => {
                host.network_mode = Some(network.clone());
                networking = Some(NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(network.clone(), EndpointSettings { aliases: Some(aliases.clone()), ..Default::default() })])),
                });
            }
            Attachment::Container(other) => {
                host.network_mode = Some(format!("container:{other}"));
                hostname = None; // shared with the other container
            }
        }
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(spec.cmd.clone()),
            env: Some(spec.env.clone()),
            hostname,
            labels: Some(labels),
            host_config: Some(host),
            networking_config: networking,
            ..Default::default()
        };
        let options = CreateContainerOptions { name: Some(spec.name.clone()), ..Default::default() };
        self.docker.create_container(Some(options), body).await.with_context(|| format!("creating container {}", spec.name))?;
        if !spec.files.is_empty() {
            let options = UploadToContainerOptions { path: "/".into(), ..Default::default() };
            self.docker
                .upload_to_container(&spec.name, Some(options), body_full(files_tar(&spec.files)?.into()))
                .await
                .with_context(|| format!("copying files into container {}", spec.name))?;
        }
        self.start(&spec.name).await
    }

    pub async fn start(&self, name: &str) -> Result<()> {
        self.docker.start_container(name, None::<StartContainerOptions>).await.with_context(|| format!("starting container {name}"))
    }

    /// Removes a container, running or not; a missing one is not an error.
    pub async fn remove_container(&self, name: &str) -> Result<()> {
        let options = RemoveContainerOptions { force: true, v: false, ..Default::default() };
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing container {name}")),
        }
    }

    /// Runs `cmd` in a container; returns its exit code and its output.
    pub async fn exec(&self, container: &str, cmd: &[String]) -> Result<(i64, String)> {
        let created = self
            .docker
            .create_exec(container, CreateExecOptions { cmd: Some(cmd.to_vec()), attach_stdout: Some(true), attach_stderr: Some(true), ..Default::default() })
            .await?;
        let mut out = String::new();
        if let StartExecResults::Attached { mut output, .. } = self.docker.start_exec(&created.id, None).await? {
            while let Some(chunk) = output.next().await {
                out.push_str(&chunk?.to_string());
            }
        }
        let code = self.docker.inspect_exec(&created.id).await?.exit_code.unwrap_or(-1);
        Ok((code, out))
    }

    /// A container's log lines (stdout and stderr together).
    pub fn logs(&self, container: &str, tail: Option<usize>, follow: bool) -> impl Stream<Item = Result<String>> + '_ {
        let options = LogsOptions { follow, stdout: true, stderr: true, tail: tail.map_or("all".to_string(), |n| n.to_string()), ..Default::default() };
        self.docker.logs(container, Some(options)).map(|chunk| chunk.map(|c| c.to_string()).map_err(Into::into))
    }

    /// The last `n` lines of a container's log, as one string.
    pub async fn log_tail(&self, container: &str, n: usize) -> String {
        let chunks: Vec<Result<String>> = self.logs(container, Some(n), false).collect().await;
        chunks.into_iter().filter_map(Result::ok).collect()
    }

    /// Whether a container exists and runs.
    pub async fn is_running(&self, name: &str) -> Result<bool> {
        match self.docker.inspect_container(name, None::<InspectContainerOptions>).await {
            Ok(c) => Ok(c.state.and_then(|s| s.running).unwrap_or(false)),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    // ---- networks and volumes ----

    /// Networks with the lab label: (name, labels).
    pub async fn networks(&self, lab: Option<&str>) -> Result<Vec<(String, HashMap<String, String>)>> {
        let options = ListNetworksOptions { filters: Some(label_filter(lab)) };
        let list = self.docker.list_networks(Some(options)).await?;
        Ok(list.into_iter().map(|n| (n.name.unwrap_or_default(), n.labels.unwrap_or_default())).collect())
    }

    /// The IPv4 subnets of every Docker network (not only labs': a lab's
    /// subnet must not collide with any), each with its network's name and
    /// its allocation range (`--ip-range`) if it has one.
    pub async fn network_subnets(&self) -> Result<Vec<NetworkSubnet>> {
        let list = self.docker.list_networks(None::<ListNetworksOptions>).await?;
        let mut subnets = Vec::new();
        for network in list {
            let name = network.name.unwrap_or_default();
            for config in network.ipam.and_then(|i| i.config).unwrap_or_default() {
                // IPv6 subnets do not parse as IPv4 and cannot collide.
                let Some(subnet) = config.subnet.as_deref().and_then(|s| s.parse().ok()) else { continue };
                let ip_range = config.ip_range.as_deref().and_then(|r| r.parse().ok());
                subnets.push(NetworkSubnet { network: name.clone(), subnet, ip_range });
            }
        }
        Ok(subnets)
    }

    /// Creates an internal network (nothing on it reaches beyond this
    /// machine) on `subnet`, where Docker gives containers addresses from
    /// `ip_range` only: the rest is the lab's (load balancer addresses).
    pub async fn create_network(&self, name: &str, subnet: Ipv4Net, ip_range: Ipv4Net, labels: HashMap<String, String>) -> Result<()> {
        let config = IpamConfig { subnet: Some(subnet.to_string()), ip_range: Some(ip_range.to_string()), ..Default::default() };
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            internal: Some(true),
            labels: Some(labels),
            ipam: Some(Ipam { config: Some(vec![config]), ..Default::default() }),
            ..Default::default()
        };
        self.docker.create_network(request).await.with_context(|| format!("creating network {name}"))?;
        Ok(())
    }

    pub async fn remove_network(&self, name: &str) -> Result<()> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing network {name}")),
        }
    }

    /// Names of volumes with the lab label.
    pub async fn volumes(&self, lab: Option<&str>) -> Result<Vec<String>> {
        Ok(self.volume_labels(lab).await?.into_iter().map(|(name, _)| name).collect())
    }

    /// Volumes with the lab label: (name, labels).
    pub async fn volume_labels(&self, lab: Option<&str>) -> Result<Vec<(String, HashMap<String, String>)>> {
        let options = ListVolumesOptions { filters: Some(label_filter(lab)) };
        let list = self.docker.list_volumes(Some(options)).await?;
        Ok(list.volumes.unwrap_or_default().into_iter().map(|v| (v.name, v.labels)).collect())
    }

    pub async fn create_volume(&self, name: &str, labels: HashMap<String, String>) -> Result<()> {
        self.docker
            .create_volume(VolumeCreateRequest { name: Some(name.to_string()), labels: Some(labels), ..Default::default() })
            .await
            .with_context(|| format!("creating volume {name}"))?;
        Ok(())
    }

    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        match self.docker.remove_volume(name, Some(RemoveVolumeOptions { force: true })).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing volume {name}")),
        }
    }

    // ---- images ----

    pub async fn image_exists(&self, tag: &str) -> Result<bool> {
        match self.docker.inspect_image(tag).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// kubelab's images: (tag, size in bytes, created as Unix seconds).
    pub async fn images(&self) -> Result<Vec<(String, i64, i64)>> {
        let options = ListImagesOptions {
            filters: Some(HashMap::from([("label".to_string(), vec![format!("{LAB_LABEL}={IMAGES_LABEL_VALUE}")])])),
            ..Default::default()
        };
        let mut rows = Vec::new();
        for image in self.docker.list_images(Some(options)).await? {
            for tag in image.repo_tags {
                rows.push((tag, image.size, image.created));
            }
        }
        rows.sort();
        Ok(rows)
    }

    /// `docker save` of one image: the archive's bytes (the engine's legacy
    /// layout with manifest.json on 20.10; OCI with it on newer engines).
    pub async fn save_image(&self, tag: &str) -> Result<Vec<u8>> {
        let mut archive = Vec::new();
        let mut chunks = self.docker.export_image(tag);
        while let Some(chunk) = chunks.next().await {
            archive.extend_from_slice(&chunk.with_context(|| format!("saving image {tag}"))?);
        }
        Ok(archive)
    }

    /// `docker save` of several images into one archive file (streamed, as
    /// images may be large).
    pub async fn save_images_to(&self, tags: &[String], file: &std::path::Path) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        let mut out = tokio::fs::File::create(file).await.with_context(|| format!("creating {}", file.display()))?;
        let mut size = 0u64;
        let mut chunks = self.docker.export_images(&refs);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.with_context(|| format!("saving images {}", tags.join(" ")))?;
            size += chunk.len() as u64;
            out.write_all(&chunk).await?;
        }
        out.flush().await?;
        Ok(size)
    }

    /// Copies a host file into a container at `path` (absolute), streamed
    /// as a one-file tar archive; missing parent folders are made by the engine.
    pub async fn upload_file(&self, container: &str, path: &str, file: &std::path::Path) -> Result<()> {
        let size = tokio::fs::metadata(file).await.with_context(|| format!("reading {}", file.display()))?.len();
        let opened = tokio::fs::File::open(file).await.with_context(|| format!("opening {}", file.display()))?;
        let (header, trailer) = one_file_tar(path, size)?;
        let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(header)) })
            .chain(tokio_util::io::ReaderStream::new(opened))
            .chain(futures_util::stream::once(async move { Ok(bytes::Bytes::from(trailer)) }));
        let options = UploadToContainerOptions { path: "/".into(), ..Default::default() };
        self.docker
            .upload_to_container(container, Some(options), body_try_stream(stream))
            .await
            .with_context(|| format!("copying {} into container {container} at {path}", file.display()))
    }

    /// Imports a root filesystem tarball (a stream of its bytes) as an image,
    /// applying Dockerfile instructions such as `LABEL a=b`.
    pub async fn import_rootfs<S>(&self, tag: &str, tarball: S, changes: Vec<String>) -> Result<()>
    where
        S: Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    {
        let (repo, version) = tag.rsplit_once(':').context("an image tag has a version")?;
        let options = CreateImageOptions { from_src: Some("-".into()), repo: Some(repo.into()), tag: Some(version.into()), changes, ..Default::default() };
        let mut progress = self.docker.create_image(Some(options), Some(body_try_stream(tarball)), None);
        while let Some(step) = progress.next().await {
            let step = step.with_context(|| format!("importing image {tag}"))?;
            if let Some(e) = step.error_detail.and_then(|d| d.message) {
                bail!("importing image {tag}: {e}");
            }
        }
        Ok(())
    }

    /// Builds an image from an in-memory build context (a tar archive). The
    /// classic builder is used: it takes `FROM` images from the local store
    /// and never asks a registry for them.
    pub async fn build_image(&self, tag: &str, context: Vec<u8>, build_args: HashMap<String, String>, labels: HashMap<String, String>) -> Result<()> {
        let options = BuildImageOptions {
            dockerfile: "Dockerfile".into(),
            t: Some(tag.into()),
            rm: true,
            forcerm: true,
            buildargs: Some(build_args),
            labels: Some(labels),
            ..Default::default()
        };
        let mut log = String::new();
        let mut steps = self.docker.build_image(options, None, Some(body_full(context.into())));
        while let Some(step) = steps.next().await {
            match step {
                Ok(info) => {
                    if let Some(e) = info.error_detail.and_then(|d| d.message) {
                        bail!("building image {tag}: {e}\n{log}");
                    }
                    if let Some(line) = info.stream {
                        log.push_str(&line);
                    }
                }
                Err(e) => bail!("building image {tag}: {e}\n{log}"),
            }
        }
        Ok(())
    }
}

enum Privilege {
    None,
    Full,
    Fallback,
}

fn label_filter(lab: Option<&str>) -> HashMap<String, Vec<String>> {
    let value = match lab {
        Some(lab) => format!("{LAB_LABEL}={lab}"),
        None => LAB_LABEL.to_string(),
    };
    HashMap::from([("label".to_string(), vec![value])])
}

fn found(c: ContainerSummary) -> Found {
    let name = c.names.unwrap_or_default().first().map(|n| n.trim_start_matches('/').to_string()).unwrap_or_default();
    let address = c.network_settings.and_then(|n| n.networks).and_then(|nets| nets.values().filter_map(|e| e.ip_address.clone()).find(|ip| !ip.is_empty()));
    let state = c.state.map(|s| s.to_string()).unwrap_or_default();
    Found { id: c.id.unwrap_or_default(), name, running: state == "running", state, labels: c.labels.unwrap_or_default(), address }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_tar_reads_back() {
        for contents in [&b""[..], b"x", &[7u8; 512][..], &[9u8; 1500][..]] {
            let (header, trailer) = one_file_tar("/var/lib/kubelab/imports/a.tar", contents.len() as u64).unwrap();
            let archive = [header, contents.to_vec(), trailer].concat();
            assert_eq!(archive.len() % 512, 0);
            let mut entries = Vec::new();
            for entry in tar::Archive::new(&archive[..]).entries().unwrap() {
                let mut entry = entry.unwrap();
                let mut read = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut read).unwrap();
                entries.push((entry.path().unwrap().display().to_string(), read));
            }
            assert_eq!(entries, vec![("var/lib/kubelab/imports/a.tar".to_string(), contents.to_vec())]);
        }
    }
}
