//! Where credentials come from: each source is a [`CredentialsProvider`]; [`DefaultChain`] tries them in the
//! official SDKs' order. Temporary credentials are cached and refreshed before they expire.
//!
//! Providers are async (tokio): the storage and cloud clients are async, and a blocking HTTP client cannot be
//! used from inside a runtime, so one async provider serves both them and the one-shot commands.

mod chain;
mod cli_profile;
mod env;
mod imds;
mod ini;
mod oidc;
pub mod sts;

pub use chain::DefaultChain;
pub use cli_profile::CliProfile;
pub use env::from_env;
pub use imds::{instance_region, Imds};
pub use ini::IniProfile;
pub use oidc::Oidc;
pub use sts::{AssumeRole, StsClient};

use crate::Credentials;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Unix seconds now; swapped out in tests to move time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(crate::time::now)
}

/// Refresh temporary credentials when less than this many seconds of validity remain.
pub const REFRESH_MARGIN: i64 = 180;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// A source is configured but could not produce credentials. Messages never hold secrets.
    #[error("{provider}: {message}")]
    Failed { provider: String, message: String },
    /// No source in the chain produced credentials; each entry says what was tried and why it failed.
    #[error("no credentials found ({})", .0.join("; "))]
    NoneFound(Vec<String>),
}

impl CredentialsError {
    /// The error's stable kind.
    pub fn kind(&self) -> crate::ErrorKind {
        match self {
            CredentialsError::Failed { .. } => crate::ErrorKind::CredentialsFailed,
            CredentialsError::NoneFound(_) => crate::ErrorKind::CredentialsNotFound,
        }
    }
}

pub(crate) fn failed(provider: &str, message: impl Into<String>) -> CredentialsError {
    CredentialsError::Failed { provider: provider.to_string(), message: message.into() }
}

/// A source of credentials.
pub trait CredentialsProvider: Send + Sync {
    /// Current credentials; temporary ones are refreshed before they expire.
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>>;
    /// Which source this is (`env`, `cli_profile/RamRoleArn`, `ecs_ram_role` ...), for `auth whoami` and errors.
    fn name(&self) -> String;
    /// The service refused the credentials with this access key id (expired or revoked token) although they look
    /// valid here: forget them, so the next [`CredentialsProvider::credentials`] fetches new ones. Credentials
    /// cached since (another caller already refreshed) are kept. Sources without a cache have nothing to forget.
    fn invalidate<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, ()> {
        let _ = access_key_id;
        Box::pin(async {})
    }
}

/// Fixed credentials (environment, AK and StsToken profiles).
pub struct Static {
    creds: Credentials,
    name: String,
}

impl Static {
    pub fn new(creds: Credentials, name: impl Into<String>) -> Self {
        Static { creds, name: name.into() }
    }
}

impl CredentialsProvider for Static {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        let c = self.creds.clone();
        Box::pin(async move { Ok(c) })
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

/// Fetches a fresh set of temporary credentials (STS, instance metadata).
pub trait Fetch: Send + Sync {
    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>>;
}

/// Caches what a [`Fetch`] returns and fetches again when less than the margin of validity remains.
/// Concurrent callers wait for one refresh. When a refresh fails, credentials that have not yet expired are
/// still returned, so a brief STS or metadata outage does not break a long upload.
pub struct Refreshing<F: Fetch> {
    fetcher: F,
    name: String,
    cache: tokio::sync::Mutex<Option<Credentials>>,
    clock: Clock,
    margin: i64,
}

impl<F: Fetch> Refreshing<F> {
    pub fn new(fetcher: F, name: impl Into<String>, clock: Clock) -> Self {
        Refreshing { fetcher, name: name.into(), cache: tokio::sync::Mutex::new(None), clock, margin: REFRESH_MARGIN }
    }

    pub fn with_margin(mut self, seconds: i64) -> Self {
        self.margin = seconds;
        self
    }
}

impl<F: Fetch> CredentialsProvider for Refreshing<F> {
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(async move {
            let mut cache = self.cache.lock().await;
            let now = (self.clock)();
            if let Some(c) = cache.as_ref() {
                if c.expiration.is_none_or(|exp| exp - now > self.margin) {
                    return Ok(c.clone());
                }
            }
            match self.fetcher.fetch().await {
                Ok(fresh) => {
                    *cache = Some(fresh.clone());
                    Ok(fresh)
                }
                Err(e) => match cache.as_ref() {
                    Some(c) if c.expiration.is_some_and(|exp| exp > now) => Ok(c.clone()),
                    _ => Err(e),
                },
            }
        })
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn invalidate<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut cache = self.cache.lock().await;
            if cache.as_ref().is_some_and(|c| c.access_key_id == access_key_id) {
                *cache = None;
            }
        })
    }
}

/// An HTTP client for credential services: rustls, bounded connect and total times, no redirects.
pub(crate) fn http_client(
    provider: &str,
    connect: Duration,
    total: Duration,
) -> Result<reqwest::Client, CredentialsError> {
    imgport_net::http::ClientOptions::new(connect)
        .total_timeout(total)
        .build()
        .map_err(|e| failed(provider, e.to_string()))
}

/// A unique value for `SignatureNonce` / `x-acs-signature-nonce`: it must never repeat, not be unpredictable.
pub fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let seed = format!("{nanos}:{}:{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    crate::sign::sha256_hex(seed.as_bytes())[..32].to_string()
}

/// A default RoleSessionName, as the SDKs make one.
pub(crate) fn session_name(clock: &Clock) -> String {
    format!("imgport-{}", clock())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;
    use std::sync::Mutex;

    struct Counting {
        calls: Arc<AtomicU64>,
        lifetime: i64,
        clock: Clock,
        fail: Arc<Mutex<bool>>,
    }

    impl Fetch for Counting {
        fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                if *self.fail.lock().map_err(|_| failed("t", "poisoned"))? {
                    return Err(failed("test", "down"));
                }
                Ok(Credentials::new(format!("STS.{n}"), "s")
                    .with_token("t")
                    .with_expiration((self.clock)() + self.lifetime))
            })
        }
    }

    #[tokio::test]
    async fn refreshes_only_near_expiry() {
        let now = Arc::new(AtomicI64::new(1_000_000));
        let n2 = now.clone();
        let clock: Clock = Arc::new(move || n2.load(Ordering::SeqCst));
        let calls = Arc::new(AtomicU64::new(0));
        let fail = Arc::new(Mutex::new(false));
        let p = Refreshing::new(
            Counting { calls: calls.clone(), lifetime: 900, clock: clock.clone(), fail: fail.clone() },
            "t",
            clock,
        );
        let first = p.credentials().await.map(|c| c.access_key_id);
        assert_eq!(first.as_deref(), Ok("STS.0"));
        now.fetch_add(900 - REFRESH_MARGIN - 1, Ordering::SeqCst);
        assert_eq!(p.credentials().await.map(|c| c.access_key_id).as_deref(), Ok("STS.0"));
        now.fetch_add(2, Ordering::SeqCst);
        assert_eq!(p.credentials().await.map(|c| c.access_key_id).as_deref(), Ok("STS.1"));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // A failed refresh still serves unexpired credentials, and fails once they have expired.
        if let Ok(mut f) = fail.lock() {
            *f = true;
        }
        now.fetch_add(900 - REFRESH_MARGIN + 1, Ordering::SeqCst);
        assert_eq!(p.credentials().await.map(|c| c.access_key_id).as_deref(), Ok("STS.1"));
        now.fetch_add(REFRESH_MARGIN, Ordering::SeqCst);
        assert!(p.credentials().await.is_err());
    }

    #[tokio::test]
    async fn invalidate_forgets_only_the_refused_credentials() {
        let clock: Clock = Arc::new(|| 1_000_000);
        let calls = Arc::new(AtomicU64::new(0));
        let fail = Arc::new(Mutex::new(false));
        let p = Refreshing::new(
            Counting { calls: calls.clone(), lifetime: 3600, clock: clock.clone(), fail: fail.clone() },
            "t",
            clock,
        );
        let key = |r: Result<Credentials, CredentialsError>| r.map(|c| c.access_key_id);
        assert_eq!(key(p.credentials().await).as_deref(), Ok("STS.0"));
        // Long valid by their expiration, but refused: the next call fetches.
        p.invalidate("STS.0").await;
        assert_eq!(key(p.credentials().await).as_deref(), Ok("STS.1"));
        // A late report about the old key (another part in flight) keeps the fresh ones.
        p.invalidate("STS.0").await;
        assert_eq!(key(p.credentials().await).as_deref(), Ok("STS.1"));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Invalidated credentials are never served again, even when the refresh fails.
        if let Ok(mut f) = fail.lock() {
            *f = true;
        }
        p.invalidate("STS.1").await;
        assert!(p.credentials().await.is_err());
    }

    #[test]
    fn nonces_differ() {
        let a = nonce();
        assert_eq!(a.len(), 32);
        assert_ne!(a, nonce());
    }
}
