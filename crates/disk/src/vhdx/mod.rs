//! VHDX: reader, writer and structural check.

use crate::error::{Error, Result};
use crate::file::ImageFile;
use crate::image::DiskImage;
use crate::open::OpenCtx;
use crate::sink::Sink;
use crate::write::{Control, WriteOptions};
use serde::Serialize;

/// VHDX-specific facts shown by `imgport info`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VhdxInfo {}

pub(crate) fn open(file: ImageFile, _ctx: &mut OpenCtx) -> Result<Box<dyn DiskImage>> {
    Err(file.unsupported("vhdx reader not implemented yet"))
}

pub(crate) fn write(_src: &dyn DiskImage, _opts: &WriteOptions, _sink: &mut dyn Sink, _ctl: &Control) -> Result<()> {
    Err(Error::unsupported("vhdx writer not implemented yet"))
}
