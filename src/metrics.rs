//! Process-wide counters and gauges, rendered in Prometheus text format for `/metrics`.
//!
//! Each subsystem registers its own metrics by name on first use; there is no central list
//! to edit. Values are plain atomics, so updating one on a hot path costs one instruction.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }
    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

enum Metric {
    Counter(&'static Counter),
    Gauge(&'static Gauge),
}

struct Entry {
    name: &'static str,
    help: &'static str,
    metric: Metric,
}

fn registry() -> &'static Mutex<Vec<Entry>> {
    static REGISTRY: OnceLock<Mutex<Vec<Entry>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Vec::new()))
}

/// The counter called `name`, registered on first use. Cache the returned reference.
pub fn counter(name: &'static str, help: &'static str) -> &'static Counter {
    let mut entries = registry().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for entry in entries.iter() {
        if entry.name == name {
            if let Metric::Counter(counter) = entry.metric {
                return counter;
            }
        }
    }
    let counter: &'static Counter = Box::leak(Box::default());
    entries.push(Entry { name, help, metric: Metric::Counter(counter) });
    counter
}

/// The gauge called `name`, registered on first use. Cache the returned reference.
pub fn gauge(name: &'static str, help: &'static str) -> &'static Gauge {
    let mut entries = registry().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for entry in entries.iter() {
        if entry.name == name {
            if let Metric::Gauge(gauge) = entry.metric {
                return gauge;
            }
        }
    }
    let gauge: &'static Gauge = Box::leak(Box::default());
    entries.push(Entry { name, help, metric: Metric::Gauge(gauge) });
    gauge
}

/// Everything registered, in Prometheus text exposition format.
pub fn render() -> String {
    use std::fmt::Write;
    let entries = registry().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut text = String::new();
    for entry in entries.iter() {
        let (kind, value) = match entry.metric {
            Metric::Counter(counter) => ("counter", counter.get() as i64),
            Metric::Gauge(gauge) => ("gauge", gauge.get()),
        };
        let _ = writeln!(text, "# HELP {} {}", entry.name, entry.help);
        let _ = writeln!(text, "# TYPE {} {}", entry.name, kind);
        let _ = writeln!(text, "{} {}", entry.name, value);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_render_in_text_format() {
        let requests = counter("deskhook_test_requests_total", "Requests seen by this test.");
        requests.add(3);
        assert!(std::ptr::eq(requests, counter("deskhook_test_requests_total", "again")));
        gauge("deskhook_test_depth", "Depth.").set(-2);
        let text = render();
        assert!(
            text.contains("# TYPE deskhook_test_requests_total counter\ndeskhook_test_requests_total 3\n"),
            "{text}"
        );
        assert!(text.contains("deskhook_test_depth -2\n"), "{text}");
    }
}
