use tracing_subscriber::EnvFilter;

/// Logs to stderr, filtered by `RUST_LOG`, else by `default` (e.g. `info`).
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
