//! Taints and tolerations, as upstream's `v1helper` reads them: the
//! scheduler filters nodes with them, the taint eviction controller
//! evicts pods with them.

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Whether `toleration` tolerates `taint` (upstream's ToleratesTaint): an
/// empty effect matches every effect; an empty key with `Exists` matches
/// every key; `Equal` (the default) compares values.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => !key.is_empty() && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// The tolerations among `tolerations` that tolerate `taint`.
pub fn tolerating<'a>(tolerations: &'a [Toleration], taint: &Taint) -> Vec<&'a Toleration> {
    tolerations.iter().filter(|t| tolerates(t, taint)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint { key: key.into(), value: Some(value.into()), effect: effect.into(), time_added: None }
    }

    fn toleration(key: &str, operator: &str, value: &str, effect: &str) -> Toleration {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Toleration { key: opt(key), operator: opt(operator), value: opt(value), effect: opt(effect), toleration_seconds: None }
    }

    #[test]
    fn tolerations_match_as_upstream() {
        let t = taint("dedicated", "infra", "NoSchedule");
        assert!(tolerates(&toleration("dedicated", "Equal", "infra", "NoSchedule"), &t));
        assert!(tolerates(&toleration("dedicated", "", "infra", ""), &t));
        assert!(tolerates(&toleration("dedicated", "Exists", "", ""), &t));
        assert!(tolerates(&toleration("", "Exists", "", ""), &t));
        assert!(!tolerates(&toleration("dedicated", "Equal", "web", "NoSchedule"), &t));
        assert!(!tolerates(&toleration("dedicated", "Exists", "", "NoExecute"), &t));
        assert!(!tolerates(&toleration("", "Equal", "", ""), &t));
    }
}
