//! Shared output helpers: errors on stderr, JSON on stdout, human sizes, the progress bar.

use imgport_disk::{Control, Error};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::{IsTerminal, Write};

/// `println!` (colour-aware, see [`write_line`]) that survives a reader going away: `imgport map IMAGE | head -1` ends quietly, as ripgrep
/// does, instead of panicking on the closed pipe. Every line a command prints to stdout goes through it.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::output::write_line(format_args!($($arg)*)) };
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
    if !(show && std::io::stderr().is_terminal()) {
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
