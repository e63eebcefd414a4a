//! Log output for the daemon commands: plain lines on stderr, no colours unless stderr is a
//! terminal, and no timestamps of our own under journald (it stamps every line itself).
//! `RUST_LOG` overrides the level (e.g. `RUST_LOG=debug`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are ignored.
pub fn init(default_level: &str) {
    let directives =
        format!("{default_level},hyper=warn,hyper_util=warn,reqwest=warn,tungstenite=warn,tokio_tungstenite=warn");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    let result = if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
    // Already installed (e.g. by a test harness): keep the existing one.
    let _ = result;
}
