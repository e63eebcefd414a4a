//! Log output for the daemon commands: plain lines on stderr, no colours unless stderr is a
//! terminal, and no timestamps of our own under journald (it stamps every line itself).
//!
//! `RUST_LOG` sets the level: `RUST_LOG=debug` (or `trace`) is deskhook's own detail, while
//! the HTTP and websocket libraries stay at `warn` unless named (`RUST_LOG=debug,hyper=debug`).
//! Every line goes through `crate::secret::scrub`: no secret from the config (or a token
//! deskhook was given since) is ever written, at any level, by any library.

use std::io::{IsTerminal, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Libraries whose debug and trace output is their internals (and, for the HTTP ones, the
/// headers of every request): quiet unless `RUST_LOG` names them.
const CHATTY: [&str; 8] =
    ["hyper", "hyper_util", "reqwest", "h2", "rustls", "tungstenite", "tokio_tungstenite", "axum"];

/// The filter for `RUST_LOG` (or `default_level` without it): the chatty libraries at `warn`
/// unless the directives name them.
pub(crate) fn directives(rust_log: Option<&str>, default_level: &str) -> String {
    let given = rust_log.map(str::trim).filter(|given| !given.is_empty()).unwrap_or(default_level);
    let mut directives = given.to_string();
    for library in CHATTY {
        let named = given.split(',').any(|directive| {
            directive.trim().split(['=', '[', ':']).next().is_some_and(|target| target.trim() == library)
        });
        if !named {
            directives.push_str(&format!(",{library}=warn"));
        }
    }
    directives
}

/// Installs the global subscriber once; later calls are ignored.
pub(crate) fn init(default_level: &str) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = EnvFilter::try_new(directives(rust_log.as_deref(), default_level))
        .unwrap_or_else(|_| EnvFilter::new(directives(None, default_level)));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ScrubbedStderr)
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

/// stderr, each log line written whole and with every secret blanked.
struct ScrubbedStderr;

impl<'a> MakeWriter<'a> for ScrubbedStderr {
    type Writer = ScrubbedLine;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbedLine(Vec::with_capacity(256))
    }
}

/// One formatted event, scrubbed and written when dropped.
pub(crate) struct ScrubbedLine(Vec<u8>);

impl Write for ScrubbedLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbedLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = std::io::stderr().lock().write_all(crate::secret::scrub(&text).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::directives;

    #[test]
    fn a_bare_level_leaves_the_http_libraries_quiet_and_a_named_one_is_heard() {
        let bare = directives(Some("trace"), "info");
        assert!(bare.starts_with("trace,") && bare.contains("hyper=warn") && bare.contains("reqwest=warn"), "{bare}");
        let named = directives(Some("debug,hyper=trace"), "info");
        assert!(named.contains("hyper=trace") && !named.contains("hyper=warn") && named.contains("hyper_util=warn"));
        assert!(directives(None, "info").starts_with("info,"));
        assert!(tracing_subscriber::EnvFilter::try_new(directives(Some("deskhook=debug"), "info")).is_ok());
    }
}
