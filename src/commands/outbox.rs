//! `deskhook outbox` (SPEC §1). (Being built.)

use crate::config::Config;

/// Runs the subcommand; returns the process exit code.
pub fn outbox(config: &Config) -> i32 {
    let _ = config;
    eprintln!("deskhook: `outbox` is not built yet");
    1
}
