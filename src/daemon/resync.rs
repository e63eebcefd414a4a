//! What the daemon reads over REST after every (re)connect: `/asterisk/info` (version,
//! restarts), `/endpoints` (presence, extension/trunk counts) and `/channels` + `/bridges`
//! (handed to the engine's resync). Runs on its own task and retries until it succeeds or the
//! connection it was started for is gone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::ari::model::AsteriskInfo;
use crate::ari::{AriClient, AriError, Bridge, Channel, Endpoint};
use crate::calls::{ChannelClass, Classifier};

use super::Inbound;

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

/// Reads a [`Snapshot`] for connection `generation` and queues it as [`Inbound::Resynced`].
pub(crate) fn spawn_resync(
    client: AriClient,
    generation: u64,
    current_generation: Arc<AtomicU64>,
    answers: mpsc::UnboundedSender<Inbound>,
) {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(250);
        let mut warned = false;
        while current_generation.load(Ordering::SeqCst) == generation {
            match fetch(&client).await {
                Ok(snapshot) => {
                    let _ = answers.send(Inbound::Resynced { generation, snapshot: Box::new(snapshot) });
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
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    });
}

/// Endpoint resources by class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointClasses {
    pub extensions: Vec<String>,
    pub trunks: Vec<String>,
    pub other: Vec<String>,
}

impl EndpointClasses {
    pub fn of(classifier: &Classifier, endpoints: &[Endpoint]) -> Self {
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
    pub fn summary(&self) -> String {
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
