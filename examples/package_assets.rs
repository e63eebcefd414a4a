//! Writes what the Debian package installs beside the binary, generated from the command line
//! the binary parses (`deskhook::cli`): the man pages (`deskhook.1`, `deskhook-run.1`, …) and
//! the bash and zsh completions.
//!
//! ```sh
//! cargo run --example package_assets -- target/assets
//! ```

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let out = std::env::args().nth(1).unwrap_or_else(|| "target/assets".into());
    let out = std::path::Path::new(&out);
    std::fs::create_dir_all(out)?;
    let command = deskhook::cli::Cli::command();
    clap_mangen::generate_to(command.clone(), out)?;
    for shell in [Shell::Bash, Shell::Zsh] {
        let written = clap_complete::generate_to(shell, &mut command.clone(), "deskhook", out)?;
        println!("{}", written.display());
    }
    Ok(())
}
