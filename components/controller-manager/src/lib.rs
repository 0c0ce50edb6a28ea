//! kubelab's controller-manager: control loops that watch the API and
//! write back through it until the cluster is as the API says. Each
//! controller is a module of its own; the binary picks which run.

pub mod conditions;
pub mod discovery;
pub mod namespace;

use anyhow::{bail, Result};

/// Every controller this controller-manager has, all on by default.
pub const CONTROLLERS: &[&str] = &["namespace"];

/// The controllers `--controllers` selects, with upstream's syntax: `*`
/// turns on every controller that is on by default, `name` turns one on,
/// `-name` turns one off (and wins over `*`).
pub fn selected(flags: &[String]) -> Result<Vec<&'static str>> {
    for flag in flags {
        let name = flag.strip_prefix('-').unwrap_or(flag);
        if name != "*" && !CONTROLLERS.contains(&name) {
            bail!("{name:?} is not in the list of known controllers: {}", CONTROLLERS.join(", "));
        }
    }
    let all = flags.iter().any(|f| f == "*");
    Ok(CONTROLLERS.iter().copied().filter(|c| !flags.iter().any(|f| f.strip_prefix('-') == Some(c))).filter(|c| all || flags.iter().any(|f| f == c)).collect())
}

/// Runs the selected controllers with `client` until they end.
pub async fn run_controllers(client: kube::Client, controllers: &[&str], namespace_syncs: u16) {
    let mut running = Vec::new();
    for controller in controllers {
        tracing::info!("starting the {controller} controller");
        match *controller {
            "namespace" => running.push(tokio::spawn(namespace::run(client.clone(), namespace_syncs))),
            other => unreachable!("{other} is checked against CONTROLLERS by selected()"),
        }
    }
    for handle in running {
        let _ = handle.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(s: &[&str]) -> Vec<String> {
        s.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn controllers_are_selected_as_upstream() {
        assert_eq!(selected(&flags(&["*"])).unwrap(), ["namespace"]);
        assert_eq!(selected(&flags(&["*", "-namespace"])).unwrap(), Vec::<&str>::new());
        assert_eq!(selected(&flags(&["namespace"])).unwrap(), ["namespace"]);
        assert!(selected(&flags(&[])).unwrap().is_empty());
        let err = selected(&flags(&["*", "bogus"])).unwrap_err().to_string();
        assert!(err.contains("\"bogus\" is not in the list of known controllers"), "{err}");
    }
}
