//! Read-only access to an image file by position. Inputs are never opened for writing.

use crate::error::{Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes read from input files by this process (positional reads and mapped data handed out), so commands
/// can show that conversions read the allocated data and little else.
static BYTES_READ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Total bytes read from input image files so far by this process.
pub fn bytes_read() -> u64 {
    BYTES_READ.load(std::sync::atomic::Ordering::Relaxed)
}

pub(crate) fn count_read(n: u64) {
    BYTES_READ.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

/// An input file opened read-only, with its path kept for error messages.
#[derive(Debug)]
pub struct ImageFile {
    file: File,
    path: PathBuf,
    len: u64,
    mapping: std::sync::OnceLock<Option<crate::mapping::Mapping>>,
}

impl ImageFile {
    /// Open the image the user named: a regular file or a block device (`/dev/sdb`, an LVM volume).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_kind(path, true)
    }

    /// Open a file another image names (a backing file, a VMDK extent): a regular file only.
    pub fn open_referenced(path: &Path) -> Result<Self> {
        Self::open_kind(path, false)
    }

    /// Opened without blocking (a FIFO would otherwise wait forever for a writer) and type-checked on the
    /// descriptor itself, so the check holds for the file actually read.
    fn open_kind(path: &Path, allow_block_device: bool) -> Result<Self> {
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| Error::io("cannot open", e).in_file(path))?;
        let meta = file.metadata().map_err(|e| Error::io("cannot stat", e).in_file(path))?;
        let kind = meta.file_type();
        let refused = if kind.is_dir() {
            Some("a directory")
        } else if kind.is_fifo() {
            Some("a FIFO (named pipe)")
        } else if kind.is_socket() {
            Some("a socket")
        } else if kind.is_char_device() {
            Some("a character device")
        } else if kind.is_block_device() && !allow_block_device {
            Some("a block device, which an image may not name")
        } else {
            None
        };
        if let Some(what) = refused {
            return Err(Error::invalid_argument(format!("is {what}, not a disk image file")).in_file(path));
        }
        let len = if kind.is_file() { meta.len() } else { block_device_len(&file).unwrap_or(meta.len()) };
        Ok(ImageFile { file, path: path.to_path_buf(), len, mapping: std::sync::OnceLock::new() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file mapped read-only (created on first use), or None where mapping is not possible.
    pub fn mapping(&self) -> Option<&crate::mapping::Mapping> {
        self.mapping.get_or_init(|| crate::mapping::Mapping::new(&self.file, self.len)).as_ref()
    }
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Read exactly `buf.len()` bytes at `offset`. `what` names the structure for the error message;
    /// a read past the end of the file is reported as a truncated (corrupt) image.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64, what: &str) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(self.corrupt(
                offset,
                format!(
                    "{what} ({} bytes) extends past the end of the file ({} bytes): truncated image?",
                    buf.len(),
                    self.len
                ),
            ));
        }
        count_read(buf.len() as u64);
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| Error::io(format!("cannot read {what}"), e).in_file(&self.path).at(offset))
    }

    /// Read up to `buf.len()` bytes at `offset`, zero-filling whatever lies past the end of the file.
    pub fn read_zero_padded(&self, buf: &mut [u8], offset: u64, what: &str) -> Result<()> {
        let avail = self.len.saturating_sub(offset).min(buf.len() as u64) as usize;
        if avail > 0 {
            self.read_exact_at(&mut buf[..avail], offset, what)?;
        }
        buf[avail..].fill(0);
        Ok(())
    }

    /// A corruption error naming this file and the offset.
    pub fn corrupt(&self, offset: u64, message: impl Into<String>) -> Error {
        Error::corrupt(message).in_file(&self.path).at(offset)
    }
    pub fn invalid(&self, offset: u64, message: impl Into<String>) -> Error {
        Error::invalid_format(message).in_file(&self.path).at(offset)
    }
    pub fn unsupported(&self, message: impl Into<String>) -> Error {
        Error::unsupported(message).in_file(&self.path)
    }

    /// Bytes the file occupies on the host (st_blocks x 512), as `qemu-img info` reports `actual-size`.
    pub fn actual_size(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        self.file.metadata().map(|m| m.blocks() * 512).unwrap_or(0)
    }

    /// Push the extents of `[start, end)` (clipped to the file) as the filesystem stores them: Data for
    /// allocated ranges (host offset = file offset), Unallocated for holes found with SEEK_DATA/SEEK_HOLE, so
    /// converters never read holes. Where the filesystem cannot tell, everything is Data.
    pub fn map_allocation(&self, start: u64, end: u64, list: &mut crate::image::ExtentList) {
        use crate::image::Extent;
        let end = end.min(self.len);
        let mut pos = start;
        while pos < end {
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
    }

    fn seek(&self, from: u64, whence: libc::c_int) -> Option<u64> {
        use std::os::unix::io::AsRawFd;
        let from = libc::off_t::try_from(from).ok()?;
        // SAFETY: lseek on a valid descriptor owned by self.file. Reads use pread, so moving the shared
        // file position is harmless.
        let r = unsafe { libc::lseek(self.file.as_raw_fd(), from, whence) };
        u64::try_from(r).ok()
    }
}

fn block_device_len(file: &File) -> Option<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = file.try_clone().ok()?;
    f.seek(SeekFrom::End(0)).ok()
}

/// Read a big-endian integer from a byte slice at `at`. Callers pass slices whose length they checked.
#[allow(dead_code)]
pub(crate) fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
#[allow(dead_code)]
pub(crate) fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
#[allow(dead_code)]
pub(crate) fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}
#[allow(dead_code)]
pub(crate) fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
#[allow(dead_code)]
pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
#[allow(dead_code)]
pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
