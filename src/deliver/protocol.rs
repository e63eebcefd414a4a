//! Destinations that speak an API rather than take each stored request as one POST (the
//! CRMs): they implement [`Protocol`] and the sender hands them each request in turn, with
//! the same order per call, retries and dead letters as every other sink.

use std::future::Future;
use std::pin::Pin;

use super::policy::TryResult;
use super::request::Request;

/// The future of one try.
pub(crate) type TryFuture<'a> = Pin<Box<dyn Future<Output = TryResult> + Send + 'a>>;

/// One kind of API destination.
pub trait Protocol: Send + Sync + 'static {
    /// `scheme://host[:port]` of the destination: all of its address that logs may show.
    fn host(&self) -> &str;

    /// One try of `request`: made, and its answer read, as the API means it. A try may make
    /// several HTTP requests (a CRM's two-step upload, a token refresh) and may be repeated
    /// after a crash, so each step must be safe to repeat.
    fn send<'a>(&'a self, request: &'a Request) -> TryFuture<'a>;
}
