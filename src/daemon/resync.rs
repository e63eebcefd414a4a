//! What the daemon reads over REST after every (re)connect: `/asterisk/info` (version,
//! restarts), `/endpoints` (presence, extension/trunk counts) and `/channels` + `/bridges`
//! (handed to the engine's resync). Runs on its own task and retries until it succeeds or the
//! connection it was started for is gone.
//!
//! The websocket runs behind REST: a channel listed by `/channels` may have its
//! `ChannelCreated` still on the way. So once the snapshot is read, a marker user event
//! (`RESYNC_MARKER`) is posted to deskhook's own application; when it comes back over the
//! websocket, every event Asterisk queued before the snapshot has been received, and the engine
//! task can merge the two by what each knows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::ari::model::AsteriskInfo;
use crate::ari::{AriClient, AriError, AriEvent, Bridge, Channel, Endpoint};
use crate::calls::{ChannelClass, Classifier};

use super::event_filter::EventFilter;
use super::Inbound;

/// Reading the channels again after a failure: the first pause, and the longest.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(10);

/// Asterisk's state right after a connect.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub info: AsteriskInfo,
    pub endpoints: Vec<Endpoint>,
    pub channels: Vec<Channel>,
    pub bridges: Vec<Bridge>,
}

async fn fetch(client: &AriClient) -> Result<Snapshot, AriError> {
    let info = client.asterisk_info().await?;
    let endpoints = client.endpoints().await?;
    let channels = client.channels().await?;
    let bridges = client.bridges().await?;
    Ok(Snapshot { info, endpoints, channels, bridges })
}

/// The name of the user event that marks the end of a resync on the websocket; its
/// `generation` variable names the connection it was posted for.
pub(crate) const RESYNC_MARKER: &str = "deskhook-resync";

/// Whether `event` is the resync marker posted for connection `generation`.
pub(crate) fn is_resync_marker(event: &AriEvent, generation: u64) -> bool {
    match event {
        AriEvent::ChannelUserevent { eventname, userevent } if eventname == RESYNC_MARKER => {
            userevent.get("generation").and_then(|value| value.as_str()) == Some(generation.to_string().as_str())
        }
        _ => false,
    }
}

/// Whether `event` is any resync marker (a late one from an earlier connection included).
pub(crate) fn is_any_resync_marker(event: &AriEvent) -> bool {
    matches!(event, AriEvent::ChannelUserevent { eventname, .. } if eventname == RESYNC_MARKER)
}

async fn post_marker(client: &AriClient, app: &str, generation: u64) -> bool {
    let mut variables = serde_json::Map::new();
    variables.insert("generation".into(), serde_json::Value::String(generation.to_string()));
    match client.user_event(RESYNC_MARKER, app, &variables).await {
        Ok(()) => true,
        Err(error) => {
            tracing::debug!(
                "could not post the resync marker ({error}); events and channels of this connect are \
                 merged without it"
            );
            false
        }
    }
}

/// Sets `app`'s event filter, reads a [`Snapshot`] for connection `generation`, posts the
/// resync marker to `app`, and queues the snapshot as [`Inbound::Resynced`].
pub(crate) fn spawn_resync(
    client: AriClient,
    app: String,
    event_filter: EventFilter,
    generation: u64,
    current_generation: Arc<AtomicU64>,
    answers: mpsc::UnboundedSender<Inbound>,
) {
    tokio::spawn(async move {
        event_filter.apply(&client, &app).await;
        let mut retries = 0;
        let mut warned = false;
        while current_generation.load(Ordering::SeqCst) == generation {
            match fetch(&client).await {
                Ok(snapshot) => {
                    let marker_posted = post_marker(&client, &app, generation).await;
                    let _ = answers.send(Inbound::Resynced { generation, snapshot: Box::new(snapshot), marker_posted });
                    return;
                }
                Err(error) => {
                    if !warned {
                        tracing::warn!(
                            "reading Asterisk's channels after connecting failed: {error}; fix: {}; retrying",
                            error.fix()
                        );
                        warned = true;
                    }
                    retries += 1;
                    tokio::time::sleep(crate::backoff::pause(FIRST_RETRY, MAX_RETRY, retries)).await;
                }
            }
        }
    });
}

/// Endpoint resources by class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EndpointClasses {
    pub extensions: Vec<String>,
    pub trunks: Vec<String>,
    pub other: Vec<String>,
}

impl EndpointClasses {
    pub(crate) fn of(classifier: &Classifier, endpoints: &[Endpoint]) -> Self {
        let mut classes = EndpointClasses::default();
        for endpoint in endpoints {
            let resource = endpoint.resource.clone();
            match classifier.endpoint(&endpoint.resource) {
                ChannelClass::Extension(_) => classes.extensions.push(resource),
                ChannelClass::Trunk(_) => classes.trunks.push(resource),
                _ => classes.other.push(resource),
            }
        }
        classes.extensions.sort();
        classes.trunks.sort();
        classes.other.sort();
        classes
    }

    /// `3 extensions, 1 trunk (provider)`.
    pub(crate) fn summary(&self) -> String {
        let plural = |n: usize, word: &str| if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") };
        let mut text = format!(
            "{}, {} ({})",
            plural(self.extensions.len(), "extension"),
            plural(self.trunks.len(), "trunk"),
            self.trunks.join(", ")
        );
        if !self.other.is_empty() {
            text.push_str(&format!(", {} neither ({})", self.other.len(), self.other.join(", ")));
        }
        text
    }
}
