//! Clock skew: services refuse signatures more than a few minutes off their clock. The offset between the
//! local clock and a service's is learnt from its answers (its `Date`, or the time in a skew error) and added
//! to the local clock whenever a request is signed.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, from the system clock.
pub fn system_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// The seconds to add to the local clock to read a service's; shared by every request to that service.
#[derive(Debug, Default)]
pub struct ClockOffset(AtomicI64);

impl ClockOffset {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn offset(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// The service's time now, as far as we know it.
    pub fn now(&self) -> i64 {
        system_now() + self.offset()
    }

    /// From now on, read the clock as if it showed `server_time` at this moment.
    pub fn correct(&self, server_time: i64) {
        let offset = server_time - system_now();
        tracing::debug!(offset_seconds = offset, "clock offset corrected from the server's time");
        self.0.store(offset, Ordering::Relaxed);
    }

    /// Whether `server_time` is further than `tolerance` seconds from the corrected clock: a refusal without a
    /// code (HEAD answers carry no body) is a skew error when the clocks disagree that much.
    pub fn is_skewed(&self, server_time: i64, tolerance: i64) -> bool {
        (server_time - self.now()).abs() > tolerance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrects_and_detects_skew() {
        let c = ClockOffset::new();
        assert_eq!(c.offset(), 0);
        assert!(c.is_skewed(system_now() + 900, 600));
        c.correct(system_now() - 900);
        assert!((c.offset() + 900).abs() <= 1);
        assert!(!c.is_skewed(system_now() - 900, 600));
        assert!((c.now() - (system_now() - 900)).abs() <= 1);
    }
}
