//! Pipeline files (`pipelines/*.toml`): a source, the import's settings, distribution, retention and the manifest
//! to write, declared once and run by `imgport pipeline run`.
//!
//! - [`format`]: the file as written (unknown keys refused; every value's position kept) and [`FileError`], which
//!   names the file, line, column and field.
//! - [`check`]: the checked [`Pipeline`], every fault found at once.
//! - [`template`]: `{date}`, `{datetime}`, `{git_sha}`, `{build}`, `{digest}`, `{var.NAME}`.
//! - [`build`]: the build command (`source.command`) run before the source is resolved.
//! - [`digests`]: source digests remembered by file identity (an up-to-date rerun reads little).
//! - [`source`]: a path, the newest match of a glob, or a Packer manifest's last run.
//! - [`manifest`]: Packer-shaped manifests, read and appended.
//! - [`webhook`]: the manifest POSTed to a URL, retried.
//! - [`record`]: run records behind [`record::RunStore`], local files by default.
//! - [`state`]: run records and leases in a bucket, shared by runners on many machines.

pub mod build;
pub mod check;
pub mod digests;
pub mod format;
pub mod manifest;
pub mod record;
pub mod source;
pub mod state;
pub mod template;
pub mod webhook;

pub use check::{load, Pipeline, Source};
pub use format::FileError;
