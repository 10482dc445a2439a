//! Orchestration across crates that know nothing of each other: a conversion written to a local file
//! ([`convert_file`]) or straight into a streamed upload ([`convert_upload`]), and an import from an image file to
//! a ready custom image ([`import`]: validate, upload, register, wait, copy, share, clean up), Packer manifests
//! as the import's source and record ([`packer`]), and pipeline files ([`file`]: `pipelines/*.toml` parsed,
//! checked, their sources resolved, their runs recorded, their manifests written).

pub mod convert_file;
pub mod convert_upload;
pub mod file;
pub mod import;
pub mod packer;
