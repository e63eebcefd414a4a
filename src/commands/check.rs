//! `deskhook check` (SPEC §1). (Being built.)

use crate::config::Config;

/// Runs the subcommand; returns the process exit code.
pub fn check(config: &Config) -> i32 {
    let _ = config;
    eprintln!("deskhook: `check` is not built yet");
    1
}
