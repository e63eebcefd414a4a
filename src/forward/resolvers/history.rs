//! The `history` resolver: the operator who last talked with this number, from deskhook's
//! own call history (`crate::history`). SQLite is read on the blocking pool, never on the
//! async workers that serve `/forward`.

use std::time::Duration;

use super::ResolveError;
use crate::forward::answer::Answer;
use crate::history::History;

#[derive(Debug)]
pub struct HistoryResolver {
    history: Option<History>,
    max_age: Duration,
}

impl HistoryResolver {
    pub fn new(history: Option<History>, max_age: Duration) -> Self {
        if history.is_none() {
            tracing::warn!("forward: the history resolver has no call history to read; it will find nobody");
        }
        Self { history, max_age }
    }

    pub async fn resolve(&self, phone: &str) -> Result<Option<Answer>, ResolveError> {
        let Some(history) = self.history.clone() else {
            return Ok(None);
        };
        let phone = phone.to_string();
        let max_age = self.max_age;
        let last = tokio::task::spawn_blocking(move || history.last_operator(&phone, max_age))
            .await
            .map_err(|error| ResolveError::Local(format!("history lookup stopped: {error}")))?
            .map_err(|error| ResolveError::Local(error.to_string()))?;
        Ok(last.and_then(|last| Answer::new(&last.extension, "", "history")))
    }
}
