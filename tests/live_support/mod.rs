//! Helpers for the live tests: the fake ARI with the lab PBX, config files pointing at it,
//! and the real `deskhook` binary run as a child process whose stdout/stderr are collected.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deskhook::calls::Output;
use deskhook::daemon::{Sink, SinkFuture};
use fake_ari::{FakeAri, FakeAriOptions, FakeTrace};

/// Generous: the suite runs on a loaded 2-core machine.
/// A sink for an in-process daemon that keeps every output, for assertions.
#[derive(Clone, Default)]
pub struct Collect(pub Arc<Mutex<Vec<Output>>>);

impl Sink for Collect {
    fn accept<'a>(&'a mut self, output: &'a Output) -> SinkFuture<'a> {
        self.0.lock().expect("not poisoned").push(output.clone());
        Box::pin(async {})
    }
}

pub const PATIENCE: Duration = Duration::from_secs(30);

pub const PASSWORD: &str = "s3cret-test-password";

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traces")
}

pub fn trace(name: &str) -> FakeTrace {
    FakeTrace::read(&fixtures().join(format!("{name}.jsonl"))).expect("fixture trace parses")
}

pub async fn lab_fake() -> FakeAri {
    FakeAri::start(FakeAriOptions::lab("deskhook", PASSWORD)).await.expect("fake ARI starts")
}

/// A config file: the lab PBX's settings plus `[ari]` at `url` and `[storage]` in `dir`;
/// `ari_extra` is appended inside `[ari]`.
pub fn write_config(dir: &Path, url: &str, password: &str, ari_extra: &str) -> PathBuf {
    let lab = std::fs::read_to_string(fixtures().join("lab.toml")).expect("lab.toml");
    let mut ari =
        format!("url = \"{url}\"\nusername = \"deskhook\"\npassword = \"{password}\"\napp = \"deskhook-test\"\n");
    for (key, value) in
        [("ping_interval", "1s"), ("idle_timeout", "10s"), ("reconnect_max", "2s"), ("request_timeout", "3s")]
    {
        if !ari_extra.contains(&format!("{key} =")) {
            ari.push_str(&format!("{key} = \"{value}\"\n"));
        }
    }
    // Tests run side by side: no /forward port unless a test asks for one.
    let text =
        format!("{lab}\n[ari]\n{ari}{ari_extra}\n[storage]\ndir = \"{}\"\n[forward]\nlisten = \"\"\n", dir.display());
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("config written");
    path
}

/// The deskhook binary running as a child process.
pub struct Deskhook {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(stream: impl std::io::Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            lines.lock().expect("not poisoned").push(line);
        }
    });
}

impl Deskhook {
    pub fn spawn(args: &[&str]) -> Self {
        Self::spawn_with_env(args, &[])
    }

    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_deskhook"));
        command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        command.env_remove("NOTIFY_SOCKET").env_remove("WATCHDOG_USEC").env_remove("DESKHOOK_CONFIG");
        command.env("RUST_LOG", "info");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("deskhook binary starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().expect("piped"), stdout.clone());
        collect(child.stderr.take().expect("piped"), stderr.clone());
        Self { child, stdout, stderr }
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().expect("not poisoned").clone()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("not poisoned").join("\n")
    }

    /// How many stderr lines contain `needle`.
    pub fn stderr_count(&self, needle: &str) -> usize {
        self.stderr.lock().expect("not poisoned").iter().filter(|line| line.contains(needle)).count()
    }

    /// stdout lines parsed as JSON.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout_lines()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("stdout line {line:?}: {err}")))
            .collect()
    }

    pub async fn wait_until(&self, what: &str, condition: impl Fn(&Deskhook) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !condition(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n--- stdout:\n{}\n--- stderr:\n{}",
                self.stdout_lines().join("\n"),
                self.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_stdout_lines(&self, count: usize) {
        self.wait_until(&format!("{count} stdout lines"), |d| d.stdout_lines().len() >= count).await;
    }

    pub async fn wait_stderr(&self, needle: &str) {
        self.wait_until(&format!("{needle:?} in stderr"), |d| d.stderr_count(needle) > 0).await;
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// The process id (e.g. to read `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit; None when it is still running after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader threads pick up the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGTERM, then asserts a clean exit (0) within 5 s.
    pub async fn stop(&mut self) {
        self.signal("TERM");
        let status = self.wait_exit(Duration::from_secs(5)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "deskhook did not exit 0 within 5 s of SIGTERM: {status:?}\n--- stderr:\n{}",
            self.stderr_text()
        );
    }
}

impl Drop for Deskhook {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a short-lived subcommand to completion off the async workers: (exit code, stdout, stderr).
pub async fn run_command(args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_to_end(&args)
    })
    .await
    .expect("command thread")
}

/// Runs a short-lived subcommand to completion: (exit code, stdout, stderr).
pub fn run_to_end(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_deskhook"))
        .args(args)
        .env_remove("DESKHOOK_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("deskhook runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Gives the config at `path` a `/metrics` port (forward.listen on a free loopback port).
pub fn listen_for_metrics(path: &Path) -> std::net::SocketAddr {
    let address = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let text = std::fs::read_to_string(path).expect("config");
    assert!(text.contains("[forward]\nlisten = \"\""), "a config from write_config");
    std::fs::write(path, text.replace("[forward]\nlisten = \"\"", &format!("[forward]\nlisten = \"{address}\"")))
        .expect("config");
    address
}

/// A counter or gauge from the daemon's `/metrics` at `address` (0 while it does not answer).
pub async fn metric(address: std::net::SocketAddr, name: &str) -> u64 {
    let Ok(response) = reqwest::get(format!("http://{address}/metrics")).await else { return 0 };
    let text = response.text().await.unwrap_or_default();
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or_default()
}

/// Waits until the daemon's engine has handled `count` ARI messages: everything the fake sent
/// has been read, so whatever the daemon will print about it is on its way.
pub async fn wait_messages_handled(address: std::net::SocketAddr, count: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let handled = metric(address, "deskhook_ari_messages_total").await;
        if handled >= count as u64 {
            return;
        }
        assert!(Instant::now() < deadline, "the daemon handled {handled} of {count} ARI messages");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the fake has written at least `at_least` messages and the daemon has handled
/// every message the fake wrote (on any connection, resync markers included): whatever the
/// daemon will print about them is on its way.
pub async fn wait_everything_handled(fake: &FakeAri, address: std::net::SocketAddr, at_least: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = fake.status();
        // A message deskhook's event filter kept in Asterisk is due but never written.
        let (written, offered) = (status.messages_sent, status.messages_sent + status.messages_filtered);
        let handled = metric(address, "deskhook_ari_messages_total").await;
        if offered >= at_least as u64 && handled >= written {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the fake wrote {written} messages and filtered {} (at least {at_least} due), the daemon handled {handled}",
            status.messages_filtered
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no sink of the daemon has a request pending (`deskhook_sink_pending` 0 for
/// each): nothing more will be sent, so a repeat or a stray would already have shown.
pub async fn wait_outbox_drained(address: std::net::SocketAddr) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = match reqwest::get(format!("http://{address}/metrics")).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let pending: Vec<&str> = text.lines().filter(|line| line.starts_with("deskhook_sink_pending{")).collect();
        if !pending.is_empty() && pending.iter().all(|line| line.ends_with(" 0")) {
            return;
        }
        assert!(Instant::now() < deadline, "requests still pending: {pending:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the async `condition` holds (checked every 50 ms), at most [`PATIENCE`].
pub async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
