//! One error type for the whole engine: a stable [`ErrorKind`] plus the file, the structure and the offset involved.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong, in a form callers can match on and that maps to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file is not in the format it claims (bad magic, impossible header values).
    InvalidFormat,
    /// A valid image uses something imgport refuses or does not implement (encryption, differencing...).
    UnsupportedFeature,
    /// The image is damaged: tables out of bounds, overlapping metadata, truncated file, bad checksums.
    CorruptImage,
    /// The operating system failed to read or write.
    Io,
    /// The caller asked for something impossible (bad option, out-of-range read).
    InvalidArgument,
    /// The user interrupted the operation.
    Interrupted,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidFormat => "invalid_format",
            ErrorKind::UnsupportedFeature => "unsupported_feature",
            ErrorKind::CorruptImage => "corrupt_image",
            ErrorKind::Io => "io",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Interrupted => "interrupted",
        }
    }
}

/// An engine error: kind, message naming the structure, and where it happened.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    path: Option<PathBuf>,
    offset: Option<u64>,
    source: Option<io::Error>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), path: None, offset: None, source: None }
    }
    pub fn invalid_format(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidFormat, message)
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UnsupportedFeature, message)
    }
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::CorruptImage, message)
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
    pub fn interrupted() -> Self {
        Self::new(ErrorKind::Interrupted, "interrupted")
    }
    pub fn io(message: impl Into<String>, source: io::Error) -> Self {
        Error { source: Some(source), ..Self::new(ErrorKind::Io, message) }
    }

    /// Attach the file the error is about (kept if one is already set: the innermost file wins).
    pub fn in_file(mut self, path: &Path) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_path_buf());
        }
        self
    }
    /// Attach the byte offset (in the file named by the error) of the offending structure.
    pub fn at(mut self, offset: u64) -> Self {
        if self.offset.is_none() {
            self.offset = Some(offset);
        }
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{}: ", path.display())?;
        }
        f.write_str(&self.message)?;
        if let Some(offset) = self.offset {
            write!(f, " (at offset {offset:#x})")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::Interrupted {
            return Error::interrupted();
        }
        Error::io("I/O error", e)
    }
}
