//! The fake ARI as a standalone process, to try `deskhook run` by hand without an Asterisk:
//!
//! ```sh
//! cargo run --example fake_ari -- 127.0.0.1:8088 secret tests/fixtures/traces/01-in-direct-answered.jsonl
//! # in another terminal, with [ari] url = "http://127.0.0.1:8088", password = "secret":
//! deskhook run --config config.toml
//! ```
//!
//! It serves the lab PBX (endpoints provider/101/102/103) and replays the given traces in a
//! loop at their recorded pace, each call after the daemon is connected. Kill it (even with
//! `kill -9`) mid-call and start it again to watch deskhook log the outage, reconnect, resync
//! and end the call that vanished.

use std::time::Duration;

use fake_ari::{FakeAri, FakeAriOptions, FakeTrace, Pace};

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: fake_ari LISTEN_ADDRESS PASSWORD TRACE.jsonl...";
    let address = args.next().ok_or(usage)?.parse().map_err(|err| format!("listen address: {err}"))?;
    let password = args.next().ok_or(usage)?;
    let traces: Vec<(String, FakeTrace)> = args
        .map(|path| FakeTrace::read(std::path::Path::new(&path)).map(|trace| (path, trace)))
        .collect::<Result<_, _>>()?;
    if traces.is_empty() {
        return Err(usage.into());
    }
    let fake = FakeAri::start_on(address, FakeAriOptions::lab("deskhook", &password))
        .await
        .map_err(|err| format!("cannot listen on {address}: {err}"))?;
    eprintln!("fake ARI listening on {} (user deskhook)", fake.url());
    loop {
        for (path, trace) in &traces {
            let _ = fake.wait_for(Duration::from_secs(3600), |status| status.ready).await;
            eprintln!("playing {path} ({} messages)", trace.len());
            let report = fake.play(trace, 0..trace.len(), Pace::Recorded { speedup: 1.0 }).await;
            eprintln!("  sent {}, lost {}", report.sent, report.lost);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}
