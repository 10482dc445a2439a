//! Retrying failed requests: each error says how it should be handled ([`Retryable`]); a [`RetryPolicy`] runs an
//! operation until it succeeds, fails for good, or its attempts or time run out.
//!
//! Waits use full jitter (a random time up to an exponentially growing cap), so clients that failed together
//! do not retry together; a throttled request waits on a larger cap.

use crate::skew::ClockOffset;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How a failed request should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// Transient (network, timeout, 5xx, 408): back off and retry.
    Retry,
    /// The service asks to slow down (503 SlowDown, 429, Throttling): back off longer, lower concurrency, retry.
    Throttle,
    /// Our clock is off: correct the offset from the server's `Date` and retry at once.
    ClockSkew,
    /// The credentials were refused although they look valid (expired or revoked token): the client has told
    /// its provider to forget them; retry with fresh ones.
    RefreshCredentials,
    /// Retrying the request cannot help.
    Fatal,
}

/// An error that knows how it should be retried.
pub trait Retryable {
    fn retry_class(&self) -> RetryClass;

    /// The server's clock (unix seconds) when it answered, for [`RetryClass::ClockSkew`].
    fn server_time(&self) -> Option<i64> {
        None
    }

    /// The service's id of the failed request, for events and support.
    fn request_id(&self) -> Option<&str> {
        None
    }
}

/// Attempts, time and waits of a retried operation.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least one is made).
    pub max_attempts: u32,
    /// No retry starts after this much time since the first attempt.
    pub deadline: Option<Duration>,
    /// The cap of the first wait; it doubles with each attempt.
    pub base_delay: Duration,
    /// No wait is longer.
    pub max_delay: Duration,
    /// A throttled attempt waits as if this many more attempts had failed.
    pub throttle_steps: u32,
    /// Attempts in all while the failures are throttling (`max_attempts` when lower, as by default): a service
    /// that asks to slow down may be waited out longer than one that fails, as ECS counts its limits per minute
    /// (a call throttled in minute T goes through in T+1). The deadline still applies.
    pub throttle_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            deadline: None,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
            throttle_steps: 2,
            throttle_attempts: 0,
        }
    }
}

/// A pseudo-random number for jitter: SplitMix64 over a process-wide counter seeded from the clock. It must
/// spread retries, not be unpredictable.
fn random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64);
    let mut z = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) ^ seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl RetryPolicy {
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    pub fn with_throttle_attempts(mut self, n: u32) -> Self {
        self.throttle_attempts = n;
        self
    }

    pub fn with_deadline(mut self, d: Duration) -> Self {
        self.deadline = Some(d);
        self
    }

    /// The cap of the wait after `failures` failed attempts: `base_delay * 2^(failures - 1)`, at most `max_delay`.
    pub fn cap(&self, failures: u32) -> Duration {
        let doubled = self.base_delay.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        doubled.min(self.max_delay)
    }

    /// The wait before the next attempt after `failures` failed ones of class `class`: uniformly random up to the
    /// cap (full jitter); none after a corrected clock.
    pub fn delay(&self, class: RetryClass, failures: u32) -> Duration {
        let cap = match class {
            RetryClass::ClockSkew | RetryClass::Fatal => return Duration::ZERO,
            RetryClass::Throttle => self.cap(failures + self.throttle_steps),
            // The wait starts short (the provider already fetched fresh credentials) and grows in case the fresh
            // ones are refused too (a token service a little behind).
            RetryClass::RefreshCredentials => self.cap(failures.saturating_sub(1)),
            RetryClass::Retry => self.cap(failures),
        };
        let millis = cap.as_millis() as u64;
        Duration::from_millis(random() % (millis + 1))
    }

    /// Runs `op` (given the attempt number, from 1) until it succeeds, fails with a [`RetryClass::Fatal`] error,
    /// or the attempts or the deadline run out; returns the last error then. `operation` names the request in
    /// events.
    pub async fn run<T, E, F, Fut>(&self, operation: &str, op: F) -> Result<T, E>
    where
        E: Retryable,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_with(operation, Hooks::default(), op).await
    }

    /// [`RetryPolicy::run`] with what the caller does between attempts: correct a clock, count retries, lower
    /// concurrency.
    pub async fn run_with<T, E, F, Fut>(&self, operation: &str, mut hooks: Hooks<'_, E>, mut op: F) -> Result<T, E>
    where
        E: Retryable,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let err = match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            // A skewed clock is retried at once, so only when the answer says what the time is: without it the
            // retry would be signed with the same clock and refused again, max_attempts times back to back.
            let class = match err.retry_class() {
                RetryClass::ClockSkew if err.server_time().is_none() => RetryClass::Fatal,
                c => c,
            };
            let request_id = err.request_id().unwrap_or("");
            let wait = self.delay(class, attempt);
            let out_of_time = self.deadline.is_some_and(|d| started.elapsed() + wait >= d);
            let attempts = match class {
                RetryClass::Throttle => self.throttle_attempts.max(self.max_attempts),
                _ => self.max_attempts,
            };
            if class == RetryClass::Fatal || attempt >= attempts.max(1) || out_of_time {
                tracing::debug!(operation, attempt, ?class, request_id, out_of_time, "request failed; not retried");
                return Err(err);
            }
            tracing::debug!(operation, attempt, ?class, request_id, wait_ms = wait.as_millis() as u64, "retrying");
            if class == RetryClass::ClockSkew {
                if let (Some(clock), Some(t)) = (hooks.clock, err.server_time()) {
                    clock.correct(t);
                }
            }
            if let Some(f) = hooks.on_retry.as_mut() {
                f(&err, class);
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Called with each error that is retried, and its class, before the wait.
pub type OnRetry<'a, E> = Box<dyn FnMut(&E, RetryClass) + Send + 'a>;

/// What [`RetryPolicy::run_with`] does between attempts.
pub struct Hooks<'a, E> {
    /// Corrected from the server's time on [`RetryClass::ClockSkew`].
    pub clock: Option<&'a ClockOffset>,
    pub on_retry: Option<OnRetry<'a, E>>,
}

impl<E> Default for Hooks<'_, E> {
    fn default() -> Self {
        Hooks { clock: None, on_retry: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[derive(Debug, PartialEq)]
    struct Failure(RetryClass, Option<i64>);

    impl Retryable for Failure {
        fn retry_class(&self) -> RetryClass {
            self.0
        }
        fn server_time(&self) -> Option<i64> {
            self.1
        }
    }

    fn quick() -> RetryPolicy {
        RetryPolicy { base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(4), ..Default::default() }
    }

    #[test]
    fn waits_stay_under_the_growing_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.cap(1), Duration::from_millis(200));
        assert_eq!(p.cap(3), Duration::from_millis(800));
        assert_eq!(p.cap(30), Duration::from_secs(20));
        for failures in 1..12 {
            assert!(p.delay(RetryClass::Retry, failures) <= p.cap(failures));
            assert!(p.delay(RetryClass::Throttle, failures) <= p.cap(failures + 2));
        }
        assert_eq!(p.delay(RetryClass::ClockSkew, 3), Duration::ZERO);
        // Full jitter: the waits spread over the range, not around one value.
        let waits: std::collections::BTreeSet<Duration> = (0..50).map(|_| p.delay(RetryClass::Retry, 5)).collect();
        assert!(waits.len() > 10, "{waits:?}");
    }

    #[tokio::test]
    async fn retries_until_success_and_stops_on_fatal() {
        let calls = AtomicU32::new(0);
        let r: Result<u32, Failure> = quick()
            .run("op", |attempt| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if attempt < 3 {
                        Err(Failure(RetryClass::Retry, None))
                    } else {
                        Ok(attempt)
                    }
                }
            })
            .await;
        assert_eq!(r, Ok(3));
        let r: Result<(), Failure> = quick().run("op", |_| async { Err(Failure(RetryClass::Fatal, None)) }).await;
        assert_eq!(r, Err(Failure(RetryClass::Fatal, None)));
        let attempts = AtomicU32::new(0);
        let r: Result<(), Failure> = quick()
            .with_max_attempts(4)
            .run("op", |_| {
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Err(Failure(RetryClass::Throttle, None)) }
            })
            .await;
        assert!(r.is_err());
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
        // Throttling is tried longer than failures, when the policy says so.
        let policy = quick().with_max_attempts(3).with_throttle_attempts(8);
        let (throttled, failed) = (AtomicU32::new(0), AtomicU32::new(0));
        let r: Result<(), Failure> = policy
            .run("op", |_| {
                throttled.fetch_add(1, Ordering::SeqCst);
                async { Err(Failure(RetryClass::Throttle, None)) }
            })
            .await;
        assert!(r.is_err());
        let r: Result<(), Failure> = policy
            .run("op", |_| {
                failed.fetch_add(1, Ordering::SeqCst);
                async { Err(Failure(RetryClass::Retry, None)) }
            })
            .await;
        assert!(r.is_err());
        assert_eq!((throttled.load(Ordering::SeqCst), failed.load(Ordering::SeqCst)), (8, 3));
    }

    #[tokio::test]
    async fn deadline_stops_retries() {
        let p = RetryPolicy { base_delay: Duration::from_millis(40), max_delay: Duration::from_millis(40), ..quick() }
            .with_max_attempts(1000)
            .with_deadline(Duration::from_millis(200));
        let started = Instant::now();
        let r: Result<(), Failure> = p.run("op", |_| async { Err(Failure(RetryClass::Retry, None)) }).await;
        assert!(r.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn clock_skew_corrects_the_offset_and_hooks_see_each_retry() {
        let clock = ClockOffset::new();
        let ahead = crate::skew::system_now() + 3600;
        let mut seen = Vec::new();
        let r: Result<(), Failure> = quick()
            .run_with(
                "op",
                Hooks { clock: Some(&clock), on_retry: Some(Box::new(|_: &Failure, c| seen.push(c))) },
                |attempt| async move {
                    match attempt {
                        1 => Err(Failure(RetryClass::ClockSkew, Some(ahead))),
                        _ => Ok(()),
                    }
                },
            )
            .await;
        assert!(r.is_ok());
        assert_eq!(seen, vec![RetryClass::ClockSkew]);
        assert!((clock.offset() - 3600).abs() <= 2, "{}", clock.offset());
    }

    #[tokio::test]
    async fn clock_skew_without_the_server_time_is_not_retried() {
        let calls = AtomicU32::new(0);
        let r: Result<(), Failure> = quick()
            .run("op", |_| {
                calls.fetch_add(1, Ordering::Relaxed);
                async { Err(Failure(RetryClass::ClockSkew, None)) }
            })
            .await;
        assert_eq!(r, Err(Failure(RetryClass::ClockSkew, None)));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}
