//! A lab's kubeconfig, and its place in the user's: merged in on `up` and
//! taken out on `down`, as `kind` does, so plain `kubectl` talks to the lab.
//!
//! The user's file is edited as a YAML tree, not through typed structs, so
//! every entry and field we do not know survives a merge with its meaning.
//! Comments do not (kubectl drops them too when it rewrites the file).

use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::files::{self, Lock};

/// Sections whose entries are named and merged one by one.
const SECTIONS: [&str; 3] = ["clusters", "users", "contexts"];
const CURRENT_CONTEXT: &str = "current-context";

/// A kubeconfig document. Fields are in the order kubectl writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub clusters: Vec<NamedCluster>,
    pub contexts: Vec<NamedContext>,
    pub current_context: String,
    pub kind: String,
    pub preferences: Mapping,
    pub users: Vec<NamedUser>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub cluster: Cluster,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    /// Base64 of the CA's PEM.
    pub certificate_authority_data: String,
    pub server: String,
    /// The name to check the server's certificate against, when `server`
    /// is an address the certificate does not carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContext {
    pub context: Context,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    pub cluster: String,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    pub user: User,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct User {
    /// Base64 of the certificate's PEM.
    pub client_certificate_data: String,
    /// Base64 of the key's PEM.
    pub client_key_data: String,
}

/// The name of a lab's cluster, user and context: `lab-<lab>`.
pub fn entry_name(lab: &str) -> String {
    format!("lab-{lab}")
}

/// The kubeconfig of one lab: cluster, user and context all named
/// `lab-<lab>`, and that context current.
pub fn for_lab(lab: &str, server: &str, tls_server_name: Option<&str>, ca_pem: &str, client_cert_pem: &str, client_key_pem: &str) -> Kubeconfig {
    let name = entry_name(lab);
    let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    Kubeconfig {
        api_version: "v1".into(),
        clusters: vec![NamedCluster {
            cluster: Cluster { certificate_authority_data: b64(ca_pem), server: server.into(), tls_server_name: tls_server_name.map(str::to_string) },
            name: name.clone(),
        }],
        contexts: vec![NamedContext { context: Context { cluster: name.clone(), user: name.clone() }, name: name.clone() }],
        current_context: name.clone(),
        kind: "Config".into(),
        preferences: Mapping::new(),
        users: vec![NamedUser { name, user: User { client_certificate_data: b64(client_cert_pem), client_key_data: b64(client_key_pem) } }],
    }
}

impl Kubeconfig {
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a kubeconfig serializes")
    }
}

/// The file kubectl would add a new entry to: with `$KUBECONFIG` (a
/// ':'-separated list, empty entries skipped), its first file that exists,
/// or its last if none does; else `~/.kube/config`.
pub fn user_kubeconfig_path() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    choose_path(std::env::var_os("KUBECONFIG").as_deref(), home.as_deref(), |p| p.exists())
}

/// [`user_kubeconfig_path`] with the environment and the file system passed
/// in, so tests need not change them.
fn choose_path(kubeconfig: Option<&OsStr>, home: Option<&Path>, exists: impl Fn(&Path) -> bool) -> Result<PathBuf> {
    let listed: Vec<PathBuf> = match kubeconfig {
        Some(v) => std::env::split_paths(v).filter(|p| !p.as_os_str().is_empty()).collect(),
        None => Vec::new(),
    };
    if let Some(last) = listed.last() {
        return Ok(listed.iter().find(|p| exists(p)).unwrap_or(last).clone());
    }
    match home {
        Some(home) if !home.as_os_str().is_empty() => Ok(home.join(".kube").join("config")),
        _ => bail!("cannot tell where the kubeconfig goes: set HOME or KUBECONFIG"),
    }
}

/// Merges the lab's cluster, user and context into the file at `path`
/// (created, with its folder, if missing), replacing entries of the same
/// names and keeping everything else, and makes the lab's context current.
/// Atomic, and serialised with other `lab`s and kubectl by `<path>.lock`.
pub fn merge_into(path: &Path, lab_config: &Kubeconfig) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let _lock = Lock::acquire(lock_path(path))?;
    let target = follow(path);
    let (doc, mode) = match files::read_optional(&target)? {
        Some(text) => (parse(&target, &text)?, mode_of(&target)?),
        None => (Mapping::new(), 0o600),
    };
    let merged = merge(doc, lab_config).map_err(|why| anyhow!("{}: {why}; it was left untouched", target.display()))?;
    files::write_atomic(&target, serde_yaml::to_string(&merged)?.as_bytes(), mode)
}

/// Removes the lab's cluster, user and context from the file at `path`,
/// and clears current-context if it was the lab's. A missing file or
/// missing entries are fine: nothing is done.
pub fn remove_from(path: &Path, lab: &str) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let _lock = Lock::acquire(lock_path(path))?;
    let target = follow(path);
    let Some(text) = files::read_optional(&target)? else {
        return Ok(());
    };
    let mut doc = parse(&target, &text)?;
    if remove(&mut doc, &entry_name(lab)) {
        files::write_atomic(&target, serde_yaml::to_string(&doc)?.as_bytes(), mode_of(&target)?)?;
    }
    Ok(())
}

/// `<path>.lock`, kubectl's lock for the same file.
fn lock_path(path: &Path) -> PathBuf {
    let mut lock = OsString::from(path.as_os_str());
    lock.push(".lock");
    PathBuf::from(lock)
}

/// The file behind a symlinked kubeconfig, so that writing it keeps the
/// link rather than replacing it with a file.
fn follow(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The mode the rewritten file keeps.
fn mode_of(path: &Path) -> Result<u32> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(meta.permissions().mode() & 0o7777)
}

/// The document in `text`; an empty one is an empty kubeconfig.
fn parse(path: &Path, text: &str) -> Result<Mapping> {
    let value: Value = serde_yaml::from_str(text).with_context(|| format!("{} is not valid YAML; it was left untouched", path.display()))?;
    match value {
        Value::Null => Ok(Mapping::new()),
        Value::Mapping(m) => Ok(m),
        _ => bail!("{} is not a kubeconfig (its top level is not a mapping); it was left untouched", path.display()),
    }
}

/// `doc` with the lab's entries in it (replacing same-named ones) and the
/// lab's context current; or why that cannot be done.
fn merge(mut doc: Mapping, lab: &Kubeconfig) -> std::result::Result<Value, String> {
    let lab = serde_yaml::to_value(lab).expect("a kubeconfig serializes");
    if doc.is_empty() {
        return Ok(lab);
    }
    for key in SECTIONS {
        let slot = doc.entry(key.into()).or_insert(Value::Null);
        if slot.is_null() {
            *slot = Value::Sequence(Vec::new());
        }
        let Value::Sequence(list) = slot else {
            return Err(format!("its {key} is not a list"));
        };
        for entry in lab[key].as_sequence().into_iter().flatten() {
            let name = entry["name"].as_str().expect("lab entries are named");
            upsert(list, entry.clone(), name);
        }
    }
    for key in ["apiVersion", "kind", "preferences"] {
        if !doc.contains_key(key) {
            doc.insert(key.into(), lab[key].clone());
        }
    }
    doc.insert(CURRENT_CONTEXT.into(), lab[CURRENT_CONTEXT].clone());
    Ok(Value::Mapping(doc))
}

/// Puts `entry` where the first entry named `name` is (dropping any later
/// ones of that name), or at the end.
fn upsert(list: &mut Vec<Value>, entry: Value, name: &str) {
    let named = |v: &Value| v.get("name").and_then(Value::as_str) == Some(name);
    match list.iter().position(named) {
        Some(first) => {
            list[first] = entry;
            let mut i = 0;
            list.retain(|v| {
                i += 1;
                i - 1 <= first || !named(v)
            });
        }
        None => list.push(entry),
    }
}

/// Takes entries named `name` out of `doc`; whether anything changed.
fn remove(doc: &mut Mapping, name: &str) -> bool {
    let mut changed = false;
    for key in SECTIONS {
        if let Some(Value::Sequence(list)) = doc.get_mut(key) {
            let before = list.len();
            list.retain(|v| v.get("name").and_then(Value::as_str) != Some(name));
            changed |= list.len() != before;
        }
    }
    if let Some(current) = doc.get_mut(CURRENT_CONTEXT) {
        if current.as_str() == Some(name) {
            // What kubectl writes for "no current context".
            *current = Value::String(String::new());
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n";

    fn lab(name: &str, server: &str) -> Kubeconfig {
        for_lab(name, server, Some("kubernetes"), CA, CERT, KEY)
    }

    fn read(path: &Path) -> Value {
        serde_yaml::from_str(&fs::read_to_string(path).unwrap()).unwrap()
    }

    fn names(doc: &Value, key: &str) -> Vec<String> {
        doc[key].as_sequence().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect()
    }

    /// Someone's kubeconfig: another cluster, with fields we do not know.
    const THEIRS: &str = r#"apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://prod.example:6443
    proxy-url: http://proxy:3128
    extensions:
    - name: client.authentication.k8s.io/exec
      extension: {audience: prod}
users:
- name: prod-admin
  user:
    exec: {apiVersion: client.authentication.k8s.io/v1, command: get-token}
contexts:
- name: prod
  context: {cluster: prod, user: prod-admin, namespace: payments}
current-context: prod
preferences: {colors: true}
x-unknown-top-level: [1, 2]
"#;

    #[test]
    fn lab_kubeconfig_has_kubectls_field_names() {
        let yaml = lab("dev", "https://127.0.0.1:6443").to_yaml();
        let doc: Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(doc["apiVersion"], "v1");
        assert_eq!(doc["kind"], "Config");
        assert_eq!(doc["current-context"], "lab-dev");
        assert_eq!(doc["preferences"], Value::Mapping(Mapping::new()));
        let cluster = &doc["clusters"][0];
        assert_eq!(cluster["name"], "lab-dev");
        assert_eq!(cluster["cluster"]["server"], "https://127.0.0.1:6443");
        assert_eq!(cluster["cluster"]["tls-server-name"], "kubernetes");
        let ca = cluster["cluster"]["certificate-authority-data"].as_str().unwrap();
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(ca).unwrap(), CA.as_bytes());
        let user = &doc["users"][0];
        assert_eq!(user["name"], "lab-dev");
        let key = user["user"]["client-key-data"].as_str().unwrap();
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(key).unwrap(), KEY.as_bytes());
        assert!(user["user"]["client-certificate-data"].is_string());
        let context = &doc["contexts"][0];
        assert_eq!((context["name"].as_str(), context["context"]["cluster"].as_str()), (Some("lab-dev"), Some("lab-dev")));
        assert_eq!(context["context"]["user"], "lab-dev");

        let without = for_lab("dev", "https://lab-apiserver-1:6443", None, CA, CERT, KEY).to_yaml();
        assert!(!without.contains("tls-server-name"), "{without}");
    }

    #[test]
    fn merge_into_a_missing_file_creates_it_private() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("home/.kube/config");
        merge_into(&path, &lab("dev", "https://127.0.0.1:6443")).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let parsed: Kubeconfig = serde_yaml::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(parsed, lab("dev", "https://127.0.0.1:6443"));
        assert!(!lock_path(&path).exists());
    }

    #[test]
    fn merge_keeps_other_entries_and_unknown_fields() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config");
        fs::write(&path, THEIRS).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        merge_into(&path, &lab("dev", "https://127.0.0.1:6443")).unwrap();

        let before: Value = serde_yaml::from_str(THEIRS).unwrap();
        let after = read(&path);
        for key in SECTIONS {
            assert_eq!(after[key][0], before[key][0], "{key}: their entry, field for field");
            assert_eq!(names(&after, key), [&names(&before, key)[0], "lab-dev"], "{key}");
        }
        assert_eq!(after["preferences"], before["preferences"]);
        assert_eq!(after["x-unknown-top-level"], before["x-unknown-top-level"]);
        assert_eq!(after["current-context"], "lab-dev");
        assert_eq!(after["clusters"][1]["cluster"]["server"], "https://127.0.0.1:6443");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640, "mode kept");
    }

    #[test]
    fn merging_twice_replaces_rather_than_duplicates() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config");
        fs::write(&path, THEIRS).unwrap();
        merge_into(&path, &lab("dev", "https://127.0.0.1:6443")).unwrap();
        merge_into(&path, &lab("dev", "https://127.0.0.1:7443")).unwrap();
        merge_into(&path, &lab("other", "https://127.0.0.1:8443")).unwrap();
        let (before, after): (Value, _) = (serde_yaml::from_str(THEIRS).unwrap(), read(&path));
        for key in SECTIONS {
            assert_eq!(names(&after, key), [&names(&before, key)[0], "lab-dev", "lab-other"], "{key}");
        }
        assert_eq!(after["clusters"][1]["cluster"]["server"], "https://127.0.0.1:7443");
        assert_eq!(after["current-context"], "lab-other");
    }

    #[test]
    fn remove_from_takes_out_only_the_labs_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config");
        fs::write(&path, THEIRS).unwrap();
        merge_into(&path, &lab("dev", "https://127.0.0.1:6443")).unwrap();
        merge_into(&path, &lab("other", "https://127.0.0.1:8443")).unwrap();

        // Not the current context: current-context stays.
        remove_from(&path, "dev").unwrap();
        let (before, after): (Value, _) = (serde_yaml::from_str(THEIRS).unwrap(), read(&path));
        for key in SECTIONS {
            assert_eq!(names(&after, key), [&names(&before, key)[0], "lab-other"], "{key}");
        }
        assert_eq!(after["current-context"], "lab-other");

        // The current context: current-context is cleared.
        remove_from(&path, "other").unwrap();
        let after = read(&path);
        for key in SECTIONS {
            assert_eq!(after[key], before[key], "{key}");
        }
        assert_eq!(after["current-context"], "");
        assert_eq!(after["x-unknown-top-level"], before["x-unknown-top-level"]);
    }

    #[test]
    fn remove_from_with_nothing_to_remove_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config");
        remove_from(&path, "dev").unwrap();
        assert!(!path.exists());
        fs::write(&path, THEIRS).unwrap();
        remove_from(&path, "dev").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), THEIRS, "not even rewritten");
    }

    #[test]
    fn invalid_yaml_is_an_error_and_the_file_is_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config");
        for text in ["clusters: [unclosed\n  - {", "- just\n- a list\n", "clusters: 3\n"] {
            fs::write(&path, text).unwrap();
            let err = merge_into(&path, &lab("dev", "https://127.0.0.1:6443")).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert_eq!(fs::read_to_string(&path).unwrap(), text);
            if text.starts_with("clusters: [") {
                assert!(remove_from(&path, "dev").is_err());
                assert_eq!(fs::read_to_string(&path).unwrap(), text);
            }
        }
        let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["config"], "no lock or temporary file left");
    }

    #[test]
    fn an_empty_file_is_an_empty_kubeconfig() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config");
        fs::write(&path, "").unwrap();
        merge_into(&path, &lab("dev", "https://127.0.0.1:6443")).unwrap();
        assert_eq!(names(&read(&path), "clusters"), ["lab-dev"]);
    }

    #[test]
    fn a_held_lock_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config");
        fs::write(&path, THEIRS).unwrap();
        let lock = lock_path(&path);
        fs::write(&lock, "").unwrap();
        let err = merge_into(&path, &lab("dev", "https://127.0.0.1:6443")).unwrap_err();
        assert!(format!("{err:#}").contains(&lock.display().to_string()), "{err:#}");
        assert_eq!(fs::read_to_string(&path).unwrap(), THEIRS);
        assert!(lock.exists(), "someone else's lock is not ours to remove");
    }

    #[test]
    fn a_symlinked_kubeconfig_stays_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real-config");
        let link = tmp.path().join("config");
        fs::write(&real, THEIRS).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        merge_into(&link, &lab("dev", "https://127.0.0.1:6443")).unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(names(&read(&real), "clusters"), ["prod", "lab-dev"]);
    }

    #[test]
    fn kubeconfig_path_choice() {
        let home = Some(Path::new("/home/u"));
        let none = |_: &Path| false;
        let only = |want: &'static str| move |p: &Path| p == Path::new(want);

        assert_eq!(choose_path(None, home, none).unwrap(), Path::new("/home/u/.kube/config"));
        assert_eq!(choose_path(Some(OsStr::new("")), home, none).unwrap(), Path::new("/home/u/.kube/config"));
        assert_eq!(choose_path(Some(OsStr::new("::")), home, none).unwrap(), Path::new("/home/u/.kube/config"));
        assert_eq!(choose_path(Some(OsStr::new("/k/one")), home, none).unwrap(), Path::new("/k/one"));
        // Several files: the first that exists...
        let several = Some(OsStr::new(":/k/a::/k/b:/k/c:"));
        assert_eq!(choose_path(several, home, |_| true).unwrap(), Path::new("/k/a"));
        assert_eq!(choose_path(several, home, only("/k/b")).unwrap(), Path::new("/k/b"));
        // ...or the last if none does, as kubectl does.
        assert_eq!(choose_path(several, home, none).unwrap(), Path::new("/k/c"));
        assert!(choose_path(None, None, none).is_err());
    }
}
