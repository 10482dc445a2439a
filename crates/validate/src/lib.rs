//! Pre-import validation: judges what [`imgport_guest`] found in an image (its [`imgport_guest::Inspection`])
//! and the image's container details against a target profile's rules ([`profile`]), as a catalogue of checks
//! ([`checks`]), and derives the import parameters ([`params`]). Nothing here reads the disk:
//! [`validate_inspection`] is a function of those facts alone.
//!
//! Every check reports a [`Finding`]: a pass, one failure per problem (with the fix), or `not_checked` when the
//! facts it needs are missing ([`facts`]).

pub mod checks;
pub mod facts;
pub mod finding;
pub mod params;
pub mod profile;
pub mod report;

pub use checks::CheckId;
pub use finding::{Evidence, Finding, Severity, Status};
pub use profile::Target;
pub use report::{validate, validate_inspection, validate_with_facts, Options, Report, Summary};
