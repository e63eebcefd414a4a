//! Dials, rings and answers: who a call rings (directly or through a queue), when an
//! operator or the called party answers, and the direction an operator's own call takes.

use super::*;

impl Engine {
    pub(super) fn start_incoming(
        &mut self,
        channel: &Channel,
        did: &str,
        at: EpochMillis,
        out: &mut Vec<Output>,
    ) -> bool {
        let unique_id = channel.exported_linkedid().unwrap_or(&channel.id).to_string();
        if self.calls.contains_key(&unique_id) {
            self.join(&channel.id, &unique_id);
            return false;
        }
        let mut call = Call::new(unique_id.clone(), channel.id.clone(), Direction::Incoming);
        call.from_user.clone_from(&channel.caller.number);
        call.to_user = did.to_string();
        call.client_legs.push(channel.id.clone());
        call.facts.started_at = Some(at);
        let start = call.event(Happened::Started, at);
        call.emit(Output::Event(start), out);
        self.calls.insert(unique_id.clone(), call);
        self.join(&channel.id, &unique_id);
        true
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_dial(
        &mut self,
        caller: &Channel,
        peer: &Channel,
        dialstring: &str,
        dialstatus: &str,
        at: EpochMillis,
        out: &mut Vec<Output>,
    ) {
        if self.tombstones.contains_key(&peer.id) || self.tombstones.contains_key(&caller.id) {
            return;
        }
        // Legs whose creation was missed are picked up here.
        for channel in [caller, peer] {
            if !self.legs.contains_key(&channel.id) {
                let class = self.settings.classifier.channel(&channel.name);
                if class == ChannelClass::Snoop {
                    return;
                }
                self.track(channel, class);
            }
        }
        let Some(unique_id) = self.legs.get(&caller.id).and_then(|leg| leg.call.clone()) else { return };
        // The caller's snapshot says it runs Queue() even when its ChannelDialplan event was
        // filtered out or missed during a reconnect.
        if matches!(caller.dialplan.app, DialplanApp::Queue { .. }) && dialstatus.is_empty() {
            self.on_dialplan(caller, &caller.dialplan.app, at, out);
        }
        let peer_is_queue_member = peer.dialplan.app == DialplanApp::QueueMemberLeg;
        let (caller_in_queue, caller_via_queue) = match self.legs.get(&caller.id) {
            Some(leg) => (leg.in_queue.is_some(), leg.via_queue),
            None => return,
        };
        if let Some(peer_leg) = self.legs.get_mut(&peer.id) {
            if peer_leg.call.is_none() {
                peer_leg.call = Some(unique_id.clone());
            }
            if peer_leg.call.as_deref() != Some(unique_id.as_str()) {
                return;
            }
            // A leg may already belong to the call through its exported linkedid; the first
            // dial still says who dialed it.
            if !peer_leg.dialed {
                peer_leg.dialed = true;
                peer_leg.via_queue = caller_in_queue || caller_via_queue || peer_is_queue_member;
            }
        }
        self.attach_local_partner(&peer.id);
        match dialstatus {
            "" => self.on_ring(&unique_id, &caller.id, &peer.id, dialstring, caller_in_queue, at, out),
            "ANSWER" => {
                if caller_in_queue {
                    self.complete_ring_round(&unique_id, &caller.id, out);
                }
                self.on_answer(&unique_id, &peer.id, at, out);
            }
            "RINGING" | "PROGRESS" | "PROCEEDING" => {
                if caller_in_queue {
                    self.complete_ring_round(&unique_id, &caller.id, out);
                }
            }
            _ => {
                if let Some(leg) = self.legs.get_mut(&peer.id) {
                    leg.ringing = false;
                }
                if let Some(call) = self.calls.get_mut(&unique_id) {
                    if dialstatus == "BUSY" {
                        call.ring_outcome(&peer.id, RingOutcome::Busy);
                    }
                    if call.client_legs.contains(&peer.id) {
                        call.facts.client_dial_status = Some(dialstatus.to_string());
                    }
                }
                if caller_in_queue {
                    self.complete_ring_round(&unique_id, &caller.id, out);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_ring(
        &mut self,
        unique_id: &str,
        caller_id: &str,
        peer_id: &str,
        dialstring: &str,
        caller_in_queue: bool,
        at: EpochMillis,
        out: &mut Vec<Output>,
    ) {
        let Some(peer) = self.legs.get(peer_id).cloned() else { return };
        let ringing_extensions = self.ringing_extensions(unique_id);
        let Some(call) = self.calls.get_mut(unique_id) else { return };
        if let Some(leg) = self.legs.get_mut(peer_id) {
            if leg.ringing {
                return;
            }
            leg.ringing = true;
        }
        match call.direction {
            // Whichever leg of an operator's own call dials first decides its direction
            // (the operator's channel itself, or a Local channel it dialed).
            Direction::Undecided => match &peer.class {
                ChannelClass::Trunk(_) => {
                    call.direction = Direction::Outgoing;
                    call.from_user = match self.legs.get(&call.root).map(|leg| &leg.class) {
                        Some(ChannelClass::Extension(extension)) => extension.clone(),
                        _ => String::new(),
                    };
                    call.to_user = dialed_number(dialstring, &peer.caller_number)
                        .or_else(|| self.legs.get(&call.root).map(|leg| leg.exten_at_creation.clone()))
                        .unwrap_or_default();
                    call.client_legs.push(peer_id.to_string());
                    call.facts.started_at = Some(at);
                    let start = call.event(Happened::Started, at);
                    call.emit(Output::Event(start), out);
                }
                ChannelClass::Extension(_) => call.direction = Direction::Internal,
                _ => {}
            },
            Direction::Outgoing
                if matches!(peer.class, ChannelClass::Trunk(_)) && !call.client_legs.iter().any(|id| id == peer_id) =>
            {
                call.client_legs.push(peer_id.to_string());
            }
            Direction::Incoming => {
                if caller_in_queue {
                    if let Some(pending) = call.pending_queue.as_mut() {
                        if pending.queue_channel == caller_id && !pending.round_complete {
                            let member = match &peer.class {
                                ChannelClass::Extension(extension) => Some(extension.clone()),
                                ChannelClass::Local { exten, .. } => Some(exten.clone()),
                                _ => extension_of_interface(dialstring),
                            };
                            if let Some(member) = member {
                                if !pending.ring_round.contains(&member) {
                                    pending.ring_round.push(member);
                                }
                            }
                            pending.first_member_dial_at.get_or_insert(at);
                        }
                    }
                }
                if let ChannelClass::Extension(extension) = &peer.class {
                    if ringing_extensions.is_empty() {
                        call.last_rang.clear();
                    }
                    if !call.last_rang.contains(extension) {
                        call.last_rang.push(extension.clone());
                    }
                    if !call.facts.rang.iter().any(|(leg, _)| leg == peer_id) {
                        let queue = if peer.via_queue { call.facts.last_queue.clone() } else { None };
                        let rang = Rang { extension: extension.clone(), queue, outcome: RingOutcome::NoAnswer };
                        call.facts.rang.push((peer_id.to_string(), rang));
                    }
                    if !peer.via_queue && call.rung_legs.insert(peer_id.to_string()) {
                        let ring =
                            call.event(Happened::Ringing { extensions: vec![extension.clone()], queue: None }, at);
                        call.emit(Output::Event(ring), out);
                    }
                }
            }
            _ => {}
        }
    }

    /// Extension legs of a call that are ringing right now.
    pub(super) fn ringing_extensions(&self, unique_id: &str) -> Vec<String> {
        self.legs
            .values()
            .filter(|leg| leg.ringing && leg.call.as_deref() == Some(unique_id))
            .filter_map(|leg| match &leg.class {
                ChannelClass::Extension(extension) => Some(extension.clone()),
                _ => None,
            })
            .collect()
    }

    pub(super) fn on_answer(&mut self, unique_id: &str, peer_id: &str, at: EpochMillis, out: &mut Vec<Output>) {
        let Some(leg) = self.legs.get_mut(peer_id) else { return };
        leg.ringing = false;
        leg.answered = true;
        let class = leg.class.clone();
        let Some(call) = self.calls.get_mut(unique_id) else { return };
        match (call.direction, &class) {
            (Direction::Incoming, ChannelClass::Extension(extension)) => {
                announce_answer(call, peer_id, extension, TransferKind::Blind, at, out);
            }
            (Direction::Outgoing, ChannelClass::Trunk(_)) if call.first_answer_at.is_none() => {
                call.first_answer_at = Some(at);
                let answered = call.event(Happened::Answered { operator: call.from_user.clone() }, at);
                call.emit(Output::Event(answered), out);
                let started = Effect::ConversationStarted {
                    unique_id: call.unique_id.clone(),
                    client_channel_id: peer_id.to_string(),
                };
                call.emit(Output::Effect(started), out);
            }
            _ => {}
        }
    }
}

/// Announces that `extension` (leg `leg_id`) answered an incoming call, once per leg. When
/// another operator had it already, the client was transferred (`kind`: the call rang the new
/// operator itself, or the new operator came from elsewhere).
pub(super) fn announce_answer(
    call: &mut Call,
    leg_id: &str,
    extension: &str,
    kind: TransferKind,
    at: EpochMillis,
    out: &mut Vec<Output>,
) {
    if !call.answered_legs.insert(leg_id.to_string()) {
        return;
    }
    let first = call.first_answer_at.is_none();
    call.first_answer_at.get_or_insert(at);
    match call.facts.rang.iter_mut().find(|(leg, _)| leg == leg_id) {
        Some((_, rang)) => rang.outcome = RingOutcome::Answered,
        None => call.facts.rang.push((
            leg_id.to_string(),
            Rang { extension: extension.to_string(), queue: None, outcome: RingOutcome::Answered },
        )),
    }
    if let Some(previous) = call.last_operator.replace(extension.to_string()) {
        if previous != extension {
            let transfer = Transfer { from: previous, to: extension.to_string(), kind, at };
            call.facts.transfers.push(transfer.clone());
            let transferred =
                call.event(Happened::Transferred { from: transfer.from, to: transfer.to, kind: transfer.kind }, at);
            call.emit(Output::Event(transferred), out);
        }
    }
    let answered = call.event(Happened::Answered { operator: extension.to_string() }, at);
    call.emit(Output::Event(answered), out);
    if first {
        if let Some(client) = call.client_legs.first().cloned() {
            let started = Effect::ConversationStarted { unique_id: call.unique_id.clone(), client_channel_id: client };
            call.emit(Output::Effect(started), out);
        }
    }
}

/// The number an outgoing dial sends to the trunk: `89161234567@provider` → `89161234567`.
pub(super) fn dialed_number(dialstring: &str, peer_caller_number: &str) -> Option<String> {
    let target = dialstring.rsplit('/').next().unwrap_or(dialstring);
    let number = target.split('@').next().unwrap_or(target).trim();
    let looks_like_number =
        !number.is_empty() && number.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | '*' | '#'));
    if looks_like_number {
        return Some(number.to_string());
    }
    (!peer_caller_number.is_empty()).then(|| peer_caller_number.to_string())
}
