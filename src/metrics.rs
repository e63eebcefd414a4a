//! Process-wide counters and gauges, rendered in Prometheus text format for `/metrics`.
//!
//! One way to name a metric: [`counter!`] and [`gauge!`] where it is counted (registered on
//! first use, then cached at that call site), [`SinkMeters`] for the series labelled by sink
//! (made once per sink). There is no central list to edit. Values are plain atomics, so
//! updating one on a hot path costs one instruction and never a lookup.
//!
//! Why not the prometheus-client crate: its encoder writes OpenMetrics (a `# EOF` trailer,
//! `_total` appended to counter names, `# UNIT` lines, an `application/openmetrics-text`
//! type), while `/metrics` promises the Prometheus text format and the names admins already
//! scrape and alert on. What the crate would add (typed, labelled series) is what the ~200
//! lines here give, without a registry lock or label hashing on the hot path.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub(crate) struct Gauge(AtomicI64);

impl Gauge {
    pub(crate) fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }
    pub(crate) fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> i64 {
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

/// The counter `$name` (with `$help`), registered on first use and cached at the call site.
macro_rules! counter {
    ($name:literal, $help:literal $(,)?) => {{
        static CELL: std::sync::OnceLock<&'static $crate::metrics::Counter> = std::sync::OnceLock::new();
        *CELL.get_or_init(|| $crate::metrics::register_counter($name, $help, ""))
    }};
}
pub(crate) use counter;

/// The gauge `$name` (with `$help`), registered on first use and cached at the call site.
macro_rules! gauge {
    ($name:literal, $help:literal $(,)?) => {{
        static CELL: std::sync::OnceLock<&'static $crate::metrics::Gauge> = std::sync::OnceLock::new();
        *CELL.get_or_init(|| $crate::metrics::register_gauge($name, $help, ""))
    }};
}
pub(crate) use gauge;

/// The series of one sink (label `sink`): made once when the sink starts, kept by whoever
/// counts for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SinkMeters {
    pub delivered: &'static Counter,
    pub failed_tries: &'static Counter,
    pub dead_lettered: &'static Counter,
    pub not_stored: &'static Counter,
    pub in_flight: &'static Gauge,
    pub pending: &'static Gauge,
    pub dead: &'static Gauge,
}

impl SinkMeters {
    /// The series of sink `sink`, registered the first time it is asked for.
    pub(crate) fn of(sink: &str) -> SinkMeters {
        let label = sink_label(sink);
        let counter = |name, help| register_counter(name, help, &label);
        let gauge = |name, help| register_gauge(name, help, &label);
        SinkMeters {
            delivered: counter("deskhook_sink_delivered_total", "Requests accepted, by sink."),
            failed_tries: counter("deskhook_sink_failed_tries_total", "Failed tries of requests, by sink."),
            dead_lettered: counter("deskhook_sink_dead_lettered_total", "Requests given up on, by sink."),
            not_stored: counter(
                "deskhook_events_not_stored_total",
                "Call events the outbox refused (a sink's share full, disk error, stopped), by sink.",
            ),
            in_flight: gauge("deskhook_sink_in_flight", "Requests being sent right now, by sink."),
            pending: gauge("deskhook_sink_pending", "Requests waiting to be delivered, by sink."),
            dead: gauge("deskhook_sink_dead", "Dead-lettered requests in the outbox, by sink."),
        }
    }
}

impl SinkMeters {
    /// A series only some kinds of sink have (labelled `sink` too): registered once, when the
    /// sink starts, and kept by it.
    pub(crate) fn extra_counter(sink: &str, name: &'static str, help: &'static str) -> &'static Counter {
        register_counter(name, help, &sink_label(sink))
    }
}

/// The current value of the unlabelled metric `name`, if it is registered (for tests and
/// tools reading what `/metrics` would show).
pub fn value_of(name: &str) -> Option<i64> {
    let entries = registry().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    entries.iter().find(|entry| entry.name == name && entry.labels.is_empty()).map(|entry| match entry.metric {
        Metric::Counter(counter) => i64::try_from(counter.get()).unwrap_or(i64::MAX),
        Metric::Gauge(gauge) => gauge.get(),
    })
}

fn sink_label(sink: &str) -> String {
    let escaped = sink.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    format!("sink=\"{escaped}\"")
}

/// Registers (once) and returns the series `labels` of counter `name`; use [`counter!`] or
/// [`SinkMeters`] rather than calling this where something is counted.
#[doc(hidden)]
pub(crate) fn register_counter(name: &'static str, help: &'static str, labels: &str) -> &'static Counter {
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

/// Registers (once) and returns the series `labels` of gauge `name`; see [`register_counter`].
#[doc(hidden)]
pub(crate) fn register_gauge(name: &'static str, help: &'static str, labels: &str) -> &'static Gauge {
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
        let requests = counter!("deskhook_test_requests_total", "Requests seen by this test.");
        requests.add(3);
        assert!(std::ptr::eq(requests, register_counter("deskhook_test_requests_total", "again", "")));
        gauge!("deskhook_test_depth", "Depth.").set(-2);
        assert_eq!(value_of("deskhook_test_depth"), Some(-2));
        let text = render();
        assert!(
            text.contains("# TYPE deskhook_test_requests_total counter\ndeskhook_test_requests_total 3\n"),
            "{text}"
        );
        assert!(text.contains("deskhook_test_depth -2\n"), "{text}");
    }

    #[test]
    fn a_labelled_metric_has_one_help_and_a_series_per_sink() {
        SinkMeters::of("test-json").delivered.add(2);
        SinkMeters::of("test-zam\"mad").delivered.inc();
        assert!(std::ptr::eq(SinkMeters::of("test-json").delivered, SinkMeters::of("test-json").delivered));
        let text = render();
        assert_eq!(text.matches("# HELP deskhook_sink_delivered_total").count(), 1, "{text}");
        assert!(text.contains("\ndeskhook_sink_delivered_total{sink=\"test-json\"} 2\n"), "{text}");
        assert!(text.contains("\ndeskhook_sink_delivered_total{sink=\"test-zam\\\"mad\"} 1\n"), "{text}");
        let series = text.lines().filter(|line| line.starts_with("deskhook_sink_delivered_total")).count();
        let block = text
            .split("# HELP deskhook_sink_delivered_total")
            .nth(1)
            .and_then(|rest| rest.split("# HELP").next())
            .unwrap_or_default();
        assert_eq!(block.lines().filter(|line| line.starts_with("deskhook_sink_delivered_total")).count(), series);
    }
}
