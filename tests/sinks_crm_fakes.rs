//! The CRM fakes are as strict as the real Bitrix24 portal and amoCRM account they stand for
//! (`docs/sinks/bitrix24-api.md`, `docs/sinks/amocrm-api.md`): what the real API refuses, the
//! fake refuses, with the real API's status and error; rate limits, auth failures and OAuth
//! token rotation answer as the real ones do. The live CRM tests rely on that strictness.

#[path = "deliver_support/mod.rs"]
mod deliver_support;
mod sinks_support;

use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use sinks_support::amocrm::{AmocrmFake, TOKEN as AMO_TOKEN};
use sinks_support::bitrix24::{Bitrix24Fake, CLIENT_ID, CLIENT_SECRET, FIRST_REFRESH};

const REGISTER: &str = "telephony.externalcall.register";
const FINISH: &str = "telephony.externalcall.finish";
const ATTACH: &str = "telephony.externalCall.attachRecord";

/// Status and parsed body (`Value::Null` when the body is not JSON).
async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("the fake answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A webhook call of `method` with JSON `params`.
async fn webhook(portal: &Bitrix24Fake, method: &str, params: Value) -> (u16, Value) {
    send(reqwest::Client::new().post(format!("{}{method}.json", portal.webhook_url())).json(&params)).await
}

/// A local application's call of `method` with the access token `auth`.
async fn app(portal: &Bitrix24Fake, auth: &str, method: &str, params: Value) -> (u16, Value) {
    let url = format!("{}/rest/{method}.json", portal.portal_url());
    send(reqwest::Client::new().post(url).query(&[("auth", auth)]).json(&params)).await
}

/// The OAuth server's answer to renewing with `refresh_token`.
async fn refresh(portal: &Bitrix24Fake, refresh_token: &str, secret: &str) -> (u16, Value) {
    let query = [
        ("grant_type", "refresh_token"),
        ("client_id", CLIENT_ID),
        ("client_secret", secret),
        ("refresh_token", refresh_token),
    ];
    send(reqwest::Client::new().get(portal.oauth_url()).query(&query)).await
}

fn register_params(external: &str) -> Value {
    json!({"USER_ID": 11, "PHONE_NUMBER": "+79161234567", "TYPE": 2, "CALL_START_DATE": "2026-11-21T07:58:16+03:00",
           "LINE_NUMBER": "74951234567", "CRM_CREATE": 1, "SHOW": 0, "EXTERNAL_CALL_ID": external})
}

fn finish_params(call_id: &str) -> Value {
    json!({"CALL_ID": call_id, "USER_ID": 11, "DURATION": 3, "STATUS_CODE": "200", "ADD_TO_CHAT": 0})
}

/// Registers `external` and returns its CALL_ID.
async fn registered(portal: &Bitrix24Fake, external: &str) -> String {
    let (status, body) = webhook(portal, REGISTER, register_params(external)).await;
    assert_eq!(status, 200, "{body}");
    body["result"]["CALL_ID"].as_str().expect("a CALL_ID").to_string()
}

fn error_of(body: &Value) -> (&str, &str) {
    (body["error"].as_str().unwrap_or_default(), body["error_description"].as_str().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bitrix24_fake_refuses_unknown_parameters_dates_without_an_offset_and_early_records() {
    let portal = Bitrix24Fake::start(&[("101", 11), ("102", 12)]).await;
    // A parameter Bitrix24 does not have (PHONE for PHONE_NUMBER), on register and on finish.
    let mut wrong = register_params("1.1");
    wrong["PHONE"] = wrong.as_object_mut().expect("object").remove("PHONE_NUMBER").expect("PHONE_NUMBER");
    let (status, body) = webhook(&portal, REGISTER, wrong).await;
    assert_eq!((status, error_of(&body).1), (400, "PHONE is not a parameter of this method"), "{body}");
    // A date without its offset is not the ISO 8601 with a timezone Bitrix24 asks for.
    let mut local = register_params("1.1");
    local["CALL_START_DATE"] = json!("2026-11-21T07:58:16");
    let (status, body) = webhook(&portal, REGISTER, local).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_of(&body), ("ERROR_CORE", "CALL_START_DATE should be in the ISO-8601 format"));
    assert!(portal.calls().is_empty(), "nothing registered yet");
    let call_id = registered(&portal, "1.1").await;
    let mut typo = finish_params(&call_id);
    typo["DURATON"] = json!(3);
    let (status, body) = webhook(&portal, FINISH, typo).await;
    assert_eq!((status, error_of(&body).1), (400, "DURATON is not a parameter of this method"), "{body}");
    let mut code = finish_params(&call_id);
    code["STATUS_CODE"] = json!("487");
    assert_eq!(webhook(&portal, FINISH, code).await.0, 400, "a STATUS_CODE Bitrix24 does not list");
    // A record before finish: the call is not in the statistics yet.
    let content = base64::engine::general_purpose::STANDARD.encode(b"RIFF....WAVEfmt ");
    let record = json!({"CALL_ID": call_id, "FILENAME": "in-101.wav", "FILE_CONTENT": content});
    let (status, body) = webhook(&portal, ATTACH, record.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).1.starts_with("Call is not found in the statistic table"), "{body}");
    let (status, body) = webhook(&portal, FINISH, finish_params(&call_id)).await;
    assert_eq!((status, &body["result"]["EXTERNAL_CALL_ID"]), (200, &json!("1.1")), "{body}");
    let (status, body) = webhook(&portal, ATTACH, record).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"]["FILE_ID"].is_u64(), "{body}");
    let call = &portal.calls()["1.1"];
    assert_eq!(call.methods, ["register", "finish", "attachRecord"]);
    assert_eq!(call.records["in-101.wav"], b"RIFF....WAVEfmt ");
    // A finish repeated after it went through: the call is gone.
    let (status, body) = webhook(&portal, FINISH, finish_params(&call_id)).await;
    assert_eq!(status, 400);
    assert!(error_of(&body).1.starts_with("Call is not found"), "{body}");
    assert_eq!(portal.refusals().len(), 6, "{:#?}", portal.refusals());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bitrix24_fake_returns_the_open_call_to_a_second_register_and_a_new_one_after_finish() {
    let portal = Bitrix24Fake::start(&[("101", 11)]).await;
    let first = registered(&portal, "1795237096.10").await;
    assert!(first.starts_with("externalCall."), "{first}");
    assert_eq!(registered(&portal, "1795237096.10").await, first, "before finish: the same CALL_ID");
    assert!(portal.duplicates().is_empty());
    // Another EXTERNAL_CALL_ID is another call, even from the same number to the same user.
    let other = registered(&portal, "1795237096.99").await;
    assert_ne!(other, first);
    assert_eq!(webhook(&portal, FINISH, finish_params(&first)).await.0, 200);
    let again = registered(&portal, "1795237096.10").await;
    assert_ne!(again, first, "after finish: a new CALL_ID, the call shows twice in the CRM");
    assert_eq!(portal.duplicates(), ["1795237096.10"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bitrix24_fake_limits_bursts_and_refuses_wrong_auth() {
    let portal = Bitrix24Fake::start(&[("101", 11)]).await;
    // A wrong webhook token.
    let url = portal.webhook_url().replace(sinks_support::bitrix24::WEBHOOK_TOKEN, "not-the-token");
    let (status, body) = send(reqwest::Client::new().post(format!("{url}scope.json")).json(&json!({}))).await;
    assert_eq!((status, error_of(&body).0), (401, "NO_AUTH_FOUND"), "{body}");
    // More than 50 requests at once: the leaky bucket (2 a second, 50 deep) overflows.
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..70 {
        let request = client.post(format!("{}scope.json", portal.webhook_url())).json(&json!({}));
        burst.spawn(send(request));
    }
    let mut answers = Vec::new();
    while let Some(answer) = burst.join_next().await {
        answers.push(answer.expect("a request task"));
    }
    let limited: Vec<&(u16, Value)> = answers.iter().filter(|(status, _)| *status == 503).collect();
    let ok = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(ok + limited.len(), 70, "only 200 or 503: {answers:?}");
    // The unauthorised request above was the bucket's first; 2 a second drain while the burst runs.
    let drained = (started.elapsed().as_secs_f64() * 2.0).ceil() as usize;
    assert!((49..=49 + drained).contains(&ok), "{ok} of 70 went through in {:?}", started.elapsed());
    assert!(limited.iter().all(|(_, body)| error_of(body).0 == "QUERY_LIMIT_EXCEEDED"), "{limited:?}");
    assert_eq!(portal.limited(), limited.len());
    assert!(portal.refusals().iter().all(|refusal| !refusal.contains("QUERY_LIMIT")), "503s are not refusals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bitrix24_fake_can_deny_webhooks_register_and_finish() {
    let portal = Bitrix24Fake::start(&[("101", 11)]).await;
    portal.set_app_only(true);
    let (status, body) = webhook(&portal, REGISTER, register_params("1.1")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_of(&body), ("WRONG_AUTH_TYPE", "Current authorization type is denied for this method"));
    assert_eq!(webhook(&portal, "scope", json!({})).await.0, 200, "other methods still take the webhook");
    let (_, token) = refresh(&portal, FIRST_REFRESH, CLIENT_SECRET).await;
    let access = token["access_token"].as_str().expect("access_token");
    let (status, body) = app(&portal, access, REGISTER, register_params("1.1")).await;
    assert_eq!(status, 200, "an application may: {body}");
    assert!(portal.calls().contains_key("1.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bitrix24_fake_rotates_refresh_tokens_and_expires_access_tokens() {
    let portal = Bitrix24Fake::start(&[("101", 11)]).await;
    let (status, body) = refresh(&portal, FIRST_REFRESH, "wrong-secret").await;
    assert_eq!((status, &body["error"]), (401, &json!("invalid_client")), "{body}");
    let (status, first) = refresh(&portal, FIRST_REFRESH, CLIENT_SECRET).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["client_endpoint"], format!("{}/rest/", portal.portal_url()));
    let rotated = first["refresh_token"].as_str().expect("a new refresh token");
    assert_ne!(rotated, FIRST_REFRESH, "renewal hands out a new refresh token");
    // The old one is spent.
    let (status, body) = refresh(&portal, FIRST_REFRESH, CLIENT_SECRET).await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_grant")), "{body}");
    let access = first["access_token"].as_str().expect("access_token");
    assert_eq!(app(&portal, access, "scope", json!({})).await.0, 200);
    let (status, body) = app(&portal, "b24-access-unknown", "scope", json!({})).await;
    assert_eq!((status, error_of(&body).0), (401, "NO_AUTH_FOUND"), "{body}");
    // A token past its life: 401 expired_token, until renewed with the rotated refresh token.
    portal.set_token_life(Duration::from_secs(1));
    let (status, second) = refresh(&portal, rotated, CLIENT_SECRET).await;
    assert_eq!(status, 200, "{second}");
    let short = second["access_token"].as_str().expect("access_token");
    assert_eq!(app(&portal, short, "scope", json!({})).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, body) = app(&portal, short, "scope", json!({})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_of(&body), ("expired_token", "The access token provided has expired."));
    assert_eq!(portal.refreshes(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bitrix24_fake_stores_a_recording_uploaded_to_its_upload_url() {
    let portal = Bitrix24Fake::start(&[("101", 11)]).await;
    let call_id = registered(&portal, "1.1").await;
    // Asking for an upload URL is attaching too: not before finish.
    let ask = json!({"CALL_ID": call_id, "FILENAME": "q-500.wav"});
    assert_eq!(webhook(&portal, ATTACH, ask.clone()).await.0, 400);
    assert_eq!(webhook(&portal, FINISH, finish_params(&call_id)).await.0, 200);
    let (status, body) = webhook(&portal, ATTACH, json!({"CALL_ID": call_id, "FILENAME": "q-500.ogg"})).await;
    assert_eq!(status, 400, "wav or mp3 only: {body}");
    let (status, body) = webhook(&portal, ATTACH, ask).await;
    assert_eq!((status, &body["result"]["fieldName"]), (200, &json!("file")), "{body}");
    let upload = body["result"]["uploadUrl"].as_str().expect("uploadUrl").to_string();
    assert!(upload.starts_with(&portal.portal_url()), "{upload}");
    let wav = b"RIFF\x24\x00\x00\x00WAVEfmt recorded".to_vec();
    let wrong = reqwest::multipart::Form::new()
        .part("record", reqwest::multipart::Part::bytes(wav.clone()).file_name("q-500.wav"));
    let (status, body) = send(reqwest::Client::new().post(&upload).multipart(wrong)).await;
    assert_eq!(status, 400, "the part must be named file: {body}");
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(wav.clone()).file_name("q-500.wav"));
    let (status, body) = send(reqwest::Client::new().post(&upload).multipart(form)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"]["FILE_ID"].is_u64(), "{body}");
    let call = &portal.calls()["1.1"];
    assert_eq!(call.records.get("q-500.wav"), Some(&wav), "the upload is the call's record");
    assert_eq!(call.methods, ["register", "finish", "attachRecord"]);
}

/// `POST /api/v4/calls` with `body` and the Bearer `token`.
async fn amo_calls(account: &AmocrmFake, token: &str, body: Value) -> (u16, Value) {
    let url = format!("{}/api/v4/calls", account.base_url());
    send(reqwest::Client::new().post(url).bearer_auth(token).json(&body)).await
}

fn amo_call(phone: &str) -> Value {
    json!({"direction": "inbound", "uniq": "1795237096.10", "duration": 3, "source": "deskhook", "phone": phone,
           "call_status": 4, "call_result": "answered by 101", "responsible_user_id": 5101, "created_by": 5101,
           "created_at": 1_795_237_096})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_amocrm_fake_matches_the_last_ten_digits_and_refuses_what_amocrm_would() {
    let account = AmocrmFake::start(&[(701, "+79161234567")], &[5101, 5102]).await;
    let (status, body) = amo_calls(&account, AMO_TOKEN, json!([amo_call("8 (916) 123-45-67")])).await;
    assert_eq!(status, 200, "the last 10 digits match +79161234567: {body}");
    assert_eq!(body["_embedded"]["calls"][0]["entity_id"], 701, "{body}");
    assert_eq!(account.calls().len(), 1);
    assert_eq!(account.calls()[0]["contact_id"], 701);
    // No card has the number: amoCRM does not add the call.
    let (status, body) = amo_calls(&account, AMO_TOKEN, json!([amo_call("+79990000000")])).await;
    assert_eq!((status, &body["errors"][0]["title"]), (400, &json!("Entity not found")), "{body}");
    assert_eq!(account.no_card(), 1);
    // A field amoCRM does not have, and a null where a value is optional.
    let mut unknown = amo_call("+79161234567");
    unknown["operator"] = json!("101");
    let (status, body) = amo_calls(&account, AMO_TOKEN, json!([unknown])).await;
    assert_eq!(status, 400, "{body}");
    let error = &body["validation-errors"][0]["errors"][0];
    assert_eq!((&error["path"], &error["detail"]), (&json!("operator"), &json!("This field was not expected.")));
    let mut nulled = amo_call("+79161234567");
    nulled["call_result"] = Value::Null;
    let (status, body) = amo_calls(&account, AMO_TOKEN, json!([nulled])).await;
    assert_eq!(status, 400, "{body}");
    let error = &body["validation-errors"][0]["errors"][0];
    assert_eq!((&error["path"], &error["detail"]), (&json!("call_result"), &json!("This value should not be null.")));
    // A wrong Bearer token.
    let (status, body) = amo_calls(&account, "not-the-token", json!([amo_call("+79161234567")])).await;
    assert_eq!((status, &body["title"]), (401, &json!("Unauthorized")), "{body}");
    assert_eq!(account.calls().len(), 1, "nothing refused was added");
    assert_eq!(account.refusals().len(), 3, "{:#?}", account.refusals());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_amocrm_fake_answers_429_beyond_seven_requests_a_second() {
    let account = AmocrmFake::start(&[(701, "+79161234567")], &[5101]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v4/account", account.base_url());
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(send(client.get(&url).bearer_auth(AMO_TOKEN)).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 429, 429, 429]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send(client.get(&url).bearer_auth(AMO_TOKEN)).await.0, 200, "a second later");
}
