//! The nftables backend (`--proxy-mode=nftables`): the whole table
//! `ip kube-proxy` written in one atomic `nft -f -` transaction per sync
//! (the table added, deleted and written again), and a cheap check that
//! nobody flushed or deleted it since.

pub mod ruleset;

use anyhow::Result;

use crate::exec::Commands;
use crate::model::ServicePort;
use ruleset::{FAMILY, TABLE};

pub use ruleset::{Ruleset, Settings};

/// What a sync wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub transaction: String,
    pub rules: usize,
    pub elements: usize,
}

/// The nftables backend over whatever runs its commands.
pub struct Nftables<C> {
    commands: C,
    settings: Settings,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

impl<C: Commands> Nftables<C> {
    pub fn new(commands: C, settings: Settings) -> Nftables<C> {
        Nftables { commands, settings }
    }

    pub fn commands(&self) -> &C {
        &self.commands
    }

    /// Makes the node's table say what the model says: returns what was written.
    pub async fn sync(&self, ports: &[ServicePort]) -> Result<Rendered> {
        let ruleset = ruleset::render(ports, &self.settings);
        let transaction = ruleset.replace_all();
        self.commands.run("nft", &strings(&["-f", "-"]), Some(transaction.as_bytes())).await?;
        Ok(Rendered { transaction, rules: ruleset.rule_count(), elements: ruleset.element_count() })
    }

    /// Whether the table still looks as the last sync left them: it exists
    /// and its nat-prerouting chain still sends packets to `services` (a
    /// `nft flush table` empties every chain).
    pub async fn intact(&self) -> bool {
        match self.commands.run("nft", &strings(&["list", "chain", FAMILY, TABLE, "nat-prerouting"]), None).await {
            Ok(listed) => listed.contains(&format!("jump {}", ruleset::SERVICES)),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests;
