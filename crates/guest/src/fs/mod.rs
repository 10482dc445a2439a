//! Read-only file access to guest filesystems behind one small trait, so inspection code does not care which
//! filesystem it reads. Backends take symlink-free absolute paths and never follow symlinks themselves:
//! [`crate::vfs::Vfs`] resolves symlinks and mount points above them.

pub mod btrfs;
pub mod ext4;
mod ext4_raw;
pub mod fat;
pub mod ntfs;
pub mod xfs;

use crate::probe::{FsInfo, FsKind};
use crate::reader::Region;
use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileType {
    File,
    Dir,
    Symlink,
    Other,
}

#[derive(Debug, Clone, Copy)]
pub struct Metadata {
    pub file_type: FileType,
    pub size: u64,
    /// Permission bits and type as in `st_mode` (0 where the filesystem has none, e.g. FAT).
    pub mode: u32,
}

#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: String,
    pub file_type: FileType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsError {
    NotFound,
    NotADirectory,
    NotAFile,
    /// The filesystem is damaged where this operation looked.
    Corrupt(String),
    /// A valid filesystem using something the reader does not support.
    Unsupported(String),
    /// The reader crate panicked on this data (caught); treated as corruption.
    Panicked(String),
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::NotFound => f.write_str("not found"),
            FsError::NotADirectory => f.write_str("not a directory"),
            FsError::NotAFile => f.write_str("not a regular file"),
            FsError::Corrupt(m) => f.write_str(m),
            FsError::Unsupported(m) => write!(f, "unsupported: {m}"),
            FsError::Panicked(m) => write!(f, "filesystem reader failed on corrupt data: {m}"),
        }
    }
}

impl std::error::Error for FsError {}

impl FsError {
    /// The stable kind, shared with the parsers' [`crate::Error`]: a missing path or a path of the wrong type is
    /// `NotFound`, a reader that panicked on the data counts as corruption.
    pub fn kind(&self) -> crate::ErrorKind {
        match self {
            FsError::NotFound | FsError::NotADirectory | FsError::NotAFile => crate::ErrorKind::NotFound,
            FsError::Corrupt(_) | FsError::Panicked(_) => crate::ErrorKind::Corrupt,
            FsError::Unsupported(_) => crate::ErrorKind::UnsupportedFeature,
        }
    }
}

pub type FsResult<T> = std::result::Result<T, FsError>;

/// Entries returned by one `read_dir` at most: a hostile directory cannot make a listing unbounded.
pub const MAX_DIR_ENTRIES: usize = 100_000;

pub trait GuestFs {
    fn kind(&self) -> FsKind;
    /// Metadata of `path` itself (a final symlink is not followed).
    fn lstat(&mut self, path: &str) -> FsResult<Metadata>;
    fn read_link(&mut self, path: &str) -> FsResult<String>;
    /// At most [`MAX_DIR_ENTRIES`] entries, without "." and "..".
    fn read_dir(&mut self, path: &str) -> FsResult<Vec<DirEntry>>;
    /// The first `max` bytes of a regular file (all of it when shorter).
    fn read_file(&mut self, path: &str, max: usize) -> FsResult<Vec<u8>>;

    /// Free bytes counted from the filesystem's own allocation map, for filesystems whose superblock has no free
    /// counter (NTFS); `None` where the probe's counters already tell (the default).
    fn free_bytes(&mut self) -> Option<FsResult<u64>> {
        None
    }

    /// A sequential reader of a regular file, for files too large to hold (an initramfs). The default reads the
    /// file whole, up to [`MAX_FILE_READ`]; backends that can stream override it.
    fn open_reader<'a>(&'a mut self, path: &str) -> FsResult<Box<dyn std::io::Read + 'a>> {
        let data = self.read_file(path, MAX_FILE_READ as usize)?;
        Ok(Box::new(std::io::Cursor::new(data)))
    }

    /// Up to `buf.len()` bytes of a regular file from `offset`; 0 at its end. The default streams from the start
    /// (fine for the small files it is used on); backends with random access override it.
    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        use std::io::Read;
        let mut r = self.open_reader(path)?;
        let skipped = std::io::copy(&mut (&mut r).take(offset), &mut std::io::sink())
            .map_err(|e| FsError::Corrupt(e.to_string()))?;
        if skipped < offset {
            return Ok(0);
        }
        let mut done = 0;
        while done < buf.len() {
            match r.read(&mut buf[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) => return Err(FsError::Corrupt(e.to_string())),
            }
        }
        Ok(done)
    }

    /// The inode flags of `path` in the Linux `FS_*_FL` encoding (`FS_IMMUTABLE_FL` 0x10, `FS_APPEND_FL` 0x20),
    /// or `None` where the filesystem has no such flags or the backend cannot read them.
    fn inode_flags(&mut self, _path: &str) -> FsResult<Option<u32>> {
        Ok(None)
    }
}

/// `FS_IMMUTABLE_FL`: the file cannot be changed, renamed, linked or deleted, even by root.
pub const FS_IMMUTABLE_FL: u32 = 0x10;
/// `FS_APPEND_FL`: the file can only be appended to.
pub const FS_APPEND_FL: u32 = 0x20;

/// Turns a backend's streaming reads into `std::io::Read`, catching panics of the crate behind it.
pub(crate) struct GuardedReader<F: FnMut(&mut [u8]) -> FsResult<usize>>(pub(crate) F);

impl<F: FnMut(&mut [u8]) -> FsResult<usize>> std::io::Read for GuardedReader<F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let f = &mut self.0;
        guarded("file read", || f(buf)).map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// Largest file content read at once, whatever the caller asks: an inode's size field is not trusted.
pub const MAX_FILE_READ: u64 = 512 << 20;

/// Read up to `min(size, max, MAX_FILE_READ)` bytes through `next(buf, offset) -> bytes read`, growing the result
/// as data arrives rather than allocating what the inode claims.
pub(crate) fn read_chunks(
    size: u64,
    max: usize,
    mut next: impl FnMut(&mut [u8], u64) -> FsResult<usize>,
) -> FsResult<Vec<u8>> {
    let want = size.min(max as u64).min(MAX_FILE_READ) as usize;
    let mut out = Vec::new();
    let mut chunk = vec![0u8; want.min(1 << 20)];
    while out.len() < want {
        let n = chunk.len().min(want - out.len());
        let got = next(&mut chunk[..n], out.len() as u64)?;
        if got == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..got.min(n)]);
    }
    Ok(out)
}

/// Run a filesystem crate's call, turning a panic on corrupt data into an error.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> FsResult<T>) -> FsResult<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            Err(FsError::Panicked(format!("{what}: {msg}")))
        }
    }
}

/// Open the filesystem `info` describes, when imgport can read its files.
pub fn open(region: Region, info: &FsInfo) -> FsResult<Box<dyn GuestFs>> {
    match info.kind {
        k if k.is_ext() => Ok(Box::new(ext4::Ext4Fs::open(region, k)?)),
        FsKind::Xfs => Ok(Box::new(xfs::XfsFs::open(region)?)),
        FsKind::Vfat => Ok(Box::new(fat::FatFs::open(region)?)),
        FsKind::Ntfs => Ok(Box::new(ntfs::NtfsFs::open(region)?)),
        FsKind::Btrfs => Ok(Box::new(btrfs::BtrfsFs::open(region, &btrfs::Subvol::Default)?)),
        k => Err(FsError::Unsupported(format!("reading files from {} is not supported", k.blkid_name()))),
    }
}

/// Split an absolute path into its components, ignoring empty ones and ".".
pub fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn filesystem_errors_have_the_parsers_kinds() {
        assert_eq!(FsError::NotFound.kind(), ErrorKind::NotFound);
        assert_eq!(FsError::NotADirectory.kind(), ErrorKind::NotFound);
        assert_eq!(FsError::Corrupt("extent tree loops".into()).kind(), ErrorKind::Corrupt);
        assert_eq!(FsError::Panicked("index out of bounds".into()).kind(), ErrorKind::Corrupt);
        assert_eq!(FsError::Unsupported("ext4 encryption".into()).kind(), ErrorKind::UnsupportedFeature);
    }
}
