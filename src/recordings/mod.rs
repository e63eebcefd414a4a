//! Call recordings to the helpdesk: which files may be read, when a MixMonitor file is
//! complete, and the pickup that turns a finished call's recording into an upload.
//!
//! The call engine names the files (`MIXMONITOR_FILENAME`) after the call's ended event; this
//! module never trusts that name: only files inside `recordings.dirs` are ever opened.
//! `ari` is the other mode: deskhook records the calls itself through ARI snoop channels.
//! `links` serves signed, expiring links to the files for CRMs that take a URL.

pub mod ari;
pub(crate) mod by_id;
pub(crate) mod closes;
pub(crate) mod links;
pub(crate) mod mixmonitor;
pub(crate) mod pickup;
pub(crate) mod safety;

pub use ari::{AriRecorder, AriRecorderError, AriRecorderSettings};
pub(crate) use links::RecordingLinks;
pub use pickup::Pickup;
pub(crate) use safety::AllowedDirs;
