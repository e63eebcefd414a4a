//! The command line (SPEC §1), in the library so that the man page and shell completions are
//! generated from the very definitions the binary parses (`examples/package_assets.rs`).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// What every `--config` says in `--help`.
const CONFIG_HELP: &str = "The config file [default: $DESKHOOK_CONFIG, then /etc/deskhook/config.toml]";

/// deskhook's command line.
#[derive(Parser)]
#[command(
    name = "deskhook",
    version,
    about = "Asterisk ARI → helpdesk webhooks, recordings and /forward routing",
    after_help = "Logs go to stderr (the journal under systemd); RUST_LOG sets their level, e.g. RUST_LOG=debug. \
                  Documentation: /usr/share/doc/deskhook/ or docs/ in the source."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands (SPEC §1).
#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon (what systemd starts).
    Run {
        #[arg(long, value_name = "PATH", help = CONFIG_HELP)]
        config: Option<PathBuf>,
        /// Also print every helpdesk event as a JSON line (the `replay` format) on stdout.
        #[arg(long)]
        print_events: bool,
    },
    /// Validate the config and reach ARI, the webhook and the directories; print each problem with its fix.
    Check {
        #[arg(long, value_name = "PATH", help = CONFIG_HELP)]
        config: Option<PathBuf>,
    },
    /// List ARI endpoints with their class (extension / trunk).
    Endpoints {
        #[arg(long, value_name = "PATH", help = CONFIG_HELP)]
        config: Option<PathBuf>,
    },
    /// Feed recorded ARI traces through the call engine and print the helpdesk events as JSON lines.
    Replay {
        #[arg(long, value_name = "PATH", help = CONFIG_HELP)]
        config: Option<PathBuf>,
        /// Print the requests this sink (its `name` in the config, or `helpdesk`) would make instead.
        #[arg(long)]
        sink: Option<String>,
        /// ARI trace files: one ARI event (JSON) per line, as captured from the websocket.
        #[arg(required = true, value_name = "TRACE")]
        traces: Vec<PathBuf>,
    },
    /// Run the daemon against a built-in ARI simulator replaying the bundled real calls.
    Demo {
        /// Also send the events to this helpdesk webhook (as the helpdesk's form POSTs).
        #[arg(long)]
        webhook: Option<String>,
        /// Print what a sink of this kind would send instead: json (call summaries), zammad, omnidesk,
        /// bitrix24, amocrm.
        #[arg(long, value_name = "KIND")]
        sink: Option<String>,
        /// How much faster than recorded the calls are replayed.
        #[arg(long, hide = true, default_value_t = crate::commands::demo::DEMO_SPEEDUP)]
        speedup: f64,
    },
    /// Run the /forward resolver chain once for PHONE.
    Lookup {
        /// The caller's number, as the dialplan passes it to /forward.
        phone: String,
        /// The trunk the call came in on (its endpoint resource), for table rows by trunk.
        #[arg(long)]
        trunk: Option<String>,
        #[arg(long, value_name = "PATH", help = CONFIG_HELP)]
        config: Option<PathBuf>,
    },
    /// Show, re-queue or drop undelivered requests (of one sink with --sink).
    Outbox {
        /// What to do with the undelivered requests.
        #[arg(value_enum, default_value_t = OutboxAction::List)]
        action: OutboxAction,
        /// Only the requests of this sink (its `name` in the config, or `helpdesk`).
        #[arg(long)]
        sink: Option<String>,
        #[arg(long, value_name = "PATH", help = CONFIG_HELP)]
        config: Option<PathBuf>,
    },
}

/// `deskhook outbox ACTION`.
#[derive(Clone, Copy, ValueEnum)]
pub enum OutboxAction {
    /// Count the requests by state and list the undelivered ones with their last error.
    List,
    /// Send the dead-lettered requests again (after fixing what refused them).
    Retry,
    /// Drop the dead-lettered requests for good.
    Purge,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_subcommand_and_argument_says_what_it_is_and_config_names_its_default() {
        let command = super::Cli::command();
        command.clone().debug_assert();
        for sub in command.get_subcommands() {
            assert!(sub.get_about().is_some(), "{} has no description", sub.get_name());
            for arg in sub.get_arguments().filter(|arg| !arg.is_hide_set()) {
                let id = arg.get_id().as_str();
                assert!(arg.get_help().is_some(), "{} {id} has no help", sub.get_name());
                if id == "config" {
                    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                    assert!(help.contains("/etc/deskhook/config.toml") && help.contains("DESKHOOK_CONFIG"), "{help}");
                }
            }
        }
    }
}
