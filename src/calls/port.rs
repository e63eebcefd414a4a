//! The port the engine's outputs leave by: whatever takes them (the outbox, a recorder, a
//! printer) implements [`Sink`]. It lives beside [`Output`] so that every taker depends on the
//! engine's types, never on the daemon that drives it.

use std::future::Future;
use std::pin::Pin;

use super::Output;

/// The future a sink returns; boxed so sinks can be chosen at run time (`Box<dyn Sink>`).
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Takes the engine's outputs (call events, recordings, and effects such as
/// `ConversationStarted`/`CallClosed` that recorders act on), one at a time, in engine order.
pub trait Sink: Send + 'static {
    /// Handles one output. Awaiting here holds back only this sink's queue, never the engine.
    fn accept<'a>(&'a mut self, output: &'a Output) -> SinkFuture<'a>;

    /// Called once after the last output, on shutdown: flush or persist what is buffered.
    fn close(&mut self) -> SinkFuture<'_> {
        Box::pin(async {})
    }
}
