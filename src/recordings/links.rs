//! Recording links for CRMs that take a URL instead of a file (amoCRM's call `link`): an
//! HMAC-signed, expiring reference to one recording, `PUBLIC_BASE_URL/recordings/<token>`,
//! served by [`serve`] on `[recordings] public_listen` and nothing else there.
//!
//! The token is `<path, base64url>.<expiry, unix seconds>.<HMAC-SHA256, hex>` keyed by a
//! random key deskhook makes once (`storage.dir/recording-links.key`, 0600): a link can be
//! neither forged nor widened to another file, and stops working at its expiry. The file is
//! confined to `recordings.dirs` again when it is served (no symlink leads out), and served
//! with byte ranges, so players can seek.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::safety::AllowedDirs;

/// The key file under `storage.dir`.
pub(crate) const KEY_FILE: &str = "recording-links.key";
const KEY_BYTES: usize = 32;
const URL_SAFE: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Makes and checks links.
#[derive(Clone)]
pub(crate) struct RecordingLinks {
    base_url: String,
    ttl: Duration,
    key: Vec<u8>,
}

impl std::fmt::Debug for RecordingLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingLinks").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

/// Why a token does not open a recording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("not a recording link")]
    Malformed,
    #[error("the link's signature does not match")]
    Forged,
    #[error("the link expired")]
    Expired,
}

impl RecordingLinks {
    /// Links under `base_url`, valid `ttl` after the call ended, signed with `key`.
    pub(crate) fn new(base_url: &str, ttl: Duration, key: Vec<u8>) -> RecordingLinks {
        RecordingLinks { base_url: base_url.trim_end_matches('/').to_string(), ttl, key }
    }

    /// The links `[recordings] public_base_url` asks for (`None`: links are off). With
    /// `create`, the key is made if there is none (the daemon); else a throwaway one is used.
    pub(crate) fn from_config(config: &crate::config::Config, create: bool) -> Result<Option<RecordingLinks>, String> {
        let recordings = &config.recordings;
        if recordings.public_base_url.is_empty() {
            return Ok(None);
        }
        let key = RecordingLinks::key_in(&config.storage.dir, create).map_err(|error| {
            format!(
                "cannot read or make the recording links' key in {}: {error}; check that storage.dir is writable by \
                 the deskhook user",
                config.storage.dir.display()
            )
        })?;
        Ok(Some(RecordingLinks::new(&recordings.public_base_url, recordings.link_ttl.get(), key)))
    }

    /// The key in `dir/recording-links.key`, made (0600) when `create` and there is none yet.
    /// Without `create` (replay, demo) a missing key gives a throwaway one: links shown then
    /// open nothing.
    pub(crate) fn key_in(dir: &Path, create: bool) -> std::io::Result<Vec<u8>> {
        let path = dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(key) if key.len() >= KEY_BYTES => return Ok(key),
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} is too short; delete it to make a new key",
                    path.display()
                )))
            }
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            Err(_) => {}
        }
        let mut key = vec![0u8; KEY_BYTES];
        std::fs::File::open("/dev/urandom").and_then(|mut random| std::io::Read::read_exact(&mut random, &mut key))?;
        if create {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
            file.write_all(&key)?;
            file.sync_all()?;
        }
        Ok(key)
    }

    /// The link to the recording at `path` of a call that ended at `ended_at_ms`.
    pub(crate) fn link(&self, path: &str, ended_at_ms: i64) -> String {
        let expires = (ended_at_ms / 1000).saturating_add(self.ttl.as_secs() as i64);
        let encoded = URL_SAFE.encode(path.as_bytes());
        format!("{}/recordings/{encoded}.{expires}.{}", self.base_url, self.signature(&encoded, expires))
    }

    /// The recording a token refers to, if it is genuine and not expired at `now_s`.
    pub(crate) fn verify(&self, token: &str, now_s: i64) -> Result<PathBuf, LinkError> {
        let mut parts = token.split('.');
        let (Some(encoded), Some(expires), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(LinkError::Malformed);
        };
        let expires: i64 = expires.parse().map_err(|_| LinkError::Malformed)?;
        let expected = self.signature(encoded, expires);
        // Compared in constant time: the difference must not leak through timing.
        let same = expected.len() == signature.len()
            && expected.bytes().zip(signature.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if !same {
            return Err(LinkError::Forged);
        }
        if now_s > expires {
            return Err(LinkError::Expired);
        }
        let path = URL_SAFE.decode(encoded).map_err(|_| LinkError::Malformed)?;
        String::from_utf8(path).map(PathBuf::from).map_err(|_| LinkError::Malformed)
    }

    fn signature(&self, encoded: &str, expires: i64) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"deskhook-recording-v1\n");
        mac.update(encoded.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

/// Why the links listener is a risk as configured: reachable beyond this host while the
/// links are plain http (recordings of clients' calls would cross the network unencrypted).
pub(crate) fn exposure_warning(recordings: &crate::config::RecordingsConfig) -> Option<String> {
    let listen: std::net::SocketAddr = recordings.public_listen.parse().ok()?;
    let plain = recordings.public_base_url.starts_with("http://");
    (!listen.ip().is_loopback() && plain).then(|| {
        format!(
            "[recordings] public_listen {listen} is reachable beyond this host and public_base_url is plain http: \
             recordings travel unencrypted; put a TLS proxy in front (listen on 127.0.0.1, public_base_url = \
             \"https://…\")"
        )
    })
}

/// One byte range of a file of `size` bytes, from a `Range` header (`bytes=a-b`, `a-`, `-n`);
/// `None` when it cannot be satisfied (416).
pub(crate) fn byte_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let length: u64 = suffix.parse().ok().filter(|length| *length > 0)?;
            (size.saturating_sub(length), size - 1)
        }
        (start, "") => (start.parse().ok()?, size - 1),
        (start, end) => (start.parse().ok()?, end.parse::<u64>().ok()?.min(size - 1)),
    };
    (start <= end && start < size).then_some((start, end))
}

/// Serves `GET /recordings/<token>` (and `HEAD`, which axum answers from it without the body)
/// on `listener` until `shutdown`; every other request is 404.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    links: RecordingLinks,
    dirs: AllowedDirs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::routing::get;
    let state = std::sync::Arc::new((links, dirs));
    let app = axum::Router::new()
        .route("/recordings/{token}", get(recording))
        .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
        .with_state(state);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn recording(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<(RecordingLinks, AllowedDirs)>>,
    axum::extract::Path(token): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let (links, dirs) = &*state;
    let now = crate::wallclock::now_ms() / 1000;
    let path = match links.verify(&token, now) {
        Ok(path) => path,
        Err(error) => {
            tracing::debug!(%error, "a recording link was refused");
            return StatusCode::NOT_FOUND.into_response();
        }
    };
    // Confined again now: the file may have been replaced by a symlink since the call.
    let real = match dirs.confine(&path.to_string_lossy()) {
        Ok(real) => real,
        Err(error) => {
            tracing::warn!(%error, "a recording link points outside recordings.dirs or to a missing file");
            return StatusCode::NOT_FOUND.into_response();
        }
    };
    let mut file = match tokio::fs::File::open(&real).await {
        Ok(file) => file,
        Err(_) => return StatusCode::NOT_FOUND.into_response(),
    };
    let size = match file.metadata().await {
        Ok(metadata) => metadata.len(),
        Err(_) => return StatusCode::NOT_FOUND.into_response(),
    };
    let content_type = match real.extension().and_then(|ext| ext.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("wav") => "audio/wav",
        Some("mp3") => "audio/mpeg",
        Some("ogg") => "audio/ogg",
        _ => "application/octet-stream",
    };
    let range = headers.get(header::RANGE).and_then(|value| value.to_str().ok());
    let (status, start, end) = match range.map(|range| byte_range(range, size)) {
        None => (StatusCode::OK, 0, size.saturating_sub(1)),
        Some(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(None) => {
            return (StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{size}"))])
                .into_response()
        }
    };
    let length = if size == 0 { 0 } else { end - start + 1 };
    let mut response = axum::response::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, length)
        .header(header::CACHE_CONTROL, "private, max-age=3600");
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
    }
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file.take(length)));
    response.body(body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> RecordingLinks {
        RecordingLinks::new("https://pbx.example:8443/", Duration::from_secs(3600), vec![7; 32])
    }

    #[test]
    fn a_link_opens_its_file_until_it_expires_and_cannot_be_forged_or_widened() {
        let link = links().link("/var/spool/asterisk/monitor/a b.wav", 1_000_000);
        let token = link.strip_prefix("https://pbx.example:8443/recordings/").expect("under the base URL");
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "{token}");
        let path = links().verify(token, 1_000).expect("genuine");
        assert_eq!(path, PathBuf::from("/var/spool/asterisk/monitor/a b.wav"));
        assert_eq!(links().verify(token, 1_000 + 3_601), Err(LinkError::Expired));
        let (_, rest) = token.split_once('.').expect("parts");
        let other = format!("{}.{rest}", URL_SAFE.encode(b"/etc/shadow"));
        assert_eq!(links().verify(&other, 1_000), Err(LinkError::Forged));
        let later = token.replace(&format!(".{}.", 1_000 + 3_600), ".99999999999.");
        assert_eq!(links().verify(&later, 1_000), Err(LinkError::Forged));
        let stranger = RecordingLinks::new("https://pbx.example", Duration::from_secs(3600), vec![8; 32]);
        assert_eq!(stranger.verify(token, 1_000), Err(LinkError::Forged));
        assert_eq!(links().verify("nonsense", 1_000), Err(LinkError::Malformed));
        assert!(!format!("{:?}", links()).contains("7, 7"), "the key never shows");
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(byte_range("bytes=0-99", 1000), Some((0, 99)));
        assert_eq!(byte_range("bytes=900-", 1000), Some((900, 999)));
        assert_eq!(byte_range("bytes=-100", 1000), Some((900, 999)));
        assert_eq!(byte_range("bytes=990-2000", 1000), Some((990, 999)));
        assert_eq!(byte_range("bytes=1000-", 1000), None);
        assert_eq!(byte_range("bytes=5-1", 1000), None);
        assert_eq!(byte_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(byte_range("items=0-1", 1000), None);
    }

    #[test]
    fn links_beyond_loopback_without_tls_are_called_out() {
        let config = |listen: &str, base: &str| {
            let toml = format!(
                "[recordings]\nmode = \"mixmonitor\"\npublic_listen = \"{listen}\"\npublic_base_url = \"{base}\"\n"
            );
            crate::config::Config::from_toml(&toml, "config.toml").expect("valid").recordings
        };
        assert!(exposure_warning(&config("0.0.0.0:8078", "http://pbx.example:8078")).is_some());
        assert!(exposure_warning(&config("0.0.0.0:8078", "https://pbx.example")).is_none(), "TLS in front");
        assert!(exposure_warning(&config("127.0.0.1:8078", "http://127.0.0.1:8078")).is_none());
        for (toml, key) in [
            ("[recordings]\nmode = \"mixmonitor\"\npublic_listen = \"127.0.0.1:8078\"\n", "public_base_url"),
            ("[recordings]\nmode = \"mixmonitor\"\npublic_base_url = \"https://x\"\n", "public_listen"),
            (
                "[recordings]\nmode = \"mixmonitor\"\npublic_listen = \"x\"\npublic_base_url = \"https://x\"\n",
                "public_listen",
            ),
            (
                "[recordings]\nmode = \"ari\"\npublic_listen = \"127.0.0.1:1\"\npublic_base_url = \"https://x\"\n",
                "public_listen",
            ),
            (
                "[recordings]\nmode = \"mixmonitor\"\npublic_listen = \"127.0.0.1:1\"\npublic_base_url = \"ftp://x\"\n",
                "public_base_url",
            ),
        ] {
            let error = crate::config::Config::from_toml(toml, "config.toml").expect_err("refused");
            assert_eq!((error.section.as_str(), error.key.as_str()), ("recordings", key), "{error}");
        }
    }

    #[test]
    fn the_key_is_made_once_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shown = RecordingLinks::key_in(dir.path(), false).expect("a throwaway key");
        assert!(!dir.path().join(KEY_FILE).exists());
        let made = RecordingLinks::key_in(dir.path(), true).expect("made");
        assert_ne!(made, shown);
        assert_eq!(RecordingLinks::key_in(dir.path(), false).expect("read"), made);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
