//! `deskhook demo` (SPEC §1). (Being built.)

use crate::config::Config;

/// Runs the subcommand; returns the process exit code.
pub fn demo(config: &Config) -> i32 {
    let _ = config;
    eprintln!("deskhook: `demo` is not built yet");
    1
}
