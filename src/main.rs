//! imgport: inspect, convert and import virtual machine disk images.

#[macro_use]
mod output;
mod commands;
mod signals;

use clap::{ArgAction, CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "imgport",
    // The package version, with the git revision when built from a checkout (build.rs).
    version = env!("IMGPORT_VERSION"),
    about = "Inspect, convert and import virtual machine disk images"
)]
struct Cli {
    /// No progress bars or informational lines on stderr (results and errors are still printed).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// More detail: -v info, -vv debug, -vvv trace log events on stderr (IMGPORT_LOG or RUST_LOG override);
    /// `validate -v` also lists the checks that passed.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show format, sizes and format-specific facts of an image.
    Info(commands::info::Args),
    /// Check an image's structure (exit 0 clean, 2 corruptions, 3 leaks only, 1 could not check).
    Check(commands::check::Args),
    /// Show the extent map: which ranges hold data, zeros, or nothing.
    Map(commands::map::Args),
    /// Convert an image to another format.
    Convert(commands::convert::Args),
    /// Compare the virtual contents of two images (exit 0 identical, 1 different, 2 error).
    Compare(commands::compare::Args),
    /// Print a content digest of the virtual disk, independent of the container format.
    Digest(commands::digest::Args),
    /// Cloud credentials: `auth whoami` shows which source is used (never the secret).
    #[command(subcommand)]
    Auth(commands::auth::Command),
    /// Read the guest inside an image: partitions, filesystems, OS, architecture, kernels, boot modes, agents.
    Inspect(commands::inspect::Args),
    /// Check that an image will import and boot on a cloud, say what to fix, and derive the import parameters
    /// (exit 0 ok, 1 problems found, 2 image unreadable).
    Validate(commands::validate::Args),
    /// A local Alibaba Cloud emulator (OSS; ECS, RAM and STS endpoints on the same port) for offline runs.
    #[command(subcommand)]
    Emulator(commands::emulator::Command),
    /// Import a disk image as a ready ECS custom image: validate, upload, register, wait, copy, share, clean up
    /// (`--cloud local`: the built-in local cloud, no account needed).
    Import(Box<commands::import::Args>),
    /// Custom images: list, show, wait, copy, share, tag, deprecate, delete, cancel, create.
    Images(commands::images::ImagesArgs),
    /// Instances: replace-disk puts an image on an instance's system disk.
    Instance(commands::images::InstanceArgs),
    /// Pipeline files (pipelines/*.toml): check, plan and run a source through import, copies, retention and a
    /// Packer-shaped manifest; a finished run with unchanged content reruns as a no-op.
    #[command(subcommand)]
    Pipeline(commands::pipeline::Command),
    /// Upload a file to OSS or S3: multipart, resumable, verified end to end.
    Upload(commands::upload::Args),
    /// Interrupted multipart uploads: list, abort, forget stale resume state.
    #[command(subcommand)]
    Uploads(commands::upload::UploadsCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(commands::completions::Args),
    /// Print the manual page (roff), or write one page per command into a folder with --out.
    Man(commands::man::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    output::set_verbosity(cli.quiet, cli.verbose);
    output::init_logging(cli.quiet, cli.verbose);
    tracing::debug!(version = env!("IMGPORT_VERSION"), "imgport starting");
    let code = match cli.command {
        Command::Info(a) => commands::info::run(a),
        Command::Check(a) => commands::check::run(a),
        Command::Map(a) => commands::map::run(a),
        Command::Convert(a) => commands::convert::run(a),
        Command::Compare(a) => commands::compare::run(a),
        Command::Digest(a) => commands::digest::run(a),
        Command::Auth(c) => commands::auth::run(c),
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Validate(a) => commands::validate::run(a),
        Command::Emulator(c) => commands::emulator::run(c),
        Command::Import(a) => commands::import::run(*a),
        Command::Images(a) => commands::images::run(a),
        Command::Instance(a) => commands::images::run_instance(a),
        Command::Pipeline(c) => commands::pipeline::run(c),
        Command::Upload(a) => commands::upload::run(a),
        Command::Uploads(c) => commands::upload::run_uploads(c),
        Command::Completions(a) => commands::completions::run(a, Cli::command()),
        Command::Man(a) => commands::man::run(a, Cli::command()),
    };
    // A command stopped by SIGINT, SIGTERM or SIGHUP exits 128 + the signal, whatever error it stopped with.
    let code = if code != 0 && signals::received().is_some() { signals::exit_code() } else { code };
    ExitCode::from(code)
}
