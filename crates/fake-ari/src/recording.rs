//! The fake's recording side, as the lab Asterisk behaved (`probes.md` b): Snoop channels that
//! enter a Stasis application, live recordings of channels in Stasis, stored recordings with
//! their files, and the events about them (ChannelCreated/StasisStart of a snoop,
//! RecordingStarted/RecordingFinished, StasisEnd, ChannelDestroyed).
//!
//! A snoop channel ends when the channel it spies on is destroyed, and when its application's
//! websocket goes away with nobody else connected for it; its recording then finishes and the
//! stored recording appears. Stored recordings are files: they survive a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::{EpochMillis, MessageText};

/// The lab's snoop recording (`probe-b-snoop-recording.wav`, 85 804 bytes of 8 kHz WAV): what
/// stored recordings serve unless told otherwise.
pub const LAB_SNOOP_RECORDING: &[u8] = include_bytes!("../../../tests/fixtures/traces/probe-b-snoop-recording.wav");

/// Formats the fake records in (a real Asterisk knows those its format modules load).
const KNOWN_FORMATS: &[&str] = &["wav", "wav16", "gsm", "ulaw", "alaw", "sln", "g722", "g729", "wav49"];

/// What a finished recording's file contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordingAudio {
    /// These exact bytes.
    Bytes(Bytes),
    /// `size` bytes of [`generated_audio`], produced while they are sent: big files without
    /// big memory on either side.
    Generated { size: u64 },
}

impl Default for RecordingAudio {
    fn default() -> Self {
        RecordingAudio::Bytes(Bytes::from_static(LAB_SNOOP_RECORDING))
    }
}

impl RecordingAudio {
    pub fn len(&self) -> u64 {
        match self {
            RecordingAudio::Bytes(bytes) => bytes.len() as u64,
            RecordingAudio::Generated { size } => *size,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes `offset..offset + buf.len()` of the file.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) {
        match self {
            RecordingAudio::Bytes(bytes) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
                let end = start.saturating_add(buf.len()).min(bytes.len());
                buf[..end - start].copy_from_slice(&bytes[start..end]);
            }
            RecordingAudio::Generated { .. } => generated_audio(offset, buf),
        }
    }
}

const BLOCK: usize = 64 * 1024;

fn noise_block() -> &'static [u8] {
    static BLOCK_DATA: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK_DATA.get_or_init(|| {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        (0..BLOCK)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    })
}

/// Bytes `offset..offset + buf.len()` of the fake's generated audio: a 64 KiB noise block
/// repeated, each repetition starting with its own index (so a misplaced or repeated chunk
/// changes the bytes). Cheap enough to produce hundreds of MB per second.
pub fn generated_audio(offset: u64, buf: &mut [u8]) {
    let noise = noise_block();
    let mut position = offset;
    let mut filled = 0;
    while filled < buf.len() {
        let block = position / BLOCK as u64;
        let within = (position % BLOCK as u64) as usize;
        let take = (BLOCK - within).min(buf.len() - filled);
        let target = &mut buf[filled..filled + take];
        target.copy_from_slice(&noise[within..within + take]);
        let stamp = block.to_le_bytes();
        for (index, byte) in target.iter_mut().enumerate().take(stamp.len().saturating_sub(within)) {
            *byte = stamp[within + index];
        }
        filled += take;
        position += take as u64;
    }
}

struct Snoop {
    /// The channel object as `GET /channels` shows it.
    channel: Value,
    spied: String,
    app: String,
    in_stasis: bool,
}

struct Live {
    format: String,
    target: String,
    started_at: EpochMillis,
}

struct Stored {
    format: String,
    audio: RecordingAudio,
}

/// Snoops, live and stored recordings of the simulated Asterisk.
#[derive(Default)]
pub(crate) struct Recordings {
    snoops: HashMap<String, Snoop>,
    next_snoop: u64,
    live: BTreeMap<String, Live>,
    stored: BTreeMap<String, Stored>,
    audio: RecordingAudio,
}

/// A REST answer: status and ARI body (`None` = no content).
pub(crate) type Answer = (u16, Option<Value>);

fn error(status: u16, message: &str) -> Answer {
    (status, Some(json!({ "message": message })))
}

/// What a change produced: the answer plus events to send, in order.
pub(crate) struct Outcome {
    pub answer: Answer,
    pub events: Vec<Value>,
    /// Channels to add to (`Some`) or remove from (`None`) the live channel list.
    pub channels: Vec<(String, Option<Value>)>,
}

impl Outcome {
    fn answer(answer: Answer) -> Outcome {
        Outcome { answer, events: Vec::new(), channels: Vec::new() }
    }
}

/// An ARI timestamp (`2026-11-21T05:02:13.357+0000`).
pub(crate) fn ari_timestamp(at: EpochMillis) -> String {
    jiff::Timestamp::from_millisecond(at)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string()
}

fn event(kind: &str, at: EpochMillis, app: &str, fields: Value) -> Value {
    let mut message = json!({ "type": kind, "timestamp": ari_timestamp(at) });
    if let (Some(message), Some(fields)) = (message.as_object_mut(), fields.as_object()) {
        message.extend(fields.clone());
        message.insert("asterisk_id".into(), Value::String("02:fc:00:00:00:01".into()));
        message.insert("application".into(), Value::String(app.into()));
    }
    message
}

fn with_dialplan_app(channel: &Value, app_name: &str, app_data: &str) -> Value {
    let mut channel = channel.clone();
    if let Some(dialplan) = channel.get_mut("dialplan").and_then(Value::as_object_mut) {
        dialplan.insert("app_name".into(), Value::String(app_name.into()));
        dialplan.insert("app_data".into(), Value::String(app_data.into()));
    }
    channel
}

impl Recordings {
    pub(crate) fn set_audio(&mut self, audio: RecordingAudio) {
        self.audio = audio;
    }

    pub(crate) fn stored_names(&self) -> Vec<String> {
        self.stored.keys().cloned().collect()
    }

    pub(crate) fn live_names(&self) -> Vec<String> {
        self.live.keys().cloned().collect()
    }

    pub(crate) fn snoop_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.snoops.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub(crate) fn is_snoop(&self, id: &str) -> bool {
        self.snoops.contains_key(id)
    }

    /// `POST /channels/{spied}/snoop`; `spied` is the live trace channel (`None` if unknown).
    pub(crate) fn snoop(
        &mut self,
        spied: Option<&Value>,
        params: &HashMap<String, String>,
        at: EpochMillis,
    ) -> Outcome {
        let Some(spied) = spied else { return Outcome::answer(error(404, "Channel not found")) };
        let Some(app) = params.get("app").filter(|app| !app.is_empty()).cloned() else {
            return Outcome::answer(error(400, "Missing parameter app"));
        };
        for direction in ["spy", "whisper"] {
            let value = params.get(direction).map(String::as_str).unwrap_or("none");
            if !matches!(value, "none" | "both" | "out" | "in") {
                return Outcome::answer(error(400, &format!("Invalid direction specified for {direction}")));
            }
        }
        let spied_id = spied.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        let counter = self.next_snoop;
        self.next_snoop += 1;
        let id = match params.get("snoopId").filter(|id| !id.is_empty()) {
            Some(id) if self.snoops.contains_key(id) => {
                return Outcome::answer(error(409, "Channel with given unique ID already exists"))
            }
            Some(id) => id.clone(),
            None => format!("{}.{}", at / 1000, 9000 + counter),
        };
        let channel = json!({
            "id": id,
            "name": format!("Snoop/{spied_id}-{counter:08x}"),
            "state": "Up",
            "protocol_id": "",
            "caller": {"name": "", "number": ""},
            "connected": {"name": "", "number": ""},
            "accountcode": "",
            "dialplan": {"context": "default", "exten": "s", "priority": 1, "app_name": "", "app_data": ""},
            "creationtime": ari_timestamp(at),
            "language": "en"
        });
        let in_stasis = with_dialplan_app(&channel, "Stasis", &app);
        let events = vec![
            event("ChannelCreated", at, &app, json!({ "channel": channel })),
            event(
                "ChannelDialplan",
                at,
                &app,
                json!({ "dialplan_app": "Stasis", "dialplan_app_data": app, "channel": in_stasis }),
            ),
            event("ChannelVarset", at, &app, json!({ "variable": "STASISSTATUS", "value": "", "channel": in_stasis })),
            event("StasisStart", at, &app, json!({ "args": [], "channel": in_stasis })),
        ];
        self.snoops.insert(
            id.clone(),
            Snoop { channel: in_stasis.clone(), spied: spied_id, app: app.clone(), in_stasis: true },
        );
        Outcome { answer: (200, Some(channel)), events, channels: vec![(id, Some(in_stasis))] }
    }

    /// `POST /channels/{id}/record`; `exists` says whether a trace channel of that id is live.
    pub(crate) fn record(
        &mut self,
        id: &str,
        exists: bool,
        params: &HashMap<String, String>,
        at: EpochMillis,
    ) -> Outcome {
        let Some(snoop) = self.snoops.get(id) else {
            return Outcome::answer(if exists {
                error(409, "Channel not in Stasis application")
            } else {
                error(404, "Channel not found")
            });
        };
        if !snoop.in_stasis {
            return Outcome::answer(error(409, "Channel not in Stasis application"));
        }
        let app = snoop.app.clone();
        let (Some(name), Some(format)) = (params.get("name"), params.get("format")) else {
            return Outcome::answer(error(400, "Missing parameter name or format"));
        };
        if name.is_empty() || format.is_empty() {
            return Outcome::answer(error(400, "Missing parameter name or format"));
        }
        if !KNOWN_FORMATS.contains(&format.as_str()) {
            return Outcome::answer(error(422, "specified format is unknown on this system"));
        }
        let if_exists = params.get("ifExists").map(String::as_str).unwrap_or("fail");
        if !matches!(if_exists, "fail" | "overwrite" | "append") {
            return Outcome::answer(error(400, "ifExists invalid"));
        }
        if self.live.contains_key(name) {
            return Outcome::answer(error(409, &format!("Recording '{name}' already in progress")));
        }
        if self.stored.contains_key(name) {
            if if_exists == "fail" {
                return Outcome::answer(error(409, &format!("Recording '{name}' already exists")));
            }
            self.stored.remove(name);
        }
        self.live.insert(name.clone(), Live { format: format.clone(), target: id.to_string(), started_at: at });
        let recording = json!({
            "name": name,
            "format": format,
            "state": "recording",
            "target_uri": format!("channel:{id}"),
        });
        let events = vec![event("RecordingStarted", at, &app, json!({ "recording": recording }))];
        Outcome { answer: (201, Some(recording)), events, channels: Vec::new() }
    }

    /// Ends a live recording: it becomes a stored one with the current audio.
    fn finish(&mut self, name: &str, at: EpochMillis, events: &mut Vec<Value>) {
        let Some(live) = self.live.remove(name) else { return };
        let app = self.snoops.get(&live.target).map(|snoop| snoop.app.clone()).unwrap_or_default();
        let duration = (at - live.started_at).max(0) / 1000;
        let recording = json!({
            "name": name,
            "format": live.format,
            "state": "done",
            "target_uri": format!("channel:{}", live.target),
            "duration": duration,
        });
        events.push(event("RecordingFinished", at, &app, json!({ "recording": recording })));
        self.stored.insert(name.to_string(), Stored { format: live.format, audio: self.audio.clone() });
    }

    fn finish_recordings_of(&mut self, channel: &str, at: EpochMillis, events: &mut Vec<Value>) {
        let names: Vec<String> =
            self.live.iter().filter(|(_, live)| live.target == channel).map(|(name, _)| name.clone()).collect();
        for name in names {
            self.finish(&name, at, events);
        }
    }

    /// `POST /recordings/live/{name}/stop`.
    pub(crate) fn stop(&mut self, name: &str, at: EpochMillis) -> Outcome {
        if !self.live.contains_key(name) {
            return Outcome::answer(error(404, "Recording not found"));
        }
        let mut events = Vec::new();
        self.finish(name, at, &mut events);
        Outcome { answer: (204, None), events, channels: Vec::new() }
    }

    /// `GET /recordings/live/{name}`.
    pub(crate) fn live(&self, name: &str) -> Answer {
        match self.live.get(name) {
            Some(live) => (
                200,
                Some(json!({
                    "name": name,
                    "format": live.format,
                    "state": "recording",
                    "target_uri": format!("channel:{}", live.target),
                })),
            ),
            None => error(404, "Recording not found"),
        }
    }

    /// `DELETE /channels/{id}` of a snoop: it leaves Stasis at once (its recording ends) and is
    /// destroyed only with the channel it spies on, as observed.
    pub(crate) fn hang_up_snoop(&mut self, id: &str, at: EpochMillis) -> Outcome {
        let mut events = Vec::new();
        self.finish_recordings_of(id, at, &mut events);
        let Some(snoop) = self.snoops.get_mut(id) else { return Outcome::answer(error(404, "Channel not found")) };
        if snoop.in_stasis {
            snoop.in_stasis = false;
            let channel = snoop.channel.clone();
            events.push(event(
                "ChannelHangupRequest",
                at,
                &snoop.app,
                json!({ "cause": 32, "soft": true, "channel": channel }),
            ));
            events.push(event("StasisEnd", at, &snoop.app, json!({ "channel": channel })));
        }
        Outcome { answer: (204, None), events, channels: Vec::new() }
    }

    /// Ends snoops (and their recordings) matching `which`, with their ChannelDestroyed.
    fn end_snoops(&mut self, at: EpochMillis, which: impl Fn(&Snoop) -> bool) -> Outcome {
        let ids: Vec<String> = self.snoop_ids().into_iter().filter(|id| which(&self.snoops[id])).collect();
        let mut events = Vec::new();
        let mut channels = Vec::new();
        for id in ids {
            self.finish_recordings_of(&id, at, &mut events);
            let Some(snoop) = self.snoops.remove(&id) else { continue };
            if snoop.in_stasis {
                events.push(event("StasisEnd", at, &snoop.app, json!({ "channel": snoop.channel })));
            }
            let gone = with_dialplan_app(&snoop.channel, "", "");
            events.push(event(
                "ChannelDestroyed",
                at,
                &snoop.app,
                json!({ "cause": 16, "cause_txt": "Normal Clearing", "channel": gone }),
            ));
            channels.push((id, None));
        }
        Outcome { answer: (204, None), events, channels }
    }

    /// The spied channel was destroyed: its snoops go with it.
    pub(crate) fn spied_channel_gone(&mut self, spied: &str, at: EpochMillis) -> Outcome {
        self.end_snoops(at, |snoop| snoop.spied == spied)
    }

    /// Application `app` has no websocket any more: its Stasis snoops end.
    pub(crate) fn application_gone(&mut self, app: &str, at: EpochMillis) -> Outcome {
        self.end_snoops(at, |snoop| snoop.app == app && snoop.in_stasis)
    }

    /// Asterisk restarts: channels vanish without events, recordings in progress are closed
    /// as files (so they are stored), stored files stay.
    pub(crate) fn restart(&mut self, at: EpochMillis) {
        let names: Vec<String> = self.live.keys().cloned().collect();
        let mut ignored = Vec::new();
        for name in names {
            self.finish(&name, at, &mut ignored);
        }
        self.snoops.clear();
    }

    /// `GET /recordings/stored`.
    pub(crate) fn stored_list(&self) -> Value {
        Value::Array(
            self.stored.iter().map(|(name, stored)| json!({ "name": name, "format": stored.format })).collect(),
        )
    }

    /// `GET /recordings/stored/{name}`.
    pub(crate) fn stored(&self, name: &str) -> Answer {
        match self.stored.get(name) {
            Some(stored) => (200, Some(json!({ "name": name, "format": stored.format }))),
            None => error(404, "Recording not found"),
        }
    }

    /// The file of stored recording `name`: its format and audio.
    pub(crate) fn stored_file(&self, name: &str) -> Option<(String, RecordingAudio)> {
        self.stored.get(name).map(|stored| (stored.format.clone(), stored.audio.clone()))
    }

    /// `DELETE /recordings/stored/{name}`.
    pub(crate) fn delete_stored(&mut self, name: &str) -> Answer {
        match self.stored.remove(name) {
            Some(_) => (204, None),
            None => error(404, "Recording not found"),
        }
    }
}

/// An event as a websocket message.
pub(crate) fn message(event: &Value) -> MessageText {
    MessageText::from(event.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_audio_is_the_same_however_it_is_cut() {
        let mut whole = vec![0u8; 3 * BLOCK + 100];
        generated_audio(0, &mut whole);
        let mut pieces = vec![0u8; whole.len()];
        let mut offset = 0;
        for size in [5usize, 7, BLOCK, 3, BLOCK + 11].iter().cycle() {
            if offset >= pieces.len() {
                break;
            }
            let end = (offset + size).min(pieces.len());
            generated_audio(offset as u64, &mut pieces[offset..end]);
            offset = end;
        }
        assert_eq!(whole, pieces);
        assert_eq!(&whole[BLOCK..BLOCK + 8], &1u64.to_le_bytes());
        assert_eq!(whole[8..BLOCK], whole[BLOCK + 8..2 * BLOCK]);
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn a_snoop_records_until_stopped_and_the_recording_is_then_stored() {
        let mut recordings = Recordings::default();
        let spied = json!({"id": "1.45", "name": "PJSIP/provider-0000002d", "state": "Up"});
        let created = recordings.snoop(Some(&spied), &params(&[("app", "deskhook"), ("snoopId", "s1")]), 1_000);
        assert_eq!(created.answer.0, 200);
        assert_eq!(created.answer.1.as_ref().expect("channel")["name"], "Snoop/1.45-00000000");
        let kinds: Vec<&str> = created.events.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(kinds, ["ChannelCreated", "ChannelDialplan", "ChannelVarset", "StasisStart"]);

        let direct = recordings.record("1.45", true, &params(&[("name", "x"), ("format", "wav")]), 1_000);
        assert_eq!(direct.answer, error(409, "Channel not in Stasis application"));
        let started = recordings.record("s1", true, &params(&[("name", "r1"), ("format", "wav")]), 1_100);
        assert_eq!(started.answer.0, 201);
        assert_eq!(recordings.stored("r1").0, 404, "not stored while live");
        assert_eq!(recordings.stop("r1", 4_200).answer.0, 204);
        assert_eq!(recordings.stop("r1", 4_300).answer.0, 404);
        assert_eq!(recordings.stored("r1"), (200, Some(json!({"name": "r1", "format": "wav"}))));
        let ended = recordings.spied_channel_gone("1.45", 5_000);
        assert_eq!(ended.channels, vec![("s1".to_string(), None)]);
        assert!(recordings.snoop_ids().is_empty());
        assert_eq!(recordings.delete_stored("r1").0, 204);
        assert_eq!(recordings.delete_stored("r1").0, 404);
    }
}
