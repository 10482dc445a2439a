//! Problems noticed while reading the guest: structural damage that does not stop inspection.

use serde::Serialize;

/// How much a problem matters; validation grades its findings on the same scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One problem, naming the structure and, where there is one, its byte offset in the virtual disk.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// e.g. "gpt primary header", "mbr entry 2", "ext4 superblock".
    pub structure: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    pub message: String,
}

impl Finding {
    pub fn new(
        severity: Severity,
        structure: impl Into<String>,
        offset: Option<u64>,
        message: impl Into<String>,
    ) -> Self {
        Finding { severity, structure: structure.into(), offset, message: message.into() }
    }
    pub fn error(structure: impl Into<String>, offset: Option<u64>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, structure, offset, message)
    }
    pub fn warning(structure: impl Into<String>, offset: Option<u64>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, structure, offset, message)
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.severity.name(), self.structure, self.message)?;
        if let Some(o) = self.offset {
            write!(f, " (at disk offset {o:#x})")?;
        }
        Ok(())
    }
}
