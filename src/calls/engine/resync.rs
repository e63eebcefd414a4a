//! Resync, adoption and restarts: the snapshot merged with what events said, live channels
//! deskhook never saw created adopted, and open calls checkpointed and taken back.

use super::*;

impl Engine {
    /// Appends a [`Effect::CallCheckpoint`] for every call changed since the last time: its
    /// state while it is open, `None` once it is closed or was never a call worth restoring.
    pub fn take_checkpoints(&mut self, out: &mut Vec<Output>) {
        if self.changed_calls.is_empty() {
            return;
        }
        let mut changed: Vec<String> = self.changed_calls.drain().collect();
        changed.sort();
        for unique_id in changed {
            let mut checkpoint = self.calls.get(&unique_id).and_then(|call| self.checkpoint_of(call));
            // Most events (variables, dialplan steps) change nothing a restart needs: no write.
            let stored = self.stored_checkpoints.get(&unique_id);
            let unchanged = match (&mut checkpoint, stored) {
                (Some(new), Some(old)) => same_state(new, old),
                (None, None) => true,
                _ => false,
            };
            if unchanged {
                continue;
            }
            match &checkpoint {
                Some(new) => self.stored_checkpoints.insert(unique_id.clone(), new.clone()),
                None => self.stored_checkpoints.remove(&unique_id),
            };
            out.push(Output::Effect(Effect::CallCheckpoint { unique_id, checkpoint: checkpoint.map(Box::new) }));
        }
    }

    pub(super) fn checkpoint_of(&self, call: &Call) -> Option<CallCheckpoint> {
        let direction = match call.direction {
            _ if call.ended => return None,
            Direction::Internal => return None,
            Direction::Undecided => CheckpointDirection::Undecided,
            Direction::Incoming => CheckpointDirection::Incoming,
            Direction::Outgoing => CheckpointDirection::Outgoing,
        };
        let mut legs: Vec<LegCheckpoint> = self
            .legs
            .iter()
            .filter(|(_, leg)| leg.call.as_deref() == Some(call.unique_id.as_str()))
            .map(|(id, leg)| leg.checkpoint(id))
            .collect();
        legs.sort_by(|a, b| a.id.cmp(&b.id));
        let sorted = |set: &HashSet<String>| {
            let mut list: Vec<String> = set.iter().cloned().collect();
            list.sort();
            list
        };
        Some(CallCheckpoint {
            unique_id: call.unique_id.clone(),
            direction,
            root: call.root.clone(),
            root_gone: call.root_gone,
            from_user: call.from_user.clone(),
            to_user: call.to_user.clone(),
            client_legs: call.client_legs.clone(),
            first_answer_at: call.first_answer_at,
            last_operator: call.last_operator.clone(),
            answered_legs: sorted(&call.answered_legs),
            rung_legs: sorted(&call.rung_legs),
            last_rang: call.last_rang.clone(),
            recordings: call.recordings.clone(),
            adopted: call.adopted,
            legs,
            taken_at: self.latest_at,
            pending_queue: call.pending_queue.as_ref().map(|pending| PendingQueueCheckpoint {
                name: pending.name.clone(),
                entered_at: pending.entered_at,
                queue_channel: pending.queue_channel.clone(),
                ring_round: pending.ring_round.clone(),
                first_member_dial_at: pending.first_member_dial_at,
                round_complete: pending.round_complete,
                held: call.held.clone(),
            }),
            facts: call.facts.clone(),
        })
    }

    /// Calls adopted just now (not among `known_calls`) may have MixMonitor running since before
    /// deskhook saw them: their files are asked for over ARI.
    pub(super) fn ask_for_recording_names(&mut self, known_calls: &HashSet<String>, out: &mut Vec<Output>) {
        let mut adopted: Vec<String> = self
            .calls
            .iter()
            .filter(|(unique_id, call)| call.adopted && !call.ended && !known_calls.contains(*unique_id))
            .map(|(unique_id, _)| unique_id.clone())
            .collect();
        adopted.sort();
        for unique_id in adopted {
            let mut channel_ids: Vec<String> = self
                .legs
                .iter()
                .filter(|(_, leg)| leg.call.as_deref() == Some(unique_id.as_str()))
                .map(|(id, _)| id.clone())
                .collect();
            if channel_ids.is_empty() {
                continue;
            }
            channel_ids.sort();
            if let Some(call) = self.calls.get_mut(&unique_id) {
                call.awaiting_recording_names = true;
            }
            out.push(Output::Effect(Effect::RecordingNames { unique_id, channel_ids }));
        }
    }

    /// Takes back the open calls a previous run left behind (from their checkpoints). The
    /// next [`Engine::resync`] ends those whose channels are gone and follows the others on;
    /// nothing is announced again that the previous run already announced. `last_seen` is the
    /// newest event time the previous run is known to have handled.
    pub fn restore(&mut self, checkpoints: Vec<CallCheckpoint>, last_seen: Option<EpochMillis>) {
        self.restored_until = self.restored_until.max(last_seen);
        for checkpoint in checkpoints {
            if self.calls.contains_key(&checkpoint.unique_id) {
                continue;
            }
            // It is stored: when the call ends, its row must be forgotten.
            self.stored_checkpoints.insert(checkpoint.unique_id.clone(), checkpoint.clone());
            let direction = match checkpoint.direction {
                CheckpointDirection::Undecided => Direction::Undecided,
                CheckpointDirection::Incoming => Direction::Incoming,
                CheckpointDirection::Outgoing => Direction::Outgoing,
            };
            for leg in &checkpoint.legs {
                if self.legs.contains_key(&leg.id) {
                    continue;
                }
                let class = self.settings.classifier.channel(&leg.name);
                self.remember_local_pair(&leg.id, &leg.name, &class);
                self.legs.insert(leg.id.clone(), Leg::restored(leg, class, &checkpoint.unique_id));
            }
            let mut call = Call::new(checkpoint.unique_id.clone(), checkpoint.root, direction);
            call.root_gone = checkpoint.root_gone;
            call.from_user = checkpoint.from_user;
            call.to_user = checkpoint.to_user;
            call.client_legs = checkpoint.client_legs;
            call.first_answer_at = checkpoint.first_answer_at;
            call.last_operator = checkpoint.last_operator;
            call.answered_legs = checkpoint.answered_legs.into_iter().collect();
            call.rung_legs = checkpoint.rung_legs.into_iter().collect();
            call.last_rang = checkpoint.last_rang;
            call.recordings = checkpoint.recordings;
            call.adopted = checkpoint.adopted;
            call.facts = checkpoint.facts;
            if let Some(pending) = checkpoint.pending_queue {
                // The previous run's question about the members died with it: the ring round decides.
                call.pending_queue = Some(PendingQueue {
                    name: pending.name,
                    entered_at: pending.entered_at,
                    queue_channel: pending.queue_channel,
                    ring_round: pending.ring_round,
                    first_member_dial_at: pending.first_member_dial_at,
                    round_complete: pending.round_complete,
                    shell_asked_at: None,
                });
                call.held = pending.held;
                self.waiting_calls.push(checkpoint.unique_id.clone());
            }
            self.restored_until = self.restored_until.max(Some(checkpoint.taken_at));
            self.calls.insert(checkpoint.unique_id, call);
        }
    }

    /// The answer to an [`Effect::RecordingNames`] request: the MixMonitor files found on the
    /// call's channels (none when ARI could not say). A call that ended meanwhile gets its
    /// recordings and close now.
    pub(crate) fn provide_recording_names(&mut self, unique_id: &str, names: Vec<String>, out: &mut Vec<Output>) {
        let Some(call) = self.calls.get_mut(unique_id) else { return };
        if !call.awaiting_recording_names {
            return;
        }
        call.awaiting_recording_names = false;
        for name in names {
            if !name.is_empty() && !call.recordings.contains(&name) {
                call.recordings.push(name);
            }
        }
        self.changed_calls.insert(unique_id.to_string());
        if let Some(answered) = call.closing.take() {
            let Some(mut call) = self.calls.remove(unique_id) else { return };
            self.close_call(&mut call, answered, out);
            if call.pending_queue.is_some() {
                call.ended = true;
                self.calls.insert(unique_id.to_string(), call);
            }
        }
    }

    /// After a (re)connect: `channels` and `bridges` are what ARI lists now. Calls whose
    /// channels are gone end (dated `at`); live channels the engine does not know are adopted.
    pub fn resync(&mut self, channels: &[Channel], bridges: &[Bridge], at: EpochMillis, out: &mut Vec<Output>) {
        self.resync_merged(channels, bridges, &SinceConnect::default(), at, out);
    }

    /// [`Engine::resync`] with a snapshot taken while events were already arriving: what
    /// `since_connect` says about a channel comes from those events (handled right after this),
    /// so the snapshot does not adopt channels created there, end channels destroyed there, or
    /// place in bridges channels whose bridge moves are there.
    pub(crate) fn resync_merged(
        &mut self,
        channels: &[Channel],
        bridges: &[Bridge],
        since_connect: &SinceConnect,
        at: EpochMillis,
        out: &mut Vec<Output>,
    ) {
        let merged_channels: Vec<Channel>;
        let merged_bridges: Vec<Bridge>;
        let (channels, bridges) = if since_connect.is_empty() {
            (channels, bridges)
        } else {
            merged_channels =
                channels.iter().filter(|channel| !since_connect.created.contains(&channel.id)).cloned().collect();
            merged_bridges = bridges
                .iter()
                .map(|bridge| {
                    let mut bridge = bridge.clone();
                    bridge
                        .channels
                        .retain(|id| !since_connect.created.contains(id) && !since_connect.entered_bridge.contains(id));
                    bridge
                })
                .collect();
            (merged_channels.as_slice(), merged_bridges.as_slice())
        };
        let live: HashSet<&str> = channels
            .iter()
            .map(|channel| channel.id.as_str())
            .chain(since_connect.destroyed.iter().map(String::as_str))
            .collect();
        // Channels that vanished while deskhook was not listening: destroy the callee legs
        // first, so an ended event still names who rang or answered.
        let mut gone: Vec<(bool, String)> = self
            .legs
            .iter()
            .filter(|(id, _)| !live.contains(id.as_str()))
            .map(|(id, leg)| (!leg.dialed, id.clone()))
            .collect();
        gone.sort();
        for (_, id) in gone {
            self.on_destroyed(&id, at, out);
        }

        self.bridges = bridges.iter().map(|bridge| (bridge.id.clone(), bridge.channels.clone())).collect();
        self.bridge_created =
            bridges.iter().filter_map(|bridge| Some((bridge.id.clone(), bridge.creationtime?))).collect();
        // Callers (channels that run dialplan) first: they root the calls the dialed legs join.
        let mut unknown: Vec<&Channel> = channels
            .iter()
            .filter(|channel| !self.legs.contains_key(&channel.id) && !self.tombstones.contains_key(&channel.id))
            .collect();
        unknown.sort_by_key(|channel| (channel.dialplan.app.is_dialed_leg(), channel.creationtime));
        let by_id: HashMap<&str, &Channel> = channels.iter().map(|channel| (channel.id.as_str(), channel)).collect();
        let known_calls: HashSet<String> = self.calls.keys().cloned().collect();
        let restored_until = self.restored_until.take();
        let bridged: HashSet<&str> =
            bridges.iter().flat_map(|bridge| bridge.channels.iter().map(String::as_str)).collect();
        for channel in unknown {
            if self.legs.contains_key(&channel.id) {
                continue;
            }
            let created = channel.creationtime;
            let seen_by_previous_run = restored_until.zip(created).is_some_and(|(until, created)| created <= until);
            if seen_by_previous_run && !bridged.contains(channel.id.as_str()) {
                // Not yet part of a call when the previous run stopped: followed as it was then.
                self.on_created(channel, created.unwrap_or(at), out);
            } else {
                self.adopt(channel, &by_id, at, out);
            }
        }
        if self.settings.report_mixmonitor_files {
            self.ask_for_recording_names(&known_calls, out);
        }
        // A conversation that began while disconnected: operators bridged with a client.
        let bridge_ids: Vec<String> = self.bridges.keys().cloned().collect();
        for bridge_id in bridge_ids {
            let members = self.bridges.get(&bridge_id).cloned().unwrap_or_default();
            for member in members {
                self.on_entered_bridge(&bridge_id, &member, at, out);
            }
        }
        self.changed_calls.extend(self.calls.keys().cloned());
        // Recorders lose their snoop channels with the connection: every conversation still
        // going on is announced again so recording resumes as a new part.
        let mut talking: Vec<(&String, &Call)> = self
            .calls
            .iter()
            .filter(|(_, call)| !call.ended && call.first_answer_at.is_some() && !call.client_legs.is_empty())
            .collect();
        talking.sort_by_key(|(unique_id, _)| *unique_id);
        for (unique_id, call) in talking {
            let client = call.client_legs.iter().find(|id| self.legs.contains_key(*id));
            if let Some(client) = client {
                out.push(Output::Effect(Effect::ConversationStarted {
                    unique_id: unique_id.clone(),
                    client_channel_id: client.clone(),
                }));
            }
        }
    }

    /// A live channel deskhook did not see being created (deskhook started mid-call, or it
    /// appeared during a disconnect).
    pub(super) fn adopt(
        &mut self,
        channel: &Channel,
        live: &HashMap<&str, &Channel>,
        at: EpochMillis,
        out: &mut Vec<Output>,
    ) {
        let class = self.settings.classifier.channel(&channel.name);
        if class == ChannelClass::Snoop {
            return;
        }
        self.track(channel, class.clone());
        let dialed = channel.dialplan.app.is_dialed_leg();
        if let Some(linkedid) = channel.exported_linkedid().filter(|id| *id != channel.id) {
            if self.calls.contains_key(linkedid) {
                let linkedid = linkedid.to_string();
                self.join(&channel.id, &linkedid);
                if let Some(leg) = self.legs.get_mut(&channel.id) {
                    leg.dialed = dialed;
                }
                return;
            }
        }
        let started_at = channel.creationtime.unwrap_or(at);
        match class {
            ChannelClass::Trunk(_) if !dialed => {
                // The DID is only known at creation; FROM_DID (FreePBX) keeps it when exported.
                let did = channel
                    .channelvars
                    .as_ref()
                    .and_then(|vars| vars.get("FROM_DID"))
                    .filter(|did| !did.is_empty())
                    .cloned()
                    .unwrap_or_else(|| channel.dialplan.exten.clone());
                if self.start_incoming(channel, &did, started_at, out) {
                    if let Some(call) = self.calls.get_mut(channel.exported_linkedid().unwrap_or(&channel.id)) {
                        call.adopted = true;
                    }
                }
            }
            ChannelClass::Extension(_) if !dialed => {
                // An operator's own call: outgoing if it is bridged with a dialed trunk leg.
                let peer = self.bridged_with(&channel.id).into_iter().find(|id| {
                    live.get(id.as_str()).is_some_and(|peer| {
                        peer.dialplan.app.is_dialed_leg()
                            && matches!(self.settings.classifier.channel(&peer.name), ChannelClass::Trunk(_))
                    })
                });
                if let Some(peer) = peer.as_deref().and_then(|id| live.get(id)) {
                    if !self.legs.contains_key(&peer.id) {
                        let class = self.settings.classifier.channel(&peer.name);
                        self.track(peer, class);
                    }
                }
                let unique_id = channel.exported_linkedid().unwrap_or(&channel.id).to_string();
                let mut call = Call::new(unique_id.clone(), channel.id.clone(), Direction::Undecided);
                call.adopted = true;
                if let ChannelClass::Extension(extension) = &class {
                    call.from_user.clone_from(extension);
                }
                if let Some(peer) = peer {
                    call.direction = Direction::Outgoing;
                    let peer_leg = self.legs.get(&peer);
                    call.to_user = peer_leg.map(|leg| leg.caller_number.clone()).unwrap_or_default();
                    call.client_legs.push(peer.clone());
                    call.first_answer_at = Some(self.talking_since(&channel.id).unwrap_or(started_at));
                    call.facts.started_at = Some(started_at);
                    let start = call.event(Happened::Started, started_at);
                    call.emit(Output::Event(start), out);
                    if let Some(leg) = self.legs.get_mut(&peer) {
                        leg.call = Some(unique_id.clone());
                        leg.dialed = true;
                        leg.answered = true;
                    }
                }
                self.calls.insert(unique_id.clone(), call);
                self.join(&channel.id, &unique_id);
            }
            _ => {
                // A dialed leg (or a Local half): it belongs to the call of whoever it is
                // bridged with, or of its Local partner.
                let owner = self
                    .bridged_with(&channel.id)
                    .into_iter()
                    .find_map(|id| self.legs.get(&id).and_then(|leg| leg.call.clone()));
                if let Some(unique_id) = owner {
                    self.join(&channel.id, &unique_id);
                    self.attach_local_partner(&channel.id);
                    if let Some(leg) = self.legs.get_mut(&channel.id) {
                        leg.dialed = true;
                    }
                    // Its conversation began before deskhook saw it: count it as answered
                    // (since the bridge it talks in was created) without announcing again what
                    // the helpdesk may already have.
                    let talking_since = self.talking_since(&channel.id).unwrap_or(started_at);
                    if let (Some(call), ChannelClass::Extension(extension)) = (self.calls.get_mut(&unique_id), &class) {
                        if call.adopted
                            && channel.state == ChannelState::Up
                            && call.answered_legs.insert(channel.id.clone())
                        {
                            call.first_answer_at.get_or_insert(talking_since);
                            call.last_operator = Some(extension.clone());
                        }
                    }
                }
            }
        }
    }
}

/// Two checkpoints of a call that a restart would act on alike (`taken_at` moves with every
/// event and only dates the checkpoint).
fn same_state(new: &mut CallCheckpoint, old: &CallCheckpoint) -> bool {
    let taken_at = std::mem::replace(&mut new.taken_at, old.taken_at);
    let same = new == old;
    new.taken_at = taken_at;
    same
}
