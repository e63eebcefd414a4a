//! The real calls bundled for deskhook's `demo` command: traces recorded on the lab PBX
//! (Asterisk 22.10.1, see `tests/fixtures/traces/README.md`) and the lab's deskhook settings.

/// One recorded call.
#[derive(Debug, Clone, Copy)]
pub struct BundledCall {
    pub name: &'static str,
    /// What happens on the call, for the demo's narration.
    pub summary: &'static str,
    /// The ARI messages, one per line (SPEC §6).
    pub trace: &'static str,
}

macro_rules! trace {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/traces/", $name, ".jsonl"))
    };
}

/// The calls in the order they were recorded (their timestamps increase from one to the next).
pub const BUNDLED_CALLS: &[BundledCall] = &[
    BundledCall {
        name: "01-in-direct-answered",
        summary: "incoming call to a DID, 101 answers, the caller hangs up",
        trace: trace!("01-in-direct-answered"),
    },
    BundledCall {
        name: "04-in-queue-answered-by-102",
        summary: "incoming call to queue support (ringall), 102 answers",
        trace: trace!("04-in-queue-answered-by-102"),
    },
    BundledCall {
        name: "05-in-queue-noanswer-callerhangup",
        summary: "incoming call to queue support, nobody answers, the caller gives up",
        trace: trace!("05-in-queue-noanswer-callerhangup"),
    },
    BundledCall {
        name: "02-in-direct-noanswer-callercancel",
        summary: "incoming call rings 101, the caller gives up",
        trace: trace!("02-in-direct-noanswer-callercancel"),
    },
    BundledCall {
        name: "06-in-ivr-callerhangup",
        summary: "incoming call to the IVR, the caller hangs up before the queue",
        trace: trace!("06-in-ivr-callerhangup"),
    },
    BundledCall {
        name: "09-internal-101-to-102-answered",
        summary: "internal call 101 -> 102 (the helpdesk hears nothing of it)",
        trace: trace!("09-internal-101-to-102-answered"),
    },
    BundledCall {
        name: "10-in-blind-transfer-101-to-102",
        summary: "incoming call answered by 101, blind transfer to 102",
        trace: trace!("10-in-blind-transfer-101-to-102"),
    },
    BundledCall {
        name: "07-out-answered",
        summary: "outgoing call from 101 through the trunk, answered",
        trace: trace!("07-out-answered"),
    },
    BundledCall {
        name: "08-out-noanswer-callercancel",
        summary: "outgoing call from 101, not answered, 101 cancels",
        trace: trace!("08-out-noanswer-callercancel"),
    },
    BundledCall {
        name: "12-in-attended-transfer-101-to-102-refer-replaces",
        summary: "incoming call answered by 101, attended transfer to 102",
        trace: trace!("12-in-attended-transfer-101-to-102-refer-replaces"),
    },
    BundledCall {
        name: "14-in-queue-localmembers-answered-by-102",
        summary: "incoming call to a FreePBX-style queue with Local members, 102 answers",
        trace: trace!("14-in-queue-localmembers-answered-by-102"),
    },
];

/// The lab PBX's deskhook settings (`[pbx]`, `[recordings]`) the calls were recorded with.
pub const LAB_CONFIG: &str = include_str!("../../../tests/fixtures/traces/lab.toml");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FakeTrace;

    #[test]
    fn every_bundled_call_parses_and_they_are_in_time_order() {
        let mut previous_end = i64::MIN;
        for call in BUNDLED_CALLS {
            let trace = FakeTrace::parse(call.trace).unwrap_or_else(|err| panic!("{}: {err}", call.name));
            let first = trace.messages.first().and_then(|m| m.at).expect("timestamped");
            let last = trace.messages.iter().filter_map(|m| m.at).max().expect("timestamped");
            assert!(first > previous_end, "{} starts before the previous call ended", call.name);
            previous_end = last;
        }
        assert!(LAB_CONFIG.contains("[pbx]"), "the lab settings are bundled");
    }
}
