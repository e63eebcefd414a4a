//! `deskhook lookup` (SPEC §1). (Being built.)

use crate::config::Config;

/// Runs the subcommand; returns the process exit code.
pub fn lookup(config: &Config) -> i32 {
    let _ = config;
    eprintln!("deskhook: `lookup` is not built yet");
    1
}
