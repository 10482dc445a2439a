//! RAW: the file is the disk. Holes are found with SEEK_DATA/SEEK_HOLE so they are never read.

use crate::error::Result;
use crate::file::ImageFile;
use crate::image::{check_bounds, CheckReport, DiskImage, Extent, ExtentList, ImageDetails};
use crate::probe::Format;
use crate::scan::{scan_data, Granules};
use crate::sink::Sink;
use crate::write::{Control, WriteOptions};
use std::os::unix::io::AsRawFd;

pub struct RawImage {
    file: ImageFile,
}

pub(crate) fn open(file: ImageFile) -> Result<Box<dyn DiskImage>> {
    Ok(Box::new(RawImage { file }))
}

impl RawImage {
    /// Next offset >= `from` that holds data (SEEK_DATA), or the file length when none does.
    fn seek(&self, from: u64, whence: libc::c_int) -> Option<u64> {
        let fd = self.file.file().as_raw_fd();
        let from = libc::off_t::try_from(from).ok()?;
        // SAFETY: lseek on a valid descriptor owned by self.file; reads use pread, so moving the
        // shared file position is harmless.
        let r = unsafe { libc::lseek(fd, from, whence) };
        if r < 0 {
            None
        } else {
            Some(r as u64)
        }
    }
}

impl DiskImage for RawImage {
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
        let mut pos = offset;
        while pos < end {
            // ENXIO (no data after pos) or an unsupported filesystem: fall back to "all data".
            let data = match self.seek(pos, libc::SEEK_DATA) {
                Some(d) => d.min(end),
                None if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) => end,
                None => pos,
            };
            if data > pos {
                list.push(Extent::unallocated(pos, data - pos));
            }
            if data >= end {
                break;
            }
            let hole = self.seek(data, libc::SEEK_HOLE).unwrap_or(end).min(end);
            let hole = if hole <= data { end } else { hole };
            list.push(Extent::data(data, hole - data, Some(data)));
            pos = hole;
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

/// Write `src` as a raw image: data where the source has non-zero data, holes everywhere else.
pub(crate) fn write(src: &dyn DiskImage, _opts: &WriteOptions, sink: &mut dyn Sink, ctl: &Control) -> Result<()> {
    let size = src.virtual_size();
    sink.begin(0)?;
    scan_data(src, Granules::new(4096), ctl, &mut |offset, data| sink.write_at(offset, data))?;
    sink.finish(size)
}
