//! Shared by the delivery tests and bench: a loopback webhook receiver whose answers the test
//! scripts, test events, fast retry settings, and log capture.
#![allow(dead_code)]

pub mod receiver;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use deskhook::config::{DurationSpec, HelpdeskConfig};
use deskhook::sinks::omnidesk::OmnideskEvent;

/// Retry settings that keep each test to a few seconds.
pub fn fast_config() -> HelpdeskConfig {
    HelpdeskConfig {
        retention: DurationSpec::secs(3600),
        connect_timeout: DurationSpec(Duration::from_secs(2)),
        request_timeout: DurationSpec(Duration::from_secs(5)),
        max_backoff: DurationSpec(Duration::from_millis(400)),
        min_backoff: DurationSpec(Duration::from_millis(50)),
        max_parallel: 4,
        outbox_max_rows: 100_000,
        client_error_tries: 2,
        keep_delivered: DurationSpec::secs(3600),
        ..HelpdeskConfig::default()
    }
}

/// Event `seq` of a call with `total` events: start, answered..., ended. `to_user` carries `seq`
/// so the receiver can tell events apart.
pub fn event(call: &str, seq: usize, total: usize) -> OmnideskEvent {
    let status = if seq == 0 {
        "start of an incoming call"
    } else if seq + 1 == total {
        "incoming call is ended"
    } else {
        "incoming call answered"
    };
    OmnideskEvent {
        unique_id: call.to_string(),
        status: status.to_string(),
        from_user: "79161234567".into(),
        to_user: seq.to_string(),
        at: 1_714_564_800_000 + seq as i64 * 1000,
        call_duration: (seq + 1 == total).then_some(seq as u64),
        once_per_call: seq == 0 || seq + 1 == total,
    }
}

/// The fields of a urlencoded body.
pub fn form_fields(body: &[u8]) -> BTreeMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// (unique_id, seq) of an event body built by [`event`].
pub fn call_and_seq(body: &[u8]) -> Option<(String, usize)> {
    let fields = form_fields(body);
    Some((fields.get("unique_id")?.clone(), fields.get("to_user")?.parse().ok()?))
}

/// Polls `condition` until it holds; fails the test with `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything logged by any test of this binary (global subscriber, installed once).
pub fn captured_logs() -> String {
    let buffer = log_buffer();
    let bytes = buffer.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&bytes).into_owned()
}

fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let sink = buffer.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("deskhook=debug"))
                .with_ansi(false)
                .with_writer(move || BufferWriter(sink.clone()))
                .finish();
            let _ = tracing::subscriber::set_global_default(subscriber);
            buffer
        })
        .clone()
}

/// Installs the log capture; call at the start of every test.
pub fn capture_logs() {
    let _ = log_buffer();
}

struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufferWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A config file for the real binary pointing at `storage_dir` and `webhook_url`.
pub fn write_config(dir: &Path, storage_dir: &Path, webhook_url: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    let text =
        format!("[helpdesk]\nwebhook_url = \"{webhook_url}\"\n\n[storage]\ndir = \"{}\"\n", storage_dir.display());
    std::fs::write(&path, text).expect("write config");
    path
}

/// One part of a `multipart/form-data` body.
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// Splits a `multipart/form-data` body (RFC 7578) into its parts.
pub fn multipart_parts(content_type: &str, body: &[u8]) -> Vec<Part> {
    let find = |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).position(|w| w == needle);
    let boundary = content_type.split("boundary=").nth(1).expect("boundary").trim_matches('"');
    let delimiter = format!("--{boundary}");
    let closing = format!("\r\n{delimiter}");
    let start = find(body, delimiter.as_bytes()).expect("first delimiter");
    let mut rest = &body[start + delimiter.len()..];
    let mut parts = Vec::new();
    while !rest.starts_with(b"--") {
        rest = rest.strip_prefix(b"\r\n").expect("CRLF after delimiter");
        let headers_end = find(rest, b"\r\n\r\n").expect("part headers");
        let headers = String::from_utf8_lossy(&rest[..headers_end]).into_owned();
        rest = &rest[headers_end + 4..];
        let end = find(rest, closing.as_bytes()).expect("part end");
        let data = rest[..end].to_vec();
        rest = &rest[end + closing.len()..];
        let attribute = |name: &str| {
            let prefix = format!("{name}=\"");
            let start = headers.find(&prefix)? + prefix.len();
            headers[start..].split('"').next().map(str::to_string)
        };
        let content_type = headers.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type").then(|| value.trim().to_string())
        });
        parts.push(Part {
            name: attribute("; name").expect("part name"),
            filename: attribute("; filename"),
            content_type,
            data,
        });
    }
    parts
}
