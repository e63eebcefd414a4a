//! How a failed network request is told to an admin: what kind of failure it was, and its
//! causes without the outermost message (reqwest's names the full URL, and a webhook's or a
//! CRM's URL may carry a token). One place, so every part of deskhook words it alike.

/// The kind of a failed HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Timeout,
    Connect,
    /// The answer started and broke off, or could not be read.
    BrokenAnswer,
    Redirect,
    Other,
}

impl Failure {
    pub(crate) fn of(error: &reqwest::Error) -> Failure {
        // A connection that never came up is told as such, even when it timed out.
        if error.is_connect() {
            Failure::Connect
        } else if error.is_timeout() {
            Failure::Timeout
        } else if error.is_body() || error.is_decode() {
            Failure::BrokenAnswer
        } else if error.is_redirect() {
            Failure::Redirect
        } else {
            Failure::Other
        }
    }

    /// The failure in a few words, to be followed by the host: "cannot connect to" …
    pub(crate) fn words_before_host(self) -> &'static str {
        match self {
            Failure::Timeout => "no answer in time from",
            Failure::Connect => "cannot connect to",
            Failure::BrokenAnswer => "the answer broke off from",
            Failure::Redirect => "too many redirects from",
            Failure::Other => "the connection failed to",
        }
    }

    /// The failure in a few words on its own: "timed out", "cannot connect" …
    pub(crate) fn words(self) -> &'static str {
        match self {
            Failure::Timeout => "timed out",
            Failure::Connect => "cannot connect",
            Failure::BrokenAnswer => "the answer broke off",
            Failure::Redirect => "too many redirects",
            Failure::Other => "the connection failed",
        }
    }
}

/// The error's causes, outermost first, without the error's own message and without repeats.
pub(crate) fn causes(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut causes: Vec<String> = Vec::new();
    let mut source = error.source();
    while let Some(current) = source {
        let text = current.to_string();
        if !causes.iter().any(|known| known.contains(&text)) {
            causes.push(text);
        }
        source = current.source();
    }
    causes
}

/// The causes as `outer: inner: innermost`; the error's own message when it has none (for
/// errors whose message carries no URL).
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let causes = causes(error);
    if causes.is_empty() {
        error.to_string()
    } else {
        causes.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("request to https://example.org/hook/SECRET failed")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("connection reset")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn the_chain_leaves_out_the_outer_message_and_repeats() {
        let error = Outer(Middle(std::io::Error::other("connection reset")));
        assert_eq!(causes(&error), vec!["connection reset".to_string()]);
        assert_eq!(error_chain(&error), "connection reset");
        assert!(!error_chain(&error).contains("SECRET"));
        let bare = std::io::Error::other("disk full");
        assert_eq!(error_chain(&bare), "disk full");
    }

    #[tokio::test]
    async fn a_refused_connection_is_told_as_such() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let error = reqwest::Client::new().get(format!("http://{address}/x")).send().await.expect_err("refused");
        assert_eq!(Failure::of(&error), Failure::Connect);
        assert_eq!(Failure::of(&error).words_before_host(), "cannot connect to");
    }
}
