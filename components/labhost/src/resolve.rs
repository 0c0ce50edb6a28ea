//! `labhost resolve`: waits for each name in turn to resolve through the
//! pod's own resolver (getaddrinfo: resolv.conf's search path and ndots),
//! asking again every few milliseconds, and prints when it did as Unix
//! milliseconds. A benchmark creates a Service and reads this line to learn
//! how long the name took to appear in cluster DNS; the clock is the
//! machine's, shared by every container on it.

use std::net::ToSocketAddrs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(clap::Args)]
pub struct Options {
    /// The names, waited for in this order.
    #[arg(required = true)]
    names: Vec<String>,
    /// How often to ask again while a name does not resolve.
    #[arg(long, default_value_t = 5)]
    every_ms: u64,
}

/// Blocks: getaddrinfo is synchronous, and this is all the process does.
pub fn run(options: Options) {
    println!("resolving {} names", options.names.len());
    for name in &options.names {
        let address = loop {
            if let Some(address) = (name.as_str(), 80).to_socket_addrs().ok().and_then(|mut a| a.next()) {
                break address.ip();
            }
            std::thread::sleep(Duration::from_millis(options.every_ms));
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        println!("{name} {now} {address}");
    }
}
