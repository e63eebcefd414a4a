//! A 300 MB recording through the real `deskhook run` in ARI mode: the fake ARI produces the
//! file while serving it, a loopback helpdesk checks every byte while it arrives (neither
//! side holds it), and the daemon's resident memory may grow by less than 20 MB while it
//! downloads the file from Asterisk and uploads it to the helpdesk.

#[path = "deliver_support/mod.rs"]
mod deliver_support;
mod live_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::Router;
use deliver_support::{form_fields, wait_until};
use fake_ari::{generated_audio, FakeTrace, Pace, RecordingAudio};
use futures_util::StreamExt;
use live_support::*;

const SIZE: u64 = 300 * 1024 * 1024;
const CALL_ID: &str = "1795237096.10";
const GROWTH_LIMIT_KB: u64 = 20 * 1024;

fn ari_config(dir: &Path, ari_url: &str, webhook: &str) -> PathBuf {
    let path = write_config(dir, ari_url, PASSWORD, "");
    let text = std::fs::read_to_string(&path).expect("config").replace("mode = \"mixmonitor\"", "mode = \"ari\"");
    let text = format!("{text}\n[helpdesk]\nwebhook_url = \"{webhook}\"\nrequest_timeout = \"60s\"\n");
    std::fs::write(&path, text).expect("config");
    path
}

fn after_answer(trace: &FakeTrace) -> usize {
    let first = trace.position(0, &[r#""type":"ChannelEnteredBridge""#]).expect("a bridge");
    trace.position(first + 1, &[r#""type":"ChannelEnteredBridge""#]).expect("a second leg in the bridge") + 1
}

/// One upload as the helpdesk checked it.
#[derive(Debug, Clone, Default)]
struct CheckedUpload {
    status: String,
    unique_id: String,
    file_name: String,
    bytes: u64,
    /// Every byte equals the fake's generated audio at its offset, and the body ends properly.
    intact: bool,
}

#[derive(Debug, Default)]
struct Seen {
    /// `status` of each request, in arrival order (`record` for uploads).
    statuses: Vec<String>,
    uploads: Vec<CheckedUpload>,
}

/// A helpdesk that compares an upload's `record` part with the expected bytes as it streams in.
async fn streaming_helpdesk() -> (SocketAddr, Arc<Mutex<Seen>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new().fallback(receive).with_state(seen.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, seen)
}

async fn receive(State(seen): State<Arc<Mutex<Seen>>>, request: Request) -> StatusCode {
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let mut body = request.into_body().into_data_stream();
    if let Some(boundary) = content_type.strip_prefix("multipart/form-data; boundary=") {
        let mut checker = UploadChecker::new(boundary.trim_matches('"'));
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { return StatusCode::BAD_REQUEST };
            checker.feed(&chunk);
        }
        let upload = checker.finish();
        let mut seen = seen.lock().expect("not poisoned");
        seen.statuses.push(upload.status.clone());
        seen.uploads.push(upload);
    } else {
        let bytes = axum::body::to_bytes(Body::from_stream(body), 1 << 20).await.unwrap_or_default();
        let status = form_fields(&bytes).get("status").cloned().unwrap_or_default();
        seen.lock().expect("not poisoned").statuses.push(status);
    }
    StatusCode::OK
}

/// Checks a multipart body whose last part is `record`, holding only its headers and the
/// closing delimiter's worth of bytes.
struct UploadChecker {
    head: Vec<u8>,
    in_record: bool,
    pending: Vec<u8>,
    closing: Vec<u8>,
    checked: u64,
    intact: bool,
    upload: CheckedUpload,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn text_field(head: &[u8], name: &str) -> String {
    let marker = format!("name=\"{name}\"");
    let Some(at) = find(head, marker.as_bytes()) else { return String::new() };
    let rest = &head[at..];
    let Some(start) = find(rest, b"\r\n\r\n") else { return String::new() };
    let value = &rest[start + 4..];
    let end = find(value, b"\r\n--").unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

impl UploadChecker {
    fn new(boundary: &str) -> Self {
        Self {
            head: Vec::new(),
            in_record: false,
            pending: Vec::new(),
            closing: format!("\r\n--{boundary}--\r\n").into_bytes(),
            checked: 0,
            intact: true,
            upload: CheckedUpload::default(),
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        if !self.in_record {
            self.head.extend_from_slice(chunk);
            let Some(part) = find(&self.head, b"name=\"record\"") else { return };
            let Some(end) = find(&self.head[part..], b"\r\n\r\n") else { return };
            let data_start = part + end + 4;
            self.upload.status = text_field(&self.head, "status");
            self.upload.unique_id = text_field(&self.head, "unique_id");
            let headers = String::from_utf8_lossy(&self.head[part..data_start]).into_owned();
            self.upload.file_name =
                headers.split("filename=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or("").to_string();
            self.in_record = true;
            self.pending = self.head.split_off(data_start);
            self.head.clear();
        } else {
            self.pending.extend_from_slice(chunk);
        }
        // Everything but what could be the closing delimiter is audio.
        let ready = self.pending.len().saturating_sub(self.closing.len());
        if ready > 0 {
            let mut expected = vec![0u8; ready];
            generated_audio(self.checked, &mut expected);
            if self.pending[..ready] != expected[..] {
                self.intact = false;
            }
            self.checked += ready as u64;
            self.pending.drain(..ready);
        }
    }

    fn finish(mut self) -> CheckedUpload {
        self.upload.bytes = self.checked;
        self.upload.intact = self.intact && self.in_record && self.pending == self.closing;
        self.upload
    }
}

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mb_recording_goes_from_asterisk_to_the_helpdesk_in_constant_memory() {
    let fake = lab_fake().await;
    fake.set_recording_audio(RecordingAudio::Generated { size: SIZE });
    let dir = tempfile::tempdir().expect("tempdir");
    let (helpdesk, seen) = streaming_helpdesk().await;
    let config = ari_config(dir.path(), &fake.url(), &format!("http://{helpdesk}/webhooks/asterisk/token"));
    let mut deskhook = Deskhook::spawn(&["run", "--config", config.to_str().expect("utf8")]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");

    let trace = trace("01-in-direct-answered");
    let cut = after_answer(&trace);
    fake.play(&trace, 0..cut, Pace::Recorded { speedup: 10.0 }).await;
    wait_until("the recording started", PATIENCE, || !fake.live_recordings().is_empty()).await;

    // From here on the daemon downloads and uploads the file.
    let pid = deskhook.pid();
    let baseline = status_kb(pid, "VmRSS:").expect("VmRSS of the daemon");
    // Linux resets the peak (VmHWM) to the current RSS when 5 is written here.
    let hwm_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Some(rss) = status_kb(pid, "VmRSS:") {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    fake.play(&trace, cut..trace.len(), Pace::Recorded { speedup: 10.0 }).await;
    let uploaded = |seen: &Arc<Mutex<Seen>>| !seen.lock().expect("not poisoned").uploads.is_empty();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !uploaded(&seen) {
        assert!(Instant::now() < deadline, "no upload within 120 s\n{}", deskhook.stderr_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let mut peak_kb = peak.load(Ordering::Relaxed);
    if hwm_reset {
        peak_kb = peak_kb.max(status_kb(pid, "VmHWM:").unwrap_or(0));
    }
    wait_until("the stored recording deleted", PATIENCE, || fake.stored_recordings().is_empty()).await;
    deskhook.stop().await;

    let seen = seen.lock().expect("not poisoned");
    let upload = &seen.uploads[0];
    assert_eq!(seen.uploads.len(), 1);
    assert_eq!((upload.status.as_str(), upload.unique_id.as_str()), ("record", CALL_ID));
    assert_eq!(upload.file_name, format!("deskhook-{CALL_ID}-1.wav"));
    assert_eq!(upload.bytes, SIZE);
    assert!(upload.intact, "the uploaded bytes differ from what Asterisk stored");
    let ended = seen.statuses.iter().position(|status| status == "incoming call is ended").expect("ended event");
    let record = seen.statuses.iter().position(|status| status == "record").expect("upload");
    assert!(record > ended, "the recording came before the ended event: {:?}", seen.statuses);
    let growth = peak_kb.saturating_sub(baseline);
    eprintln!(
        "300 MiB download + upload in {:.1} s; daemon RSS {baseline} kB before, peak {peak_kb} kB (+{growth} kB; \
         peak reset: {hwm_reset})",
        took.as_secs_f64()
    );
    assert!(growth < GROWTH_LIMIT_KB, "the daemon's RSS grew by {growth} kB moving a {SIZE}-byte recording");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("recordings")).expect("download dir").collect();
    assert!(leftovers.is_empty(), "the uploaded copy is deleted: {leftovers:?}");
}
