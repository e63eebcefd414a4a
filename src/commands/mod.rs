//! One function per CLI subcommand; `main.rs` only parses arguments and calls these.

pub mod check;
pub mod demo;
pub mod endpoints;
pub mod lookup;
pub mod outbox;
pub mod replay;
pub mod run;

use std::path::Path;

use crate::config::{Config, ConfigError};

/// Loads the config a subcommand was pointed at; `None` means built-in defaults are acceptable.
pub fn load_config(flag: Option<&Path>, defaults_when_absent: bool) -> Result<Config, ConfigError> {
    if flag.is_none() && defaults_when_absent && std::env::var_os("DESKHOOK_CONFIG").is_none() {
        return Ok(Config::default());
    }
    Config::load(&Config::resolve_path(flag))
}
