//! Versions of one stored resource: a row of the table that serves
//! another version of a stored row names that row's version and a pair of
//! conversions, which the handlers apply to every object that crosses the
//! API (read, written, listed or watched). Objects stay in etcd in the
//! stored version's form, as upstream keeps one storage version.

pub mod autoscaling;

use serde_json::Value;

pub struct Conversion {
    /// The version of the same group and resource whose row stores the
    /// objects.
    pub stored_version: &'static str,
    /// A client's object in this version → the stored form. An error says
    /// why it cannot be (400).
    pub to_stored: fn(Value) -> Result<Value, String>,
    /// A stored object → this version.
    pub from_stored: fn(Value) -> Value,
}

use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};

/// A stored object as `res`'s version shows it, with the zero values Go
/// writes in that version.
pub fn shown(res: &Resource, obj: Value) -> Value {
    match res.conversion {
        Some(c) => {
            let mut v = (c.from_stored)(obj);
            crate::zero_values::fill(&mut v);
            v
        }
        None => obj,
    }
}

/// A stored object's JSON as `res`'s version shows it (watch events and
/// cached lists carry bytes).
pub fn shown_bytes(res: &Resource, stored: &axum::body::Bytes) -> axum::body::Bytes {
    if res.conversion.is_none() {
        return stored.clone();
    }
    match serde_json::from_slice::<Value>(stored) {
        Ok(obj) => serde_json::to_vec(&shown(res, obj)).expect("a JSON value serializes").into(),
        Err(_) => stored.clone(),
    }
}

/// A client's object of `res`'s version in the stored form.
pub fn to_stored(res: &Resource, obj: Value) -> ApiResult<Value> {
    match res.conversion {
        Some(c) => (c.to_stored)(obj)
            .map_err(|why| ApiError::bad_request(format!("{} in version {:?} cannot be handled as a {}: {why}", res.kind, res.version, res.kind))),
        None => Ok(obj),
    }
}

/// A client's object as the stored version's strategy reads it (table
/// cells): converted rows share the stored row's strategy.
pub fn as_stored<'a>(res: &Resource, obj: &'a Value) -> std::borrow::Cow<'a, Value> {
    match res.conversion.map(|c| (c.to_stored)(obj.clone())) {
        Some(Ok(stored)) => std::borrow::Cow::Owned(stored),
        _ => std::borrow::Cow::Borrowed(obj),
    }
}
