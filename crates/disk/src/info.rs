//! `imgport info`: generic facts about an opened image plus the format's own details.

use crate::error::Result;
use crate::file::ImageFile;
use crate::image::{DiskImage, ImageDetails};
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
        let allocated_bytes = crate::extents::allocated_bytes(image)?;
        let details = image.details();
        // A multi-file image (VMDK descriptor plus extents) is as large as all its files together, as qemu-img
        // sums them for `actual-size`. The opened file itself may also be one of the extents (monolithic).
        let (mut file_size, mut actual_size) = (file.len(), file.actual_size());
        for extra in image.extra_files().iter().filter(|p| !same_file(p, path)) {
            let f = ImageFile::open_referenced(extra)?;
            file_size += f.len();
            actual_size += f.actual_size();
        }
        Ok(ImageInfo {
            filename: path.display().to_string(),
            qemu_format: details.format.qemu_name(),
            virtual_size: image.virtual_size(),
            file_size,
            actual_size,
            allocated_bytes,
            details,
        })
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => a == b,
    }
}
