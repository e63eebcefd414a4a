//! The `/forward` server: answer format, budget, cache, single-flight, table reload, hostile
//! input, availability, `/healthz` and `/metrics`.

use std::io::{Read, Write};
use std::time::Duration;

use deskhook::calls::{CallEvent, CallSummary, Happened, Parties};
use deskhook::forward::PhoneNormalizer;
use deskhook::health::Health;
use deskhook::history::History;
use deskhook::presence::Presence;
use tokio::time::Instant;

use crate::support::{config, eventually, fake_http_crm, urlencode, Forward, Mode};

const PETROV: &str = "name=Petrov%2C%20Ivan&number=101";

fn table_file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write table");
    path
}

fn table_config(path: &std::path::Path, extra: &str) -> deskhook::config::Config {
    config(&format!(
        "[forward]\nbudget_ms = 2000\n{extra}\n[[forward.resolvers]]\nkind = \"table\"\npath = {:?}\n",
        path.display().to_string()
    ))
}

/// What the dialplan's hashcompat parser would see: exactly name and number, or nothing.
fn assert_hash_safe(status: u16, body: &str, asked: &str) {
    match status {
        400 => {
            assert!(!body.contains(['&', '=', '\n', '\r']), "400 body for {asked:?} must be one plain line: {body:?}")
        }
        200 if body.is_empty() => {}
        200 => {
            let pairs: Vec<&str> = body.split('&').collect();
            assert_eq!(pairs.len(), 2, "{asked:?} → {body:?}");
            let name = pairs[0].strip_prefix("name=").unwrap_or_else(|| panic!("{asked:?} → {body:?}"));
            let number = pairs[1].strip_prefix("number=").unwrap_or_else(|| panic!("{asked:?} → {body:?}"));
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"%-._~".contains(&b)), "{body:?}");
            assert!(!number.is_empty() && number.bytes().all(|b| b.is_ascii_alphanumeric() || b"*#_+-".contains(&b)));
        }
        other => panic!("{asked:?} answered {other}: {body:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_spellings_of_a_number_reach_the_same_table_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = table_file(&dir, "managers.csv", "phone,extension,name\n8 (916) 123-45-67,101,\"Petrov, Ivan\"\n");
    let forward = Forward::start(&table_config(&path, ""), Presence::new(), None).await;
    for spelling in ["+7 916 123-45-67", "89161234567", "79161234567"] {
        assert_eq!(forward.phone(spelling).await, PETROV, "{spelling}");
    }
    // The dialplan may also send the + unencoded, which form decoding turns into a space.
    assert_eq!(forward.get("phone=+79161234567&trunk=74951234567&callid=1700000000.1").await, (200, PETROV.into()));
    assert_eq!(forward.phone("79160000000").await, "", "an unknown caller gets an empty body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_edits_are_seen_bad_rows_are_skipped_and_a_useless_edit_keeps_the_old_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = table_file(&dir, "managers.csv", "79161234567,101,\"Petrov, Ivan\"\n");
    let forward = Forward::start(&table_config(&path, ""), Presence::new(), None).await;
    assert_eq!(forward.phone("79161234567").await, PETROV);

    // Rewritten in place: the cached answer must not hide the edit.
    std::fs::write(&path, "79161234567,102,Sidorova\n79161112233,103\n").expect("edit table");
    eventually("the edited table to be served", || async {
        forward.phone("79161234567").await == "name=Sidorova&number=102"
    })
    .await;
    assert_eq!(forward.phone("89161112233").await, "name=&number=103");

    // Replaced by rename, as editors save.
    let staged = table_file(&dir, "managers.csv.tmp", "79161234567,104,Renamed\n");
    std::fs::rename(&staged, &path).expect("rename table");
    eventually("the renamed table to be served", || async {
        forward.phone("79161234567").await == "name=Renamed&number=104"
    })
    .await;

    let rejected = || {
        let text = deskhook::metrics::render();
        text.lines()
            .find_map(|line| line.strip_prefix("deskhook_forward_table_rejected_total "))
            .and_then(|value| value.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    // A bad row is skipped; the good ones are used.
    std::fs::write(&path, "79161234567,105,Partly\nthis line is not a phone,106\n").expect("partly broken table");
    eventually("the good rows of a partly broken table to be served", || async {
        forward.phone("79161234567").await == "name=Partly&number=105"
    })
    .await;
    // Nothing usable at all (here: ';' for ','): the last good table stays.
    let rejected_before = rejected();
    std::fs::write(&path, "79161234567;107;Semicolons\n").expect("break table");
    eventually("the broken table to be rejected", || async { rejected() > rejected_before }).await;
    assert_eq!(forward.phone("79161234567").await, "name=Partly&number=105", "the last good table stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_phone_values_get_a_400_or_a_safe_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A name written to break the hash: it must come out encoded, never as a third key.
    let path = table_file(&dir, "managers.csv", "7916,101,\"Evil&number=666\r\nX=1\"\n79161234567,102\n");
    let forward = Forward::start(&table_config(&path, ""), Presence::new(), None).await;
    let long = "7".repeat(10 * 1024);
    let queries = [
        "".to_string(),
        "phone=".to_string(),
        "trunk=1".to_string(),
        "phone=7916%26number%3D666".to_string(),
        "phone=7916&number=666".to_string(),
        "phone=79161234567%0Anumber%3D666".to_string(),
        "phone=%0D%0A".to_string(),
        "phone=%FF%FE%FD".to_string(),
        "phone=79161234567%00".to_string(),
        format!("phone={long}"),
        format!("phone=7916&trunk={long}&callid={long}"),
        "phone=1&phone=79161234567".to_string(),
        "phone=%".to_string(),
        format!("phone={}", urlencode("${EXTEN}")),
        "phone=anonymous".to_string(),
    ];
    for query in &queries {
        let (status, body) = forward.get(query).await;
        assert_hash_safe(status, &body, query);
    }
    let (status, body) = forward.get("phone=7916").await;
    assert_eq!((status, body.as_str()), (200, "name=Evil%26number%3D666%20X%3D1&number=101"));
    let (status, body) = forward.get("phone=7916%26number%3D666").await;
    assert_eq!(status, 400, "{body}");

    // Raw bytes the HTTP layer itself may refuse: still no hash.
    let addr = forward.addr;
    let raw_requests: [&[u8]; 2] = [
        b"GET /forward?phone=\xff\xfe79161234567 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /forward?phone=7916\r\nnumber=666 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ];
    for request in raw_requests {
        let response = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).expect("connect");
            stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            stream.write_all(request).expect("write");
            let mut response = Vec::new();
            let _ = stream.read_to_end(&mut response);
            String::from_utf8_lossy(&response).into_owned()
        })
        .await
        .expect("raw request");
        let status: u16 = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
        assert_hash_safe(status, body, &String::from_utf8_lossy(request));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_that_sleeps_is_cut_off_at_the_budget_and_the_miss_is_cached() {
    let crm = fake_http_crm(&[("79161234567", "202", "Slow Client")]).await;
    crm.set_mode(Mode::Slow(Duration::from_secs(10)));
    let budget = Duration::from_millis(300);
    let config = config(&format!(
        "[forward]\nbudget_ms = {}\n[[forward.resolvers]]\nkind = \"http\"\nurl = \"{}\"\nnumber_field = \"data.manager.ext\"\n",
        budget.as_millis(),
        crm.url("/lookup?phone={phone}")
    ));
    let forward = Forward::start(&config, Presence::new(), None).await;
    forward.warm_up().await;

    let started = Instant::now();
    let (status, body) = forward.get("phone=79161234567&trunk=74951234567&callid=1.1").await;
    let elapsed = started.elapsed();
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(elapsed < budget + Duration::from_millis(50), "answered after {elapsed:?}, budget {budget:?}");
    assert_eq!(crm.hits(), 1);

    // The miss is remembered: the next calls do not wait for (or reach) the sleeping CRM.
    for _ in 0..3 {
        assert_eq!(forward.phone("89161234567").await, "");
    }
    assert_eq!(crm.hits(), 1, "repeated lookups are answered from the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_answering_500_or_429_gives_an_empty_answer_quickly_and_is_not_asked_again() {
    for failure in [500, 429] {
        let crm = fake_http_crm(&[("79161234567", "202", "Client")]).await;
        crm.set_mode(Mode::Status(failure));
        let config = config(&format!(
            "[forward]\nbudget_ms = 1500\n[[forward.resolvers]]\nkind = \"http\"\nurl = \"{}\"\nnumber_field = \"data.manager.ext\"\n",
            crm.url("/lookup?phone={phone}")
        ));
        let forward = Forward::start(&config, Presence::new(), None).await;
        forward.warm_up().await;
        let started = Instant::now();
        assert_eq!(forward.phone("79161234567").await, "", "HTTP {failure}");
        assert!(started.elapsed() < forward.service.budget(), "HTTP {failure} must not use up the budget");
        for _ in 0..3 {
            assert_eq!(forward.phone("+7 916 123 45 67").await, "");
        }
        assert_eq!(crm.hits(), 1, "HTTP {failure}: the cache answers repeated lookups");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_of_one_phone_share_one_crm_request() {
    let crm = fake_http_crm(&[("79161234567", "202", "Popular Client")]).await;
    crm.set_mode(Mode::Slow(Duration::from_millis(300)));
    let config = config(&format!(
        "[forward]\nbudget_ms = 5000\n[[forward.resolvers]]\nkind = \"http\"\nurl = \"{}\"\nnumber_field = \"data.manager.ext\"\nname_field = \"client\"\n",
        crm.url("/lookup?phone={phone}")
    ));
    let forward = std::sync::Arc::new(Forward::start(&config, Presence::new(), None).await);
    let lookups: Vec<_> = ["79161234567", "89161234567", "+7 916 123-45-67"]
        .iter()
        .cycle()
        .take(12)
        .map(|phone| {
            let forward = std::sync::Arc::clone(&forward);
            let phone = phone.to_string();
            tokio::spawn(async move { forward.phone(&phone).await })
        })
        .collect();
    for lookup in lookups {
        assert_eq!(lookup.await.expect("lookup task"), "name=Popular%20Client&number=202");
    }
    assert_eq!(crm.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_extension_is_skipped_for_the_next_resolver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = table_file(&dir, "first.csv", "79161234567,101,Client\n79162222222,101,Other\n");
    let second = table_file(&dir, "second.csv", "79161234567,102,Client\n");
    let toml = |skip: bool| {
        format!(
            "[forward]\nbudget_ms = 2000\nskip_unavailable = {skip}\nmiss_cache_ttl = 0\n\
             [[forward.resolvers]]\nkind = \"table\"\npath = {:?}\n[[forward.resolvers]]\nkind = \"table\"\npath = {:?}\n",
            first.display().to_string(),
            second.display().to_string()
        )
    };
    let presence = Presence::new();
    presence.replace_all([("101", "offline"), ("102", "online")]);
    let forward = Forward::start(&config(&toml(true)), presence.clone(), None).await;
    assert_eq!(forward.phone("79161234567").await, "name=Client&number=102");
    assert_eq!(forward.phone("79162222222").await, "", "nobody else knows this caller: the normal route");

    // A remembered answer whose phone went offline since is not used either.
    presence.set("101", "online");
    let other = Forward::start(&config(&toml(true)), presence.clone(), None).await;
    assert_eq!(other.phone("79162222222").await, "name=Other&number=101");
    presence.set("101", "unavailable");
    assert_eq!(other.phone("79162222222").await, "");

    let not_skipping = Forward::start(&config(&toml(false)), presence, None).await;
    assert_eq!(not_skipping.phone("79161234567").await, "name=Client&number=101");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_resolver_routes_to_the_last_operator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let history = History::open(dir.path(), PhoneNormalizer::new("7"), None).expect("history");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let ended = |client: &str, operator: &str, id: &str, talk: Option<u64>| {
        let mut summary = CallSummary::unanswered(now - 60_000, now);
        if let Some(talk) = talk {
            summary = summary.answered_by(operator, talk);
        }
        let parties = Parties::incoming(client, "74951234567");
        CallEvent { unique_id: id.into(), at: now, parties, what: Happened::Ended(Box::new(summary)) }
    };
    assert!(history.record(&ended("89161234567", "104", "1.1", Some(42))));
    assert!(!history.record(&ended("79165555555", "105", "1.2", None)));
    history.flush();
    let config = config("[forward]\nbudget_ms = 2000\n[[forward.resolvers]]\nkind = \"history\"\nmax_age_days = 30\n");
    let forward = Forward::start(&config, Presence::new(), Some(history)).await;
    assert_eq!(forward.phone("+7 916 123-45-67").await, "name=&number=104");
    assert_eq!(forward.phone("79165555555").await, "", "an unanswered call names nobody");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_says_which_part_is_down_and_metrics_are_prometheus_text() {
    let health = Health::new();
    let forward = Forward::start_with_health(&config(""), Presence::new(), None, health.clone()).await;
    let get = |path: &'static str| {
        let client = forward.client.clone();
        let url = format!("http://{}{path}", forward.addr);
        async move {
            let response = client.get(url).send().await.expect("GET");
            (response.status().as_u16(), response.text().await.expect("body"))
        }
    };
    let (status, body) = get("/healthz").await;
    assert_eq!(status, 503);
    let report: serde_json::Value = serde_json::from_str(&body).expect("JSON health");
    assert_eq!(report["ari_connected"], false);
    health.set_ari_connected(true);
    health.set_storage_writable(false);
    let (status, body) = get("/healthz").await;
    assert_eq!(status, 503);
    let report: serde_json::Value = serde_json::from_str(&body).expect("JSON health");
    assert_eq!((report["ari_connected"].as_bool(), report["storage_writable"].as_bool()), (Some(true), Some(false)));
    health.set_storage_writable(true);
    assert_eq!(get("/healthz").await.0, 200);

    let _ = forward.phone("79161234567").await;
    let (status, text) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(text.contains("# TYPE deskhook_forward_lookups_total counter"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolvers_own_timeout_leaves_the_rest_of_the_budget_to_the_next_one() {
    let crm = fake_http_crm(&[("79161234567", "202", "Slow Client")]).await;
    crm.set_mode(Mode::Slow(Duration::from_secs(10)));
    let dir = tempfile::tempdir().expect("tempdir");
    let table = table_file(&dir, "managers.csv", "79161234567,101,\"Petrov, Ivan\"\n");
    let config = config(&format!(
        "[forward]\nbudget_ms = 5000\n\
         [[forward.resolvers]]\nkind = \"http\"\nurl = \"{}\"\nnumber_field = \"data.manager.ext\"\ntimeout_ms = 200\n\
         [[forward.resolvers]]\nkind = \"table\"\npath = {:?}\n",
        crm.url("/lookup?phone={phone}"),
        table.display().to_string()
    ));
    let forward = Forward::start(&config, Presence::new(), None).await;
    assert_eq!(forward.phone("79161234567").await, PETROV, "the table answers after the CRM's 200 ms are up");
    assert_eq!(crm.hits(), 1);
}

/// A CRM that hangs without a `timeout_ms` of its own must not keep a later resolver from
/// answering: the table's answer still reaches the dialplan within the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_crm_does_not_hide_a_later_resolvers_answer() {
    let crm = fake_http_crm(&[("79161234567", "202", "Slow Client")]).await;
    crm.set_mode(Mode::Slow(Duration::from_secs(10)));
    let dir = tempfile::tempdir().expect("tempdir");
    let table = table_file(&dir, "managers.csv", "79161234567,101,\"Petrov, Ivan\"\n");
    let budget = Duration::from_millis(400);
    let config = config(&format!(
        "[forward]\nbudget_ms = {}\n\
         [[forward.resolvers]]\nkind = \"http\"\nurl = \"{}\"\nnumber_field = \"data.manager.ext\"\n\
         [[forward.resolvers]]\nkind = \"table\"\npath = {:?}\n",
        budget.as_millis(),
        crm.url("/lookup?phone={phone}"),
        table.display().to_string()
    ));
    let forward = Forward::start(&config, Presence::new(), None).await;
    forward.warm_up().await;
    let started = Instant::now();
    assert_eq!(forward.phone("79161234567").await, PETROV);
    assert!(started.elapsed() < budget + Duration::from_millis(50), "answered after {:?}", started.elapsed());
}

/// Resolvers asked at the same time still rank in configured order: a faster later CRM does
/// not win over an earlier one that also knows the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_earlier_resolver_wins_even_when_a_later_one_is_faster() {
    let slow = fake_http_crm(&[("79161234567", "202", "From The First")]).await;
    slow.set_mode(Mode::Slow(Duration::from_millis(150)));
    let fast = fake_http_crm(&[("79161234567", "303", "From The Second")]).await;
    let config = config(&format!(
        "[forward]\nbudget_ms = 1500\n\
         [[forward.resolvers]]\nkind = \"http\"\nurl = \"{}\"\nnumber_field = \"data.manager.ext\"\n\
         [[forward.resolvers]]\nkind = \"http\"\nurl = \"{}\"\nnumber_field = \"data.manager.ext\"\n",
        slow.url("/lookup?phone={phone}"),
        fast.url("/lookup?phone={phone}")
    ));
    let forward = Forward::start(&config, Presence::new(), None).await;
    let answer = forward.phone("79161234567").await;
    assert!(answer.ends_with("&number=202"), "{answer}");
}

/// `forward.allow`: a client outside the list gets 403 on every route (the answers name
/// clients), a listed one and this host itself their answers.
#[tokio::test]
async fn clients_outside_forward_allow_are_refused_on_every_route() {
    use axum::extract::ConnectInfo;
    use tower::ServiceExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = table_file(&dir, "managers.csv", "79161234567,101,\"Petrov, Ivan\"\n");
    let config = table_config(&path, "allow = [\"10.0.0.0/24\"]\nlisten = \"0.0.0.0:8077\"");
    let service =
        deskhook::forward::ForwardService::new(&config, Presence::new(), None, Health::new()).expect("service");
    let allow = deskhook::config::allow::AllowList::parse(&config.forward.allow).expect("valid");
    let app = deskhook::forward::server::guarded(service, allow);
    let ask = |peer: &str, path: &str| {
        let request = axum::http::Request::builder()
            .uri(path)
            .extension(ConnectInfo(peer.parse::<std::net::SocketAddr>().expect("addr")))
            .body(axum::body::Body::empty())
            .expect("request");
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.expect("answer");
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    for route in ["/forward?phone=79161234567", "/healthz", "/metrics"] {
        let (status, body) = ask("203.0.113.9:5060", route).await;
        assert_eq!((status, body.contains("forward.allow")), (403, true), "{route}: {body}");
    }
    assert_eq!(ask("10.0.0.7:5060", "/forward?phone=79161234567").await, (200, PETROV.into()));
    assert_eq!(ask("127.0.0.1:40000", "/forward?phone=79161234567").await, (200, PETROV.into()));
    let error = deskhook::config::Config::from_toml("[forward]\nallow = [\"pbx.example\"]\n", "config.toml")
        .expect_err("not an address");
    assert_eq!((error.section.as_str(), error.key.as_str()), ("forward", "allow"), "{error}");
}
