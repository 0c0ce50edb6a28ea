//! Name rules shared by every resource (upstream's apimachinery validation).

use serde_json::Value;

use crate::status::Cause;

/// DNS-1123 label: at most 63 lower-case alphanumerics or '-', starting and
/// ending alphanumeric (namespaces, services).
pub fn dns1123_label(s: &str) -> Option<String> {
    if s.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') && !s.starts_with('-') && !s.ends_with('-');
    (!ok).then(|| {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into()
    })
}

/// DNS-1123 subdomain: dot-separated labels, at most 253 characters (most
/// object names).
pub fn dns1123_subdomain(s: &str) -> Option<String> {
    if s.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    let ok = !s.is_empty()
        && s.split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') && !l.starts_with('-') && !l.ends_with('-'));
    (!ok).then(|| {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into()
    })
}

/// A qualified name as used in label keys: optional DNS prefix, '/', a name
/// of at most 63 alphanumerics, '-', '_' or '.', alphanumeric at both ends.
pub fn qualified_name(s: &str) -> Option<String> {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        if let Some(why) = dns1123_subdomain(p) {
            return Some(format!("prefix part {why}"));
        }
    }
    label_value(name).or_else(|| name.is_empty().then(|| "name part must be non-empty".into()))
}

/// A label value: empty, or at most 63 alphanumerics, '-', '_' or '.',
/// alphanumeric at both ends.
pub fn label_value(s: &str) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    if s.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let ok = s.chars().all(|c| alnum(c) || "-_.".contains(c)) && s.starts_with(alnum) && s.ends_with(alnum);
    (!ok).then(|| "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into())
}

/// Checks labels and annotations keys of `metadata`.
pub fn metadata_maps(meta: &Value, causes: &mut Vec<Cause>) {
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(why) = qualified_name(k) {
                causes.push(Cause::invalid("metadata.labels", &Value::String(k.clone()), why));
            }
            match v.as_str() {
                Some(v) => {
                    if let Some(why) = label_value(v) {
                        causes.push(Cause::invalid("metadata.labels", &Value::String(v.into()), why));
                    }
                }
                None => causes.push(Cause::invalid("metadata.labels", v, "must be a string")),
            }
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        for (k, v) in annotations {
            if let Some(why) = qualified_name(&k.to_lowercase()) {
                causes.push(Cause::invalid("metadata.annotations", &Value::String(k.clone()), why));
            }
            if !v.is_string() {
                causes.push(Cause::invalid("metadata.annotations", v, "must be a string"));
            }
        }
    }
}

/// The finalizers upstream defines without a domain prefix.
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// Checks a namespace's `spec.finalizers` (at `field`): a list of qualified
/// names, each either standard or fully qualified (`example.com/name`), as
/// upstream's namespace finalize validation requires.
pub fn finalizer_names(list: &Value, field: &str) -> Vec<Cause> {
    let Some(items) = list.as_array() else {
        return vec![Cause::invalid(field, list, "must be a list of strings")];
    };
    let mut causes = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let Some(name) = item.as_str() else {
            causes.push(Cause::invalid(at, item, "must be a string"));
            continue;
        };
        if let Some(why) = qualified_name(name) {
            causes.push(Cause::invalid(at, item, why));
        } else if !name.contains('/') && !STANDARD_FINALIZERS.contains(&name) {
            causes.push(Cause::invalid(at, item, "name is neither a standard finalizer name nor is it fully qualified"));
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns1123_label("web-1").is_none());
        assert!(dns1123_label("Web").is_some());
        assert!(dns1123_label("-a").is_some());
        assert!(dns1123_subdomain("a.b-c.d").is_none());
        assert!(dns1123_subdomain("a..b").is_some());
        assert!(qualified_name("app.kubernetes.io/name").is_none());
        assert!(qualified_name("bad key").is_some());
        assert!(label_value("").is_none());
        assert!(label_value("-x").is_some());
    }

    #[test]
    fn namespace_finalizers_are_standard_or_qualified() {
        use serde_json::json;
        assert!(finalizer_names(&json!(["kubernetes", "example.com/cleanup"]), "spec.finalizers").is_empty());
        assert_eq!(
            finalizer_names(&json!("kubernetes"), "spec.finalizers")[0].line(),
            "spec.finalizers: Invalid value: \"kubernetes\": must be a list of strings"
        );
        let bad = finalizer_names(&json!(["cleanup", 5, "a b/c"]), "spec.finalizers");
        assert_eq!(bad[0].line(), "spec.finalizers[0]: Invalid value: \"cleanup\": name is neither a standard finalizer name nor is it fully qualified");
        assert_eq!(bad[1].line(), "spec.finalizers[1]: Invalid value: 5: must be a string");
        assert_eq!(bad.len(), 3);
    }
}
