//! A lean HTTP/1.1 client for the webhook sinks' small POSTs (events, call summaries): the
//! request is written and its answer read by the task that sends it, on a connection kept
//! open between requests (plain TCP or rustls). A general client's layers (pool task, redirect
//! and proxy handling, a URL parsed again for every answer) cost about a tenth of deskhook's
//! CPU per call; this path costs a write, a read and a parse. Recording uploads, and every
//! request while a proxy is configured in the environment, still go through `reqwest`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

/// The most of an answer read to keep its connection: a longer body closes it instead.
const DRAIN_LIMIT: usize = 64 * 1024;
/// A status line and headers longer than this are not HTTP deskhook can use.
const HEAD_LIMIT: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;
/// Idle connections kept for reuse, and for how long (servers close theirs after 5–75 s; one
/// closed meanwhile is noticed before reuse, or its request is sent again on a new one).
const IDLE_KEPT: usize = 16;
const IDLE_FOR: Duration = Duration::from_secs(60);
/// What a read asks the socket for.
const READ_CHUNK: usize = 8 * 1024;

/// The proxy variables `reqwest` follows: while one is set, requests take that path.
const PROXY_VARIABLES: &[&str] = &["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];

/// Whether the environment names a proxy (then the sinks keep to `reqwest`, which uses it).
pub(crate) fn proxy_configured() -> bool {
    PROXY_VARIABLES.iter().any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// The answer to a POST: its status, `Retry-After`, and the start of its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    /// At most [`DRAIN_LIMIT`] bytes of the body.
    pub body: Vec<u8>,
}

/// Why a POST got no answer. The texts name no host or path: the caller adds the host.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Http1Error {
    #[error("{0}")]
    Connect(String),
    #[error("no complete answer in time")]
    Timeout,
    #[error("{0}")]
    Exchange(String),
}

impl Http1Error {
    fn exchange(what: &str, error: &std::io::Error) -> Http1Error {
        Http1Error::Exchange(format!("{what}: {error}"))
    }
}

/// Where the POSTs go, parsed once.
struct Target {
    /// Host name or address to connect to (IPv6 without brackets).
    host: String,
    port: u16,
    /// TLS for `https://`: the config and the name the certificate must carry.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    /// `POST <path> HTTP/1.1`, `Host` and `User-Agent`, ready to be written.
    head: String,
}

/// A client for one URL. Shared by the sink's worker tasks; each request takes a connection of
/// its own (an idle one when there is one).
pub(crate) struct Http1Client {
    target: Target,
    idle: Mutex<Vec<Idle>>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl std::fmt::Debug for Http1Client {
    // The path may carry the webhook's secret token: only the host is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Client")
            .field("host", &self.target.host)
            .field("port", &self.target.port)
            .field("tls", &self.target.tls.is_some())
            .finish_non_exhaustive()
    }
}

struct Idle {
    stream: Stream,
    since: Instant,
}

/// Where the certificates of `https://` servers must chain to.
pub(crate) enum Roots {
    /// The system's trust store (what `reqwest` trusts).
    System,
    #[cfg(test)]
    Custom(rustls::RootCertStore),
}

impl Http1Client {
    /// A client for `url`, or `None` when this path cannot serve it (not http/https, user
    /// info in the URL, no trusted certificates for https): the caller keeps to `reqwest`.
    pub(crate) fn new(
        url: &url::Url,
        connect_timeout: Duration,
        request_timeout: Duration,
        roots: Roots,
    ) -> Option<Http1Client> {
        if !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let host = match url.host()? {
            url::Host::Domain(name) => name.to_string(),
            url::Host::Ipv4(address) => address.to_string(),
            url::Host::Ipv6(address) => address.to_string(),
        };
        let port = url.port_or_known_default()?;
        let tls = match url.scheme() {
            "http" => None,
            "https" => Some((connector(roots)?, ServerName::try_from(host.clone()).ok()?)),
            _ => return None,
        };
        // `host_str` keeps IPv6 brackets; `port()` is `None` for the scheme's default.
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str()?),
            None => url.host_str()?.to_string(),
        };
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: deskhook/{}\r\n",
            env!("CARGO_PKG_VERSION")
        );
        Some(Http1Client {
            target: Target { host, port, tls, head },
            idle: Mutex::new(Vec::new()),
            connect_timeout,
            request_timeout,
        })
    }

    /// POSTs `body` with `headers` (name, value) besides `Host`, `User-Agent` and
    /// `Content-Length`, and reads the answer, all within the request timeout.
    pub(crate) async fn post(&self, headers: &[(&str, &str)], body: &[u8]) -> Result<Answer, Http1Error> {
        let mut request = Vec::with_capacity(self.target.head.len() + 160 + body.len());
        request.extend_from_slice(self.target.head.as_bytes());
        for (name, value) in headers {
            request.extend_from_slice(name.as_bytes());
            request.extend_from_slice(b": ");
            request.extend_from_slice(value.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        request.extend_from_slice(body);
        tokio::time::timeout(self.request_timeout, self.exchange(&request)).await.unwrap_or(Err(Http1Error::Timeout))
    }

    async fn exchange(&self, request: &[u8]) -> Result<Answer, Http1Error> {
        if let Some(mut stream) = self.take_idle() {
            match send_and_read(&mut stream, request).await {
                Ok((answer, reusable)) => {
                    self.keep(stream, reusable);
                    return Ok(answer);
                }
                // The server closed the kept connection as the request went out: nothing of
                // it was answered, so it goes again on a new connection.
                Err(Failure::Unanswered(_)) => {}
                Err(Failure::Broken(error)) => return Err(error),
            }
        }
        let mut stream = self.connect().await?;
        match send_and_read(&mut stream, request).await {
            Ok((answer, reusable)) => {
                self.keep(stream, reusable);
                Ok(answer)
            }
            Err(Failure::Unanswered(error) | Failure::Broken(error)) => Err(error),
        }
    }

    /// The most recently used idle connection still open, if any.
    fn take_idle(&self) -> Option<Stream> {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Expired ones go whatever their place, so a quiet spell leaves no sockets behind.
        idle.retain(|kept| kept.since.elapsed() < IDLE_FOR);
        while let Some(candidate) = idle.pop() {
            if candidate.stream.quiet() {
                return Some(candidate.stream);
            }
        }
        None
    }

    fn keep(&self, stream: Stream, reusable: bool) {
        if !reusable {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < IDLE_KEPT {
            idle.push(Idle { stream, since: Instant::now() });
        }
    }

    async fn connect(&self) -> Result<Stream, Http1Error> {
        let connecting = async {
            let addresses = tokio::net::lookup_host((self.target.host.as_str(), self.target.port))
                .await
                .map_err(|error| Http1Error::Connect(format!("cannot resolve the name: {error}")))?;
            let tcp = connect_tcp(addresses.collect()).await?;
            // Requests are written whole; waiting for more to coalesce would only delay them.
            let _ = tcp.set_nodelay(true);
            match &self.target.tls {
                None => Ok(Stream::Plain(tcp)),
                Some((connector, name)) => connector
                    .connect(name.clone(), tcp)
                    .await
                    .map(|tls| Stream::Tls(Box::new(tls)))
                    .map_err(|error| Http1Error::Connect(format!("TLS handshake failed: {error}"))),
            }
        };
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(result) => result,
            Err(_) => Err(Http1Error::Connect(format!(
                "no connection within helpdesk.connect_timeout = {}",
                super::policy::humanize(self.connect_timeout)
            ))),
        }
    }
}

/// How long the addresses of the name's first family get before those of the other family are
/// tried alongside (RFC 8305's "happy eyeballs": an IPv6 route that drops packets must not
/// cost the whole connect timeout when IPv4 works).
const OTHER_FAMILY_AFTER: Duration = Duration::from_millis(300);

/// A TCP connection to the first of `addresses` that takes one: those of the first address's
/// family in turn, and those of the other family alongside from [`OTHER_FAMILY_AFTER`] on, or
/// at once when the first family has failed sooner.
async fn connect_tcp(addresses: Vec<std::net::SocketAddr>) -> Result<TcpStream, Http1Error> {
    let Some(first) = addresses.first() else {
        return Err(Http1Error::Connect("the name resolves to no address".into()));
    };
    let ipv6 = first.is_ipv6();
    let (preferred, other): (Vec<_>, Vec<_>) = addresses.into_iter().partition(|address| address.is_ipv6() == ipv6);
    let preferred = connect_in_turn(preferred);
    if other.is_empty() {
        return preferred.await;
    }
    tokio::pin!(preferred);
    let head_start = tokio::select! {
        result = &mut preferred => Some(result),
        () = tokio::time::sleep(OTHER_FAMILY_AFTER) => None,
    };
    match head_start {
        Some(Ok(tcp)) => return Ok(tcp),
        // The first family's error is the one reported when both fail.
        Some(Err(error)) => return connect_in_turn(other).await.map_err(|_| error),
        None => {}
    }
    let other = connect_in_turn(other);
    tokio::pin!(other);
    tokio::select! {
        result = &mut preferred => match result {
            Ok(tcp) => Ok(tcp),
            Err(error) => other.await.map_err(|_| error),
        },
        result = &mut other => match result {
            Ok(tcp) => Ok(tcp),
            Err(_) => preferred.await,
        },
    }
}

async fn connect_in_turn(addresses: Vec<std::net::SocketAddr>) -> Result<TcpStream, Http1Error> {
    let mut last = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(tcp) => return Ok(tcp),
            Err(error) => last = Some(error),
        }
    }
    Err(match last {
        Some(error) => Http1Error::Connect(format!("tcp connect error: {error}")),
        None => Http1Error::Connect("the name resolves to no address".into()),
    })
}

fn connector(roots: Roots) -> Option<tokio_rustls::TlsConnector> {
    let roots = match roots {
        Roots::System => {
            let mut store = rustls::RootCertStore::empty();
            let (added, _unparsable) = store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if added == 0 {
                return None;
            }
            store
        }
        #[cfg(test)]
        Roots::Custom(store) => store,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// How an exchange failed: before any of the answer arrived on a kept connection (safe to
/// send again on a new one), or otherwise.
enum Failure {
    Unanswered(Http1Error),
    Broken(Http1Error),
}

/// Writes `request` and reads the answer; `true` with it when the connection can be kept.
async fn send_and_read(stream: &mut Stream, request: &[u8]) -> Result<(Answer, bool), Failure> {
    if let Err(error) = write_all(stream, request).await {
        // A server may answer before it has read the whole request (413, 401) and close: that
        // answer is the one to report. Anything else is a request that went unanswered.
        return match read_answer(stream).await {
            Ok((answer, _)) => Ok((answer, false)),
            Err(_) => Err(Failure::Unanswered(Http1Error::exchange("sending the request failed", &error))),
        };
    }
    read_answer(stream).await
}

/// Reads an answer; `true` with it when the connection can be kept.
async fn read_answer(stream: &mut Stream) -> Result<(Answer, bool), Failure> {
    let mut buffer = Vec::with_capacity(READ_CHUNK);
    let head = loop {
        match parse_head(&buffer).map_err(Failure::Broken)? {
            // 1xx answers (100 Continue, 103 Early Hints) come before the real one.
            Some((head, length)) if head.interim => {
                buffer.drain(..length);
                continue;
            }
            Some((head, length)) => {
                buffer.drain(..length);
                break head;
            }
            None if buffer.len() > HEAD_LIMIT => {
                return Err(Failure::Broken(Http1Error::Exchange("the answer's headers are too long".into())))
            }
            None => {}
        }
        match read_more(stream, &mut buffer).await {
            Ok(0) if buffer.is_empty() => {
                return Err(Failure::Unanswered(Http1Error::Exchange(
                    "the connection was closed before an answer".into(),
                )))
            }
            Ok(0) => return Err(Failure::Broken(Http1Error::Exchange("the answer was cut off in its headers".into()))),
            Ok(_) => {}
            Err(error) if buffer.is_empty() => {
                return Err(Failure::Unanswered(Http1Error::exchange("reading the answer failed", &error)))
            }
            Err(error) => return Err(Failure::Broken(Http1Error::exchange("reading the answer failed", &error))),
        }
    };
    let (body, complete) = read_body(stream, &mut buffer, &head).await.map_err(Failure::Broken)?;
    // Anything after the body was not asked for: such a connection is not reused.
    let reusable = complete && head.keep_alive && buffer.is_empty();
    Ok((Answer { status: head.status, retry_after: head.retry_after, body }, reusable))
}

/// What the status line and headers say.
struct Head {
    status: u16,
    interim: bool,
    retry_after: Option<String>,
    framing: Framing,
    keep_alive: bool,
}

enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The head at the start of `buffer` and its length, or `None` while it is incomplete.
fn parse_head(buffer: &[u8]) -> Result<Option<(Head, usize)>, Http1Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(Http1Error::Exchange(format!("the answer is not HTTP/1.x ({error})"))),
    };
    let status = response.code.unwrap_or(0);
    let http11 = response.version == Some(1);
    let (mut content_length, mut chunked, mut close, mut keep_alive_token) = (None, false, false, false);
    let mut retry_after = None;
    for header in response.headers.iter() {
        let value = String::from_utf8_lossy(header.value);
        let value = value.trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            let parsed: u64 = value
                .parse()
                .map_err(|_| Http1Error::Exchange(format!("the answer's Content-Length is not a number: {value:?}")))?;
            if content_length.is_some_and(|earlier| earlier != parsed) {
                return Err(Http1Error::Exchange("the answer has two different Content-Lengths".into()));
            }
            content_length = Some(parsed);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.rsplit(',').next().is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            if !chunked {
                // Only chunked tells where the body ends; anything else runs to the close.
                close = true;
            }
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive_token |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if header.name.eq_ignore_ascii_case("retry-after") {
            retry_after = Some(value.to_string());
        }
    }
    let interim = (100..200).contains(&status) && status != 101;
    let framing = if interim || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(length) = content_length {
        Framing::Length(length)
    } else {
        Framing::UntilClose
    };
    // Both lengths at once is how request smuggling starts: read by chunks, then close.
    let ambiguous = chunked && content_length.is_some();
    let keep_alive = !close && !ambiguous && (http11 || keep_alive_token) && !matches!(framing, Framing::UntilClose);
    Ok(Some((Head { status, interim, retry_after, framing, keep_alive }, length)))
}

/// Reads the body after the head (part of it may be in `buffer` already). Returns at most
/// [`DRAIN_LIMIT`] bytes of it and whether it was read to its end (so the connection can be
/// kept); `buffer` keeps what came after it.
async fn read_body(stream: &mut Stream, buffer: &mut Vec<u8>, head: &Head) -> Result<(Vec<u8>, bool), Http1Error> {
    let cut_off = |error: std::io::Error| Http1Error::exchange("reading the answer failed", &error);
    match head.framing {
        Framing::Empty => Ok((Vec::new(), true)),
        Framing::Length(length) => {
            let wanted = usize::try_from(length).unwrap_or(usize::MAX);
            let keep = wanted.min(DRAIN_LIMIT);
            while buffer.len() < keep {
                if read_more(stream, buffer).await.map_err(cut_off)? == 0 {
                    return Err(Http1Error::Exchange("the answer's body was cut off".into()));
                }
            }
            if wanted > DRAIN_LIMIT {
                buffer.truncate(DRAIN_LIMIT);
                return Ok((std::mem::take(buffer), false));
            }
            let rest = buffer.split_off(wanted);
            Ok((std::mem::replace(buffer, rest), true))
        }
        Framing::UntilClose => {
            while buffer.len() < DRAIN_LIMIT {
                if read_more(stream, buffer).await.map_err(cut_off)? == 0 {
                    return Ok((std::mem::take(buffer), false));
                }
            }
            buffer.truncate(DRAIN_LIMIT);
            Ok((std::mem::take(buffer), false))
        }
        Framing::Chunked => {
            let mut body = Vec::new();
            loop {
                let size = loop {
                    match httparse::parse_chunk_size(buffer) {
                        Ok(httparse::Status::Complete((length, size))) => {
                            buffer.drain(..length);
                            break size;
                        }
                        Ok(httparse::Status::Partial) if buffer.len() < HEAD_LIMIT => {
                            if read_more(stream, buffer).await.map_err(cut_off)? == 0 {
                                return Err(Http1Error::Exchange("the answer's body was cut off".into()));
                            }
                        }
                        _ => return Err(Http1Error::Exchange("the answer's chunked body is malformed".into())),
                    }
                };
                if size == 0 {
                    return skip_trailers(stream, buffer).await.map(|()| (body, true));
                }
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if body.len().saturating_add(size) > DRAIN_LIMIT {
                    let room = DRAIN_LIMIT - body.len();
                    while buffer.len() < room {
                        if read_more(stream, buffer).await.map_err(cut_off)? == 0 {
                            break;
                        }
                    }
                    let take = room.min(buffer.len());
                    body.extend_from_slice(&buffer[..take]);
                    return Ok((body, false));
                }
                // The chunk and its CRLF.
                while buffer.len() < size + 2 {
                    if read_more(stream, buffer).await.map_err(cut_off)? == 0 {
                        return Err(Http1Error::Exchange("the answer's body was cut off".into()));
                    }
                }
                if &buffer[size..size + 2] != b"\r\n" {
                    return Err(Http1Error::Exchange("the answer's chunked body is malformed".into()));
                }
                body.extend_from_slice(&buffer[..size]);
                buffer.drain(..size + 2);
            }
        }
    }
}

/// Reads past the trailer lines that end a chunked body, up to the empty line.
async fn skip_trailers(stream: &mut Stream, buffer: &mut Vec<u8>) -> Result<(), Http1Error> {
    loop {
        if let Some(end) = buffer.windows(2).position(|pair| pair == b"\r\n") {
            buffer.drain(..end + 2);
            if end == 0 {
                return Ok(());
            }
            continue;
        }
        if buffer.len() > HEAD_LIMIT {
            return Err(Http1Error::Exchange("the answer's trailers are too long".into()));
        }
        match read_more(stream, buffer).await {
            Ok(0) => return Err(Http1Error::Exchange("the answer's body was cut off".into())),
            Ok(_) => {}
            Err(error) => return Err(Http1Error::exchange("reading the answer failed", &error)),
        }
    }
}

async fn write_all(stream: &mut Stream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Appends what the socket has (at least one byte, or 0 at its end) to `buffer`.
async fn read_more(stream: &mut Stream, buffer: &mut Vec<u8>) -> std::io::Result<usize> {
    buffer.reserve(READ_CHUNK);
    stream.read_buf(buffer).await
}

/// A connection to the destination.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether a kept connection still looks usable: open, with nothing unasked-for to read.
    fn quiet(&self) -> bool {
        let tcp = match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
        };
        let mut probe = [0u8; 1];
        matches!(tcp.try_read(&mut probe), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock)
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::net::TcpListener;

    use super::*;

    /// What the scripted server does with the next request.
    enum Reply {
        /// Writes these bytes; closes the connection afterwards when `close`.
        Answer { bytes: Vec<u8>, close: bool },
        /// Closes the connection without answering.
        HangUp,
        /// Never answers.
        Silence,
    }

    fn answer(text: &str) -> Reply {
        Reply::Answer { bytes: text.as_bytes().to_vec(), close: false }
    }

    #[derive(Default)]
    struct Seen {
        connections: AtomicUsize,
        requests: Mutex<Vec<Vec<u8>>>,
    }

    struct Server {
        url: url::Url,
        seen: Arc<Seen>,
    }

    /// A loopback server answering requests, whatever connection they come on, with `replies`
    /// in order; with `tls`, it speaks TLS with the test CA's `localhost` certificate.
    async fn server(replies: Vec<Reply>, tls: bool) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let seen = Arc::new(Seen::default());
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let acceptor = tls.then(acceptor);
        {
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    seen.connections.fetch_add(1, Ordering::SeqCst);
                    let (seen, replies) = (seen.clone(), replies.clone());
                    match &acceptor {
                        None => drop(tokio::spawn(converse(tcp, seen, replies))),
                        Some(acceptor) => {
                            let acceptor = acceptor.clone();
                            tokio::spawn(async move {
                                if let Ok(tls) = acceptor.accept(tcp).await {
                                    converse(tls, seen, replies).await;
                                }
                            });
                        }
                    }
                }
            });
        }
        let scheme = if tls { "https://localhost" } else { "http://127.0.0.1" };
        let url = url::Url::parse(&format!("{scheme}:{port}/hook/SECRET-TOKEN?via=test")).expect("url");
        Server { url, seen }
    }

    async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
        mut stream: S,
        seen: Arc<Seen>,
        replies: Arc<Mutex<VecDeque<Reply>>>,
    ) {
        let mut buffer = Vec::new();
        loop {
            let request = loop {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut parsed = httparse::Request::new(&mut headers);
                if let Ok(httparse::Status::Complete(head)) = parsed.parse(&buffer) {
                    let length: usize = parsed
                        .headers
                        .iter()
                        .find(|header| header.name.eq_ignore_ascii_case("content-length"))
                        .map(|header| std::str::from_utf8(header.value).expect("utf-8").parse().expect("a length"))
                        .unwrap_or(0);
                    if buffer.len() >= head + length {
                        break buffer.drain(..head + length).collect::<Vec<u8>>();
                    }
                }
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                }
            };
            seen.requests.lock().expect("lock").push(request);
            let reply = replies.lock().expect("lock").pop_front();
            match reply {
                Some(Reply::Answer { bytes, close }) => {
                    if stream.write_all(&bytes).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                    if close {
                        let _ = stream.shutdown().await;
                        return;
                    }
                }
                Some(Reply::HangUp) | None => return,
                Some(Reply::Silence) => std::future::pending::<()>().await,
            }
        }
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
    }

    fn acceptor() -> tokio_rustls::TlsAcceptor {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(fixture("server.crt"))
            .expect("certificate")
            .collect::<Result<_, _>>()
            .expect("certificate");
        let key = PrivateKeyDer::from_pem_file(fixture("server.key")).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    fn client(url: &url::Url) -> Http1Client {
        client_with(url, Duration::from_secs(5))
    }

    fn client_with(url: &url::Url, request_timeout: Duration) -> Http1Client {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in crate::tls::ca_certificates(&fixture("ca.crt").to_string_lossy()).expect("ca") {
            roots.add(certificate).expect("root");
        }
        Http1Client::new(url, Duration::from_secs(2), request_timeout, Roots::Custom(roots)).expect("a client")
    }

    const FORM: &[(&str, &str)] = &[("Content-Type", "application/x-www-form-urlencoded")];

    #[tokio::test]
    async fn posts_are_well_formed_and_share_one_kept_connection() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let server = server(vec![answer(ok), answer(ok), answer(ok)], false).await;
        let client = client(&server.url);
        for body in ["a=1", "b=2", "c=%D0%BF"] {
            let reply = client.post(FORM, body.as_bytes()).await.expect("answered");
            assert_eq!(reply, Answer { status: 200, retry_after: None, body: b"ok".to_vec() });
        }
        assert_eq!(server.seen.connections.load(Ordering::SeqCst), 1, "one connection for all three");
        let requests = server.seen.requests.lock().expect("lock");
        let expected = format!(
            "POST /hook/SECRET-TOKEN?via=test HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: deskhook/{}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=1",
            server.url.port().expect("port"),
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(String::from_utf8_lossy(&requests[0]), expected);
        assert!(requests[2].ends_with(b"Content-Length: 8\r\n\r\nc=%D0%BF"));
    }

    #[tokio::test]
    async fn chunked_answers_with_trailers_are_read_whole_and_keep_the_connection() {
        let chunked = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n\r\n\
                       5;ext=1\r\nslow \r\n4\r\ndown\r\n0\r\nX-Trailer: yes\r\n\r\n";
        let server = server(vec![answer(chunked), answer("HTTP/1.1 204 No Content\r\n\r\n")], false).await;
        let client = client(&server.url);
        let reply = client.post(FORM, b"a=1").await.expect("answered");
        assert_eq!(reply, Answer { status: 429, retry_after: Some("7".into()), body: b"slow down".to_vec() });
        let reply = client.post(FORM, b"a=2").await.expect("answered");
        assert_eq!((reply.status, reply.body.len()), (204, 0));
        assert_eq!(server.seen.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn interim_answers_are_skipped() {
        let server = server(
            vec![answer("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")],
            false,
        )
        .await;
        let reply = client(&server.url).post(FORM, b"a=1").await.expect("answered");
        assert_eq!(reply.status, 201);
    }

    #[tokio::test]
    async fn closing_answers_are_not_reused() {
        let server = server(
            vec![
                answer("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
                answer("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
                Reply::Answer { bytes: b"HTTP/1.1 200 OK\r\n\r\nto the end".to_vec(), close: true },
                answer("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            ],
            false,
        )
        .await;
        let client = client(&server.url);
        for _ in 0..3 {
            client.post(FORM, b"a=1").await.expect("answered");
        }
        let reply = client.post(FORM, b"a=1").await.expect("answered");
        assert_eq!(reply.status, 200);
        assert_eq!(server.seen.connections.load(Ordering::SeqCst), 4, "none of the first three was kept");
    }

    #[tokio::test]
    async fn an_answer_without_length_runs_to_the_close() {
        let server = server(
            vec![Reply::Answer { bytes: b"HTTP/1.1 502 Bad Gateway\r\n\r\nupstream down".to_vec(), close: true }],
            false,
        )
        .await;
        let reply = client(&server.url).post(FORM, b"a=1").await.expect("answered");
        assert_eq!((reply.status, reply.body), (502, b"upstream down".to_vec()));
    }

    #[tokio::test]
    async fn a_kept_connection_the_server_closed_is_replaced_without_an_error() {
        let ok = || answer("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        // Closed while idle: noticed before reuse.
        let server1 = server(
            vec![Reply::Answer { bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(), close: true }, ok()],
            false,
        )
        .await;
        let client1 = client(&server1.url);
        client1.post(FORM, b"a=1").await.expect("answered");
        // The close reaches the client's socket; the kept connection must then be given up.
        for _ in 0..200 {
            if !client1.idle.lock().expect("lock").last().is_some_and(|idle| idle.stream.quiet()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(client1.post(FORM, b"a=2").await.expect("answered").status, 200);
        assert_eq!(server1.seen.connections.load(Ordering::SeqCst), 2);
        // Closed as the request went out (the server read it and hung up): sent again on a new one.
        let server2 = server(vec![ok(), Reply::HangUp, ok()], false).await;
        let client2 = client(&server2.url);
        client2.post(FORM, b"a=1").await.expect("answered");
        assert_eq!(client2.post(FORM, b"a=2").await.expect("answered").status, 200);
        assert_eq!(server2.seen.connections.load(Ordering::SeqCst), 2);
        let requests = server2.seen.requests.lock().expect("lock");
        assert_eq!(requests.len(), 3);
        assert_eq!(requests[1], requests[2], "the unanswered request went again, unchanged");
    }

    #[tokio::test]
    async fn a_new_connection_hung_up_on_is_an_error_not_a_retry() {
        let server = server(vec![Reply::HangUp, answer("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")], false).await;
        let error = client(&server.url).post(FORM, b"a=1").await.expect_err("no answer");
        assert!(error.to_string().contains("closed before an answer"), "{error}");
        assert_eq!(server.seen.requests.lock().expect("lock").len(), 1);
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let server = server(vec![Reply::Silence], false).await;
        let client = client_with(&server.url, Duration::from_millis(200));
        assert!(matches!(client.post(FORM, b"a=1").await, Err(Http1Error::Timeout)));
        assert!(client.idle.lock().expect("lock").is_empty(), "a timed-out connection is not kept");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = url::Url::parse(&format!("http://{}/hook", listener.local_addr().expect("address"))).expect("url");
        drop(listener);
        let error = client(&url).post(FORM, b"a=1").await.expect_err("refused");
        assert!(matches!(&error, Http1Error::Connect(detail) if detail.contains("tcp connect error")), "{error}");
    }

    #[tokio::test]
    async fn long_answers_are_cut_and_their_connection_closed() {
        let long = "x".repeat(DRAIN_LIMIT + 10);
        let server = server(
            vec![
                answer(&format!("HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n{long}", long.len())),
                answer(&format!("HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{long}\r\n0\r\n\r\n", long.len())),
                answer("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            ],
            false,
        )
        .await;
        let client = client(&server.url);
        for _ in 0..2 {
            let reply = client.post(FORM, b"a=1").await.expect("answered");
            assert_eq!((reply.status, reply.body.len()), (500, DRAIN_LIMIT));
        }
        client.post(FORM, b"a=1").await.expect("answered");
        assert_eq!(server.seen.connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn malformed_answers_are_errors() {
        for bad in [
            "HELLO\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        ] {
            let server = server(vec![Reply::Answer { bytes: bad.as_bytes().to_vec(), close: true }], false).await;
            let client = client(&server.url);
            let error = client.post(FORM, b"a=1").await.expect_err(bad);
            assert!(matches!(error, Http1Error::Exchange(_)), "{bad:?}: {error}");
            assert!(client.idle.lock().expect("lock").is_empty());
        }
        // Cut off in the middle of a body.
        let server = server(
            vec![Reply::Answer { bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec(), close: true }],
            false,
        )
        .await;
        let error = client(&server.url).post(FORM, b"a=1").await.expect_err("cut off");
        assert!(error.to_string().contains("cut off"), "{error}");
    }

    #[tokio::test]
    async fn https_is_checked_against_the_trusted_roots_and_kept() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes";
        let server = server(vec![answer(ok), answer(ok)], true).await;
        let client = client(&server.url);
        for _ in 0..2 {
            assert_eq!(client.post(FORM, b"a=1").await.expect("answered").body, b"yes");
        }
        assert_eq!(server.seen.connections.load(Ordering::SeqCst), 1);
        // A client trusting only the system's roots refuses the test CA's certificate.
        let strict = Http1Client::new(&server.url, Duration::from_secs(2), Duration::from_secs(5), Roots::System);
        if let Some(strict) = strict {
            let error = strict.post(FORM, b"a=1").await.expect_err("untrusted");
            assert!(matches!(&error, Http1Error::Connect(detail) if detail.contains("TLS")), "{error}");
        }
    }

    #[tokio::test]
    async fn an_answer_sent_before_the_request_was_read_is_the_one_reported() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = url::Url::parse(&format!("http://{}/hook", listener.local_addr().expect("address"))).expect("url");
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let mut head = [0u8; 1024];
            let _ = tcp.read(&mut head).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo long")
                .await;
            // Closed with most of the body unread: the client's writes then fail.
        });
        let body = vec![b'a'; 8 * 1024 * 1024];
        let reply = client(&url).post(FORM, &body).await.expect("the early answer");
        assert_eq!((reply.status, reply.body), (413, b"too long".to_vec()));
    }

    #[tokio::test]
    async fn the_other_address_family_is_tried_when_the_first_fails() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let good = listener.local_addr().expect("address");
        let closed = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            probe.local_addr().expect("address")
        };
        // An address of the same family that refuses, then the one that listens.
        connect_tcp(vec![closed, good]).await.expect("the second address");
        // IPv6 first (refused, or not even available here), IPv4 after it: at once, not after
        // the head start the first family gets while it may still connect.
        let refused_v6: std::net::SocketAddr = format!("[::1]:{}", closed.port()).parse().expect("address");
        let started = std::time::Instant::now();
        connect_tcp(vec![refused_v6, good]).await.expect("IPv4 after IPv6");
        assert!(started.elapsed() < OTHER_FAMILY_AFTER, "waited {:?} after IPv6 had failed", started.elapsed());
        let error = connect_tcp(vec![refused_v6, closed]).await.expect_err("nothing listens");
        assert!(error.to_string().contains("tcp connect error"), "{error}");
        let error = connect_tcp(Vec::new()).await.expect_err("no address");
        assert!(error.to_string().contains("no address"), "{error}");
    }

    #[test]
    fn urls_it_cannot_serve_are_left_to_the_general_client() {
        let new = |url: &str| {
            Http1Client::new(
                &url::Url::parse(url).expect("url"),
                Duration::from_secs(1),
                Duration::from_secs(1),
                Roots::System,
            )
        };
        assert!(new("http://user:pass@example.org/hook").is_none());
        assert!(new("ftp://example.org/hook").is_none());
        let client = new("http://[::1]:8080/hook/SECRET").expect("a client");
        assert!(client.target.head.contains("Host: [::1]:8080\r\n"), "{}", client.target.head);
        assert_eq!(client.target.host, "::1");
        let client = new("http://example.org/hook/SECRET").expect("a client");
        assert!(client.target.head.contains("Host: example.org\r\n"));
        let shown = format!("{client:?}");
        assert!(shown.contains("example.org") && !shown.contains("SECRET"), "{shown}");
    }
}
