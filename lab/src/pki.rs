//! A lab's PKI on the host: one CA, the apiserver's serving certificate, a
//! client certificate per component and one for the admin kubeconfig, and
//! the service-account signing key pair. Subjects follow kubeadm's, so the
//! apiserver's authorizer sees the users and groups it expects.
//!
//! etcd has a CA of its own (`etcd/ca.crt`, as kubeadm lays it out): etcd
//! trusts only that one for clients and peers, so none of the many client
//! certificates of the main CA (kubelets', kube-proxy's, the admin's) opens
//! the store. Under it: each member's serving and peer certificates, the
//! apiserver's `apiserver-etcd-client` and `etcd/healthcheck-client` for
//! the health gate and `etcdctl`.
//!
//! It lives in `<state_dir>/pki` and is kept across `lab up`s: the CA (and
//! the service-account key) once made are never replaced, because every
//! kubeconfig and token issued under them would stop working; leaves are
//! cheap and are reissued whenever they no longer say what is asked.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::files::{self, Lock};
use crate::state;

pub const APISERVER: &str = "apiserver";
pub const ADMIN: &str = "admin";
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";
pub const SCHEDULER: &str = "kube-scheduler";
pub const KUBE_PROXY: &str = "kube-proxy";
pub const APISERVER_KUBELET_CLIENT: &str = "apiserver-kubelet-client";
/// Cluster DNS's client identity, the name its service account would have.
pub const CLUSTER_DNS: &str = "cluster-dns";
/// The apiserver's client certificate towards etcd (etcd's CA).
pub const APISERVER_ETCD_CLIENT: &str = "apiserver-etcd-client";
/// The client certificate of etcd's health gate and of `etcdctl` in the
/// etcd containers (etcd's CA).
pub const ETCD_HEALTHCHECK_CLIENT: &str = "etcd/healthcheck-client";

/// The serving certificate of etcd member `member` (`etcd-0`), for clients
/// (etcd's CA).
pub fn etcd_server(member: &str) -> String {
    format!("etcd/server-{member}")
}

/// The certificate etcd member `member` shows its peers, both as a server
/// and as a client (etcd's CA).
pub fn etcd_peer(member: &str) -> String {
    format!("etcd/peer-{member}")
}

/// The identity of the kubelet on `node`.
pub fn kubelet(node: &str) -> String {
    format!("kubelet-{node}")
}

const CA_CN: &str = "kubelab-ca";
const ETCD_CA_CN: &str = "kubelab-etcd-ca";
/// Where etcd's CA and certificates live, inside the PKI folder.
pub const ETCD_DIR: &str = "etcd";
const CA_DAYS: i64 = 3650;
const LEAF_DAYS: i64 = 365;
/// A leaf this close to its end is reissued.
const RENEW_DAYS: i64 = 30;
/// Certificates start a little in the past, for clocks a little behind.
const BACKDATE: Duration = Duration::minutes(5);
const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;

/// Where the PKI of lab `lab` lives: `<state_dir>/pki`.
pub fn dir(lab: &str) -> Result<PathBuf> {
    Ok(state::state_dir(lab)?.join("pki"))
}

/// Names the apiserver's serving certificate must carry besides the fixed
/// ones (`kubernetes…`, `localhost`, 127.0.0.1): its container names and
/// the first IP of the service subnet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServingNames {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

/// An etcd member and the DNS names it is reached at (its alias and its
/// container name on the lab network). Docker gives addresses only once
/// the containers start, after the PKI is made, so names are all there is;
/// `localhost` and 127.0.0.1 are added for what runs inside the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdMember {
    pub name: String,
    pub dns: Vec<String>,
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A lab's PKI, loaded (and completed) from its folder. Files there:
/// `ca.crt ca.key <identity>.crt <identity>.key sa.key sa.pub`, and
/// `etcd/ca.crt etcd/ca.key etcd/<identity>.crt etcd/<identity>.key`.
#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
    ca_pem: String,
    etcd_ca_pem: String,
    identities: BTreeMap<String, Identity>,
    sa_key_pem: String,
    sa_pub_pem: String,
}

impl Pki {
    /// Loads the lab's PKI from `dir`, creating what is missing. The CA is
    /// created once and kept; a leaf is (re)issued when missing, when its
    /// subject, names or usages no longer match what is asked, when it is
    /// not the CA's, or when it expires within 30 days.
    ///
    /// etcd's CA and leaves are kept and reissued by the same rules.
    pub fn load_or_create(dir: &Path, apiserver: &ServingNames, nodes: &[String], etcd: &[EtcdMember]) -> Result<Pki> {
        let wanted = leaves(apiserver, nodes, etcd)?;
        files::create_private_dir(dir)?;
        files::create_private_dir(&dir.join(ETCD_DIR))?;
        // Two `lab up`s of one lab must not interleave a key and a cert.
        let _lock = Lock::acquire(dir.join(".lock"))?;
        let now = OffsetDateTime::now_utc();
        let ca = Ca::load_or_create(dir, "ca", CA_CN, now)?;
        let etcd_ca = Ca::load_or_create(dir, &format!("{ETCD_DIR}/ca"), ETCD_CA_CN, now)?;
        let mut identities = BTreeMap::new();
        for leaf in &wanted {
            let signer = match leaf.ca {
                Signer::Main => &ca,
                Signer::Etcd => &etcd_ca,
            };
            let identity = leaf.load_or_issue(dir, signer, now)?;
            identities.insert(leaf.name.clone(), identity);
        }
        let (sa_key_pem, sa_pub_pem) = service_account(dir)?;
        Ok(Pki { dir: dir.to_path_buf(), ca_pem: ca.cert_pem, etcd_ca_pem: etcd_ca.cert_pem, identities, sa_key_pem, sa_pub_pem })
    }

    /// The folder holding the files, e.g. to mount into containers.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// etcd's CA: the only one etcd trusts, and the one its members'
    /// certificates are checked against.
    pub fn etcd_ca_pem(&self) -> &str {
        &self.etcd_ca_pem
    }

    /// The certificate and key of a named identity: [`APISERVER`] (serving),
    /// [`ADMIN`], [`CONTROLLER_MANAGER`], [`SCHEDULER`], [`KUBE_PROXY`],
    /// [`APISERVER_KUBELET_CLIENT`], or [`kubelet`]`(node)` (client, and
    /// serving for the kubelet's own port); under etcd's CA,
    /// [`APISERVER_ETCD_CLIENT`], [`ETCD_HEALTHCHECK_CLIENT`],
    /// [`etcd_server`]`(member)` and [`etcd_peer`]`(member)`.
    pub fn identity(&self, name: &str) -> Option<&Identity> {
        self.identities.get(name)
    }

    /// The key the apiserver signs service-account tokens with.
    pub fn service_account_key_pem(&self) -> &str {
        &self.sa_key_pem
    }

    /// The key tokens are verified with.
    pub fn service_account_pub_pem(&self) -> &str {
        &self.sa_pub_pem
    }
}

/// The CA as read from (or written to) disk, ready to sign.
struct Ca {
    cert_pem: String,
    der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// The CA whose files are `<dir>/<stem>.key` and `<dir>/<stem>.crt`,
    /// created with common name `cn` when neither exists.
    fn load_or_create(dir: &Path, stem: &str, cn: &str, now: OffsetDateTime) -> Result<Ca> {
        let key_path = dir.join(format!("{stem}.key"));
        let cert_path = dir.join(format!("{stem}.crt"));
        let refuse = "refusing to replace the lab's CA: fix the file, or remove the whole folder to start a new CA \
                      (labs and kubeconfigs made with the old one must then be made again)";
        let key = match files::read_optional(&key_path)? {
            Some(pem) => KeyPair::from_pem(&pem).map_err(|e| anyhow!("{} is not a valid private key ({e}); {refuse}", key_path.display()))?,
            None if cert_path.exists() => {
                bail!("{} exists without its key {}; {refuse}", cert_path.display(), key_path.display())
            }
            None => {
                let key = KeyPair::generate()?;
                files::write_atomic(&key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
                key
            }
        };
        let cert_pem = match files::read_optional(&cert_path)? {
            Some(pem) => pem,
            // The key is written first, so a run stopped in between leaves a
            // key and no certificate: a new self-signed certificate for the
            // same key and subject is the same CA to every leaf it signed.
            None => {
                let pem = ca_params(cn, now).self_signed(&key).context("cannot sign the lab's CA")?.pem();
                files::write_atomic(&cert_path, pem.as_bytes(), CERT_MODE)?;
                pem
            }
        };
        let der = pem_der(&cert_pem).map_err(|e| anyhow!("{}: {e}; {refuse}", cert_path.display()))?;
        let cert = parse(&der).map_err(|e| anyhow!("{}: {e}; {refuse}", cert_path.display()))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            bail!("{} is not the certificate of {}; {refuse}", cert_path.display(), key_path.display());
        }
        if cert.validity().not_after.timestamp() <= now.unix_timestamp() {
            bail!("the lab's CA {} has expired; {refuse}", cert_path.display());
        }
        let issuer = Issuer::from_ca_cert_der(&der.clone().into(), key).map_err(|e| anyhow!("{}: cannot sign with this CA: {e}", cert_path.display()))?;
        Ok(Ca { cert_pem, der, issuer })
    }
}

fn ca_params(cn: &str, now: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(CA_DAYS);
    params
}

/// Which CA signs a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signer {
    Main,
    Etcd,
}

/// What one leaf certificate must say.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Leaf {
    name: String,
    ca: Signer,
    cn: String,
    org: Option<&'static str>,
    server: bool,
    client: bool,
    dns: BTreeSet<String>,
    ips: BTreeSet<IpAddr>,
}

impl Leaf {
    fn client(name: &str, cn: &str, org: Option<&'static str>) -> Leaf {
        let (dns, ips) = Default::default();
        Leaf { name: name.into(), ca: Signer::Main, cn: cn.into(), org, server: false, client: true, dns, ips }
    }

    /// The same leaf, signed by etcd's CA.
    fn under_etcd(mut self) -> Leaf {
        self.ca = Signer::Etcd;
        self
    }

    /// The identity on disk if it still is what is asked, else a new one.
    fn load_or_issue(&self, dir: &Path, ca: &Ca, now: OffsetDateTime) -> Result<Identity> {
        let cert_path = dir.join(format!("{}.crt", self.name));
        let key_path = dir.join(format!("{}.key", self.name));
        if let (Some(cert_pem), Some(key_pem)) = (files::read_optional(&cert_path)?, files::read_optional(&key_path)?) {
            let identity = Identity { cert_pem, key_pem };
            match self.stale(&identity, ca, now) {
                None => return Ok(identity),
                Some(why) => tracing::info!("reissuing {}: {why}", cert_path.display()),
            }
        }
        let identity = self.issue(ca, now).with_context(|| format!("cannot issue the certificate {}", self.name))?;
        // Key first: if we stop in between, the pair does not match and the
        // next run reissues both.
        files::write_atomic(&key_path, identity.key_pem.as_bytes(), KEY_MODE)?;
        files::write_atomic(&cert_path, identity.cert_pem.as_bytes(), CERT_MODE)?;
        Ok(identity)
    }

    /// Why `identity` must be reissued, if it must.
    ///
    /// The certificate itself is compared with what is asked, rather than
    /// a recorded hash of the request: it is the one source of truth, so a
    /// certificate replaced by hand, one signed by an earlier CA, a key that
    /// does not go with it and the expiry date are all caught the same way,
    /// with no second file to keep in step.
    fn stale(&self, identity: &Identity, ca: &Ca, now: OffsetDateTime) -> Option<String> {
        let der = match pem_der(&identity.cert_pem) {
            Ok(der) => der,
            Err(e) => return Some(e),
        };
        let cert = match parse(&der) {
            Ok(cert) => cert,
            Err(e) => return Some(e),
        };
        let ca = parse(&ca.der).expect("the CA was parsed when loaded");
        if cert.issuer().as_raw() != ca.subject().as_raw() || cert.verify_signature(Some(ca.public_key())).is_err() {
            return Some("not signed by its CA".into());
        }
        if cert.validity().not_after.timestamp() < (now + Duration::days(RENEW_DAYS)).unix_timestamp() {
            return Some(format!("expires within {RENEW_DAYS} days"));
        }
        match KeyPair::from_pem(&identity.key_pem) {
            Ok(key) if key.public_key_raw() == cert.public_key().subject_public_key.data.as_ref() => {}
            _ => return Some("the key is unreadable or not the certificate's".into()),
        }
        let cn: Vec<_> = cert.subject().iter_common_name().map(|a| a.as_str().ok()).collect();
        let orgs: Vec<_> = cert.subject().iter_organization().map(|a| a.as_str().ok()).collect();
        if cn != [Some(self.cn.as_str())] || orgs != self.org.into_iter().map(Some).collect::<Vec<_>>() {
            return Some("the subject changed".into());
        }
        if sans(&cert) != Some((self.dns.clone(), self.ips.clone())) {
            return Some("the names changed".into());
        }
        let eku = cert.extended_key_usage().ok().flatten().map(|e| (e.value.server_auth, e.value.client_auth));
        if eku != Some((self.server, self.client)) {
            return Some("the usages changed".into());
        }
        None
    }

    fn issue(&self, ca: &Ca, now: OffsetDateTime) -> Result<Identity> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        if let Some(org) = self.org {
            params.distinguished_name.push(DnType::OrganizationName, org);
        }
        params.distinguished_name.push(DnType::CommonName, self.cn.as_str());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if self.server {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if self.client {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        for dns in &self.dns {
            let name = dns.clone().try_into().with_context(|| format!("invalid DNS name {dns:?}"))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        params.subject_alt_names.extend(self.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - BACKDATE;
        params.not_after = now + Duration::days(LEAF_DAYS);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca.issuer)?;
        Ok(Identity { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// Every leaf a lab with these names, nodes and etcd members needs.
fn leaves(apiserver: &ServingNames, nodes: &[String], etcd: &[EtcdMember]) -> Result<Vec<Leaf>> {
    let fixed = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"];
    let mut serving = Leaf::client(APISERVER, "kube-apiserver", None);
    (serving.server, serving.client) = (true, false);
    serving.dns = fixed.iter().map(|s| s.to_string()).chain(apiserver.dns.iter().cloned()).collect();
    serving.ips = [IpAddr::from([127, 0, 0, 1])].into_iter().chain(apiserver.ips.iter().copied()).collect();

    let mut all = vec![
        serving,
        Leaf::client(ADMIN, "kubernetes-admin", Some("system:masters")),
        Leaf::client(CONTROLLER_MANAGER, "system:kube-controller-manager", None),
        Leaf::client(SCHEDULER, "system:kube-scheduler", None),
        Leaf::client(KUBE_PROXY, "system:kube-proxy", None),
        Leaf::client(APISERVER_KUBELET_CLIENT, "kube-apiserver-kubelet-client", Some("system:masters")),
        Leaf::client(CLUSTER_DNS, "system:serviceaccount:kube-system:coredns", Some("system:serviceaccounts")),
    ];
    for node in nodes {
        // The node name becomes a file name and a DNS name.
        if node.is_empty() || node.contains('/') || node.starts_with('.') {
            bail!("invalid node name {node:?} for a certificate");
        }
        let mut kubelet = Leaf::client(&kubelet(node), &format!("system:node:{node}"), Some("system:nodes"));
        kubelet.server = true;
        kubelet.dns.insert(node.clone());
        all.push(kubelet);
    }

    // etcd's, with kubeadm's subjects and usages. No organisation: etcd
    // gives a certificate no rights by its subject unless etcd's own auth
    // is enabled, which it is not; the CA is what lets a client in.
    all.push(Leaf::client(APISERVER_ETCD_CLIENT, "kube-apiserver-etcd-client", None).under_etcd());
    all.push(Leaf::client(ETCD_HEALTHCHECK_CLIENT, "kube-etcd-healthcheck-client", None).under_etcd());
    for member in etcd {
        if member.name.is_empty() || member.name.contains('/') || member.name.starts_with('.') {
            bail!("invalid etcd member name {:?} for a certificate", member.name);
        }
        let dns: BTreeSet<String> = member.dns.iter().cloned().chain(["localhost".to_string()]).collect();
        let ips = BTreeSet::from([IpAddr::from([127, 0, 0, 1])]);
        // Server and client usage on both, as kubeadm's: etcd's gRPC
        // gateway dials its own gRPC server with the serving certificate,
        // and a member dials its peers with its peer certificate.
        for name in [etcd_server(&member.name), etcd_peer(&member.name)] {
            let mut leaf = Leaf::client(&name, &member.name, None).under_etcd();
            leaf.server = true;
            (leaf.dns, leaf.ips) = (dns.clone(), ips.clone());
            all.push(leaf);
        }
    }
    Ok(all)
}

/// The service-account key pair: made once and kept (tokens signed with it
/// must stay valid), its public half rewritten if missing or wrong.
fn service_account(dir: &Path) -> Result<(String, String)> {
    let key_path = dir.join("sa.key");
    let pub_path = dir.join("sa.pub");
    let (key, key_pem) = match files::read_optional(&key_path)? {
        Some(pem) => {
            let key = KeyPair::from_pem(&pem).map_err(|e| {
                anyhow!(
                    "{} is not a valid private key ({e}); refusing to replace it (service-account tokens \
                     signed with it would stop working): fix or remove it",
                    key_path.display()
                )
            })?;
            (key, pem)
        }
        None => {
            let key = KeyPair::generate()?;
            let pem = key.serialize_pem();
            files::write_atomic(&key_path, pem.as_bytes(), KEY_MODE)?;
            (key, pem)
        }
    };
    let pub_pem = key.public_key_pem();
    if files::read_optional(&pub_path)?.as_deref() != Some(pub_pem.as_str()) {
        files::write_atomic(&pub_path, pub_pem.as_bytes(), CERT_MODE)?;
    }
    Ok((key_pem, pub_pem))
}

/// The DER of the first certificate in a PEM text.
fn pem_der(pem: &str) -> std::result::Result<Vec<u8>, String> {
    match x509_parser::pem::parse_x509_pem(pem.as_bytes()) {
        Ok((_, p)) if p.label == "CERTIFICATE" => Ok(p.contents),
        Ok((_, p)) => Err(format!("a PEM {:?}, not a CERTIFICATE", p.label)),
        Err(e) => Err(format!("not a PEM certificate ({e})")),
    }
}

fn parse(der: &[u8]) -> std::result::Result<X509Certificate<'_>, String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(format!("not a valid certificate ({e})")),
    }
}

/// The DNS and IP names a certificate carries; `None` if it has others or
/// they cannot be read.
fn sans(cert: &X509Certificate<'_>) -> Option<(BTreeSet<String>, BTreeSet<IpAddr>)> {
    let (mut dns, mut ips) = (BTreeSet::new(), BTreeSet::new());
    let Some(ext) = cert.subject_alternative_name().ok()? else {
        return Some((dns, ips));
    };
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(d) => {
                dns.insert(d.to_string());
            }
            GeneralName::IPAddress(b) => {
                let ip = match b.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(*b).ok()?),
                    16 => IpAddr::from(<[u8; 16]>::try_from(*b).ok()?),
                    _ => return None,
                };
                ips.insert(ip);
            }
            _ => return None,
        }
    }
    Some((dns, ips))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn names(dns: &[&str], ips: &[&str]) -> ServingNames {
        ServingNames { dns: dns.iter().map(|s| s.to_string()).collect(), ips: ips.iter().map(|s| s.parse().unwrap()).collect() }
    }

    fn nodes() -> Vec<String> {
        vec!["node-1".into(), "node-2".into()]
    }

    fn members(names: &[&str]) -> Vec<EtcdMember> {
        names.iter().map(|n| EtcdMember { name: n.to_string(), dns: vec![n.to_string(), format!("lab-{n}")] }).collect()
    }

    fn create(dir: &Path) -> Pki {
        Pki::load_or_create(dir, &names(&["lab-apiserver-1"], &["10.96.0.1"]), &nodes(), &members(&["etcd-0", "etcd-1"])).unwrap()
    }

    /// Every file under `dir` (path relative to it) and its bytes.
    fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        for entry in fs::read_dir(dir).unwrap().map(|e| e.unwrap()) {
            let name = entry.file_name().into_string().unwrap();
            if entry.file_type().unwrap().is_dir() {
                files.extend(snapshot(&entry.path()).into_iter().map(|(k, v)| (format!("{name}/{k}"), v)));
            } else {
                files.insert(name, fs::read(entry.path()).unwrap());
            }
        }
        files
    }

    fn cert_of(pem: &str) -> Vec<u8> {
        pem_der(pem).unwrap()
    }

    #[test]
    fn creates_every_file_with_private_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state/pki");
        create(&dir);
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let files = snapshot(&dir);
        let mut pairs = vec![("ca.crt".to_string(), "ca.key".to_string()), ("sa.pub".into(), "sa.key".into())];
        pairs.push(("etcd/ca.crt".into(), "etcd/ca.key".into()));
        let leaves = [
            "apiserver",
            "admin",
            "kube-controller-manager",
            "kube-scheduler",
            "kube-proxy",
            "apiserver-kubelet-client",
            "cluster-dns",
            "kubelet-node-1",
            "kubelet-node-2",
            "apiserver-etcd-client",
            "etcd/healthcheck-client",
            "etcd/server-etcd-0",
            "etcd/peer-etcd-0",
            "etcd/server-etcd-1",
            "etcd/peer-etcd-1",
        ];
        pairs.extend(leaves.iter().map(|l| (format!("{l}.crt"), format!("{l}.key"))));
        assert_eq!(fs::metadata(dir.join("etcd")).unwrap().permissions().mode() & 0o777, 0o700);
        for (cert, key) in &pairs {
            assert!(files.contains_key(cert), "{cert} missing");
            assert!(files.contains_key(key), "{key} missing");
            let mode = fs::metadata(dir.join(key)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{key} is {mode:o}");
        }
        // Nothing else, and no temporary files or lock left behind.
        assert_eq!(files.len(), 2 * pairs.len(), "{:?}", files.keys());
    }

    #[test]
    fn second_load_reuses_everything_byte_for_byte() {
        let tmp = tempfile::tempdir().unwrap();
        let first = create(tmp.path());
        let before = snapshot(tmp.path());
        let second = create(tmp.path());
        assert_eq!(snapshot(tmp.path()), before);
        assert_eq!(first.ca_pem(), second.ca_pem());
        assert_eq!(first.identity(ADMIN), second.identity(ADMIN));
        assert_eq!(first.service_account_key_pem(), second.service_account_key_pem());
    }

    #[test]
    fn changed_names_reissue_only_the_serving_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        create(tmp.path());
        let before = snapshot(tmp.path());
        let pki = Pki::load_or_create(tmp.path(), &names(&["lab-apiserver-1", "lab-lb"], &["10.96.0.1"]), &nodes(), &members(&["etcd-0", "etcd-1"])).unwrap();
        let after = snapshot(tmp.path());
        let changed: Vec<_> = after.keys().filter(|k| before.get(*k) != after.get(*k)).collect();
        assert_eq!(changed, ["apiserver.crt", "apiserver.key"]);
        let der = cert_of(&pki.identity(APISERVER).unwrap().cert_pem);
        let (dns, _) = sans(&parse(&der).unwrap()).unwrap();
        assert!(dns.contains("lab-lb"));
    }

    #[test]
    fn a_new_node_gets_its_kubelet_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        create(tmp.path());
        let mut more = nodes();
        more.push("node-3".into());
        let pki = Pki::load_or_create(tmp.path(), &names(&["lab-apiserver-1"], &["10.96.0.1"]), &more, &members(&["etcd-0", "etcd-1"])).unwrap();
        assert!(pki.identity(&kubelet("node-3")).is_some());
        assert!(pki.identity("kubelet-node-4").is_none());
    }

    #[test]
    fn leaves_verify_against_the_ca_with_the_right_subjects() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = create(tmp.path());
        let ca_der = cert_of(pki.ca_pem());
        let ca = parse(&ca_der).unwrap();
        assert_eq!(ca.subject().iter_common_name().next().unwrap().as_str().unwrap(), "kubelab-ca");
        assert!(ca.basic_constraints().unwrap().unwrap().value.ca);
        let usage = ca.key_usage().unwrap().unwrap().value;
        assert!(usage.key_cert_sign() && usage.crl_sign());

        // (identity, CN, O, serverAuth, clientAuth, DNS name)
        let cases = [
            (APISERVER, "kube-apiserver", None, true, false, None),
            (ADMIN, "kubernetes-admin", Some("system:masters"), false, true, None),
            (CONTROLLER_MANAGER, "system:kube-controller-manager", None, false, true, None),
            (SCHEDULER, "system:kube-scheduler", None, false, true, None),
            (KUBE_PROXY, "system:kube-proxy", None, false, true, None),
            (APISERVER_KUBELET_CLIENT, "kube-apiserver-kubelet-client", Some("system:masters"), false, true, None),
            (CLUSTER_DNS, "system:serviceaccount:kube-system:coredns", Some("system:serviceaccounts"), false, true, None),
            ("kubelet-node-1", "system:node:node-1", Some("system:nodes"), true, true, Some("node-1")),
        ];
        for (name, cn, org, server, client, dns) in cases {
            let id = pki.identity(name).unwrap_or_else(|| panic!("{name} missing"));
            let der = cert_of(&id.cert_pem);
            let cert = parse(&der).unwrap();
            cert.verify_signature(Some(ca.public_key())).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw());
            assert_eq!(cert.subject().iter_common_name().next().unwrap().as_str().unwrap(), cn, "{name}");
            let orgs: Vec<_> = cert.subject().iter_organization().map(|o| o.as_str().unwrap()).collect();
            assert_eq!(orgs, org.into_iter().collect::<Vec<_>>(), "{name}");
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert_eq!((eku.server_auth, eku.client_auth), (server, client), "{name}");
            let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86400;
            assert_eq!(days, LEAF_DAYS, "{name}");
            if name != APISERVER {
                let (got, ips) = sans(&cert).unwrap();
                assert_eq!(got, dns.iter().map(|s: &&str| s.to_string()).collect(), "{name}");
                assert!(ips.is_empty());
            }
            // The key is the certificate's.
            let key = KeyPair::from_pem(&id.key_pem).unwrap();
            assert_eq!(key.public_key_raw(), cert.public_key().subject_public_key.data.as_ref());
        }

        let der = cert_of(&pki.identity(APISERVER).unwrap().cert_pem);
        let (dns, ips) = sans(&parse(&der).unwrap()).unwrap();
        let want_dns = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", "lab-apiserver-1"];
        assert_eq!(dns, want_dns.iter().map(|s| s.to_string()).collect());
        assert_eq!(ips, ["127.0.0.1", "10.96.0.1"].iter().map(|s| s.parse().unwrap()).collect());
    }

    #[test]
    fn service_account_public_key_matches_private() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = create(tmp.path());
        let key = KeyPair::from_pem(pki.service_account_key_pem()).unwrap();
        assert_eq!(key.public_key_pem(), pki.service_account_pub_pem());
        assert!(pki.service_account_pub_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
    }

    #[test]
    fn corrupt_ca_key_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        create(tmp.path());
        let key = tmp.path().join("ca.key");
        fs::write(&key, "not a key").unwrap();
        let before = snapshot(tmp.path());
        let err = Pki::load_or_create(tmp.path(), &ServingNames::default(), &[], &[]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&key.display().to_string()), "{msg}");
        assert_eq!(snapshot(tmp.path()), before, "nothing replaced");
    }

    #[test]
    fn a_certificate_without_its_ca_key_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        create(tmp.path());
        fs::remove_file(tmp.path().join("ca.key")).unwrap();
        let err = Pki::load_or_create(tmp.path(), &ServingNames::default(), &[], &[]).unwrap_err();
        assert!(format!("{err:#}").contains("ca.key"), "{err:#}");
    }

    #[test]
    fn a_leaf_from_another_ca_or_with_a_wrong_key_is_reissued() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = create(tmp.path());
        let other = tempfile::tempdir().unwrap();
        let foreign = create(other.path());
        fs::copy(other.path().join("admin.crt"), tmp.path().join("admin.crt")).unwrap();
        fs::copy(other.path().join("admin.key"), tmp.path().join("admin.key")).unwrap();
        fs::copy(other.path().join("kube-proxy.key"), tmp.path().join("kube-proxy.key")).unwrap();
        let again = create(tmp.path());
        let admin = again.identity(ADMIN).unwrap();
        assert_ne!(admin, foreign.identity(ADMIN).unwrap());
        assert_ne!(admin, pki.identity(ADMIN).unwrap());
        assert_ne!(again.identity(KUBE_PROXY), pki.identity(KUBE_PROXY));
        assert_eq!(again.identity(SCHEDULER), pki.identity(SCHEDULER));
        assert_eq!(again.ca_pem(), pki.ca_pem());
    }

    #[test]
    fn a_leaf_close_to_its_end_is_reissued() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = create(tmp.path());
        let now = OffsetDateTime::now_utc();
        let ca = Ca::load_or_create(tmp.path(), "ca", CA_CN, now).unwrap();
        let leaf = leaves(&ServingNames::default(), &[], &[]).unwrap().into_iter().find(|l| l.name == ADMIN).unwrap();
        assert_eq!(leaf.stale(pki.identity(ADMIN).unwrap(), &ca, now), None);
        let fresh = leaf.issue(&ca, now - Duration::days(LEAF_DAYS - RENEW_DAYS - 1)).unwrap();
        assert_eq!(leaf.stale(&fresh, &ca, now), None);
        let old = leaf.issue(&ca, now - Duration::days(LEAF_DAYS - RENEW_DAYS + 1)).unwrap();
        assert_eq!(leaf.stale(&old, &ca, now), Some("expires within 30 days".into()));

        fs::write(tmp.path().join("admin.crt"), &old.cert_pem).unwrap();
        fs::write(tmp.path().join("admin.key"), &old.key_pem).unwrap();
        let again = create(tmp.path());
        assert_ne!(again.identity(ADMIN), Some(&old));
        assert_eq!(leaf.stale(again.identity(ADMIN).unwrap(), &ca, now), None);
    }

    #[test]
    fn a_ca_key_without_its_certificate_gets_one_and_keeps_the_leaves() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = create(tmp.path());
        fs::remove_file(tmp.path().join("ca.crt")).unwrap();
        let again = create(tmp.path());
        assert_ne!(again.ca_pem(), pki.ca_pem());
        let ca_der = cert_of(again.ca_pem());
        let ca = parse(&ca_der).unwrap();
        let der = cert_of(&pki.identity(ADMIN).unwrap().cert_pem);
        parse(&der).unwrap().verify_signature(Some(ca.public_key())).unwrap();
        assert_eq!(again.identity(ADMIN), pki.identity(ADMIN), "same key and subject: same CA to the leaves");
    }

    #[test]
    fn bad_node_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["", "../x", ".hidden"] {
            assert!(Pki::load_or_create(tmp.path(), &ServingNames::default(), &[bad.to_string()], &[]).is_err(), "{bad:?}");
            assert!(Pki::load_or_create(tmp.path(), &ServingNames::default(), &[], &members(&[bad])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn etcd_has_its_own_ca_and_kubeadms_leaves() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = create(tmp.path());
        let main_der = cert_of(pki.ca_pem());
        let main = parse(&main_der).unwrap();
        let etcd_der = cert_of(pki.etcd_ca_pem());
        let etcd = parse(&etcd_der).unwrap();
        assert_eq!(etcd.subject().iter_common_name().next().unwrap().as_str().unwrap(), "kubelab-etcd-ca");
        assert!(etcd.basic_constraints().unwrap().unwrap().value.ca);
        assert_ne!(etcd.public_key().raw, main.public_key().raw, "a key of its own");

        let member_dns = |m: &str| ["localhost".to_string(), m.to_string(), format!("lab-{m}")].into_iter().collect::<BTreeSet<_>>();
        let loopback: BTreeSet<IpAddr> = ["127.0.0.1".parse().unwrap()].into();
        // (identity, CN, serverAuth, clientAuth, DNS names, IPs)
        let cases = [
            (APISERVER_ETCD_CLIENT.to_string(), "kube-apiserver-etcd-client", false, true, BTreeSet::new(), BTreeSet::new()),
            (ETCD_HEALTHCHECK_CLIENT.to_string(), "kube-etcd-healthcheck-client", false, true, BTreeSet::new(), BTreeSet::new()),
            (etcd_server("etcd-0"), "etcd-0", true, true, member_dns("etcd-0"), loopback.clone()),
            (etcd_peer("etcd-0"), "etcd-0", true, true, member_dns("etcd-0"), loopback.clone()),
            (etcd_server("etcd-1"), "etcd-1", true, true, member_dns("etcd-1"), loopback.clone()),
            (etcd_peer("etcd-1"), "etcd-1", true, true, member_dns("etcd-1"), loopback.clone()),
        ];
        for (name, cn, server, client, dns, ips) in cases {
            let id = pki.identity(&name).unwrap_or_else(|| panic!("{name} missing"));
            let der = cert_of(&id.cert_pem);
            let cert = parse(&der).unwrap();
            cert.verify_signature(Some(etcd.public_key())).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(cert.verify_signature(Some(main.public_key())).is_err(), "{name} must not be the main CA's");
            assert_eq!(cert.issuer().as_raw(), etcd.subject().as_raw(), "{name}");
            assert_eq!(cert.subject().iter_common_name().next().unwrap().as_str().unwrap(), cn, "{name}");
            assert_eq!(cert.subject().iter_organization().count(), 0, "{name}");
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert_eq!((eku.server_auth, eku.client_auth), (server, client), "{name}");
            assert_eq!(sans(&cert).unwrap(), (dns, ips), "{name}");
        }
        // And no main-CA identity is etcd's.
        let admin_der = cert_of(&pki.identity(ADMIN).unwrap().cert_pem);
        assert!(parse(&admin_der).unwrap().verify_signature(Some(etcd.public_key())).is_err());
    }

    #[test]
    fn etcd_members_reissue_only_their_own_certificates() {
        let tmp = tempfile::tempdir().unwrap();
        let first = create(tmp.path());
        let before = snapshot(tmp.path());
        // etcd-1's names change (another lab name), etcd-2 is new.
        let mut etcd = members(&["etcd-0", "etcd-1", "etcd-2"]);
        etcd[1].dns[1] = "other-etcd-1".into();
        let pki = Pki::load_or_create(tmp.path(), &names(&["lab-apiserver-1"], &["10.96.0.1"]), &nodes(), &etcd).unwrap();
        let after = snapshot(tmp.path());
        let changed: Vec<_> = after.keys().filter(|k| before.get(*k) != after.get(*k)).map(String::as_str).collect();
        let want = [
            "etcd/peer-etcd-1.crt",
            "etcd/peer-etcd-1.key",
            "etcd/peer-etcd-2.crt",
            "etcd/peer-etcd-2.key",
            "etcd/server-etcd-1.crt",
            "etcd/server-etcd-1.key",
            "etcd/server-etcd-2.crt",
            "etcd/server-etcd-2.key",
        ];
        assert_eq!(changed, want);
        assert_eq!(pki.etcd_ca_pem(), first.etcd_ca_pem());
        assert_eq!(pki.identity(APISERVER_ETCD_CLIENT), first.identity(APISERVER_ETCD_CLIENT));
    }

    #[test]
    fn a_main_ca_certificate_in_etcds_place_is_reissued() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = create(tmp.path());
        // Same subject, usages and names would not do: the signer differs.
        let now = OffsetDateTime::now_utc();
        let main = Ca::load_or_create(tmp.path(), "ca", CA_CN, now).unwrap();
        let leaf = leaves(&ServingNames::default(), &[], &[]).unwrap().into_iter().find(|l| l.name == APISERVER_ETCD_CLIENT).unwrap();
        let wrong = leaf.issue(&main, now).unwrap();
        fs::write(tmp.path().join("apiserver-etcd-client.crt"), &wrong.cert_pem).unwrap();
        fs::write(tmp.path().join("apiserver-etcd-client.key"), &wrong.key_pem).unwrap();
        let again = create(tmp.path());
        let id = again.identity(APISERVER_ETCD_CLIENT).unwrap();
        assert_ne!(id, &wrong);
        assert_ne!(Some(id), pki.identity(APISERVER_ETCD_CLIENT));
        let etcd_der = cert_of(again.etcd_ca_pem());
        let der = cert_of(&id.cert_pem);
        parse(&der).unwrap().verify_signature(Some(parse(&etcd_der).unwrap().public_key())).unwrap();
    }
}
