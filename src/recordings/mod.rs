//! Call recordings to the helpdesk: which files may be read, when a MixMonitor file is
//! complete, and the pickup that turns a finished call's recording into an upload.
//!
//! The call engine names the files (`MIXMONITOR_FILENAME`) after the call's ended event; this
//! module never trusts that name: only files inside `recordings.dirs` are ever opened.
//! `ari` is the other mode: deskhook records the calls itself through ARI snoop channels.
//! `links` serves signed, expiring links to the files for CRMs that take a URL.

pub mod ari;
pub mod by_id;
pub mod closes;
pub mod links;
pub mod mixmonitor;
pub mod pickup;
pub mod safety;

pub use ari::{AriRecorder, AriRecorderError, AriRecorderSettings};
pub use closes::CloseWatch;
pub use links::RecordingLinks;
pub use mixmonitor::{wait_until_complete, FileReady};
pub use pickup::Pickup;
pub use safety::{AllowedDirs, PickupError};
