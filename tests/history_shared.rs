//! The shared call history on a real PostgreSQL (a throwaway cluster made by `initdb`):
//! two deskhook daemons, one per fake PBX, write one history; `/forward` on either routes a
//! caller to the operator who talked with them on the other; with the database stopped
//! `/forward` answers from the local copy within its budget; the calls of the outage (and of
//! a daemon killed with -9 meanwhile) reach the database once it is back; and `deskhook check`
//! names the fix for the usual setup mistakes.

#[path = "deliver_support/mod.rs"]
mod deliver_support;
mod live_support;
mod pg_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use deliver_support::receiver::reserve_addr;
use fake_ari::{FakeAri, Pace};
use live_support::*;
use pg_support::{PgSetup, Postgres, PG_PASSWORD};

/// `/forward` answers within this; the shared history may take `HISTORY_TIMEOUT` of it.
const BUDGET_MS: u64 = 1000;
const HISTORY_TIMEOUT: &str = "200ms";

/// A daemon's config: PBX `name` at `ari_url`, /forward on `forward` with the history
/// resolver, the shared history at `history`.
fn pbx_config(dir: &Path, ari_url: &str, name: &str, forward: std::net::SocketAddr, history: &str) -> PathBuf {
    let path = write_config(dir, ari_url, PASSWORD, "");
    let text = std::fs::read_to_string(&path)
        .expect("config")
        .replace("mode = \"mixmonitor\"", "mode = \"off\"")
        .replace("[pbx]\n", &format!("[pbx]\nname = \"{name}\"\n"))
        .replace(
            "[storage]\n",
            &format!("[storage]\nhistory = \"{history}\"\nhistory_timeout = \"{HISTORY_TIMEOUT}\"\n"),
        )
        .replace(
            "[forward]\nlisten = \"\"",
            // The fixture calls are from November 2026: a long max_age keeps them found.
            &format!(
                "[forward]\nlisten = \"{forward}\"\nbudget_ms = {BUDGET_MS}\nmiss_cache_ttl = \"1ms\"\ncache_ttl = \"1ms\"\n\
                 [[forward.resolvers]]\nkind = \"history\"\nmax_age_days = 3650"
            ),
        );
    std::fs::write(&path, text).expect("config");
    path
}

struct Pbx {
    fake: FakeAri,
    dir: tempfile::TempDir,
    forward: std::net::SocketAddr,
    config: String,
    daemon: Deskhook,
}

impl Pbx {
    async fn start(name: &str, history: &str) -> Pbx {
        let fake = lab_fake().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let forward = reserve_addr();
        let config = pbx_config(dir.path(), &fake.url(), name, forward, history).to_str().expect("utf8").to_string();
        let daemon = Deskhook::spawn(&["run", "--config", &config]);
        fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");
        let pbx = Pbx { fake, dir, forward, config, daemon };
        pbx.wait_for_forward().await;
        pbx
    }

    async fn restart(&mut self) {
        self.daemon = Deskhook::spawn(&["run", "--config", &self.config]);
        self.wait_for_forward().await;
    }

    async fn wait_for_forward(&self) {
        wait_for("/forward listening", || async { self.ask("1").await.0.is_some() }).await;
    }

    /// `/forward`'s body for `phone` (`None`: not listening) and how long it took.
    async fn ask(&self, phone: &str) -> (Option<String>, Duration) {
        let url = format!("http://{}/forward?phone={phone}&trunk=74951234567&callid=1", self.forward);
        let started = Instant::now();
        let body = match reqwest::get(url).await {
            Ok(response) => response.text().await.ok(),
            Err(_) => None,
        };
        (body, started.elapsed())
    }

    /// A counter from `/metrics`.
    async fn metric(&self, name: &str) -> u64 {
        metric(self.forward, name).await
    }

    async fn play(&self, name: &str) {
        let trace = trace(name);
        self.fake.play(&trace, 0..trace.len(), Pace::Recorded { speedup: 20.0 }).await;
    }
}

/// The shared table's rows as `pbx unique_id client operator direction talk_seconds`.
fn shared_rows(postgres: &Postgres) -> Vec<String> {
    let out = postgres.sql(
        "deskhook",
        "SELECT string_agg(concat_ws(' ', pbx, unique_id, client, operator, direction, talk_seconds), E'\\n' \
         ORDER BY pbx, unique_id) FROM deskhook_calls",
    );
    out.lines().map(str::to_string).filter(|line| !line.is_empty()).collect()
}

/// Trace 01: +79161234567 talks with 101 for 3 s; trace 04: +79161234568 with 102 (a queue).
const FIRST_CALL: &str = "01-in-direct-answered";
const SECOND_CALL: &str = "04-in-queue-answered-by-102";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pbxes_share_one_history_through_an_outage_and_a_kill() {
    let postgres = Postgres::start(PgSetup::default());
    let url = postgres.url("sslmode=disable");
    let mut msk = Pbx::start("msk", &url).await;
    let spb = Pbx::start("spb", &url).await;
    assert_eq!(spb.ask("89161234567").await.0.as_deref(), Some(""), "nobody has talked with the caller yet");

    // A call on msk reaches the shared table under msk's name; spb, which never saw it, routes
    // the caller (any spelling) to msk's operator.
    msk.play(FIRST_CALL).await;
    wait_for("the msk call in PostgreSQL", || async { !shared_rows(&postgres).is_empty() }).await;
    assert_eq!(shared_rows(&postgres), ["msk 1795237096.10 79161234567 101 in 3"]);
    // On a loaded machine one lookup may miss history_timeout (and the shared store then rests
    // a few seconds): the fact is that spb routes by msk's call, whatever the spelling.
    for spelling in ["89161234567", "%2B7%20916%20123-45-67"] {
        wait_for("spb routing msk's caller from the shared history", || async {
            spb.ask(spelling).await.0.as_deref() == Some("name=&number=101")
        })
        .await;
    }
    assert_eq!(msk.ask("79161234567").await.0.as_deref(), Some("name=&number=101"));

    // The database hangs (a lock held on the table): lookups give up after history_timeout
    // and the local copies answer, within the budget.
    let (locker, connection) =
        tokio_postgres::connect(&postgres.url("sslmode=disable"), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    locker.batch_execute("BEGIN; LOCK TABLE deskhook_calls IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    let (body, took) = spb.ask("79161234567").await;
    assert_eq!(body.as_deref(), Some(""), "spb's own copy has no such call");
    assert!(took >= Duration::from_millis(150) && took < Duration::from_millis(BUDGET_MS), "{took:?}");
    let (body, took) = msk.ask("79161234567").await;
    assert_eq!(body.as_deref(), Some("name=&number=101"), "{took:?} {}", msk.daemon.stderr_text());
    assert!(took < Duration::from_millis(BUDGET_MS), "{took:?}");
    locker.batch_execute("ROLLBACK").await.expect("unlock");
    drop(locker);

    // The database goes down: msk answers from its local copy, spb (whose copy has no such
    // call) answers nobody, both well within the budget.
    postgres.stop();
    for _ in 0..3 {
        let (body, took) = msk.ask("79161234567").await;
        assert_eq!(body.as_deref(), Some("name=&number=101"));
        assert!(took < Duration::from_millis(BUDGET_MS), "{took:?}");
        let (body, took) = spb.ask("79161234567").await;
        assert_eq!(body.as_deref(), Some(""));
        assert!(took < Duration::from_millis(BUDGET_MS), "{took:?}");
    }
    assert!(spb.metric("deskhook_history_shared_failures_total").await >= 1, "the outage was noticed");

    // A call during the outage is acknowledged (committed locally), then msk is killed -9.
    msk.play(SECOND_CALL).await;
    wait_for("the outage call committed locally", || async { msk.metric("deskhook_history_records_total").await >= 2 })
        .await;
    msk.daemon.signal("KILL");
    assert!(msk.daemon.wait_exit(PATIENCE).await.is_some(), "killed");

    // The database and msk come back: the backlog arrives, and spb routes the second caller.
    postgres.start_again();
    msk.restart().await;
    wait_for("the backlog in PostgreSQL", || async { shared_rows(&postgres).len() == 2 }).await;
    assert_eq!(
        shared_rows(&postgres),
        ["msk 1795237096.10 79161234567 101 in 3", "msk 1795237133.16 79161234568 102 in 3"],
        "each call once, under the PBX that saw it"
    );
    wait_for("spb routing the outage call's client", || async {
        spb.ask("79161234568").await.0.as_deref() == Some("name=&number=102")
    })
    .await;
    assert_eq!(postgres.sql("deskhook", "SELECT MAX(version) FROM deskhook_schema"), "1", "migrated once");
    assert!(!msk.daemon.stderr_text().contains(PG_PASSWORD), "the database password leaked into the log");
    let _ = &msk.dir;
}

/// `deskhook check`'s lines about the shared history for `url`.
async fn check_history(dir: &Path, fake: &FakeAri, url: &str) -> String {
    let config = pbx_config(dir, &fake.url(), "msk", reserve_addr(), url);
    let (_, stdout, stderr) = run_command(&["check", "--config", config.to_str().expect("utf8")]).await;
    assert!(!stdout.contains(PG_PASSWORD) && !stderr.contains(PG_PASSWORD), "the password leaked:\n{stdout}{stderr}");
    let mut lines = stdout.lines().skip_while(|line| !line.contains(" history ")).take(2);
    let first = lines.next().unwrap_or_else(|| panic!("no history line in:\n{stdout}{stderr}"));
    format!("{first}\n{}", lines.next().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_fix_for_the_usual_postgres_mistakes() {
    // TLS on; deskhook may connect over TLS only; role "stranger" has no pg_hba.conf line.
    let postgres =
        Postgres::start(PgSetup { tls: true, hba: Some("hostssl all deskhook 127.0.0.1/32 scram-sha-256".into()) });
    postgres.sql("deskhook", "CREATE ROLE stranger LOGIN PASSWORD 'stranger-pw'");
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/ca.crt");
    let verified = format!("sslmode=verify-full&sslrootcert={}", ca.display());

    // Connected by an address its certificate does not name: verify-ca takes it, verify-full not.
    let by_other_name =
        |query: &str| postgres.url(&format!("{query}&hostaddr=127.0.0.1")).replace("@127.0.0.1:", "@db.example.test:");
    let chain_only = format!("sslmode=verify-ca&sslrootcert={}", ca.display());
    let good = check_history(dir.path(), &fake, &by_other_name(&chain_only)).await;
    assert!(good.starts_with("ok "), "{good}");
    let misnamed = check_history(dir.path(), &fake, &by_other_name(&verified)).await;
    assert!(misnamed.starts_with("PROBLEM") && misnamed.contains("does not name db.example.test"), "{misnamed}");
    for tls in [verified.as_str(), "sslmode=require", "sslmode=prefer"] {
        let good = check_history(dir.path(), &fake, &postgres.url(tls)).await;
        assert!(good.starts_with("ok ") && good.contains("not created yet"), "{tls}: {good}");
    }

    let cases = [
        (postgres.url(&verified).replace(PG_PASSWORD, "wrong-password"), "password of role \"deskhook\" is wrong"),
        (postgres.url("sslmode=disable"), "only over TLS"),
        (postgres.url("sslmode=verify-full"), "not signed by a CA in the system trust store"),
        (postgres.url(&verified).replace("127.0.0.1", "db.invalid"), "does not resolve"),
        (
            postgres.url(&verified).replace(&format!("deskhook:{PG_PASSWORD}"), "stranger:stranger-pw"),
            "pg_hba.conf has no line",
        ),
        (postgres.url(&verified).replace("/deskhook?", "/nowhere?"), "database \"nowhere\" does not exist"),
        (postgres.url(&verified).replace(&postgres.port.to_string(), &closed_port().to_string()), "nothing listens"),
    ];
    for (url, fix) in cases {
        let lines = check_history(dir.path(), &fake, &url).await;
        assert!(lines.starts_with("PROBLEM") && lines.contains(fix), "{url}: expected {fix:?} in\n{lines}");
    }

    // Once a daemon has connected the schema is there, at the version check knows.
    let forward = reserve_addr();
    let config = pbx_config(dir.path(), &fake.url(), "msk", forward, &postgres.url(&verified));
    let mut daemon = Deskhook::spawn(&["run", "--config", config.to_str().expect("utf8")]);
    wait_for("the schema", || async {
        !postgres.sql("deskhook", "SELECT to_regclass('deskhook_calls') IS NOT NULL").contains('f')
    })
    .await;
    daemon.stop().await;
    let migrated = check_history(dir.path(), &fake, &postgres.url(&verified)).await;
    assert!(migrated.starts_with("ok ") && migrated.contains("schema version 1"), "{migrated}");
    assert!(migrated.contains("0 calls from 0 PBX(es)"), "{migrated}");

    // A database whose schema is newer than this deskhook knows is refused, not written.
    postgres.sql("deskhook", "INSERT INTO deskhook_schema (version) VALUES (99)");
    let newer = check_history(dir.path(), &fake, &postgres.url(&verified)).await;
    assert!(newer.starts_with("PROBLEM") && newer.contains("version 99"), "{newer}");
}
