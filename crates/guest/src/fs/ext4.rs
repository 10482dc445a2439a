//! ext2/3/4 through `ext4-view`. Its limits: it refuses inline_data, meta_bg, mmp, ea_inode, large_dir and
//! casefold-less encryption, requires `filetype`, and keeps inode flags private. It allocates one descriptor per
//! block group up front, so the superblock geometry is checked against the partition before it is loaded.

use super::ext4_raw::RawExt4;
use super::{
    guarded, read_chunks, DirEntry, FileType, FsError, FsResult, GuardedReader, GuestFs, Metadata, MAX_DIR_ENTRIES,
};
use crate::bytes::le32;
use crate::probe::FsKind;
use crate::reader::Region;
use ext4_view::{Ext4, Ext4Error, Ext4Read};

/// Block groups accepted (1 Mi groups of 128 MiB = 128 TiB): bounds the descriptor table ext4-view allocates.
const MAX_GROUPS: u64 = 1 << 20;

struct Source(Region);

impl Ext4Read for Source {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.0.read_at(dst, start_byte).map_err(|e| e.to_string().into())
    }
}

pub struct Ext4Fs {
    fs: Ext4,
    kind: FsKind,
    /// For the inode fields `ext4-view` does not expose (flags).
    raw: Region,
}

fn map_err(e: Ext4Error) -> FsError {
    match e {
        Ext4Error::NotFound => FsError::NotFound,
        Ext4Error::NotADirectory => FsError::NotADirectory,
        Ext4Error::IsADirectory | Ext4Error::IsASpecialFile | Ext4Error::NotASymlink => FsError::NotAFile,
        Ext4Error::Incompatible(i) => FsError::Unsupported(format!("ext4: {i}")),
        Ext4Error::Encrypted => FsError::Unsupported("ext4: file is encrypted".into()),
        other => FsError::Corrupt(format!("ext4: {other}")),
    }
}

/// Geometry sanity checks that keep ext4-view's up-front allocations proportional to the partition.
fn check_geometry(region: &mut Region) -> FsResult<()> {
    let sb = region.read_vec(1024, 1024).map_err(|e| FsError::Corrupt(format!("ext4 superblock: {e}")))?;
    let at = region.start() + 1024;
    let log = le32(&sb, 24);
    if log > 6 {
        return Err(FsError::Corrupt(format!("ext4 superblock at disk offset {at:#x}: block size 2^(10+{log})")));
    }
    let bs = 1024u64 << log;
    let incompat = le32(&sb, 96);
    let hi = if incompat & 0x80 != 0 { u64::from(le32(&sb, 0x150)) << 32 } else { 0 };
    let blocks = u64::from(le32(&sb, 4)) | hi;
    let per_group = u64::from(le32(&sb, 32));
    if blocks.saturating_mul(bs) > region.len() {
        return Err(FsError::Corrupt(format!(
            "ext4 superblock at disk offset {at:#x}: {blocks} blocks of {bs} bytes exceed the {}-byte partition",
            region.len()
        )));
    }
    if per_group < 8 || blocks.div_ceil(per_group) > MAX_GROUPS {
        return Err(FsError::Corrupt(format!(
            "ext4 superblock at disk offset {at:#x}: {per_group} blocks per group is implausible"
        )));
    }
    Ok(())
}

impl Ext4Fs {
    pub fn open(mut region: Region, kind: FsKind) -> FsResult<Self> {
        check_geometry(&mut region)?;
        let raw = region.clone();
        let fs = guarded("ext4 load", || Ext4::load(Box::new(Source(region))).map_err(map_err))?;
        Ok(Ext4Fs { fs, kind, raw })
    }
}

fn file_type(t: ext4_view::FileType) -> FileType {
    if t.is_regular_file() {
        FileType::File
    } else if t.is_dir() {
        FileType::Dir
    } else if t.is_symlink() {
        FileType::Symlink
    } else {
        FileType::Other
    }
}

impl GuestFs for Ext4Fs {
    fn kind(&self) -> FsKind {
        self.kind
    }

    fn lstat(&mut self, path: &str) -> FsResult<Metadata> {
        let fs = &self.fs;
        guarded("ext4 lstat", || {
            let m = fs.symlink_metadata(path).map_err(map_err)?;
            Ok(Metadata { file_type: file_type(m.file_type()), size: m.len(), mode: u32::from(m.mode()) })
        })
    }

    fn read_link(&mut self, path: &str) -> FsResult<String> {
        let fs = &self.fs;
        guarded("ext4 readlink", || {
            let p = fs.read_link(path).map_err(map_err)?;
            Ok(String::from_utf8_lossy(p.as_ref()).into_owned())
        })
    }

    fn read_dir(&mut self, path: &str) -> FsResult<Vec<DirEntry>> {
        let fs = &self.fs;
        guarded("ext4 read_dir", || {
            let mut out = Vec::new();
            for entry in fs.read_dir(path).map_err(map_err)? {
                let entry = entry.map_err(map_err)?;
                let name = String::from_utf8_lossy(entry.file_name().as_ref()).into_owned();
                if name == "." || name == ".." {
                    continue;
                }
                let t = entry.file_type().map(file_type).unwrap_or(FileType::Other);
                out.push(DirEntry { name, file_type: t });
                if out.len() >= MAX_DIR_ENTRIES {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn read_file(&mut self, path: &str, max: usize) -> FsResult<Vec<u8>> {
        let fs = &self.fs;
        guarded("ext4 read", || {
            let m = fs.symlink_metadata(path).map_err(map_err)?;
            if !m.file_type().is_regular_file() {
                return Err(FsError::NotAFile);
            }
            let mut file = fs.open(path).map_err(map_err)?;
            read_chunks(m.len(), max, |buf, _| file.read_bytes(buf).map_err(map_err))
        })
    }

    fn open_reader<'a>(&'a mut self, path: &str) -> FsResult<Box<dyn std::io::Read + 'a>> {
        let fs = &self.fs;
        let mut file = guarded("ext4 open", || {
            let m = fs.symlink_metadata(path).map_err(map_err)?;
            if !m.file_type().is_regular_file() {
                return Err(FsError::NotAFile);
            }
            fs.open(path).map_err(map_err)
        })?;
        Ok(Box::new(GuardedReader(move |buf: &mut [u8]| file.read_bytes(buf).map_err(map_err))))
    }

    fn inode_flags(&mut self, path: &str) -> FsResult<Option<u32>> {
        let mut raw = RawExt4::new(self.raw.clone())?;
        raw.flags(path).map(Some)
    }
}
