//! `imgport info`: generic facts about an opened image plus the format's own details.

use crate::error::Result;
use crate::file::ImageFile;
use crate::image::{DiskImage, ExtentKind, ImageDetails};
use serde::Serialize;
use std::path::Path;

/// Everything `imgport info` reports. Field names are stable (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    pub filename: String,
    /// The name qemu-img uses for the format (VHD is `vpc`).
    pub qemu_format: &'static str,
    pub virtual_size: u64,
    /// Length of the image file.
    pub file_size: u64,
    /// Bytes the file occupies on the host (as qemu-img's `actual-size`).
    pub actual_size: u64,
    /// Bytes of the virtual disk backed by stored data.
    pub allocated_bytes: u64,
    #[serde(flatten)]
    pub details: ImageDetails,
}

impl ImageInfo {
    pub fn gather(path: &Path, image: &dyn DiskImage) -> Result<ImageInfo> {
        let file = ImageFile::open(path)?;
        let allocated_bytes =
            image.map(0, image.virtual_size())?.iter().filter(|e| e.kind == ExtentKind::Data).map(|e| e.length).sum();
        let details = image.details();
        Ok(ImageInfo {
            filename: path.display().to_string(),
            qemu_format: details.format.qemu_name(),
            virtual_size: image.virtual_size(),
            file_size: file.len(),
            actual_size: file.actual_size(),
            allocated_bytes,
            details,
        })
    }
}
