//! SIGINT, SIGTERM and SIGHUP all mean "stop cleanly": Ctrl-C, CI cancellation, systemd and Kubernetes (SIGTERM)
//! and a closed terminal (SIGHUP) get the same treatment: temporary outputs removed, upload resume state kept,
//! and the exit code 128 + the signal's number (130, 143, 129).
//!
//! Commands that can stop cleanly watch for them: [`cancel_on_signal`] sets a flag the work checks (the disk
//! engine's `Control`), [`wait`] is a future to race the work against. Other commands keep the default action
//! (the process ends at once), since they leave nothing behind. Both use signal-hook-registry, as tokio does,
//! so their handlers coexist.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Once};

/// The signals that stop a command cleanly.
pub const STOP: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The first of them that arrived (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
static RECORD: Once = Once::new();

/// Registers `action` for every signal in [`STOP`]. `action` runs in the signal handler: atomics only.
fn register(action: impl Fn(libc::c_int) + Sync + Send + Clone + 'static) {
    for sig in STOP {
        let action = action.clone();
        // SAFETY: the actions registered here only store to atomics, which is async-signal-safe; no other code
        // of this process installs handlers for these signals except through the same registry (tokio).
        let r = unsafe { signal_hook_registry::register(sig, move || action(sig)) };
        if let Err(e) = r {
            let _ = eprintln_safe(&format!("imgport: warning: cannot watch for signal {sig}: {e}"));
        }
    }
}

fn record() {
    RECORD.call_once(|| {
        register(|sig| {
            let _ = RECEIVED.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
        })
    });
}

/// From now on, SIGINT, SIGTERM and SIGHUP set `flag` (and are recorded for the exit code) instead of ending
/// the process. A second signal while the first is handled changes nothing: the work stops at its next check.
pub fn cancel_on_signal(flag: Arc<AtomicBool>) {
    record();
    register(move |_| flag.store(true, Ordering::SeqCst));
}

/// Completes when SIGINT, SIGTERM or SIGHUP arrives (or has arrived since [`cancel_on_signal`] or an earlier
/// `wait` started watching), with its number. Needs a Tokio runtime with I/O enabled.
pub async fn wait() -> libc::c_int {
    use tokio::signal::unix::{signal, SignalKind};
    record();
    let mut streams = Vec::new();
    for sig in STOP {
        match signal(SignalKind::from_raw(sig)) {
            Ok(s) => streams.push(s),
            Err(e) => {
                let _ = eprintln_safe(&format!("imgport: warning: cannot watch for signal {sig}: {e}"));
            }
        }
    }
    loop {
        if let Some(sig) = received() {
            return sig;
        }
        if streams.is_empty() {
            return std::future::pending().await;
        }
        // Any of them: the handler above has recorded which one by the time a stream wakes up.
        let woken = streams.iter_mut().map(|s| Box::pin(s.recv()));
        let _ = futures_select_all(woken).await;
    }
}

/// The first of a set of futures to complete (a tiny `select_all`, to avoid a dependency for it).
async fn futures_select_all<F: std::future::Future + Unpin>(futs: impl Iterator<Item = F>) -> F::Output {
    let mut futs: Vec<F> = futs.collect();
    std::future::poll_fn(move |cx| {
        for f in futs.iter_mut() {
            if let std::task::Poll::Ready(v) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// The stopping signal that arrived, if any.
pub fn received() -> Option<libc::c_int> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// The exit code of a command stopped by a signal: 128 + its number; 130 (SIGINT's) when none was recorded.
pub fn exit_code() -> u8 {
    u8::try_from(128 + received().unwrap_or(libc::SIGINT)).unwrap_or(130)
}

/// The signal's name for messages.
pub fn name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Writes a line to stderr without panicking: after SIGHUP the terminal may be gone, and the cleanup after it
/// must still run.
pub fn eprintln_safe(line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    err.write_all(line.as_bytes())?;
    err.write_all(b"\n")
}
