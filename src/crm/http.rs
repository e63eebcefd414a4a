//! The HTTP side of every CRM call a sink makes: answers read up to a size cap, `Retry-After`
//! honoured, and errors that name the host but never a token or a webhook's path.

use std::time::Duration;

use serde_json::Value;

use crate::deliver::TryResult;

/// Answers larger than this are not an API answer.
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// How much of an answer an error quotes.
const QUOTE_CHARS: usize = 200;

/// A CRM's answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The body as JSON (`Null` when empty or not JSON: see [`Answer::text`]).
    pub json: Value,
    pub text: String,
}

impl Answer {
    /// The start of the body, on one line, for error messages.
    pub(crate) fn quote(&self) -> String {
        self.text.trim().chars().take(QUOTE_CHARS).collect::<String>().replace(['\r', '\n'], " ")
    }
}

/// Sends `request` and reads the answer; a transport failure is a [`TryResult::Transient`]
/// naming `host` only.
pub(crate) async fn exchange(request: reqwest::RequestBuilder, host: &str) -> Result<Answer, TryResult> {
    let transport = |error: reqwest::Error| TryResult::Transient {
        error: format!("{} {host}", crate::failure::Failure::of(&error).words_before_host()),
        retry_after: None,
    };
    let mut response = request.send().await.map_err(transport)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| crate::wallclock::parse_retry_after(value, crate::wallclock::now_ms()));
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(TryResult::Transient {
                error: format!("the answer of {host} is larger than 1 MiB"),
                retry_after: None,
            });
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(Answer { status, retry_after, json, text })
}

/// A client for CRM APIs: no redirects followed (a POST would lose its body), deskhook's agent.
pub(crate) fn client(connect_timeout: Duration, request_timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("deskhook/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| format!("cannot set up the HTTPS client: {error}"))
}
