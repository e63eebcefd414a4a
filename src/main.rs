//! The `deskhook` binary: parses the command line and runs one subcommand.

use std::process::ExitCode;

use clap::Parser;

use deskhook::cli::{Cli, Command, OutboxAction};
use deskhook::commands;
use deskhook::config::Config;

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
        Command::Check { config } => match config_or_exit(config.as_deref(), false) {
            Ok(config) => Ok(commands::check::check(&config)),
            Err(code) => {
                // The first problem is printed; check names every one it can find.
                let problems = Config::problems_of(&Config::resolve_path(config.as_deref()));
                for problem in problems.iter().skip(1) {
                    eprintln!("{problem}");
                }
                if problems.len() > 1 {
                    eprintln!("{} problems in the config", problems.len());
                }
                Err(code)
            }
        },
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
