//! `imgport completions SHELL`: a shell completion script, generated from the command-line definition itself
//! so it never falls behind the commands.

use clap_complete::Shell;

#[derive(clap::Args)]
pub struct Args {
    /// The shell to complete for: bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

/// Writes the script to stdout. It is built in memory first, so a closed pipe or a full disk is reported like
/// any other output error rather than stopping the generator half way.
pub fn run(args: Args, mut cli: clap::Command) -> u8 {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cli, "imgport", &mut script);
    crate::output::write_stdout(&script);
    0
}
