//! Secrets never show: not in any config struct's `Debug`, not in the `/forward` service's,
//! and not in any log line of a full run at trace level — libraries included, which at trace
//! print every request's headers (`authorization: Basic …`, `Bearer …`) and URLs.

mod common;
#[path = "deliver_support/mod.rs"]
mod deliver_support;
mod live_support;
mod sinks_support;

use base64::Engine as _;
use deliver_support::receiver::{reserve_addr, Receiver, TOKEN};
use deliver_support::wait_until;
use fake_ari::{FakeAri, FakeAriOptions, Pace};
use live_support::*;
use sinks_support::amocrm::{self, AmocrmFake};
use sinks_support::bitrix24::{self, Bitrix24Fake};
use sinks_support::{JsonFake, ZammadFake};

const JSON_SECRET: &str = "json-hmac-key-0xdeadbeef";
const ZAMMAD_TOKEN: &str = "zammad-cti-token-42";
const RESOLVER_TOKEN: &str = "amo-resolver-token-77";
const APP_SECRET: &str = "b24-app-client-secret-9";

/// Every secret the config below holds, as it could appear on the wire.
fn secrets() -> Vec<String> {
    vec![
        PASSWORD.to_string(),
        base64::engine::general_purpose::STANDARD.encode(format!("deskhook:{PASSWORD}")),
        TOKEN.to_string(),
        JSON_SECRET.to_string(),
        ZAMMAD_TOKEN.to_string(),
        bitrix24::WEBHOOK_TOKEN.to_string(),
        amocrm::TOKEN.to_string(),
        RESOLVER_TOKEN.to_string(),
        APP_SECRET.to_string(),
    ]
}

struct Destinations {
    helpdesk: Receiver,
    json: JsonFake,
    zammad: ZammadFake,
    b24: Bitrix24Fake,
    amo: AmocrmFake,
}

impl Destinations {
    async fn start() -> Destinations {
        Destinations {
            helpdesk: Receiver::start().await,
            json: JsonFake::start(JSON_SECRET).await,
            zammad: ZammadFake::start(ZAMMAD_TOKEN).await,
            b24: Bitrix24Fake::start(&[("101", 11), ("102", 12), ("103", 13)]).await,
            amo: AmocrmFake::start(&[(7001, "+79161234567")], &[5101]).await,
        }
    }

    /// Every kind of sink, a Bitrix24 local application too, and CRM resolvers.
    fn config(&self, forward_listen: &str) -> String {
        format!(
            "[helpdesk]\nwebhook_url = \"{helpdesk}\"\n\
             [[sinks]]\nname = \"json\"\nkind = \"json\"\nurl = \"{json}\"\nsecret = \"{JSON_SECRET}\"\nevents = [\"lifecycle\", \"summary\"]\n\
             [[sinks]]\nname = \"zammad\"\nkind = \"zammad\"\nurl = \"{zammad}\"\n\
             [[sinks]]\nname = \"b24\"\nkind = \"bitrix24\"\nwebhook_url = \"{b24}\"\n\
             [[sinks]]\nname = \"app\"\nkind = \"bitrix24\"\nportal_url = \"https://app-portal.invalid\"\nclient_id = \"local.1\"\n\
             client_secret = \"{APP_SECRET}\"\nrefresh_token = \"{refresh}\"\ndefault_user = \"1\"\nmax_backoff = \"1s\"\n\
             [[sinks]]\nname = \"amo\"\nkind = \"amocrm\"\nbase_url = \"{amo}\"\ntoken = \"{amo_token}\"\nusers = {{ \"5101\" = \"101\" }}\n\
             [forward]\nlisten = \"{forward_listen}\"\n\
             [[forward.resolvers]]\nkind = \"bitrix24\"\nwebhook_url = \"{b24}\"\n\
             [[forward.resolvers]]\nkind = \"amocrm\"\nbase_url = \"{amo}\"\ntoken = \"{RESOLVER_TOKEN}\"\n",
            helpdesk = self.helpdesk.url(),
            json = self.json.url(),
            zammad = self.zammad.url(),
            b24 = self.b24.webhook_url(),
            refresh = bitrix24::FIRST_REFRESH,
            amo = self.amo.base_url(),
            amo_token = amocrm::TOKEN,
        )
    }
}

#[tokio::test]
async fn no_config_struct_and_no_forward_service_shows_a_secret_in_debug() {
    let destinations = Destinations::start().await;
    let text = format!(
        "[ari]\nurl = \"http://127.0.0.1:8088\"\nusername = \"deskhook\"\npassword = \"{PASSWORD}\"\n{}",
        destinations.config("127.0.0.1:0")
    );
    let config = deskhook::config::Config::from_toml(&text, "config.toml").expect("valid");
    let service = deskhook::forward::ForwardService::new(
        &config,
        deskhook::presence::Presence::new(),
        None,
        deskhook::health::Health::new(),
    )
    .expect("the /forward service");
    let shown = format!(
        "{config:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{service:?}",
        config.ari,
        config.helpdesk,
        config.forward,
        config.sinks,
        config.destinations()
    );
    for secret in secrets() {
        assert!(!shown.contains(&secret), "{secret} shown in Debug:\n{shown}");
    }
    assert!(shown.contains("AmocrmResolver") || shown.contains("Amocrm"), "the resolvers were rendered: {shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_at_trace_level_writes_no_secret() {
    let fake = FakeAri::start(FakeAriOptions::lab("deskhook", PASSWORD)).await.expect("fake ARI");
    let dir = tempfile::tempdir().expect("tempdir");
    let destinations = Destinations::start().await;
    let listen = reserve_addr();
    let path = write_config(dir.path(), &fake.url(), PASSWORD, "");
    let text = std::fs::read_to_string(&path).expect("config").replace("[forward]\nlisten = \"\"\n", "");
    std::fs::write(&path, format!("{text}\n{}", destinations.config(&listen.to_string()))).expect("config");
    let config = path.to_str().expect("utf8").to_string();
    // Every library at trace: the HTTP clients and servers print headers and URLs.
    let everything = "trace,hyper=trace,hyper_util=trace,reqwest=trace,h2=trace,rustls=trace,tungstenite=trace,\
                      tokio_tungstenite=trace,axum=trace";
    let mut deskhook = Deskhook::spawn_with_env(&["run", "--config", &config], &[("RUST_LOG", everything)]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");
    let call = trace("01-in-direct-answered");
    fake.play(&call, 0..call.len(), Pace::MaxSpeed).await;
    wait_until("the call at every working destination", PATIENCE, || {
        destinations.zammad.calls().len() == 1
            && destinations.amo.calls().len() == 1
            && destinations.b24.calls().values().any(|call| call.finished.is_some())
            && destinations.json.accepted().iter().any(|body| body["event"] == "call_summary")
            && destinations.helpdesk.accepted_count() >= 3
    })
    .await;
    let answer = reqwest::get(format!("http://{listen}/forward?phone=79161234567")).await.expect("/forward");
    assert!(answer.status().is_success());
    // The local application's portal does not exist: its failures are logged too.
    deskhook.wait_until("the app sink failing", |d| d.stderr_text().contains("app-portal.invalid")).await;
    deskhook.stop().await;
    let logs = deskhook.stderr_text();
    assert!(logs.contains("TRACE"), "the run logged at trace level");
    assert!(logs.lines().count() > 200, "libraries logged too ({} lines)", logs.lines().count());
    for secret in secrets() {
        let line = logs.lines().find(|line| line.contains(&secret));
        assert!(line.is_none(), "{secret} in a log line: {}", line.unwrap_or_default());
    }
    assert!(logs.contains("<redacted>"), "something was blanked: the headers were logged");
}
