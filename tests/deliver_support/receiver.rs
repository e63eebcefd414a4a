//! A loopback helpdesk webhook (axum on 127.0.0.1) that records every request and answers as
//! the test's script says: down, slow, failing, or fine.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Seen {
    /// 1-based over all requests this receiver got.
    pub number: usize,
    pub path: String,
    /// The query string (without `?`), empty when there is none.
    pub query: String,
    /// The `Authorization` header, when sent.
    pub authorization: Option<String>,
    pub content_type: String,
    pub content_length: Option<u64>,
    pub body: Bytes,
    pub at: Instant,
    /// `X-Deskhook-Signature`, when sent.
    pub signature: Option<String>,
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::status(200)
    }
    pub fn status(status: u16) -> Reply {
        Reply { status, delay: Duration::ZERO, retry_after: None, body: String::new() }
    }
    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
    pub fn with_body(mut self, body: &str) -> Reply {
        self.body = body.to_string();
        self
    }
    pub fn with_retry_after(mut self, value: &str) -> Reply {
        self.retry_after = Some(value.to_string());
        self
    }
}

pub type Script = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

#[derive(Default)]
struct Log {
    attempts: Vec<Seen>,
    accepted: Vec<Seen>,
}

struct Shared {
    script: Mutex<Script>,
    log: Mutex<Log>,
}

/// A running receiver. Lives as long as the runtime it was started on.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

/// A free loopback address nobody listens on (yet).
pub fn reserve_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("local addr")
}

impl Receiver {
    /// Starts on a fresh port, answering 200 to everything.
    pub async fn start() -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().expect("addr"), Arc::new(|_: &Seen| Reply::ok())).await
    }

    pub async fn start_with(script: Script) -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().expect("addr"), script).await
    }

    pub async fn start_on(addr: SocketAddr, script: Script) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind receiver");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared { script: Mutex::new(script), log: Mutex::new(Log::default()) });
        let app = Router::new().fallback(handle).with_state(shared.clone()).layer(DefaultBodyLimit::disable());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, shared }
    }

    /// The webhook URL, with a secret-looking token in its path.
    pub fn url(&self) -> String {
        format!("http://{}/webhooks/asterisk/{}", self.addr, TOKEN)
    }

    pub fn set_script(&self, script: Script) {
        *self.shared.script.lock().unwrap_or_else(|p| p.into_inner()) = script;
    }

    /// Every request received, in arrival order.
    pub fn attempts(&self) -> Vec<Seen> {
        self.shared.log.lock().unwrap_or_else(|p| p.into_inner()).attempts.clone()
    }

    /// The requests answered 2xx, in the order the answers were sent.
    pub fn accepted(&self) -> Vec<Seen> {
        self.shared.log.lock().unwrap_or_else(|p| p.into_inner()).accepted.clone()
    }

    pub fn accepted_count(&self) -> usize {
        self.shared.log.lock().unwrap_or_else(|p| p.into_inner()).accepted.len()
    }
}

/// The secret part of every test webhook URL: must never show up in logs or the outbox.
pub const TOKEN: &str = "cc75532f-secret-token";

async fn handle(State(shared): State<Arc<Shared>>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_string);
    let seen = {
        let mut log = shared.log.lock().unwrap_or_else(|p| p.into_inner());
        let seen = Seen {
            number: log.attempts.len() + 1,
            path: uri.path().to_string(),
            query: uri.query().unwrap_or_default().to_string(),
            authorization: header("authorization"),
            content_type: header("content-type").unwrap_or_default(),
            content_length: header("content-length").and_then(|value| value.parse().ok()),
            body,
            at: Instant::now(),
            signature: header("x-deskhook-signature"),
        };
        log.attempts.push(seen.clone());
        seen
    };
    let script = shared.script.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let reply = script(&seen);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_success() {
        shared.log.lock().unwrap_or_else(|p| p.into_inner()).accepted.push(seen);
    }
    let mut response = (status, reply.body).into_response();
    if let Some(value) = reply.retry_after.and_then(|value| value.parse().ok()) {
        response.headers_mut().insert("retry-after", value);
    }
    response
}
