//! MixMonitor pickup end to end below the daemon: a finished call's recording files go through
//! the real outbox to a loopback helpdesk, only from `recordings.dirs`, and survive a restart.

#[path = "deliver_support/mod.rs"]
mod deliver_support;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use deliver_support::receiver::Receiver;
use deliver_support::{fast_config, multipart_parts, wait_until};
use deskhook::calls::{RecordingRef, RecordingSource};
use deskhook::config::{DurationSpec, RecordingsConfig};
use deskhook::deliver::{Delivery, Outbox};
use deskhook::recordings::Pickup;
use sha2::{Digest, Sha256};

fn recordings_config(dir: &Path) -> RecordingsConfig {
    RecordingsConfig {
        mode: deskhook::config::RecordingMode::Mixmonitor,
        dirs: vec![dir.to_path_buf()],
        settle: DurationSpec(Duration::from_secs(30)),
        wait_timeout: DurationSpec(Duration::from_secs(20)),
        ..RecordingsConfig::default()
    }
}

fn file_ref(unique_id: &str, path: &Path) -> RecordingRef {
    RecordingRef { unique_id: unique_id.into(), source: RecordingSource::File(path.display().to_string()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowly_written_file_is_uploaded_once_closed_with_exact_bytes() {
    let receiver = Receiver::start().await;
    let storage = tempfile::tempdir().expect("tempdir");
    let spool = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(storage.path(), &fast_config()).expect("outbox");
    let delivery = Delivery::start(outbox, &receiver.url(), &fast_config()).expect("delivery");
    let pickup = Pickup::start(&recordings_config(spool.path()), storage.path(), delivery.clone()).expect("pickup");

    let path = spool.path().join("in-74951234567-+79161234567-20261121-045816-1795237096.10.wav");
    let mut file = std::fs::File::create(&path).expect("create");
    file.write_all(b"RIFF....WAVEfmt ").expect("write");
    // The call ended; MixMonitor is still writing for a moment.
    pickup.submit(vec![file_ref("1795237096.10", &path)]).await;
    let mut hasher = Sha256::new();
    hasher.update(b"RIFF....WAVEfmt ");
    for chunk in 0..20u8 {
        let data = vec![chunk; 4096];
        file.write_all(&data).expect("write");
        hasher.update(&data);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(receiver.accepted_count(), 0, "uploaded before the file was closed");
    drop(file);
    wait_until("the upload", Duration::from_secs(15), || receiver.accepted_count() == 1).await;

    let seen = &receiver.accepted()[0];
    let parts = multipart_parts(&seen.content_type, &seen.body);
    let field = |name: &str| parts.iter().find(|p| p.name == name).map(|p| p.data.clone());
    assert_eq!(field("status").as_deref(), Some(&b"record"[..]));
    assert_eq!(field("unique_id").as_deref(), Some(&b"1795237096.10"[..]));
    let record = parts.iter().find(|p| p.name == "record").expect("record part");
    assert_eq!(record.filename.as_deref(), path.file_name().and_then(|n| n.to_str()));
    assert_eq!(Sha256::digest(&record.data)[..], hasher.finalize()[..]);
    delivery.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_outside_the_dirs_and_escaping_symlinks_are_refused() {
    let receiver = Receiver::start().await;
    let storage = tempfile::tempdir().expect("tempdir");
    let spool = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let secret = elsewhere.path().join("shadow");
    std::fs::write(&secret, b"root:$6$secret").expect("write");
    let link = spool.path().join("in-101.wav");
    std::os::unix::fs::symlink(&secret, &link).expect("symlink");
    let genuine = spool.path().join("genuine.wav");
    std::fs::write(&genuine, b"RIFF-genuine").expect("write");

    let outbox = Outbox::open(storage.path(), &fast_config()).expect("outbox");
    let delivery = Delivery::start(outbox, &receiver.url(), &fast_config()).expect("delivery");
    let mut cfg = recordings_config(spool.path());
    cfg.settle = DurationSpec(Duration::from_millis(200));
    let pickup = Pickup::start(&cfg, storage.path(), delivery.clone()).expect("pickup");
    let refused = || deskhook::metrics::value_of("deskhook_recordings_refused_total").unwrap_or(0);
    let refused_before = refused();
    pickup
        .submit(vec![
            file_ref("1.1", &secret),
            file_ref("1.1", &link),
            RecordingRef { unique_id: "1.1".into(), source: RecordingSource::File("/etc/passwd".into()) },
            file_ref("1.1", &genuine),
        ])
        .await;
    // The genuine file, submitted last, arrives; nothing before it does.
    wait_until("the genuine upload", Duration::from_secs(15), || receiver.accepted_count() == 1).await;
    // Uploads go in submission order and nothing is pending: nothing else will be sent.
    wait_until("nothing pending", Duration::from_secs(15), || delivery.counts().pending == 0).await;
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 1);
    let parts = multipart_parts(&accepted[0].content_type, &accepted[0].body);
    let record = parts.iter().find(|p| p.name == "record").expect("record part");
    assert_eq!(record.data, b"RIFF-genuine");
    assert!(refused() >= refused_before + 3);
    delivery.shutdown().await;
}

#[test]
fn a_pickup_promised_before_a_restart_is_done_after_it() {
    let storage = tempfile::tempdir().expect("tempdir");
    let spool = tempfile::tempdir().expect("tempdir");
    let path = spool.path().join("q-500-+79161234568.wav");
    let mut cfg = recordings_config(spool.path());
    cfg.settle = DurationSpec(Duration::from_millis(200));

    // First run: the file is not there yet when the daemon dies.
    {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let outbox = Outbox::open(storage.path(), &fast_config()).expect("outbox");
            let delivery = Delivery::start(outbox, "", &fast_config()).expect("delivery");
            let pickup = Pickup::start(&cfg, storage.path(), delivery).expect("pickup");
            pickup.submit(vec![file_ref("1795237133.16", &path)]).await;
        });
        runtime.shutdown_background();
    }
    std::fs::write(&path, b"RIFF-after-restart").expect("write");

    // Second run: the promise kept in the outbox brings the pickup back.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let receiver = Receiver::start().await;
        let outbox = Outbox::open(storage.path(), &fast_config()).expect("outbox");
        let delivery = Delivery::start(outbox, &receiver.url(), &fast_config()).expect("delivery");
        let _pickup = Pickup::start(&cfg, storage.path(), delivery.clone()).expect("pickup");
        wait_until("the resumed upload", Duration::from_secs(15), || receiver.accepted_count() == 1).await;
        let seen = &receiver.accepted()[0];
        let parts = multipart_parts(&seen.content_type, &seen.body);
        assert!(parts.iter().any(|p| p.name == "record" && p.data == b"RIFF-after-restart"));
        assert_eq!(promised_pickups(storage.path()), 0, "the promise went with the upload's commit");
        delivery.shutdown().await;
    });
}

/// Promises still in the outbox's `pickups` table (read beside the running delivery).
fn promised_pickups(storage: &Path) -> i64 {
    let conn = rusqlite::Connection::open(storage.join(deskhook::deliver::OUTBOX_FILE)).expect("open outbox");
    conn.query_row("SELECT COUNT(*) FROM pickups", [], |row| row.get(0)).expect("count")
}

/// An older deskhook kept promised pickups in `recordings.sqlite`: the first start takes them
/// over into the outbox (and removes the file), and does them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_deskhooks_recordings_journal_is_taken_over_and_removed() {
    let storage = tempfile::tempdir().expect("tempdir");
    let spool = tempfile::tempdir().expect("tempdir");
    let done = spool.path().join("q-501-+79161234569.wav");
    std::fs::write(&done, b"RIFF-from-the-old-journal").expect("write");
    let missing = spool.path().join("q-501-gone.wav");
    let legacy = storage.path().join("recordings.sqlite");
    {
        let old = rusqlite::Connection::open(&legacy).expect("old journal");
        old.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE pending (id INTEGER PRIMARY KEY AUTOINCREMENT, unique_id TEXT NOT NULL,
                                   file TEXT NOT NULL, UNIQUE (unique_id, file));
             ALTER TABLE pending ADD COLUMN uploads TEXT;",
        )
        .expect("old schema");
        old.execute(
            "INSERT INTO pending (unique_id, file, uploads) VALUES ('1795237150.20', ?1, ?2), ('1795237150.21', ?3, NULL)",
            rusqlite::params![
                done.display().to_string(),
                r#"[{"sink":"helpdesk","summary":null}]"#,
                missing.display().to_string()
            ],
        )
        .expect("old rows");
    }
    let mut cfg = recordings_config(spool.path());
    cfg.settle = DurationSpec(Duration::from_millis(200));
    cfg.wait_timeout = DurationSpec(Duration::from_millis(500));
    let receiver = Receiver::start().await;
    let outbox = Outbox::open(storage.path(), &fast_config()).expect("outbox");
    let delivery = Delivery::start(outbox, &receiver.url(), &fast_config()).expect("delivery");
    let _pickup = Pickup::start(&cfg, storage.path(), delivery.clone()).expect("pickup");
    wait_until("the old journal removed", Duration::from_secs(15), || !legacy.exists()).await;
    wait_until("the recording uploaded", Duration::from_secs(15), || receiver.accepted_count() == 1).await;
    let seen = &receiver.accepted()[0];
    let parts = multipart_parts(&seen.content_type, &seen.body);
    assert!(parts.iter().any(|p| p.name == "record" && p.data == b"RIFF-from-the-old-journal"));
    wait_until("both promises settled: one uploaded, one given up", Duration::from_secs(15), || {
        promised_pickups(storage.path()) == 0
    })
    .await;
    assert_eq!(receiver.accepted_count(), 1, "the missing file sends nothing");
    delivery.shutdown().await;
}

/// An unreadable journal of an older deskhook is reported and kept, and holds nothing up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_old_journal_is_reported_and_recordings_go_on() {
    deliver_support::capture_logs();
    let storage = tempfile::tempdir().expect("tempdir");
    let spool = tempfile::tempdir().expect("tempdir");
    let legacy = storage.path().join("recordings.sqlite");
    std::fs::write(&legacy, b"not a database, not even close to one; a stray file of the same name").expect("write");
    let path = spool.path().join("q-502-+79161234570.wav");
    std::fs::write(&path, b"RIFF-despite-the-old-file").expect("write");
    let mut cfg = recordings_config(spool.path());
    cfg.settle = DurationSpec(Duration::from_millis(200));
    let receiver = Receiver::start().await;
    let outbox = Outbox::open(storage.path(), &fast_config()).expect("outbox");
    let delivery = Delivery::start(outbox, &receiver.url(), &fast_config()).expect("delivery");
    let pickup = Pickup::start(&cfg, storage.path(), delivery.clone()).expect("the pickup starts anyway");
    pickup.submit(vec![file_ref("1795237160.30", &path)]).await;
    wait_until("the new recording uploaded", Duration::from_secs(15), || receiver.accepted_count() == 1).await;
    assert!(legacy.exists(), "the unreadable file is left for the admin");
    let logs = deliver_support::captured_logs();
    assert!(logs.contains("cannot read the recordings journal an older deskhook left"), "{logs}");
    delivery.shutdown().await;
}
