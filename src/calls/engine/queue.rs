//! Queue visits: a caller entering `Queue()`, the ring round that names its members when
//! nothing else can, and the `call to queue` event that waits for them (with what follows it).

use super::*;

impl Engine {
    /// Lets time pass without an event (the live daemon calls this a few times a second), so
    /// that waits measured in event time, like a queue's ring round, can complete.
    /// The event time at which [`Engine::advance_to`] next has work (a queue's ring round
    /// over, a question about its members unanswered for too long); `None` while only events
    /// can change anything. The daemon sleeps until then instead of ticking.
    pub fn next_deadline(&self) -> Option<EpochMillis> {
        self.waiting_calls
            .iter()
            .filter_map(|unique_id| self.calls.get(unique_id)?.pending_queue.as_ref())
            .filter_map(|pending| {
                let answer_given_up = pending.shell_asked_at.map(|asked| asked.saturating_add(SHELL_ANSWER_TIMEOUT_MS));
                let round_over = match (pending.round_complete, pending.first_member_dial_at) {
                    (true, _) if pending.shell_asked_at.is_none() => Some(EpochMillis::MIN),
                    (false, Some(first)) => Some(first.saturating_add(self.settings.queue_ring_round_ms)),
                    _ => None,
                };
                answer_given_up.into_iter().chain(round_over).min()
            })
            .min()
    }

    pub fn advance_to(&mut self, now: EpochMillis, out: &mut Vec<Output>) {
        self.latest_at = self.latest_at.max(now);
        let waiting = std::mem::take(&mut self.waiting_calls);
        for unique_id in waiting {
            let Some(call) = self.calls.get_mut(&unique_id) else { continue };
            let Some(pending) = call.pending_queue.as_mut() else { continue };
            if let Some(asked_at) = pending.shell_asked_at {
                if now.saturating_sub(asked_at) >= SHELL_ANSWER_TIMEOUT_MS {
                    pending.shell_asked_at = None;
                }
            }
            if let Some(first) = pending.first_member_dial_at {
                if now.saturating_sub(first) >= self.settings.queue_ring_round_ms {
                    pending.round_complete = true;
                }
            }
            if pending.shell_asked_at.is_none() && pending.round_complete {
                let members = std::mem::take(&mut pending.ring_round);
                resolve_queue(call, members, out);
                self.changed_calls.insert(unique_id.clone());
                if call.ended {
                    self.calls.remove(&unique_id);
                }
            } else if !self.waiting_calls.contains(&unique_id) {
                self.waiting_calls.push(unique_id);
            }
        }
    }

    /// The answer to an [`Effect::QueueMembers`] request: member interfaces or extensions
    /// (`PJSIP/101`, `Local/102@from-queue/n`, `103`), or `None` when ARI could not say.
    pub fn provide_queue_members(
        &mut self,
        unique_id: &str,
        queue: &str,
        members: Option<Vec<String>>,
        at: EpochMillis,
        out: &mut Vec<Output>,
    ) {
        let Some(call) = self.calls.get_mut(unique_id) else { return };
        let Some(pending) = call.pending_queue.as_mut() else { return };
        if pending.name != queue || pending.shell_asked_at.is_none() {
            return;
        }
        self.changed_calls.insert(unique_id.to_string());
        match members.map(|list| extensions_of(&list)).filter(|list| !list.is_empty()) {
            Some(extensions) => resolve_queue(call, extensions, out),
            None => {
                pending.shell_asked_at = None;
                if pending.round_complete {
                    let members = std::mem::take(&mut pending.ring_round);
                    resolve_queue(call, members, out);
                }
            }
        }
        if call.ended && call.pending_queue.is_none() {
            self.calls.remove(unique_id);
        }
        self.advance_to(at, out);
    }

    pub(super) fn on_dialplan(&mut self, channel: &Channel, app: &DialplanApp, at: EpochMillis, out: &mut Vec<Output>) {
        let Some(leg) = self.legs.get_mut(&channel.id) else { return };
        if let DialplanApp::Queue { name } = app {
            let name = name.clone();
            if name.is_empty() || leg.in_queue.as_deref() == Some(name.as_str()) {
                return;
            }
            leg.in_queue = Some(name.clone());
            let Some(unique_id) = leg.call.clone() else { return };
            self.enter_queue(&unique_id, &channel.id, name, at, out);
        } else if leg.in_queue.take().is_some() {
            // Any other application means the channel left Queue(): its ring round is over.
            if let Some(unique_id) = leg.call.clone() {
                self.complete_ring_round(&unique_id, &channel.id, out);
            }
        }
    }

    pub(super) fn enter_queue(
        &mut self,
        unique_id: &str,
        queue_channel: &str,
        name: String,
        at: EpochMillis,
        out: &mut Vec<Output>,
    ) {
        let Some(call) = self.calls.get_mut(unique_id) else { return };
        if call.direction != Direction::Incoming {
            return;
        }
        call.facts.last_queue = Some(name.clone());
        if let Some(previous) = call.pending_queue.as_mut() {
            // A second queue before the first was resolved: report the first with what is known.
            let members = std::mem::take(&mut previous.ring_round);
            resolve_queue(call, members, out);
        }
        if let Some(members) = self.settings.static_queues.get(&name) {
            let event = call.event(Happened::Ringing { extensions: members.clone(), queue: Some(name) }, at);
            call.emit(Output::Event(event), out);
            return;
        }
        let ask_shell = self.settings.ask_shell_for_queue_members;
        call.pending_queue = Some(PendingQueue {
            name: name.clone(),
            entered_at: at,
            queue_channel: queue_channel.to_string(),
            ring_round: Vec::new(),
            first_member_dial_at: None,
            round_complete: false,
            shell_asked_at: ask_shell.then_some(at),
        });
        if ask_shell {
            out.push(Output::Effect(Effect::QueueMembers {
                unique_id: unique_id.to_string(),
                channel_id: queue_channel.to_string(),
                queue: name,
            }));
        }
        if !self.waiting_calls.iter().any(|waiting| waiting == unique_id) {
            self.waiting_calls.push(unique_id.to_string());
        }
    }

    /// The queue channel's first ring round is over (or the caller left the queue).
    pub(super) fn complete_ring_round(&mut self, unique_id: &str, queue_channel: &str, out: &mut Vec<Output>) {
        let Some(call) = self.calls.get_mut(unique_id) else { return };
        let Some(pending) = call.pending_queue.as_mut() else { return };
        if pending.queue_channel != queue_channel {
            return;
        }
        pending.round_complete = true;
        if pending.shell_asked_at.is_none() {
            let members = std::mem::take(&mut pending.ring_round);
            resolve_queue(call, members, out);
        }
    }
}

/// Emits the pending `call to queue` event with `members`, then everything held behind it.
pub(super) fn resolve_queue(call: &mut Call, mut members: Vec<String>, out: &mut Vec<Output>) {
    let Some(pending) = call.pending_queue.take() else { return };
    sort_extensions(&mut members);
    let event = call.event(Happened::Ringing { extensions: members, queue: Some(pending.name) }, pending.entered_at);
    out.push(Output::Event(event));
    out.append(&mut call.held);
}

/// Extensions named by member interfaces, in a stable natural order, without duplicates.
pub(super) fn extensions_of(interfaces: &[String]) -> Vec<String> {
    let mut extensions: Vec<String> =
        interfaces.iter().flat_map(|item| item.split(',')).filter_map(extension_of_interface).collect();
    sort_extensions(&mut extensions);
    extensions
}

pub(super) fn sort_extensions(extensions: &mut Vec<String>) {
    extensions.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
    extensions.dedup();
}
