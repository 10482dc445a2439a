//! A minimal ext2/3/4 inode reader for what `ext4-view` keeps private: a path's inode number and its `i_flags`
//! (the immutable bit). Path lookup scans directory blocks linearly (htree nodes look like empty entries), maps
//! blocks through extent trees or the ext2/3 block map, and caps every count taken from the disk.

use super::{components, FsError, FsResult};
use crate::bytes::{le16, le32};
use crate::reader::Region;

/// Directory blocks scanned per directory (256 MiB of 4 KiB blocks): a hostile size cannot make a scan unbounded.
const MAX_DIR_BLOCKS: u64 = 1 << 16;
/// Extent tree depth accepted (ext4 itself stops at 5).
const MAX_DEPTH: u32 = 5;
const ROOT_INO: u32 = 2;
const EXTENTS_FL: u32 = 0x8_0000;
const INLINE_DATA_FL: u32 = 0x1000_0000;

pub(crate) struct RawExt4 {
    region: Region,
    block_size: u64,
    inodes_per_group: u32,
    inodes_count: u32,
    inode_size: u64,
    desc_size: u64,
    first_data_block: u64,
}

fn corrupt(msg: String) -> FsError {
    FsError::Corrupt(msg)
}

impl RawExt4 {
    pub(crate) fn new(mut region: Region) -> FsResult<Self> {
        let sb = region.read_vec(1024, 1024).map_err(|e| corrupt(format!("ext4 superblock: {e}")))?;
        let log = le32(&sb, 24);
        if log > 6 {
            return Err(corrupt(format!(
                "ext4 superblock at disk offset {:#x}: bad block size",
                region.start() + 1024
            )));
        }
        let rev = le32(&sb, 76);
        let inode_size = if rev == 0 { 128 } else { u64::from(le16(&sb, 88)) };
        let incompat = le32(&sb, 96);
        let desc_size = if incompat & 0x80 != 0 { u64::from(le16(&sb, 254)).max(32) } else { 32 };
        let inodes_per_group = le32(&sb, 40);
        if !(128..=4096).contains(&inode_size) || inodes_per_group == 0 || desc_size > 1024 {
            return Err(corrupt(format!(
                "ext4 superblock at disk offset {:#x}: inode size {inode_size}, {inodes_per_group} inodes per group",
                region.start() + 1024
            )));
        }
        Ok(RawExt4 {
            block_size: 1024 << log,
            inodes_per_group,
            inodes_count: le32(&sb, 0),
            inode_size,
            desc_size,
            first_data_block: u64::from(le32(&sb, 20)),
            region,
        })
    }

    fn read(&mut self, offset: u64, len: u64, what: &str) -> FsResult<Vec<u8>> {
        self.region
            .read_vec(offset, len as usize)
            .map_err(|e| corrupt(format!("ext4 {what} at disk offset {:#x}: {e}", self.region.start() + offset)))
    }

    /// The raw on-disk inode `ino` (its first `inode_size` bytes).
    pub(crate) fn inode(&mut self, ino: u32) -> FsResult<Vec<u8>> {
        if ino == 0 || ino > self.inodes_count {
            return Err(corrupt(format!("ext4: inode number {ino} out of range (1..={})", self.inodes_count)));
        }
        let group = u64::from((ino - 1) / self.inodes_per_group);
        let index = u64::from((ino - 1) % self.inodes_per_group);
        let desc_at = (self.first_data_block + 1) * self.block_size + group * self.desc_size;
        let desc = self.read(desc_at, self.desc_size, "group descriptor")?;
        let hi = if self.desc_size >= 64 { u64::from(le32(&desc, 0x28)) << 32 } else { 0 };
        let table = u64::from(le32(&desc, 8)) | hi;
        let at = table
            .checked_mul(self.block_size)
            .and_then(|t| t.checked_add(index * self.inode_size))
            .ok_or_else(|| corrupt(format!("ext4 group descriptor at {desc_at:#x}: inode table block {table}")))?;
        self.read(at, self.inode_size, &format!("inode {ino}"))
    }

    /// Physical blocks of a directory inode, in logical order (holes left out), at most [`MAX_DIR_BLOCKS`].
    fn blocks(&mut self, ino: u32, inode: &[u8]) -> FsResult<Vec<u64>> {
        let flags = le32(inode, 0x20);
        if flags & INLINE_DATA_FL != 0 {
            return Err(FsError::Unsupported(format!("ext4 inode {ino}: inline data")));
        }
        let size = u64::from(le32(inode, 4)) | (u64::from(le32(inode, 0x6C)) << 32);
        let want = size.div_ceil(self.block_size).min(MAX_DIR_BLOCKS);
        let i_block = crate::bytes::slice(inode, 0x28, 60).to_vec();
        let mut out = Vec::new();
        if flags & EXTENTS_FL != 0 {
            self.extent_node(&i_block, 0, want, &mut out)?;
        } else {
            for i in 0..12 {
                out.push(u64::from(le32(&i_block, i * 4)));
            }
            for (slot, level) in [(12usize, 1u32), (13, 2), (14, 3)] {
                if out.len() as u64 >= want {
                    break;
                }
                self.indirect(u64::from(le32(&i_block, slot * 4)), level, want, &mut out)?;
            }
            out.retain(|&b| b != 0);
        }
        out.truncate(want as usize);
        Ok(out)
    }

    fn indirect(&mut self, block: u64, level: u32, want: u64, out: &mut Vec<u64>) -> FsResult<()> {
        if block == 0 || out.len() as u64 >= want {
            return Ok(());
        }
        let data = self.read(block.saturating_mul(self.block_size), self.block_size, "indirect block")?;
        for i in 0..(self.block_size / 4) as usize {
            if out.len() as u64 >= want {
                break;
            }
            let b = u64::from(le32(&data, i * 4));
            if level == 1 {
                out.push(b);
            } else {
                self.indirect(b, level - 1, want, out)?;
            }
        }
        Ok(())
    }

    fn extent_node(&mut self, node: &[u8], depth: u32, want: u64, out: &mut Vec<u64>) -> FsResult<()> {
        if le16(node, 0) != 0xF30A {
            return Err(corrupt("ext4: extent header magic missing".into()));
        }
        let entries = usize::from(le16(node, 2));
        let node_depth = u32::from(le16(node, 6));
        if depth > MAX_DEPTH || node_depth > MAX_DEPTH || entries > (node.len().saturating_sub(12)) / 12 {
            return Err(corrupt(format!("ext4: extent node with {entries} entries at depth {node_depth}")));
        }
        for i in 0..entries {
            if out.len() as u64 >= want {
                break;
            }
            let e = 12 + i * 12;
            if node_depth == 0 {
                let len = u64::from(le16(node, e + 4));
                // Lengths above 32768 mark uninitialised extents, which read as zeros: no directory entries there.
                if len > 32768 {
                    continue;
                }
                let start = (u64::from(le16(node, e + 6)) << 32) | u64::from(le32(node, e + 8));
                for k in 0..len.min(want - out.len() as u64) {
                    out.push(start + k);
                }
            } else {
                let leaf = (u64::from(le16(node, e + 8)) << 32) | u64::from(le32(node, e + 4));
                let child = self.read(leaf.saturating_mul(self.block_size), self.block_size, "extent index block")?;
                self.extent_node(&child, depth + 1, want, out)?;
            }
        }
        Ok(())
    }

    /// The inode number `name` has in directory `dir`.
    fn lookup(&mut self, dir: u32, name: &str) -> FsResult<u32> {
        let inode = self.inode(dir)?;
        if le16(&inode, 0) & 0xF000 != 0x4000 {
            return Err(FsError::NotADirectory);
        }
        for block in self.blocks(dir, &inode)? {
            let data = self.read(block.saturating_mul(self.block_size), self.block_size, "directory block")?;
            let mut at = 0usize;
            while at + 8 <= data.len() {
                let ino = le32(&data, at);
                let rec_len = usize::from(le16(&data, at + 4));
                let name_len = usize::from(data[at + 6]);
                if rec_len < 8 {
                    break;
                }
                if ino != 0 && crate::bytes::slice(&data, at + 8, name_len) == name.as_bytes() {
                    return Ok(ino);
                }
                at += rec_len;
            }
        }
        Err(FsError::NotFound)
    }

    /// Inode number of a symlink-free absolute path.
    pub(crate) fn resolve(&mut self, path: &str) -> FsResult<u32> {
        let mut ino = ROOT_INO;
        for c in components(path) {
            ino = self.lookup(ino, c)?;
        }
        Ok(ino)
    }

    /// `i_flags` of a symlink-free absolute path.
    pub(crate) fn flags(&mut self, path: &str) -> FsResult<u32> {
        let ino = self.resolve(path)?;
        let inode = self.inode(ino)?;
        Ok(le32(&inode, 0x20))
    }
}
