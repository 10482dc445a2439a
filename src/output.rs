//! Shared output helpers: errors on stderr, JSON on stdout, human sizes, the progress bar, and the global
//! `-q`/`-v` setting with the log subscriber it configures.

use imgport_disk::{Control, Error};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);
static VERBOSITY: AtomicU8 = AtomicU8::new(0);

/// Records the global `-q` / `-v` flags once, before a command runs; commands read them through [`quiet`],
/// [`verbosity`] and [`progress_enabled`].
pub fn set_verbosity(quiet: bool, verbose: u8) {
    QUIET.store(quiet, Ordering::Relaxed);
    VERBOSITY.store(verbose, Ordering::Relaxed);
}

/// `-q`: no progress bars and no informational lines on stderr (results and errors are still printed).
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// How many times `-v` was given.
pub fn verbosity() -> u8 {
    VERBOSITY.load(Ordering::Relaxed)
}

/// `-v` given at least once (`validate` then also lists passed checks and evidence).
pub fn verbose() -> bool {
    verbosity() > 0
}

/// Whether a progress bar may be drawn: only on a terminal, and never with `-q`.
pub fn progress_enabled() -> bool {
    !quiet() && std::io::stderr().is_terminal()
}

/// An informational line on stderr, left out with `-q`. A closed or broken stderr (the terminal gone after
/// SIGHUP, `2>&1 | head`) loses the line instead of panicking as `eprintln!` would.
macro_rules! note {
    ($($arg:tt)*) => {
        if !$crate::output::quiet() {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), $($arg)*);
        }
    };
}

/// The environment variables that override the log filter, in order (`RUST_LOG` syntax: `debug`,
/// `imgport_storage=trace,warn`).
pub const LOG_ENV: [&str; 2] = ["IMGPORT_LOG", "RUST_LOG"];

/// The log filter for a verbosity: warnings by default, errors only with `-q`; `-v` info, `-vv` debug and
/// `-vvv` trace for imgport's own crates (every target starting with `imgport`), warnings for the others.
pub fn log_filter(quiet: bool, verbose: u8) -> String {
    let level = match (quiet, verbose) {
        (true, _) => return "error".to_string(),
        (false, 0) => return "warn".to_string(),
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    format!("warn,imgport={level}")
}

/// Installs the `tracing` subscriber that writes library events to stderr. The first non-empty variable of
/// [`LOG_ENV`] overrides the level from `-q`/`-v`; a filter that does not parse is reported and the flags' level
/// is used instead. Libraries only emit events: this binary is the one place that decides where they go.
pub fn init_logging(quiet: bool, verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let from_flags = log_filter(quiet, verbose);
    let from_env = LOG_ENV.iter().find_map(|name| {
        let value = std::env::var(name).ok().filter(|v| !v.trim().is_empty())?;
        Some((*name, value))
    });
    let filter = match from_env {
        Some((name, value)) => EnvFilter::try_new(&value).unwrap_or_else(|e| {
            eprintln!("imgport: warning: ignoring {name}={value:?}: {e}");
            EnvFilter::new(&from_flags)
        }),
        None => EnvFilter::new(&from_flags),
    };
    // try_init: a second subscriber (none is expected) is not worth failing a command for.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// `println!` (colour-aware, see [`write_line`]) that survives a reader going away: `imgport map IMAGE | head -1` ends quietly, as ripgrep
/// does, instead of panicking on the closed pipe. Every line a command prints to stdout goes through it.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::output::write_line(format_args!($($arg)*)) };
}

/// [`outln!`] for lines that hold names read from an image (labels, partition names, subvolume paths, hostnames):
/// their control characters are shown escaped ([`printable`]), so an image cannot drive the terminal.
macro_rules! guestln {
    ($($arg:tt)*) => { $crate::output::write_line(format_args!("{}", $crate::output::printable(&format!($($arg)*)))) };
}

/// `text` with each control character shown as its escape (`\u{1b}`, `\n`).
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c.is_control() {
            true => out.extend(c.escape_default()),
            false => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Write one line to stdout. A closed pipe means nobody reads any more: exit 0 at once (nothing is left to
/// clean up, stdout is written after the work is done or, for `map`, is the work). Any other write error
/// (a full disk behind a redirect) is reported and exits 1 rather than losing output silently
/// ([`stdout_failed`]).
pub fn write_line(args: std::fmt::Arguments) {
    // anstream drops colour codes when stdout is not a terminal (validate's styled findings).
    let mut out = anstream::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        stdout_failed(e);
    }
}

/// Write bytes to stdout as they are (a generated script or page), with [`write_line`]'s handling of a closed
/// pipe and other write errors.
pub fn write_stdout(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        stdout_failed(e);
    }
}

/// Stop after a failed write to stdout: quietly (exit 0) when the reader closed the pipe, else with the error.
pub fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("imgport: error: cannot write to stdout: {e}");
    std::process::exit(1);
}

pub fn print_error(e: &Error) {
    eprintln!("imgport: error: {e}");
}

pub fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => outln!("{s}"),
        Err(e) => eprintln!("imgport: error: cannot encode JSON: {e}"),
    }
}

/// "4 GiB (4294967296 bytes)" style sizes, as qemu-img prints them.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.3} {}", UNITS[unit])
    }
}

/// A Control whose progress drives a bar on stderr (only when stderr is a terminal) and whose cancel flag
/// is set by Ctrl-C, SIGTERM or SIGHUP (src/signals.rs; the exit code then says which).
pub fn control_with_progress(total: u64, show: bool) -> (Control, Option<ProgressBar>) {
    let mut ctl = Control::new();
    // A second signal while the first is handled is ignored; the operation stops at the next chunk.
    crate::signals::cancel_on_signal(ctl.cancel_flag());
    if !(show && progress_enabled()) {
        return (ctl, None);
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}") {
        bar.set_style(style);
    }
    let b = bar.clone();
    ctl = ctl.with_progress(move |pos| b.set_position(pos));
    (ctl, Some(bar))
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(super::printable("root"), "root");
        assert_eq!(super::printable("@/\u{1b}[2Jx\n\t\u{7f}"), "@/\\u{1b}[2Jx\\n\\t\\u{7f}");
        assert_eq!(super::printable("é ü 名"), "é ü 名");
    }
}
