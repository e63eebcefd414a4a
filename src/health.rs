//! Shared liveness flags (ARI connected, storage writable, each sink accepting) that the live
//! daemon sets and `/healthz` reads. Cloning shares the same flags; reading or writing one is
//! one atomic.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use serde::Serialize;

#[derive(Debug, Default)]
struct Flags {
    ari_connected: AtomicBool,
    storage_writable: AtomicBool,
    /// Raised by the outbox's writer while its commits fail (requests held in memory).
    outbox_failing: RwLock<Option<Arc<AtomicBool>>>,
    /// Each sink's "its destination accepts requests" flag, by name.
    sinks: RwLock<Vec<(String, Arc<AtomicBool>)>>,
}

/// Both flags start false: deskhook is not healthy until the daemon has seen ARI and storage work.
#[derive(Debug, Clone, Default)]
pub struct Health {
    flags: Arc<Flags>,
}

/// What `/healthz` answers, as JSON. A failing sink does not make deskhook unhealthy: its
/// requests wait safely in the outbox; `failing_sinks` names it for the admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    pub healthy: bool,
    pub ari_connected: bool,
    pub storage_writable: bool,
    /// False while the outbox cannot commit (its requests wait in memory, retried).
    pub outbox_writable: bool,
    pub failing_sinks: Vec<String>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_ari_connected(&self, connected: bool) {
        self.flags.ari_connected.store(connected, Ordering::Relaxed);
    }

    pub fn set_storage_writable(&self, writable: bool) {
        self.flags.storage_writable.store(writable, Ordering::Relaxed);
    }

    pub fn ari_connected(&self) -> bool {
        self.flags.ari_connected.load(Ordering::Relaxed)
    }

    pub fn storage_writable(&self) -> bool {
        self.flags.storage_writable.load(Ordering::Relaxed)
    }

    /// Follows the outbox writer's "commits fail" flag.
    pub fn watch_outbox(&self, failing: Arc<AtomicBool>) {
        *self.flags.outbox_failing.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(failing);
    }

    /// Whether the outbox commits (true when no outbox is watched).
    pub(crate) fn outbox_writable(&self) -> bool {
        let failing = self.flags.outbox_failing.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        !failing.as_ref().is_some_and(|failing| failing.load(Ordering::Relaxed))
    }

    /// Follows these sinks' flags (true: the destination accepts requests).
    pub(crate) fn watch_sinks(&self, sinks: Vec<(String, Arc<AtomicBool>)>) {
        *self.flags.sinks.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = sinks;
    }

    /// The sinks whose destination failed the last try.
    pub(crate) fn failing_sinks(&self) -> Vec<String> {
        let sinks = self.flags.sinks.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        sinks.iter().filter(|(_, accepting)| !accepting.load(Ordering::Relaxed)).map(|(name, _)| name.clone()).collect()
    }

    pub fn report(&self) -> HealthReport {
        let ari_connected = self.ari_connected();
        let storage_writable = self.storage_writable();
        let outbox_writable = self.outbox_writable();
        HealthReport {
            healthy: ari_connected && storage_writable && outbox_writable,
            ari_connected,
            storage_writable,
            outbox_writable,
            failing_sinks: self.failing_sinks(),
        }
    }
}

/// Writes, syncs and removes a small probe file in `dir`: the honest test of "storage writable".
pub(crate) fn probe_storage(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let probe = dir.join(format!(".deskhook-probe-{}", std::process::id()));
    let result = std::fs::File::create(&probe).and_then(|mut file| {
        file.write_all(b"ok")?;
        file.sync_all()
    });
    let removed = std::fs::remove_file(&probe);
    result.and(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_when_both_flags_are_set_on_any_clone() {
        let health = Health::new();
        assert!(!health.report().healthy);
        let daemon_side = health.clone();
        daemon_side.set_ari_connected(true);
        assert_eq!(
            health.report(),
            HealthReport {
                healthy: false,
                ari_connected: true,
                storage_writable: false,
                outbox_writable: true,
                failing_sinks: Vec::new()
            }
        );
        daemon_side.set_storage_writable(true);
        assert!(health.report().healthy);
        let zammad = Arc::new(AtomicBool::new(true));
        daemon_side.watch_sinks(vec![("zammad".into(), zammad.clone())]);
        zammad.store(false, Ordering::Relaxed);
        assert_eq!(health.report().failing_sinks, ["zammad"]);
        assert!(health.report().healthy, "a failing destination waits in the outbox");
        let commits_failing = Arc::new(AtomicBool::new(false));
        daemon_side.watch_outbox(commits_failing.clone());
        assert!(health.report().healthy);
        commits_failing.store(true, Ordering::Relaxed);
        assert!(!health.report().healthy && !health.report().outbox_writable, "requests wait in memory");
    }

    #[test]
    fn storage_probe_reports_a_missing_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(probe_storage(dir.path()).is_ok());
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0, "the probe file is removed");
        assert!(probe_storage(&dir.path().join("missing")).is_err());
    }
}
