//! One validation result: which check, how bad, what was seen, and what to do about it.

use crate::checks::CheckId;
use serde::Serialize;

/// How much a failed check matters, the same scale the inspection grades its own findings on. Passed and
/// unchecked findings are always `Info`.
pub use imgport_guest::Severity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// The facts the check needs are not available (yet, or in this image).
    NotChecked,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotChecked => "not_checked",
        }
    }
}

/// What the check looked at: a guest path or structure, a byte offset in the virtual disk, the value seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Evidence {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Evidence {
    pub fn is_empty(&self) -> bool {
        self.path.is_none() && self.offset.is_none() && self.value.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check, serialised as its stable kebab-case id ("fstab", "boot-mode", ...).
    pub id: CheckId,
    pub severity: Severity,
    pub status: Status,
    pub message: String,
    #[serde(skip_serializing_if = "Evidence::is_empty")]
    pub evidence: Evidence,
    /// What the user should do; absent on passes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    pub fn pass(id: CheckId, message: impl Into<String>) -> Self {
        Finding {
            id,
            severity: Severity::Info,
            status: Status::Pass,
            message: message.into(),
            evidence: Evidence::default(),
            fix: None,
        }
    }
    pub fn fail(id: CheckId, severity: Severity, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            id,
            severity,
            status: Status::Fail,
            message: message.into(),
            evidence: Evidence::default(),
            fix: Some(fix.into()),
        }
    }
    pub fn not_checked(id: CheckId, message: impl Into<String>) -> Self {
        Finding {
            id,
            severity: Severity::Info,
            status: Status::NotChecked,
            message: message.into(),
            evidence: Evidence::default(),
            fix: None,
        }
    }
    pub fn path(mut self, p: impl Into<String>) -> Self {
        self.evidence.path = Some(p.into());
        self
    }
    pub fn offset(mut self, o: u64) -> Self {
        self.evidence.offset = Some(o);
        self
    }
    pub fn value(mut self, v: impl Into<String>) -> Self {
        self.evidence.value = Some(v.into());
        self
    }
    /// A failure that counts against the exit status under the given strictness.
    pub fn is_blocking(&self, strict: bool) -> bool {
        self.status == Status::Fail
            && (self.severity == Severity::Error || (strict && self.severity == Severity::Warning))
    }
}
