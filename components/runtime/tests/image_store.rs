//! The image store against archives written here with the tar crate (both
//! layouts, whiteouts, hostile paths) and against a real `docker save`.
//! Runs as root: unpacking keeps owners, makes device nodes and sets
//! trusted.* xattrs, as the kubelet does on a node.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use runtime::images::{normalize, ImageError, ImageStore};
use sha2::{Digest, Sha256};

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Builds a layer tarball entry by entry.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(1_700_000_000);
        h.set_size(0);
        h
    }

    fn dir(mut self, path: &str, mode: u32) -> Layer {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0, 0);
        self.0.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    fn file(mut self, path: &str, mode: u32, uid: u64, gid: u64, body: &[u8]) -> Layer {
        let mut h = Self::header(tar::EntryType::Regular, mode, uid, gid);
        h.set_size(body.len() as u64);
        self.0.append_data(&mut h, path, body).unwrap();
        self
    }

    fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Layer {
        let mut h = Self::header(kind, 0o777, 0, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    fn device(mut self, path: &str, major: u32, minor: u32) -> Layer {
        let mut h = Self::header(tar::EntryType::Char, 0o666, 0, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.0.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    fn file_with_xattr(mut self, path: &str, name: &str, value: &[u8]) -> Layer {
        let key = format!("SCHILY.xattr.{name}");
        self.0.append_pax_extensions([(key.as_str(), value)]).unwrap();
        self.file(path, 0o644, 0, 0, b"x")
    }

    /// A raw header, for paths the builder refuses to write (`..`).
    fn raw(mut self, path: &str, body: &[u8]) -> Layer {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, 0, 0);
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_size(body.len() as u64);
        h.set_cksum();
        self.0.append(&h, body).unwrap();
        self
    }

    fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn config(diff_ids: &[String], cmd: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/entry"], "Cmd": cmd, "Env": ["PATH=/bin"], "WorkingDir": "/work", "User": "1000:1000"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

fn add(builder: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    builder.append_data(&mut h, path, bytes).unwrap();
}

/// A legacy `docker save` archive (Docker 20.10's layout): layers first,
/// manifest.json last, as the engine streams it. `dedupe` links a repeated
/// layer to its first copy, as Docker does.
/// An image to write: its tags, its layer tarballs, its command.
type ImageSpec<'a> = (&'a [&'a str], &'a [Vec<u8>], &'a [&'a str]);

fn legacy_archive(images: &[ImageSpec]) -> (Vec<u8>, Vec<String>) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut manifest = Vec::new();
    let mut ids = Vec::new();
    let mut written: Vec<String> = Vec::new();
    for (index, (tags, layers, cmd)) in images.iter().enumerate() {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
        let mut paths = Vec::new();
        for (layer, diff_id) in layers.iter().zip(&diff_ids) {
            let dir = format!("{}{index}", &diff_id[7..20]);
            let path = format!("{dir}/layer.tar");
            match written.iter().position(|d| d == diff_id) {
                Some(_) => {
                    let first = format!("{}0/layer.tar", &diff_id[7..20]);
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    h.set_mode(0o777);
                    builder.append_link(&mut h, &path, format!("../{first}")).unwrap();
                }
                None => {
                    add(&mut builder, &path, layer);
                    written.push(diff_id.clone());
                }
            }
            paths.push(path);
        }
        let config = config(&diff_ids, cmd);
        let id = sha256(&config);
        let config_name = format!("{}.json", &id[7..]);
        add(&mut builder, &config_name, &config);
        manifest.push(serde_json::json!({"Config": config_name, "RepoTags": tags, "Layers": paths}));
        ids.push(id);
    }
    add(&mut builder, "manifest.json", &serde_json::to_vec(&manifest).unwrap());
    (builder.into_inner().unwrap(), ids)
}

fn base_layer() -> Vec<u8> {
    Layer::new()
        .dir("bin/", 0o755)
        .file("bin/busybox", 0o4755, 1000, 2000, b"#!busybox")
        .link(tar::EntryType::Symlink, "bin/sh", "busybox")
        .link(tar::EntryType::Link, "bin/ls", "bin/busybox")
        .dir("dev/", 0o755)
        .device("dev/null", 1, 3)
        .dir("etc/", 0o755)
        .file("etc/passwd", 0o644, 0, 0, b"root:x:0:0::/root:/bin/sh\n")
        .file("etc/hostname", 0o644, 0, 0, b"base\n")
        .dir("var/", 0o700)
        .file("var/old", 0o600, 0, 0, b"old")
        .file_with_xattr("etc/caps", "user.kubelab", b"yes")
        .finish()
}

fn top_layer() -> Vec<u8> {
    Layer::new()
        .dir("etc/", 0o755)
        .file("etc/.wh.passwd", 0o644, 0, 0, b"")
        .dir("var/", 0o700)
        .file("var/.wh..wh..opq", 0o644, 0, 0, b"")
        .file("var/new", 0o644, 0, 0, b"new")
        .finish()
}

fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("images")).unwrap();
    (dir, store)
}

#[test]
fn unpacks_layers_for_overlayfs() {
    let (_dir, store) = store();
    let (archive, ids) = legacy_archive(&[(&["busybox:latest"], &[base_layer(), top_layer()], &["sh"])]);
    let images = store.import(&archive[..]).unwrap();
    assert_eq!(images.len(), 1);
    let image = &images[0];
    assert_eq!(image.id, ids[0]);
    assert_eq!(image.names, vec!["docker.io/library/busybox:latest"]);
    assert_eq!(image.config.entrypoint, vec!["/bin/entry"]);
    assert_eq!(image.config.cmd, vec!["sh"]);
    assert_eq!(image.config.env, vec!["PATH=/bin"]);
    assert_eq!(image.config.working_dir.as_deref(), Some("/work"));
    assert_eq!(image.config.user.as_deref(), Some("1000:1000"));
    let [lower, upper] = image.layers.as_slice() else { panic!("two layers, got {:?}", image.layers) };
    assert_eq!(lower.file_name().unwrap().to_str().unwrap(), &sha256(&base_layer())[7..]);

    let busybox = fs::metadata(lower.join("bin/busybox")).unwrap();
    assert_eq!((busybox.uid(), busybox.gid(), busybox.mode() & 0o7777), (1000, 2000, 0o4755), "owner and setuid mode kept");
    assert_eq!(fs::read_link(lower.join("bin/sh")).unwrap(), Path::new("busybox"));
    let ls = fs::metadata(lower.join("bin/ls")).unwrap();
    assert_eq!(ls.ino(), busybox.ino(), "bin/ls is a hard link to bin/busybox");
    let null = fs::metadata(lower.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    assert_eq!(fs::metadata(lower.join("var")).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(xattr::get(lower.join("etc/caps"), "user.kubelab").unwrap().as_deref(), Some(&b"yes"[..]));

    let whiteout = fs::symlink_metadata(upper.join("etc/passwd")).unwrap();
    assert!(whiteout.file_type().is_char_device(), "a .wh. file becomes a character device");
    assert_eq!(whiteout.rdev(), 0);
    assert!(!upper.join("etc/.wh.passwd").exists());
    assert_eq!(xattr::get(upper.join("var"), "trusted.overlay.opaque").unwrap().as_deref(), Some(&b"y"[..]));
    assert!(!upper.join("var/.wh..wh..opq").exists());
    assert_eq!(fs::read(upper.join("var/new")).unwrap(), b"new");
}

#[test]
fn resolves_references_as_docker_normalises_them() {
    let (_dir, store) = store();
    let (archive, ids) = legacy_archive(&[
        (&["busybox:latest", "busybox:1.35"], &[base_layer()], &["sh"]),
        (&["kubelab/labhost:v1"], &[base_layer(), top_layer()], &["netexec"]),
    ]);
    store.import(&archive[..]).unwrap();
    let id = |reference: &str| store.resolve(reference).unwrap().map(|i| i.id);
    for reference in ["busybox", "busybox:latest", "busybox:1.35", "docker.io/library/busybox", "index.docker.io/library/busybox:latest", &ids[0]] {
        assert_eq!(id(reference).as_ref(), Some(&ids[0]), "{reference}");
    }
    assert_eq!(id(&ids[0][7..19]).as_ref(), Some(&ids[0]), "an ID prefix");
    assert_eq!(id(&format!("busybox@{}", ids[0])).as_ref(), Some(&ids[0]), "name@digest");
    assert_eq!(id(&format!("kubelab/labhost@{}", ids[0])), None, "a digest under another name");
    for reference in ["kubelab/labhost:v1", "docker.io/kubelab/labhost:v1"] {
        assert_eq!(id(reference).as_ref(), Some(&ids[1]), "{reference}");
    }
    assert_eq!(id("kubelab/labhost"), None, "no latest tag was imported");
    assert_eq!(id("busybox:1.36"), None);
    assert!(matches!(store.resolve("Busybox"), Err(ImageError::InvalidReference { .. })));
    assert_eq!(store.list().unwrap().len(), 2);
    // Both images share the base layer: it is unpacked once.
    assert_eq!(fs::read_dir(store.root().join("layers")).unwrap().count(), 2);
    assert_eq!(normalize("kubelab/labhost").unwrap(), "docker.io/kubelab/labhost:latest");
}

#[test]
fn a_tag_moves_to_the_image_imported_last() {
    let (_dir, store) = store();
    let (first, first_ids) = legacy_archive(&[(&["busybox:latest"], &[base_layer()], &["sh"])]);
    let (second, second_ids) = legacy_archive(&[(&["busybox:latest"], &[base_layer(), top_layer()], &["sh"])]);
    store.import(&first[..]).unwrap();
    store.import(&second[..]).unwrap();
    assert_eq!(store.resolve("busybox").unwrap().unwrap().id, second_ids[0]);
    let old = store.resolve(&first_ids[0]).unwrap().expect("the old image stays, untagged");
    assert!(old.names.is_empty(), "{:?}", old.names);
}

#[test]
fn reimport_is_cheap() {
    let (dir, store) = store();
    let (archive, ids) = legacy_archive(&[(&["busybox:latest"], &[base_layer()], &["sh"])]);
    let layer = store.import(&archive[..]).unwrap()[0].layers[0].clone();
    // A mark in the unpacked layer survives a re-import: it is not unpacked again.
    fs::write(layer.join("mark"), b"").unwrap();
    store.import(&archive[..]).unwrap();
    assert!(layer.join("mark").exists());

    // import_dir does not even read an archive it has imported, unchanged.
    let builtin = dir.path().join("builtin");
    fs::create_dir(&builtin).unwrap();
    let path = builtin.join("busybox.tar");
    fs::write(&path, &archive).unwrap();
    fs::write(builtin.join("notes.txt"), b"not an archive").unwrap();
    assert_eq!(store.import_dir(&builtin).unwrap().iter().map(|i| i.id.clone()).collect::<Vec<_>>(), ids);
    let modified = fs::metadata(&path).unwrap().modified().unwrap();
    let mut garbage = fs::OpenOptions::new().write(true).open(&path).unwrap();
    garbage.write_all(&vec![0x55; archive.len()]).unwrap();
    garbage.set_modified(modified).unwrap();
    drop(garbage);
    assert_eq!(store.import_dir(&builtin).unwrap().iter().map(|i| i.id.clone()).collect::<Vec<_>>(), ids);
    // Once it changes, it is read again (and this garbage is refused).
    fs::write(&path, b"changed").unwrap();
    assert!(store.import_dir(&builtin).is_err());
}

#[test]
fn reads_the_oci_layout_with_gzip_layers() {
    let (_dir, store) = store();
    let layer = base_layer();
    let diff_id = sha256(&layer);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).unwrap();
    let compressed = gz.finish().unwrap();
    let config = config(&[diff_id], &["sh"]);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(&compressed), "size": compressed.len()}],
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(&manifest), "size": manifest.len(),
                       "annotations": {"io.containerd.image.name": "docker.io/kubelab/labhost:oci", "org.opencontainers.image.ref.name": "oci"}}],
    }))
    .unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    for blob in [&compressed, &config, &manifest] {
        add(&mut builder, &format!("blobs/sha256/{}", &sha256(blob)[7..]), blob);
    }
    add(&mut builder, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add(&mut builder, "index.json", &index);
    let images = store.import(&builder.into_inner().unwrap()[..]).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].id, sha256(&config));
    assert_eq!(images[0].names, vec!["docker.io/kubelab/labhost:oci"]);
    assert!(images[0].layers[0].join("bin/busybox").is_file());
    let by_manifest = store.resolve(&format!("kubelab/labhost@{}", sha256(&manifest))).unwrap();
    assert_eq!(by_manifest.map(|i| i.id), Some(sha256(&config)));
}

#[test]
fn refuses_paths_that_leave_the_layer() {
    let hostile = [
        ("parent", Layer::new().raw("../escape", b"x").finish()),
        ("symlink", Layer::new().link(tar::EntryType::Symlink, "out", "/").file("out/escape", 0o644, 0, 0, b"x").finish()),
        ("whiteout", Layer::new().link(tar::EntryType::Symlink, "out", "../..").file("out/.wh.escape", 0o644, 0, 0, b"").finish()),
        ("hard link", Layer::new().link(tar::EntryType::Link, "inside", "../../escape").finish()),
    ];
    for (what, layer) in hostile {
        let (dir, store) = store();
        let (archive, _) = legacy_archive(&[(&["bad:latest"], &[layer], &["sh"])]);
        let err = store.import(&archive[..]).expect_err(what);
        assert!(!dir.path().join("escape").exists() && !Path::new("/escape").exists(), "{what}: wrote outside the layer");
        assert_eq!(store.list().unwrap(), vec![], "{what}: {err}");
        assert_eq!(fs::read_dir(store.root().join("layers")).unwrap().count(), 0, "{what}: the half layer is gone ({err})");
    }
}

#[test]
fn a_layer_that_fails_its_digest_is_not_kept() {
    let (_dir, store) = store();
    let (mut archive, _) = legacy_archive(&[(&["busybox:latest"], &[base_layer()], &["sh"])]);
    // Flip a byte inside the layer's file contents (the archive's first member).
    let at = archive.windows(9).position(|w| w == b"#!busybox").unwrap();
    archive[at + 2] = b'B';
    match store.import(&archive[..]) {
        Err(ImageError::DigestMismatch { what, .. }) => assert_eq!(what, "layer"),
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert_eq!(fs::read_dir(store.root().join("layers")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn opening_sweeps_what_a_killed_import_left() {
    let (dir, store) = store();
    let half = store.root().join("layers").join(".tmp-999999-0-abc");
    fs::create_dir_all(half.join("usr/bin")).unwrap();
    let spool = store.root().join("tmp/import-999999-0");
    fs::create_dir_all(&spool).unwrap();
    let store = ImageStore::open(&dir.path().join("images")).unwrap();
    assert!(!half.exists() && !spool.exists());
    assert_eq!(store.list().unwrap(), vec![]);
}

/// A real `docker save` of an image built FROM scratch in two layers (COPY
/// only: scratch has no shell for RUN, so whiteouts are covered above).
#[test]
fn imports_a_real_docker_save_archive() {
    if Command::new("docker").arg("version").output().map(|o| !o.status.success()).unwrap_or(true) {
        panic!("this test needs the Docker engine (docker version failed)");
    }
    let context = tempfile::tempdir().unwrap();
    fs::write(context.path().join("hello"), b"hello\n").unwrap();
    fs::write(context.path().join("gone"), b"gone\n").unwrap();
    fs::create_dir(context.path().join("dir")).unwrap();
    fs::write(context.path().join("dir/kept"), b"kept\n").unwrap();
    fs::set_permissions(context.path().join("hello"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello gone /\nCOPY dir /dir/\nLABEL dev.kubelab.lab=runtime-test\nENTRYPOINT [\"/hello\"]\nCMD [\"a\", \"b\"]\nENV A=1\nWORKDIR /dir\n",
    )
    .unwrap();
    let tag = format!("kubelab-runtime-test/save:{}", std::process::id());
    let built = Command::new("docker").args(["build", "-q", "--label", "dev.kubelab.lab=runtime-test", "-t", &tag]).arg(context.path()).output().unwrap();
    assert!(built.status.success(), "docker build: {}", String::from_utf8_lossy(&built.stderr));
    let saved = Command::new("docker").args(["save", &tag]).output().unwrap();
    let removed = Command::new("docker").args(["rmi", "-f", &tag]).output().unwrap();
    assert!(saved.status.success(), "docker save: {}", String::from_utf8_lossy(&saved.stderr));
    assert!(removed.status.success(), "docker rmi: {}", String::from_utf8_lossy(&removed.stderr));
    let id = String::from_utf8(built.stdout).unwrap().trim().to_string();

    let (_dir, store) = store();
    let images = store.import(&saved.stdout[..]).unwrap();
    assert_eq!(images.len(), 1);
    let image = &images[0];
    assert_eq!(image.id, id, "the ID is the config's digest, as Docker's");
    assert_eq!(image.names, vec![format!("docker.io/{tag}")]);
    assert_eq!(image.config.entrypoint, vec!["/hello"]);
    assert_eq!(image.config.cmd, vec!["a", "b"]);
    assert!(image.config.env.contains(&"A=1".to_string()), "{:?}", image.config.env);
    assert_eq!(image.config.working_dir.as_deref(), Some("/dir"));
    assert_eq!(image.layers.len(), 2);
    let hello = fs::metadata(image.layers[0].join("hello")).unwrap();
    assert_eq!(hello.mode() & 0o7777, 0o750);
    assert_eq!(fs::read(image.layers[1].join("dir/kept")).unwrap(), b"kept\n");
    assert_eq!(store.resolve(&tag).unwrap().map(|i| i.id), Some(id));
}
