//! Pre-import validation: reads the guest through [`imgport_guest`], applies a target profile's rules
//! ([`profile`]) as a catalogue of checks ([`checks`]), and derives the import parameters ([`params`]).
//!
//! Every check reports a [`Finding`]: a pass, one failure per problem (with the fix), or `not_checked` when the
//! facts it needs are missing ([`facts`]).

pub mod checks;
pub mod facts;
pub mod finding;
pub mod lvm;
pub mod params;
pub mod profile;
pub mod report;

pub use finding::{Evidence, Finding, Severity, Status};
pub use profile::Target;
pub use report::{validate, Options, Report, Summary};
