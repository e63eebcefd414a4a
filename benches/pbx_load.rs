//! pbx_load: what deskhook costs the PBX host per call. The fake ARI streams a synthetic load
//! of 10 new calls a second for 60 s (five recorded call shapes from the lab PBX in turn:
//! incoming answered, queue answered, outgoing answered, internal, incoming unanswered; each
//! copy with ids, channel names, bridge ids, times and MixMonitor file names of its own) into
//! the real `deskhook run` binary. A helper plays MixMonitor: it creates each recording when
//! the trace sets `MIXMONITOR_FILENAME`, appends 320 bytes every 20 ms and closes the file when
//! the channel is destroyed. A loopback helpdesk accepts everything and counts it.
//!
//! Reported per scenario (MixMonitor recordings on, recordings off): deskhook's own CPU time
//! (user + system, `/proc/PID/stat`) per call from the first message until the helpdesk has
//! every event and recording, threads created during the load, context switches (wake-ups)
//! per call and per idle second. The run fails loudly when an event or recording is missing.
//!
//! Run: `cargo bench --bench pbx_load` (about 2.5 minutes; `PBX_LOAD_SECS=N` changes the
//! load's length). `cargo test --all-targets` runs it without `--bench`: 3 s, as a smoke test.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use fake_ari::{FakeAri, FakeAriOptions, FakeTrace, Pace};
use regex::Regex;

const CALLS_PER_SECOND: u64 = 10;
const LOAD_SECS: u64 = 60;
const SMOKE_SECS: u64 = 3;
const IDLE_SECS: u64 = 3;
/// The call shapes, taken in turn.
const SHAPES: &[&str] = &[
    "01-in-direct-answered",
    "04-in-queue-answered-by-102",
    "07-out-answered",
    "09-internal-101-to-102-answered",
    "02-in-direct-noanswer-callercancel",
];
const RECORDED_SPOOL: &str = "/var/spool/asterisk/monitor";
const PASSWORD: &str = "bench-password";
/// MixMonitor's write pattern: 20 ms of 8 kHz 16-bit audio.
const FRAME: [u8; 320] = [0x55; 320];
const FRAME_EVERY: Duration = Duration::from_millis(20);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traces")
}

/// One recorded call to copy from.
struct Shape {
    lines: Vec<String>,
    first_ms: i64,
    events: u64,
    recordings: u64,
}

impl Shape {
    fn load(name: &str) -> Shape {
        let text = std::fs::read_to_string(fixtures().join(format!("{name}.jsonl"))).expect("shape trace");
        let lines: Vec<String> = text.lines().filter(|line| !line.trim().is_empty()).map(str::to_string).collect();
        let first_ms = lines.iter().find_map(|line| timestamp_of(line)).expect("a timestamp");
        let expected = std::fs::read_to_string(fixtures().join(format!("{name}.expected.jsonl"))).expect("expected");
        let (mut events, mut recordings) = (0, 0);
        for line in expected.lines().filter(|line| !line.trim().is_empty()) {
            let value: serde_json::Value = serde_json::from_str(line).expect("expected line");
            if value["status"] == "record" {
                recordings += 1;
            } else {
                events += 1;
            }
        }
        Shape { lines, first_ms, events, recordings }
    }
}

fn timestamp_of(line: &str) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    parse_time(value["timestamp"].as_str()?)
}

fn parse_time(text: &str) -> Option<i64> {
    let at = jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.f%z", text).ok()?;
    Some(at.as_millisecond())
}

fn format_time(ms: i64) -> String {
    let at = jiff::Timestamp::from_millisecond(ms).expect("in range");
    at.strftime("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// A MixMonitor file: created at `open_ms`, closed at `close_ms` (trace time).
struct RecordingPlan {
    path: PathBuf,
    open_ms: i64,
    close_ms: i64,
}

/// The whole load: messages in time order plus what MixMonitor and the helpdesk should see.
struct Load {
    trace: FakeTrace,
    first_ms: i64,
    calls: u64,
    events: u64,
    /// Every file MixMonitor writes (unanswered calls' too).
    recordings: Vec<RecordingPlan>,
    /// The recordings the helpdesk gets (answered calls').
    uploads: u64,
}

struct Renamer {
    time: Regex,
    unique_id: Regex,
    bridge_id: Regex,
    channel_suffix: Regex,
    serial: u64,
}

impl Renamer {
    fn new() -> Self {
        Renamer {
            time: Regex::new(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{4}").expect("regex"),
            unique_id: Regex::new(r"\b\d{10}\.\d+\b").expect("regex"),
            bridge_id: Regex::new(r"\b([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-)([0-9a-f]{12})\b")
                .expect("regex"),
            channel_suffix: Regex::new(r"(/[A-Za-z0-9_.@]+)-([0-9a-f]{8})\b").expect("regex"),
            serial: 0,
        }
    }

    /// One copy of `shape` starting at `start_ms`: every id, name suffix and time its own.
    fn copy(&mut self, shape: &Shape, start_ms: i64, spool: &str) -> Vec<(i64, String)> {
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut suffixes: HashMap<String, String> = HashMap::new();
        let mut bridges: HashMap<String, String> = HashMap::new();
        let seconds = start_ms / 1000;
        let mut out = Vec::with_capacity(shape.lines.len());
        for line in &shape.lines {
            let serial = &mut self.serial;
            let line = self.unique_id.replace_all(line, |caps: &regex::Captures| {
                renamed(&mut ids, &caps[0], serial, |n| format!("{seconds}.{n}"))
            });
            let line = self.bridge_id.replace_all(&line, |caps: &regex::Captures| {
                format!("{}{}", &caps[1], renamed(&mut bridges, &caps[2], serial, |n| format!("{n:012x}")))
            });
            let line = self.channel_suffix.replace_all(&line, |caps: &regex::Captures| {
                format!("{}-{}", &caps[1], renamed(&mut suffixes, &caps[2], serial, |n| format!("{n:08x}")))
            });
            let line = self.time.replace_all(&line, |caps: &regex::Captures| {
                let old = parse_time(&caps[0]).expect("a trace time");
                format_time(start_ms + (old - shape.first_ms))
            });
            let line = line.replace(RECORDED_SPOOL, spool);
            let at = timestamp_of(&line).expect("timestamp");
            out.push((at, line));
        }
        out
    }
}

/// The copy's name for `old`: the same every time within a copy, a new serial the first time.
fn renamed(names: &mut HashMap<String, String>, old: &str, serial: &mut u64, name: impl Fn(u64) -> String) -> String {
    names
        .entry(old.to_string())
        .or_insert_with(|| {
            *serial += 1;
            name(*serial)
        })
        .clone()
}

fn build_load(seconds: u64, start_ms: i64, spool: &Path) -> Load {
    let shapes: Vec<Shape> = SHAPES.iter().map(|name| Shape::load(name)).collect();
    let mut renamer = Renamer::new();
    let spool_text = spool.display().to_string();
    let mut lines: Vec<(i64, String)> = Vec::new();
    let calls = seconds * CALLS_PER_SECOND;
    let mut events = 0;
    let mut recordings = Vec::new();
    let mut expected_recordings = 0;
    for index in 0..calls {
        let shape = &shapes[(index as usize) % shapes.len()];
        let copy_start = start_ms + (index * 1000 / CALLS_PER_SECOND) as i64;
        let copy = renamer.copy(shape, copy_start, &spool_text);
        events += shape.events;
        let mut opened: Vec<(String, PathBuf, i64)> = Vec::new();
        for (at, line) in &copy {
            let value: serde_json::Value = serde_json::from_str(line).expect("json");
            match value["type"].as_str() {
                Some("ChannelVarset") if value["variable"] == "MIXMONITOR_FILENAME" => {
                    let channel = value["channel"]["id"].as_str().expect("channel").to_string();
                    let path = PathBuf::from(value["value"].as_str().expect("file"));
                    opened.push((channel, path, *at));
                }
                Some("ChannelDestroyed") => {
                    let channel = value["channel"]["id"].as_str().unwrap_or_default();
                    if let Some(position) = opened.iter().position(|(id, _, _)| id == channel) {
                        let (_, path, open_ms) = opened.remove(position);
                        recordings.push(RecordingPlan { path, open_ms, close_ms: *at });
                    }
                }
                _ => {}
            }
        }
        assert!(opened.is_empty(), "every recording's channel ends");
        expected_recordings += shape.recordings;
        lines.extend(copy);
    }
    lines.sort_by_key(|(at, _)| *at);
    let text: String = lines.iter().map(|(_, line)| format!("{line}\n")).collect();
    let trace = FakeTrace::parse(&text).expect("the load parses");
    Load {
        trace,
        first_ms: lines.first().map(|(at, _)| *at).unwrap_or(start_ms),
        calls,
        events,
        recordings,
        uploads: expected_recordings,
    }
}

/// Plays MixMonitor on its own thread: opens, grows and closes the load's recordings on time.
fn spawn_mixmonitor(
    plans: Vec<RecordingPlan>,
    first_ms: i64,
    started: Instant,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut waiting: Vec<RecordingPlan> = plans;
        waiting.sort_by_key(|plan| std::cmp::Reverse(plan.open_ms));
        let mut open: Vec<(std::fs::File, i64)> = Vec::new();
        let mut written = 0u64;
        let mut next = started;
        while !stop.load(Ordering::Relaxed) && (!waiting.is_empty() || !open.is_empty()) {
            let now_ms = first_ms + started.elapsed().as_millis() as i64;
            while waiting.last().is_some_and(|plan| plan.open_ms <= now_ms) {
                let plan = waiting.pop().expect("checked");
                std::fs::create_dir_all(plan.path.parent().expect("parent")).expect("spool dir");
                open.push((std::fs::File::create(&plan.path).expect("recording file"), plan.close_ms));
            }
            for (file, _) in &mut open {
                file.write_all(&FRAME).expect("append");
                written += FRAME.len() as u64;
            }
            // Dropping the file is MixMonitor's close at hangup.
            open.retain(|(_, close_ms)| *close_ms > now_ms);
            next += FRAME_EVERY;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        written
    })
}

/// The loopback helpdesk: 200 to everything; counts events and recording uploads.
#[derive(Default)]
struct Helpdesk {
    events: AtomicU64,
    uploads: AtomicU64,
}

async fn start_helpdesk() -> (Arc<Helpdesk>, String) {
    let counts = Arc::new(Helpdesk::default());
    let shared = counts.clone();
    let app = axum::Router::new().fallback(move |request: Request| {
        let counts = shared.clone();
        async move {
            let multipart = request
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.starts_with("multipart/"));
            // Read the whole body, as a helpdesk would.
            let _ = axum::body::to_bytes(request.into_body(), usize::MAX).await;
            if multipart {
                counts.uploads.fetch_add(1, Ordering::Relaxed);
            } else {
                counts.events.fetch_add(1, Ordering::Relaxed);
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (counts, format!("http://{address}/webhook/deskhook"))
}

/// deskhook's own counters from /proc.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    cpu_ticks: u64,
    switches: u64,
}

fn clock_ticks_per_second() -> u64 {
    let output = Command::new("getconf").arg("CLK_TCK").output();
    output
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ")".
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15, i.e. 12 and 13 after the state field at 3.
    let field = |index: usize| fields.get(index).and_then(|text| text.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// Samples deskhook's threads: every thread id seen and its latest context-switch count
/// (so threads that exit keep counting).
struct ThreadSampler {
    pid: u32,
    switches: Mutex<BTreeMap<u32, u64>>,
}

impl ThreadSampler {
    fn sample(&self) {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else { return };
        let mut switches = self.switches.lock().expect("lock");
        for entry in entries.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            let count: u64 = status
                .lines()
                .filter(|line| {
                    line.starts_with("voluntary_ctxt_switches") || line.starts_with("nonvoluntary_ctxt_switches")
                })
                .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            switches.insert(tid, count);
        }
    }

    fn usage(&self) -> Usage {
        self.sample();
        let switches = self.switches.lock().expect("lock").values().sum();
        Usage { cpu_ticks: cpu_ticks(self.pid), switches }
    }

    fn threads_seen(&self) -> HashSet<u32> {
        self.switches.lock().expect("lock").keys().copied().collect()
    }
}

/// The deskhook child, killed if the bench fails half-way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

struct Scenario {
    name: &'static str,
    mixmonitor: bool,
}

struct Outcome {
    calls: u64,
    cpu_ms_per_call: f64,
    switches_per_call: f64,
    idle_switches_per_second: f64,
    threads_at_start: usize,
    threads_created: usize,
    e2e_secs: f64,
    bytes_recorded: u64,
}

fn write_config(dir: &Path, ari_url: &str, webhook: &str, spool: &Path, mixmonitor: bool) -> PathBuf {
    let lab = std::fs::read_to_string(fixtures().join("lab.toml")).expect("lab.toml");
    let lab = lab.replace("[recordings]", "[pbx.queues]\nsupport = [\"101\", \"102\", \"103\"]\n\n[recordings]");
    let lab = if mixmonitor {
        lab.replace(&format!("dirs = [\"{RECORDED_SPOOL}\"]"), &format!("dirs = [\"{}\"]", spool.display()))
    } else {
        lab.replace("mode = \"mixmonitor\"", "mode = \"off\"")
    };
    let text = format!(
        "{lab}\n[ari]\nurl = \"{ari_url}\"\nusername = \"deskhook\"\npassword = \"{PASSWORD}\"\napp = \"deskhook-bench\"\n\
         [storage]\ndir = \"{}\"\n[forward]\nlisten = \"\"\n[helpdesk]\nwebhook_url = \"{webhook}\"\n",
        dir.display()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("config written");
    path
}

async fn run(scenario: &Scenario, seconds: u64) -> Outcome {
    let fake = FakeAri::start(FakeAriOptions::lab("deskhook", PASSWORD)).await.expect("fake ARI");
    let (helpdesk, webhook) = start_helpdesk().await;
    let state = tempfile::tempdir().expect("tempdir");
    let spool = tempfile::tempdir().expect("tempdir");
    let config = write_config(state.path(), &fake.url(), &webhook, spool.path(), scenario.mixmonitor);
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_deskhook"))
            .args(["run", "--config", config.to_str().expect("utf-8")])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("deskhook runs"),
    );
    let sampler = Arc::new(ThreadSampler { pid: child.0.id(), switches: Mutex::new(BTreeMap::new()) });
    fake.wait_for(Duration::from_secs(30), |status| status.ready).await.expect("deskhook connects");
    // Startup work (resync, SQLite files) is done once the first resync answered; let it finish.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let idle_from = sampler.usage();
    tokio::time::sleep(Duration::from_secs(IDLE_SECS)).await;
    let idle_to = sampler.usage();
    let threads_at_start = sampler.threads_seen().len();

    let start_ms = jiff::Timestamp::now().as_millisecond() + 500;
    let load = build_load(seconds, start_ms, spool.path());
    let expected_uploads = if scenario.mixmonitor { load.uploads } else { 0 };
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let sampler = sampler.clone();
        let watching = watching.clone();
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                sampler.sample();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let before = sampler.usage();
    // For profilers attaching to the daemon (`perf record -p`, `strace -c -f -p`).
    eprintln!("pbx_load: {} load starts, deskhook pid {}", scenario.name, child.0.id());
    let started = Instant::now();
    let stop_writer = Arc::new(AtomicBool::new(false));
    let plans = if scenario.mixmonitor { load.recordings } else { Vec::new() };
    let writer = spawn_mixmonitor(plans, load.first_ms, started, stop_writer.clone());
    let report = fake.play(&load.trace, 0..load.trace.len(), Pace::Recorded { speedup: 1.0 }).await;
    assert_eq!(report.sent, load.trace.len(), "every message was sent");
    let deadline = Instant::now() + Duration::from_secs(120);
    while helpdesk.events.load(Ordering::Relaxed) < load.events
        || helpdesk.uploads.load(Ordering::Relaxed) < expected_uploads
    {
        if Instant::now() > deadline {
            stop_writer.store(true, Ordering::Relaxed);
            panic!(
                "{}: the helpdesk got {} of {} events and {} of {} recordings",
                scenario.name,
                helpdesk.events.load(Ordering::Relaxed),
                load.events,
                helpdesk.uploads.load(Ordering::Relaxed),
                expected_uploads
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = sampler.usage();
    let e2e_secs = started.elapsed().as_secs_f64();
    watching.store(false, Ordering::Relaxed);
    let _ = watcher.join();
    let bytes_recorded = writer.join().expect("writer");
    let threads_created = sampler.threads_seen().len() - threads_at_start;
    assert_eq!(helpdesk.events.load(Ordering::Relaxed), load.events, "no event twice");
    assert_eq!(helpdesk.uploads.load(Ordering::Relaxed), expected_uploads, "no recording twice");

    let status = fake.status();
    eprintln!(
        "pbx_load: {}: the simulated Asterisk wrote {} ARI messages and kept {} back (deskhook's event filter)",
        scenario.name, status.messages_sent, status.messages_filtered
    );
    let _ = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status();
    let _ = child.0.wait();
    fake.shutdown();

    let ticks = clock_ticks_per_second() as f64;
    let cpu_ms = (after.cpu_ticks - before.cpu_ticks) as f64 * 1000.0 / ticks;
    Outcome {
        calls: load.calls,
        cpu_ms_per_call: cpu_ms / load.calls as f64,
        switches_per_call: (after.switches - before.switches) as f64 / load.calls as f64,
        idle_switches_per_second: (idle_to.switches - idle_from.switches) as f64 / IDLE_SECS as f64,
        threads_at_start,
        threads_created,
        e2e_secs,
        bytes_recorded,
    }
}

fn main() {
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let seconds = if measuring {
        std::env::var("PBX_LOAD_SECS").ok().and_then(|text| text.parse().ok()).unwrap_or(LOAD_SECS)
    } else {
        SMOKE_SECS
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let scenarios =
        [Scenario { name: "mixmonitor", mixmonitor: true }, Scenario { name: "no recordings", mixmonitor: false }];
    println!(
        "pbx_load: {CALLS_PER_SECOND} new calls/s for {seconds} s into `deskhook run` (shapes: {})",
        SHAPES.join(", ")
    );
    println!(
        "{:<14} {:>6} {:>12} {:>14} {:>13} {:>9} {:>9} {:>8} {:>10}",
        "scenario", "calls", "CPU ms/call", "switches/call", "idle sw/s", "threads", "created", "e2e s", "audio MB"
    );
    for scenario in &scenarios {
        let outcome = runtime.block_on(run(scenario, seconds));
        println!(
            "{:<14} {:>6} {:>12.3} {:>14.1} {:>13.1} {:>9} {:>9} {:>8.1} {:>10.1}",
            scenario.name,
            outcome.calls,
            outcome.cpu_ms_per_call,
            outcome.switches_per_call,
            outcome.idle_switches_per_second,
            outcome.threads_at_start,
            outcome.threads_created,
            outcome.e2e_secs,
            outcome.bytes_recorded as f64 / 1e6,
        );
    }
    println!(
        "CPU = deskhook's user+system time from the first ARI message until the helpdesk had every event and \
         recording, per call;\nswitches = context switches of all its threads (wake-ups); idle = the same with no \
         calls; threads = alive before the load; created = new during it"
    );
}
