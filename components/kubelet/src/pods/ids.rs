//! Container ids: `<pod uid>-<container name>-<restart count>`, so the
//! runtime's state files alone tell a restarted kubelet whose attempt each
//! container was.

/// `<uid>-<name>-<restart>` → name.
pub fn container_name(uid: &str, id: &str) -> Option<String> {
    let rest = id.strip_prefix(uid)?.strip_prefix('-')?;
    let (name, restart) = rest.rsplit_once('-')?;
    restart.parse::<u32>().ok().map(|_| name.to_string())
}

pub fn restart_of(id: &str) -> Option<u32> {
    id.rsplit_once('-').and_then(|(_, r)| r.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_name_their_container_and_attempt() {
        let uid = "0b7e-11";
        assert_eq!(container_name(uid, "0b7e-11-web-server-3").as_deref(), Some("web-server"));
        assert_eq!(restart_of("0b7e-11-web-server-3"), Some(3));
        assert_eq!(container_name(uid, "other-web-0"), None);
    }
}
