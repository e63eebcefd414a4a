//! One fake event websocket: writes the replayed messages in batches (timing each write, so a
//! client that stops reading shows up as a long write), and obeys drop/freeze controls.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{lock, micros_since, SessionCommand, Shared};

/// Messages written before one flush.
const WRITE_BATCH: usize = 512;

pub(crate) async fn run(
    shared: Arc<Shared>,
    id: u64,
    app: String,
    upgrade: OnUpgrade,
    mut commands: mpsc::UnboundedReceiver<SessionCommand>,
) {
    let upgraded = match upgrade.await {
        Ok(upgraded) => upgraded,
        Err(_) => {
            forget(&shared, id, &app);
            return;
        }
    };
    let mut socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(SessionCommand::Send(text, queued)) => {
                    let lag = Duration::from_millis(shared.event_lag_ms.load(Ordering::Relaxed));
                    if !lag.is_zero() {
                        tokio::time::sleep_until((queued + lag).into()).await;
                    }
                    let started = Instant::now();
                    let mut written = 1u64;
                    let mut result = socket.feed(Message::Text(text)).await;
                    let mut control = None;
                    while result.is_ok() && written < WRITE_BATCH as u64 {
                        match commands.try_recv() {
                            Ok(SessionCommand::Send(text, queued)) => {
                                let due = queued + lag;
                                if due > Instant::now() {
                                    result = socket.flush().await;
                                    tokio::time::sleep_until(due.into()).await;
                                }
                                result = result.and(socket.feed(Message::Text(text)).await);
                                written += 1;
                            }
                            Ok(other) => {
                                control = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if result.is_ok() {
                        result = socket.flush().await;
                    }
                    shared.messages_sent.fetch_add(written, Ordering::Relaxed);
                    shared.longest_write_us.fetch_max(micros_since(started), Ordering::Relaxed);
                    if result.is_err() {
                        break;
                    }
                    match control {
                        Some(SessionCommand::Drop) => break,
                        Some(SessionCommand::Freeze) => {
                            freeze(&shared).await;
                            break;
                        }
                        _ => {}
                    }
                }
                Some(SessionCommand::Drop) => break,
                Some(SessionCommand::Freeze) => {
                    freeze(&shared).await;
                    break;
                }
                // Detached (the application was taken over): stay open, as Asterisk does, until the client leaves.
                None => {
                    linger(&mut socket, &shared).await;
                    break;
                }
            },
            frame = socket.next() => match frame {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                // Pings are answered by tungstenite on the next read or flush.
                Some(Ok(_)) => {}
            }
        }
    }
    forget(&shared, id, &app);
    // Dropping the socket here closes TCP without a close frame.
}

/// Neither reads nor writes (so pings go unanswered) until the fake stops or an hour passes.
async fn freeze(shared: &Shared) {
    tokio::select! {
        _ = shared.stop.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
    }
}

async fn linger<S>(socket: &mut WebSocketStream<S>, shared: &Shared)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            frame = socket.next() => match frame {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    }
}

fn forget(shared: &Shared, id: u64, app: &str) {
    lock(&shared.sessions).retain(|session| session.id != id);
    shared.refresh_sessions();
    shared.application_left(app);
}
