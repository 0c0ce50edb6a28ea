//! Logs to stderr, filtered by `RUST_LOG` (info by default).

/// Sets up logging once, at the start of a component's `main`.
pub fn init() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())).init();
}
