//! Loopback pieces for the `/forward` tests: deskhook's own server, fake CRMs that answer with
//! the shapes their API docs show (and can be slow or broken), and a small HTTP client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use deskhook::config::Config;
use deskhook::forward::ForwardService;
use deskhook::health::Health;
use deskhook::history::History;
use deskhook::presence::Presence;
use serde_json::{json, Value};

/// Parses a test config (TOML), failing the test with the config error.
pub fn config(toml: &str) -> Config {
    Config::from_toml(toml, "test.toml").unwrap_or_else(|error| panic!("test config: {error}"))
}

pub async fn listen() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

/// A running deskhook `/forward` server.
pub struct Forward {
    pub addr: SocketAddr,
    pub service: ForwardService,
    pub client: reqwest::Client,
}

impl Forward {
    pub async fn start(config: &Config, presence: Presence, history: Option<History>) -> Forward {
        Self::start_with_health(config, presence, history, Health::new()).await
    }

    pub async fn start_with_health(
        config: &Config,
        presence: Presence,
        history: Option<History>,
        health: Health,
    ) -> Forward {
        let service = ForwardService::new(config, presence, history, health).expect("forward service");
        let (listener, addr) = listen().await;
        tokio::spawn(deskhook::forward::serve(listener, service.clone(), Default::default(), std::future::pending()));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        Forward { addr, service, client }
    }

    /// `GET /forward?<raw query>`: status and body.
    pub async fn get(&self, raw_query: &str) -> (u16, String) {
        let url = format!("http://{}/forward?{raw_query}", self.addr);
        let response = self.client.get(url).send().await.expect("GET /forward");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    pub async fn phone(&self, phone: &str) -> String {
        let query = format!("phone={}", urlencode(phone));
        let (status, body) = self.get(&query).await;
        assert_eq!(status, 200, "GET /forward?{query}: {body}");
        body
    }

    /// Opens the kept-alive connection so a timed request measures the lookup, not the handshake.
    pub async fn warm_up(&self) {
        let url = format!("http://{}/healthz", self.addr);
        let _ = self.client.get(url).send().await.expect("GET /healthz").bytes().await;
    }
}

pub fn urlencode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Polls `condition` every 20 ms for up to 15 s.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// How a fake CRM behaves right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Sleeps this long before answering.
    Slow(Duration),
    /// Answers with this status (429 and 503 come with `Retry-After: 30`).
    Status(u16),
}

#[derive(Debug)]
pub struct FakeState {
    pub mode: Mutex<Mode>,
    pub hits: AtomicUsize,
    pub hits_by_path: Mutex<HashMap<String, usize>>,
}

/// A fake CRM on loopback; counts every request it receives.
#[derive(Debug, Clone)]
pub struct Fake {
    pub addr: SocketAddr,
    pub state: Arc<FakeState>,
}

impl Fake {
    async fn start(router: impl FnOnce(Arc<FakeState>) -> Router) -> Fake {
        let state = Arc::new(FakeState {
            mode: Mutex::new(Mode::Normal),
            hits: AtomicUsize::new(0),
            hits_by_path: Mutex::new(HashMap::new()),
        });
        let app = router(Arc::clone(&state));
        let (listener, addr) = listen().await;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Fake { addr, state }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().expect("mode lock") = mode;
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn hits_of(&self, path: &str) -> usize {
        self.state.hits_by_path.lock().expect("hits lock").get(path).copied().unwrap_or(0)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl FakeState {
    /// Counts the request and applies the mode; `Some` is the response to send instead of the normal one.
    async fn enter(&self, path: &str) -> Option<Response> {
        self.hits.fetch_add(1, Ordering::SeqCst);
        *self.hits_by_path.lock().expect("hits lock").entry(path.to_string()).or_default() += 1;
        let mode = *self.mode.lock().expect("mode lock");
        match mode {
            Mode::Normal => None,
            Mode::Slow(delay) => {
                tokio::time::sleep(delay).await;
                None
            }
            Mode::Status(status) => {
                let status = StatusCode::from_u16(status).expect("status");
                let body = json!({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"});
                Some((status, [("retry-after", "30")], Json(body)).into_response())
            }
        }
    }
}

/// phone → (extension, client name)
type Directory = HashMap<String, (String, String)>;

/// A JSON lookup service: `GET /lookup?phone=` → `{"data": {"manager": {"ext": 202}}, "client": "…"}`.
pub async fn fake_http_crm(known: &[(&str, &str, &str)]) -> Fake {
    let known: Arc<Directory> = Arc::new(
        known.iter().map(|(phone, ext, name)| (phone.to_string(), (ext.to_string(), name.to_string()))).collect(),
    );
    Fake::start(move |state| {
        Router::new()
            .route(
                "/lookup",
                get(
                    |State((state, known)): State<(Arc<FakeState>, Arc<Directory>)>,
                     Query(params): Query<HashMap<String, String>>| async move {
                        if let Some(response) = state.enter("/lookup").await {
                            return response;
                        }
                        let phone = params.get("phone").cloned().unwrap_or_default();
                        match known.get(&phone) {
                            Some((ext, name)) => {
                                let ext: Value = ext.parse::<u64>().map_or_else(|_| json!(ext), |n| json!(n));
                                Json(json!({"data": {"manager": {"ext": ext}}, "client": name})).into_response()
                            }
                            None => StatusCode::NOT_FOUND.into_response(),
                        }
                    },
                ),
            )
            .with_state((state, known))
    })
    .await
}

/// A Bitrix24 portal's inbound webhook at `/rest/1/s3cret/<method>.json`.
pub struct Bitrix {
    pub contacts: Vec<BitrixContact>,
    /// user id → UF_PHONE_INNER
    pub users: HashMap<String, String>,
    /// Whether the webhook has the telephony scope.
    pub telephony: bool,
}

#[derive(Clone)]
pub struct BitrixContact {
    pub id: u64,
    pub phone: String,
    pub name: String,
    pub last_name: String,
    pub assigned_by: String,
}

pub async fn fake_bitrix24(portal: Bitrix) -> Fake {
    let portal = Arc::new(portal);
    Fake::start(move |state| {
        Router::new().route("/rest/1/s3cret/{method}", post(bitrix_method)).with_state((state, portal))
    })
    .await
}

async fn bitrix_method(
    State((state, portal)): State<(Arc<FakeState>, Arc<Bitrix>)>,
    Path(method): Path<String>,
    Json(params): Json<Value>,
) -> Response {
    if let Some(response) = state.enter(&method).await {
        return response;
    }
    let digits = |text: &str| text.chars().filter(char::is_ascii_digit).collect::<String>();
    let matches = |stored: &str, asked: &str| {
        let (stored, asked) = (digits(stored), digits(asked));
        stored.len() >= 10 && asked.len() >= 10 && stored[stored.len() - 10..] == asked[asked.len() - 10..]
    };
    match method.as_str() {
        "telephony.externalCall.searchCrmEntities.json" => {
            if !portal.telephony {
                let body = json!({"error": "insufficient_scope", "error_description": "The request requires higher privileges than provided by the webhook token"});
                return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
            }
            let asked = params["PHONE_NUMBER"].as_str().unwrap_or_default();
            let result: Vec<Value> = portal
                .contacts
                .iter()
                .filter(|contact| matches(&contact.phone, asked))
                .map(|contact| {
                    json!({
                        "CRM_ENTITY_TYPE": "CONTACT",
                        "CRM_ENTITY_ID": contact.id,
                        "ASSIGNED_BY_ID": contact.assigned_by.parse::<u64>().unwrap_or(0),
                        "NAME": format!("{} {}", contact.name, contact.last_name),
                        "ASSIGNED_BY": {
                            "ID": contact.assigned_by,
                            "TIMEMAN_STATUS": "OPENED",
                            "USER_PHONE_INNER": portal.users.get(&contact.assigned_by),
                            "WORK_PHONE": null,
                            "PERSONAL_PHONE": null,
                            "PERSONAL_MOBILE": "+79990000000"
                        }
                    })
                })
                .collect();
            Json(json!({"result": result, "time": {"start": 1.0, "finish": 1.01}})).into_response()
        }
        "crm.duplicate.findbycomm.json" => {
            let values = params["values"].as_array().cloned().unwrap_or_default();
            let ids: Vec<u64> = portal
                .contacts
                .iter()
                .filter(|contact| {
                    values.iter().any(|value| matches(&contact.phone, value.as_str().unwrap_or_default()))
                })
                .map(|contact| contact.id)
                .collect();
            // Bitrix24 sends an empty PHP array (`[]`) when nothing matches.
            let result = if ids.is_empty() { json!([]) } else { json!({"CONTACT": ids}) };
            Json(json!({"result": result})).into_response()
        }
        "crm.contact.get.json" => {
            let id = params["id"].as_str().and_then(|id| id.parse::<u64>().ok()).or_else(|| params["id"].as_u64());
            match portal.contacts.iter().find(|contact| Some(contact.id) == id) {
                Some(contact) => Json(json!({"result": {
                    "ID": contact.id.to_string(),
                    "NAME": contact.name,
                    "LAST_NAME": contact.last_name,
                    "ASSIGNED_BY_ID": contact.assigned_by,
                    "PHONE": [{"ID": "1", "VALUE_TYPE": "WORK", "VALUE": contact.phone, "TYPE_ID": "PHONE"}]
                }}))
                .into_response(),
                None => (StatusCode::BAD_REQUEST, Json(json!({"error": "", "error_description": "Not found"})))
                    .into_response(),
            }
        }
        "user.get.json" => {
            let id = params["ID"].as_str().unwrap_or_default().to_string();
            let users: Vec<Value> = portal
                .users
                .get(&id)
                .map(|inner| vec![json!({"ID": id, "ACTIVE": true, "NAME": "Manager", "UF_PHONE_INNER": inner})])
                .unwrap_or_default();
            Json(json!({"result": users, "total": users.len()})).into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"})),
        )
            .into_response(),
    }
}

/// An amoCRM account's API v4 (`/api/v4/contacts`, `/api/v4/companies`) behind a Bearer token.
pub struct Amo {
    /// (id, name, phone as stored, responsible_user_id)
    pub contacts: Vec<(u64, String, String, u64)>,
    pub companies: Vec<(u64, String, String, u64)>,
}

pub async fn fake_amocrm(account: Amo) -> Fake {
    let account = Arc::new(account);
    Fake::start(move |state| Router::new().route("/api/v4/{entity}", get(amo_search)).with_state((state, account)))
        .await
}

async fn amo_search(
    State((state, account)): State<(Arc<FakeState>, Arc<Amo>)>,
    Path(entity): Path<String>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Some(response) = state.enter(&entity).await {
        return response;
    }
    if headers.get("authorization").and_then(|value| value.to_str().ok()) != Some("Bearer amo-t0ken") {
        return (StatusCode::UNAUTHORIZED, Json(json!({"title": "Unauthorized", "status": 401}))).into_response();
    }
    let rows = match entity.as_str() {
        "contacts" => &account.contacts,
        "companies" => &account.companies,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let query = params.get("query").cloned().unwrap_or_default();
    let digits = |text: &str| text.chars().filter(char::is_ascii_digit).collect::<String>();
    let found: Vec<Value> = rows
        .iter()
        .filter(|(_, _, phone, _)| !query.is_empty() && digits(phone).contains(&query))
        .map(|(id, name, phone, user)| {
            json!({
                "id": id,
                "name": name,
                "responsible_user_id": user,
                "group_id": 0,
                "created_by": 0,
                "custom_fields_values": [
                    {"field_id": 3, "field_name": "Телефон", "field_code": "PHONE", "field_type": "multitext",
                     "values": [{"value": phone, "enum_id": 1, "enum_code": "WORK"}]}
                ],
                "account_id": 28805383,
                "_links": {"self": {"href": format!("https://example.amocrm.ru/api/v4/{entity}/{id}")}},
                "_embedded": {"tags": [], "companies": []}
            })
        })
        .collect();
    if found.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let mut embedded = serde_json::Map::new();
    embedded.insert(entity, Value::Array(found));
    Json(json!({"_page": 1, "_links": {}, "_embedded": embedded})).into_response()
}
