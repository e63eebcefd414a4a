//! A read-only face of ARI for Omnidesk's Asterisk integration, which logs into ARI from the
//! internet to read the operators' list (`/ari/endpoints`). Instead of opening ARI itself
//! (read-write: it can hang up or originate calls), `[omnidesk_endpoints]` serves exactly
//! `GET /ari/endpoints` (the extensions only, no trunks, in ARI's JSON shape) and
//! `GET /ari/asterisk/info`, with a user and password of its own, over TLS with the admin's
//! certificate; everything else is 404. A client that fails the password five times in a
//! minute is refused (429) for five minutes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::ari::client::AriClient;
use crate::calls::classify::{ChannelClass, Classifier};
use crate::config::{Config, OmnideskEndpointsConfig};
use crate::secret::Secret;

/// Failed logins allowed per client in [`FAILURE_WINDOW`] before it is refused for [`LOCKOUT`].
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
const LOCKOUT: Duration = Duration::from_secs(300);
/// ARI is asked at most this often, however often the facade is.
const CACHE_FOR: Duration = Duration::from_secs(5);

struct Facade {
    ari: AriClient,
    classifier: Classifier,
    username: String,
    password: Secret,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    cache: tokio::sync::Mutex<HashMap<&'static str, (Instant, Value)>>,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

/// Why a request gets no answer from ARI.
enum Refusal {
    Unauthorized,
    LockedOut { seconds: u64 },
    AsteriskDown,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            // As ARI answers a wrong password.
            Refusal::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"Asterisk REST Interface\"")],
                "{\"error\": \"Authentication required\"}",
            )
                .into_response(),
            Refusal::LockedOut { seconds } => (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, seconds.to_string())],
                "too many failed logins\n",
            )
                .into_response(),
            Refusal::AsteriskDown => (StatusCode::BAD_GATEWAY, "Asterisk does not answer\n").into_response(),
        }
    }
}

/// The connection's peer, for the failed-login count.
#[derive(Clone, Copy)]
struct Peer(SocketAddr);

/// Starts the facade when `[omnidesk_endpoints] listen` is set; it stops at `shutdown`.
pub(crate) async fn start(
    config: &Config,
    shutdown: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    let settings = &config.omnidesk_endpoints;
    if settings.listen.is_empty() {
        return Ok(None);
    }
    let ari = AriClient::new(&config.ari).map_err(|error| format!("[omnidesk_endpoints]: {error}"))?;
    let classifier = Classifier::new(&config.pbx.extension_pattern, &config.pbx.trunks)
        .map_err(|error| format!("[pbx] extension_pattern: {error}"))?;
    let tls = match (settings.tls_cert.is_empty(), settings.tls_key.is_empty()) {
        (true, true) => None,
        _ => Some(tls_acceptor(settings)?),
    };
    let listener = tokio::net::TcpListener::bind(&settings.listen).await.map_err(|error| {
        format!(
            "config.toml: [omnidesk_endpoints] listen: cannot listen on {}: {error}; pick a free address",
            settings.listen
        )
    })?;
    let facade = Arc::new(Facade {
        ari,
        classifier,
        username: settings.username.clone(),
        password: settings.password.clone(),
        failures: Mutex::new(HashMap::new()),
        cache: tokio::sync::Mutex::new(HashMap::new()),
    });
    let app = Router::new()
        .route("/ari/endpoints", get(endpoints))
        .route("/ari/asterisk/info", get(asterisk_info))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(facade);
    tracing::info!(
        "Omnidesk's read-only ARI on {}://{} (GET /ari/endpoints and /ari/asterisk/info only)",
        if tls.is_some() { "https" } else { "http" },
        settings.listen
    );
    Ok(Some(tokio::spawn(accept_loop(listener, tls, app, shutdown))))
}

fn tls_acceptor(settings: &OmnideskEndpointsConfig) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.tls_cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|error| {
            format!("[omnidesk_endpoints] tls_cert {}: {error}; expected a PEM certificate chain", settings.tls_cert)
        })?;
    let key = PrivateKeyDer::from_pem_file(&settings.tls_key).map_err(|error| {
        format!("[omnidesk_endpoints] tls_key {}: {error}; expected a PEM private key", settings.tls_key)
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let server = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|error| format!("[omnidesk_endpoints] tls_cert/tls_key: {error}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "Omnidesk's read-only ARI: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let app = app.clone().layer(axum::Extension(Peer(peer)));
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new(app);
            let http = hyper::server::conn::http1::Builder::new();
            let served = match tls {
                Some(tls) => match tokio::time::timeout(Duration::from_secs(10), tls.accept(stream)).await {
                    Ok(Ok(stream)) => http
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await
                        .map_err(|e| e.to_string()),
                    Ok(Err(error)) => Err(format!("TLS handshake: {error}")),
                    Err(_) => Err("TLS handshake timed out".into()),
                },
                None => http
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await
                    .map_err(|e| e.to_string()),
            };
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "Omnidesk's read-only ARI: a connection ended with an error");
            }
        });
    }
}

impl Facade {
    /// `Ok` when the request carries the facade's user and password; else the answer to give.
    fn authorize(&self, peer: IpAddr, headers: &HeaderMap) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(locked_until) =
            failures.get(&peer).and_then(|entry| entry.locked_until).filter(|until| *until > now)
        {
            return Err(Refusal::LockedOut { seconds: (locked_until - now).as_secs().max(1) });
        }
        if self.credentials_match(headers) {
            failures.remove(&peer);
            return Ok(());
        }
        let entry = failures.entry(peer).or_insert(Failures { count: 0, since: now, locked_until: None });
        if now.duration_since(entry.since) > FAILURE_WINDOW {
            *entry = Failures { count: 0, since: now, locked_until: None };
        }
        entry.count += 1;
        if entry.count >= MAX_FAILURES {
            entry.locked_until = Some(now + LOCKOUT);
            tracing::warn!(%peer, "Omnidesk's read-only ARI: {MAX_FAILURES} failed logins; refusing this address for 5 minutes");
        }
        // Forgotten clients do not pile up.
        failures.retain(|_, entry| {
            entry.locked_until.is_some_and(|until| until > now) || now.duration_since(entry.since) < FAILURE_WINDOW
        });
        Err(Refusal::Unauthorized)
    }

    fn credentials_match(&self, headers: &HeaderMap) -> bool {
        use base64::Engine as _;
        let Some(encoded) = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
        let expected = format!("{}:{}", self.username, self.password.expose());
        // Compared in constant time.
        decoded.len() == expected.len()
            && decoded.iter().zip(expected.as_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// ARI's answer to `path`, at most [`CACHE_FOR`] old.
    async fn ari(&self, path: &'static str) -> Result<Value, Refusal> {
        let mut cache = self.cache.lock().await;
        if let Some((at, value)) = cache.get(path) {
            if at.elapsed() < CACHE_FOR {
                return Ok(value.clone());
            }
        }
        let fetched = match path {
            "/endpoints" => self.ari.endpoints_json().await,
            _ => self.ari.asterisk_info_json().await,
        };
        match fetched {
            Ok(value) => {
                cache.insert(path, (Instant::now(), value.clone()));
                Ok(value)
            }
            Err(error) => {
                tracing::warn!(%error, "Omnidesk's read-only ARI: Asterisk did not answer {path}");
                Err(Refusal::AsteriskDown)
            }
        }
    }
}

async fn endpoints(
    State(facade): State<Arc<Facade>>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = facade.authorize(peer.ip(), &headers) {
        return refused.into_response();
    }
    let all = match facade.ari("/endpoints").await {
        Ok(all) => all,
        Err(failed) => return failed.into_response(),
    };
    let extensions: Vec<Value> = all
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|endpoint| {
            let resource = endpoint.get("resource").and_then(Value::as_str).unwrap_or_default();
            matches!(facade.classifier.endpoint(resource), ChannelClass::Extension(_))
        })
        .cloned()
        .collect();
    axum::Json(Value::Array(extensions)).into_response()
}

async fn asterisk_info(
    State(facade): State<Arc<Facade>>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = facade.authorize(peer.ip(), &headers) {
        return refused.into_response();
    }
    match facade.ari("/asterisk/info").await {
        Ok(info) => axum::Json(info).into_response(),
        Err(failed) => failed.into_response(),
    }
}
