//! systemd integration through `sd_notify`: READY, STATUS, STOPPING and the watchdog.
//! Everything is a no-op when `NOTIFY_SOCKET` is not set (not started by systemd).

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// What systemd asked for, read once from the environment.
#[derive(Debug)]
pub struct Systemd {
    notify: bool,
    watchdog_every: Option<Duration>,
    last_ping: Instant,
}

impl Systemd {
    pub fn from_env() -> Self {
        let notify = std::env::var_os("NOTIFY_SOCKET").is_some_and(|socket| !socket.is_empty());
        let mut usec = 0u64;
        let watchdog = notify && sd_notify::watchdog_enabled(false, &mut usec) && usec > 0;
        // Ping at half the deadline, as sd_watchdog_enabled(3) recommends.
        let watchdog_every = watchdog.then(|| Duration::from_micros(usec / 2));
        Self { notify, watchdog_every, last_ping: Instant::now() }
    }

    /// A disabled instance (tests, or commands other than `run`).
    pub fn disabled() -> Self {
        Self { notify: false, watchdog_every: None, last_ping: Instant::now() }
    }

    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_every
    }

    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
    }

    /// Pings the watchdog when half its deadline has passed since the last ping.
    pub fn watchdog_tick(&mut self) {
        if let Some(every) = self.watchdog_every {
            if self.last_ping.elapsed() >= every {
                self.send(&[NotifyState::Watchdog]);
                self.last_ping = Instant::now();
            }
        }
    }

    fn send(&self, states: &[NotifyState]) {
        if self.notify {
            if let Err(error) = sd_notify::notify(false, states) {
                tracing::debug!("sd_notify failed: {error}");
            }
        }
    }
}
