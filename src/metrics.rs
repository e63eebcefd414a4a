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
    /// `key="value",…` for one series of a labelled metric; empty for a plain one.
    labels: &'static str,
    metric: Metric,
}

fn registry() -> &'static Mutex<Vec<Entry>> {
    static REGISTRY: OnceLock<Mutex<Vec<Entry>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Vec::new()))
}

/// The counter called `name`, registered on first use. Cache the returned reference.
pub fn counter(name: &'static str, help: &'static str) -> &'static Counter {
    counter_of(name, help, "")
}

/// The gauge called `name`, registered on first use. Cache the returned reference.
pub fn gauge(name: &'static str, help: &'static str) -> &'static Gauge {
    gauge_of(name, help, "")
}

/// The series of counter `name` for one sink (label `sink`). Sinks are few and fixed at start,
/// so each series is registered once and kept for the process's life.
pub fn sink_counter(name: &'static str, help: &'static str, sink: &str) -> &'static Counter {
    counter_of(name, help, &sink_label(sink))
}

/// The series of gauge `name` for one sink (label `sink`).
pub fn sink_gauge(name: &'static str, help: &'static str, sink: &str) -> &'static Gauge {
    gauge_of(name, help, &sink_label(sink))
}

fn sink_label(sink: &str) -> String {
    let escaped = sink.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    format!("sink=\"{escaped}\"")
}

fn counter_of(name: &'static str, help: &'static str, labels: &str) -> &'static Counter {
    let mut entries = registry().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for entry in entries.iter() {
        if entry.name == name && entry.labels == labels {
            if let Metric::Counter(counter) = entry.metric {
                return counter;
            }
        }
    }
    let counter: &'static Counter = Box::leak(Box::default());
    let labels: &'static str = if labels.is_empty() { "" } else { Box::leak(labels.to_string().into_boxed_str()) };
    entries.push(Entry { name, help, labels, metric: Metric::Counter(counter) });
    counter
}

fn gauge_of(name: &'static str, help: &'static str, labels: &str) -> &'static Gauge {
    let mut entries = registry().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for entry in entries.iter() {
        if entry.name == name && entry.labels == labels {
            if let Metric::Gauge(gauge) = entry.metric {
                return gauge;
            }
        }
    }
    let gauge: &'static Gauge = Box::leak(Box::default());
    let labels: &'static str = if labels.is_empty() { "" } else { Box::leak(labels.to_string().into_boxed_str()) };
    entries.push(Entry { name, help, labels, metric: Metric::Gauge(gauge) });
    gauge
}

/// Everything registered, in Prometheus text exposition format.
pub fn render() -> String {
    use std::fmt::Write;
    let entries = registry().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut text = String::new();
    // A metric's series stay together under one HELP and TYPE, in the order first registered.
    let mut names: Vec<&'static str> = Vec::new();
    for entry in entries.iter() {
        if !names.contains(&entry.name) {
            names.push(entry.name);
        }
    }
    for name in names {
        let mut series = entries.iter().filter(|entry| entry.name == name).peekable();
        let Some(first) = series.peek() else { continue };
        let kind = match first.metric {
            Metric::Counter(_) => "counter",
            Metric::Gauge(_) => "gauge",
        };
        let _ = writeln!(text, "# HELP {} {}", name, first.help);
        let _ = writeln!(text, "# TYPE {} {}", name, kind);
        for entry in series {
            let value = match entry.metric {
                Metric::Counter(counter) => counter.get() as i64,
                Metric::Gauge(gauge) => gauge.get(),
            };
            match entry.labels {
                "" => {
                    let _ = writeln!(text, "{name} {value}");
                }
                labels => {
                    let _ = writeln!(text, "{name}{{{labels}}} {value}");
                }
            }
        }
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

    #[test]
    fn a_labelled_metric_has_one_help_and_a_series_per_sink() {
        sink_counter("deskhook_test_sent_total", "Sent.", "json").add(2);
        sink_counter("deskhook_test_sent_total", "Sent.", "zam\"mad").inc();
        assert!(std::ptr::eq(
            sink_counter("deskhook_test_sent_total", "Sent.", "json"),
            sink_counter("deskhook_test_sent_total", "again", "json")
        ));
        let text = render();
        assert_eq!(text.matches("# HELP deskhook_test_sent_total").count(), 1, "{text}");
        assert!(
            text.contains(
                "# TYPE deskhook_test_sent_total counter\ndeskhook_test_sent_total{sink=\"json\"} 2\n\
                 deskhook_test_sent_total{sink=\"zam\\\"mad\"} 1\n"
            ),
            "{text}"
        );
    }
}
