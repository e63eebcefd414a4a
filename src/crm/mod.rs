//! Talking to CRMs, for the `/forward` resolvers and the CRM sinks alike: each account's rate
//! limit ([`limiter`]), and the sinks' senders: [`bitrix24`] and [`amocrm`], which keep what
//! they must remember between a call's requests (a CRM's id of the call, the steps it
//! confirmed, OAuth tokens) in the [`journal`].

pub(crate) mod amocrm;
pub(crate) mod bitrix24;
pub(crate) mod http;
pub(crate) mod journal;
pub(crate) mod limiter;
pub(crate) mod probe;

use std::path::Path;
use std::sync::Arc;

use crate::config::{Destination, SinkConfig};
use crate::deliver::Protocol;

/// The sender of a CRM sink (`None` for the kinds that are plain HTTP POSTs).
pub(crate) fn protocol(sink: &SinkConfig, storage_dir: &Path) -> Result<Option<Arc<dyn Protocol>>, String> {
    let http = || http::client(sink.delivery.connect_timeout.get(), sink.delivery.request_timeout.get());
    let journal = || journal::CrmJournal::open(storage_dir).map_err(|error| error.to_string());
    match &sink.destination {
        Destination::Bitrix24(config) => {
            let journal = journal()?;
            let portal = bitrix24::Portal::new(&sink.name, config, http()?, journal.clone());
            let default_user = config.default_user.clone().or_else(|| config.auth.webhook_user());
            Ok(Some(bitrix24::delivery::Bitrix24Delivery::new(&sink.name, portal, journal, default_user)))
        }
        Destination::Amocrm(config) => Ok(Some(amocrm::AmocrmDelivery::new(&sink.name, config, http()?, journal()?))),
        Destination::Omnidesk | Destination::Json { .. } | Destination::Zammad { .. } => Ok(None),
    }
}
