//! The shared call history on a real PostgreSQL (a throwaway cluster on loopback, made by
//! `initdb` as the tests do): how fast answered calls reach it, and how long the `history`
//! resolver's lookup takes at 1,000 lookups a second once warm.
//!
//! `cargo bench --bench history_shared` (about 30 s) prints:
//! - writes: calls handed over at 20,000 a second (four times the goal), until all are
//!   committed locally and copied to PostgreSQL in batches; calls/s end to end. Goal ≥ 5,000.
//! - lookups: `History::last_operator` (the shared and the local copy asked together, as the
//!   resolver does) and the shared query alone, open loop at 1,000/s for 10 s over the
//!   written clients; p50/p99/max. Goal: p99 ≤ 3 ms.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it does a short smoke run.

#[path = "../tests/pg_support/mod.rs"]
mod pg_support;

use std::sync::Arc;
use std::time::Duration;

use deskhook::calls::{CallEvent, CallSummary, Happened, Parties};
use deskhook::history::{History, SharedStore};
use deskhook::numbers::PhoneNormalizer;
use tokio::time::Instant;

const LOOKUP_RATE: u64 = 1000;
/// Calls a second handed to the history in the write test.
const OFFERED_RATE: usize = 20_000;

struct Settings {
    calls: usize,
    lookup_secs: u64,
}

/// An answered incoming call from client number `n`, ended a minute ago.
fn call(n: usize) -> CallEvent {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let operator = format!("{}", 100 + n % 50);
    let client = format!("7916{:07}", n);
    let summary = CallSummary::unanswered(now - 120_000, now - 60_000).answered_by(&operator, 30);
    CallEvent {
        unique_id: format!("1795000000.{n}"),
        at: now - 60_000,
        parties: Parties::incoming(&client, "74951234567"),
        what: Happened::Ended(Box::new(summary)),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

/// Open loop: one lookup starts every millisecond, whatever the previous ones are doing.
/// Returns the latencies, sorted, and how many lookups found nobody.
async fn lookups<F, Fut>(seconds: u64, calls: usize, lookup: F) -> (Vec<Duration>, usize)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let total = (seconds * LOOKUP_RATE) as usize;
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / LOOKUP_RATE));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut running = tokio::task::JoinSet::new();
    for i in 0..total {
        ticks.tick().await;
        let phone = format!("8916{:07}", (i * 7919) % calls);
        let asked = lookup(phone);
        running.spawn(async move {
            let started = Instant::now();
            let found = asked.await;
            (started.elapsed(), found)
        });
    }
    let (mut latencies, mut missed) = (Vec::with_capacity(total), 0);
    while let Some(done) = running.join_next().await {
        let (took, found) = done.expect("lookup task");
        missed += usize::from(!found);
        latencies.push(took);
    }
    latencies.sort();
    (latencies, missed)
}

fn report(name: &str, latencies: &[Duration], missed: usize) {
    println!(
        "{name:<28} {:>7} {:>7} {:>9.3} {:>9.3} {:>9.3}",
        latencies.len(),
        missed,
        percentile(latencies, 0.50),
        percentile(latencies, 0.99),
        latencies.last().map_or(0.0, |max| max.as_secs_f64() * 1000.0)
    );
}

fn main() {
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let settings = if measuring {
        Settings { calls: 100_000, lookup_secs: 10 }
    } else {
        Settings { calls: 2_000, lookup_secs: 1 }
    };
    let postgres = pg_support::Postgres::start(pg_support::PgSetup::default());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let url = postgres.url("sslmode=disable");
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = SharedStore::new(&url, "bench", Duration::from_millis(250)).expect("shared history");
        let history = History::open(dir.path(), PhoneNormalizer::new("7"), Some(shared)).expect("history");
        history.start_copying();
        let (counter, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);

        // Writes, offered at OFFERED_RATE (four times the goal, far past any PBX's peak).
        let started = Instant::now();
        let mut ticks = tokio::time::interval(Duration::from_millis(1));
        for chunk in (0..settings.calls).collect::<Vec<_>>().chunks(OFFERED_RATE / 1000) {
            ticks.tick().await;
            for &n in chunk {
                assert!(history.record(&call(n)), "queued");
            }
        }
        let queued = started.elapsed();
        let flushing = history.clone();
        tokio::task::spawn_blocking(move || flushing.flush()).await.expect("flush");
        let local = started.elapsed();
        loop {
            let copied = counter
                .query_one("SELECT COUNT(*) FROM deskhook_calls", &[])
                .await
                .map(|row| row.get::<_, i64>(0))
                .unwrap_or_default();
            if copied as usize >= settings.calls {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let copied = started.elapsed();
        let rate = |took: Duration| settings.calls as f64 / took.as_secs_f64();
        println!("history_shared: {} calls on PostgreSQL over loopback", settings.calls);
        println!(
            "writes (offered {OFFERED_RATE}/s): queued in {:.0} ms; committed locally {:.0} calls/s; in PostgreSQL {:.0} calls/s (goal >= 5000)",
            queued.as_secs_f64() * 1000.0,
            rate(local),
            rate(copied)
        );

        // Lookups, warm: the pool is open and the statement prepared before measuring.
        let history = Arc::new(history);
        for n in 0..20 {
            let _ = history.last_operator(&format!("8916{n:07}"), Duration::from_secs(86_400)).await;
        }
        println!(
            "{:<28} {:>7} {:>7} {:>9} {:>9} {:>9}",
            "lookups at 1,000/s", "count", "missed", "p50 ms", "p99 ms", "max ms"
        );
        let (both, missed) = lookups(settings.lookup_secs, settings.calls, |phone| {
            let history = history.clone();
            async move {
                matches!(history.last_operator(&phone, Duration::from_secs(86_400)).await, Ok(Some(_)))
            }
        })
        .await;
        report("resolver (shared + local)", &both, missed);
        // Every client asked has talked with an operator, and the local copy knows them all.
        assert_eq!(missed, 0, "the resolver found everyone");
        // Alone, the database may time out on a loaded machine: such lookups count as missed.
        let (shared_only, missed) = lookups(settings.lookup_secs, settings.calls, |phone| {
            let history = history.clone();
            async move {
                let since = 0;
                let client = format!("7{}", &phone[1..]);
                let shared = history.shared().expect("shared");
                matches!(shared.last_operator(&client, since).await, Some(Ok(Some(_))))
            }
        })
        .await;
        report("shared query alone", &shared_only, missed);
        if measuring {
            let p99 = percentile(&both, 0.99);
            println!("goal: resolver p99 <= 3 ms: {}", if p99 <= 3.0 { "met" } else { "NOT met" });
        } else {
            println!("(smoke run: a few seconds of an unoptimised build; `cargo bench` measures)");
        }
    });
}
