//! `deskhook outbox list|retry|purge [--sink NAME]` (SPEC §1): what is pending or dead in the
//! outbox (of one sink, or of all) and why; re-queue dead requests; drop them on purpose.

use std::io::Write;
use std::time::Duration;

use crate::config::Config;
use crate::deliver::{humanize, Listing, Outbox, RowState};

/// At most this many rows are printed by `list`; the summary line counts all of them.
pub(crate) const LIST_LIMIT: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxAction {
    List,
    Retry,
    Purge,
}

/// Runs the subcommand for sink `sink` (or every sink); returns the process exit code (0; 1
/// when the outbox cannot be read; 2 for a sink that is neither configured nor in the outbox).
pub fn outbox(
    config: &Config,
    action: OutboxAction,
    sink: Option<&str>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let dir = &config.storage.dir;
    let configured: Vec<String> = config.destinations().into_iter().map(|sink| sink.name).collect();
    let mut outbox = match Outbox::open_existing(dir, &config.helpdesk) {
        Ok(Some(outbox)) => outbox,
        Ok(None) => {
            let _ = writeln!(out, "no outbox in {} yet (storage.dir): nothing pending, nothing dead", dir.display());
            return 0;
        }
        Err(error) => {
            let _ = writeln!(err, "deskhook: {error}");
            return 1;
        }
    };
    if let Some(name) = sink {
        // A sink removed from the config may still have rows: those count too.
        let stored = outbox.sinks().unwrap_or_default();
        if !configured.iter().chain(&stored).any(|known| known == name) {
            let mut known: Vec<&String> = configured.iter().chain(&stored).collect();
            known.sort();
            known.dedup();
            let known: Vec<&str> = known.into_iter().map(String::as_str).collect();
            let _ = writeln!(err, "deskhook: no sink named {name:?}; the sinks are: {}", known.join(", "));
            return 2;
        }
    }
    let result = match action {
        OutboxAction::List => outbox
            .listing(LIST_LIMIT, sink)
            .map(|listing| render_listing(&listing, jiff::Timestamp::now().as_millisecond())),
        OutboxAction::Retry => outbox.retry_dead(sink).map(|count| {
            format!(
                "re-queued {count} dead request(s); a running deskhook sends them within a few seconds, \
                 otherwise the next start does\n"
            )
        }),
        OutboxAction::Purge => outbox.purge_dead(sink).map(|count| format!("dropped {count} dead request(s)\n")),
    };
    match result {
        Ok(text) => {
            let _ = out.write_all(text.as_bytes());
            0
        }
        Err(error) => {
            let _ = writeln!(err, "deskhook: {error}");
            1
        }
    }
}

/// The `list` table (pending and dead rows, oldest first) and a summary line.
pub(crate) fn render_listing(listing: &Listing, now_ms: i64) -> String {
    let ago = |ms: i64| humanize(Duration::from_millis(u64::try_from(now_ms - ms).unwrap_or(0)));
    let rows: Vec<[String; 8]> = listing
        .rows
        .iter()
        .map(|row| {
            let next = match (row.state, row.next_attempt_ms) {
                (RowState::Pending, Some(at)) if at > now_ms => {
                    format!("in {}", humanize(Duration::from_millis(u64::try_from(at - now_ms).unwrap_or(0))))
                }
                (RowState::Pending, _) => "now".to_string(),
                _ => "-".to_string(),
            };
            [
                row.state.as_str().to_string(),
                row.sink.clone(),
                row.unique_id.clone(),
                row.status.clone(),
                row.tries.to_string(),
                next,
                ago(row.enqueued_ms),
                row.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = ["STATE", "SINK", "UNIQUE_ID", "STATUS", "TRIES", "NEXT TRY", "AGE", "LAST ERROR"].map(String::from);
    let mut widths = header.clone().map(|title| title.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    if !rows.is_empty() {
        for line in std::iter::once(&header).chain(&rows) {
            let mut cells = Vec::new();
            for (index, cell) in line.iter().enumerate() {
                if index + 1 == line.len() {
                    cells.push(cell.clone());
                } else {
                    cells.push(format!("{cell:<width$}", width = widths[index]));
                }
            }
            text.push_str(cells.join("  ").trim_end());
            text.push('\n');
        }
    }
    let counts = listing.counts;
    let shown = listing.rows.len() as u64;
    if shown < counts.pending + counts.dead {
        text.push_str(&format!("(showing the oldest {shown} of {} undelivered)\n", counts.pending + counts.dead));
    }
    text.push_str(&format!(
        "{} pending, {} dead, {} delivered (kept for keep_delivered); outbox {}\n",
        counts.pending,
        counts.dead,
        counts.delivered,
        listing.path.display()
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::{ListedRow, OutboxCounts};

    #[test]
    fn listing_shows_state_tries_next_try_age_and_error() {
        let listing = Listing {
            path: "/var/lib/deskhook/outbox.sqlite3".into(),
            rows: vec![
                ListedRow {
                    id: 1,
                    sink: "helpdesk".into(),
                    unique_id: "1700000000.1".into(),
                    status: "incoming call answered".into(),
                    state: RowState::Dead,
                    tries: 3,
                    next_attempt_ms: None,
                    enqueued_ms: 1_000_000 - 90_000,
                    last_error: Some("HTTP 400 Bad Request from https://desk.example".into()),
                },
                ListedRow {
                    id: 2,
                    sink: "warehouse".into(),
                    unique_id: "1700000000.2".into(),
                    status: "start of an incoming call".into(),
                    state: RowState::Pending,
                    tries: 1,
                    next_attempt_ms: Some(1_000_000 + 42_000),
                    enqueued_ms: 1_000_000 - 5_000,
                    last_error: None,
                },
            ],
            counts: OutboxCounts { pending: 1, dead: 1, delivered: 7 },
        };
        let text = render_listing(&listing, 1_000_000);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("STATE    SINK       UNIQUE_ID     STATUS"), "{text}");
        assert!(
            lines[1].contains(
                "dead     helpdesk   1700000000.1  incoming call answered     3      -         1m30s  HTTP 400"
            ),
            "{text}"
        );
        assert!(
            lines[2].contains("pending  warehouse  1700000000.2  start of an incoming call  1      in 42s    5s     -"),
            "{text}"
        );
        assert_eq!(
            lines[3],
            "1 pending, 1 dead, 7 delivered (kept for keep_delivered); outbox /var/lib/deskhook/outbox.sqlite3"
        );
    }
}
