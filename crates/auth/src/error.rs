//! The stable kind of every error this crate returns ([`crate::rpc::RpcError`],
//! [`crate::provider::CredentialsError`]), so callers map failures to exit codes or retries without matching text.

/// What went wrong, in words that stay the same across releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The service answered with an error (its code, message and RequestId are in the error).
    Service,
    /// No answer: connect, send, receive or timeout failures.
    Transport,
    /// An answer that does not read as the documented response.
    InvalidResponse,
    /// No credential source is configured or none produced credentials.
    CredentialsNotFound,
    /// A configured credential source failed (unreadable profile, refused role, metadata service down).
    CredentialsFailed,
}

impl ErrorKind {
    /// The kind as a stable snake_case word (for `--json` output and logs).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Service => "service",
            ErrorKind::Transport => "transport",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::CredentialsNotFound => "credentials_not_found",
            ErrorKind::CredentialsFailed => "credentials_failed",
        }
    }
}
