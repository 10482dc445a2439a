//! Orchestration across the disk engine (imgport-disk) and the object stores (imgport-storage), which know
//! nothing of each other: a conversion written straight into a streamed upload ([`convert_upload`]).

pub mod convert_upload;
