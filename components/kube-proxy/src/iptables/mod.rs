//! The iptables backend: the jump rules from the built-in chains (checked
//! and put back on every sync), the canary chains that tell a wiped table,
//! and one `iptables-restore --noflush` transaction per sync.

pub mod rules;

use std::collections::BTreeSet;

use anyhow::{bail, Result};

use crate::exec::Commands;
use crate::model::ServicePort;
use rules::{KUBE_EXTERNAL_SERVICES, KUBE_FIREWALL, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_PROXY_FIREWALL, KUBE_SERVICES};

pub use rules::{Rendered, Settings};

/// An empty chain in each table; if it is gone, someone wiped the table
/// and the next sync rewrites everything.
pub const CANARY: &str = "KUBE-PROXY-CANARY";
const CANARY_TABLES: &[&str] = &["mangle", "nat", "filter"];

/// A rule in a built-in chain that sends traffic into one of ours.
struct Jump {
    table: &'static str,
    from: &'static str,
    to: &'static str,
    comment: &'static str,
    extra: &'static [&'static str],
}

const NEW: &[&str] = &["-m", "conntrack", "--ctstate", "NEW"];

/// Upstream's jumps, each put first in its built-in chain.
const JUMPS: &[Jump] = &[
    Jump { table: "filter", from: "INPUT", to: KUBE_EXTERNAL_SERVICES, comment: "kubernetes externally-visible service portals", extra: NEW },
    Jump { table: "filter", from: "FORWARD", to: KUBE_EXTERNAL_SERVICES, comment: "kubernetes externally-visible service portals", extra: NEW },
    Jump { table: "filter", from: "INPUT", to: KUBE_NODEPORTS, comment: "kubernetes health check service ports", extra: &[] },
    Jump { table: "filter", from: "FORWARD", to: KUBE_SERVICES, comment: "kubernetes service portals", extra: NEW },
    Jump { table: "filter", from: "OUTPUT", to: KUBE_SERVICES, comment: "kubernetes service portals", extra: NEW },
    Jump { table: "filter", from: "FORWARD", to: KUBE_FORWARD, comment: "kubernetes forwarding rules", extra: &[] },
    Jump { table: "filter", from: "INPUT", to: KUBE_PROXY_FIREWALL, comment: "kubernetes load balancer firewall", extra: NEW },
    Jump { table: "filter", from: "OUTPUT", to: KUBE_PROXY_FIREWALL, comment: "kubernetes load balancer firewall", extra: NEW },
    Jump { table: "filter", from: "FORWARD", to: KUBE_PROXY_FIREWALL, comment: "kubernetes load balancer firewall", extra: NEW },
    Jump { table: "filter", from: "INPUT", to: KUBE_FIREWALL, comment: "", extra: &[] },
    Jump { table: "filter", from: "OUTPUT", to: KUBE_FIREWALL, comment: "", extra: &[] },
    Jump { table: "nat", from: "OUTPUT", to: KUBE_SERVICES, comment: "kubernetes service portals", extra: &[] },
    Jump { table: "nat", from: "PREROUTING", to: KUBE_SERVICES, comment: "kubernetes service portals", extra: &[] },
    Jump { table: "nat", from: "POSTROUTING", to: KUBE_POSTROUTING, comment: "kubernetes postrouting rules", extra: &[] },
];

impl Jump {
    fn rule(&self) -> Vec<String> {
        let mut args: Vec<String> = self.extra.iter().map(|s| s.to_string()).collect();
        // Upstream's jumps to KUBE-FIREWALL (once the kubelet's) carry no comment.
        if !self.comment.is_empty() {
            args.extend(["-m", "comment", "--comment", self.comment].map(String::from));
        }
        args.extend(["-j", self.to].map(String::from));
        args
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The iptables backend over whatever runs its commands.
pub struct Iptables<C> {
    commands: C,
    settings: Settings,
}

impl<C: Commands> Iptables<C> {
    pub fn new(commands: C, settings: Settings) -> Iptables<C> {
        Iptables { commands, settings }
    }

    pub fn commands(&self) -> &C {
        &self.commands
    }

    /// Makes the node's tables say what the model says: returns what was written.
    pub async fn sync(&self, ports: &[ServicePort]) -> Result<Rendered> {
        for table in CANARY_TABLES {
            self.ensure_chain(table, CANARY).await?;
        }
        for jump in JUMPS {
            self.ensure_chain(jump.table, jump.to).await?;
            let rule = jump.rule();
            let mut check = strings(&["-w", "-t", jump.table, "-C", jump.from]);
            check.extend(rule.iter().cloned());
            if self.commands.run("iptables", &check, None).await.is_err() {
                let mut insert = strings(&["-w", "-t", jump.table, "-I", jump.from]);
                insert.extend(rule);
                self.commands.run("iptables", &insert, None).await?;
            }
        }
        let existing = self.nat_chains().await?;
        let rendered = rules::render(ports, &self.settings, &existing);
        self.commands.run("iptables-restore", &strings(&["-w", "--noflush"]), Some(rendered.payload.as_bytes())).await?;
        Ok(rendered)
    }

    /// Whether the tables still look as the last sync left them: the
    /// canaries are there and the nat table still sends packets to
    /// KUBE-SERVICES (a flush by hand removes that jump).
    pub async fn intact(&self) -> bool {
        for table in CANARY_TABLES {
            if self.commands.run("iptables", &strings(&["-w", "-t", table, "-S", CANARY]), None).await.is_err() {
                return false;
            }
        }
        let prerouting = JUMPS.iter().find(|j| j.table == "nat" && j.from == "PREROUTING").expect("the nat PREROUTING jump is listed");
        let mut check = strings(&["-w", "-t", "nat", "-C", "PREROUTING"]);
        check.extend(prerouting.rule());
        self.commands.run("iptables", &check, None).await.is_ok()
    }

    async fn ensure_chain(&self, table: &str, chain: &str) -> Result<()> {
        if self.commands.run("iptables", &strings(&["-w", "-t", table, "-S", chain, "1"]), None).await.is_ok() {
            return Ok(());
        }
        match self.commands.run("iptables", &strings(&["-w", "-t", table, "-N", chain]), None).await {
            Ok(_) => Ok(()),
            // Made by someone else meanwhile: as good.
            Err(e) if e.to_string().contains("exists") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn nat_chains(&self) -> Result<BTreeSet<String>> {
        let saved = self.commands.run("iptables-save", &strings(&["-t", "nat"]), None).await?;
        Ok(chains_of(&saved))
    }
}

/// The chains an `iptables-save` of one table declares.
pub fn chains_of(saved: &str) -> BTreeSet<String> {
    saved.lines().filter_map(|l| l.strip_prefix(':')).filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

/// Fails when a payload would not be accepted as written (used by tests
/// that read it without running iptables).
pub fn check_payload(payload: &str) -> Result<()> {
    let mut declared: BTreeSet<&str> = BTreeSet::new();
    for line in payload.lines() {
        if let Some(chain) = line.strip_prefix(':') {
            declared.insert(chain.split_whitespace().next().unwrap_or_default());
        } else if line.starts_with('*') {
            declared.clear();
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let chain = rest.split_whitespace().next().unwrap_or_default();
            if !declared.contains(chain) {
                bail!("a rule for undeclared chain {chain}: {line}");
            }
            if let Some(target) = rest.split(" -j ").nth(1).and_then(|t| t.split_whitespace().next()) {
                if target.starts_with("KUBE-") && !declared.contains(target) {
                    bail!("a jump to undeclared chain {target}: {line}");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records every command; answers `iptables-save` with `saved`, and
    /// fails the commands whose line contains one of `failing`.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
        saved: String,
        failing: Vec<String>,
    }

    impl Commands for Recorder {
        async fn run(&self, program: &str, args: &[String], stdin: Option<&[u8]>) -> Result<String> {
            let line = format!("{program} {}", args.join(" "));
            self.calls.lock().unwrap().push(match stdin {
                Some(input) => format!("{line} <<{} bytes", input.len()),
                None => line.clone(),
            });
            if self.failing.iter().any(|f| line.contains(f.as_str())) {
                bail!("{program}: No chain/target/match by that name");
            }
            Ok(if program == "iptables-save" { self.saved.clone() } else { String::new() })
        }
    }

    #[tokio::test]
    async fn a_sync_puts_back_missing_jumps_and_chains_then_restores_once() {
        let recorder = Recorder {
            saved: "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SVC-OLD0000000000000 - [0:0]\nCOMMIT\n".into(),
            // The canary in nat is gone, and the nat jumps are missing.
            failing: vec!["-t nat -S KUBE-PROXY-CANARY".into(), "-t nat -C".into()],
            ..Default::default()
        };
        let backend = Iptables::new(recorder, Settings::default());
        let rendered = backend.sync(&[]).await.unwrap();
        assert!(rendered.payload.contains("-X KUBE-SVC-OLD0000000000000"));
        let calls = backend.commands.calls.lock().unwrap().clone();
        assert!(calls.contains(&"iptables -w -t nat -N KUBE-PROXY-CANARY".to_string()), "{calls:#?}");
        assert!(calls.contains(&"iptables -w -t nat -I PREROUTING -m comment --comment kubernetes service portals -j KUBE-SERVICES".to_string()), "{calls:#?}");
        assert!(!calls.iter().any(|c| c.contains("-t filter -I")), "filter's jumps were there: {calls:#?}");
        let restores: Vec<&String> = calls.iter().filter(|c| c.starts_with("iptables-restore")).collect();
        assert_eq!(restores.len(), 1, "{calls:#?}");
        assert!(restores[0].starts_with("iptables-restore -w --noflush <<"), "{calls:#?}");
        assert_eq!(calls.last(), Some(restores[0]), "the restore comes after the jumps");
    }

    #[tokio::test]
    async fn a_flushed_nat_table_is_noticed() {
        let intact = Iptables::new(Recorder::default(), Settings::default());
        assert!(intact.intact().await);
        let flushed = Iptables::new(Recorder { failing: vec!["-t nat -C PREROUTING".into()], ..Default::default() }, Settings::default());
        assert!(!flushed.intact().await);
        let wiped = Iptables::new(Recorder { failing: vec!["-t mangle -S KUBE-PROXY-CANARY".into()], ..Default::default() }, Settings::default());
        assert!(!wiped.intact().await);
    }

    #[test]
    fn payload_checks_catch_undeclared_chains() {
        assert!(check_payload("*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j KUBE-SVC-X\nCOMMIT\n").is_err());
        assert!(check_payload("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-X - [0:0]\n-A KUBE-SERVICES -j KUBE-SVC-X\nCOMMIT\n").is_ok());
    }
}
