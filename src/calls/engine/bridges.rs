//! Bridges, transfers and Local pairs: a Local half follows its partner into a call, and an
//! operator who shares a bridge with the client (attended transfer, pickup) joins the call.

use super::*;

impl Engine {
    /// The other half of a Local pair follows its partner into the call.
    pub(super) fn attach_local_partner(&mut self, channel_id: &str) {
        let Some(partner) = self.local_partner(channel_id) else { return };
        let (call, via_queue) = match (self.legs.get(channel_id), self.legs.get(&partner)) {
            (Some(me), Some(other)) if me.call.is_some() && other.call.is_none() => (me.call.clone(), me.via_queue),
            (Some(me), Some(other)) if me.call.is_none() && other.call.is_some() => {
                let (call, via_queue) = (other.call.clone(), other.via_queue);
                if let Some(me) = self.legs.get_mut(channel_id) {
                    me.call = call;
                    me.via_queue = via_queue;
                }
                return;
            }
            _ => return,
        };
        if let Some(other) = self.legs.get_mut(&partner) {
            other.call = call;
            other.via_queue = via_queue;
        }
    }

    /// An operator who enters a bridge with an incoming call's client talks to that client:
    /// after an attended transfer or a pickup this is the only sign of it.
    pub(super) fn on_entered_bridge(
        &mut self,
        bridge_id: &str,
        channel_id: &str,
        at: EpochMillis,
        out: &mut Vec<Output>,
    ) {
        let Some(members) = self.bridges.get(bridge_id) else { return };
        let client_call = members.iter().find_map(|member| {
            let unique_id = self.legs.get(member)?.call.as_ref()?;
            let call = self.calls.get(unique_id)?;
            (call.direction == Direction::Incoming && call.client_legs.iter().any(|id| id == member))
                .then(|| unique_id.clone())
        });
        let Some(unique_id) = client_call else { return };
        // Whoever entered last, everyone in a bridge with the client talks to the client.
        let members: Vec<String> = members.iter().filter(|member| *member != channel_id).cloned().collect();
        self.joins_client(&unique_id, channel_id, at, out);
        for member in members {
            self.joins_client(&unique_id, &member, at, out);
        }
    }

    /// Channel `channel_id` shares a bridge with the client of incoming call `unique_id`.
    pub(super) fn joins_client(&mut self, unique_id: &str, channel_id: &str, at: EpochMillis, out: &mut Vec<Output>) {
        let unique_id = unique_id.to_string();
        let Some(leg) = self.legs.get(channel_id) else { return };
        match leg.class.clone() {
            ChannelClass::Extension(extension) => self.operator_joins(&unique_id, channel_id, &extension, at, out),
            ChannelClass::Local { .. } if leg.call.as_deref() != Some(unique_id.as_str()) => {
                // A Local half arriving from another call: an attended transfer to a ring group
                // or a FreePBX queue (Local members). The pair joins the client's call and the
                // phone talking behind it is the new operator.
                let Some(partner) = self.local_partner(channel_id) else {
                    self.join(channel_id, &unique_id);
                    return;
                };
                for half in [channel_id.to_string(), partner.clone()] {
                    if let Some(leg) = self.legs.get_mut(&half) {
                        leg.call = Some(unique_id.clone());
                        leg.dialed = true;
                    }
                }
                let phones: Vec<(String, String)> = self
                    .bridged_with(&partner)
                    .into_iter()
                    .filter_map(|id| match self.legs.get(&id).map(|leg| &leg.class) {
                        Some(ChannelClass::Extension(extension)) => Some((id, extension.clone())),
                        _ => None,
                    })
                    .collect();
                for (phone, extension) in phones {
                    self.operator_joins(&unique_id, &phone, &extension, at, out);
                }
            }
            _ => {}
        }
    }

    /// `extension` (leg `channel_id`) now talks to the client of incoming call `unique_id`.
    /// A phone that came from elsewhere (a transfer, a pickup) was not rung by this call: it
    /// gets its "personal number" event first.
    pub(super) fn operator_joins(
        &mut self,
        unique_id: &str,
        channel_id: &str,
        extension: &str,
        at: EpochMillis,
        out: &mut Vec<Output>,
    ) {
        let Some(leg) = self.legs.get(channel_id) else { return };
        let from_elsewhere = leg.call.as_deref() != Some(unique_id) || !leg.dialed;
        let Some(call) = self.calls.get_mut(unique_id) else { return };
        if call.answered_legs.contains(channel_id) || call.root == channel_id {
            return;
        }
        if from_elsewhere && call.rung_legs.insert(channel_id.to_string()) {
            let ring = call.event(Happened::Ringing { extensions: vec![extension.to_string()], queue: None }, at);
            call.emit(Output::Event(ring), out);
        }
        let kind = if from_elsewhere { TransferKind::Attended } else { TransferKind::Blind };
        announce_answer(call, channel_id, extension, kind, at, out);
        let previous = self.legs.get_mut(channel_id).and_then(|leg| {
            leg.dialed = true;
            leg.answered = true;
            leg.call.replace(unique_id.to_string())
        });
        // A phone that picked the call up leaves its own (silent) call behind.
        if let Some(previous) = previous {
            let abandoned = self.calls.get(&previous).is_some_and(|call| {
                call.root == channel_id && matches!(call.direction, Direction::Undecided | Direction::Internal)
            });
            if abandoned {
                self.calls.remove(&previous);
                self.changed_calls.insert(previous);
            }
        }
    }

    /// The other half of a Local pair, if it is known.
    pub(super) fn local_partner(&self, channel_id: &str) -> Option<String> {
        let leg = self.legs.get(channel_id)?;
        let (base, _) = leg.name.rsplit_once(';')?;
        let (one, two) = self.local_pairs.get(base)?;
        let partner = if one.as_deref() == Some(channel_id) { two.clone() } else { one.clone() };
        partner.filter(|id| self.legs.contains_key(id))
    }

    /// When the oldest bridge `channel_id` is in was created: the start of a conversation
    /// found on a resync.
    pub(super) fn talking_since(&self, channel_id: &str) -> Option<EpochMillis> {
        self.bridges
            .iter()
            .filter(|(_, members)| members.iter().any(|id| id == channel_id))
            .filter_map(|(bridge_id, _)| self.bridge_created.get(bridge_id).copied())
            .min()
    }

    pub(super) fn bridged_with(&self, channel_id: &str) -> Vec<String> {
        self.bridges
            .values()
            .filter(|members| members.iter().any(|id| id == channel_id))
            .flat_map(|members| members.iter().filter(|id| *id != channel_id).cloned())
            .collect()
    }
}
