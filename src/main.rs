//! The `deskhook` binary: parses the command line and runs one subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use deskhook::commands;
use deskhook::config::Config;

#[derive(Parser)]
#[command(name = "deskhook", version, about = "Asterisk ARI → helpdesk webhooks, recordings and /forward routing")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (what systemd starts).
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also print every helpdesk event as a JSON line (the `replay` format) on stdout.
        #[arg(long)]
        print_events: bool,
    },
    /// Validate the config and reach ARI, the webhook and the directories; print each problem with its fix.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List ARI endpoints with their class (extension / trunk).
    Endpoints {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Feed recorded ARI traces through the call engine and print the helpdesk events as JSON lines.
    Replay {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the requests this sink (its `name` in the config, or `helpdesk`) would make instead.
        #[arg(long)]
        sink: Option<String>,
        #[arg(required = true)]
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
        #[arg(long, hide = true, default_value_t = commands::demo::DEMO_SPEEDUP)]
        speedup: f64,
    },
    /// Run the /forward resolver chain once for PHONE.
    Lookup {
        phone: String,
        #[arg(long)]
        trunk: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Show, re-queue or drop undelivered requests (of one sink with --sink).
    Outbox {
        #[arg(value_enum, default_value_t = OutboxAction::List)]
        action: OutboxAction,
        /// Only the requests of this sink (its `name` in the config, or `helpdesk`).
        #[arg(long)]
        sink: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum OutboxAction {
    List,
    Retry,
    Purge,
}

/// Loads the config or prints why not; `Err` carries the exit code (2: unusable config).
fn config_or_exit(flag: Option<&std::path::Path>, defaults_when_absent: bool) -> Result<Config, i32> {
    commands::load_config(flag, defaults_when_absent).map_err(|error| {
        eprintln!("{error}");
        2
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Replay { config, sink, traces } => config_or_exit(config.as_deref(), true).map(|config| {
            let (mut stdout, mut stderr) = (std::io::stdout().lock(), std::io::stderr().lock());
            commands::replay::replay(&config, &traces, sink.as_deref(), &mut stdout, &mut stderr)
        }),
        Command::Run { config, print_events } => {
            config_or_exit(config.as_deref(), false).map(|config| commands::run::run(&config, print_events))
        }
        Command::Check { config } => {
            config_or_exit(config.as_deref(), false).map(|config| commands::check::check(&config))
        }
        Command::Endpoints { config } => {
            config_or_exit(config.as_deref(), false).map(|config| commands::endpoints::endpoints(&config))
        }
        Command::Demo { webhook, sink, speedup } => {
            Ok(commands::demo::demo(webhook.as_deref(), sink.as_deref(), speedup))
        }
        Command::Lookup { phone, trunk, config } => config_or_exit(config.as_deref(), false)
            .map(|config| commands::lookup::lookup(&config, &phone, trunk.as_deref())),
        Command::Outbox { action, sink, config } => config_or_exit(config.as_deref(), false).map(|config| {
            let action = match action {
                OutboxAction::List => commands::outbox::OutboxAction::List,
                OutboxAction::Retry => commands::outbox::OutboxAction::Retry,
                OutboxAction::Purge => commands::outbox::OutboxAction::Purge,
            };
            let (mut stdout, mut stderr) = (std::io::stdout().lock(), std::io::stderr().lock());
            commands::outbox::outbox(&config, action, sink.as_deref(), &mut stdout, &mut stderr)
        }),
    };
    ExitCode::from(code.unwrap_or_else(|exit| exit).clamp(0, 255) as u8)
}
