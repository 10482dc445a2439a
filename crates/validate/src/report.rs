//! Running the whole validation and summarising it.

use crate::checks::{self, Subject};
use crate::facts::GuestExtras;
use crate::finding::{Finding, Severity, Status};
use crate::params::{self, Parameters};
use crate::profile::Target;
use imgport_disk::{DiskImage, Format, ImageDetails, Result};
use imgport_guest::Inspection;
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub target: Target,
    /// Length of the image file: lets the VHD check compare it with the footer.
    pub file_size: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Failed checks by severity.
    pub errors: usize,
    pub warnings: usize,
    pub notes: usize,
    pub passed: usize,
    pub not_checked: usize,
}

/// The validation of one image for one target. Field names are stable (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: Target,
    pub format: Format,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subformat: Option<String>,
    pub virtual_size: u64,
    pub findings: Vec<Finding>,
    /// The import parameters derived from the image (for alibaba: ImportImage's fields).
    pub parameters: Parameters,
    pub summary: Summary,
    /// Bytes read from the virtual disk.
    pub bytes_read: u64,
}

impl Report {
    /// 0 when nothing blocks the import (with `strict`, warnings block too), 1 otherwise.
    pub fn exit_code(&self, strict: bool) -> u8 {
        u8::from(self.findings.iter().any(|f| f.is_blocking(strict)))
    }
}

pub fn summarize(findings: &[Finding]) -> Summary {
    let mut s = Summary::default();
    for f in findings {
        match (f.status, f.severity) {
            (Status::Pass, _) => s.passed += 1,
            (Status::NotChecked, _) => s.not_checked += 1,
            (Status::Fail, Severity::Error) => s.errors += 1,
            (Status::Fail, Severity::Warning) => s.warnings += 1,
            (Status::Fail, Severity::Info) => s.notes += 1,
        }
    }
    s
}

/// Validate a finished inspection with the facts it establishes (the caller read `inspection` from the same
/// image as `details`). Nothing is read: the result depends on these values alone.
pub fn validate_inspection(inspection: &Inspection, details: &ImageDetails, options: &Options) -> Report {
    validate_with_facts(inspection, details, &GuestExtras::from_inspection(inspection), options)
}

/// [`validate_inspection`] with the guest facts given rather than derived from the inspection (to judge facts no image
/// has, or ones established elsewhere).
pub fn validate_with_facts(
    inspection: &Inspection,
    details: &ImageDetails,
    extras: &GuestExtras,
    options: &Options,
) -> Report {
    let subject = Subject { inspection, details, file_size: options.file_size, extras };
    let findings = checks::run(options.target.profile(), &subject);
    Report {
        target: options.target,
        format: details.format,
        subformat: details.subformat.clone(),
        virtual_size: inspection.virtual_size,
        summary: summarize(&findings),
        findings,
        parameters: params::derive(options.target, inspection),
        bytes_read: inspection.bytes_read,
    }
}

/// Inspect `image` with [`imgport_guest::inspect`], then [`validate_inspection`] what it found. Only an
/// unreadable disk is an error. For callers that hold an image and no inspection; the reading is the guest
/// crate's.
pub fn validate(image: Arc<dyn DiskImage>, options: &Options) -> Result<Report> {
    let details = image.details();
    let inspection = imgport_guest::inspect(image)?;
    Ok(validate_inspection(&inspection, &details, options))
}
