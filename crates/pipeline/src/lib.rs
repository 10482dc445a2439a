//! Orchestration across the disk engine (imgport-disk) and the object stores (imgport-storage), which know
//! nothing of each other: a conversion written to a local file ([`convert_file`]) or straight into a streamed
//! upload ([`convert_upload`]).

pub mod convert_file;
pub mod convert_upload;
