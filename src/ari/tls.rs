//! `[ari] ca_file`: Asterisk's TLS certificate checked against the admin's CA (or the
//! certificate itself, when it is self-signed, as on most PBXes) instead of the system's trust
//! store, for both the REST client and the event websocket.

use std::sync::Arc;

pub(crate) use crate::tls::ca_certificates;

/// The websocket's TLS connector trusting only the certificates of `path`.
pub(crate) fn websocket_connector(path: &str) -> Result<tokio_tungstenite::Connector, String> {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for certificate in ca_certificates(path)? {
        roots.add(certificate).map_err(|error| format!("{path}: {error}"))?;
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_tungstenite::Connector::Rustls(Arc::new(config)))
}
