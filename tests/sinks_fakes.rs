//! The sinks' fakes are as strict as their real counterparts: what Zammad's CTI endpoint would
//! refuse, the fake refuses; the JSON receiver accepts only correctly signed bodies, once each.
//! (The live tests rely on both refusing nothing of what deskhook sends.)

#[path = "deliver_support/mod.rs"]
mod deliver_support;
mod sinks_support;

use serde_json::json;
use sinks_support::{JsonFake, ZammadFake};

async fn post_json(url: &str, body: serde_json::Value, signature: Option<String>) -> (u16, String) {
    let mut request = reqwest::Client::new().post(url).json(&body);
    if let Some(signature) = signature {
        request = request.header("X-Deskhook-Signature", signature);
    }
    let response = request.send().await.expect("the fake answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zammad_fake_refuses_what_zammad_would() {
    let zammad = ZammadFake::start("t0ken").await;
    let url = zammad.url();
    let call = |event: &str| json!({"event": event, "from": "79161234567", "to": "74951234567", "direction": "in", "callId": "1.1"});
    let cases = [
        (json!({"event": "ringing", "direction": "in", "callId": "1.1"}), 422, "Error ID"),
        (json!({"event": "newCall", "from": "1", "to": "2", "direction": "in"}), 422, "callId"),
        (
            json!({"event": "newCall", "from": "1", "to": "2", "direction": "inbound", "callId": "1.1"}),
            422,
            "direction",
        ),
        (json!({"event": "newCall", "from": "1", "to": "2", "direction": "in", "callId": 11}), 422, "not a string"),
        (
            json!({"event": "newCall", "from": "1", "to": "2", "direction": "in", "callId": "1.1", "caller": "x"}),
            422,
            "unknown field",
        ),
        (call("answer"), 500, "Couldn't find"),
    ];
    for (body, status, why) in cases {
        let (got, text) = post_json(&url, body.clone(), None).await;
        assert_eq!(got, status, "{body}: {text}");
        assert!(text.contains(why), "{body}: {text}");
    }
    let (status, text) = post_json(&url.replace("t0ken", "wrong"), call("newCall"), None).await;
    assert_eq!((status, text.contains("Invalid token")), (401, true), "{text}");
    assert_eq!(post_json(&url, call("newCall"), None).await, (200, "{}".to_string()));
    let (status, text) = post_json(&url, call("newCall"), None).await;
    assert_eq!((status, text.contains("already exists")), (500, true), "{text}");
    let mut hangup = call("hangup");
    hangup["cause"] = json!("hungUp");
    assert_eq!(post_json(&url, hangup.clone(), None).await.0, 422, "not one of Zammad's causes");
    hangup["cause"] = json!("cancel");
    assert_eq!(post_json(&url, hangup, None).await.0, 200);
    assert_eq!(zammad.events()["1.1"], ["newCall", "hangup"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_fake_takes_only_signed_bodies_once_each() {
    let fake = JsonFake::start("s3cret").await;
    let body =
        json!({"event_id": "e1", "event": "call_started", "unique_id": "1.1", "at": "2026-11-21T07:58:16.310+03:00"});
    let text = serde_json::to_string(&body).expect("json");
    let now = jiff::Timestamp::now().as_second();
    let signed = deskhook::sinks::json::signature("s3cret", now, text.as_bytes());
    let send = |signature: Option<String>| {
        let (url, text) = (fake.url(), text.clone());
        async move {
            let mut request = reqwest::Client::new().post(url).header("Content-Type", "application/json").body(text);
            if let Some(signature) = signature {
                request = request.header("X-Deskhook-Signature", signature);
            }
            request.send().await.expect("answers").status().as_u16()
        }
    };
    assert_eq!(send(None).await, 401, "unsigned");
    let wrong = deskhook::sinks::json::signature("other", now, text.as_bytes());
    assert_eq!(send(Some(wrong)).await, 401, "signed with another key");
    let stale = deskhook::sinks::json::signature("s3cret", now - 3600, text.as_bytes());
    assert_eq!(send(Some(stale)).await, 401, "an old signature (replay)");
    assert_eq!(send(Some(signed.clone())).await, 200);
    assert_eq!(send(Some(signed)).await, 200, "a repeat is acknowledged");
    assert_eq!(fake.accepted(), [body], "and kept once");
    let (status, _) = post_json(&fake.url(), json!({"event": "x"}), None).await;
    assert_eq!(status, 401);
}
