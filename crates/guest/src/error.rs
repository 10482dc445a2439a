//! The error the guest parsers return: what kind of problem, in which on-disk structure, at which byte offset.
//!
//! Its text is the message alone, as the parsers wrote it (they already name what they read); the structure and
//! offset are there for callers that sort or locate problems without parsing text.

use std::fmt;

/// What went wrong, stable across releases; new kinds may be added.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Not the structure it should be: a missing magic, a field outside the format's range.
    InvalidFormat,
    /// A valid structure using a feature or version that is not read.
    UnsupportedFeature,
    /// A structure that contradicts itself: a bad checksum, a loop, a reference past its container.
    Corrupt,
    /// A structure larger or deeper than the limit set against hostile input.
    LimitExceeded,
    /// Reading the bytes failed.
    Io,
    /// A path a filesystem reader was asked for is not there, or is not the kind of file asked for.
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    structure: &'static str,
    offset: Option<u64>,
    message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// `structure` names the format's structure ("lvm metadata", "regf hive", "gpt header"); `message` is the
    /// whole human text.
    pub fn new(kind: ErrorKind, structure: &'static str, message: impl Into<String>) -> Self {
        Error { kind, structure, offset: None, message: message.into() }
    }
    pub fn invalid(structure: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidFormat, structure, message)
    }
    pub fn unsupported(structure: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UnsupportedFeature, structure, message)
    }
    pub fn corrupt(structure: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, structure, message)
    }
    pub fn limit(structure: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::LimitExceeded, structure, message)
    }
    pub fn io(structure: &'static str, err: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Io, structure, err.to_string())
    }
    /// The byte offset of the structure, in whatever the parser reads (a file, a volume, the disk).
    pub fn at(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }
    /// The same error seen from an enclosing structure or file: `prefix: message`.
    pub fn context(mut self, prefix: impl fmt::Display) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn structure(&self) -> &'static str {
        self.structure
    }
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_the_message_and_the_rest_is_data() {
        let e = Error::corrupt("lvm metadata", "metadata header has a bad checksum at byte 4096 of the PV").at(4096);
        assert_eq!(e.to_string(), "metadata header has a bad checksum at byte 4096 of the PV");
        assert_eq!((e.kind(), e.structure(), e.offset()), (ErrorKind::Corrupt, "lvm metadata", Some(4096)));
    }
}
