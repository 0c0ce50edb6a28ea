//! What a client's object may contain: values of the right type (else 400,
//! naming the field), and only fields the kind has. Unknown fields are
//! dropped, as upstream's decoder drops them, and reported as the request's
//! `fieldValidation` asks: Strict refuses the request, Warn (the default)
//! sends a warning header, Ignore says nothing.

use serde_json::Value;

use crate::handlers::Query;
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Strict,
    Warn,
    Ignore,
}

impl Mode {
    pub fn from_query(q: &Query) -> ApiResult<Mode> {
        match q.get("fieldValidation").map(String::as_str) {
            None | Some("") | Some("Warn") => Ok(Mode::Warn),
            Some("Strict") => Ok(Mode::Strict),
            Some("Ignore") => Ok(Mode::Ignore),
            Some(other) => {
                Err(ApiError::bad_request(format!("fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\"")))
            }
        }
    }
}

fn cannot_handle(res: &Resource, why: &str) -> ApiError {
    ApiError::bad_request(format!("{} in version \"{}\" cannot be handled as a {}: {why}", res.kind, res.version, res.kind))
}

/// Checks `obj` against its kind and removes unknown fields; returns the
/// warnings to send.
pub fn check(res: &Resource, obj: &mut Value, mode: Mode) -> ApiResult<Vec<String>> {
    check_with(res, obj, mode, |why| cannot_handle(res, why))
}

/// As [`check`], with the refusal of a value that does not decode made by
/// `refuse` (a patch's result is refused as upstream refuses it, not as a
/// request body).
pub fn check_with(res: &Resource, obj: &mut Value, mode: Mode, refuse: impl FnOnce(&str) -> ApiError) -> ApiResult<Vec<String>> {
    let typed = (res.decode_check)(obj).map_err(|why| refuse(&why))?;
    let mut unknown = Vec::new();
    prune(obj, &typed, "", &mut unknown);
    let lines: Vec<String> = unknown.iter().map(|f| format!("unknown field {f:?}")).collect();
    match mode {
        Mode::Strict if !lines.is_empty() => Err(cannot_handle(res, &format!("strict decoding error: {}", lines.join(", ")))),
        Mode::Warn => Ok(lines),
        _ => Ok(Vec::new()),
    }
}

/// Removes from `given` every non-null key that the typed round trip of it
/// (`known`) does not have, recording each one's path.
fn prune(given: &mut Value, known: &Value, path: &str, unknown: &mut Vec<String>) {
    match (given, known) {
        (Value::Object(g), Value::Object(k)) => {
            let keys: Vec<String> = g.keys().cloned().collect();
            for key in keys {
                let at = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match k.get(&key) {
                    Some(kv) => prune(g.get_mut(&key).expect("listed above"), kv, &at, unknown),
                    None if g[&key].is_null() => {}
                    None => {
                        g.remove(&key);
                        unknown.push(at);
                    }
                }
            }
        }
        (Value::Array(g), Value::Array(k)) => {
            for (i, (gv, kv)) in g.iter_mut().zip(k).enumerate() {
                prune(gv, kv, &format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> &'static Resource {
        crate::resources::find("", "v1", "pods").unwrap()
    }

    #[test]
    fn unknown_fields_are_named_and_dropped() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"any": "key"}, "bogus": 1},
            "spec": {"containers": [{"name": "a", "image": "i", "imagePullPolcy": "Always"}], "nodeName": null}});
        let warnings = check(pods(), &mut pod, Mode::Warn).unwrap();
        assert_eq!(warnings, [r#"unknown field "metadata.bogus""#, r#"unknown field "spec.containers[0].imagePullPolcy""#]);
        assert!(pod["metadata"].get("bogus").is_none());
        assert_eq!(pod["metadata"]["labels"]["any"], "key");
        let mut again = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containerz": []}});
        let e = check(pods(), &mut again, Mode::Strict).unwrap_err();
        assert_eq!(e.message, r#"Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containerz""#);
    }

    #[test]
    fn wrong_types_name_the_field() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": true}]}});
        let e = check(pods(), &mut pod, Mode::Ignore).unwrap_err();
        assert!(e.message.contains("spec.containers[0].image: invalid type: boolean `true`, expected a string"), "{}", e.message);
    }
}
