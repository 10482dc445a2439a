//! Logical to physical addresses. Every btrfs address above the superblock is logical; chunks map ranges of it
//! onto device stripes. The superblock's `sys_chunk_array` maps the system chunks, enough to read the chunk tree,
//! which maps the rest. Only the profiles that keep a whole copy on one device are read: SINGLE and DUP (from
//! whose two copies the first is used).

use super::corrupt;
use super::items::{Key, CHUNK_ITEM, FIRST_FREE, KEY_SIZE};
use super::tree::Trees;
use crate::bytes::{le16, le64};
use crate::fs::{FsError, FsResult};
use std::collections::BTreeMap;

/// Chunks kept at most: a 16 TiB filesystem of 1 GiB data chunks has about 16 000.
const MAX_CHUNKS: usize = 100_000;
const CHUNK_HEADER: usize = 48;
const STRIPE_SIZE: usize = 32;

const BLOCK_GROUP_DUP: u64 = 1 << 5;
const PROFILES: &[(u64, &str)] = &[
    (1 << 3, "raid0"),
    (1 << 4, "raid1"),
    (1 << 6, "raid10"),
    (1 << 7, "raid5"),
    (1 << 8, "raid6"),
    (1 << 9, "raid1c3"),
    (1 << 10, "raid1c4"),
];

#[derive(Debug, Clone, Copy)]
struct Chunk {
    length: u64,
    flags: u64,
    num_stripes: u16,
    /// Device and physical offset of the first stripe.
    devid: u64,
    physical: u64,
}

pub(super) struct ChunkMap {
    chunks: BTreeMap<u64, Chunk>,
    devid: u64,
    device_len: u64,
}

impl ChunkMap {
    pub fn new(devid: u64, device_len: u64) -> ChunkMap {
        ChunkMap { chunks: BTreeMap::new(), devid, device_len }
    }

    /// Parse one `btrfs_chunk` at the start of `d` for logical address `logical`; returns its encoded length.
    fn add(&mut self, logical: u64, d: &[u8], whence: &str) -> FsResult<usize> {
        let bad = |m: String| corrupt(format!("{whence}: chunk at logical {logical:#x}: {m}"));
        if d.len() < CHUNK_HEADER {
            return Err(bad(format!("{} bytes, a chunk item needs {CHUNK_HEADER}", d.len())));
        }
        let length = le64(d, 0);
        let flags = le64(d, 24);
        let num_stripes = le16(d, 44);
        let size = CHUNK_HEADER + usize::from(num_stripes) * STRIPE_SIZE;
        if num_stripes == 0 || size > d.len() {
            return Err(bad(format!("{num_stripes} stripes in {} bytes", d.len())));
        }
        if length == 0 || logical.checked_add(length).is_none() {
            return Err(bad(format!("length {length:#x}")));
        }
        let chunk = Chunk { length, flags, num_stripes, devid: le64(d, 48), physical: le64(d, 56) };
        // The same chunk appears in the superblock's array and in the chunk tree: the tree's copy wins.
        if self.chunks.insert(logical, chunk).is_none() {
            if self.chunks.len() > MAX_CHUNKS {
                return Err(bad(format!("more than {MAX_CHUNKS} chunks")));
            }
            let end = logical + length;
            let overlaps = self.chunks.range(..logical).next_back().is_some_and(|(s, c)| s + c.length > logical)
                || self.chunks.range(logical + 1..).next().is_some_and(|(s, _)| *s < end);
            if overlaps {
                return Err(bad("overlaps another chunk".into()));
            }
        }
        Ok(size)
    }

    /// Bootstrap from the superblock's `sys_chunk_array`: (key, chunk) pairs back to back.
    pub fn add_sys_array(&mut self, array: &[u8]) -> FsResult<()> {
        let mut at = 0usize;
        while at < array.len() {
            let key = Key::parse(array, at);
            if array.len() - at < KEY_SIZE || key.ty != CHUNK_ITEM {
                return Err(corrupt(format!("superblock sys_chunk_array at byte {at}: not a chunk item key")));
            }
            at += KEY_SIZE;
            let rest = array.get(at..).unwrap_or(&[]);
            at += self.add(key.offset, rest, "superblock sys_chunk_array")?;
        }
        Ok(())
    }

    /// Physical offset of `logical` and how many bytes from it lie in the same chunk.
    pub fn map(&self, logical: u64) -> FsResult<(u64, u64)> {
        let Some((&start, c)) = self.chunks.range(..=logical).next_back() else {
            return Err(corrupt(format!("no chunk maps logical address {logical:#x}")));
        };
        let within = logical - start;
        if within >= c.length {
            return Err(corrupt(format!("no chunk maps logical address {logical:#x}")));
        }
        if let Some((_, name)) = PROFILES.iter().find(|(bit, _)| c.flags & bit != 0) {
            return Err(FsError::Unsupported(format!("btrfs: chunk at logical {start:#x} uses the {name} profile")));
        }
        let copies = if c.flags & BLOCK_GROUP_DUP != 0 { 2 } else { 1 };
        if c.num_stripes < copies {
            return Err(corrupt(format!("chunk at logical {start:#x}: {} stripes for its profile", c.num_stripes)));
        }
        if c.devid != self.devid {
            return Err(corrupt(format!(
                "chunk at logical {start:#x}: stripe on device {}, this device is {}",
                c.devid, self.devid
            )));
        }
        let physical = c.physical.checked_add(within);
        let end = c.physical.checked_add(c.length);
        match (physical, end) {
            (Some(p), Some(e)) if e <= self.device_len => Ok((p, c.length - within)),
            _ => Err(corrupt(format!(
                "chunk at logical {start:#x} (length {:#x}) maps to device offset {:#x}, past the end of the \
                 device ({:#x} bytes)",
                c.length, c.physical, self.device_len
            ))),
        }
    }
}

/// Read every CHUNK_ITEM of the chunk tree into the map.
pub(super) fn load_chunk_tree(trees: &mut Trees) -> FsResult<()> {
    let root = trees.chunk_root();
    let mut cursor = trees.seek(&root, Key::new(FIRST_FREE, CHUNK_ITEM, 0))?;
    while let Some(item) = trees.next(&mut cursor)? {
        if item.key.ty != CHUNK_ITEM {
            continue;
        }
        let data = item.data();
        let logical = item.key.offset;
        trees.chunks.add(logical, data, &format!("chunk tree leaf at logical {:#x}", item.logical()))?;
    }
    Ok(())
}
