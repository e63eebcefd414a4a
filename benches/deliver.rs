//! Durable delivery throughput and latency against a loopback webhook receiver.
//!
//! `cargo bench --bench deliver` prints:
//! - sustained: events/s from the first enqueue until the receiver has accepted every one of a
//!   20,000-event burst (2,000 interleaved calls, one enqueue per event, each committed);
//! - paced: at 100 events/s for 10 s, p50/p99/max latency from `enqueue` to the receiver;
//! - the same two with three sinks at once (each event stored for all three in one
//!   transaction, as the daemon does), each sink with its own receiver: per sink.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it only does a short smoke run.

#[path = "../tests/deliver_support/mod.rs"]
mod deliver_support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use deliver_support::receiver::Receiver;
use deliver_support::{call_and_seq, event};
use deskhook::config::HelpdeskConfig;
use deskhook::deliver::{Delivery, DeliveryHandle, Outbox, Request, Target};

const EVENTS_PER_CALL: usize = 10;
const PACED_RATE: u64 = 100;

/// How much to run: the real measurement, or a smoke run that only proves the bench works.
#[derive(Clone, Copy)]
struct Size {
    burst_calls: usize,
    paced_seconds: u64,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start tokio: {error}");
            std::process::exit(1);
        }
    };
    let full = std::env::args().any(|arg| arg == "--bench");
    let size =
        if full { Size { burst_calls: 2_000, paced_seconds: 10 } } else { Size { burst_calls: 50, paced_seconds: 1 } };
    if !full {
        println!("smoke run: pass --bench (cargo bench --bench deliver) for real numbers");
    }
    runtime.block_on(async {
        sustained(size).await;
        paced(size).await;
        sustained_sinks(size).await;
        paced_sinks(size).await;
    });
}

async fn start(cfg: &HelpdeskConfig) -> (Receiver, DeliveryHandle, tempfile::TempDir) {
    let storage = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let receiver = Receiver::start().await;
    let outbox = Outbox::open(storage.path(), cfg).expect("open outbox");
    let handle = Delivery::start(outbox, &receiver.url(), cfg).expect("start delivery");
    (receiver, handle, storage)
}

async fn sustained(size: Size) {
    let burst_calls = size.burst_calls;
    let cfg = HelpdeskConfig::default();
    let (receiver, handle, _storage) = start(&cfg).await;
    let utc = jiff::tz::TimeZone::UTC;
    let total = burst_calls * EVENTS_PER_CALL;
    let requests: Vec<Request> = (0..EVENTS_PER_CALL)
        .flat_map(|seq| (0..burst_calls).map(move |call| (call, seq)))
        .map(|(call, seq)| event(&format!("1700000000.{call}"), seq, EVENTS_PER_CALL).request(&utc))
        .collect();

    let started = Instant::now();
    let stored: Vec<_> = requests.into_iter().map(|request| handle.enqueue(vec![request])).collect();
    for result in futures_util::future::join_all(stored).await {
        result.expect("enqueue");
    }
    let enqueued = started.elapsed();
    while receiver.accepted_count() < total {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let delivered = started.elapsed();
    handle.shutdown().await;
    println!(
        "sustained: {total} events ({burst_calls} calls x {EVENTS_PER_CALL}, max_parallel {}) stored in {:.2}s \
         ({:.0}/s durable enqueue), all delivered in {:.2}s = {:.0} events/s",
        cfg.max_parallel,
        enqueued.as_secs_f64(),
        total as f64 / enqueued.as_secs_f64(),
        delivered.as_secs_f64(),
        total as f64 / delivered.as_secs_f64()
    );
}

async fn paced(size: Size) {
    let cfg = HelpdeskConfig::default();
    let (receiver, handle, _storage) = start(&cfg).await;
    let utc = jiff::tz::TimeZone::UTC;
    let total = (PACED_RATE * size.paced_seconds) as usize;
    let sent_at = pace(total, "1700000001", |call, seq, per_call| {
        vec![tokio::spawn(handle.enqueue(vec![event(call, seq, per_call).request(&utc)]))]
    })
    .await;
    while receiver.accepted_count() < total {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    handle.shutdown().await;
    report_latencies(&format!("paced: {total} events at {PACED_RATE}/s"), &receiver, &sent_at);
}

type SentAt = HashMap<(String, usize), Instant>;

/// Stores `total` events at `PACED_RATE` over 50 calls named `prefix.N` through `store`, waits
/// until every one is stored, and says when each was handed over.
async fn pace<F>(total: usize, prefix: &str, store: F) -> SentAt
where
    F: Fn(&str, usize, usize) -> Vec<tokio::task::JoinHandle<Result<(), deskhook::deliver::DeliverError>>>,
{
    let calls = 50;
    let per_call = total / calls;
    let mut sent_at: SentAt = HashMap::with_capacity(total);
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / PACED_RATE));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut outstanding = Vec::new();
    for index in 0..total {
        ticker.tick().await;
        let (call, seq) = (format!("{prefix}.{}", index % calls), index / calls);
        sent_at.insert((call.clone(), seq), Instant::now());
        outstanding.extend(store(&call, seq, per_call));
    }
    for stored in outstanding {
        stored.await.expect("task").expect("enqueue");
    }
    sent_at
}

/// Prints p50/p99/max from hand-over to acceptance by `receiver`.
fn report_latencies(label: &str, receiver: &Receiver, sent_at: &SentAt) {
    let mut latencies: Vec<Duration> = receiver
        .accepted()
        .iter()
        .filter_map(|seen| {
            let key = call_and_seq(&seen.body)?;
            Some(seen.at.saturating_duration_since(*sent_at.get(&key)?))
        })
        .collect();
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1];
    println!(
        "{label}, enqueue -> delivered: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(0.50).as_secs_f64() * 1000.0,
        percentile(0.99).as_secs_f64() * 1000.0,
        percentile(1.0).as_secs_f64() * 1000.0
    );
}

const SINKS: [&str; 3] = ["helpdesk", "json", "zammad"];

/// Three sinks on one outbox, each with its own loopback receiver.
async fn start_sinks(cfg: &HelpdeskConfig) -> (Vec<Receiver>, DeliveryHandle, tempfile::TempDir) {
    let storage = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let mut receivers = Vec::new();
    let mut targets = Vec::new();
    for name in SINKS {
        let receiver = Receiver::start().await;
        let mut target = Target::helpdesk(&receiver.url(), cfg);
        target.name = name.to_string();
        targets.push(target);
        receivers.push(receiver);
    }
    let outbox = Outbox::open(storage.path(), cfg).expect("open outbox");
    let handle = Delivery::start_targets(outbox, targets).expect("start delivery");
    (receivers, handle, storage)
}

/// One event for every sink, stored as the daemon stores an engine step.
fn store_for_all(
    handle: &DeliveryHandle,
    call: &str,
    seq: usize,
    per_call: usize,
) -> Vec<impl std::future::Future<Output = Result<(), deskhook::deliver::DeliverError>>> {
    let utc = jiff::tz::TimeZone::UTC;
    let requests = SINKS.iter().map(|sink| vec![event(call, seq, per_call).request(&utc).to_sink(*sink)]).collect();
    handle.store_step(requests, Vec::new(), Vec::new())
}

async fn sustained_sinks(size: Size) {
    let burst_calls = size.burst_calls;
    let cfg = HelpdeskConfig::default();
    let (receivers, handle, _storage) = start_sinks(&cfg).await;
    let total = burst_calls * EVENTS_PER_CALL;
    let started = Instant::now();
    let mut stored = Vec::with_capacity(total * SINKS.len());
    for seq in 0..EVENTS_PER_CALL {
        for call in 0..burst_calls {
            stored.extend(store_for_all(&handle, &format!("1700000002.{call}"), seq, EVENTS_PER_CALL));
        }
    }
    for result in futures_util::future::join_all(stored).await {
        result.expect("enqueue");
    }
    let mut done: Vec<Option<Duration>> = vec![None; SINKS.len()];
    while done.iter().any(Option::is_none) {
        for (index, receiver) in receivers.iter().enumerate() {
            if done[index].is_none() && receiver.accepted_count() >= total {
                done[index] = Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    handle.shutdown().await;
    for (sink, took) in SINKS.iter().zip(done) {
        let took = took.unwrap_or_default();
        println!(
            "three sinks, sustained: sink {sink}: {total} events delivered in {:.2}s = {:.0} events/s",
            took.as_secs_f64(),
            total as f64 / took.as_secs_f64()
        );
    }
}

async fn paced_sinks(size: Size) {
    let cfg = HelpdeskConfig::default();
    let (receivers, handle, _storage) = start_sinks(&cfg).await;
    let total = (PACED_RATE * size.paced_seconds) as usize;
    let sent_at = pace(total, "1700000003", |call, seq, per_call| {
        store_for_all(&handle, call, seq, per_call).into_iter().map(tokio::spawn).collect()
    })
    .await;
    while receivers.iter().any(|receiver| receiver.accepted_count() < total) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    handle.shutdown().await;
    for (sink, receiver) in SINKS.iter().zip(&receivers) {
        report_latencies(
            &format!("three sinks, paced: sink {sink}: {total} events at {PACED_RATE}/s"),
            receiver,
            &sent_at,
        );
    }
}
