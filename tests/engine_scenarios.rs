//! Call shapes the captured traces do not show, built event by event from the same ARI
//! shapes: an attended transfer through a ring group's Local channel, a call pickup, and a
//! ring group that rings two phones at once. They check the engine's general rules.

mod common;

use std::collections::HashMap;

use deskhook::ari::events::{AriEvent, TimedEvent};
use deskhook::ari::model::{Bridge, CallerId, Channel, ChannelState, DialplanApp, DialplanCep};
use deskhook::calls::Engine;
use serde_json::Value;

/// Builds an ARI event stream; every event is 10 ms after the previous one unless `wait`ed.
struct Script {
    at: i64,
    channels: HashMap<String, Channel>,
    bridges: HashMap<String, Vec<String>>,
    events: Vec<TimedEvent>,
}

impl Script {
    fn new() -> Self {
        // 2026-11-21T05:00:00Z
        Self { at: 1_795_237_200_000, channels: HashMap::new(), bridges: HashMap::new(), events: Vec::new() }
    }

    fn push(&mut self, event: AriEvent) {
        self.at += 10;
        self.events.push(TimedEvent { at: self.at, event });
    }

    fn wait(&mut self, millis: i64) {
        self.at += millis;
    }

    fn channel(&self, id: &str) -> Channel {
        self.channels.get(id).cloned().unwrap_or_else(|| panic!("unknown channel {id}"))
    }

    fn created(&mut self, id: &str, name: &str, state: &str, caller: &str, exten: &str) {
        let channel = Channel {
            id: id.into(),
            name: name.into(),
            state: ChannelState::from(state.to_string()),
            caller: CallerId { name: String::new(), number: caller.into() },
            dialplan: DialplanCep {
                context: "from-pstn".into(),
                exten: exten.into(),
                priority: 1,
                ..DialplanCep::default()
            },
            ..Channel::default()
        };
        self.channels.insert(id.into(), channel.clone());
        self.push(AriEvent::ChannelCreated { channel });
    }

    fn app(&mut self, id: &str, app: &str, data: &str) {
        let mut channel = self.channel(id);
        channel.dialplan.app = DialplanApp::of(app, data);
        self.channels.insert(id.into(), channel.clone());
        let app = channel.dialplan.app.clone();
        self.push(AriEvent::ChannelDialplan { channel, app });
    }

    fn dial(&mut self, caller: &str, peer: &str, status: &str, dialstring: &str) {
        if status == "ANSWER" {
            self.up(peer);
        }
        let (caller, peer) = (self.channel(caller), self.channel(peer));
        self.push(AriEvent::Dial {
            caller: Some(caller),
            peer,
            dialstring: dialstring.into(),
            dialstatus: status.into(),
            forward: String::new(),
        });
    }

    fn up(&mut self, id: &str) {
        let mut channel = self.channel(id);
        channel.state = ChannelState::Up;
        self.channels.insert(id.into(), channel.clone());
        self.push(AriEvent::ChannelStateChange { channel });
    }

    fn enter(&mut self, bridge: &str, id: &str) {
        let members = self.bridges.entry(bridge.into()).or_default();
        members.push(id.into());
        let bridge = Bridge { id: bridge.into(), channels: members.clone(), ..Bridge::default() };
        let channel = self.channel(id);
        self.push(AriEvent::ChannelEnteredBridge { bridge, channel });
    }

    fn leave(&mut self, bridge: &str, id: &str) {
        let members = self.bridges.entry(bridge.into()).or_default();
        members.retain(|member| member != id);
        let bridge = Bridge { id: bridge.into(), channels: members.clone(), ..Bridge::default() };
        let channel = self.channel(id);
        self.push(AriEvent::ChannelLeftBridge { bridge, channel });
    }

    fn destroyed(&mut self, id: &str) {
        let channel = self.channel(id);
        self.push(AriEvent::ChannelDestroyed { channel, cause: 16, cause_txt: "Normal Clearing".into() });
    }

    /// The helpdesk events as (status, to_user, call_duration).
    fn replay(&self) -> Vec<(String, String, Option<i64>)> {
        let config = common::config("lab.toml");
        let mut engine = Engine::new(deskhook::daemon::engine_settings(&config, false).expect("settings"));
        let mut out = Vec::new();
        for event in &self.events {
            engine.handle(event, &mut out);
        }
        assert_eq!(engine.open_calls(), 0, "every call ended");
        common::render(&config, out)
            .into_iter()
            .filter(|v: &Value| v["status"] != "record")
            .map(|v| {
                let text = |field: &str| v[field].as_str().unwrap_or("").to_string();
                (text("status"), text("to_user"), v["call_duration"].as_i64())
            })
            .collect()
    }
}

fn statuses(events: &[(String, String, Option<i64>)]) -> Vec<(&str, &str)> {
    events.iter().map(|(status, to, _)| (status.as_str(), to.as_str())).collect()
}

/// The client talks to 101; 101 consults a ring group (Dial(Local/102@from-internal/n)) that
/// reaches 102, then completes an attended transfer: the Local half enters the client's bridge.
#[test]
fn an_attended_transfer_through_a_local_channel_names_the_phone_behind_it() {
    let mut s = Script::new();
    s.created("T", "PJSIP/provider-00000001", "Ring", "+79161112233", "74951234567");
    s.created("A1", "PJSIP/101-00000002", "Down", "101", "s");
    s.dial("T", "A1", "", "PJSIP/101");
    s.wait(2000);
    s.dial("T", "A1", "ANSWER", "");
    s.enter("BA", "A1");
    s.enter("BA", "T");
    s.wait(3000);
    // Consultation: 101's second line dials the ring group.
    s.created("A2", "PJSIP/101-00000003", "Ring", "101", "600");
    s.created("L1", "Local/102@from-internal-00000004;1", "Down", "", "102");
    s.created("L2", "Local/102@from-internal-00000004;2", "Ring", "", "102");
    s.dial("A2", "L1", "", "Local/102@from-internal/n");
    s.created("P2", "PJSIP/102-00000005", "Down", "102", "s");
    s.dial("L2", "P2", "", "PJSIP/102");
    s.wait(1500);
    s.dial("L2", "P2", "ANSWER", "");
    s.dial("A2", "L1", "ANSWER", "");
    s.enter("BC", "P2");
    s.enter("BC", "L2");
    s.enter("BB", "L1");
    s.enter("BB", "A2");
    s.wait(2000);
    // The transfer: the ring group's Local half replaces 101 in the client's bridge.
    s.leave("BB", "L1");
    s.leave("BA", "A1");
    s.enter("BA", "L1");
    s.leave("BB", "A2");
    s.destroyed("A1");
    s.destroyed("A2");
    s.wait(6000);
    s.destroyed("T");
    s.destroyed("L1");
    s.destroyed("L2");
    s.destroyed("P2");
    let events = s.replay();
    assert_eq!(
        statuses(&events),
        [
            ("start of an incoming call", "74951234567"),
            ("incoming call to personal number", "101"),
            ("incoming call answered", "101"),
            ("incoming call to personal number", "102"),
            ("incoming call answered", "102"),
            ("incoming call is ended", "102"),
        ]
    );
    // From 101's answer to the client's hangup: 3 + 1.5 + 2 + 6 s and the events between.
    assert_eq!(events.last().and_then(|e| e.2), Some(12));
}

/// 101 rings; 102 picks the call up from its own phone (a call of its own that Asterisk bridges
/// with the client). The helpdesk sees 102 join and answer; 102's own call produces nothing.
#[test]
fn a_pickup_is_an_answer_by_the_phone_that_picked_up() {
    let mut s = Script::new();
    s.created("T", "PJSIP/provider-00000001", "Ring", "89161112233", "74951234567");
    s.created("A1", "PJSIP/101-00000002", "Down", "101", "s");
    s.dial("T", "A1", "", "PJSIP/101");
    s.wait(3000);
    s.created("P2", "PJSIP/102-00000003", "Ring", "102", "*8");
    s.app("P2", "Pickup", "");
    s.dial("T", "A1", "CANCEL", "");
    s.destroyed("A1");
    s.up("P2");
    s.enter("BA", "P2");
    s.enter("BA", "T");
    s.wait(4000);
    s.destroyed("T");
    s.destroyed("P2");
    let events = s.replay();
    assert_eq!(
        statuses(&events),
        [
            ("start of an incoming call", "74951234567"),
            ("incoming call to personal number", "101"),
            ("incoming call to personal number", "102"),
            ("incoming call answered", "102"),
            ("incoming call is ended", "102"),
        ]
    );
    assert_eq!(events.last().and_then(|e| e.2), Some(4));
}

/// Dial(PJSIP/101&PJSIP/102): both phones ring directly; 102 answers. An unanswered ring
/// group's end names both phones.
#[test]
fn a_ring_group_rings_each_phone_and_ends_on_the_one_that_answered() {
    for answered in [true, false] {
        let mut s = Script::new();
        s.created("T", "PJSIP/provider-00000001", "Ring", "+79161112233", "74951234599");
        s.created("A1", "PJSIP/101-00000002", "Down", "101", "s");
        s.created("A2", "PJSIP/102-00000003", "Down", "102", "s");
        s.dial("T", "A1", "", "PJSIP/101");
        s.dial("T", "A2", "", "PJSIP/102");
        s.wait(2000);
        if answered {
            s.dial("T", "A2", "ANSWER", "");
            s.dial("T", "A1", "CANCEL", "");
            s.destroyed("A1");
            s.enter("BA", "A2");
            s.enter("BA", "T");
            s.wait(5000);
            s.destroyed("T");
            s.destroyed("A2");
        } else {
            s.dial("T", "A1", "NOANSWER", "");
            s.dial("T", "A2", "NOANSWER", "");
            s.destroyed("A1");
            s.destroyed("A2");
            s.destroyed("T");
        }
        let events = s.replay();
        let mut want = vec![
            ("start of an incoming call", "74951234599"),
            ("incoming call to personal number", "101"),
            ("incoming call to personal number", "102"),
        ];
        if answered {
            want.extend([("incoming call answered", "102"), ("incoming call is ended", "102")]);
        } else {
            want.push(("incoming call is ended", "101,102"));
        }
        assert_eq!(statuses(&events), want, "answered: {answered}");
    }
}
