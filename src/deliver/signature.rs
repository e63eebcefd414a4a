//! `X-Deskhook-Signature`: how the `json` sink's receivers know a request is deskhook's and
//! fresh. Computed when a request is sent (the time is part of it), so it lives with delivery.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "X-Deskhook-Signature";

/// The header's value for `body` sent at `unix_seconds`:
/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn signature(secret: &str, unix_seconds: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length, so this never fails; an empty MAC would fail every check.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return format!("t={unix_seconds},v1=");
    };
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest: String = mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
    format!("t={unix_seconds},v1={digest}")
}
