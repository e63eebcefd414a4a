//! Secrets from the config (the ARI password, CRM tokens, webhook URLs whose path is the
//! token, HMAC keys) and the rule that they never show: [`Secret`] prints as `<redacted>` in
//! `Debug` and has no `Display` (no `format!` or header builder takes it by mistake;
//! [`Secret::expose`] marks each use), and every secret deskhook holds is registered here so that the log
//! writer ([`scrub`]) blanks it out of any line, whichever library wrote it and at whatever
//! level (HTTP clients at trace level print `authorization: Basic …`).

use std::sync::RwLock;

use base64::Engine as _;

/// A secret value: usable through [`Secret::expose`], never printed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value` and registers it for [`scrub`].
    pub(crate) fn new(value: impl Into<String>) -> Secret {
        let value = value.into();
        register(&value);
        Secret(value)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret::new(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Secrets shorter than this are not blanked out of logs (they would blank ordinary words).
const MIN_SCRUBBED: usize = 4;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers `value` (and its URL-encoded spelling) as a secret to blank out of every log line.
pub(crate) fn register(value: &str) {
    let value = value.trim();
    if value.len() < MIN_SCRUBBED {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
    for spelling in [value.to_string(), encoded] {
        if !secrets.contains(&spelling) {
            secrets.push(spelling);
        }
    }
    // Longest first, so a secret containing another is blanked whole.
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
}

/// Registers what HTTP Basic authentication with `username`/`password` puts on the wire.
pub(crate) fn register_basic_auth(username: &str, password: &str) {
    register(password);
    register(&base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")));
}

/// Registers the secret parts of a URL: its path (a webhook's token) and its query.
pub(crate) fn register_url(url: &str) {
    if let Ok(parsed) = url::Url::parse(url) {
        let path = parsed.path().trim_matches('/');
        if !path.is_empty() {
            register(path);
            for segment in path.split('/').filter(|segment| segment.len() >= 8) {
                register(segment);
            }
        }
        if let Some(query) = parsed.query() {
            register(query);
        }
        if !parsed.password().unwrap_or_default().is_empty() {
            register(parsed.password().unwrap_or_default());
        }
    }
}

/// `text` with every registered secret replaced by `<redacted>`.
pub(crate) fn scrub(text: &str) -> std::borrow::Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut text = std::borrow::Cow::Borrowed(text);
    for secret in secrets.iter() {
        if text.contains(secret.as_str()) {
            text = std::borrow::Cow::Owned(text.replace(secret.as_str(), "<redacted>"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_and_is_blanked_from_text_in_every_spelling() {
        let secret = Secret::new("s3cret/p@ss word");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(secret.expose(), "s3cret/p@ss word");
        assert_eq!(scrub("password=s3cret/p@ss word!"), "password=<redacted>!");
        assert_eq!(scrub("q=s3cret%2Fp%40ss+word"), "q=<redacted>");
        register_basic_auth("deskhook", "another-pw");
        let basic = base64::engine::general_purpose::STANDARD.encode("deskhook:another-pw");
        assert_eq!(scrub(&format!("authorization: Basic {basic}")), "authorization: Basic <redacted>");
        register_url("https://desk.example/webhooks/asterisk/cc75532f-tok?key=abcdef");
        let line = scrub("POST https://desk.example/webhooks/asterisk/cc75532f-tok?key=abcdef");
        assert!(!line.contains("cc75532f") && !line.contains("abcdef") && line.contains("desk.example"), "{line}");
        register("ab");
        assert_eq!(scrub("ab cd"), "ab cd", "too short to blank");
    }
}
