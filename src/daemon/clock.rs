//! The daemon's idea of "now" in Asterisk's time: the newest event timestamp plus the wall time
//! since it arrived. The engine is driven by event time only; this lets waits (a queue's ring
//! round) and resyncs be dated consistently with the events, even when a trace is replayed
//! faster than it was recorded (the estimate then never runs ahead of the replayed timeline).

use std::time::Instant;

use crate::ari::events::EpochMillis;

#[derive(Debug, Default)]
pub(crate) struct EventClock {
    newest: Option<(EpochMillis, Instant)>,
}

impl EventClock {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Takes an event's timestamp into account (ones that step back a little are ignored).
    pub(crate) fn observe(&mut self, at: EpochMillis) {
        self.observe_at(at, Instant::now());
    }

    fn observe_at(&mut self, at: EpochMillis, now: Instant) {
        match self.newest {
            Some((newest, _)) if at < newest => {}
            _ => self.newest = Some((at, now)),
        }
    }

    /// True once an event has been seen.
    pub(crate) fn is_running(&self) -> bool {
        self.newest.is_some()
    }

    /// Event time now; before the first event, the wall clock.
    pub(crate) fn now(&self) -> EpochMillis {
        self.now_at(Instant::now())
    }

    /// Event time at a wall-clock instant (e.g. when the connection was last alive).
    pub(crate) fn now_at(&self, now: Instant) -> EpochMillis {
        match self.newest {
            Some((newest, seen)) => newest + now.saturating_duration_since(seen).as_millis() as EpochMillis,
            None => jiff::Timestamp::now().as_millisecond(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn event_time_advances_with_wall_time_from_the_newest_event() {
        let start = Instant::now();
        let mut clock = EventClock::new();
        assert!(!clock.is_running());
        clock.observe_at(1_000_000, start);
        assert_eq!(clock.now_at(start + Duration::from_millis(250)), 1_000_250);
        // A timestamp one millisecond older does not move the clock back.
        clock.observe_at(999_999, start + Duration::from_millis(300));
        assert_eq!(clock.now_at(start + Duration::from_millis(300)), 1_000_300);
        clock.observe_at(2_000_000, start + Duration::from_millis(400));
        assert_eq!(clock.now_at(start + Duration::from_millis(400)), 2_000_000);
        assert!(clock.is_running());
    }
}
