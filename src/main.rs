//! The `deskhook` binary: parses the command line and runs one subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use deskhook::commands;

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
        #[arg(required = true)]
        traces: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Replay { config, traces } => match commands::load_config(config.as_deref(), true) {
            Ok(config) => commands::replay::replay(&config, &traces, &mut std::io::stdout().lock(), &mut std::io::stderr().lock()),
            Err(error) => {
                eprintln!("{error}");
                2
            }
        },
        Command::Run { .. } | Command::Check { .. } | Command::Endpoints { .. } => {
            eprintln!("deskhook: this subcommand is not built yet");
            1
        }
    };
    ExitCode::from(code as u8)
}
