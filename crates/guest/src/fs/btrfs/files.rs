//! File data: the EXTENT_DATA items of an inode, keyed by file offset. Bytes no extent covers (a hole left out
//! under NO_HOLES, or the tail of a file past its last extent) read as zeros, as do holes and preallocated
//! extents.

use super::extents::{self, MAX_COMPRESSED};
use super::items::{ExtentBody, FileExtent, Key, COMPRESS_NONE, EXTENT_DATA};
use super::{corrupt, BtrfsFs, ExtentTag, Ino};
use crate::fs::FsResult;

/// `BTRFS_INODE_IMMUTABLE` and `BTRFS_INODE_APPEND`.
pub(super) const INODE_IMMUTABLE: u64 = 1 << 6;
pub(super) const INODE_APPEND: u64 = 1 << 7;

/// Bytes decompressed at most by one instance: reading a whole 512 MiB file twice over takes 1 GiB.
const MAX_DECOMPRESSED_TOTAL: u64 = 16 << 30;

/// What one extent item says about the bytes at a file offset.
enum Found {
    /// The extent covers `[start, end)` of the file.
    Extent { start: u64, end: u64 },
    /// No extent covers the offset.
    Gap,
}

impl BtrfsFs {
    /// Up to `buf.len()` bytes of inode `ino` (of `size` bytes) from `pos`, from one extent or one gap; 0 only
    /// at the end of the file or for an empty `buf`.
    pub(super) fn read_data(&mut self, ino: Ino, size: u64, pos: u64, buf: &mut [u8]) -> FsResult<usize> {
        if pos >= size || buf.is_empty() {
            return Ok(0);
        }
        let want = (size - pos).min(buf.len() as u64);
        let tree = self.tree_of(ino.tree)?;
        let item = self.trees.seek_le(&tree, Key::new(ino.ino, EXTENT_DATA, pos))?;
        let item = item.filter(|i| i.key.objectid == ino.ino && i.key.ty == EXTENT_DATA);
        let found = match &item {
            Some(item) => {
                let e = FileExtent::parse(&item.key, item.data())?;
                let len = match e.body {
                    // As the kernel's tree checker requires: an inline extent starts the file and holds at most
                    // a sector, so a file has one and reading it costs one decompression.
                    ExtentBody::Inline(_)
                        if item.key.offset != 0 || e.ram_bytes > u64::from(self.trees.sb.sectorsize) =>
                    {
                        return Err(corrupt(format!(
                            "fs tree {}: inline extent {} of {} bytes is not a file's first sector",
                            ino.tree, item.key, e.ram_bytes
                        )));
                    }
                    ExtentBody::Inline(d) if e.compression == COMPRESS_NONE => d.len() as u64,
                    ExtentBody::Inline(_) => e.ram_bytes,
                    ExtentBody::Regular { num_bytes, .. } | ExtentBody::Prealloc { num_bytes } => num_bytes,
                };
                let start = item.key.offset;
                let end = start.checked_add(len).ok_or_else(|| {
                    corrupt(format!("fs tree {}: file extent {} of length {len:#x} overflows", ino.tree, item.key))
                })?;
                if pos < end {
                    Found::Extent { start, end }
                } else {
                    Found::Gap
                }
            }
            None => Found::Gap,
        };
        let (item, start, end) = match (found, item) {
            (Found::Extent { start, end }, Some(item)) => (item, start, end),
            _ => {
                // Zeros up to the next extent (or the end of the file).
                let mut cursor = self.trees.seek(&tree, Key::new(ino.ino, EXTENT_DATA, pos + 1))?;
                let next = self.trees.next(&mut cursor)?;
                let gap_end = next
                    .filter(|i| i.key.objectid == ino.ino && i.key.ty == EXTENT_DATA)
                    .map_or(size, |i| i.key.offset.min(size));
                let n = want.min(gap_end - pos) as usize;
                zero(buf, n);
                return Ok(n);
            }
        };
        let n = want.min(end - pos) as usize;
        let within = pos - start;
        let what = format!("fs tree {} inode {} extent {}", ino.tree, ino.ino, item.key);
        let e = FileExtent::parse(&item.key, item.data())?;
        match e.body {
            ExtentBody::Inline(d) if e.compression == COMPRESS_NONE => copy(buf, d, within, n, &what)?,
            ExtentBody::Inline(d) => {
                let tag = ExtentTag::Inline { leaf: item.logical(), slot: item.slot() };
                let sectorsize = self.trees.sb.sectorsize;
                let data =
                    self.decompressed(tag, |_| extents::decompress(e.compression, d, e.ram_bytes, sectorsize, &what))?;
                copy(buf, data, within, n, &what)?;
            }
            ExtentBody::Prealloc { .. } | ExtentBody::Regular { disk_bytenr: 0, .. } => zero(buf, n),
            ExtentBody::Regular { disk_bytenr, offset, .. } if e.compression == COMPRESS_NONE => {
                let at = offset
                    .checked_add(within)
                    .and_then(|o| disk_bytenr.checked_add(o))
                    .ok_or_else(|| corrupt(format!("{what}: data address overflows")))?;
                let part = buf.get_mut(..n).unwrap_or(&mut []);
                self.trees.read_logical(at, part)?;
            }
            ExtentBody::Regular { disk_bytenr, disk_num_bytes, offset, num_bytes } => {
                if disk_num_bytes > MAX_COMPRESSED {
                    return Err(corrupt(format!("{what}: {disk_num_bytes} compressed bytes, more than 128 KiB")));
                }
                if offset.checked_add(num_bytes).is_none_or(|e2| e2 > e.ram_bytes) {
                    return Err(corrupt(format!(
                        "{what}: uses bytes [{offset:#x}, +{num_bytes:#x}) of {:#x} decompressed",
                        e.ram_bytes
                    )));
                }
                let tag = ExtentTag::Regular {
                    disk_bytenr,
                    disk_num_bytes,
                    ram_bytes: e.ram_bytes,
                    compression: e.compression,
                };
                let sectorsize = self.trees.sb.sectorsize;
                let data = self.decompressed(tag, |fs| {
                    let mut raw = vec![0u8; disk_num_bytes as usize];
                    fs.trees.read_logical(disk_bytenr, &mut raw)?;
                    extents::decompress(e.compression, &raw, e.ram_bytes, sectorsize, &what)
                })?;
                copy(buf, data, offset + within, n, &what)?;
            }
        }
        Ok(n)
    }

    /// The decompressed contents of the extent `tag`, from the one-extent cache or from `load`.
    fn decompressed(&mut self, tag: ExtentTag, load: impl FnOnce(&mut Self) -> FsResult<Vec<u8>>) -> FsResult<&[u8]> {
        if self.last_extent.as_ref().is_none_or(|(t, _)| *t != tag) {
            self.last_extent = None;
            let data = load(self)?;
            // Extents that each use a byte of a different 128 KiB compressed extent would make every byte read
            // cost a full decompression: the total is capped.
            self.decompressed_total = self.decompressed_total.saturating_add(data.len() as u64);
            if self.decompressed_total > MAX_DECOMPRESSED_TOTAL {
                return Err(corrupt(format!(
                    "more than {} GiB decompressed from this filesystem: its extents make reads loop",
                    MAX_DECOMPRESSED_TOTAL >> 30
                )));
            }
            self.last_extent = Some((tag, data));
        }
        Ok(self.last_extent.as_ref().map_or(&[][..], |(_, d)| d.as_slice()))
    }
}

fn zero(buf: &mut [u8], n: usize) {
    if let Some(b) = buf.get_mut(..n) {
        b.fill(0);
    }
}

/// Copy `n` bytes of `src` from `from` into `buf`.
fn copy(buf: &mut [u8], src: &[u8], from: u64, n: usize, what: &str) -> FsResult<()> {
    let s = usize::try_from(from).ok().and_then(|f| src.get(f..f.checked_add(n)?));
    match (s, buf.get_mut(..n)) {
        (Some(s), Some(b)) => {
            b.copy_from_slice(s);
            Ok(())
        }
        _ => Err(corrupt(format!("{what}: {n} bytes at {from:#x} lie outside its {} bytes of data", src.len()))),
    }
}
