//! Resources of the smaller groups: coordination.k8s.io, discovery.k8s.io.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{age, array_at, col, name, or_none, Column, Strategy, AGE, NAME};

pub struct Leases;
impl Strategy for Leases {
    fn columns(&self) -> &'static [Column] {
        const { &[NAME, col("Holder", "string", "The holder of the lease"), AGE] }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![json!(name(obj)), json!(or_none(obj, "/spec/holderIdentity")), json!(age(obj, now))]
    }
}

pub struct EndpointSlices;
impl Strategy for EndpointSlices {
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("AddressType", "string", "The IP protocol for this slice"),
                col("Ports", "string", "The ports of this slice"),
                col("Endpoints", "string", "The endpoints of this slice"),
                AGE,
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let ports: Vec<String> = array_at(obj, "/ports").iter().map(|p| p["port"].to_string()).collect();
        let addrs: Vec<&str> = array_at(obj, "/endpoints").iter().flat_map(|e| array_at(e, "/addresses").iter().filter_map(Value::as_str)).collect();
        let show = |v: Vec<String>| match v.len() {
            0 => "<unset>".to_string(),
            n if n > 3 => format!("{} + {} more...", v[..3].join(","), n - 3),
            _ => v.join(","),
        };
        vec![
            json!(name(obj)),
            json!(obj["addressType"].as_str().unwrap_or("")),
            json!(show(ports)),
            json!(show(addrs.into_iter().map(String::from).collect())),
            json!(age(obj, now)),
        ]
    }
}
