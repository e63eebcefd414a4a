//! What the events received since a (re)connect already say about channels, so a REST snapshot
//! taken meanwhile is merged by what each knows rather than by arrival order.

use std::collections::HashSet;

use crate::ari::AriEvent;

/// Channels whose story since the connect is told by held events: the engine learns them from
/// those events, and the snapshot neither adopts nor ends them on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SinceConnect {
    /// Channels whose `ChannelCreated` was received: known from their events, never adopted.
    pub created: HashSet<String>,
    /// Channels whose `ChannelDestroyed` was received: they end at that event's time, not the resync's.
    pub destroyed: HashSet<String>,
    /// Channels that entered a bridge: that event places them (with its time); a channel that
    /// only left one keeps the snapshot's membership, the only record of when it had entered.
    pub entered_bridge: HashSet<String>,
}

impl SinceConnect {
    pub(crate) fn observe(&mut self, event: &AriEvent) {
        match event {
            AriEvent::ChannelCreated { channel } => {
                self.created.insert(channel.id.clone());
            }
            AriEvent::ChannelDestroyed { channel, .. } => {
                self.destroyed.insert(channel.id.clone());
            }
            AriEvent::ChannelEnteredBridge { channel, .. } => {
                self.entered_bridge.insert(channel.id.clone());
            }
            _ => {}
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.created.is_empty() && self.destroyed.is_empty() && self.entered_bridge.is_empty()
    }
}
