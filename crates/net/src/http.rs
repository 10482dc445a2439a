//! HTTP clients: rustls only, bounded connect and read times, redirects refused, a versioned user agent.

use std::time::Duration;

/// The `User-Agent` of every request: `imgport/<version>`.
pub const USER_AGENT: &str = concat!("imgport/", env!("CARGO_PKG_VERSION"));

/// What a client needs beyond the defaults every imgport client shares.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time to open a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Longest silence while reading an answer.
    pub read_timeout: Option<Duration>,
    /// Whole-request time, connect to last byte.
    pub total_timeout: Option<Duration>,
    /// Idle connections kept per host for reuse (parallel uploads keep many).
    pub idle_per_host: Option<usize>,
}

impl ClientOptions {
    pub fn new(connect_timeout: Duration) -> Self {
        ClientOptions { connect_timeout, read_timeout: None, total_timeout: None, idle_per_host: None }
    }

    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.read_timeout = Some(d);
        self
    }

    pub fn total_timeout(mut self, d: Duration) -> Self {
        self.total_timeout = Some(d);
        self
    }

    pub fn idle_per_host(mut self, n: usize) -> Self {
        self.idle_per_host = Some(n);
        self
    }

    /// The client. Redirects are refused: a signed request must not be replayed to another host.
    pub fn build(&self) -> Result<reqwest::Client, BuildError> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(self.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT);
        if let Some(d) = self.read_timeout {
            b = b.read_timeout(d);
        }
        if let Some(d) = self.total_timeout {
            b = b.timeout(d);
        }
        if let Some(n) = self.idle_per_host {
            b = b.pool_max_idle_per_host(n);
        }
        b.build().map_err(|e| BuildError(e.to_string()))
    }
}

/// The TLS backend or the system configuration cannot give a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(pub String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot build an HTTP client: {}", self.0)
    }
}

impl std::error::Error for BuildError {}

/// Describes a transport failure: its kind (`timeout`, `connect`, `body`, `request`) and every cause, so
/// "connection refused" or a certificate error reaches the user. reqwest's message names the URL: a caller whose
/// query string is signed (RPC V1 carries the signature and a session token there) passes `e.without_url()`.
pub fn describe_transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    let mut msg = format!("{kind}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_names_the_version() {
        assert_eq!(USER_AGENT, format!("imgport/{}", env!("CARGO_PKG_VERSION")));
        assert!(ClientOptions::new(Duration::from_secs(1)).read_timeout(Duration::from_secs(2)).build().is_ok());
    }
}
