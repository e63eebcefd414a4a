//! The HTTP face of `/forward` (axum): `GET /forward`, `GET /healthz`, `GET /metrics`.
//!
//! `/forward` reads the raw query itself so that any bytes a caller ID can carry (non-UTF-8,
//! `&`, `=`, newlines, kilobytes) end in a one-line 400 or a clean answer, never in an
//! extractor's error page or a body the dialplan's hashcompat parser would misread.

use std::future::Future;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use bytes::Bytes;
use tokio::net::TcpListener;

use super::service::ForwardService;
use crate::config::allow::AllowList;
use crate::numbers::PhoneError;

/// Longer `trunk`/`callid` values are ignored: they are labels, not worth a refusal.
const MAX_LABEL_LEN: usize = 128;

const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// The router serving `/forward`, `/healthz` and `/metrics`.
pub fn router(service: ForwardService) -> Router {
    Router::new()
        .route("/forward", get(forward))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(service)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then finishes open requests.
/// Clients outside `allow` (this host is always in) get 403 and nothing else.
pub async fn serve(
    listener: TcpListener,
    service: ForwardService,
    allow: AllowList,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Small answers on kept-alive connections: never let Nagle hold one back.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, guarded(service, allow).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// [`router`] behind `allow`: needs the peer's address (`ConnectInfo<SocketAddr>`).
pub fn guarded(service: ForwardService, allow: AllowList) -> Router {
    router(service).layer(axum::middleware::from_fn_with_state(Arc::new(allow), only_allowed))
}

async fn only_allowed(
    State(allow): State<Arc<AllowList>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if allow.allows(peer.ip()) {
        return next.run(request).await;
    }
    crate::metrics::counter!("deskhook_forward_refused_clients_total", "Requests from addresses forward.allow lacks.")
        .inc();
    tracing::debug!(%peer, "a client outside forward.allow was refused");
    (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, TEXT_PLAIN)], "not allowed: this address is not in forward.allow\n")
        .into_response()
}

/// The parameters `/forward` understands, decoded.
#[derive(Debug, Default, PartialEq, Eq)]
struct ForwardParams {
    phone: String,
    trunk: String,
    callid: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum BadRequest {
    #[error("{0}")]
    Phone(#[from] PhoneError),
    #[error("phone is given more than once: expected one caller number")]
    RepeatedPhone,
}

fn parse_params(raw_query: Option<&str>) -> Result<ForwardParams, BadRequest> {
    let mut params = ForwardParams::default();
    let mut phone = None;
    for (key, value) in form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes()) {
        match &*key {
            "phone" if phone.is_some() => return Err(BadRequest::RepeatedPhone),
            "phone" => phone = Some(value.into_owned()),
            "trunk" => params.trunk = label(&value),
            "callid" => params.callid = label(&value),
            _ => {}
        }
    }
    params.phone = phone.ok_or(BadRequest::Phone(PhoneError::Missing))?;
    Ok(params)
}

/// A trunk or call id as given, or empty when it is too long or holds control characters.
fn label(value: &str) -> String {
    if value.len() > MAX_LABEL_LEN || value.chars().any(char::is_control) {
        String::new()
    } else {
        value.to_string()
    }
}

async fn forward(State(service): State<ForwardService>, RawQuery(raw_query): RawQuery) -> Response {
    let checked = parse_params(raw_query.as_deref()).and_then(|params| Ok((service.normalise(&params.phone)?, params)));
    let (phone, params) = match checked {
        Ok(checked) => checked,
        Err(reason) => {
            crate::metrics::counter!("deskhook_forward_bad_requests_total", "/forward requests refused with 400.")
                .inc();
            return plain(StatusCode::BAD_REQUEST, Bytes::from(reason.to_string()));
        }
    };
    let resolved = service.answer(&phone, &params.trunk, &params.callid).await;
    plain(StatusCode::OK, resolved.body)
}

fn plain(status: StatusCode, body: Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, TEXT_PLAIN)], body).into_response()
}

async fn healthz(State(service): State<ForwardService>) -> Response {
    let report = service.health().report();
    let status = if report.healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(report)).into_response()
}

async fn metrics() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))],
        crate::metrics::render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded_and_checked() {
        let params =
            parse_params(Some("phone=%2B7%20916%201234567&trunk=74951234567&callid=1700000000.1&x=1")).expect("valid");
        assert_eq!(params.phone, "+7 916 1234567");
        assert_eq!((params.trunk.as_str(), params.callid.as_str()), ("74951234567", "1700000000.1"));
        assert_eq!(parse_params(None), Err(BadRequest::Phone(PhoneError::Missing)));
        assert_eq!(parse_params(Some("trunk=1")), Err(BadRequest::Phone(PhoneError::Missing)));
        assert_eq!(parse_params(Some("phone=1&phone=2")), Err(BadRequest::RepeatedPhone));
        let long_trunk = format!("phone=1&trunk={}", "9".repeat(500));
        assert_eq!(parse_params(Some(&long_trunk)).expect("valid").trunk, "");
        assert_eq!(parse_params(Some("phone=1&callid=a%0Ab")).expect("valid").callid, "");
        for reason in [BadRequest::RepeatedPhone, BadRequest::Phone(PhoneError::Missing)] {
            assert!(!reason.to_string().contains(['&', '=', '\n']));
        }
    }
}
