//! The fake ARI answers like the real Asterisk the traces came from: replayed to the moment of
//! each real mid-call snapshot, its `GET /channels` and `GET /bridges` match what the lab PBX
//! answered then; variables, errors and auth behave as `probes.md` records.

mod common;
mod live_support;

use std::collections::{BTreeMap, BTreeSet};

use deskhook::ari::{AriClient, AriError};
use deskhook::config::AriConfig;
use fake_ari::{FakeAri, FakeAriOptions, FakeTrace, Pace};
use live_support::*;
use serde_json::Value;

async fn quiet_fake() -> FakeAri {
    let mut options = FakeAriOptions::lab("deskhook", PASSWORD);
    // No client listens: replay only builds the live state.
    options.hold_events_while_disconnected = false;
    FakeAri::start(options).await.expect("fake")
}

fn snapshot(name: &str, kind: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}.midcall-{kind}.json"))).expect("snapshot");
    serde_json::from_str(&text).expect("snapshot json")
}

fn ids(objects: &[Value]) -> BTreeSet<String> {
    objects.iter().map(|object| object["id"].as_str().expect("id").to_string()).collect()
}

fn by_id(objects: Vec<Value>) -> BTreeMap<String, Value> {
    objects.into_iter().map(|object| (object["id"].as_str().expect("id").to_string(), object)).collect()
}

/// What must match for a point of the trace to be the snapshot's moment: channel states and bridge members.
fn shape(channels: &[Value], bridges: &[Value]) -> BTreeSet<String> {
    let channels = channels.iter().map(|c| format!("channel {} {}", c["id"], c["state"]));
    let bridges = bridges.iter().map(|b| {
        let mut members: Vec<String> =
            b["channels"].as_array().into_iter().flatten().map(ToString::to_string).collect();
        members.sort();
        format!("bridge {} {}", b["id"], members.join(","))
    });
    channels.chain(bridges).collect()
}

/// Replays to the middle of the stretch of the trace that looks exactly like the snapshot.
async fn replay_to_snapshot(fake: &FakeAri, trace: &FakeTrace, channels: &[Value], bridges: &[Value]) -> bool {
    let wanted = shape(channels, bridges);
    let mut fits = Vec::new();
    let probe = quiet_fake().await;
    for index in 0..trace.len() {
        probe.play(trace, index..index + 1, Pace::MaxSpeed).await;
        if shape(&probe.live_channels(), &probe.live_bridges()) == wanted {
            fits.push(index + 1);
        }
    }
    let Some(cut) = fits.get(fits.len() / 2) else { return false };
    fake.play(trace, 0..*cut, Pace::MaxSpeed).await;
    true
}

async fn get(fake: &FakeAri, path: &str, password: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", fake.url()))
        .basic_auth("deskhook", Some(password))
        .send()
        .await
        .expect("fake answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_call_listings_match_the_real_snapshots() {
    for name in common::scenarios() {
        let real_channels = snapshot(&name, "channels");
        let real_bridges = snapshot(&name, "bridges");
        let fake = quiet_fake().await;
        let trace = trace(&name);
        assert!(
            replay_to_snapshot(&fake, &trace, &real_channels, &real_bridges).await,
            "{name}: snapshot fits nowhere"
        );
        let (status, channels) = get(&fake, "/ari/channels", PASSWORD).await;
        assert_eq!(status, 200);
        let (_, bridges) = get(&fake, "/ari/bridges", PASSWORD).await;
        let channels = by_id(channels.as_array().expect("list").clone());
        for (id, real) in by_id(real_channels) {
            let ours = &channels[&id];
            let keys = |v: &Value| v.as_object().expect("object").keys().cloned().collect::<BTreeSet<_>>();
            assert_eq!(keys(ours), keys(&real), "{name} channel {id}: same fields as real ARI");
            for field in ["name", "state", "caller", "creationtime"] {
                assert_eq!(ours[field], real[field], "{name} channel {id} {field}");
            }
            assert_eq!(ours["dialplan"]["context"], real["dialplan"]["context"], "{name} channel {id}");
        }
        let bridges = bridges.as_array().expect("list").clone();
        assert_eq!(ids(&bridges), ids(&real_bridges), "{name}: live bridges");
        for (id, real) in by_id(real_bridges) {
            let ours = &by_id(bridges.clone())[&id];
            let members = |v: &Value| {
                v["channels"].as_array().expect("channels").iter().map(ToString::to_string).collect::<BTreeSet<_>>()
            };
            assert_eq!(members(ours), members(&real), "{name} bridge {id} members");
            assert_eq!(ours["bridge_type"], real["bridge_type"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_endpoints_and_errors_behave_like_asterisk() {
    let fake = quiet_fake().await;
    let trace = trace("04-in-queue-answered-by-102");
    let cut = trace.position(0, &[r#""variable":"MIXMONITOR_FILENAME""#]).expect("MixMonitor") + 1;
    fake.play(&trace, 0..cut, Pace::MaxSpeed).await;
    let caller = "1795237133.16";

    let config = AriConfig { url: fake.url(), password: PASSWORD.into(), ..AriConfig::default() };
    let client = AriClient::new(&config).expect("client");
    let members = client.channel_variable(caller, "QUEUE_MEMBER_LIST(support)").await.expect("members");
    assert_eq!(members, "PJSIP/101,PJSIP/102,PJSIP/103");
    let file = client.channel_variable(caller, "MIXMONITOR_FILENAME").await.expect("set by the trace");
    assert!(file.ends_with("1795237133.16.wav"), "{file}");
    assert!(matches!(client.channel_variable(caller, "NO_SUCH_VARIABLE").await, Err(AriError::NotFound { .. })));
    assert!(matches!(
        client.channel_variable("0.0", "QUEUE_MEMBER_LIST(support)").await,
        Err(AriError::NotFound { .. })
    ));
    assert!(matches!(
        client.channel_variable(caller, "PJSIP_HEADER(read,From)").await,
        Err(AriError::Status { status: 500, .. })
    ));
    let endpoints = client.endpoints().await.expect("endpoints");
    let provider = endpoints.iter().find(|e| e.resource == "provider").expect("trunk");
    assert_eq!(provider.channel_ids, [caller], "endpoints list their live channels");

    let (status, body) = get(&fake, "/ari/channels", "wrong").await;
    assert_eq!((status, body["message"].as_str()), (401, Some("Authentication required")));
    let with_key =
        reqwest::get(format!("{}/ari/asterisk/info?api_key=deskhook:{PASSWORD}", fake.url())).await.expect("get");
    assert_eq!(with_key.status().as_u16(), 200, "ARI's api_key query parameter works too");
    let (status, _) = get(&fake, "/ari/no-such-resource", PASSWORD).await;
    assert_eq!(status, 404);
    assert!(fake.status().requests_of("GET /ari/channels") >= 1);
}
