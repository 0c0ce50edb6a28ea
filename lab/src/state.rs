//! Where a lab's host-side state lives (its PKI, for one): files that must
//! outlive a `lab up` so the next one reuses them, and that are not the
//! source tree's business.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Result};

/// `$KUBELAB_STATE_DIR/<lab>` if that is set, else
/// `$XDG_STATE_HOME/kubelab/labs/<lab>`, else
/// `$HOME/.local/state/kubelab/labs/<lab>`.
pub fn state_dir(lab: &str) -> Result<PathBuf> {
    let var = |name| std::env::var_os(name);
    choose(lab, var("KUBELAB_STATE_DIR"), var("XDG_STATE_HOME"), var("HOME"))
}

/// [`state_dir`] with the environment passed in, so tests need not change it.
fn choose(lab: &str, kubelab: Option<OsString>, xdg: Option<OsString>, home: Option<OsString>) -> Result<PathBuf> {
    // The name becomes one path component: never a way out of the folder.
    if !matches!(Path::new(lab).components().collect::<Vec<_>>()[..], [Component::Normal(c)] if c == lab) {
        bail!("invalid lab name {lab:?} for a state folder");
    }
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(kubelab) {
        return Ok(dir.join(lab));
    }
    // The XDG base directory spec says to ignore a relative XDG_STATE_HOME.
    let base = match (set(xdg).filter(|p| p.is_absolute()), set(home)) {
        (Some(xdg), _) => xdg,
        (None, Some(home)) => home.join(".local/state"),
        (None, None) => bail!("cannot tell where to keep lab state: set HOME, XDG_STATE_HOME or KUBELAB_STATE_DIR"),
    };
    Ok(base.join("kubelab/labs").join(lab))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<OsString> {
        Some(v.into())
    }

    #[test]
    fn kubelab_state_dir_wins() {
        let dir = choose("lab", s("/st"), s("/xdg"), s("/home/u")).unwrap();
        assert_eq!(dir, Path::new("/st/lab"));
    }

    #[test]
    fn xdg_state_home_then_home() {
        assert_eq!(choose("a", None, s("/xdg"), s("/h")).unwrap(), Path::new("/xdg/kubelab/labs/a"));
        assert_eq!(choose("a", s(""), s("rel"), s("/h")).unwrap(), Path::new("/h/.local/state/kubelab/labs/a"));
        assert_eq!(choose("a", None, None, s("/h")).unwrap(), Path::new("/h/.local/state/kubelab/labs/a"));
        assert!(choose("a", None, None, None).is_err());
    }

    #[test]
    fn lab_name_is_one_component() {
        for bad in ["", ".", "..", "a/b", "/a"] {
            assert!(choose(bad, s("/st"), None, None).is_err(), "{bad:?}");
        }
    }
}
