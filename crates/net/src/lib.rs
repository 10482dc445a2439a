//! The network layer under the storage and cloud clients.
//!
//! - [`http`]: the one way to build an HTTP client (rustls, timeouts, no redirects, `imgport/<version>`).
//! - [`retry`]: how failures are classed ([`RetryClass`], [`Retryable`]) and the loop that retries them
//!   ([`RetryPolicy`]): bounded attempts and time, backoff with full jitter, longer waits when throttled.
//! - [`skew`]: the offset between our clock and a service's, learnt from its answers and applied when signing.
//!
//! Requests are reported as `tracing` events at debug level (operation, status, request id, attempt); they
//! never carry a secret, a signature or an `Authorization` header.

pub mod http;
pub mod retry;
pub mod skew;

pub use retry::{RetryClass, RetryPolicy, Retryable};
pub use skew::ClockOffset;
