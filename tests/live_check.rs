//! `deskhook check` and `deskhook endpoints` against what admins actually hit: nothing
//! listening, a wrong password, TLS spoken to a plain port and the reverse, an Asterisk too
//! old for subscribeAll, no endpoints, missing directories, and the all-good case.

#[path = "deliver_support/mod.rs"]
mod deliver_support;
mod live_support;
mod sinks_support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use fake_ari::{FakeAri, FakeAriOptions};
use live_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A config for `check`: `[ari]` at `url`, storage and recordings in `dir` unless `extra` says otherwise.
fn check_config(dir: &Path, url: &str, password: &str, extra: &str) -> String {
    let recordings = dir.join("monitor");
    std::fs::create_dir_all(&recordings).expect("recordings dir");
    let storage =
        if extra.contains("[storage]") { String::new() } else { format!("[storage]\ndir = \"{}\"\n", dir.display()) };
    let recordings = if extra.contains("[recordings]") {
        String::new()
    } else {
        format!("[recordings]\nmode = \"mixmonitor\"\ndirs = [\"{}\"]\n", recordings.display())
    };
    let text = format!(
        "[ari]\nurl = \"{url}\"\nusername = \"deskhook\"\npassword = \"{password}\"\nrequest_timeout = \"3s\"\n\
         [pbx]\ntrunks = [\"provider\"]\n{storage}{recordings}{extra}\n"
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("config written");
    path.to_str().expect("utf8").to_string()
}

async fn check(config: &str) -> (i32, String) {
    let (code, stdout, stderr) = run_command(&["check", "--config", config]).await;
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD), "the password leaked");
    (code, format!("{stdout}{stderr}"))
}

/// A TLS server on loopback that answers every request with 401, like Asterisk's TLS port.
async fn tls_port() -> SocketAddr {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("localhost.crt"))
        .expect("cert file")
        .collect::<Result<_, _>>()
        .expect("cert parses");
    let key = PrivateKeyDer::from_pem_file(dir.join("localhost.key")).expect("key parses");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("certificate accepted");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut buffer = [0u8; 2048];
                    let _ = tls.read(&mut buffer).await;
                    let _ = tls
                        .write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_names_http_conf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = closed_port();
    let config = check_config(dir.path(), &format!("http://127.0.0.1:{port}"), PASSWORD, "");
    let (code, output) = check(&config).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains(&format!("nothing listens at 127.0.0.1:{port}")), "{output}");
    assert!(output.contains("http.conf") && output.contains("bindport"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_names_ari_conf() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = check_config(dir.path(), &fake.url(), "wrong-password", "");
    let (code, output) = check(&config).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("HTTP 401"), "{output}");
    assert!(output.contains("ari.conf") && output.contains("[ari] username and password"), "{output}");
    assert!(fake.status().auth_failures >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_pointed_at_the_plain_http_port_says_so() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = check_config(dir.path(), &format!("https://{}", fake.address()), PASSWORD, "");
    let (code, output) = check(&config).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("speaks plain HTTP, but [ari] url says https://"), "{output}");
    assert!(output.contains("write http:// in [ari] url"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_pointed_at_a_tls_port_says_so() {
    let address = tls_port().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = check_config(dir.path(), &format!("http://{address}"), PASSWORD, "");
    let (code, output) = check(&config).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("speaks TLS, but [ari] url says http://"), "{output}");
    assert!(output.contains("write https:// in [ari] url"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asterisk_older_than_13_6_is_a_problem() {
    let mut options = FakeAriOptions::lab("deskhook", PASSWORD);
    options.asterisk_info["system"]["version"] = "13.5.0".into();
    let fake = FakeAri::start(options).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = check_config(dir.path(), &fake.url(), PASSWORD, "");
    let (code, output) = check(&config).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("Asterisk 13.5.0 is older than 13.6"), "{output}");
    assert!(output.contains("subscribeAll"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoints_is_a_problem_for_check_and_endpoints() {
    let mut options = FakeAriOptions::lab("deskhook", PASSWORD);
    options.endpoints = serde_json::json!([]);
    let fake = FakeAri::start(options).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = check_config(dir.path(), &fake.url(), PASSWORD, "");
    let (code, output) = check(&config).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("ARI lists no endpoints") && output.contains("pjsip show endpoints"), "{output}");
    let (code, _, stderr) = run_command(&["endpoints", "--config", &config]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("ARI lists no endpoints"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_directories_and_an_unknown_trunk_are_problems() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("not-created");
    let monitor = dir.path().join("no-monitor");
    let extra = format!(
        "[storage]\ndir = \"{}\"\n[recordings]\nmode = \"mixmonitor\"\ndirs = [\"{}\"]\n",
        storage.display(),
        monitor.display()
    );
    let config = check_config(dir.path(), &fake.url(), PASSWORD, &extra).replace('\\', "/");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .expect("config")
            .replace("trunks = [\"provider\"]", "trunks = [\"provider\", \"sipnet\"]"),
    )
    .expect("rewrite");
    let (code, output) = check(&config).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains(&format!("{} does not exist", storage.display())), "{output}");
    assert!(output.contains("StateDirectory=deskhook"), "{output}");
    assert!(output.contains(&format!("{} does not exist", monitor.display())), "{output}");
    assert!(output.contains("[pbx] trunks names \"sipnet\", but ARI has no such endpoint"), "{output}");
    assert!(output.contains("3 problems found"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_setup_passes_with_warnings_only() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A webhook takes POSTs only: its answer to check's GET is 405.
    let helpdesk =
        deliver_support::receiver::Receiver::start_with(Arc::new(|seen: &deliver_support::receiver::Seen| match seen
            .path
            .as_str()
        {
            "/webhooks/asterisk/t0ken" => deliver_support::receiver::Reply::status(405),
            _ => deliver_support::receiver::Reply::status(404),
        }))
        .await;
    let extra = format!("[helpdesk]\nwebhook_url = \"http://{}/webhooks/asterisk/t0ken\"\n", helpdesk.addr);
    let config = check_config(dir.path(), &fake.url(), PASSWORD, &extra);
    let (code, output) = check(&config).await;
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("Asterisk 22.10.1"), "{output}");
    assert!(output.contains("the event websocket accepts deskhook"), "{output}");
    assert!(output.contains("3 extensions, 1 trunk (provider)"), "{output}");
    assert!(output.contains("is writable") && output.contains("is readable"), "{output}");
    assert!(output.contains("is plain http"), "{output}");
    assert!(output.contains("is reachable (HTTP 405)"), "{output}");
    assert!(!output.contains("t0ken"), "the webhook's secret path leaked: {output}");
    assert!(output.contains("no problem found (1 warning)"), "{output}");
    assert!(helpdesk.attempts().iter().all(|seen| seen.body.is_empty()), "check sent the helpdesk nothing to record");

    // A wrong path (or a deleted token) answers 404: a problem, not "reachable".
    let extra = format!("[helpdesk]\nwebhook_url = \"http://{}/webhooks/asterisk/wr0ng\"\n", helpdesk.addr);
    let config = check_config(dir.path(), &fake.url(), PASSWORD, &extra);
    let (code, output) = check(&config).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("answered HTTP 404 for the omnidesk sink's address"), "{output}");
    assert!(!output.contains("wr0ng"), "{output}");

    // A name DNS does not know is named as such.
    let extra = "[helpdesk]\nwebhook_url = \"https://no-such-host.invalid/webhooks/asterisk/x\"\n";
    let config = check_config(dir.path(), &fake.url(), PASSWORD, extra);
    let (_, output) = check(&config).await;
    assert!(output.contains("cannot resolve no-such-host.invalid"), "{output}");
    // The websocket probe used its own application name, so a running daemon keeps its own.
    assert!(fake.status().last_events_query.contains("app=deskhook-check"), "{:?}", fake.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ari_recording_mode_is_checked_against_the_recordings_resource() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = check_config(dir.path(), &fake.url(), PASSWORD, "[recordings]\nmode = \"ari\"\n");
    let (code, output) = check(&config).await;
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("ARI recording works here (0 stored recording(s)"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_lists_every_endpoint_with_its_class() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = check_config(dir.path(), &fake.url(), PASSWORD, "");
    let (code, stdout, stderr) = run_command(&["endpoints", "--config", &config]).await;
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<Vec<&str>> = stdout.lines().map(|line| line.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["TECHNOLOGY", "RESOURCE", "STATE", "CLASS"]);
    assert_eq!(
        rows[1..],
        [
            vec!["PJSIP", "101", "online", "extension"],
            vec!["PJSIP", "102", "online", "extension"],
            vec!["PJSIP", "103", "online", "extension"],
            vec!["PJSIP", "provider", "online", "trunk"],
        ]
    );
    let (code, _, stderr) =
        run_command(&["endpoints", "--config", &check_config(dir.path(), &fake.url(), "nope", "")]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("HTTP 401") && stderr.contains("ari.conf"), "{stderr}");
}

/// A `[[sinks]]` mistake makes the config unusable: `check` names the sink and key, exits 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_sink_is_named_by_sink_and_key_and_check_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("[[sinks]]\nname = \"crm\"\nkind = \"fax\"\n", "config.toml: [sinks.crm] kind: "),
        (
            "[[sinks]]\nname = \"a\"\nkind = \"json\"\nurl = \"https://x.example/calls\"\n\
             [[sinks]]\nname = \"a\"\nkind = \"zammad\"\nurl = \"https://z.example/api/v1/cti/T0KEN\"\n",
            "config.toml: [sinks.a] name: \"a\" is used by two sinks",
        ),
        ("[[sinks]]\nname = \"warehouse\"\nkind = \"json\"\nsecret = \"k\"\n", "config.toml: [sinks.warehouse] url: "),
    ];
    for (sinks, expected) in cases {
        let config = check_config(dir.path(), "http://127.0.0.1:9", PASSWORD, sinks);
        let (code, output) = check(&config).await;
        assert_eq!(code, 2, "{sinks}\n{output}");
        assert!(output.contains(expected), "{sinks}\n{output}");
        assert!(!output.contains("T0KEN"), "{output}");
    }
}

/// `check` reaches every sink, and proves Zammad's token without recording anything there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reaches_every_sink_and_proves_zammads_token() {
    let fake = FakeAri::start(FakeAriOptions::lab("deskhook", PASSWORD)).await.expect("fake ARI");
    let dir = tempfile::tempdir().expect("tempdir");
    let json = sinks_support::JsonFake::start("k").await;
    let zammad = sinks_support::ZammadFake::start("the-T0KEN").await;
    let sinks = |zammad_url: &str| {
        format!(
            "[[sinks]]\nname = \"warehouse\"\nkind = \"json\"\nurl = \"{}\"\nsecret = \"k\"\n\
             [[sinks]]\nname = \"desk\"\nkind = \"zammad\"\nurl = \"{zammad_url}\"\n",
            json.url()
        )
    };
    let config = check_config(dir.path(), &fake.url(), PASSWORD, &sinks(&zammad.url()));
    let (_, output) = check(&config).await;
    assert!(output.contains("sink warehouse") && output.contains("json sink: http://127.0.0.1:"), "{output}");
    assert!(output.contains("accepts the token (generic CTI is on)"), "{output}");
    assert!(zammad.calls().is_empty(), "check recorded nothing in Zammad");

    let wrong = zammad.url().replace("the-T0KEN", "wrong-T0KEN");
    let config = check_config(dir.path(), &fake.url(), PASSWORD, &sinks(&wrong));
    let (code, output) = check(&config).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("refuses the token in [sinks.desk] url (HTTP 401)"), "{output}");
    assert!(!output.contains("T0KEN"), "the token never shows: {output}");
}

/// `check` proves each CRM's credentials without creating anything there, names the fix when
/// they are refused, and warns about recordings the CRM cannot take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_proves_the_crms_credentials_and_warns_of_recordings_they_cannot_take() {
    use sinks_support::amocrm::{self, AmocrmFake};
    use sinks_support::bitrix24::{self, Bitrix24Fake};
    let fake = FakeAri::start(FakeAriOptions::lab("deskhook", PASSWORD)).await.expect("fake ARI");
    let dir = tempfile::tempdir().expect("tempdir");
    let b24 = Bitrix24Fake::start(&[("101", 11)]).await;
    let amo = AmocrmFake::start(&[(1, "+79161234567")], &[5101]).await;
    let sinks = |webhook: &str, token: &str| {
        format!(
            "[[sinks]]\nname = \"b24\"\nkind = \"bitrix24\"\nwebhook_url = \"{webhook}\"\n\
             [[sinks]]\nname = \"amo\"\nkind = \"amocrm\"\nbase_url = \"{}\"\ntoken = \"{token}\"\n\
             users = {{ \"5101\" = \"101\" }}\n",
            amo.base_url()
        )
    };
    let config = check_config(dir.path(), &fake.url(), PASSWORD, &sinks(&b24.webhook_url(), amocrm::TOKEN));
    std::fs::create_dir_all(dir.path().join("monitor/2026/11/21")).expect("mkdir");
    std::fs::write(dir.path().join("monitor/2026/11/21/in-101.gsm"), b"audio").expect("recording");
    let (_, output) = check(&config).await;
    assert!(output.contains("bitrix24 sink: http://127.0.0.1:") && output.contains("accepts the webhook"), "{output}");
    assert!(output.contains("amocrm sink: http://127.0.0.1:") && output.contains("accepts the token"), "{output}");
    assert!(output.contains(".gsm: Bitrix24 takes .wav and .mp3 only"), "{output}");
    assert!(b24.calls().is_empty() && amo.calls().is_empty(), "check created nothing in the CRMs");

    let wrong_hook = b24.webhook_url().replace(bitrix24::WEBHOOK_TOKEN, "wrong-hook-secret");
    let config = check_config(dir.path(), &fake.url(), PASSWORD, &sinks(&wrong_hook, "wrong-amo-token"));
    let (code, output) = check(&config).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("refuses the webhook of [sinks.b24] (HTTP 401, NO_AUTH_FOUND)"), "{output}");
    assert!(output.contains("refuses the token of [sinks.amo] (HTTP 401)"), "{output}");
    for secret in ["wrong-hook-secret", "wrong-amo-token", bitrix24::WEBHOOK_TOKEN, amocrm::TOKEN] {
        assert!(!output.contains(secret), "{secret} shown: {output}");
    }
}

/// `check` tells a web server that is not Asterisk from ARI, a /forward port taken by another
/// program, and a resolver table it cannot read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_a_foreign_web_server_a_taken_forward_port_and_a_missing_table() {
    use axum::http::header::SERVER;
    let nginx = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let nginx_addr = nginx.local_addr().expect("addr");
    let app =
        axum::Router::new().fallback(|| async { ([(SERVER, "nginx/1.22.1")], axum::http::StatusCode::NOT_FOUND) });
    tokio::spawn(async move { axum::serve(nginx, app).await });
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        "[forward]\nlisten = \"{}\"\n[[forward.resolvers]]\nkind = \"table\"\npath = \"{}\"\n",
        taken.local_addr().expect("addr"),
        dir.path().join("managers.csv").display()
    );
    let config = check_config(dir.path(), &format!("http://{nginx_addr}"), PASSWORD, &extra);
    let (code, output) = check(&config).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("is a web server, but not Asterisk's (it says Server: nginx/1.22.1)"), "{output}");
    assert!(output.contains("is in use by another program"), "{output}");
    assert!(output.contains("managers.csv cannot be read"), "{output}");

    std::fs::write(dir.path().join("managers.csv"), "79161234567,101,Petrov\n").expect("table");
    drop(taken);
    let (_, output) = check(&config).await;
    assert!(output.contains("is free for /forward") && output.contains("managers.csv: 1 phones"), "{output}");
}

/// Asterisk's TLS port with its own (private-CA) certificate, in front of the fake ARI.
async fn tls_in_front_of(fake: &FakeAri) -> SocketAddr {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.crt"))
        .expect("cert file")
        .collect::<Result<_, _>>()
        .expect("cert parses");
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("key parses");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("certificate accepted");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr");
    let backend = fake.address();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let (Ok(mut tls), Ok(mut plain)) =
                    (acceptor.accept(tcp).await, tokio::net::TcpStream::connect(backend).await)
                {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    address
}

/// A PBX's self-signed or private-CA certificate: refused with the fix named, then trusted
/// through `[ari] ca_file` by the REST client and the event websocket alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_is_trusted_through_ca_file_and_named_when_missing() {
    let fake = FakeAri::start(FakeAriOptions::lab("deskhook", PASSWORD)).await.expect("fake ARI");
    let tls = tls_in_front_of(&fake).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("https://localhost:{}", tls.port());
    let config = check_config(dir.path(), &url, PASSWORD, "");
    let (code, output) = check(&config).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("not trusted") && output.contains("[ari] ca_file"), "{output}");

    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/ca.crt");
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("request_timeout = \"3s\"", &format!("request_timeout = \"3s\"\nca_file = \"{}\"", ca.display()));
    std::fs::write(&config, text).expect("config");
    let (_, output) = check(&config).await;
    assert!(output.contains("ok       ARI        https://localhost:"), "{output}");
    assert!(output.contains("the event websocket accepts deskhook"), "{output}");
}

/// A config with several mistakes: `check` names every one, not only the first, and exits 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_every_config_problem_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[ari]\nurl = \"ftp://pbx\"\napp = \"\"\n[forward]\nbudget_ms = 10\n[[sinks]]\nname = \"a\"\nkind = \"fax\"\n",
    )
    .expect("config");
    let (code, output) = check(path.to_str().expect("utf8")).await;
    assert_eq!(code, 2, "{output}");
    for expected in
        ["[ari] url: ", "[ari] app: is empty", "[forward] budget_ms: is 10", "[sinks.a] kind: ", "4 problems"]
    {
        assert!(output.contains(expected), "{expected:?} missing: {output}");
    }
    assert!(output.contains(&path.display().to_string()), "the real file name: {output}");
}
