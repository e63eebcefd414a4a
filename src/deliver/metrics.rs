//! The delivery's Prometheus metrics (the unlabelled totals; per-sink series are
//! [`crate::metrics::SinkMeters`]).

use crate::metrics::{counter, gauge, Counter, Gauge, SinkMeters};

use super::outbox::OutboxCounts;

pub(crate) fn delivered() -> &'static Counter {
    counter!("deskhook_helpdesk_delivered_total", "Helpdesk requests the helpdesk accepted.")
}

pub(crate) fn failed_tries() -> &'static Counter {
    counter!(
        "deskhook_helpdesk_failed_tries_total",
        "Tries of helpdesk requests that failed (each is retried or dead-lettered)."
    )
}

pub(crate) fn dead_lettered() -> &'static Counter {
    counter!("deskhook_helpdesk_dead_lettered_total", "Helpdesk requests given up on (see `deskhook outbox list`).")
}

pub(crate) fn refused() -> &'static Counter {
    counter!("deskhook_outbox_refused_total", "Helpdesk requests refused because the outbox was full (lost).")
}

pub(crate) fn evicted() -> &'static Counter {
    counter!(
        "deskhook_outbox_evicted_total",
        "Delivered rows dropped early to keep the outbox under helpdesk.outbox_max_rows."
    )
}

pub(crate) fn write_errors() -> &'static Counter {
    counter!("deskhook_outbox_write_errors_total", "Outbox transactions that failed to commit.")
}

fn pending() -> &'static Gauge {
    gauge!("deskhook_outbox_pending", "Helpdesk requests waiting to be delivered.")
}

fn dead() -> &'static Gauge {
    gauge!("deskhook_outbox_dead", "Dead-lettered helpdesk requests in the outbox.")
}

fn rows() -> &'static Gauge {
    gauge!("deskhook_outbox_rows", "Rows in the outbox (pending, dead and kept delivered ones).")
}

/// One sink's rows, as its `sink`-labelled gauges.
pub(crate) fn publish_sink_counts(meters: &SinkMeters, counts: OutboxCounts) {
    meters.pending.set(i64::try_from(counts.pending).unwrap_or(i64::MAX));
    meters.dead.set(i64::try_from(counts.dead).unwrap_or(i64::MAX));
}

/// All sinks' rows together (the unlabelled gauges).
pub(crate) fn publish_counts(counts: OutboxCounts) {
    pending().set(i64::try_from(counts.pending).unwrap_or(i64::MAX));
    dead().set(i64::try_from(counts.dead).unwrap_or(i64::MAX));
    rows().set(i64::try_from(counts.rows()).unwrap_or(i64::MAX));
}
