//! API errors as `Status` objects: the code, reason, message and details
//! upstream sends, so that kubectl prints the same lines it prints against
//! a real cluster.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Which resource an error is about, as upstream names it in messages
/// (`pods`, `deployments.apps`) and in `details`.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub group: String,
    /// The plural resource name (`pods`), or the kind for `Invalid`.
    pub kind: String,
    pub name: String,
}

impl Subject {
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

/// One field-level cause of an `Invalid` error.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueDuplicate`, ...
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn required(field: impl Into<String>) -> Self {
        Cause { reason: "FieldValueRequired", field: field.into(), message: "Required value".into() }
    }
    pub fn invalid(field: impl Into<String>, value: &Value, why: impl AsRef<str>) -> Self {
        Cause { reason: "FieldValueInvalid", field: field.into(), message: format!("Invalid value: {}: {}", show_value(value), why.as_ref()) }
    }
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Cause { reason: "FieldValueDuplicate", field: field.into(), message: format!("Duplicate value: {}", show_value(value)) }
    }
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!("Unsupported value: {}: supported values: {}", show_value(value), list.join(", ")),
        }
    }
    pub fn forbidden(field: impl Into<String>, why: impl Into<String>) -> Self {
        Cause { reason: "FieldValueForbidden", field: field.into(), message: format!("Forbidden: {}", why.into()) }
    }
    /// Upstream's one-line form: `spec.containers[0].name: Required value`.
    pub fn line(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// Values in messages are shown as Go's `%#v` would: strings quoted.
fn show_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }
    fn with_subject(mut self, s: &Subject) -> Self {
        let mut d = json!({"name": s.name, "kind": s.kind});
        if !s.group.is_empty() {
            d["group"] = json!(s.group);
        }
        if s.name.is_empty() {
            d.as_object_mut().unwrap().remove("name");
        }
        self.details = Some(d);
        self
    }

    pub fn not_found(s: &Subject) -> Self {
        Self::new(404, "NotFound", format!("{} {:?} not found", s.qualified(), s.name)).with_subject(s)
    }
    /// A path that names no resource.
    pub fn no_route() -> Self {
        let mut e = Self::new(404, "NotFound", "the server could not find the requested resource");
        e.details = Some(json!({}));
        e
    }
    pub fn already_exists(s: &Subject) -> Self {
        Self::new(409, "AlreadyExists", format!("{} {:?} already exists", s.qualified(), s.name)).with_subject(s)
    }
    pub fn conflict(s: &Subject, why: impl AsRef<str>) -> Self {
        Self::new(409, "Conflict", format!("Operation cannot be fulfilled on {} {:?}: {}", s.qualified(), s.name, why.as_ref())).with_subject(s)
    }
    /// The optimistic-concurrency failure of an update on a stale version.
    pub fn stale(s: &Subject) -> Self {
        Self::conflict(s, "the object has been modified; please apply your changes to the latest version and try again")
    }
    /// `Kind.group "name" is invalid: <causes>`; `s.kind` is the Kind here, as upstream.
    pub fn invalid(s: &Subject, causes: Vec<Cause>) -> Self {
        let lines: Vec<String> = causes.iter().map(Cause::line).collect();
        let summary = if lines.len() == 1 { lines[0].clone() } else { format!("[{}]", lines.join(", ")) };
        let mut e = Self::new(422, "Invalid", format!("{} {:?} is invalid: {}", s.qualified(), s.name, summary)).with_subject(s);
        let causes: Vec<Value> = causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect();
        e.details.as_mut().unwrap()["causes"] = Value::Array(causes);
        e
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }
    pub fn forbidden(s: &Subject, why: impl AsRef<str>) -> Self {
        let what = if s.name.is_empty() { s.qualified() } else { format!("{} {:?}", s.qualified(), s.name) };
        Self::new(403, "Forbidden", format!("{what} is forbidden: {}", why.as_ref())).with_subject(s)
    }
    pub fn method_not_allowed() -> Self {
        let mut e = Self::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
        e.details = Some(json!({}));
        e
    }
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }
    pub fn too_large() -> Self {
        Self::new(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
    }
    pub fn unsupported_media_type(got: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format ({got}) - accepted media types include: application/json, application/yaml"),
        )
    }
    pub fn not_acceptable(got: &str) -> Self {
        Self::new(406, "NotAcceptable", format!("the server was unable to respond with a content type that the client supports ({got})"))
    }
    pub fn internal(why: impl std::fmt::Display) -> Self {
        let why = why.to_string();
        let mut e = Self::new(500, "InternalError", format!("Internal error occurred: {why}"));
        e.details = Some(json!({"causes": [{"message": why}]}));
        e
    }
    /// An error that is no Status of its own (a failed dial, a TLS
    /// failure): upstream sends 500 with no reason and the error's text.
    pub fn plain(why: impl std::fmt::Display) -> Self {
        Self::new(500, "", why.to_string())
    }
    /// 429: come back later. `retry_after` seconds (when not 0) go into
    /// details and the Retry-After header; `causes` are (reason, message).
    pub fn too_many_requests(message: impl Into<String>, retry_after: u32, causes: &[(&str, String)]) -> Self {
        let mut e = Self::new(429, "TooManyRequests", message);
        let mut details = json!({});
        if retry_after > 0 {
            details["retryAfterSeconds"] = json!(retry_after);
        }
        if !causes.is_empty() {
            details["causes"] = causes.iter().map(|(reason, message)| json!({"reason": reason, "message": message})).collect();
        }
        e.details = Some(details);
        e
    }
    pub fn unavailable(why: impl std::fmt::Display) -> Self {
        Self::new(503, "ServiceUnavailable", why.to_string())
    }

    /// The `Status` object itself, as sent in a response or a watch ERROR event.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        // An unknown reason is left out, as Go's omitempty leaves it out.
        if self.reason.is_empty() {
            s.as_object_mut().expect("an object").remove("reason");
        }
        s
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.to_status()).expect("a Status serializes");
        let mut response = (code, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if let Some(seconds) = self.details.as_ref().and_then(|d| d.get("retryAfterSeconds")).and_then(Value::as_u64) {
            response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_upstream() {
        let pod = Subject { group: "".into(), kind: "pods".into(), name: "web".into() };
        assert_eq!(ApiError::not_found(&pod).message, r#"pods "web" not found"#);
        let dep = Subject { group: "apps".into(), kind: "deployments".into(), name: "d".into() };
        assert_eq!(ApiError::already_exists(&dep).message, r#"deployments.apps "d" already exists"#);
        let invalid = ApiError::invalid(&Subject { group: "".into(), kind: "Pod".into(), name: "web".into() }, vec![Cause::required("spec.containers")]);
        assert_eq!(invalid.message, r#"Pod "web" is invalid: spec.containers: Required value"#);
        assert_eq!(invalid.to_status()["details"]["causes"][0]["reason"], "FieldValueRequired");
    }
}
