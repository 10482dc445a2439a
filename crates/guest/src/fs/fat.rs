//! FAT12/16/32 through `fatfs` 0.3, over a reader that refuses every write. Path lookup is done here, with a cap
//! on the entries scanned per directory, because fatfs follows cluster chains without detecting cycles.

use super::{
    components, guarded, DirEntry, FileType, FsError, FsResult, GuardedReader, GuestFs, Metadata, MAX_DIR_ENTRIES,
};
use crate::probe::FsKind;
use crate::reader::Region;
use fatfs::{Dir, FileSystem, FsOptions};
use std::io::Read;

pub struct FatFs {
    fs: FileSystem<Region>,
}

fn corrupt(e: std::io::Error) -> FsError {
    FsError::Corrupt(format!("fat: {e}"))
}

impl FatFs {
    pub fn open(region: Region) -> FsResult<Self> {
        let fs = guarded("fat mount", || {
            FileSystem::new(region, FsOptions::new().update_accessed_date(false)).map_err(corrupt)
        })?;
        Ok(FatFs { fs })
    }
}

enum Found<'a> {
    Root(Dir<'a, Region>),
    Entry(fatfs::DirEntry<'a, Region>),
}

/// Walk `path` from the root, matching names case-insensitively as FAT does.
fn lookup<'a>(fs: &'a FileSystem<Region>, path: &str) -> FsResult<Found<'a>> {
    let mut dir = fs.root_dir();
    let mut parts = components(path).peekable();
    if parts.peek().is_none() {
        return Ok(Found::Root(dir));
    }
    while let Some(name) = parts.next() {
        let mut found = None;
        for entry in dir.iter().take(MAX_DIR_ENTRIES) {
            let entry = entry.map_err(corrupt)?;
            if entry.file_name().eq_ignore_ascii_case(name) || entry.short_file_name().eq_ignore_ascii_case(name) {
                found = Some(entry);
                break;
            }
        }
        let entry = found.ok_or(FsError::NotFound)?;
        if parts.peek().is_none() {
            return Ok(Found::Entry(entry));
        }
        if !entry.is_dir() {
            return Err(FsError::NotADirectory);
        }
        dir = entry.to_dir();
    }
    Err(FsError::NotFound)
}

impl GuestFs for FatFs {
    fn kind(&self) -> FsKind {
        FsKind::Vfat
    }

    fn lstat(&mut self, path: &str) -> FsResult<Metadata> {
        let fs = &self.fs;
        guarded("fat lstat", || {
            Ok(match lookup(fs, path)? {
                Found::Root(_) => Metadata { file_type: FileType::Dir, size: 0, mode: 0 },
                Found::Entry(e) if e.is_dir() => Metadata { file_type: FileType::Dir, size: 0, mode: 0 },
                Found::Entry(e) => Metadata { file_type: FileType::File, size: e.len(), mode: 0 },
            })
        })
    }

    fn read_link(&mut self, _path: &str) -> FsResult<String> {
        Err(FsError::NotAFile)
    }

    fn read_dir(&mut self, path: &str) -> FsResult<Vec<DirEntry>> {
        let fs = &self.fs;
        guarded("fat read_dir", || {
            let dir = match lookup(fs, path)? {
                Found::Root(d) => d,
                Found::Entry(e) if e.is_dir() => e.to_dir(),
                Found::Entry(_) => return Err(FsError::NotADirectory),
            };
            let mut out = Vec::new();
            for entry in dir.iter().take(MAX_DIR_ENTRIES) {
                let entry = entry.map_err(corrupt)?;
                let name = entry.file_name();
                if name == "." || name == ".." {
                    continue;
                }
                let file_type = if entry.is_dir() { FileType::Dir } else { FileType::File };
                out.push(DirEntry { name, file_type });
            }
            Ok(out)
        })
    }

    fn read_file(&mut self, path: &str, max: usize) -> FsResult<Vec<u8>> {
        let fs = &self.fs;
        guarded("fat read", || {
            let entry = match lookup(fs, path)? {
                Found::Entry(e) if e.is_file() => e,
                _ => return Err(FsError::NotAFile),
            };
            let want = entry.len().min(max as u64).min(super::MAX_FILE_READ);
            let mut out = Vec::new();
            entry.to_file().take(want).read_to_end(&mut out).map_err(corrupt)?;
            Ok(out)
        })
    }

    fn open_reader<'a>(&'a mut self, path: &str) -> FsResult<Box<dyn std::io::Read + 'a>> {
        let fs = &self.fs;
        let mut file = guarded("fat open", || match lookup(fs, path)? {
            Found::Entry(e) if e.is_file() => Ok(e.to_file()),
            _ => Err(FsError::NotAFile),
        })?;
        Ok(Box::new(GuardedReader(move |buf: &mut [u8]| file.read(buf).map_err(corrupt))))
    }
}
