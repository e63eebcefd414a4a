//! ws_ingest: a burst of 50,000 recorded ARI events (the 70-call busy stretch, repeated) sent as
//! fast as the fake ARI can write them through a real loopback websocket into the running
//! daemon (reader thread → queue → parse + call engine task → sink task). Reports end-to-end events/s and how
//! long the reading side ever stalled. Goals: ≥ 100,000 events/s; the reader never stalls ≥ 10 ms.
//!
//! Run: `cargo bench --bench ws_ingest` (prints a table; no criterion, one process, 3 rounds).
//! `cargo test --all-targets` runs it without `--bench`: one round of 5,000 messages, as a smoke test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deskhook::calls::Output;
use deskhook::config::Config;
use deskhook::daemon::{Daemon, DaemonLinks, Sink, SinkFuture};
use fake_ari::{FakeAri, FakeAriOptions, FakeTrace, Pace};

const BURST: usize = 50_000;
const ROUNDS: usize = 3;
/// Under `cargo test --all-targets` (no `--bench` argument) only a short smoke run.
const SMOKE_BURST: usize = 5_000;

/// Counts helpdesk events; the cheapest possible sink, so the bench measures ingest.
struct CountingSink(Arc<AtomicU64>);

impl Sink for CountingSink {
    fn accept<'a>(&'a mut self, output: &'a Output) -> SinkFuture<'a> {
        if matches!(output, Output::Event(_)) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        Box::pin(async {})
    }
}

/// `size` messages: the busy stretch repeated, each copy with uniqueids of its own (the
/// recording's `179523…` ids renumbered), so every copy is 70 new calls for the engine.
fn burst(recorded: &str, round: usize, size: usize) -> FakeTrace {
    let copies = recorded.lines().count().max(1);
    let mut text = String::with_capacity(recorded.len() * (size / copies + 1));
    for copy in 0..size / copies + 1 {
        text.push_str(&recorded.replace("179523", &format!("1795{}", 30 + round * 10 + copy)));
        text.push('\n');
    }
    let trace = FakeTrace::parse(&text).expect("busy-stretch parses");
    FakeTrace { messages: trace.messages.into_iter().take(size).collect() }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let (size, rounds) = if measuring { (BURST, ROUNDS) } else { (SMOKE_BURST, 1) };
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traces");
    let recorded = std::fs::read_to_string(fixtures.join("busy-stretch.jsonl")).expect("busy-stretch trace");
    // An Asterisk without an event filter: the bench measures the path for every message
    // Asterisk can send, and counts them all as handled.
    let options = FakeAriOptions { event_filter: false, ..FakeAriOptions::lab("deskhook", "bench") };
    let fake = FakeAri::start(options).await.expect("fake ARI");
    let settings = std::fs::read_to_string(fixtures.join("busy-stretch.toml")).expect("busy-stretch.toml");
    let mut config = Config::from_toml(&settings, "busy-stretch.toml").expect("config");
    config.ari.url = fake.url();
    config.ari.password = "bench".into();
    let storage = tempfile::tempdir().expect("tempdir");
    config.storage.dir = storage.path().to_path_buf();
    // The burst is written many times faster than any Asterisk sends (hundreds of thousands of
    // messages a second): with the default bound the reader would, as designed, drop the
    // socket and resync. This bench measures the path's throughput, so the whole burst may wait.
    config.ari.max_backlog = config.ari.max_backlog.max(size + 1);
    let events = Arc::new(AtomicU64::new(0));
    let daemon =
        Daemon::start(&config, Box::new(CountingSink(events.clone())), DaemonLinks::default()).expect("daemon");
    fake.wait_for(Duration::from_secs(10), |status| status.ready).await.expect("daemon connects");
    let stats = daemon.stats();

    println!("ws_ingest: {size} ARI messages from busy-stretch.jsonl per burst, fake ARI → websocket → daemon");
    println!(
        "{:>5} {:>9} {:>8} {:>8} {:>11} {:>10} {:>10} {:>12} {:>7}",
        "round", "events/s", "e2e ms", "send ms", "busy max µs", "busy ≥1ms", "gap max ms", "write max ms", "calls"
    );
    for round in 1..=rounds {
        let base = stats.processed.load(Ordering::Relaxed);
        let calls_before = events.load(Ordering::Relaxed);
        let received_before = stats.reader.messages.load(Ordering::Relaxed);
        fake.reset_write_marks();
        stats.reader.reset_marks();
        let trace = burst(&recorded, round, size);
        let started = Instant::now();
        let sender = {
            let fake_trace = trace.clone();
            let fake = &fake;
            async move { fake.play(&fake_trace, 0..size, Pace::MaxSpeed).await }
        };
        let reader_stats = stats.reader.clone();
        // The gap before the burst's first frame is idle time, not a stall: start measuring
        // gaps once the burst is flowing.
        let marks = async {
            while reader_stats.messages.load(Ordering::Relaxed) < received_before + 64 {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            reader_stats.longest_gap_us.store(0, Ordering::Relaxed);
        };
        let (report, ()) = tokio::join!(sender, marks);
        let sent_in = started.elapsed();
        assert_eq!(report.sent, size, "every message was sent");
        let deadline = Instant::now() + Duration::from_secs(120);
        // Done when the engine has handled the whole burst and the sink has every event it produced.
        while stats.processed.load(Ordering::Relaxed) < base + size as u64
            || events.load(Ordering::Relaxed) < stats.events.load(Ordering::Relaxed)
        {
            assert!(
                Instant::now() < deadline,
                "the engine did not catch up: {} of {} messages handled, {} connections",
                stats.processed.load(Ordering::Relaxed) - base,
                size,
                stats.reader.connections.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        let total = started.elapsed();
        let status = fake.status();
        println!(
            "{round:>5} {:>9.0} {:>8.1} {:>8.1} {:>11} {:>10} {:>10.2} {:>12.2} {:>7}",
            size as f64 / total.as_secs_f64(),
            total.as_secs_f64() * 1000.0,
            sent_in.as_secs_f64() * 1000.0,
            stats.reader.longest_busy_us.load(Ordering::Relaxed),
            stats.reader.slow_frames.load(Ordering::Relaxed),
            stats.reader.longest_gap_us.load(Ordering::Relaxed) as f64 / 1000.0,
            status.longest_write_us as f64 / 1000.0,
            events.load(Ordering::Relaxed) - calls_before,
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    println!(
        "e2e = first message sent → last message handled by the engine and its last event in the sink; send = time the fake needed to write the \
         burst;\nbusy = time the reading task spent on one frame (≥1ms: frames where it was preempted); gap = longest \
         time between two frames\nduring the burst (includes the sender's own pace); write = longest single \
         write+flush of the fake ARI (what Asterisk's\nwebsocket_write_timeout of 100 ms would see); calls = helpdesk \
         events produced (each copy of the stretch is 70 new calls)"
    );
    daemon.stop(Duration::from_secs(4)).await;
    fake.shutdown();
}
