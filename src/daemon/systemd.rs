//! systemd integration through `sd_notify`: READY, STATUS, STOPPING and the watchdog.
//! Everything is a no-op when `NOTIFY_SOCKET` is not set (not started by systemd).

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// The watchdog deadline in microseconds, as sd_watchdog_enabled(3) reads it: `WATCHDOG_USEC`
/// applies to this process unless `WATCHDOG_PID` names another one.
fn watchdog_usec(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<u64> {
    let usec = usec?.trim().parse::<u64>().ok().filter(|usec| *usec > 0)?;
    match pid.map(|pid| pid.trim().parse::<u32>()) {
        None => Some(usec),
        Some(Ok(pid)) if pid == own_pid => Some(usec),
        Some(_) => None,
    }
}

/// What systemd asked for, read once from the environment.
#[derive(Debug, Clone)]
pub struct Systemd {
    notify: bool,
    watchdog_every: Option<Duration>,
    last_ping: Instant,
}

impl Systemd {
    pub(crate) fn from_env() -> Self {
        let notify = std::env::var_os("NOTIFY_SOCKET").is_some_and(|socket| !socket.is_empty());
        let usec = watchdog_usec(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        // Ping at half the deadline, as sd_watchdog_enabled(3) recommends.
        let watchdog_every = usec.filter(|_| notify).map(|usec| Duration::from_micros(usec / 2));
        Self { notify, watchdog_every, last_ping: Instant::now() }
    }

    /// A disabled instance (tests, or commands other than `run`).
    pub(crate) fn disabled() -> Self {
        Self { notify: false, watchdog_every: None, last_ping: Instant::now() }
    }

    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_every
    }

    pub(crate) fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub(crate) fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    pub(crate) fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
    }

    /// Pings the watchdog when half its deadline has passed since the last ping.
    /// When the watchdog next wants a ping, if it is on.
    pub(crate) fn next_watchdog_ping(&self) -> Option<Instant> {
        self.watchdog_every.map(|every| self.last_ping + every)
    }

    pub(crate) fn watchdog_tick(&mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_applies_to_this_process_unless_another_pid_is_named() {
        assert_eq!(watchdog_usec(Some("30000000"), None, 7), Some(30_000_000));
        assert_eq!(watchdog_usec(Some("30000000"), Some("7"), 7), Some(30_000_000));
        assert_eq!(watchdog_usec(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_usec(Some("0"), None, 7), None);
        assert_eq!(watchdog_usec(Some("soon"), None, 7), None);
        assert_eq!(watchdog_usec(None, Some("7"), 7), None);
    }
}
