//! XFS (v4 and v5) through `lamxfs`, which replays a dirty v5 log in memory, verifies v5 CRCs and caps its own
//! allocations. It never follows symlinks, which suits [`crate::vfs::Vfs`] doing that above it.

use super::{
    guarded, read_chunks, DirEntry, FileType, FsError, FsResult, GuardedReader, GuestFs, Metadata, MAX_DIR_ENTRIES,
};
use crate::bytes::{be16, be32};
use crate::probe::FsKind;
use crate::reader::Region;
use lamxfs::{BlockRead, EntryKind, Path, Xfs};

struct Source(Region);

impl BlockRead for Source {
    type Error = String;
    fn read_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), String> {
        self.0.read_at(buf, offset_bytes).map_err(|e| e.to_string())
    }
}

pub struct XfsFs {
    fs: Xfs<Source>,
    /// For the inode fields `lamxfs` does not expose (di_flags).
    raw: Region,
}

fn map_err(e: lamxfs::Error) -> FsError {
    match e {
        lamxfs::Error::NotFound { component: "not_a_directory" } => FsError::NotADirectory,
        lamxfs::Error::NotFound { .. } => FsError::NotFound,
        lamxfs::Error::NotARegularFile | lamxfs::Error::NotASymlink => FsError::NotAFile,
        lamxfs::Error::UnsupportedFeature(f) => FsError::Unsupported(format!("xfs: {f}")),
        other => FsError::Corrupt(format!("xfs: {other}")),
    }
}

fn kind(k: EntryKind) -> FileType {
    match k {
        EntryKind::Regular => FileType::File,
        EntryKind::Directory => FileType::Dir,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::Other => FileType::Other,
    }
}

impl XfsFs {
    pub fn open(region: Region) -> FsResult<Self> {
        let len = region.len();
        let raw = region.clone();
        let fs = guarded("xfs open", || Xfs::open(Source(region), len).map_err(map_err))?;
        Ok(XfsFs { fs, raw })
    }
}

impl GuestFs for XfsFs {
    fn kind(&self) -> FsKind {
        FsKind::Xfs
    }

    fn lstat(&mut self, path: &str) -> FsResult<Metadata> {
        let fs = &mut self.fs;
        guarded("xfs lstat", || {
            let ino = fs.resolve(Path::new(path.as_bytes())).map_err(map_err)?;
            let m = fs.metadata(&ino).map_err(map_err)?;
            let t = if m.is_file() {
                FileType::File
            } else if m.is_dir() {
                FileType::Dir
            } else if m.is_symlink() {
                FileType::Symlink
            } else {
                FileType::Other
            };
            Ok(Metadata { file_type: t, size: m.size(), mode: m.mode() })
        })
    }

    fn read_link(&mut self, path: &str) -> FsResult<String> {
        let fs = &mut self.fs;
        guarded("xfs readlink", || {
            let target = fs.read_link(Path::new(path.as_bytes())).map_err(map_err)?;
            Ok(String::from_utf8_lossy(&target).into_owned())
        })
    }

    fn read_dir(&mut self, path: &str) -> FsResult<Vec<DirEntry>> {
        let fs = &mut self.fs;
        guarded("xfs read_dir", || {
            let entries = fs.read_dir(Path::new(path.as_bytes())).map_err(map_err)?;
            Ok(entries
                .into_iter()
                .filter(|e| e.name != b"." && e.name != b"..")
                .take(MAX_DIR_ENTRIES)
                .map(|e| DirEntry { name: String::from_utf8_lossy(&e.name).into_owned(), file_type: kind(e.kind) })
                .collect())
        })
    }

    fn read_file(&mut self, path: &str, max: usize) -> FsResult<Vec<u8>> {
        let fs = &mut self.fs;
        guarded("xfs read", || {
            let ino = fs.resolve(Path::new(path.as_bytes())).map_err(map_err)?;
            let m = fs.metadata(&ino).map_err(map_err)?;
            if !m.is_file() {
                return Err(FsError::NotAFile);
            }
            read_chunks(m.size(), max, |buf, off| fs.read_file_at(&ino, off, buf).map_err(map_err))
        })
    }

    fn open_reader<'a>(&'a mut self, path: &str) -> FsResult<Box<dyn std::io::Read + 'a>> {
        let fs = &mut self.fs;
        let (ino, size) = guarded("xfs open", || {
            let ino = fs.resolve(Path::new(path.as_bytes())).map_err(map_err)?;
            let m = fs.metadata(&ino).map_err(map_err)?;
            if !m.is_file() {
                return Err(FsError::NotAFile);
            }
            Ok((ino, m.size()))
        })?;
        let mut pos = 0u64;
        Ok(Box::new(GuardedReader(move |buf: &mut [u8]| {
            let n = (size.saturating_sub(pos)).min(buf.len() as u64) as usize;
            if n == 0 {
                return Ok(0);
            }
            let got = fs.read_file_at(&ino, pos, &mut buf[..n]).map_err(map_err)?.min(n);
            pos += got as u64;
            Ok(got)
        })))
    }

    /// `di_flags` read from the inode core on disk (a log that lamxfs replays in memory is not seen here: a flag
    /// changed since the last clean unmount may be missed).
    fn inode_flags(&mut self, path: &str) -> FsResult<Option<u32>> {
        let fs = &mut self.fs;
        let ino = guarded("xfs lookup", || fs.resolve(Path::new(path.as_bytes())).map_err(map_err))?;
        let sb = self.raw.read_vec(0, 512).map_err(|e| FsError::Corrupt(format!("xfs superblock: {e}")))?;
        let block_size = u64::from(be32(&sb, 4));
        let ag_blocks = u64::from(be32(&sb, 84));
        let inode_size = u64::from(be16(&sb, 104));
        let (inopblog, agblklog) = (u32::from(sb[123]), u32::from(sb[124]));
        if inopblog >= 32 || agblklog >= 32 || block_size == 0 || !(256..=2048).contains(&inode_size) {
            return Err(FsError::Corrupt("xfs superblock: implausible inode geometry".into()));
        }
        let ino = ino.ino;
        let ag = ino >> (inopblog + agblklog);
        let agbno = (ino >> inopblog) & ((1u64 << agblklog) - 1);
        let index = ino & ((1u64 << inopblog) - 1);
        let at = ag
            .checked_mul(ag_blocks)
            .and_then(|b| b.checked_add(agbno))
            .and_then(|b| b.checked_mul(block_size))
            .and_then(|o| o.checked_add(index * inode_size))
            .ok_or_else(|| FsError::Corrupt(format!("xfs inode {ino}: location overflows")))?;
        let core = self.raw.read_vec(at, 96).map_err(|e| FsError::Corrupt(format!("xfs inode {ino}: {e}")))?;
        if &core[..2] != b"IN" {
            return Err(FsError::Corrupt(format!(
                "xfs inode {ino} at disk offset {:#x}: no inode magic",
                self.raw.start() + at
            )));
        }
        let di = be16(&core, 90);
        let mut flags = 0;
        if di & XFS_DIFLAG_IMMUTABLE != 0 {
            flags |= super::FS_IMMUTABLE_FL;
        }
        if di & XFS_DIFLAG_APPEND != 0 {
            flags |= super::FS_APPEND_FL;
        }
        Ok(Some(flags))
    }
}

const XFS_DIFLAG_IMMUTABLE: u16 = 0x0008;
const XFS_DIFLAG_APPEND: u16 = 0x0010;
