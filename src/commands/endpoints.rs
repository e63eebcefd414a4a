//! `deskhook endpoints` (SPEC §1). (Being built.)

use crate::config::Config;

/// Runs the subcommand; returns the process exit code.
pub fn endpoints(config: &Config) -> i32 {
    let _ = config;
    eprintln!("deskhook: `endpoints` is not built yet");
    1
}
