//! Image references as Docker and containerd read them: `busybox` is
//! `docker.io/library/busybox:latest`, `kubelab/labhost:v1` is
//! `docker.io/kubelab/labhost:v1`, `localhost:5000/x@sha256:…` keeps its
//! registry and digest (the grammar of distribution's `reference` package).

use super::ImageError;

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPOSITORY_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A parsed, normalised reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `domain/path`, e.g. `docker.io/library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    /// `algorithm:hex`.
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(reference: &str) -> Result<Reference, ImageError> {
        let invalid = |reason: &str| ImageError::InvalidReference { reference: reference.to_string(), reason: reason.to_string() };
        if reference.is_empty() {
            return Err(invalid("it is empty"));
        }
        if reference.len() == 64 && reference.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(invalid("a 64-character hexadecimal string is an image ID, not a repository name"));
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => {
                check_digest(digest).map_err(|reason| invalid(&reason))?;
                (rest, Some(digest.to_string()))
            }
            None => (reference, None),
        };
        // A tag follows the last ':' after the last '/' (an earlier ':' is a registry's port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                check_tag(tag).map_err(|reason| invalid(&reason))?;
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        let (domain, path) = split_domain(name);
        check_domain(&domain).map_err(|reason| invalid(&reason))?;
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase"));
        }
        check_path(&path).map_err(|reason| invalid(&reason))?;
        let repository = format!("{domain}/{path}");
        if repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(invalid("repository name must not be more than 255 characters"));
        }
        Ok(Reference { repository, tag, digest })
    }

    /// The normalised string: a missing tag becomes `latest` unless a digest pins the image.
    pub fn normalized(&self) -> String {
        let mut out = self.repository.clone();
        match (&self.tag, &self.digest) {
            (Some(tag), _) => {
                out.push(':');
                out.push_str(tag);
            }
            (None, None) => {
                out.push(':');
                out.push_str(DEFAULT_TAG);
            }
            (None, Some(_)) => {}
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest);
        }
        out
    }
}

/// The `docker.io/library/x:latest` form of a reference.
pub fn normalize(reference: &str) -> Result<String, ImageError> {
    Ok(Reference::parse(reference)?.normalized())
}

/// The first path component is a registry when it has a '.' or a ':', is
/// `localhost`, or has capitals (which a repository may not); otherwise the
/// reference is on Docker Hub, where one-component names are official images.
fn split_domain(name: &str) -> (String, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase()) => {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    let domain = if domain == LEGACY_DEFAULT_DOMAIN { DEFAULT_DOMAIN.to_string() } else { domain };
    if domain == DEFAULT_DOMAIN && !path.contains('/') {
        return (domain, format!("{OFFICIAL_REPOSITORY_PREFIX}{path}"));
    }
    (domain, path)
}

/// Path components: lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`.
fn check_path(path: &str) -> Result<(), String> {
    for component in path.split('/') {
        if component.is_empty() {
            return Err("a path component of the repository is empty".into());
        }
        let bytes = component.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return Err(format!("path component {component:?} must start and end with a lowercase letter or digit"));
        }
        let mut i = 0;
        while i < bytes.len() {
            if alnum(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && !alnum(bytes[i]) {
                i += 1;
            }
            let separator = &component[start..i];
            let allowed = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
            if !allowed {
                return Err(format!("path component {component:?} has the invalid separator {separator:?}"));
            }
        }
    }
    Ok(())
}

/// `host[:port]`, host being dot-separated labels (or a bracketed IPv6 address).
fn check_domain(domain: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(|| format!("registry {domain:?} has an unclosed '['"))?;
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| format!("registry {domain:?} is not a valid IPv6 address"))?;
        (None, after.strip_prefix(':'))
    } else {
        match domain.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        for label in host.split('.') {
            let ok = !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !label.starts_with('-') && !label.ends_with('-');
            if !ok {
                return Err(format!("registry {domain:?} is not a valid host name"));
            }
        }
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("registry {domain:?} has an invalid port"));
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !tag.is_empty() && tag.len() <= 128 && word(tag.as_bytes()[0]) && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("tag {tag:?} is not valid (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"))
    }
}

/// `algorithm:hex`; sha256 digests have exactly 64 lowercase hex digits.
pub(crate) fn check_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!("digest {digest:?} has no algorithm (as in sha256:<hex>)"));
    };
    let algorithm_ok = !algorithm.is_empty() && algorithm.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
    let hex_ok = hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if !algorithm_ok || !hex_ok {
        return Err(format!("digest {digest:?} is not valid"));
    }
    if algorithm == "sha256" && hex.len() != 64 {
        return Err(format!("digest {digest:?} is not valid: sha256 has 64 hex digits"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_as_docker_does() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/library/busybox", "docker.io/library/busybox:latest"),
            ("index.docker.io/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("kubelab/labhost:v1", "docker.io/kubelab/labhost:v1"),
            ("registry.k8s.io/e2e-test-images/agnhost:2.47", "registry.k8s.io/e2e-test-images/agnhost:2.47"),
            ("localhost/x", "localhost/x:latest"),
            ("localhost:5000/x/y:t", "localhost:5000/x/y:t"),
            ("[::1]:5000/x", "[::1]:5000/x:latest"),
            ("my_repo/a__b.c-d--e", "docker.io/my_repo/a__b.c-d--e:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).unwrap(), want, "{input}");
        }
        assert_eq!(normalize(&format!("busybox@{DIGEST}")).unwrap(), format!("docker.io/library/busybox@{DIGEST}"));
        assert_eq!(normalize(&format!("busybox:1@{DIGEST}")).unwrap(), format!("docker.io/library/busybox:1@{DIGEST}"));
    }

    #[test]
    fn rejects_what_docker_rejects() {
        let cases = [
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("kubelab/Labhost", "lowercase"),
            ("busybox:", "tag"),
            ("busybox:-x", "tag"),
            ("a//b", "empty"),
            ("a/-b", "start and end"),
            ("a/b..c", "separator"),
            ("busybox@sha256:0123456789abcdef0123456789abcdef01234567", "64 hex"),
            ("busybox@sha256:abc", "not valid"),
            ("busybox@nodigest", "algorithm"),
            ("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "image ID"),
            ("exa_mple.com/x", "host name"),
        ];
        for (input, why) in cases {
            let err = normalize(input).expect_err(input).to_string();
            assert!(err.contains(why), "{input}: {err} (expected it to mention {why:?})");
        }
    }

    #[test]
    fn a_capitalised_first_component_is_a_registry() {
        let parsed = Reference::parse("Registry/x").unwrap();
        assert_eq!(parsed.repository, "Registry/x");
    }
}
