//! The `history` resolver: the operator who last talked with this number, from deskhook's
//! own call history (`crate::history`: the local SQLite copy, read on the blocking pool, and
//! the shared PostgreSQL one when configured, each within its own time limit).

use std::time::Duration;

use super::ResolveError;
use crate::forward::answer::Answer;
use crate::history::{History, LastOperator};

#[derive(Debug)]
pub(crate) struct HistoryResolver {
    history: Option<History>,
    max_age: Duration,
}

impl HistoryResolver {
    pub(crate) fn new(history: Option<History>, max_age: Duration) -> Self {
        if history.is_none() {
            tracing::warn!("forward: the history resolver has no call history to read; it will find nobody");
        }
        Self { history, max_age }
    }

    pub(crate) async fn resolve(&self, phone: &str) -> Result<Option<Answer>, ResolveError> {
        let Some(history) = self.history.clone() else {
            return Ok(None);
        };
        let last =
            history.last_operator(phone, self.max_age).await.map_err(|error| ResolveError::Local(error.to_string()))?;
        if let Some(LastOperator { extension, unique_id, pbx: Some(pbx), .. }) = &last {
            tracing::debug!(extension, unique_id, pbx, "history: the last operator talked with the caller on {pbx}");
        }
        Ok(last.and_then(|last| Answer::new(&last.extension, "", "history")))
    }
}
