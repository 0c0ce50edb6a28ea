//! Scenarios: a named story told to a lab (apply manifests, act, wait by
//! polling with a deadline, observe) whose observations are compared with
//! reviewed insta snapshots in `scenarios/snapshots/`. The catalog is a
//! table, as the apiserver's resources are: the next scenario is a row and
//! a function. `lab run` and the lab tests run them through [`runner`].

pub mod context;
pub mod names;
pub mod runner;

mod basics;
mod batch;
mod services;
mod workloads;

use anyhow::{bail, Result};
use futures_util::future::BoxFuture;

pub use context::Context;

/// One scenario of the catalog.
#[derive(Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    /// Scenarios of a group share one lab and run together.
    pub group: &'static str,
    /// The topology it runs on unless `--topology` says otherwise.
    pub topology: &'static str,
    /// One line for `lab run --list`.
    pub about: &'static str,
    pub run: for<'a> fn(&'a Context) -> BoxFuture<'a, Result<()>>,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.group, self.name)
    }
}

/// Every scenario, in the order `lab run all` runs them.
pub fn catalog() -> Vec<Scenario> {
    [basics::SCENARIOS, workloads::SCENARIOS, batch::SCENARIOS, services::SCENARIOS].concat()
}

/// What `target` names in `catalog`: `all`, a group, or one scenario.
pub fn select(catalog: &[Scenario], target: &str) -> Result<Vec<Scenario>> {
    if target == "all" {
        return Ok(catalog.to_vec());
    }
    let group: Vec<Scenario> = catalog.iter().filter(|s| s.group == target).copied().collect();
    if !group.is_empty() {
        return Ok(group);
    }
    if let Some(one) = catalog.iter().find(|s| s.name == target) {
        return Ok(vec![*one]);
    }
    let mut groups: Vec<&str> = catalog.iter().map(|s| s.group).collect();
    groups.dedup();
    let names: Vec<&str> = catalog.iter().map(|s| s.name).collect();
    bail!("no scenario or group named {target:?}; groups: {}; scenarios: {} (or all; lab run --list shows them)", groups.join(", "), names.join(", "))
}

/// A JSON string's text ("" for anything else), as kubectl's -o json gives fields.
pub(crate) fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// `lab run --list`: group, scenario, topology, what it does.
pub fn list_table(catalog: &[Scenario]) -> String {
    let width = catalog.iter().map(|s| s.name.len()).max().unwrap_or(0).max("SCENARIO".len());
    let group_width = catalog.iter().map(|s| s.group.len()).max().unwrap_or(0).max("GROUP".len());
    let mut out = format!("{:<group_width$}   {:<width$}   {:<8}   ABOUT\n", "GROUP", "SCENARIO", "TOPOLOGY");
    for s in catalog {
        out += &format!("{:<group_width$}   {:<width$}   {:<8}   {}\n", s.group, s.name, s.topology, s.about);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_all_a_group_or_one() {
        let catalog = catalog();
        assert_eq!(select(&catalog, "all").unwrap().len(), catalog.len());
        let group = select(&catalog, "workloads").unwrap();
        assert!(!group.is_empty() && group.iter().all(|s| s.group == "workloads"));
        assert_eq!(select(&catalog, "namespaces").unwrap()[0].name, "namespaces");
        let unknown = select(&catalog, "nothing").unwrap_err().to_string();
        assert!(unknown.contains("no scenario or group named \"nothing\"") && unknown.contains("workloads"), "{unknown}");
    }

    #[test]
    fn names_are_unique_and_never_a_group() {
        let catalog = catalog();
        let mut names: Vec<&str> = catalog.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), catalog.len(), "a scenario name is used twice");
        assert!(catalog.iter().all(|s| !names.contains(&s.group) && s.name != "all"), "a name shadows a group");
        assert!(list_table(&catalog).lines().count() == catalog.len() + 1);
    }
}
