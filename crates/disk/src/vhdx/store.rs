//! The image file as the reader sees it: the bytes on disk with the replayed log laid over them.
//!
//! After a log replay the file may also be logically longer than on disk (the log's LastFileOffset, or
//! pages it wrote past the end); that tail reads as zeros, exactly as if the replay had extended the file.

use super::log::Overlay;
use crate::error::Result;
use crate::file::ImageFile;

#[derive(Debug)]
pub struct Store {
    pub file: ImageFile,
    overlay: Overlay,
    len: u64,
}

impl Store {
    pub fn new(file: ImageFile, overlay: Overlay, len: u64) -> Store {
        let len = len.max(file.len());
        Store { file, overlay, len }
    }

    /// Logical length of the file (after the log replay).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn overlay(&self) -> &Overlay {
        &self.overlay
    }

    /// Read exactly `buf.len()` bytes at `offset`; past the logical end is a truncated image.
    pub fn read(&self, buf: &mut [u8], offset: u64, what: &str) -> Result<()> {
        let on_disk = self.file.len();
        let end = offset.checked_add(buf.len() as u64);
        if end.is_some_and(|e| e <= on_disk) {
            self.file.read_exact_at(buf, offset, what)?;
        } else if end.is_some_and(|e| e <= self.len) {
            // Only a replayed log makes the file longer than it is on disk.
            self.file.read_zero_padded(buf, offset, what)?;
        } else {
            return self.file.read_exact_at(buf, offset, what);
        }
        if !self.overlay.is_empty() {
            self.overlay.patch(buf, offset);
        }
        Ok(())
    }
}
