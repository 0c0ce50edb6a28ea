//! What goes into pod images, which are built `FROM scratch` (there is no
//! registry to pull a busybox from): a busybox built from source by
//! `scripts/build-busybox.sh` (cached outside Docker) with a link per applet,
//! workspace binaries, and the shared libraries those binaries load (found
//! with ldd). Also the archives a node carries: a `docker save` of each,
//! tagged as pods name them.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use tokio::process::Command;

use crate::images::ContextEntry;
use crate::repo::Repo;

/// The script that builds busybox (or finds its cached build) and prints
/// the binary's path.
pub const BUILD_SCRIPT: &str = "scripts/build-busybox.sh";

/// The busybox pod images are made around: `scripts/build-busybox.sh`
/// builds it the first time (Debian's source, upstream's defconfig, linked
/// statically; a minute or two) and afterwards prints where its cached build
/// is. The build machine's `/bin/busybox` (Debian's busybox-static) is not
/// used: its `wget -T` crashes and its `nc` has no `-z`.
pub async fn busybox(repo: &Repo) -> Result<PathBuf> {
    let script = repo.root.join(BUILD_SCRIPT);
    // stderr is the script's progress and errors, passed through.
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed ({}): pod images need its busybox (scripts/setup.sh installs what it needs)", script.display(), output.status);
    }
    built_path(&String::from_utf8_lossy(&output.stdout)).with_context(|| format!("{} printed no path", script.display()))
}

/// The script's last non-empty line of stdout: the binary's path.
fn built_path(stdout: &str) -> Option<PathBuf> {
    stdout.lines().map(str::trim).rfind(|l| !l.is_empty()).map(PathBuf::from)
}

/// The `rootfs/` part of a pod image's build context: `bin/busybox` (from
/// the file `busybox`, which must be static), a symlink per applet beside
/// it, and every shared library `binaries` load at the path the dynamic
/// loader looks for it.
pub async fn rootfs(busybox: &Path, binaries: &[&Path]) -> Result<Vec<ContextEntry>> {
    let bytes = std::fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    if !shared_libraries(busybox).await?.is_empty() {
        bail!("{} is dynamically linked: pod images need a static busybox", busybox.display());
    }
    let mut entries =
        vec![ContextEntry::dir("rootfs/bin"), ContextEntry::file("rootfs/bin/busybox", bytes, 0o755), ContextEntry::dir_mode("rootfs/tmp", 0o1777)];
    for applet in applets(busybox).await? {
        entries.push(ContextEntry::symlink(&format!("rootfs/bin/{applet}"), "busybox"));
    }
    let mut libraries: Vec<String> = Vec::new();
    for binary in binaries {
        for library in shared_libraries(binary).await? {
            if !libraries.contains(&library) {
                libraries.push(library);
            }
        }
    }
    libraries.sort();
    for library in libraries {
        // Read through symlinks (/lib64/ld-linux-x86-64.so.2 is one): the image gets the file itself.
        let bytes = std::fs::read(&library).with_context(|| format!("reading {library}"))?;
        let relative = library.trim_start_matches('/');
        if let Some(parent) = Path::new(relative).parent() {
            entries.push(ContextEntry::dir(&format!("rootfs/{}", parent.display())));
        }
        entries.push(ContextEntry::file(&format!("rootfs/{relative}"), bytes, 0o755));
    }
    entries.dedup();
    Ok(entries)
}

/// The applets this busybox has, by `busybox --list`.
async fn applets(busybox: &Path) -> Result<Vec<String>> {
    let shown = busybox.display();
    let output = Command::new(busybox).arg("--list").stdin(Stdio::null()).output().await.with_context(|| format!("running {shown} --list"))?;
    if !output.status.success() {
        bail!("{shown} --list failed ({})", output.status);
    }
    let applets = parse_applets(&String::from_utf8_lossy(&output.stdout));
    for needed in ["sh", "wget", "nc", "nslookup", "tar", "ls", "cat", "sleep"] {
        if !applets.iter().any(|a| a == needed) {
            bail!("{shown} has no {needed} applet");
        }
    }
    Ok(applets)
}

fn parse_applets(list: &str) -> Vec<String> {
    let mut applets: Vec<String> = list.lines().map(str::trim).filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/')).map(str::to_string).collect();
    applets.sort();
    applets.dedup();
    applets
}

/// The shared libraries a binary loads (with its dynamic loader), by ldd;
/// empty for a static binary.
async fn shared_libraries(binary: &Path) -> Result<Vec<String>> {
    let output = Command::new("ldd").arg(binary).stdin(Stdio::null()).output().await.context("running ldd (Debian package libc-bin)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    parse_ldd(&text).with_context(|| format!("ldd {}", binary.display()))
}

fn parse_ldd(text: &str) -> Result<Vec<String>> {
    let mut libraries = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.contains("not a dynamic executable") || line.contains("statically linked") || line.is_empty() {
            continue;
        }
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    bail!("the shared library {} is not found", name.trim());
                }
                rest.split_whitespace().next().unwrap_or("")
            }
            None => line.split_whitespace().next().unwrap_or(""),
        };
        // linux-vdso.so.1 is the kernel's, with no file.
        if path.starts_with('/') {
            libraries.push(path.to_string());
        }
    }
    Ok(libraries)
}

/// Rewrites a `docker save` archive's `manifest.json` so its image is tagged
/// `names` (e.g. `busybox:latest` and `busybox:<hash>`, where the host knows
/// it as `kubelab/busybox:<hash>`). The legacy `repositories` file, which
/// loaders read only without a manifest, is left out.
pub fn retag_archive(archive: &[u8], names: &[String]) -> Result<Vec<u8>> {
    let mut input = tar::Archive::new(archive);
    let mut output = tar::Builder::new(Vec::new());
    let mut retagged = false;
    for entry in input.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        match path.as_str() {
            "repositories" => continue,
            "manifest.json" => {
                let mut manifest: Vec<serde_json::Value> = serde_json::from_reader(&mut entry).context("reading the archive's manifest.json")?;
                let [image] = manifest.as_mut_slice() else { bail!("the archive holds {} images, not one", manifest.len()) };
                image["RepoTags"] = serde_json::json!(names);
                let bytes = serde_json::to_vec(&manifest)?;
                let mut header = entry.header().clone();
                header.set_size(bytes.len() as u64);
                output.append_data(&mut header, &path, &bytes[..])?;
                retagged = true;
            }
            _ => {
                // By path rather than the raw header, so long names (GNU or PAX) come through whole.
                let mut header = entry.header().clone();
                output.append_data(&mut header, &path, &mut entry)?;
            }
        }
    }
    if !retagged {
        bail!("the archive has no manifest.json");
    }
    Ok(output.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(parse_ldd(text).unwrap(), vec!["/lib/x86_64-linux-gnu/libgcc_s.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]);
        assert_eq!(parse_ldd("\tnot a dynamic executable\n").unwrap(), Vec::<String>::new());
        assert!(parse_ldd("\tlibmissing.so.1 => not found\n").unwrap_err().to_string().contains("libmissing.so.1"));
    }

    #[test]
    fn the_scripts_last_line_is_the_path() {
        assert_eq!(built_path("/c/busybox-ab/busybox\n"), Some(PathBuf::from("/c/busybox-ab/busybox")));
        assert_eq!(built_path("note\n/c/b/busybox\n\n"), Some(PathBuf::from("/c/b/busybox")));
        assert_eq!(built_path(""), None);
    }

    #[test]
    fn applets_are_names_beside_busybox() {
        assert_eq!(parse_applets("[\n[[\nbusybox\nsh\nwget\n\n"), vec!["[", "[[", "sh", "wget"]);
    }

    #[test]
    fn retagging_rewrites_only_the_manifest() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, bytes).unwrap();
        };
        add("abc/layer.tar", b"layer bytes");
        add("manifest.json", br#"[{"Config":"c.json","RepoTags":["kubelab/busybox:1234"],"Layers":["abc/layer.tar"]}]"#);
        add("repositories", br#"{"kubelab/busybox":{"1234":"abc"}}"#);
        let archive = builder.into_inner().unwrap();
        let names = vec!["busybox:latest".to_string(), "busybox:1234".to_string()];
        let retagged = retag_archive(&archive, &names).unwrap();
        let mut files = std::collections::BTreeMap::new();
        for entry in tar::Archive::new(&retagged[..]).entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            files.insert(entry.path().unwrap().display().to_string(), text);
        }
        assert_eq!(files.keys().collect::<Vec<_>>(), vec!["abc/layer.tar", "manifest.json"]);
        assert_eq!(files["abc/layer.tar"], "layer bytes");
        let manifest: serde_json::Value = serde_json::from_str(&files["manifest.json"]).unwrap();
        assert_eq!(manifest[0]["RepoTags"], serde_json::json!(names));
        assert_eq!(manifest[0]["Layers"], serde_json::json!(["abc/layer.tar"]));
    }
}
