//! Which pending row to send next: per call strictly in order (one row of a call at a time),
//! calls in parallel, earliest due first. Pure bookkeeping in memory (ids and due times only,
//! no payloads); the sender drives it and the outbox stays the source of truth.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use super::outbox::PendingRow;

#[derive(Debug, Default)]
pub(crate) struct Scheduler {
    calls: HashMap<String, CallQueue>,
    /// Heads of calls with nothing in flight, by (due, id).
    due: BTreeSet<(i64, i64, String)>,
    known: HashSet<i64>,
    /// Rows re-queued by an admin while their previous try was still settling: sent again once it has.
    readded: HashMap<i64, PendingRow>,
    in_flight: usize,
}

#[derive(Debug, Default)]
struct CallQueue {
    rows: VecDeque<Queued>,
    busy: bool,
    scheduled: Option<(i64, i64)>,
}

#[derive(Debug, Clone, Copy)]
struct Queued {
    id: i64,
    due_ms: i64,
}

impl Scheduler {
    /// Adds pending rows; ids already known are ignored, so overlapping loads are harmless.
    pub(super) fn add(&mut self, row: PendingRow) {
        if !self.known.insert(row.id) {
            return;
        }
        let queue = self.calls.entry(row.unique_id.clone()).or_default();
        let queued = Queued { id: row.id, due_ms: row.due_ms };
        match queue.rows.back() {
            Some(last) if last.id > row.id => {
                let at = queue.rows.partition_point(|q| q.id < row.id);
                queue.rows.insert(at, queued);
            }
            _ => queue.rows.push_back(queued),
        }
        Self::reschedule(&mut self.due, &row.unique_id, queue);
    }

    /// Adds a row an admin re-queued (`deskhook outbox retry`). Unlike a duplicate load, a row
    /// still in flight here was just dead-lettered by its worker: it goes again once that settles.
    pub(super) fn add_requeued(&mut self, row: PendingRow) {
        let in_flight = self.known.contains(&row.id)
            && !self.calls.get(&row.unique_id).is_some_and(|queue| queue.rows.iter().any(|q| q.id == row.id));
        if in_flight {
            self.readded.insert(row.id, row);
        } else {
            self.add(row);
        }
    }

    /// The next row to send if one is due at `now_ms`; its call is busy until `finished`/`retry_later`.
    pub(super) fn next_ready(&mut self, now_ms: i64) -> Option<(String, i64)> {
        let (due_ms, _, _) = self.due.first()?;
        if *due_ms > now_ms {
            return None;
        }
        let (_, id, unique_id) = self.due.pop_first()?;
        let queue = self.calls.get_mut(&unique_id)?;
        queue.scheduled = None;
        queue.busy = true;
        if let Some(index) = queue.rows.iter().position(|q| q.id == id) {
            queue.rows.remove(index);
        }
        self.in_flight += 1;
        Some((unique_id, id))
    }

    /// When the earliest idle call becomes due.
    pub(super) fn next_due(&self) -> Option<i64> {
        self.due.first().map(|(due, _, _)| *due)
    }

    /// Row `id` of `unique_id` is done (delivered or dead): the call's next row may go.
    pub(super) fn finished(&mut self, unique_id: &str, id: i64) {
        self.known.remove(&id);
        self.release(unique_id);
        if let Some(row) = self.readded.remove(&id) {
            self.add(row);
        }
    }

    /// Row `id` failed and is tried again at `due_ms`, still ahead of the call's later rows.
    pub(super) fn retry_later(&mut self, unique_id: &str, id: i64, due_ms: i64) {
        self.readded.remove(&id);
        if let Some(queue) = self.calls.get_mut(unique_id) {
            let at = queue.rows.partition_point(|q| q.id < id);
            queue.rows.insert(at, Queued { id, due_ms });
        }
        self.release(unique_id);
    }

    /// Makes every waiting call due at `now_ms` (the helpdesk is back; backoffs no longer apply),
    /// keeping their relative order.
    pub(super) fn expedite(&mut self, now_ms: i64) {
        let waiting: Vec<(i64, i64, String)> = self.due.iter().filter(|(due, _, _)| *due > now_ms).cloned().collect();
        for (due, id, unique_id) in waiting {
            self.due.remove(&(due, id, unique_id.clone()));
            if let Some(queue) = self.calls.get_mut(&unique_id) {
                queue.scheduled = None;
                if let Some(head) = queue.rows.front_mut() {
                    head.due_ms = head.due_ms.min(now_ms);
                }
                Self::reschedule(&mut self.due, &unique_id, queue);
            }
        }
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Rows waiting in memory (not in flight).
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.calls.values().map(|queue| queue.rows.len()).sum()
    }

    fn release(&mut self, unique_id: &str) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some(queue) = self.calls.get_mut(unique_id) else { return };
        queue.busy = false;
        if queue.rows.is_empty() {
            self.calls.remove(unique_id);
        } else {
            Self::reschedule(&mut self.due, unique_id, queue);
        }
    }

    fn reschedule(due: &mut BTreeSet<(i64, i64, String)>, unique_id: &str, queue: &mut CallQueue) {
        if queue.busy {
            return;
        }
        let Some(head) = queue.rows.front() else { return };
        let key = (head.due_ms, head.id);
        if queue.scheduled == Some(key) {
            return;
        }
        if let Some((old_due, old_id)) = queue.scheduled.take() {
            due.remove(&(old_due, old_id, unique_id.to_string()));
        }
        due.insert((key.0, key.1, unique_id.to_string()));
        queue.scheduled = Some(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, call: &str, due_ms: i64) -> PendingRow {
        PendingRow { id, unique_id: call.into(), due_ms, fresh: None }
    }

    #[test]
    fn one_row_per_call_at_a_time_and_calls_in_parallel() {
        let mut scheduler = Scheduler::default();
        for (id, call) in [(1, "a"), (2, "b"), (3, "a"), (4, "b")] {
            scheduler.add(row(id, call, 0));
        }
        assert_eq!(scheduler.next_ready(0), Some(("a".into(), 1)));
        assert_eq!(scheduler.next_ready(0), Some(("b".into(), 2)));
        assert_eq!(scheduler.next_ready(0), None, "both calls are busy");
        scheduler.finished("a", 1);
        assert_eq!(scheduler.next_ready(0), Some(("a".into(), 3)));
        assert_eq!(scheduler.in_flight(), 2);
    }

    #[test]
    fn a_retried_row_blocks_its_call_until_due_but_not_other_calls() {
        let mut scheduler = Scheduler::default();
        scheduler.add(row(1, "a", 0));
        scheduler.add(row(2, "a", 0));
        scheduler.add(row(3, "b", 0));
        assert_eq!(scheduler.next_ready(0), Some(("a".into(), 1)));
        scheduler.retry_later("a", 1, 500);
        assert_eq!(scheduler.next_ready(10), Some(("b".into(), 3)));
        assert_eq!(scheduler.next_ready(10), None);
        assert_eq!(scheduler.next_due(), Some(500));
        assert_eq!(scheduler.next_ready(500), Some(("a".into(), 1)), "the retried row stays first");
    }

    #[test]
    fn a_row_requeued_while_its_try_settles_is_sent_again_after() {
        let mut scheduler = Scheduler::default();
        scheduler.add(row(1, "a", 0));
        assert_eq!(scheduler.next_ready(0), Some(("a".into(), 1)));
        // A duplicate load of a row in flight is ignored...
        scheduler.add(row(1, "a", 0));
        // ...but the try dead-lettered it and an admin re-queued it before the worker reported back.
        scheduler.add_requeued(row(1, "a", 5));
        assert_eq!(scheduler.next_ready(10), None, "not twice at once");
        scheduler.finished("a", 1);
        assert_eq!(scheduler.next_ready(10), Some(("a".into(), 1)));
        scheduler.finished("a", 1);
        assert_eq!(scheduler.next_ready(10), None);
    }

    #[test]
    fn expediting_makes_waiting_calls_due_in_their_order() {
        let mut scheduler = Scheduler::default();
        scheduler.add(row(1, "a", 60_000));
        scheduler.add(row(2, "b", 30_000));
        scheduler.add(row(3, "c", 0));
        scheduler.expedite(100);
        assert_eq!(scheduler.next_ready(100), Some(("c".into(), 3)));
        assert_eq!(scheduler.next_ready(100), Some(("a".into(), 1)));
        assert_eq!(scheduler.next_ready(100), Some(("b".into(), 2)));
    }

    #[test]
    fn duplicate_loads_are_ignored_and_late_older_rows_go_first() {
        let mut scheduler = Scheduler::default();
        scheduler.add(row(5, "a", 0));
        scheduler.add(row(5, "a", 0));
        scheduler.add(row(2, "a", 0));
        assert_eq!(scheduler.queued(), 2);
        assert_eq!(scheduler.next_ready(0), Some(("a".into(), 2)));
        scheduler.finished("a", 2);
        assert_eq!(scheduler.next_ready(0), Some(("a".into(), 5)));
        scheduler.finished("a", 5);
        assert_eq!(scheduler.next_ready(0), None);
        assert_eq!(scheduler.queued(), 0);
    }
}
