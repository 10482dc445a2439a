//! Reading a qcow2 image: the active L1 table is loaded at open, L2 tables go through a small cache, and
//! a request is resolved into runs (data at a host offset, compressed, zero, unallocated) that are served
//! with as few preads as possible: contiguous host runs become one read, unallocated runs one read of the
//! backing image, and compressed clusters (one read and one decompression each) run in parallel.

use super::compress::decompress;
use super::entries::{classify, Cluster, L1E_OFFSET_MASK, SUBCLUSTERS};
use super::header::Header;
use crate::error::Result;
use crate::file::ImageFile;
use crate::image::{DiskImage, Extent, ExtentList};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Bytes of L2 tables kept in the cache (at least a few tables whatever the cluster size).
const L2_CACHE_BYTES: u64 = 32 << 20;

/// How a run of the virtual disk is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Run {
    Unallocated,
    Zero,
    /// Uncompressed data starting at this host offset.
    Data(u64),
    /// Part of the compressed cluster whose guest cluster starts at `cluster`.
    Compressed {
        cluster: u64,
        offset: u64,
        size: u64,
    },
}

/// One L2 table as 64-bit words (two per entry with extended L2 entries).
pub(crate) type L2Table = Arc<Vec<u64>>;

/// Cached tables by offset, with the tick of their last use; and the current tick.
type CacheState = (HashMap<u64, (L2Table, u64)>, u64);

/// A small LRU of L2 tables shared by the reading threads.
struct L2Cache {
    capacity: usize,
    state: Mutex<CacheState>,
}

impl L2Cache {
    fn new(cluster_size: u64) -> Self {
        // Eviction scans the cache, so it stays small in entries too (512-byte clusters: 1024 tables).
        let capacity = (L2_CACHE_BYTES / cluster_size).clamp(4, 1024) as usize;
        L2Cache { capacity, state: Mutex::new((HashMap::new(), 0)) }
    }
    fn get(&self, offset: u64) -> Option<L2Table> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (map, tick) = &mut *guard;
        *tick += 1;
        let now = *tick;
        map.get_mut(&offset).map(|(t, used)| {
            *used = now;
            t.clone()
        })
    }
    fn insert(&self, offset: u64, table: L2Table) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (map, tick) = &mut *guard;
        *tick += 1;
        if map.len() >= self.capacity && !map.contains_key(&offset) {
            if let Some(oldest) = map.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(offset, (table, *tick));
    }
}

/// An open qcow2 image.
pub(crate) struct Qcow2Image {
    pub(crate) file: ImageFile,
    pub(crate) header: Header,
    pub(crate) l1: Vec<u64>,
    l2_cache: L2Cache,
    /// The most recently decompressed cluster (guest cluster offset, data), for reads smaller than a cluster.
    last_compressed: Mutex<Option<(u64, Arc<Vec<u8>>)>>,
    pub(crate) backing: Option<Backing>,
}

/// An opened backing image and the files it is made of (its own path first).
pub(crate) struct Backing {
    pub(crate) image: Box<dyn DiskImage>,
    pub(crate) files: Vec<std::path::PathBuf>,
}

impl Qcow2Image {
    pub(crate) fn new(file: ImageFile, header: Header, backing: Option<Backing>) -> Result<Self> {
        let l1 = read_table(&file, header.l1_table_offset, header.l1_size as u64, "L1 table")?;
        let l2_cache = L2Cache::new(header.cluster_size());
        Ok(Qcow2Image { file, header, l1, l2_cache, last_compressed: Mutex::new(None), backing })
    }

    pub(crate) fn cluster_size(&self) -> u64 {
        self.header.cluster_size()
    }

    /// The L2 table at `offset` (from L1 entry `l1_index`), through the cache.
    pub(crate) fn l2_table(&self, offset: u64, l1_index: u64) -> Result<L2Table> {
        if let Some(t) = self.l2_cache.get(offset) {
            return Ok(t);
        }
        if !offset.is_multiple_of(self.cluster_size()) {
            return Err(self.file.corrupt(
                self.header.l1_table_offset + l1_index * 8,
                format!("L1 entry {l1_index} points to an L2 table at {offset:#x}, which is not cluster aligned"),
            ));
        }
        let words = self.cluster_size() / 8;
        let table = Arc::new(read_table(&self.file, offset, words, &format!("L2 table {l1_index}"))?);
        self.l2_cache.insert(offset, table.clone());
        Ok(table)
    }

    /// Call `f(guest_offset, length, run)` for the runs covering `[offset, offset + length)`, in order.
    /// Runs never cross a cluster boundary; consecutive runs are not merged here.
    pub(crate) fn walk(&self, offset: u64, length: u64, f: &mut dyn FnMut(u64, u64, Run) -> Result<()>) -> Result<()> {
        let h = &self.header;
        let cb = h.cluster_bits;
        let cs = h.cluster_size();
        let l2_bits = h.l2_bits();
        let span = h.l1_entry_span();
        let ext = h.extended_l2();
        let end = offset.saturating_add(length).min(h.size);
        let mut pos = offset;
        while pos < end {
            let l1_index = pos / span;
            let table_end = ((l1_index + 1) * span).min(end);
            let l1_entry = self.l1.get(l1_index as usize).copied().unwrap_or(0);
            let l2_offset = l1_entry & L1E_OFFSET_MASK;
            if l2_offset == 0 {
                f(pos, table_end - pos, Run::Unallocated)?;
                pos = table_end;
                continue;
            }
            let l2 = self.l2_table(l2_offset, l1_index)?;
            while pos < table_end {
                let cluster = pos >> cb << cb;
                let index = ((pos >> cb) & ((1 << l2_bits) - 1)) as usize;
                let cluster_end = (cluster + cs).min(table_end);
                let (entry, bitmap) = if ext { (l2[index * 2], l2[index * 2 + 1]) } else { (l2[index], 0) };
                let where_ = || format!("L2 entry {index} of the table at {l2_offset:#x} (guest offset {cluster:#x})");
                match classify(entry, ext, cb) {
                    Cluster::Compressed { offset, size } => {
                        f(pos, cluster_end - pos, Run::Compressed { cluster, offset, size })?;
                    }
                    Cluster::ZeroPlain | Cluster::ZeroAlloc(_) => {
                        if h.version < 3 {
                            return Err(self.file.corrupt(
                                l2_offset + index as u64 * 8,
                                format!("{}: zero cluster flag in a version 2 image", where_()),
                            ));
                        }
                        f(pos, cluster_end - pos, Run::Zero)?;
                    }
                    Cluster::Unallocated if !ext => f(pos, cluster_end - pos, Run::Unallocated)?,
                    Cluster::Normal(host) if !ext => {
                        if !host.is_multiple_of(cs) {
                            return Err(self.file.corrupt(
                                l2_offset + index as u64 * 8,
                                format!("{}: data cluster offset {host:#x} is not cluster aligned", where_()),
                            ));
                        }
                        f(pos, cluster_end - pos, Run::Data(host + (pos - cluster)))?;
                    }
                    kind => {
                        // Extended L2 entry: 32 subclusters, each allocated, zero or unallocated.
                        let host = match kind {
                            Cluster::Normal(host) => host,
                            _ => 0,
                        };
                        let alloc = bitmap as u32;
                        let zero = (bitmap >> 32) as u32;
                        if alloc & zero != 0 || (host == 0 && alloc != 0) {
                            return Err(self.file.corrupt(
                                l2_offset + index as u64 * 16 + 8,
                                format!("{}: invalid subcluster bitmap {bitmap:#018x}", where_()),
                            ));
                        }
                        if !host.is_multiple_of(cs) {
                            return Err(self.file.corrupt(
                                l2_offset + index as u64 * 16,
                                format!("{}: data cluster offset {host:#x} is not cluster aligned", where_()),
                            ));
                        }
                        let sc_size = cs / SUBCLUSTERS as u64;
                        while pos < cluster_end {
                            let sc = ((pos - cluster) / sc_size) as u32;
                            let sc_end = (cluster + (sc as u64 + 1) * sc_size).min(cluster_end);
                            let run = if zero & (1 << sc) != 0 {
                                Run::Zero
                            } else if alloc & (1 << sc) != 0 {
                                Run::Data(host + (pos - cluster))
                            } else {
                                Run::Unallocated
                            };
                            f(pos, sc_end - pos, run)?;
                            pos = sc_end;
                        }
                    }
                }
                pos = cluster_end;
            }
        }
        Ok(())
    }

    /// Runs covering the range, with neighbours of the same kind merged (data only when contiguous on the host).
    fn merged_runs(&self, offset: u64, length: u64) -> Result<Vec<(u64, u64, Run)>> {
        let mut runs: Vec<(u64, u64, Run)> = Vec::new();
        self.walk(offset, length, &mut |pos, len, run| {
            if let Some(last) = runs.last_mut() {
                let mergeable = match (last.2, run) {
                    (Run::Data(a), Run::Data(b)) => a + last.1 == b,
                    (Run::Zero, Run::Zero) | (Run::Unallocated, Run::Unallocated) => true,
                    _ => false,
                };
                if mergeable && last.0 + last.1 == pos {
                    last.1 += len;
                    return Ok(());
                }
            }
            runs.push((pos, len, run));
            Ok(())
        })?;
        Ok(runs)
    }

    /// Read `buf.len()` bytes of uncompressed data at host offset `host` (guest offset `guest`, for errors).
    /// Every cluster must start inside the file; the final partial cluster is zero padded.
    fn read_host(&self, buf: &mut [u8], host: u64, guest: u64) -> Result<()> {
        let cs = self.cluster_size();
        let last_cluster = (host + buf.len() as u64 - 1) / cs * cs;
        if last_cluster >= self.file.len() {
            return Err(self.file.corrupt(
                last_cluster.max(host),
                format!(
                    "data cluster for guest offset {:#x} lies past the end of the file ({} bytes): truncated image?",
                    guest + (last_cluster.max(host) - host),
                    self.file.len()
                ),
            ));
        }
        self.file.read_zero_padded(buf, host, "data cluster")
    }

    /// Decompress the compressed cluster at guest cluster `cluster` into `out` (one cluster long).
    fn decompress_cluster(&self, cluster: u64, offset: u64, size: u64, out: &mut [u8]) -> Result<()> {
        if offset >= self.file.len() {
            return Err(self.file.corrupt(
                offset,
                format!("compressed cluster for guest offset {cluster:#x} starts past the end of the file"),
            ));
        }
        let mut input = vec![0u8; size as usize];
        // The stated sectors may run past the end of the file when the data ends in the last sector.
        self.file.read_zero_padded(&mut input, offset, "compressed cluster")?;
        decompress(self.header.compression, &input, out).map_err(|e| {
            self.file.corrupt(offset, format!("compressed cluster for guest offset {cluster:#x} is damaged: {e}"))
        })
    }

    fn read_compressed(&self, buf: &mut [u8], pos: u64, cluster: u64, offset: u64, size: u64) -> Result<()> {
        let cs = self.cluster_size() as usize;
        if pos == cluster && buf.len() == cs {
            return self.decompress_cluster(cluster, offset, size, buf);
        }
        let cached = {
            let guard = self.last_compressed.lock().unwrap_or_else(|e| e.into_inner());
            guard.as_ref().filter(|(c, _)| *c == cluster).map(|(_, d)| d.clone())
        };
        let data = match cached {
            Some(d) => d,
            None => {
                let mut d = vec![0u8; cs];
                self.decompress_cluster(cluster, offset, size, &mut d)?;
                let d = Arc::new(d);
                *self.last_compressed.lock().unwrap_or_else(|e| e.into_inner()) = Some((cluster, d.clone()));
                d
            }
        };
        let start = (pos - cluster) as usize;
        buf.copy_from_slice(&data[start..start + buf.len()]);
        Ok(())
    }

    /// Fill `buf` from the backing image at guest offset `pos`; zeros past the backing image's end.
    fn read_backing(&self, buf: &mut [u8], pos: u64) -> Result<()> {
        let Some(Backing { image: backing, .. }) = &self.backing else {
            buf.fill(0);
            return Ok(());
        };
        let avail = backing.virtual_size().saturating_sub(pos).min(buf.len() as u64) as usize;
        if avail > 0 {
            backing.read_at(&mut buf[..avail], pos)?;
        }
        buf[avail..].fill(0);
        Ok(())
    }

    pub(crate) fn read(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        // Split the buffer along the runs (they cover the request exactly, in order).
        let mut parts: Vec<(&mut [u8], u64, Run)> = Vec::new();
        let mut rest = buf;
        for (pos, len, run) in self.merged_runs(offset, rest.len() as u64)? {
            let (part, tail) = std::mem::take(&mut rest).split_at_mut(len as usize);
            parts.push((part, pos, run));
            rest = tail;
        }
        let mut compressed = 0;
        for (part, pos, run) in parts.iter_mut() {
            match *run {
                Run::Zero => part.fill(0),
                Run::Unallocated => self.read_backing(part, *pos)?,
                Run::Data(host) => self.read_host(part, host, *pos)?,
                Run::Compressed { .. } => compressed += 1,
            }
        }
        // Compressed clusters are independent: decompress them on all cores.
        let decompress = |(part, pos, run): &mut (&mut [u8], u64, Run)| match *run {
            Run::Compressed { cluster, offset, size } => self.read_compressed(part, *pos, cluster, offset, size),
            _ => Ok(()),
        };
        if compressed > 1 {
            parts.par_iter_mut().try_for_each(decompress)
        } else {
            parts.iter_mut().try_for_each(decompress)
        }
    }

    pub(crate) fn extents(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        let mut list = ExtentList::new();
        for (pos, len, run) in self.merged_runs(offset, length)? {
            match run {
                Run::Zero => list.push(Extent::zero(pos, len)),
                Run::Data(host) => list.push(Extent::data(pos, len, Some(host))),
                Run::Compressed { .. } => list.push(Extent::compressed(pos, len)),
                Run::Unallocated => match &self.backing {
                    None => list.push(Extent::unallocated(pos, len)),
                    Some(Backing { image: backing, .. }) => {
                        let covered = backing.virtual_size().saturating_sub(pos).min(len);
                        if covered > 0 {
                            // Backing data lives in another file: no host offset in this one.
                            list.extend(backing.map(pos, covered)?.into_iter().map(Extent::without_host_offset));
                        }
                        list.push(Extent::unallocated(pos + covered, len - covered));
                    }
                },
            }
        }
        Ok(list.into_vec())
    }
}

/// Read a table of `entries` big-endian u64 at `offset`.
pub(crate) fn read_table(file: &ImageFile, offset: u64, entries: u64, what: &str) -> Result<Vec<u64>> {
    let bytes = entries.checked_mul(8).filter(|&b| b <= file.len()).ok_or_else(|| {
        file.corrupt(offset, format!("{what} ({entries} entries) is larger than the file: truncated image?"))
    })?;
    let mut raw = vec![0u8; bytes as usize];
    file.read_exact_at(&mut raw, offset, what)?;
    Ok(raw.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default())).collect())
}
