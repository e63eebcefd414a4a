//! `[omnidesk_endpoints]`: Omnidesk's operators' list without opening ARI. Over TLS with the
//! admin's certificate, with a password of its own: the extensions only (no trunk) in ARI's
//! shape, `asterisk/info`, nothing else; a client that keeps failing the password is locked out.

#[path = "deliver_support/mod.rs"]
mod deliver_support;
mod live_support;

use live_support::*;

const FACADE_PASSWORD: &str = "facade-password-0123456789";

fn tls_client() -> reqwest::Client {
    let pem = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/ca.crt"))
        .expect("cert");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omnidesk_reads_the_extensions_and_nothing_else_over_tls_with_its_own_password() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = deliver_support::receiver::reserve_addr();
    let tls = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let path = write_config(dir.path(), &fake.url(), PASSWORD, "");
    let text = std::fs::read_to_string(&path).expect("config");
    let facade = format!(
        "[omnidesk_endpoints]\nlisten = \"{listen}\"\nusername = \"omnidesk\"\npassword = \"{FACADE_PASSWORD}\"\n\
         tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        tls.join("server.crt").display(),
        tls.join("server.key").display()
    );
    std::fs::write(&path, format!("{text}\n{facade}")).expect("config");
    let mut deskhook = Deskhook::spawn(&["run", "--config", path.to_str().expect("utf8")]);
    deskhook.wait_stderr("Omnidesk's read-only ARI on https://").await;
    let base = format!("https://localhost:{}", listen.port());
    let http = tls_client();

    let endpoints: serde_json::Value = http
        .get(format!("{base}/ari/endpoints"))
        .basic_auth("omnidesk", Some(FACADE_PASSWORD))
        .send()
        .await
        .expect("GET endpoints")
        .json()
        .await
        .expect("JSON");
    let mut resources: Vec<&str> =
        endpoints.as_array().expect("a list").iter().filter_map(|e| e["resource"].as_str()).collect();
    resources.sort_unstable();
    assert_eq!(resources, ["101", "102", "103"], "extensions only: {endpoints}");
    assert!(endpoints[0]["technology"].is_string() && endpoints[0]["state"].is_string(), "ARI's shape: {endpoints}");
    let info = http
        .get(format!("{base}/ari/asterisk/info"))
        .basic_auth("omnidesk", Some(FACADE_PASSWORD))
        .send()
        .await
        .expect("GET info");
    assert_eq!(info.status(), 200);
    assert!(info.text().await.expect("body").contains("22.10.1"));

    // Only those two, only GET: nothing that could change a call.
    for (method, route) in [
        (reqwest::Method::GET, "/ari/channels"),
        (reqwest::Method::POST, "/ari/channels"),
        (reqwest::Method::DELETE, "/ari/channels/1795237096.10"),
        (reqwest::Method::GET, "/ari/events"),
        (reqwest::Method::POST, "/ari/endpoints"),
    ] {
        let status = http
            .request(method.clone(), format!("{base}{route}"))
            .basic_auth("omnidesk", Some(FACADE_PASSWORD))
            .send()
            .await
            .expect("request")
            .status();
        assert!(status == 404 || status == 405, "{method} {route}: {status}");
    }
    // ARI's own password is not the facade's; plain HTTP is not spoken.
    let wrong =
        http.get(format!("{base}/ari/endpoints")).basic_auth("deskhook", Some(PASSWORD)).send().await.expect("GET");
    assert_eq!(wrong.status(), 401);
    assert!(reqwest::get(format!("http://{listen}/ari/endpoints")).await.map_or(true, |r| !r.status().is_success()));
    // Five failures in a minute lock the client out, even with the right password then.
    for _ in 0..4 {
        let status = http
            .get(format!("{base}/ari/endpoints"))
            .basic_auth("omnidesk", Some("guess"))
            .send()
            .await
            .expect("GET")
            .status();
        assert_eq!(status, 401);
    }
    let locked = http
        .get(format!("{base}/ari/endpoints"))
        .basic_auth("omnidesk", Some(FACADE_PASSWORD))
        .send()
        .await
        .expect("GET");
    assert_eq!(locked.status(), 429);
    assert!(locked.headers().contains_key("retry-after"));
    deskhook.stop().await;
    assert!(!deskhook.stderr_text().contains(FACADE_PASSWORD), "the facade's password never shows");
}
