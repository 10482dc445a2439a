//! One error type for the cloud calls and waits, with a stable [`ErrorKind`] (for exit codes and `--json`) and, where
//! the code is known, [`Advice`]: the cause in plain words and the fix.

use crate::advice::{self, Advice};
use imgport_auth::rpc::RpcError;

/// What went wrong, in words that stay the same across releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The service refused the call (its code, message and RequestId are in the error).
    Service,
    /// No answer from the service, after retries.
    Transport,
    /// An answer that does not read as the documented response.
    InvalidResponse,
    /// No credentials, or the configured source failed.
    Credentials,
    /// The image (import, copy or create) ended CreateFailed, or its task Failed.
    CreateFailed,
    /// The wait's time ran out with the image still in flight.
    TimedOut,
    /// The image or its task vanished or was cancelled while waited for.
    Cancelled,
    /// A request imgport refuses to send (a parameter out of range).
    InvalidArgument,
}

impl ErrorKind {
    /// The kind as a stable snake_case word.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Service => "service",
            ErrorKind::Transport => "transport",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::Credentials => "credentials",
            ErrorKind::CreateFailed => "create_failed",
            ErrorKind::TimedOut => "timed_out",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::InvalidArgument => "invalid_argument",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// A call failed.
    #[error("{error}")]
    Api { error: RpcError, advice: Option<Advice> },
    /// The image ended CreateFailed (or its task Failed): `code` and `message` are the task's or the image's.
    #[error("image {image_id} in {region} failed: {}", failure(code, message))]
    CreateFailed { region: String, image_id: String, code: String, message: String, advice: Option<Advice> },
    #[error("image {image_id} in {region} is still {status} at {progress}% after {waited_seconds} s")]
    TimedOut { region: String, image_id: String, status: String, progress: u64, waited_seconds: u64 },
    #[error("image {image_id} in {region}: {reason}")]
    Cancelled { region: String, image_id: String, reason: String },
    #[error("{0}")]
    InvalidArgument(String),
}

fn failure(code: &str, message: &str) -> String {
    match (code.is_empty(), message.is_empty()) {
        (true, true) => "no reason given".to_string(),
        (false, true) => code.to_string(),
        (true, false) => message.to_string(),
        (false, false) => format!("{code}: {message}"),
    }
}

impl From<RpcError> for CloudError {
    fn from(error: RpcError) -> Self {
        let advice = error.code().and_then(advice::for_code);
        CloudError::Api { error, advice }
    }
}

impl CloudError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CloudError::Api { error, .. } => match error.kind() {
                imgport_auth::ErrorKind::Service => ErrorKind::Service,
                imgport_auth::ErrorKind::Transport => ErrorKind::Transport,
                imgport_auth::ErrorKind::InvalidResponse => ErrorKind::InvalidResponse,
                _ => ErrorKind::Credentials,
            },
            CloudError::CreateFailed { .. } => ErrorKind::CreateFailed,
            CloudError::TimedOut { .. } => ErrorKind::TimedOut,
            CloudError::Cancelled { .. } => ErrorKind::Cancelled,
            CloudError::InvalidArgument(_) => ErrorKind::InvalidArgument,
        }
    }

    /// The service's error code, for an API error or a failed image.
    pub fn code(&self) -> Option<&str> {
        match self {
            CloudError::Api { error, .. } => error.code(),
            CloudError::CreateFailed { code, .. } if !code.is_empty() => Some(code),
            _ => None,
        }
    }

    /// The cause and the fix, when the code is one imgport knows.
    pub fn advice(&self) -> Option<&Advice> {
        match self {
            CloudError::Api { advice, .. } | CloudError::CreateFailed { advice, .. } => advice.as_ref(),
            _ => None,
        }
    }

    /// Trying again later may succeed: no answer, throttling or a server error that outlasted the client's own
    /// retries.
    pub fn is_transient(&self) -> bool {
        use imgport_net::retry::{RetryClass, Retryable};
        match self {
            CloudError::Api { error, .. } => error.retry_class() != RetryClass::Fatal,
            _ => false,
        }
    }

    /// The same error with `note` after the service's message (what the caller knows that the service did not
    /// say); only a service's answer or a failed image takes one.
    pub fn with_note(self, note: &str) -> CloudError {
        match self {
            CloudError::Api { error: RpcError::Service(mut e), advice } => {
                e.message = format!("{} ({note})", e.message);
                CloudError::Api { error: RpcError::Service(e), advice }
            }
            CloudError::CreateFailed { region, image_id, code, message, advice } => {
                let message = format!("{message} ({note})");
                CloudError::CreateFailed { region, image_id, code, message, advice }
            }
            e => e,
        }
    }

    /// The service's RequestId, for support.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            CloudError::Api { error, .. } => error.request_id(),
            _ => None,
        }
    }
}
