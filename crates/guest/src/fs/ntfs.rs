//! NTFS through the `ntfs` crate: path lookup by the $I30 filename index (case-insensitive by the volume's
//! $UpCase table), directory listings without DOS 8.3 duplicates, and the unnamed $DATA stream of files, which
//! can be read at any offset (the registry reader needs random access into hives). Reparse points are not
//! followed.

use super::{components, guarded, DirEntry, FileType, FsError, FsResult, GuestFs, Metadata, MAX_DIR_ENTRIES};
use crate::probe::FsKind;
use crate::reader::Region;
use ntfs::indexes::NtfsFileNameIndex;
use ntfs::structured_values::NtfsFileNamespace;
use ntfs::{KnownNtfsFileRecordNumber, Ntfs, NtfsFile};
use std::io::{Read, Seek, SeekFrom};

pub struct NtfsFs {
    ntfs: Ntfs,
    region: Region,
}

fn corrupt(e: ntfs::NtfsError) -> FsError {
    match e {
        ntfs::NtfsError::NotADirectory { .. } => FsError::NotADirectory,
        other => FsError::Corrupt(format!("ntfs: {other}")),
    }
}

/// Largest $Bitmap counted for free space: a 2 TiB volume of 4 KiB clusters. Larger volumes are not counted (the
/// read would outweigh the rest of an inspection).
const MAX_BITMAP: u64 = 64 << 20;

/// Path components visited per lookup at most (guards against absurd paths, not loops: lookups go down only).
const MAX_COMPONENTS: usize = 256;

impl NtfsFs {
    pub fn open(mut region: Region) -> FsResult<Self> {
        let ntfs = guarded("ntfs open", || {
            let mut ntfs = Ntfs::new(&mut region).map_err(corrupt)?;
            ntfs.read_upcase_table(&mut region).map_err(corrupt)?;
            Ok(ntfs)
        })?;
        Ok(NtfsFs { ntfs, region })
    }
}

fn lookup<'n>(ntfs: &'n Ntfs, fs: &mut Region, path: &str) -> FsResult<NtfsFile<'n>> {
    let mut file = ntfs.root_directory(fs).map_err(corrupt)?;
    for (i, name) in components(path).enumerate() {
        if i >= MAX_COMPONENTS {
            return Err(FsError::Corrupt("ntfs: path too deep".into()));
        }
        let next = {
            let index = file.directory_index(fs).map_err(corrupt)?;
            let mut finder = index.finder();
            let entry =
                NtfsFileNameIndex::find(&mut finder, ntfs, fs, name).ok_or(FsError::NotFound)?.map_err(corrupt)?;
            entry.to_file(ntfs, fs).map_err(corrupt)?
        };
        file = next;
    }
    Ok(file)
}

fn data_len(file: &NtfsFile<'_>, fs: &mut Region) -> FsResult<u64> {
    match file.data(fs, "") {
        Some(item) => {
            let item = item.map_err(corrupt)?;
            let attr = item.to_attribute().map_err(corrupt)?;
            Ok(attr.value_length())
        }
        None => Ok(0),
    }
}

/// Read from the unnamed $DATA stream at `offset`; returns the bytes read (0 at the end).
fn read_data_at(file: &NtfsFile<'_>, fs: &mut Region, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
    let Some(item) = file.data(fs, "") else { return Ok(0) };
    let item = item.map_err(corrupt)?;
    let attr = item.to_attribute().map_err(corrupt)?;
    let len = attr.value_length();
    if offset >= len {
        return Ok(0);
    }
    let value = attr.value(fs).map_err(corrupt)?;
    let mut v = value.attach(fs);
    v.seek(SeekFrom::Start(offset)).map_err(|e| FsError::Corrupt(format!("ntfs data: {e}")))?;
    let want = buf.len().min((len - offset).min(usize::MAX as u64) as usize);
    let mut done = 0;
    while done < want {
        let n = v.read(&mut buf[done..want]).map_err(|e| FsError::Corrupt(format!("ntfs data: {e}")))?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

impl GuestFs for NtfsFs {
    fn kind(&self) -> FsKind {
        FsKind::Ntfs
    }

    fn lstat(&mut self, path: &str) -> FsResult<Metadata> {
        let (ntfs, fs) = (&self.ntfs, &mut self.region);
        guarded("ntfs lstat", || {
            let file = lookup(ntfs, fs, path)?;
            if file.is_directory() {
                return Ok(Metadata { file_type: FileType::Dir, size: 0, mode: 0 });
            }
            Ok(Metadata { file_type: FileType::File, size: data_len(&file, fs)?, mode: 0 })
        })
    }

    fn read_link(&mut self, _path: &str) -> FsResult<String> {
        Err(FsError::NotAFile)
    }

    fn read_dir(&mut self, path: &str) -> FsResult<Vec<DirEntry>> {
        let (ntfs, fs) = (&self.ntfs, &mut self.region);
        guarded("ntfs read_dir", || {
            let dir = lookup(ntfs, fs, path)?;
            let index = dir.directory_index(fs).map_err(corrupt)?;
            let mut entries = index.entries();
            let mut out = Vec::new();
            while let Some(entry) = entries.next(fs) {
                let entry = entry.map_err(corrupt)?;
                let Some(key) = entry.key() else { continue };
                let name = key.map_err(corrupt)?;
                if name.namespace() == NtfsFileNamespace::Dos {
                    continue;
                }
                let n = name.name().to_string_lossy();
                if n == "." {
                    continue;
                }
                let file_type = if name.is_directory() { FileType::Dir } else { FileType::File };
                out.push(DirEntry { name: n, file_type });
                if out.len() >= MAX_DIR_ENTRIES {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn read_file(&mut self, path: &str, max: usize) -> FsResult<Vec<u8>> {
        let (ntfs, fs) = (&self.ntfs, &mut self.region);
        guarded("ntfs read", || {
            let file = lookup(ntfs, fs, path)?;
            if file.is_directory() {
                return Err(FsError::NotAFile);
            }
            let len = data_len(&file, fs)?;
            super::read_chunks(len, max, |buf, off| read_data_at(&file, fs, off, buf))
        })
    }

    /// Free clusters are the clear bits of $Bitmap (one bit per cluster of the volume), read in 1 MiB pieces.
    fn free_bytes(&mut self) -> Option<FsResult<u64>> {
        let (ntfs, fs) = (&self.ntfs, &mut self.region);
        Some(guarded("ntfs free space", || {
            let cluster = u64::from(ntfs.cluster_size()).max(1);
            let clusters = ntfs.size() / cluster;
            let need = clusters.div_ceil(8);
            if need > MAX_BITMAP {
                return Err(FsError::Unsupported(format!(
                    "ntfs: $Bitmap of {need} bytes is not counted (over {MAX_BITMAP})"
                )));
            }
            let file = ntfs.file(fs, KnownNtfsFileRecordNumber::Bitmap as u64).map_err(corrupt)?;
            let mut buf = vec![0u8; 1 << 20];
            let (mut off, mut used, mut last) = (0u64, 0u64, 0u8);
            while off < need {
                let want = ((need - off) as usize).min(buf.len());
                let n = read_data_at(&file, fs, off, &mut buf[..want])?;
                if n == 0 {
                    return Err(FsError::Corrupt(format!(
                        "ntfs: $Bitmap ends at {off} bytes, the volume's {clusters} clusters need {need}"
                    )));
                }
                used += buf[..n].iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
                last = buf[n - 1];
                off += n as u64;
            }
            // Bits past the last cluster (in the last byte) are set by mkntfs and Windows: they are not clusters.
            let tail = need * 8 - clusters;
            if tail > 0 {
                used = used.saturating_sub(u64::from((last >> (8 - tail)).count_ones()));
            }
            Ok(clusters.saturating_sub(used) * cluster)
        }))
    }

    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        let (ntfs, fs) = (&self.ntfs, &mut self.region);
        guarded("ntfs read", || {
            let file = lookup(ntfs, fs, path)?;
            if file.is_directory() {
                return Err(FsError::NotAFile);
            }
            read_data_at(&file, fs, offset, buf)
        })
    }
}
