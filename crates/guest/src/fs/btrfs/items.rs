//! Keys and the item payloads this reader uses: inodes, directory entries, inode and root references, root items
//! and file extents. Every parser checks the payload's length first; fields are read with the non-panicking
//! helpers of [`crate::bytes`].

use super::corrupt;
use crate::bytes::{le16, le32, le64, slice, u8_at};
use crate::fs::{FileType, FsError, FsResult};

pub(super) const INODE_ITEM: u8 = 1;
pub(super) const INODE_REF: u8 = 12;
pub(super) const DIR_ITEM: u8 = 84;
pub(super) const DIR_INDEX: u8 = 96;
pub(super) const EXTENT_DATA: u8 = 108;
pub(super) const ROOT_ITEM: u8 = 132;
pub(super) const ROOT_BACKREF: u8 = 144;
pub(super) const ROOT_REF: u8 = 156;
pub(super) const CHUNK_ITEM: u8 = 228;

/// The top-level subvolume (the FS tree).
pub(super) const FS_TREE: u64 = 5;
/// The directory of the root tree holding the "default" entry.
pub(super) const ROOT_TREE_DIR: u64 = 6;
/// Subvolume trees, and inodes, have ids from here up to [`LAST_FREE`].
pub(super) const FIRST_FREE: u64 = 256;
pub(super) const LAST_FREE: u64 = -256i64 as u64;
/// Inode number Linux gives the empty directory it shows where a snapshot holds a subvolume it did not copy.
pub(super) const EMPTY_SUBVOL_DIR: u64 = 2;
/// Longest name of a directory entry.
pub(super) const NAME_MAX: usize = 255;

pub(super) const KEY_SIZE: usize = 17;

/// A b-tree key; the derived order (objectid, type, offset) is btrfs's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Key {
    pub objectid: u64,
    pub ty: u8,
    pub offset: u64,
}

impl Key {
    pub fn new(objectid: u64, ty: u8, offset: u64) -> Key {
        Key { objectid, ty, offset }
    }
    pub fn parse(b: &[u8], off: usize) -> Key {
        Key { objectid: le64(b, off), ty: u8_at(b, off + 8), offset: le64(b, off + 9) }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({} {} {})", self.objectid, self.ty, self.offset)
    }
}

/// The hash of a name that keys its DIR_ITEM: the kernel's `crc32c(~1, name)`, which is CRC-32C's register
/// update without the final inversion, from a seed of 0xfffffffe.
pub(super) fn name_hash(name: &[u8]) -> u64 {
    // crc32c_append(c, d) = !update(!c, d), so update(0xfffffffe, d) = !crc32c_append(1, d).
    u64::from(!crc32c::crc32c_append(1, name))
}

fn short(what: &str, key: &Key, have: usize, need: usize) -> FsError {
    corrupt(format!("{what} item {key}: {have} bytes, at least {need} needed"))
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Inode {
    pub size: u64,
    pub mode: u32,
    pub flags: u64,
}

pub(super) const S_IFMT: u32 = 0o170000;
pub(super) const S_IFDIR: u32 = 0o040000;
pub(super) const S_IFREG: u32 = 0o100000;
pub(super) const S_IFLNK: u32 = 0o120000;

impl Inode {
    pub fn parse(key: &Key, d: &[u8]) -> FsResult<Inode> {
        if d.len() < 160 {
            return Err(short("inode", key, d.len(), 160));
        }
        Ok(Inode { size: le64(d, 16), mode: le32(d, 52), flags: le64(d, 64) })
    }
    pub fn file_type(&self) -> FileType {
        match self.mode & S_IFMT {
            S_IFREG => FileType::File,
            S_IFDIR => FileType::Dir,
            S_IFLNK => FileType::Symlink,
            _ => FileType::Other,
        }
    }
}

/// One entry of a DIR_ITEM or DIR_INDEX item.
#[derive(Debug, Clone, Copy)]
pub(super) struct DirEntry<'a> {
    /// An INODE_ITEM key in the same tree, or a ROOT_ITEM key naming a subvolume.
    pub location: Key,
    pub ftype: u8,
    pub name: &'a [u8],
}

const FT_REG_FILE: u8 = 1;
const FT_DIR: u8 = 2;
const FT_SYMLINK: u8 = 7;

impl DirEntry<'_> {
    pub fn file_type(&self) -> FileType {
        if self.location.ty == ROOT_ITEM {
            return FileType::Dir;
        }
        match self.ftype {
            FT_REG_FILE => FileType::File,
            FT_DIR => FileType::Dir,
            FT_SYMLINK => FileType::Symlink,
            _ => FileType::Other,
        }
    }
}

const DIR_ITEM_HEADER: usize = 30;

/// The entries packed in a DIR_ITEM (several names whose hashes collide) or DIR_INDEX (one) item.
pub(super) fn dir_entries<'a>(key: &Key, d: &'a [u8]) -> FsResult<Vec<DirEntry<'a>>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < d.len() {
        let bad = |m: String| corrupt(format!("directory item {key}, entry at byte {at}: {m}"));
        if d.len() - at < DIR_ITEM_HEADER {
            return Err(bad(format!("{} bytes left, a header needs {DIR_ITEM_HEADER}", d.len() - at)));
        }
        let location = Key::parse(d, at);
        let data_len = usize::from(le16(d, at + 25));
        let name_len = usize::from(le16(d, at + 27));
        let ftype = u8_at(d, at + 29);
        if name_len == 0 || name_len > NAME_MAX {
            return Err(bad(format!("name length {name_len}")));
        }
        let total = DIR_ITEM_HEADER + name_len + data_len;
        if total > d.len() - at {
            return Err(bad(format!("name and data ({} bytes) run past the item", name_len + data_len)));
        }
        out.push(DirEntry { location, ftype, name: slice(d, at + DIR_ITEM_HEADER, name_len) });
        at += total;
    }
    Ok(out)
}

/// The first name of an INODE_REF item (a directory has exactly one): the directory holding the inode is the
/// key's offset.
pub(super) fn inode_ref_name<'a>(key: &Key, d: &'a [u8]) -> FsResult<&'a [u8]> {
    if d.len() < 10 {
        return Err(short("inode ref", key, d.len(), 10));
    }
    let len = usize::from(le16(d, 8));
    if len == 0 || len > NAME_MAX || 10 + len > d.len() {
        return Err(corrupt(format!("inode ref item {key}: name length {len} in {} bytes", d.len())));
    }
    Ok(slice(d, 10, len))
}

/// What a ROOT_ITEM says of a tree: where its root node is, and for subvolumes their root directory and flags.
#[derive(Debug, Clone, Copy)]
pub(super) struct RootItem {
    pub generation: u64,
    pub root_dirid: u64,
    pub bytenr: u64,
    pub flags: u64,
    pub level: u8,
}

/// `BTRFS_ROOT_SUBVOL_RDONLY`.
pub(super) const ROOT_SUBVOL_RDONLY: u64 = 1;

impl RootItem {
    pub fn parse(key: &Key, d: &[u8]) -> FsResult<RootItem> {
        // 239 bytes before the v2 fields (uuids, times) that newer kernels append.
        if d.len() < 239 {
            return Err(short("root", key, d.len(), 239));
        }
        Ok(RootItem {
            generation: le64(d, 160),
            root_dirid: le64(d, 168),
            bytenr: le64(d, 176),
            flags: le64(d, 208),
            level: u8_at(d, 238),
        })
    }
}

/// A ROOT_REF or ROOT_BACKREF: the subvolume's entry `name` in directory `dirid` of its parent.
#[derive(Debug, Clone)]
pub(super) struct RootRef<'a> {
    pub dirid: u64,
    pub name: &'a [u8],
}

impl<'a> RootRef<'a> {
    pub fn parse(key: &Key, d: &'a [u8]) -> FsResult<RootRef<'a>> {
        if d.len() < 18 {
            return Err(short("root ref", key, d.len(), 18));
        }
        let len = usize::from(le16(d, 16));
        if len == 0 || len > NAME_MAX || 18 + len > d.len() {
            return Err(corrupt(format!("root ref item {key}: name length {len} in {} bytes", d.len())));
        }
        Ok(RootRef { dirid: le64(d, 0), name: slice(d, 18, len) })
    }
}

pub(super) const COMPRESS_NONE: u8 = 0;

#[derive(Debug, Clone, Copy)]
pub(super) enum ExtentBody<'a> {
    /// Data stored in the leaf itself (compressed when the extent says so).
    Inline(&'a [u8]),
    /// `disk_bytenr` 0 is a hole. The file's bytes are `[offset, offset + num_bytes)` of the extent's
    /// (decompressed) contents.
    Regular { disk_bytenr: u64, disk_num_bytes: u64, offset: u64, num_bytes: u64 },
    /// Allocated but never written: reads as zeros.
    Prealloc { num_bytes: u64 },
}

#[derive(Debug, Clone, Copy)]
pub(super) struct FileExtent<'a> {
    /// Size of the data once decompressed.
    pub ram_bytes: u64,
    pub compression: u8,
    pub body: ExtentBody<'a>,
}

impl<'a> FileExtent<'a> {
    pub fn parse(key: &Key, d: &'a [u8]) -> FsResult<FileExtent<'a>> {
        if d.len() < 21 {
            return Err(short("file extent", key, d.len(), 21));
        }
        let encryption = u8_at(d, 17);
        let other_encoding = le16(d, 18);
        if encryption != 0 || other_encoding != 0 {
            return Err(FsError::Unsupported(format!(
                "btrfs: file extent {key} is encrypted or encoded ({encryption}, {other_encoding})"
            )));
        }
        let body = match u8_at(d, 20) {
            0 => ExtentBody::Inline(slice(d, 21, d.len() - 21)),
            t @ (1 | 2) => {
                if d.len() < 53 {
                    return Err(short("file extent", key, d.len(), 53));
                }
                if t == 2 {
                    ExtentBody::Prealloc { num_bytes: le64(d, 45) }
                } else {
                    ExtentBody::Regular {
                        disk_bytenr: le64(d, 21),
                        disk_num_bytes: le64(d, 29),
                        offset: le64(d, 37),
                        num_bytes: le64(d, 45),
                    }
                }
            }
            t => return Err(corrupt(format!("file extent {key}: unknown type {t}"))),
        };
        Ok(FileExtent { ram_bytes: le64(d, 8), compression: u8_at(d, 16), body })
    }
}
