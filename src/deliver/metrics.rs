//! The delivery's Prometheus metrics, registered in `crate::metrics` on first use.

use std::sync::OnceLock;

use crate::metrics::{Counter, Gauge};

use super::outbox::OutboxCounts;

macro_rules! cached {
    ($function:ident, $kind:ident, $register:path, $name:literal, $help:literal) => {
        pub(crate) fn $function() -> &'static $kind {
            static CELL: OnceLock<&'static $kind> = OnceLock::new();
            CELL.get_or_init(|| $register($name, $help))
        }
    };
}

cached!(
    delivered,
    Counter,
    crate::metrics::counter,
    "deskhook_helpdesk_delivered_total",
    "Helpdesk requests the helpdesk accepted."
);
cached!(
    failed_tries,
    Counter,
    crate::metrics::counter,
    "deskhook_helpdesk_failed_tries_total",
    "Tries of helpdesk requests that failed (each is retried or dead-lettered)."
);
cached!(
    dead_lettered,
    Counter,
    crate::metrics::counter,
    "deskhook_helpdesk_dead_lettered_total",
    "Helpdesk requests given up on (see `deskhook outbox list`)."
);
cached!(
    refused,
    Counter,
    crate::metrics::counter,
    "deskhook_outbox_refused_total",
    "Helpdesk requests refused because the outbox was full (lost)."
);
cached!(
    evicted,
    Counter,
    crate::metrics::counter,
    "deskhook_outbox_evicted_total",
    "Delivered rows dropped early to keep the outbox under helpdesk.outbox_max_rows."
);
cached!(
    write_errors,
    Counter,
    crate::metrics::counter,
    "deskhook_outbox_write_errors_total",
    "Outbox transactions that failed to commit."
);
cached!(pending, Gauge, crate::metrics::gauge, "deskhook_outbox_pending", "Helpdesk requests waiting to be delivered.");
cached!(dead, Gauge, crate::metrics::gauge, "deskhook_outbox_dead", "Dead-lettered helpdesk requests in the outbox.");
cached!(
    rows,
    Gauge,
    crate::metrics::gauge,
    "deskhook_outbox_rows",
    "Rows in the outbox (pending, dead and kept delivered ones)."
);

/// One sink's rows, as the `sink`-labelled gauges.
pub(crate) fn publish_sink_counts(sink: &str, counts: OutboxCounts) {
    let gauge = |name, help| crate::metrics::sink_gauge(name, help, sink);
    gauge("deskhook_sink_pending", "Requests waiting to be delivered, by sink.")
        .set(i64::try_from(counts.pending).unwrap_or(i64::MAX));
    gauge("deskhook_sink_dead", "Dead-lettered requests in the outbox, by sink.")
        .set(i64::try_from(counts.dead).unwrap_or(i64::MAX));
}

/// Requests a sink's destination accepted.
pub(crate) fn sink_delivered(sink: &str) -> &'static Counter {
    crate::metrics::sink_counter("deskhook_sink_delivered_total", "Requests accepted, by sink.", sink)
}

/// Tries that failed (each is retried or dead-lettered), by sink.
pub(crate) fn sink_failed_tries(sink: &str) -> &'static Counter {
    crate::metrics::sink_counter("deskhook_sink_failed_tries_total", "Failed tries of requests, by sink.", sink)
}

/// Requests given up on, by sink.
pub(crate) fn sink_dead_lettered(sink: &str) -> &'static Counter {
    crate::metrics::sink_counter("deskhook_sink_dead_lettered_total", "Requests given up on, by sink.", sink)
}

/// Requests being sent right now, by sink.
pub(crate) fn sink_in_flight(sink: &str) -> &'static Gauge {
    crate::metrics::sink_gauge("deskhook_sink_in_flight", "Requests being sent right now, by sink.", sink)
}

/// All sinks' rows together (the unlabelled gauges).
pub(crate) fn publish_counts(counts: OutboxCounts) {
    pending().set(i64::try_from(counts.pending).unwrap_or(i64::MAX));
    dead().set(i64::try_from(counts.dead).unwrap_or(i64::MAX));
    rows().set(i64::try_from(counts.rows()).unwrap_or(i64::MAX));
}
