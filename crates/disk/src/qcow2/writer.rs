//! Writing qcow2 v3 (compat 1.1) as one sequential stream.
//!
//! Layout: `[header][L1][refcount table][refcount blocks][L2 tables][data...]`. The header region is sized
//! up front from the virtual size and the source's data ranges (an upper bound: one L2 table per L1 entry
//! that may hold data, refcount blocks for every cluster the file can reach). Data clusters follow in guest
//! order; all-zero clusters are left unallocated. The header region is written last, once the clusters that
//! really hold data are known: reserved L2 tables and refcount blocks that end up unused are neither
//! referenced nor refcounted, so `qemu-img check` finds neither leaks nor errors.
//!
//! With compression, clusters are compressed in parallel and packed at byte granularity like qemu does
//! (a host cluster holding parts of several compressed clusters has one reference per part); a cluster
//! that does not shrink is stored uncompressed in a cluster of its own.
//!
//! Like qemu-img, the virtual size is rounded up to whole 512-byte sectors, and entries of clusters with a
//! refcount of exactly one carry the "copied" flag (qemu-img check insists on it).

use super::compress::compress;
use super::entries::{compressed_entry, max_compressed_offset, OFLAG_COPIED, SECTOR};
use super::header::{serialize, CompressionType, NewHeader, MAX_L1_BYTES, MAX_REFTABLE_BYTES};
use crate::error::{Error, Result};
use crate::image::DiskImage;
use crate::scan::{data_ranges, for_each_nonzero_run, scan_ranges, Granules};
use crate::sink::Sink;
use crate::write::{Compression, Control, WriteOptions};
use rayon::prelude::*;

pub(crate) const DEFAULT_CLUSTER_SIZE: u64 = 64 << 10;
const MIN_CLUSTER_SIZE: u64 = 512;
const MAX_CLUSTER_SIZE: u64 = 2 << 20;
/// Compressed output is gathered into writes of about this size.
const OUTPUT_BUFFER: usize = 8 << 20;

/// Where everything goes, decided before any data is read.
#[derive(Debug, Clone)]
struct Layout {
    cluster_bits: u32,
    size: u64,
    l1_size: u64,
    l1_clusters: u64,
    refcount_table_clusters: u64,
    refcount_blocks: u64,
    /// L1 indices that may hold data, in order; the i-th gets the i-th reserved L2 table.
    l2_indices: Vec<u64>,
}

impl Layout {
    fn plan(size: u64, cluster_bits: u32, ranges: impl Iterator<Item = Result<(u64, u64)>>) -> Result<Layout> {
        let cs = 1u64 << cluster_bits;
        let span = cs * (cs / 8);
        let l1_size = size.div_ceil(span);
        if l1_size * 8 > MAX_L1_BYTES {
            return Err(Error::invalid_argument(format!(
                "a virtual size of {size} bytes needs an L1 table larger than 32 MiB with {cs}-byte clusters: \
                 use a larger cluster size"
            )));
        }
        let l1_clusters = (l1_size * 8).div_ceil(cs);
        let mut l2_indices: Vec<u64> = Vec::new();
        let mut data_clusters = 0u64;
        for range in ranges {
            let (start, end) = range?;
            data_clusters += end.div_ceil(cs) - start / cs;
            for index in start / span..=(end - 1) / span {
                if l2_indices.last() != Some(&index) {
                    l2_indices.push(index);
                }
            }
        }
        // Refcount blocks must cover every cluster of the file, themselves included: iterate to a fixed point.
        let per_block = cs / 2;
        let fixed = 1 + l1_clusters + l2_indices.len() as u64 + data_clusters;
        let (mut blocks, mut table) = (0u64, 0u64);
        loop {
            let total = fixed + blocks + table;
            let (b, t) = (total.div_ceil(per_block), (total.div_ceil(per_block) * 8).div_ceil(cs));
            if (b, t) == (blocks, table) {
                break;
            }
            (blocks, table) = (b, t);
        }
        if table * cs > MAX_REFTABLE_BYTES {
            return Err(Error::invalid_argument(format!(
                "the output would need a refcount table larger than 8 MiB with {cs}-byte clusters: use a larger cluster size"
            )));
        }
        Ok(Layout {
            cluster_bits,
            size,
            l1_size,
            l1_clusters,
            refcount_table_clusters: table,
            refcount_blocks: blocks,
            l2_indices,
        })
    }

    fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }
    fn l1_cluster(&self) -> u64 {
        1
    }
    fn refcount_table_cluster(&self) -> u64 {
        self.l1_cluster() + self.l1_clusters
    }
    fn refcount_block_cluster(&self) -> u64 {
        self.refcount_table_cluster() + self.refcount_table_clusters
    }
    fn l2_cluster(&self) -> u64 {
        self.refcount_block_cluster() + self.refcount_blocks
    }
    /// First cluster of the data region (= clusters in the header region).
    fn data_cluster(&self) -> u64 {
        self.l2_cluster() + self.l2_indices.len() as u64
    }
}

/// The data region as it is written: where each guest cluster went and the refcount of each host cluster.
struct Body<'a> {
    sink: &'a mut dyn Sink,
    cluster_bits: u32,
    compression: Option<CompressionType>,
    data_start: u64,
    /// Next free byte of the file.
    pos: u64,
    /// (guest cluster, L2 entry), in guest order.
    entries: Vec<(u64, u64)>,
    /// Refcounts of the host clusters from `data_start` on.
    refcounts: Vec<u16>,
    /// Compressed output not yet handed to the sink, starting at `out_start`.
    out: Vec<u8>,
    out_start: u64,
}

impl Body<'_> {
    fn cs(&self) -> u64 {
        1 << self.cluster_bits
    }

    fn add_ref(&mut self, offset: u64, len: u64) {
        let cs = self.cs();
        for cluster in offset / cs..=(offset + len - 1) / cs {
            let i = (cluster - self.data_start / cs) as usize;
            if self.refcounts.len() <= i {
                self.refcounts.resize(i + 1, 0);
            }
            self.refcounts[i] += 1;
        }
    }

    /// Uncompressed: each run of non-zero clusters is written as it comes.
    fn write_run(&mut self, guest: u64, data: &[u8]) -> Result<()> {
        let cs = self.cs();
        self.sink.write_at(self.pos, data)?;
        for i in 0..(data.len() as u64).div_ceil(cs) {
            self.entries.push((guest / cs + i, (self.pos + i * cs) | OFLAG_COPIED));
            self.add_ref(self.pos + i * cs, cs);
        }
        self.pos += (data.len() as u64).div_ceil(cs) * cs;
        Ok(())
    }

    /// Compressed: compress the non-zero clusters of one chunk on all cores, then place them in order.
    fn compress_chunk(&mut self, offset: u64, buf: &[u8]) -> Result<()> {
        let Some(kind) = self.compression else { return Ok(()) };
        let cs = self.cs() as usize;
        let mut clusters: Vec<(u64, &[u8])> = Vec::new();
        for_each_nonzero_run(buf, cs, |a, b| {
            for start in (a..b).step_by(cs) {
                clusters.push(((offset + start as u64) >> self.cluster_bits, &buf[start..(start + cs).min(b)]));
            }
            Ok(())
        })?;
        let compressed: Vec<Option<Vec<u8>>> = clusters
            .par_iter()
            .map(|(_, data)| {
                if data.len() == cs {
                    compress(kind, data)
                } else {
                    let mut padded = data.to_vec();
                    padded.resize(cs, 0);
                    compress(kind, &padded)
                }
            })
            .collect();
        for ((guest_cluster, data), packed) in clusters.into_iter().zip(compressed) {
            match packed {
                Some(c) => self.place_compressed(guest_cluster, &c)?,
                None => self.place_raw(guest_cluster, data)?,
            }
        }
        Ok(())
    }

    fn place_compressed(&mut self, guest_cluster: u64, data: &[u8]) -> Result<()> {
        let cs = self.cs();
        // A host cluster's refcount is 16 bits: start a new cluster before it would overflow.
        let i = (self.pos / cs - self.data_start / cs) as usize;
        if self.refcounts.get(i).is_some_and(|&r| r == u16::MAX) {
            self.pos = self.pos.div_ceil(cs) * cs;
        }
        if self.pos > max_compressed_offset(self.cluster_bits) {
            return Err(Error::invalid_argument("output too large for compressed clusters with this cluster size"));
        }
        let at = self.pos;
        self.entries.push((guest_cluster, compressed_entry(at, data.len() as u64, self.cluster_bits)));
        self.add_ref(at, data.len() as u64);
        self.append(at, data)
    }

    fn place_raw(&mut self, guest_cluster: u64, data: &[u8]) -> Result<()> {
        let cs = self.cs();
        let at = self.pos.div_ceil(cs) * cs;
        self.entries.push((guest_cluster, at | OFLAG_COPIED));
        self.add_ref(at, cs);
        self.append(at, data)?;
        self.pos = at + cs;
        Ok(())
    }

    /// Queue `data` at file offset `at` (>= the end of what is queued; a gap is filled with zeros).
    fn append(&mut self, at: u64, data: &[u8]) -> Result<()> {
        if self.out.is_empty() {
            self.out_start = at;
        }
        let gap = at - (self.out_start + self.out.len() as u64);
        self.out.resize(self.out.len() + gap as usize, 0);
        self.out.extend_from_slice(data);
        self.pos = self.pos.max(at + data.len() as u64);
        if self.out.len() >= OUTPUT_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            self.sink.write_at(self.out_start, &self.out)?;
            self.out_start += self.out.len() as u64;
            self.out.clear();
        }
        Ok(())
    }
}

pub(crate) fn write(src: &dyn DiskImage, opts: &WriteOptions, sink: &mut dyn Sink, ctl: &Control) -> Result<()> {
    if opts.subformat.is_some() {
        return Err(Error::invalid_argument("qcow2 output has no subformat option"));
    }
    if opts.block_size.is_some() {
        return Err(Error::invalid_argument("qcow2 output has no block_size option (use cluster_size)"));
    }
    let cs = opts.cluster_size.unwrap_or(DEFAULT_CLUSTER_SIZE);
    if !cs.is_power_of_two() || !(MIN_CLUSTER_SIZE..=MAX_CLUSTER_SIZE).contains(&cs) {
        return Err(Error::invalid_argument(format!(
            "qcow2 cluster_size {cs} is invalid: it must be a power of two from 512 bytes to 2 MiB"
        )));
    }
    let compression = opts.compression.map(|c| match c {
        Compression::Zlib => CompressionType::Zlib,
        Compression::Zstd => CompressionType::Zstd,
    });
    let cluster_bits = cs.trailing_zeros();
    // qemu sees virtual disks in whole sectors (it would cut a partial one off): round up, as qemu-img does.
    let size = src.virtual_size().div_ceil(SECTOR) * SECTOR;
    // The map is walked twice (metadata only): once to lay out the tables, once to read the data.
    let layout = Layout::plan(size, cluster_bits, data_ranges(src, Granules::new(cs), ctl))?;
    let data_start = layout.data_cluster() * cs;
    sink.begin(data_start)?;

    let mut body = Body {
        sink,
        cluster_bits,
        compression,
        data_start,
        pos: data_start,
        entries: Vec::new(),
        refcounts: Vec::new(),
        out: Vec::new(),
        out_start: data_start,
    };
    scan_ranges(src, data_ranges(src, Granules::new(cs), ctl), ctl, &mut |offset, buf| {
        if body.compression.is_some() {
            body.compress_chunk(offset, buf)
        } else {
            for_each_nonzero_run(buf, cs as usize, |a, b| body.write_run(offset + a as u64, &buf[a..b]))
        }
    })?;
    body.flush()?;
    // Compressed data ends anywhere: the file ends with the last sector it uses.
    let total_len = body.pos.div_ceil(SECTOR) * SECTOR;
    let Body { sink, entries, refcounts, .. } = body;
    write_metadata(sink, &layout, &entries, &refcounts, total_len, compression.unwrap_or(CompressionType::Zlib))?;
    sink.finish(total_len)
}

/// Write the header region: header, L1, refcount table and blocks, L2 tables.
fn write_metadata(
    sink: &mut dyn Sink,
    layout: &Layout,
    entries: &[(u64, u64)],
    data_refcounts: &[u16],
    total_len: u64,
    compression: CompressionType,
) -> Result<()> {
    let cs = layout.cluster_size();
    let l2_entries = cs / 8;

    // L2 tables: one per L1 index that received data, in the slot reserved for it.
    let mut l1 = vec![0u64; layout.l1_size as usize];
    let mut used_l2 = vec![false; layout.l2_indices.len()];
    let mut tables: Vec<(u64, Vec<u8>)> = Vec::new();
    for group in entries.chunk_by(|a, b| a.0 / l2_entries == b.0 / l2_entries) {
        let l1_index = group[0].0 / l2_entries;
        let slot = layout.l2_indices.binary_search(&l1_index).map_err(|_| {
            Error::invalid_argument(format!("source data appeared outside its map (L1 index {l1_index})"))
        })?;
        used_l2[slot] = true;
        let offset = (layout.l2_cluster() + slot as u64) * cs;
        l1[l1_index as usize] = offset | OFLAG_COPIED;
        let mut table = vec![0u8; cs as usize];
        for &(guest_cluster, entry) in group {
            let at = ((guest_cluster % l2_entries) * 8) as usize;
            table[at..at + 8].copy_from_slice(&entry.to_be_bytes());
        }
        tables.push((offset, table));
    }

    // Refcount of every cluster of the file: metadata in use, then the data region.
    let total_clusters = total_len.div_ceil(cs);
    let data_cluster = layout.data_cluster();
    let refcount = |cluster: u64, used_blocks: &[bool]| -> u16 {
        if cluster < layout.refcount_block_cluster() {
            1 // header, L1, refcount table
        } else if cluster < layout.l2_cluster() {
            used_blocks[(cluster - layout.refcount_block_cluster()) as usize] as u16
        } else if cluster < data_cluster {
            used_l2[(cluster - layout.l2_cluster()) as usize] as u16
        } else {
            data_refcounts.get((cluster - data_cluster) as usize).copied().unwrap_or(0)
        }
    };
    // A refcount block is needed where some cluster has a refcount, and refcount blocks count themselves:
    // mark from everything else, then add blocks until none is missing.
    let per_block = cs / 2;
    let mut used_blocks = vec![false; layout.refcount_blocks as usize];
    let none = vec![false; layout.refcount_blocks as usize];
    for cluster in (0..total_clusters).filter(|&c| c < layout.refcount_block_cluster() || c >= layout.l2_cluster()) {
        if refcount(cluster, &none) > 0 {
            used_blocks[(cluster / per_block) as usize] = true;
        }
    }
    loop {
        let mut changed = false;
        for b in 0..used_blocks.len() {
            if used_blocks[b] {
                let covering = ((layout.refcount_block_cluster() + b as u64) / per_block) as usize;
                if !used_blocks[covering] {
                    used_blocks[covering] = true;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }

    let mut refcount_table = vec![0u8; (layout.refcount_table_clusters * cs) as usize];
    for (b, _) in used_blocks.iter().enumerate().filter(|(_, used)| **used) {
        let offset = (layout.refcount_block_cluster() + b as u64) * cs;
        refcount_table[b * 8..b * 8 + 8].copy_from_slice(&offset.to_be_bytes());
        let mut block = vec![0u8; cs as usize];
        let first = b as u64 * per_block;
        for cluster in first..(first + per_block).min(total_clusters) {
            let at = ((cluster - first) * 2) as usize;
            block[at..at + 2].copy_from_slice(&refcount(cluster, &used_blocks).to_be_bytes());
        }
        sink.write_at(offset, &block)?;
    }
    for (offset, table) in &tables {
        sink.write_at(*offset, table)?;
    }
    sink.write_at(layout.refcount_table_cluster() * cs, &refcount_table)?;
    if !l1.is_empty() {
        let bytes: Vec<u8> = l1.iter().flat_map(|e| e.to_be_bytes()).collect();
        sink.write_at(layout.l1_cluster() * cs, &bytes)?;
    }
    let header = serialize(&NewHeader {
        cluster_bits: layout.cluster_bits,
        size: layout.size,
        l1_size: layout.l1_size as u32,
        l1_table_offset: layout.l1_cluster() * cs,
        refcount_table_offset: layout.refcount_table_cluster() * cs,
        refcount_table_clusters: layout.refcount_table_clusters as u32,
        compression,
    });
    sink.write_at(0, &header)
}
