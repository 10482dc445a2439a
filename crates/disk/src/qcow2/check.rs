//! Structural check: rebuild every cluster's reference count from the metadata (header, L1 and L2
//! tables of the active layer and of snapshots, refcount table and blocks, snapshot table, bitmaps) and
//! compare it with the stored refcounts, as `qemu-img check` does; on the way, catch what qemu's reader
//! lets through: L2 entries pointing into metadata, metadata overlapping metadata, misaligned offsets,
//! references past the end of the file, and the corrupt bit.
//!
//! Memory: one byte per host cluster (kind of the first user in the high nibble, reference count in the
//! low nibble, with larger counts in a side map), so the cluster count is capped.

use super::entries::*;
use super::header::{Header, MAX_L1_BYTES, MAX_SNAPSHOTS};
use super::reader::{read_table, Qcow2Image};
use crate::error::{Error, Result};
use crate::file::{be_u16, be_u32, be_u64, ImageFile};
use crate::image::{CheckReport, Finding};
use std::collections::HashMap;

/// Host clusters the check accepts (one byte each): 2 TiB with 64 KiB clusters.
const MAX_CHECK_CLUSTERS: u64 = 32 << 20;
/// Clusters with 15 or more references (compressed clusters packed together, snapshots) tracked exactly.
const MAX_SHARED_CLUSTERS: usize = 2 << 20;
/// References to L2 tables collected over the active and snapshot L1 tables.
const MAX_L2_REFERENCES: usize = 4 << 20;
/// Individual refcount mismatch findings listed before summarising.
const MAX_LISTED: usize = 50;
/// Findings listed before the rest are only counted.
const MAX_FINDINGS: usize = 1000;
/// Bytes of snapshot L1 tables read (they may all point to the same place in a hostile image).
const MAX_SNAPSHOT_L1_BYTES: u64 = 1 << 30;
/// Bytes of refcount blocks cached for the copied-flag checks.
const BLOCK_CACHE_BYTES: u64 = 8 << 20;
/// qemu's limits on the snapshot table and the bitmap directory.
const MAX_SNAPSHOT_TABLE: u64 = 64 << 20;
const MAX_SNAPSHOT_EXTRA: u32 = 1024;
const MAX_BITMAP_DIRECTORY: u64 = 64 << 20;
const MAX_BITMAP_TABLE_BYTES: u64 = 64 << 20;

/// What occupies a host cluster (the first structure counted there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Free = 0,
    Header,
    L1,
    RefTable,
    RefBlock,
    L2,
    SnapshotTable,
    SnapshotL1,
    BitmapDirectory,
    BitmapTable,
    BitmapData,
    Data,
}

/// Every kind, by its number.
const KINDS: [Kind; 12] = [
    Kind::Free,
    Kind::Header,
    Kind::L1,
    Kind::RefTable,
    Kind::RefBlock,
    Kind::L2,
    Kind::SnapshotTable,
    Kind::SnapshotL1,
    Kind::BitmapDirectory,
    Kind::BitmapTable,
    Kind::BitmapData,
    Kind::Data,
];

impl Kind {
    fn from_nibble(n: u8) -> Kind {
        KINDS.get(n as usize).copied().unwrap_or(Kind::Free)
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Free => "free space",
            Kind::Header => "header",
            Kind::L1 => "L1 table",
            Kind::RefTable => "refcount table",
            Kind::RefBlock => "refcount block",
            Kind::L2 => "L2 table",
            Kind::SnapshotTable => "snapshot table",
            Kind::SnapshotL1 => "snapshot L1 table",
            Kind::BitmapDirectory => "bitmap directory",
            Kind::BitmapTable => "bitmap table",
            Kind::BitmapData => "bitmap data",
            Kind::Data => "guest data",
        }
    }
    fn is_metadata(self) -> bool {
        !matches!(self, Kind::Free | Kind::Data | Kind::BitmapData)
    }
}

pub(crate) fn check(img: &Qcow2Image) -> Result<CheckReport> {
    let mut c = Checker::new(img)?;
    c.run()?;
    Ok(c.report)
}

struct Checker<'a> {
    img: &'a Qcow2Image,
    h: &'a Header,
    file: &'a ImageFile,
    cs: u64,
    /// Per host cluster: kind in the high nibble, reference count (15 = see `big`) in the low nibble.
    cells: Vec<u8>,
    big: HashMap<u32, u32>,
    /// More clusters with 15 or more references than `big` may hold (only a hostile image gets there).
    too_shared: bool,
    /// Stored refcount blocks by refcount table index (0 = none or unusable).
    refblocks: Vec<u64>,
    /// Refcount blocks read for the copied-flag checks (None: unreadable).
    block_cache: HashMap<u64, Option<Vec<u8>>>,
    report: CheckReport,
    /// Findings not listed once MAX_FINDINGS were recorded.
    suppressed: usize,
}

impl<'a> Checker<'a> {
    fn new(img: &'a Qcow2Image) -> Result<Self> {
        let h = &img.header;
        let cs = h.cluster_size();
        let file = &img.file;
        let clusters = file.len().div_ceil(cs) + 1;
        if clusters > MAX_CHECK_CLUSTERS {
            return Err(Error::unsupported(format!(
                "image has {clusters} clusters; the check handles at most {MAX_CHECK_CLUSTERS}"
            ))
            .in_file(file.path()));
        }
        Ok(Checker {
            img,
            h,
            file,
            cs,
            cells: vec![0; clusters as usize],
            big: HashMap::new(),
            too_shared: false,
            refblocks: Vec::new(),
            block_cache: HashMap::new(),
            report: CheckReport::default(),
            suppressed: 0,
        })
    }

    fn corruption(&mut self, structure: impl Into<String>, offset: Option<u64>, message: impl Into<String>) {
        if self.report.corruptions.len() >= MAX_FINDINGS {
            self.suppressed += 1;
            return;
        }
        self.report.corruptions.push(Finding::new(structure, offset, message));
    }

    fn run(&mut self) -> Result<()> {
        if self.h.corrupt() {
            self.corruption(
                "header",
                Some(72),
                "the corrupt bit is set: qemu found metadata damage while writing this image \
                 (qemu-img convert still copies it without complaint)",
            );
        }
        if self.h.dirty() {
            self.report.warnings.push(Finding::new(
                "header",
                Some(72),
                "the dirty bit is set (the image was not closed cleanly): refcounts may be stale, so refcount \
                 mismatches are reported as warnings; `qemu-img check -r all` repairs them",
            ));
        }

        self.count(0, self.cs, Kind::Header, false, &|| "header".into());
        let l1_bytes = self.h.l1_size as u64 * 8;
        self.count(self.h.l1_table_offset, l1_bytes, Kind::L1, false, &|| "L1 table".into());
        self.load_refcount_table()?;
        let snapshots = self.snapshots();
        self.bitmaps();

        // References to L2 tables from the active L1 table and the snapshots' L1 tables, packed as
        // (host cluster << 32 | active << 31 | L1 index) so that sorting groups them by table; then each
        // distinct table is walked once, counting its clusters once per reference.
        let mut refs: Vec<u64> = Vec::new();
        let img = self.img;
        self.l2_references(&img.l1, None, &mut refs)?;
        let mut budget = MAX_SNAPSHOT_L1_BYTES;
        for (i, l1_offset, l1_size) in snapshots {
            budget = budget.checked_sub(l1_size as u64 * 8).ok_or_else(|| {
                Error::unsupported("the snapshots' L1 tables are too large to check").in_file(self.file.path())
            })?;
            match read_table(self.file, l1_offset, l1_size as u64, "snapshot L1 table") {
                Ok(l1) => self.l2_references(&l1, Some(i), &mut refs)?,
                Err(e) => self.corruption(format!("snapshot {i}"), Some(l1_offset), e.message().to_string()),
            }
        }
        refs.sort_unstable();
        for group in refs.chunk_by(|a, b| a >> 32 == b >> 32) {
            let l2 = (group[0] >> 32) * self.cs;
            let guest_base =
                group.iter().find(|r| *r & (1 << 31) != 0).map(|r| (r & 0x7fff_ffff) * self.h.l1_entry_span());
            self.l2_table(l2, group.len() as u64, guest_base)?;
        }

        if self.too_shared {
            return Err(Error::unsupported("too many clusters are shared by 15 or more references to check")
                .in_file(self.file.path()));
        }
        self.compare()?;
        if self.suppressed > 0 {
            self.report.corruptions.push(Finding::new(
                "image",
                None,
                format!("{} more problems were found and not listed", self.suppressed),
            ));
        }
        Ok(())
    }

    /// Check the entries of one L1 table and collect its references to L2 tables.
    fn l2_references(&mut self, l1: &[u64], snapshot: Option<usize>, refs: &mut Vec<u64>) -> Result<()> {
        let what = match snapshot {
            None => "L1 table".to_string(),
            Some(i) => format!("L1 table of snapshot {i}"),
        };
        for (i, &entry) in l1.iter().enumerate() {
            if entry == 0 {
                continue;
            }
            let structure = || format!("{what}, entry {i}");
            if entry & L1E_RESERVED_MASK != 0 {
                self.corruption(structure(), None, format!("reserved bits are set ({entry:#018x})"));
            }
            let l2 = entry & L1E_OFFSET_MASK;
            if l2 == 0 {
                continue;
            }
            if !l2.is_multiple_of(self.cs) {
                self.corruption(structure(), None, format!("L2 table offset {l2:#x} is not cluster aligned"));
                continue;
            }
            if !self.count(l2, self.cs, Kind::L2, false, &structure) {
                continue;
            }
            if snapshot.is_none() {
                let stored = self.stored_refcount(l2 / self.cs)?;
                if (stored == Some(1)) != (entry & OFLAG_COPIED != 0) {
                    self.refcount_problem(
                        structure(),
                        Some(self.h.l1_table_offset + i as u64 * 8),
                        format!(
                            "copied flag is {} but the L2 table's refcount is {}",
                            entry & OFLAG_COPIED != 0,
                            show(stored)
                        ),
                        false,
                    );
                }
            }
            if refs.len() >= MAX_L2_REFERENCES {
                return Err(Error::unsupported("too many L2 table references to check").in_file(self.file.path()));
            }
            // count() accepted the table, so its cluster index is below MAX_CHECK_CLUSTERS (< 2^32).
            refs.push((l2 / self.cs) << 32 | (snapshot.is_none() as u64) << 31 | i as u64);
        }
        Ok(())
    }

    /// A refcount mismatch: corruption or leak, or only a warning when the image is dirty.
    fn refcount_problem(&mut self, structure: String, offset: Option<u64>, message: String, leak: bool) {
        let listed = self.report.corruptions.len() + self.report.leaks.len() + self.report.warnings.len();
        if listed >= MAX_FINDINGS {
            // Still decide the exit code: one finding of the right kind is kept.
            let kept = if self.h.dirty() {
                true
            } else if leak {
                !self.report.leaks.is_empty()
            } else {
                !self.report.corruptions.is_empty()
            };
            if kept {
                self.suppressed += 1;
                return;
            }
        }
        let finding = Finding::new(structure, offset, message);
        if self.h.dirty() {
            self.report.warnings.push(finding);
        } else if leak {
            self.report.leaks.push(finding);
        } else {
            self.report.corruptions.push(finding);
        }
    }

    /// Count one reference to every cluster of `[offset, offset + size)` as `kind`. Returns false (and
    /// reports) when the range lies outside the file. Data may end less than a cluster past the end of
    /// the file (the last cluster of an image may be partly written), metadata may not.
    fn count(&mut self, offset: u64, size: u64, kind: Kind, tolerate_tail: bool, what: &dyn Fn() -> String) -> bool {
        self.count_n(offset, size, kind, tolerate_tail, what, 1)
    }

    /// [`Self::count`] for `times` references at once (an L2 table referenced from several L1 tables).
    fn count_n(
        &mut self,
        offset: u64,
        size: u64,
        kind: Kind,
        tolerate_tail: bool,
        what: &dyn Fn() -> String,
        times: u64,
    ) -> bool {
        if size == 0 {
            return true;
        }
        let len = self.file.len();
        let end = match offset.checked_add(size) {
            Some(e) => e,
            None => {
                self.corruption(what(), None, format!("offset {offset:#x} + {size} bytes overflows"));
                return false;
            }
        };
        let outside = if tolerate_tail { end.saturating_sub(len) >= self.cs } else { end > len };
        if outside {
            self.corruption(
                what(),
                Some(offset),
                format!("{} at {offset:#x} ({size} bytes) extends past the end of the file ({len} bytes)", kind.name()),
            );
            return false;
        }
        for cluster in offset / self.cs..=(end - 1) / self.cs {
            let Some(cell) = self.cells.get(cluster as usize).copied() else { continue };
            let prev = Kind::from_nibble(cell >> 4);
            let conflict = prev != Kind::Free && prev != kind && (prev.is_metadata() || kind.is_metadata());
            if conflict {
                let at = cluster * self.cs;
                let message = if kind.is_metadata() {
                    format!("{} overlaps the {} in the cluster at {at:#x}", kind.name(), prev.name())
                } else {
                    format!("{} points into the {} at {at:#x}", kind.name(), prev.name())
                };
                self.corruption(what(), Some(offset), message);
            }
            let kind_bits = if prev == Kind::Free { (kind as u8) << 4 } else { cell & 0xf0 };
            let total = (cell & 0x0f) as u64 + times;
            let total = if cell & 0x0f == 15 {
                self.big.get(&(cluster as u32)).map_or(15, |&n| n as u64) + times
            } else {
                total
            };
            let nibble = if total < 15 {
                total as u8
            } else {
                // cluster < MAX_CHECK_CLUSTERS < 2^32
                if self.big.len() >= MAX_SHARED_CLUSTERS && !self.big.contains_key(&(cluster as u32)) {
                    self.too_shared = true;
                } else {
                    self.big.insert(cluster as u32, total.min(u32::MAX as u64) as u32);
                }
                15
            };
            self.cells[cluster as usize] = kind_bits | nibble;
        }
        true
    }

    fn computed(&self, cluster: u64) -> u64 {
        let n = self.cells.get(cluster as usize).map_or(0, |c| c & 0x0f);
        if n == 15 {
            self.big.get(&(cluster as u32)).map_or(15, |&n| n as u64)
        } else {
            n as u64
        }
    }

    fn load_refcount_table(&mut self) -> Result<()> {
        let h = self.h;
        let bytes = h.refcount_table_clusters as u64 * self.cs;
        if !self.count(h.refcount_table_offset, bytes, Kind::RefTable, false, &|| "refcount table".into()) {
            return Ok(());
        }
        if h.refcount_table_offset == 0 && bytes > 0 {
            self.corruption("refcount table", Some(48), "refcount table offset is 0 (inside the header)");
            return Ok(());
        }
        let table = read_table(self.file, h.refcount_table_offset, bytes / 8, "refcount table")?;
        let mut blocks = vec![0u64; table.len()];
        for (i, &entry) in table.iter().enumerate() {
            if entry == 0 {
                continue;
            }
            let structure = format!("refcount table entry {i}");
            let at = Some(h.refcount_table_offset + i as u64 * 8);
            let offset = entry & REFT_OFFSET_MASK;
            if entry & REFT_RESERVED_MASK != 0 || !offset.is_multiple_of(self.cs) {
                self.corruption(structure, at, format!("refcount block offset {entry:#x} is not cluster aligned"));
                continue;
            }
            if !self.count(offset, self.cs, Kind::RefBlock, false, &|| structure.clone()) {
                continue;
            }
            blocks[i] = offset;
        }
        self.refblocks = blocks;
        Ok(())
    }

    /// Entries per refcount block.
    fn refblock_entries(&self) -> u64 {
        self.cs * 8 / self.h.refcount_bits() as u64
    }

    /// The stored refcount of a host cluster; None when its refcount block cannot be read.
    fn stored_refcount(&mut self, cluster: u64) -> Result<Option<u64>> {
        let per_block = self.refblock_entries();
        let Some(&block) = self.refblocks.get((cluster / per_block) as usize) else { return Ok(Some(0)) };
        if block == 0 {
            return Ok(Some(0));
        }
        if !self.block_cache.contains_key(&block) {
            if self.block_cache.len() as u64 >= (BLOCK_CACHE_BYTES / self.cs).max(2) {
                self.block_cache.clear();
            }
            let mut buf = vec![0u8; self.cs as usize];
            let data = self.file.read_exact_at(&mut buf, block, "refcount block").ok().map(|()| buf);
            self.block_cache.insert(block, data);
        }
        let bits = self.h.refcount_bits() as u64;
        Ok(self.block_cache.get(&block).and_then(|b| b.as_ref()).map(|b| refcount_at(b, bits, cluster % per_block)))
    }

    /// Walk one L2 table referenced `users` times; `guest_base` is its guest offset when it belongs to the
    /// active L1 table (whose copied flags are checked).
    fn l2_table(&mut self, l2: u64, users: u64, guest_base: Option<u64>) -> Result<()> {
        let h = self.h;
        let cb = h.cluster_bits;
        let ext = h.extended_l2();
        let words = match read_table(self.file, l2, self.cs / 8, "L2 table") {
            Ok(w) => w,
            Err(e) => {
                self.corruption(format!("L2 table at {l2:#x}"), Some(l2), e.message().to_string());
                return Ok(());
            }
        };
        let stride = if ext { 2 } else { 1 };
        for index in 0..words.len() / stride {
            let entry = words[index * stride];
            let bitmap = if ext { words[index * stride + 1] } else { 0 };
            if entry == 0 && bitmap == 0 {
                continue;
            }
            let at = Some(l2 + (index * stride * 8) as u64);
            let structure = || match guest_base {
                Some(g) => {
                    format!("L2 entry {index} of table at {l2:#x} (guest offset {:#x})", g + ((index as u64) << cb))
                }
                None => format!("L2 entry {index} of table at {l2:#x}"),
            };
            let cluster = classify(entry, ext, cb);
            if !matches!(cluster, Cluster::Compressed { .. }) && entry & L2E_STD_RESERVED_MASK != 0 {
                self.corruption(structure(), at, format!("reserved bits are set ({entry:#018x})"));
            }
            match cluster {
                Cluster::Compressed { offset, size } => {
                    if entry & OFLAG_COPIED != 0 {
                        self.corruption(structure(), at, "copied flag must never be set on a compressed cluster");
                    }
                    if bitmap != 0 {
                        self.corruption(structure(), at, "compressed cluster with a non-zero subcluster bitmap");
                    }
                    self.count_n(offset, size, Kind::Data, true, &structure, users);
                }
                Cluster::Normal(host) | Cluster::ZeroAlloc(host) => {
                    if matches!(cluster, Cluster::ZeroAlloc(_)) && h.version < 3 {
                        self.corruption(structure(), at, "zero cluster flag in a version 2 image");
                    }
                    if ext && (bitmap >> 32) & bitmap != 0 {
                        self.corruption(
                            structure(),
                            at,
                            format!("subcluster bitmap {bitmap:#018x} marks subclusters both allocated and zero"),
                        );
                    }
                    if !host.is_multiple_of(self.cs) {
                        self.corruption(
                            structure(),
                            at,
                            format!("data cluster offset {host:#x} is not cluster aligned"),
                        );
                        continue;
                    }
                    self.count_n(host, self.cs, Kind::Data, true, &structure, users);
                    if guest_base.is_some() {
                        let stored = self.stored_refcount(host / self.cs)?;
                        if (stored == Some(1)) != (entry & OFLAG_COPIED != 0) {
                            self.refcount_problem(
                                structure(),
                                at,
                                format!(
                                    "copied flag is {} but the data cluster's refcount is {}",
                                    entry & OFLAG_COPIED != 0,
                                    show(stored)
                                ),
                                false,
                            );
                        }
                    }
                }
                Cluster::ZeroPlain => {
                    if h.version < 3 {
                        self.corruption(structure(), at, "zero cluster flag in a version 2 image");
                    }
                }
                Cluster::Unallocated => {
                    if ext && bitmap as u32 != 0 {
                        self.corruption(structure(), at, "unallocated cluster with allocated subclusters");
                    } else if ext && (bitmap >> 32) as u32 & bitmap as u32 != 0 {
                        self.corruption(structure(), at, "subcluster bitmap marks subclusters both allocated and zero");
                    }
                }
            }
        }
        Ok(())
    }

    /// Parse the snapshot table, count it and each snapshot's L1 table; returns the L1 tables to walk.
    fn snapshots(&mut self) -> Vec<(usize, u64, u32)> {
        let h = self.h;
        let mut valid = Vec::new();
        if h.nb_snapshots == 0 || h.nb_snapshots > MAX_SNAPSHOTS {
            return valid;
        }
        let mut offset = h.snapshots_offset;
        let mut found = Vec::new();
        for i in 0..h.nb_snapshots as usize {
            let mut head = [0u8; 40];
            if self.file.read_exact_at(&mut head, offset, "snapshot table entry").is_err() {
                self.corruption("snapshot table", Some(offset), format!("snapshot {i} lies past the end of the file"));
                return valid;
            }
            let l1_offset = be_u64(&head, 0);
            let l1_size = be_u32(&head, 8);
            let id_len = be_u16(&head, 12) as u64;
            let name_len = be_u16(&head, 14) as u64;
            let extra = be_u32(&head, 36);
            if extra > MAX_SNAPSHOT_EXTRA {
                self.corruption(
                    format!("snapshot {i}"),
                    Some(offset),
                    format!("extra data of {extra} bytes is too large"),
                );
                return valid;
            }
            offset += (40 + extra as u64 + id_len + name_len).div_ceil(8) * 8;
            if offset - h.snapshots_offset > MAX_SNAPSHOT_TABLE {
                self.corruption("snapshot table", Some(h.snapshots_offset), "snapshot table is larger than 64 MiB");
                return valid;
            }
            found.push((i, l1_offset, l1_size));
        }
        // qemu writes the last entry without its padding: the table may end just past the end of the file.
        self.count(h.snapshots_offset, offset - h.snapshots_offset, Kind::SnapshotTable, true, &|| {
            "snapshot table".into()
        });
        for (i, l1_offset, l1_size) in found {
            let structure = format!("snapshot {i}");
            if l1_size as u64 * 8 > MAX_L1_BYTES || !l1_offset.is_multiple_of(self.cs) {
                self.corruption(structure, None, format!("L1 table at {l1_offset:#x} ({l1_size} entries) is invalid"));
                continue;
            }
            if self.count(l1_offset, l1_size as u64 * 8, Kind::SnapshotL1, false, &|| structure.clone()) {
                valid.push((i, l1_offset, l1_size));
            }
        }
        valid
    }

    /// Count the persistent dirty bitmaps' directory, tables and data clusters.
    fn bitmaps(&mut self) {
        let Some(ext) = self.h.bitmaps else { return };
        if ext.directory_size > MAX_BITMAP_DIRECTORY || !ext.directory_offset.is_multiple_of(self.cs) {
            self.corruption("bitmap directory", Some(ext.directory_offset), "bitmap directory is invalid");
            return;
        }
        if !self
            .count(ext.directory_offset, ext.directory_size, Kind::BitmapDirectory, true, &|| "bitmap directory".into())
        {
            return;
        }
        let mut dir = vec![0u8; ext.directory_size as usize];
        if self.file.read_zero_padded(&mut dir, ext.directory_offset, "bitmap directory").is_err() {
            return;
        }
        let mut at = 0usize;
        for i in 0..ext.nb_bitmaps {
            if at + 24 > dir.len() {
                self.corruption("bitmap directory", Some(ext.directory_offset), format!("bitmap {i} is cut off"));
                return;
            }
            let table_offset = be_u64(&dir, at);
            let table_size = be_u32(&dir, at + 8) as u64;
            let name_len = be_u16(&dir, at + 18) as usize;
            let extra = be_u32(&dir, at + 20) as usize;
            at += (24 + extra + name_len).div_ceil(8) * 8;
            let structure = format!("bitmap {i}");
            if table_size * 8 > MAX_BITMAP_TABLE_BYTES || !table_offset.is_multiple_of(self.cs) {
                self.corruption(structure, None, format!("bitmap table at {table_offset:#x} is invalid"));
                continue;
            }
            if !self.count(table_offset, table_size * 8, Kind::BitmapTable, false, &|| structure.clone()) {
                continue;
            }
            let Ok(table) = read_table(self.file, table_offset, table_size, "bitmap table") else { continue };
            for entry in table {
                let data = entry & L2E_OFFSET_MASK;
                if data != 0 {
                    self.count(data, self.cs, Kind::BitmapData, false, &|| structure.clone());
                }
            }
        }
    }

    /// Compare the rebuilt refcounts with the stored ones, one refcount block at a time.
    fn compare(&mut self) -> Result<()> {
        let clusters = self.file.len().div_ceil(self.cs);
        let per_block = self.refblock_entries();
        let bits = self.h.refcount_bits() as u64;
        let max = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
        let (mut errors, mut leaks) = (0usize, 0usize);
        let mut block_buf = vec![0u8; self.cs as usize];
        let mut first = 0u64;
        while first < clusters {
            let b = first / per_block;
            let last = ((b + 1) * per_block).min(clusters);
            let block = self.refblocks.get(b as usize).copied().unwrap_or(0);
            let readable = block != 0 && self.file.read_exact_at(&mut block_buf, block, "refcount block").is_ok();
            for cluster in first..last {
                let stored = if readable { refcount_at(&block_buf, bits, cluster % per_block) } else { 0 };
                let computed = self.computed(cluster);
                if computed > max {
                    self.corruption(
                        format!("cluster {cluster}"),
                        Some(cluster * self.cs),
                        format!("{computed} references overflow the {bits}-bit refcount"),
                    );
                    continue;
                }
                if stored == computed {
                    continue;
                }
                let leak = stored > computed;
                let listed = if leak { &mut leaks } else { &mut errors };
                *listed += 1;
                if *listed <= MAX_LISTED {
                    let what = if leak { "leaked: " } else { "" };
                    self.refcount_problem(
                        format!("cluster {cluster}"),
                        Some(cluster * self.cs),
                        format!("{what}refcount={stored} reference={computed}"),
                        leak,
                    );
                }
            }
            first = last;
        }
        for (count, leak) in [(errors, false), (leaks, true)] {
            if count > MAX_LISTED {
                let what =
                    if leak { "leaked clusters" } else { "clusters with a refcount lower than their references" };
                self.refcount_problem(
                    "refcounts".into(),
                    None,
                    format!("{} more {what} not listed ({count} in all)", count - MAX_LISTED),
                    leak,
                );
            }
        }
        Ok(())
    }
}

fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "unreadable".to_string(), |v| v.to_string())
}

/// Refcount entry `i` of a refcount block (`bits` wide; sub-byte widths count from the least
/// significant bit).
fn refcount_at(block: &[u8], bits: u64, i: u64) -> u64 {
    match bits {
        1 | 2 | 4 => {
            let per_byte = 8 / bits;
            let byte = block.get((i / per_byte) as usize).copied().unwrap_or(0);
            ((byte >> ((i % per_byte) * bits)) & ((1 << bits) - 1) as u8) as u64
        }
        _ => {
            let width = (bits / 8) as usize;
            let start = i as usize * width;
            let Some(raw) = block.get(start..start + width) else { return 0 };
            raw.iter().fold(0u64, |acc, &b| (acc << 8) | b as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::refcount_at;

    #[test]
    fn refcount_widths() {
        assert_eq!(refcount_at(&[0b1011_0010], 1, 1), 1);
        assert_eq!(refcount_at(&[0b1011_0010], 1, 0), 0);
        assert_eq!(refcount_at(&[0b1011_0010], 2, 3), 0b10);
        assert_eq!(refcount_at(&[0b1011_0010], 4, 1), 0b1011);
        assert_eq!(refcount_at(&[0, 1, 0, 2], 16, 1), 2);
        assert_eq!(refcount_at(&[0, 0, 1, 0], 32, 0), 256);
        assert_eq!(refcount_at(&[0; 4], 64, 3), 0);
    }
}
