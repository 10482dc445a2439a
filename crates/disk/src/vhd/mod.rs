//! VHD: reader, writer and structural check.

use crate::error::{Error, Result};
use crate::file::ImageFile;
use crate::image::DiskImage;
use crate::open::OpenCtx;
use crate::sink::Sink;
use crate::write::{Control, WriteOptions};
use serde::Serialize;

/// VHD-specific facts shown by `imgport info`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VhdInfo {}

pub(crate) fn open(file: ImageFile, _ctx: &mut OpenCtx) -> Result<Box<dyn DiskImage>> {
    Err(file.unsupported("vhd reader not implemented yet"))
}

pub(crate) fn write(_src: &dyn DiskImage, _opts: &WriteOptions, _sink: &mut dyn Sink, _ctl: &Control) -> Result<()> {
    Err(Error::unsupported("vhd writer not implemented yet"))
}
