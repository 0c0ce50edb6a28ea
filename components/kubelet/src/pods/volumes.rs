//! A pod's volumes as folders on the node, under upstream's layout
//! (`pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`): emptyDir,
//! configMap, secret, downwardAPI, projected (of those three) and hostPath;
//! a persistentVolumeClaim is the folder of the hostPath or local volume
//! it is bound to.
//! Files are written whole, so a container never reads half of one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume};
use kube::api::Api;

use super::config::{write_bytes, write_file, ConfigError};
use crate::paths;

/// Makes every volume of `pod` and returns name → folder.
pub async fn prepare(client: &kube::Client, root: &Path, pod: &Pod) -> Result<BTreeMap<String, PathBuf>, ConfigError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out = BTreeMap::new();
    for v in pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default() {
        let path = prepare_one(client, root, &uid, &ns, pod, &v).await?;
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

async fn prepare_one(client: &kube::Client, root: &Path, uid: &str, ns: &str, pod: &Pod, v: &Volume) -> Result<PathBuf, ConfigError> {
    let dir = |plugin: &str| paths::volume_dir(root, uid, plugin, &v.name);
    let made = |d: PathBuf| -> Result<PathBuf, ConfigError> {
        std::fs::create_dir_all(&d).map_err(|e| ConfigError(format!("creating volume {:?}: {e}", v.name)))?;
        Ok(d)
    };
    if v.empty_dir.is_some() {
        let d = made(dir("empty-dir"))?;
        // Writable by whoever the containers run as, as upstream's 0777.
        set_mode(&d, 0o777);
        return Ok(d);
    }
    if let Some(h) = &v.host_path {
        let p = PathBuf::from(&h.path);
        match h.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => {
                std::fs::create_dir_all(&p).map_err(|e| ConfigError(format!("hostPath {}: {e}", h.path)))?;
            }
            "FileOrCreate" if !p.exists() => {
                write_file(&p, "").map_err(|e| ConfigError(format!("hostPath {}: {e}", h.path)))?;
            }
            "" => {}
            _ if !p.exists() => return Err(ConfigError(format!("hostPath type check failed: {} does not exist", h.path))),
            _ => {}
        }
        return Ok(p);
    }
    if let Some(cm) = &v.config_map {
        let files = config_map_files(client, ns, &cm.name, cm.items.as_deref(), cm.optional.unwrap_or(false)).await?;
        let d = made(dir("configmap"))?;
        write_files(&d, &files, cm.default_mode.unwrap_or(0o644))?;
        return Ok(d);
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let files = secret_files(client, ns, &name, s.items.as_deref(), s.optional.unwrap_or(false)).await?;
        let d = made(dir("secret"))?;
        write_files(&d, &files, s.default_mode.unwrap_or(0o644))?;
        return Ok(d);
    }
    if let Some(d_api) = &v.downward_api {
        let files = downward_files(pod, d_api.items.as_deref().unwrap_or_default())?;
        let d = made(dir("downward-api"))?;
        write_files(&d, &files, d_api.default_mode.unwrap_or(0o644))?;
        return Ok(d);
    }
    if let Some(p) = &v.projected {
        let mut files = vec![];
        for source in p.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                files.extend(config_map_files(client, ns, &cm.name, cm.items.as_deref(), cm.optional.unwrap_or(false)).await?);
            } else if let Some(s) = &source.secret {
                files.extend(secret_files(client, ns, &s.name, s.items.as_deref(), s.optional.unwrap_or(false)).await?);
            } else if let Some(d) = &source.downward_api {
                files.extend(downward_files(pod, d.items.as_deref().unwrap_or_default())?);
            } else if source.service_account_token.is_some() || source.cluster_trust_bundle.is_some() {
                return Err(ConfigError(format!("projected volume {:?}: service account tokens and trust bundles are not served by kubelab yet", v.name)));
            }
        }
        let d = made(dir("projected"))?;
        write_files(&d, &files, p.default_mode.unwrap_or(0o644))?;
        return Ok(d);
    }
    if let Some(c) = &v.persistent_volume_claim {
        return claimed_path(client, ns, &c.claim_name).await;
    }
    Err(ConfigError(format!(
        "volume {:?} is of a kind kubelab's kubelet does not mount (emptyDir, hostPath, configMap, secret, downwardAPI, projected and persistentVolumeClaim are)",
        v.name
    )))
}

/// The folder a claim's volume is: the claim must be bound, and its
/// volume a hostPath (as the local-path provisioner makes) or a local
/// volume. The scheduler placed the pod where the volume's node affinity
/// allows, so the folder is on this node.
async fn claimed_path(client: &kube::Client, ns: &str, claim_name: &str) -> Result<PathBuf, ConfigError> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let claim = claims
        .get_opt(claim_name)
        .await
        .map_err(|e| ConfigError(format!("error processing PVC {ns}/{claim_name}: {e}")))?
        .ok_or_else(|| ConfigError(format!("persistentvolumeclaim {claim_name:?} not found")))?;
    let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let Some(volume_name) = claim.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty() && bound) else {
        return Err(ConfigError(format!("error processing PVC {ns}/{claim_name}: PVC is not bound")));
    };
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let volume = volumes
        .get_opt(&volume_name)
        .await
        .map_err(|e| ConfigError(format!("error processing PVC {ns}/{claim_name}: {e}")))?
        .ok_or_else(|| ConfigError(format!("error processing PVC {ns}/{claim_name}: persistentvolume {volume_name:?} not found")))?;
    let spec = volume.spec.unwrap_or_default();
    if let Some(h) = spec.host_path {
        let p = PathBuf::from(&h.path);
        match h.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => {
                std::fs::create_dir_all(&p).map_err(|e| ConfigError(format!("persistentvolume {volume_name:?}: hostPath {}: {e}", h.path)))?
            }
            "" => {}
            _ if !p.exists() => return Err(ConfigError(format!("persistentvolume {volume_name:?}: hostPath type check failed: {} does not exist", h.path))),
            _ => {}
        }
        return Ok(p);
    }
    if let Some(local) = spec.local {
        let p = PathBuf::from(&local.path);
        if !p.exists() {
            return Err(ConfigError(format!("persistentvolume {volume_name:?}: local path {:?} does not exist", local.path)));
        }
        return Ok(p);
    }
    Err(ConfigError(format!("persistentvolume {volume_name:?} is of a kind kubelab's kubelet does not mount (hostPath and local are)")))
}

/// A file of a volume: its path inside the volume, content, mode.
type File = (String, Vec<u8>, Option<i32>);

fn pick(data: BTreeMap<String, Vec<u8>>, items: Option<&[KeyToPath]>, what: &str) -> Result<Vec<File>, ConfigError> {
    match items {
        None => Ok(data.into_iter().map(|(k, v)| (k, v, None)).collect()),
        Some(items) => items
            .iter()
            .map(|i| {
                data.get(&i.key)
                    .map(|v| (i.path.clone(), v.clone(), i.mode))
                    .ok_or_else(|| ConfigError(format!("configmap references non-existent config key: {}", i.key).replace("configmap", what)))
            })
            .collect(),
    }
}

async fn config_map_files(client: &kube::Client, ns: &str, name: &str, items: Option<&[KeyToPath]>, optional: bool) -> Result<Vec<File>, ConfigError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await.map_err(|e| ConfigError(format!("reading configmap {name:?}: {e}")))? {
        Some(cm) => {
            let mut data: BTreeMap<String, Vec<u8>> = cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
            data.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
            pick(data, items, "configmap")
        }
        None if optional => Ok(vec![]),
        None => Err(ConfigError(format!("configmap {name:?} not found"))),
    }
}

async fn secret_files(client: &kube::Client, ns: &str, name: &str, items: Option<&[KeyToPath]>, optional: bool) -> Result<Vec<File>, ConfigError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await.map_err(|e| ConfigError(format!("reading secret {name:?}: {e}")))? {
        Some(s) => pick(s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect(), items, "secret"),
        None if optional => Ok(vec![]),
        None => Err(ConfigError(format!("secret {name:?} not found"))),
    }
}

/// The values of a ConfigMap or Secret for env (secrets decoded).
pub async fn env_source(client: &kube::Client, ns: &str, name: &str, secret: bool) -> Result<Option<BTreeMap<String, String>>, ConfigError> {
    if secret {
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        let s = api.get_opt(name).await.map_err(|e| ConfigError(format!("reading secret {name:?}: {e}")))?;
        Ok(s.map(|s| s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned())).collect()))
    } else {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let cm = api.get_opt(name).await.map_err(|e| ConfigError(format!("reading configmap {name:?}: {e}")))?;
        Ok(cm.map(|cm| cm.data.unwrap_or_default()))
    }
}

fn downward_files(pod: &Pod, items: &[DownwardAPIVolumeFile]) -> Result<Vec<File>, ConfigError> {
    let meta = &pod.metadata;
    let pairs = |m: &Option<BTreeMap<String, String>>| m.iter().flatten().map(|(k, v)| format!("{k}=\"{v}\"\n")).collect::<String>();
    items
        .iter()
        .map(|i| {
            let value = match i.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                Some("metadata.name") => meta.name.clone().unwrap_or_default(),
                Some("metadata.namespace") => meta.namespace.clone().unwrap_or_default(),
                Some("metadata.uid") => meta.uid.clone().unwrap_or_default(),
                Some("metadata.labels") => pairs(&meta.labels),
                Some("metadata.annotations") => pairs(&meta.annotations),
                Some(other) => return Err(ConfigError(format!("downwardAPI field {other:?} is not supported in volumes"))),
                None => return Err(ConfigError(format!("downwardAPI item {:?}: only fieldRef is supported", i.path))),
            };
            Ok((i.path.clone(), value.into_bytes(), i.mode))
        })
        .collect()
}

fn write_files(dir: &Path, files: &[File], default_mode: i32) -> Result<(), ConfigError> {
    for (rel, content, mode) in files {
        if rel.starts_with('/') || rel.split('/').any(|p| p == "..") {
            return Err(ConfigError(format!("volume file path {rel:?} must be relative and stay inside the volume")));
        }
        let path = dir.join(rel);
        write_bytes(&path, content).map_err(|e| ConfigError(format!("writing {}: {e}", path.display())))?;
        set_mode(&path, mode.unwrap_or(default_mode) as u32);
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}
