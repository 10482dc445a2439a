//! The state every service shares: the OSS store, the accepted credentials, the fault rules, the request log,
//! the clock and the regions served.

use crate::credentials::CredentialStore;
use crate::faults::Faults;
use crate::log::RequestLog;
use crate::oss::store::Store;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Shared by all requests; handed to RPC services through [`crate::rpc::RpcContext`].
pub struct EmulatorState {
    /// Served regions; the first is the default (where a bucket goes when nothing else says).
    pub regions: Vec<String>,
    /// The emulated account's id (bucket owner, image owner).
    pub account_id: String,
    pub data_dir: PathBuf,
    pub store: Arc<Store>,
    pub credentials: Arc<CredentialStore>,
    pub faults: Faults,
    pub log: RequestLog,
    /// The largest body a single PutObject or UploadPart accepts (5 GiB, as OSS).
    pub max_put_size: u64,
    /// How long a request body may stall before the connection is closed.
    pub idle_timeout: std::time::Duration,
    /// The background work (imports, copies) and the stop flag that [`crate::RunningEmulator::shutdown`] sets.
    pub background: Arc<Background>,
}

/// The emulator's background threads and its stop flag. Shutdown sets the flag (waiting for any state write under
/// way to end), wakes the threads and waits, for a bounded time, for them to end; a thread still busy then (reading
/// a large object) finds the flag at its next step and ends without writing anything.
#[derive(Debug, Default)]
pub struct Background {
    /// True once the emulator is stopping. Held shared for the length of every state write, so that once
    /// [`Background::stop`] has set it no write is under way and none starts.
    stopped: RwLock<bool>,
    /// Threads running.
    running: Mutex<usize>,
    /// Signalled when a thread ends and when the flag is set (waking sleepers).
    changed: Condvar,
}

/// Counts a thread out when it ends, by any way (a panic included).
struct Running<'a>(&'a Background);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut n = self.0.running.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        self.0.changed.notify_all();
    }
}

impl Background {
    pub fn stopped(&self) -> bool {
        *self.stopped.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `write` unless the emulator is stopping (then `None`); no stop completes while it runs.
    pub fn unless_stopped<T>(&self, write: impl FnOnce() -> T) -> Option<T> {
        let stopped = self.stopped.read().unwrap_or_else(|p| p.into_inner());
        (!*stopped).then(write)
    }

    /// Starts `work` on a named thread counted as running until it ends. Fails when the emulator is stopping or
    /// the thread cannot be created.
    pub fn spawn(self: &Arc<Self>, name: &str, work: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        if self.stopped() {
            return Err(std::io::Error::other("the emulator is stopping"));
        }
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        let me = self.clone();
        let started = std::thread::Builder::new().name(name.into()).spawn(move || {
            let _running = Running(&me);
            work();
        });
        if let Err(e) = started {
            drop(Running(self));
            return Err(e);
        }
        Ok(())
    }

    /// Sleeps for `d`, or less when the emulator stops meanwhile; false when it is stopping.
    pub fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let mut n = self.running.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.stopped() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            n = self.changed.wait_timeout(n, until - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Sets the stop flag (after any state write under way) and waits up to `wait` for the threads to end; true
    /// when they all did.
    pub fn stop(&self, wait: Duration) -> bool {
        *self.stopped.write().unwrap_or_else(|p| p.into_inner()) = true;
        let until = Instant::now() + wait;
        let mut n = self.running.lock().unwrap_or_else(|p| p.into_inner());
        self.changed.notify_all();
        while *n > 0 {
            let now = Instant::now();
            if now >= until {
                return false;
            }
            n = self.changed.wait_timeout(n, until - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }

    /// Threads still running.
    pub fn running(&self) -> usize {
        *self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl EmulatorState {
    /// The server's clock: the real time plus any injected skew (unix seconds).
    pub fn now(&self) -> i64 {
        imgport_auth::time::now() + self.faults.clock_skew()
    }

    pub fn default_region(&self) -> &str {
        self.regions.first().map(String::as_str).unwrap_or("cn-hangzhou")
    }

    pub fn serves_region(&self, region: &str) -> bool {
        self.regions.iter().any(|r| r == region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_wakes_sleepers_waits_for_them_and_refuses_new_work() {
        let b = Arc::new(Background::default());
        let woke = Arc::new(Mutex::new(None));
        let w = woke.clone();
        let b2 = b.clone();
        b.spawn("test-sleeper", move || {
            let slept = b2.sleep(Duration::from_secs(600));
            *w.lock().expect("lock") = Some(slept);
        })
        .expect("spawn");
        assert_eq!(b.unless_stopped(|| 7), Some(7));
        let began = Instant::now();
        assert!(b.stop(Duration::from_secs(10)), "the sleeper ended");
        assert!(began.elapsed() < Duration::from_secs(5));
        assert_eq!(*woke.lock().expect("lock"), Some(false));
        assert_eq!(b.running(), 0);
        assert!(b.stopped());
        assert_eq!(b.unless_stopped(|| 7), None);
        assert!(b.spawn("test-late", || {}).is_err());
        assert!(!b.sleep(Duration::from_millis(1)));
    }

    #[test]
    fn stop_gives_up_on_a_busy_thread_after_the_wait() {
        let b = Arc::new(Background::default());
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        b.spawn("test-busy", move || {
            let _ = rx.recv_timeout(Duration::from_secs(10));
        })
        .expect("spawn");
        assert!(!b.stop(Duration::from_millis(50)));
        assert_eq!(b.running(), 1);
        drop(tx);
        assert!(b.stop(Duration::from_secs(10)));
    }
}
