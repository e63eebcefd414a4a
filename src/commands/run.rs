//! `deskhook run` (SPEC §1). (Being built.)

use crate::config::Config;

/// Runs the subcommand; returns the process exit code.
pub fn run(config: &Config) -> i32 {
    let _ = config;
    eprintln!("deskhook: `run` is not built yet");
    1
}
