//! RAW: the file is the disk. Holes are found with SEEK_DATA/SEEK_HOLE so they are never read.

use crate::error::Result;
use crate::file::ImageFile;
use crate::image::{check_bounds, CheckReport, DiskImage, Extent, ExtentList, ImageDetails};
use crate::probe::Format;
use crate::scan::{scan_data, Granules};
use crate::sink::Sink;
use crate::write::{Control, WriteOptions};

pub struct RawImage {
    file: std::sync::Arc<ImageFile>,
}

pub(crate) fn open(file: ImageFile) -> Result<Box<dyn DiskImage>> {
    open_shared(std::sync::Arc::new(file))
}

/// A raw image over a file other readers share (a file several VMDK flat extents name).
pub(crate) fn open_shared(file: std::sync::Arc<ImageFile>) -> Result<Box<dyn DiskImage>> {
    Ok(Box::new(RawImage { file }))
}

impl DiskImage for RawImage {
    fn data_file(&self) -> Option<&ImageFile> {
        Some(&self.file)
    }

    fn virtual_size(&self) -> u64 {
        self.file.len()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_bounds(self.virtual_size(), offset, buf.len())?;
        self.file.read_exact_at(buf, offset, "data")
    }

    fn map(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        let end = offset.saturating_add(length).min(self.virtual_size());
        let mut list = ExtentList::new();
        self.file.map_allocation(offset, end, &mut list);
        Ok(list.into_vec())
    }

    fn map_granularity(&self) -> u64 {
        // Holes of the file, found a filesystem block at a time.
        4096
    }

    fn details(&self) -> ImageDetails {
        ImageDetails::new(Format::Raw)
    }

    fn check(&self) -> Result<CheckReport> {
        Ok(CheckReport::default())
    }
}

/// Write `src` as a raw image: data where the source has non-zero data, holes everywhere else.
pub(crate) fn write(src: &dyn DiskImage, _opts: &WriteOptions, sink: &mut dyn Sink, ctl: &Control) -> Result<()> {
    let size = src.virtual_size();
    sink.begin(0)?;
    scan_data(src, Granules::new(4096), ctl, &mut |offset, data| sink.write_at(offset, data))?;
    sink.finish(size)
}
