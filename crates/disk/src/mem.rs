//! A disk held in memory: a source for writers in tests and for callers that build small images.

use crate::error::Result;
use crate::image::{check_bounds, CheckReport, DiskImage, Extent, ExtentList, ImageDetails};
use crate::probe::Format;

/// Granularity at which all-zero ranges are reported as unallocated, like a sparse file.
const HOLE_GRANULE: u64 = 64 * 1024;

/// An in-memory virtual disk; 64 KiB blocks of zeros map as unallocated.
#[derive(Debug, Clone, Default)]
pub struct MemImage(pub Vec<u8>);

impl DiskImage for MemImage {
    fn virtual_size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_bounds(self.virtual_size(), offset, buf.len())?;
        buf.copy_from_slice(&self.0[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn map(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        let mut list = ExtentList::new();
        let end = offset.saturating_add(length).min(self.virtual_size());
        let mut pos = offset;
        while pos < end {
            let n = (HOLE_GRANULE - pos % HOLE_GRANULE).min(end - pos);
            let zero = crate::scan::is_zero(&self.0[pos as usize..(pos + n) as usize]);
            list.push(if zero { Extent::unallocated(pos, n) } else { Extent::data(pos, n, Some(pos)) });
            pos += n;
        }
        Ok(list.into_vec())
    }
    fn details(&self) -> ImageDetails {
        ImageDetails::new(Format::Raw)
    }
    fn check(&self) -> Result<CheckReport> {
        Ok(CheckReport::default())
    }
}
