//! XFS (v4 and v5) through `lamxfs`, which replays a dirty v5 log in memory, verifies v5 CRCs and caps its own
//! allocations. It never follows symlinks, which suits [`crate::vfs::Vfs`] doing that above it.

use super::{guarded, read_chunks, DirEntry, FileType, FsError, FsResult, GuestFs, Metadata, MAX_DIR_ENTRIES};
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
        let fs = guarded("xfs open", || Xfs::open(Source(region), len).map_err(map_err))?;
        Ok(XfsFs { fs })
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
}
