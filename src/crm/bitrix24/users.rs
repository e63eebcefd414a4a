//! Which Bitrix24 user an extension is: every active user's internal number
//! (`UF_PHONE_INNER`) from `user.get`, page by page, remembered for [`REFRESH`] and read again
//! sooner (at most every [`RETRY`]) when an extension is not found. A portal that refuses
//! `user.get` (no `user` scope) is asked no more: extensions then need the sink's `users` map.
//!
//! One directory per portal in the process ([`shared`]): the `/forward` resolver of the same
//! portal reads a user's internal number from it before asking `user.get` itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::{CallError, Portal};

/// How long the list is trusted.
pub(crate) const REFRESH: Duration = Duration::from_secs(600);
/// The soonest the list is read again for an unknown extension.
const RETRY: Duration = Duration::from_secs(60);
/// `user.get` pages have 50 users; a portal with more than this many pages is cut short.
const MAX_PAGES: usize = 200;

#[derive(Default)]
struct Known {
    by_extension: HashMap<String, u64>,
    fetched: Option<Instant>,
    refused: bool,
}

/// The portal's users by internal number.
#[derive(Default)]
pub(crate) struct Directory {
    known: tokio::sync::Mutex<Known>,
}

/// The directory of the portal at `host` (`scheme://host[:port]`), shared in the process.
pub(crate) fn shared(host: &str) -> Arc<Directory> {
    static DIRECTORIES: OnceLock<Mutex<HashMap<String, Arc<Directory>>>> = OnceLock::new();
    let mut directories =
        DIRECTORIES.get_or_init(Mutex::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    directories.entry(host.to_ascii_lowercase()).or_default().clone()
}

impl Directory {
    /// The internal number of user `user_id`, if the list is fresh and not being read right
    /// now (a lookup never waits behind the sink's `user.get`).
    pub(crate) fn inner_phone_of(&self, user_id: &str) -> Option<String> {
        let known = self.known.try_lock().ok()?;
        if known.fetched.is_none_or(|fetched| fetched.elapsed() >= REFRESH) {
            return None;
        }
        let id: u64 = user_id.parse().ok()?;
        known.by_extension.iter().find(|(_, known_id)| **known_id == id).map(|(extension, _)| extension.clone())
    }

    /// The user id of `extension`; `None` when no user has it (or the portal does not say).
    /// `Err` only when the list could never be read for a reason worth retrying.
    pub(crate) async fn user_of(&self, portal: &Portal, extension: &str) -> Result<Option<u64>, CallError> {
        let mut known = self.known.lock().await;
        if known.refused {
            return Ok(None);
        }
        let age = known.fetched.map(|fetched| fetched.elapsed());
        let found = known.by_extension.get(extension).copied();
        let stale = match (age, found) {
            (None, _) => true,
            (Some(age), Some(_)) => age >= REFRESH,
            (Some(age), None) => age >= RETRY,
        };
        if stale {
            match read_all(portal).await {
                Ok(users) => {
                    known.by_extension = users;
                    known.fetched = Some(Instant::now());
                }
                Err(CallError::Refused { error, .. }) => {
                    tracing::warn!(
                        crm = %portal.host(),
                        "Bitrix24 refused user.get ({error}); extensions not in the sink's users map are sent as \
                         USER_PHONE_INNER and get no call card"
                    );
                    known.refused = true;
                    return Ok(None);
                }
                // A stale list beats none while the portal is busy.
                Err(error) if known.fetched.is_none() => return Err(error),
                Err(_) => {}
            }
        }
        Ok(known.by_extension.get(extension).copied())
    }
}

async fn read_all(portal: &Portal) -> Result<HashMap<String, u64>, CallError> {
    let mut users = HashMap::new();
    let mut start = 0u64;
    for _ in 0..MAX_PAGES {
        let (page, next) = portal.call_paged("user.get", &json!({"FILTER": {"ACTIVE": true}, "start": start})).await?;
        for user in page.as_array().map(Vec::as_slice).unwrap_or_default() {
            let id = match user.get("ID") {
                Some(Value::String(id)) => id.parse::<u64>().ok(),
                Some(Value::Number(id)) => id.as_u64(),
                _ => None,
            };
            let inner = match user.get("UF_PHONE_INNER") {
                Some(Value::String(inner)) => inner.trim().to_string(),
                Some(Value::Number(inner)) => inner.to_string(),
                _ => String::new(),
            };
            if let (Some(id), false) = (id, inner.is_empty()) {
                users.insert(inner, id);
            }
        }
        match next {
            Some(next) if next > start => start = next,
            _ => break,
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_directory_per_portal_answers_lookups_only_while_fresh() {
        let directory = shared("https://users-test.example");
        assert!(Arc::ptr_eq(&directory, &shared("HTTPS://users-test.example")));
        assert_eq!(directory.inner_phone_of("11"), None, "nothing read yet");
        {
            let mut known = directory.known.lock().await;
            known.by_extension = HashMap::from([("101".to_string(), 11)]);
            known.fetched = Some(Instant::now());
        }
        assert_eq!(directory.inner_phone_of("11").as_deref(), Some("101"));
        assert_eq!(directory.inner_phone_of("12"), None);
        let reading = directory.known.lock().await;
        assert_eq!(directory.inner_phone_of("11"), None, "a lookup never waits behind a refresh");
        drop(reading);
        directory.known.lock().await.fetched = Instant::now().checked_sub(REFRESH);
        assert_eq!(directory.inner_phone_of("11"), None, "a stale list is not trusted");
    }
}
