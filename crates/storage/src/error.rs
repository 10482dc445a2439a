//! Errors from the store, with the service's code, a stable [`ErrorKind`] and how a caller should react to each.

use std::fmt;

/// What went wrong, stable across releases and messages: callers (exit codes, reports) match on this, never on
/// text. More kinds may come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bucket, object or upload does not exist.
    NotFound,
    /// The credentials are valid but not allowed to do this.
    AccessDenied,
    /// No usable credentials, or the store refused them (unknown key, bad signature, expired token).
    InvalidCredentials,
    /// The store asked to slow down and the retries ran out.
    Throttled,
    /// The local clock is too far from the store's.
    ClockSkew,
    /// The store refused the request as invalid (part too small, bad argument, bad digest).
    InvalidRequest,
    /// The store failed (5xx) and the retries ran out.
    ServiceUnavailable,
    /// Another error code from the store.
    Service,
    /// No usable answer: connect, send, receive or timeout failures.
    Transport,
    /// An answer that does not make sense (missing headers, unparsable XML, mismatched checksums).
    Protocol,
    /// The store does not implement the operation.
    Unsupported,
    /// A local file could not be read or written (the source, the resume state).
    Io,
    /// The options do not fit the store or the source (part size, part count).
    InvalidArgument,
    /// The source changed while it was read, or the process producing it failed.
    Source,
    /// The stored object is not what was sent.
    Corrupt,
    /// Another process is running the same upload.
    Busy,
    /// The store no longer knows the multipart upload being resumed.
    UploadGone,
    /// A create-only write found the key taken (OSS `FileAlreadyExists`, S3 `PreconditionFailed` or
    /// `ConditionalRequestConflict`).
    AlreadyExists,
}

/// How a failed request should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// Transient (network, timeout, 5xx, 408): back off and retry.
    Retry,
    /// The store asks to slow down (503 SlowDown, 429, Throttling): back off, lower concurrency, retry.
    Throttle,
    /// Our clock is off: correct the offset from the server's `Date` and retry at once.
    ClockSkew,
    /// Temporary credentials expired: refresh them and retry.
    RefreshCredentials,
    /// The multipart upload is gone (`NoSuchUpload`): start a new one.
    RestartUpload,
    /// Retrying cannot help.
    Fatal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The store answered with an error status.
    Service {
        status: u16,
        code: String,
        message: String,
        request_id: String,
        /// The server's `Date` header (unix seconds), used to correct clock skew.
        server_time: Option<i64>,
        /// The request was signed with temporary (STS) credentials: an unknown access key id then means they
        /// were revoked or purged, and new ones may work.
        temporary_credentials: bool,
    },
    /// No usable answer: connect, send, receive or timeout failures.
    Transport(String),
    /// The credentials provider failed.
    Credentials(String),
    /// An answer that does not make sense (missing headers, unparsable XML, mismatched checksums).
    Protocol(String),
    /// The store does not implement the operation.
    Unsupported(String),
    /// The bytes read to be sent are not those whose checksums the request carries: the source changed.
    SourceChanged(String),
}

impl StorageError {
    pub fn code(&self) -> Option<&str> {
        match self {
            StorageError::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            StorageError::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the answer to a request that carried flexible checksum headers refuses them as unknown (a store
    /// older than them: 501 NotImplemented, or 400 InvalidArgument / InvalidRequest saying the checksum header
    /// is unsupported), where sending Content-MD5 instead can work. A checksum that does not match (BadDigest)
    /// or a malformed one is damage or a bug, never this.
    pub fn refuses_checksum(&self) -> bool {
        let StorageError::Service { status, code, message, .. } = self else { return false };
        let message = message.to_ascii_lowercase();
        let unknown = ["unsupported", "not supported", "not implemented", "unknown", "not recognized"]
            .iter()
            .any(|w| message.contains(w));
        match code.as_str() {
            "BadDigest" | "InvalidDigest" | "XAmzContentChecksumMismatch" => false,
            "NotImplemented" => true,
            "InvalidArgument" | "InvalidRequest" | "UnsupportedHeader" => {
                *status == 400 && message.contains("checksum") && unknown
            }
            _ => *status == 501,
        }
    }

    /// What went wrong, for callers that act on it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::Transport(_) => ErrorKind::Transport,
            StorageError::Credentials(_) => ErrorKind::InvalidCredentials,
            StorageError::Protocol(_) => ErrorKind::Protocol,
            StorageError::Unsupported(_) => ErrorKind::Unsupported,
            StorageError::SourceChanged(_) => ErrorKind::Source,
            StorageError::Service { status, code, .. } => match self.retry_class() {
                RetryClass::Throttle => ErrorKind::Throttled,
                RetryClass::ClockSkew => ErrorKind::ClockSkew,
                RetryClass::RefreshCredentials => ErrorKind::InvalidCredentials,
                RetryClass::RestartUpload => ErrorKind::NotFound,
                _ => match code.as_str() {
                    "NoSuchBucket" | "NoSuchKey" | "NotFound" => ErrorKind::NotFound,
                    "FileAlreadyExists" | "PreconditionFailed" | "ConditionalRequestConflict" => {
                        ErrorKind::AlreadyExists
                    }
                    "AccessDenied" => ErrorKind::AccessDenied,
                    "InvalidAccessKeyId" | "SignatureDoesNotMatch" => ErrorKind::InvalidCredentials,
                    "NotImplemented" | "MethodNotAllowed" => ErrorKind::Unsupported,
                    "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall" | "EntityTooLarge" | "InvalidArgument"
                    | "InvalidBucketName" | "InvalidDigest" | "BadDigest" => ErrorKind::InvalidRequest,
                    _ if *status == 404 => ErrorKind::NotFound,
                    _ if *status == 403 => ErrorKind::AccessDenied,
                    _ if *status >= 500 || *status == 408 => ErrorKind::ServiceUnavailable,
                    _ => ErrorKind::Service,
                },
            },
        }
    }

    pub fn retry_class(&self) -> RetryClass {
        match self {
            StorageError::Transport(_) => RetryClass::Retry,
            // The same bytes would be read again: the caller reports the changed source.
            StorageError::Credentials(_) | StorageError::Unsupported(_) | StorageError::SourceChanged(_) => {
                RetryClass::Fatal
            }
            // A checksum mismatch or a truncated answer: the data may have been damaged on the way.
            StorageError::Protocol(_) => RetryClass::Retry,
            StorageError::Service { code, temporary_credentials: true, .. } if code == "InvalidAccessKeyId" => {
                RetryClass::RefreshCredentials
            }
            StorageError::Service { status, code, .. } => match code.as_str() {
                "SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequests" => {
                    RetryClass::Throttle
                }
                "RequestTimeTooSkewed" => RetryClass::ClockSkew,
                "SecurityTokenExpired" | "InvalidSecurityToken" | "ExpiredToken" | "TokenRefreshRequired" => {
                    RetryClass::RefreshCredentials
                }
                "NoSuchUpload" => RetryClass::RestartUpload,
                "InvalidPart"
                | "InvalidPartOrder"
                | "EntityTooSmall"
                | "EntityTooLarge"
                | "AccessDenied"
                | "SignatureDoesNotMatch"
                | "InvalidAccessKeyId"
                | "NoSuchBucket"
                | "InvalidArgument"
                | "InvalidBucketName"
                | "MethodNotAllowed"
                | "NotImplemented" => RetryClass::Fatal,
                "InvalidDigest" | "BadDigest" | "RequestTimeout" | "InternalError" | "ServiceUnavailable" => {
                    RetryClass::Retry
                }
                _ if *status == 429 => RetryClass::Throttle,
                _ if *status == 503 => RetryClass::Throttle,
                // Not implemented: asking again cannot help.
                _ if *status == 501 => RetryClass::Fatal,
                _ if *status >= 500 || *status == 408 => RetryClass::Retry,
                _ => RetryClass::Fatal,
            },
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Service { status, code, message, request_id, .. } => {
                write!(f, "{code} (HTTP {status})")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                if !request_id.is_empty() {
                    write!(f, " [request id {request_id}]")?;
                }
                Ok(())
            }
            StorageError::Transport(m) => write!(f, "network: {m}"),
            StorageError::Credentials(m) => write!(f, "credentials: {m}"),
            StorageError::Protocol(m) => write!(f, "unexpected answer: {m}"),
            StorageError::Unsupported(m) => write!(f, "not supported by this store: {m}"),
            StorageError::SourceChanged(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for StorageError {}

/// How the request loop retries a store error; losing the upload ends the request (the uploader starts a new
/// upload itself).
impl imgport_net::Retryable for StorageError {
    fn retry_class(&self) -> imgport_net::RetryClass {
        use imgport_net::RetryClass as Net;
        match StorageError::retry_class(self) {
            RetryClass::Retry => Net::Retry,
            RetryClass::Throttle => Net::Throttle,
            RetryClass::ClockSkew => Net::ClockSkew,
            RetryClass::RefreshCredentials => Net::RefreshCredentials,
            RetryClass::RestartUpload | RetryClass::Fatal => Net::Fatal,
        }
    }

    fn server_time(&self) -> Option<i64> {
        match self {
            StorageError::Service { server_time, .. } => *server_time,
            _ => None,
        }
    }

    fn request_id(&self) -> Option<&str> {
        match self {
            StorageError::Service { request_id, .. } if !request_id.is_empty() => Some(request_id),
            _ => None,
        }
    }
}

/// Parses an error body (`<Error><Code/><Message/><RequestId/></Error>`); a body without one (HEAD, proxies)
/// gets a code from the status.
pub fn from_response(status: u16, body: &str, request_id: Option<&str>, server_time: Option<i64>) -> StorageError {
    let code = crate::xml::text(body, "Code").unwrap_or_else(|| {
        match status {
            404 => "NotFound",
            403 => "AccessDenied",
            408 => "RequestTimeout",
            429 => "TooManyRequests",
            500 => "InternalError",
            501 => "NotImplemented",
            503 => "ServiceUnavailable",
            _ => "Unknown",
        }
        .to_string()
    });
    StorageError::Service {
        status,
        code,
        message: crate::xml::text(body, "Message").unwrap_or_default(),
        request_id: crate::xml::text(body, "RequestId").or_else(|| request_id.map(str::to_string)).unwrap_or_default(),
        server_time,
        temporary_credentials: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refusals as stores older than flexible checksums answer them, and answers that are not refusals.
    #[test]
    fn checksum_refusals_are_told_from_damage() {
        let answer = |status, code: &str, message: &str| {
            let xml = format!("<Error><Code>{code}</Code><Message>{message}</Message></Error>");
            from_response(status, &xml, None, None)
        };
        let b2 = "Unsupported header 'x-amz-checksum-algorithm' received for this API call.";
        assert!(answer(400, "InvalidArgument", b2).refuses_checksum());
        assert!(answer(501, "NotImplemented", "Header 'x-amz-checksum-crc64nvme' not implemented").refuses_checksum());
        assert!(answer(400, "InvalidRequest", "The x-amz-checksum-type header is not supported").refuses_checksum());
        assert!(!answer(400, "InvalidRequest", "Checksum Type mismatch occurred").refuses_checksum());
        assert!(
            !answer(400, "InvalidRequest", "Value for x-amz-checksum-crc64nvme header is invalid.").refuses_checksum()
        );
        assert!(answer(501, "Whatever", "").refuses_checksum());
        assert!(!answer(400, "BadDigest", "The CRC64NVME checksum you specified did not match").refuses_checksum());
        assert!(!answer(400, "InvalidArgument", "Part number must be an integer").refuses_checksum());
        assert!(!answer(403, "AccessDenied", "checksum").refuses_checksum());
        assert!(!StorageError::Transport("checksum".into()).refuses_checksum());
    }

    #[test]
    fn classifies() {
        let e = from_response(503, "<Error><Code>SlowDown</Code><Message>m</Message></Error>", None, None);
        assert_eq!(e.retry_class(), RetryClass::Throttle);
        assert_eq!(
            from_response(404, "<Error><Code>NoSuchUpload</Code></Error>", None, None).retry_class(),
            RetryClass::RestartUpload
        );
        assert_eq!(
            from_response(400, "<Error><Code>EntityTooSmall</Code></Error>", None, None).retry_class(),
            RetryClass::Fatal
        );
        assert_eq!(
            from_response(403, "<Error><Code>RequestTimeTooSkewed</Code></Error>", None, Some(5)).retry_class(),
            RetryClass::ClockSkew
        );
        assert_eq!(
            from_response(403, "<Error><Code>SecurityTokenExpired</Code></Error>", None, None).retry_class(),
            RetryClass::RefreshCredentials
        );
        let mut unknown_key = from_response(403, "<Error><Code>InvalidAccessKeyId</Code></Error>", None, None);
        assert_eq!(unknown_key.retry_class(), RetryClass::Fatal);
        if let StorageError::Service { temporary_credentials, .. } = &mut unknown_key {
            *temporary_credentials = true;
        }
        assert_eq!(unknown_key.retry_class(), RetryClass::RefreshCredentials);
        assert_eq!(from_response(500, "", None, None).retry_class(), RetryClass::Retry);
        assert_eq!(from_response(429, "", None, None).retry_class(), RetryClass::Throttle);
        assert_eq!(StorageError::Transport("x".into()).retry_class(), RetryClass::Retry);
        assert!(from_response(400, "<Error><Code>InvalidPart</Code><RequestId>R1</RequestId></Error>", None, None)
            .to_string()
            .contains("R1"));
    }

    #[test]
    fn kinds_are_stable() {
        let kind = |status, body: &str| from_response(status, body, None, None).kind();
        assert_eq!(kind(404, "<Error><Code>NoSuchBucket</Code></Error>"), ErrorKind::NotFound);
        assert_eq!(kind(404, "<Error><Code>NoSuchUpload</Code></Error>"), ErrorKind::NotFound);
        assert_eq!(kind(404, ""), ErrorKind::NotFound);
        assert_eq!(kind(403, "<Error><Code>AccessDenied</Code></Error>"), ErrorKind::AccessDenied);
        assert_eq!(kind(403, "<Error><Code>SignatureDoesNotMatch</Code></Error>"), ErrorKind::InvalidCredentials);
        assert_eq!(kind(403, "<Error><Code>SecurityTokenExpired</Code></Error>"), ErrorKind::InvalidCredentials);
        assert_eq!(kind(503, "<Error><Code>SlowDown</Code></Error>"), ErrorKind::Throttled);
        assert_eq!(kind(403, "<Error><Code>RequestTimeTooSkewed</Code></Error>"), ErrorKind::ClockSkew);
        assert_eq!(kind(400, "<Error><Code>EntityTooSmall</Code></Error>"), ErrorKind::InvalidRequest);
        assert_eq!(kind(500, ""), ErrorKind::ServiceUnavailable);
        assert_eq!(kind(409, "<Error><Code>BucketNotEmpty</Code></Error>"), ErrorKind::Service);
        assert_eq!(kind(409, "<Error><Code>FileAlreadyExists</Code></Error>"), ErrorKind::AlreadyExists);
        assert_eq!(kind(412, "<Error><Code>PreconditionFailed</Code></Error>"), ErrorKind::AlreadyExists);
        assert_eq!(StorageError::Transport("x".into()).kind(), ErrorKind::Transport);
        assert_eq!(StorageError::Unsupported("x".into()).kind(), ErrorKind::Unsupported);
        assert_eq!(StorageError::Credentials("x".into()).kind(), ErrorKind::InvalidCredentials);
    }

    #[test]
    fn request_loop_classes() {
        use imgport_net::{RetryClass as Net, Retryable};
        let gone = from_response(404, "<Error><Code>NoSuchUpload</Code></Error>", None, Some(9));
        assert_eq!(Retryable::retry_class(&gone), Net::Fatal);
        assert_eq!(Retryable::server_time(&gone), Some(9));
        let slow = from_response(503, "<Error><Code>SlowDown</Code><RequestId>R2</RequestId></Error>", None, None);
        assert_eq!(Retryable::retry_class(&slow), Net::Throttle);
        assert_eq!(Retryable::request_id(&slow), Some("R2"));
    }
}
