//! Sparse extents: a grain directory (GD) of grain tables (GT) of grain table entries (GTE), each the
//! sector where a grain (64 KiB by default) is stored, 0 when unallocated, 1 when explicitly zero.
//!
//! Covers hosted `KDMV` extents (monolithicSparse, twoGbMaxExtentSparse), their streamOptimized variant
//! (deflate-compressed grains, each behind a 12-byte marker; grain directory possibly only in the footer)
//! and ESX `COWD` extents (vmfsSparse). The GD is loaded at open (it is small: 4 bytes per 32 MiB of
//! disk); grain tables are read on demand into a bounded cache. Reads coalesce runs of grains stored
//! contiguously into one pread and decompress compressed grains on all cores.

use super::header::{
    CowdHeader, Marker, SparseHeader, COMPRESS_DEFLATE, COMPRESS_NONE, COWD_GTES_PER_GT, FLAG_NL_DETECT, FLAG_RGD,
    FLAG_ZERO_GRAIN, GD_AT_END, GRAIN_MARKER_LEN, GTE_ZERO, MARKER_EOS, MARKER_FOOTER, NL_CHECK, SECTOR,
};
use crate::error::{Error, Result};
use crate::file::{le_u32, ImageFile};
use crate::image::{Extent, ExtentList};
use flate2::{Decompress, FlushDecompress, Status};
use rayon::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Largest grain of an uncompressed extent (qemu's limit: 1 GiB).
const MAX_GRAIN_SECTORS: u64 = 1 << 21;
/// Largest grain of a compressed extent: every compressed grain is inflated into a buffer this large.
const MAX_COMPRESSED_GRAIN_SECTORS: u64 = 1 << 14;
/// Largest grain directory loaded (4 bytes per entry; 64 MiB covers far more than the 2 TiB a sparse
/// extent can address).
const MAX_GD_BYTES: u64 = 64 << 20;
/// Grain tables kept in memory, in bytes (per image: a descriptor's sparse extents share it).
pub(super) const GT_CACHE_BYTES: usize = 16 << 20;
/// Largest span of compressed grains read with one pread.
const MAX_COMPRESSED_SPAN: u64 = 32 << 20;

/// Which on-disk variant this sparse extent is.
#[derive(Debug, Clone)]
pub enum SparseFormat {
    /// Hosted sparse extent. `header` is the effective one (the footer's when the header says GD_AT_END).
    Kdmv { primary: SparseHeader, header: SparseHeader, footer_offset: Option<u64> },
    /// ESX vmfsSparse (redo log) extent.
    Cowd,
}

/// What a grain table entry says about one grain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Unallocated,
    Zero,
    /// Stored at this byte offset of the extent file (the grain marker, when compressed).
    Stored(u64),
}

pub struct SparseExtent {
    pub file: ImageFile,
    pub format: SparseFormat,
    /// Size in bytes.
    pub size: u64,
    pub grain_bytes: u64,
    pub gtes_per_gt: u32,
    /// Grain directory: sector of each grain table, 0 when the table is absent.
    pub gd: Vec<u32>,
    pub gd_offset: u64,
    pub compressed: bool,
    pub markers: bool,
    /// Report host offsets in `map` (the extent file is the image file the user opened).
    pub report_host_offsets: bool,
    cache: Mutex<GtCache>,
}

impl SparseExtent {
    /// Open a `KDMV` extent whose header (at offset 0) has been read and whose magic was checked.
    pub fn open_kdmv(file: ImageFile, primary: SparseHeader) -> Result<SparseExtent> {
        let (header, footer_offset) = if primary.gd_offset == GD_AT_END {
            let (footer, at) = read_footer(&file, &primary)?;
            (footer, Some(at))
        } else {
            (primary.clone(), None)
        };
        let h = &header;
        if h.version > 3 {
            return Err(file.unsupported(format!("VMDK sparse extent version {} is not supported", h.version)));
        }
        if h.flags & FLAG_NL_DETECT != 0 && h.nl_check != NL_CHECK {
            return Err(file.corrupt(
                73,
                "newline-detection bytes of the sparse header are damaged: the file went through a \
                 text-mode transfer (FTP ASCII?)",
            ));
        }
        if h.compress_algorithm != COMPRESS_NONE && h.compress_algorithm != COMPRESS_DEFLATE {
            return Err(
                file.unsupported(format!("VMDK compression algorithm {} is not supported", h.compress_algorithm))
            );
        }
        let compressed = h.compress_algorithm == COMPRESS_DEFLATE;
        let max_grain = if compressed { MAX_COMPRESSED_GRAIN_SECTORS } else { MAX_GRAIN_SECTORS };
        if h.grain_sectors == 0 || h.grain_sectors > max_grain {
            return Err(file.invalid(
                20,
                format!("grain size of {} sectors is not supported (1 to {max_grain} sectors)", h.grain_sectors),
            ));
        }
        if h.gtes_per_gt == 0 || h.gtes_per_gt > 512 {
            return Err(file.invalid(44, format!("{} entries per grain table (expected 1 to 512)", h.gtes_per_gt)));
        }
        if h.gd_offset == GD_AT_END {
            return Err(file.corrupt(footer_offset.unwrap_or(56), "the footer's grain directory offset is GD_AT_END"));
        }
        let size = sectors_to_bytes(&file, h.capacity, 12, "capacity")?;
        if h.overhead.checked_mul(SECTOR).is_none_or(|o| o > file.len()) {
            return Err(
                file.corrupt(64, format!("file is truncated: the header says grains start at sector {}", h.overhead))
            );
        }
        let gd_offset = sectors_to_bytes(&file, h.gd_offset, 56, "grain directory offset")?;
        let coverage = (h.gtes_per_gt as u64) * h.grain_sectors;
        let gd_entries = h.capacity.div_ceil(coverage);
        let gd = read_table(&file, gd_offset, gd_entries, "grain directory")?;
        Ok(SparseExtent {
            size,
            grain_bytes: h.grain_sectors * SECTOR,
            gtes_per_gt: h.gtes_per_gt,
            gd,
            gd_offset,
            compressed,
            markers: compressed && h.has_markers(),
            report_host_offsets: false,
            cache: Mutex::new(GtCache::new(h.gtes_per_gt as usize)),
            format: SparseFormat::Kdmv { primary, header, footer_offset },
            file,
        })
    }

    /// Bytes of grain directory held in memory.
    pub fn directory_bytes(&self) -> u64 {
        self.gd.len() as u64 * 4
    }

    /// Share the grain-table cache's memory with the other extents of a descriptor: at most `bytes` for this one.
    pub fn limit_cache(&mut self, bytes: usize) {
        self.cache = Mutex::new(GtCache::with_budget(self.gtes_per_gt as usize, bytes.min(GT_CACHE_BYTES)));
    }

    /// Open a `COWD` (vmfsSparse) extent.
    pub fn open_cowd(file: ImageFile, h: CowdHeader) -> Result<SparseExtent> {
        if h.grain_sectors == 0 || h.grain_sectors as u64 > MAX_GRAIN_SECTORS {
            return Err(file.invalid(16, format!("COWD grain size of {} sectors is not supported", h.grain_sectors)));
        }
        let coverage = COWD_GTES_PER_GT as u64 * h.grain_sectors as u64;
        let needed = (h.capacity as u64).div_ceil(coverage);
        if (h.gd_entries as u64) < needed {
            return Err(file.corrupt(
                24,
                format!("COWD grain directory has {} entries, the capacity needs {needed}", h.gd_entries),
            ));
        }
        let gd_offset = h.gd_offset as u64 * SECTOR;
        let gd = read_table(&file, gd_offset, needed, "grain directory")?;
        Ok(SparseExtent {
            size: h.capacity as u64 * SECTOR,
            grain_bytes: h.grain_sectors as u64 * SECTOR,
            gtes_per_gt: COWD_GTES_PER_GT,
            gd,
            gd_offset,
            compressed: false,
            markers: false,
            report_host_offsets: false,
            cache: Mutex::new(GtCache::new(COWD_GTES_PER_GT as usize)),
            format: SparseFormat::Cowd,
            file,
        })
    }

    /// The effective KDMV header, if this is a KDMV extent.
    pub fn header(&self) -> Option<&SparseHeader> {
        match &self.format {
            SparseFormat::Kdmv { header, .. } => Some(header),
            SparseFormat::Cowd => None,
        }
    }

    pub fn zero_grain_flag(&self) -> bool {
        self.header().is_some_and(|h| h.flags & FLAG_ZERO_GRAIN != 0)
    }

    /// Redundant grain directory offset in bytes, when the header declares one.
    pub fn rgd_offset(&self) -> Option<u64> {
        let h = self.header()?;
        if h.flags & FLAG_RGD != 0 && h.rgd_offset != 0 {
            h.rgd_offset.checked_mul(SECTOR)
        } else {
            None
        }
    }

    pub fn gt_bytes(&self) -> u64 {
        self.gtes_per_gt as u64 * 4
    }

    fn grains_per_gt(&self) -> u64 {
        self.gtes_per_gt as u64
    }

    /// Grain table `index` of the grain directory, or None when the directory entry is 0.
    pub fn grain_table(&self, index: usize) -> Result<Option<Arc<[u32]>>> {
        let Some(&sector) = self.gd.get(index) else {
            return Err(Error::corrupt(format!("grain directory has no entry {index}")).in_file(self.file.path()));
        };
        if sector == 0 {
            return Ok(None);
        }
        if let Some(t) = self.cache.lock().map_err(|_| poisoned())?.get(index) {
            return Ok(Some(t));
        }
        let t: Arc<[u32]> =
            read_table(&self.file, sector as u64 * SECTOR, self.gtes_per_gt as u64, &format!("grain table {index}"))?
                .into();
        self.cache.lock().map_err(|_| poisoned())?.insert(index, t.clone());
        Ok(Some(t))
    }

    /// Call `f(grain_index, grain)` for every grain overlapping `[offset, offset + len)` of the extent.
    fn for_each_grain(&self, offset: u64, len: u64, mut f: impl FnMut(u64, Grain) -> Result<()>) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let first = offset / self.grain_bytes;
        let last = (offset + len - 1) / self.grain_bytes;
        let mut g = first;
        while g <= last {
            let gt_index = g / self.grains_per_gt();
            let gt_end = ((gt_index + 1) * self.grains_per_gt()).min(last + 1);
            match self.grain_table(gt_index as usize)? {
                None => {
                    for i in g..gt_end {
                        f(i, Grain::Unallocated)?;
                    }
                }
                Some(t) => {
                    for i in g..gt_end {
                        let gte = t.get((i % self.grains_per_gt()) as usize).copied().unwrap_or(0);
                        f(i, classify(gte))?;
                    }
                }
            }
            g = gt_end;
        }
        Ok(())
    }

    /// Extents of `[offset, offset + len)` of this extent, placed at `base + offset` of the virtual disk.
    pub fn map(&self, offset: u64, len: u64, base: u64, list: &mut ExtentList) -> Result<()> {
        let end = offset + len;
        self.for_each_grain(offset, len, |g, grain| {
            let g_start = g * self.grain_bytes;
            let s = g_start.max(offset);
            let e = (g_start + self.grain_bytes).min(end);
            let (v, n) = (base + s, e - s);
            list.push(match grain {
                Grain::Unallocated => Extent::unallocated(v, n),
                Grain::Zero => Extent::zero(v, n),
                Grain::Stored(_) if self.compressed => Extent::compressed(v, n),
                Grain::Stored(host) => Extent::data(v, n, self.report_host_offsets.then(|| host + (s - g_start))),
            });
            Ok(())
        })
    }

    /// Read `buf.len()` bytes at `offset` of the extent (the caller checked the bounds).
    pub fn read(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        // Plan the request: zero pieces, runs of contiguous uncompressed grains, compressed grains.
        let mut pieces: Vec<(usize, Piece)> = Vec::new();
        let end = offset + buf.len() as u64;
        self.for_each_grain(offset, buf.len() as u64, |g, grain| {
            let g_start = g * self.grain_bytes;
            let s = g_start.max(offset);
            let n = ((g_start + self.grain_bytes).min(end) - s) as usize;
            let piece = match grain {
                Grain::Unallocated | Grain::Zero => Piece::Zero,
                Grain::Stored(marker) if self.compressed => {
                    Piece::Compressed { marker, grain: g, in_grain: (s - g_start) as usize }
                }
                Grain::Stored(host) => Piece::Raw { host: host + (s - g_start) },
            };
            match (pieces.last_mut(), piece) {
                (Some((len, Piece::Zero)), Piece::Zero) => *len += n,
                (Some((len, Piece::Raw { host })), Piece::Raw { host: next }) if *host + *len as u64 == next => {
                    *len += n
                }
                _ => pieces.push((n, piece)),
            }
            Ok(())
        })?;

        let mut rest = buf;
        let mut jobs = Vec::new();
        for (len, piece) in pieces {
            let (out, tail) = rest.split_at_mut(len);
            rest = tail;
            match piece {
                Piece::Zero => out.fill(0),
                Piece::Raw { host } => self.file.read_exact_at(out, host, "grain data")?,
                Piece::Compressed { marker, grain, in_grain } => jobs.push(Job { marker, grain, in_grain, out }),
            }
        }
        if !jobs.is_empty() {
            self.read_compressed(jobs)?;
        }
        Ok(())
    }

    /// Longest record a compressed grain may occupy: marker plus compressed data (qemu's limit: 2 grains).
    fn max_record(&self) -> u64 {
        GRAIN_MARKER_LEN as u64 + 2 * self.grain_bytes
    }

    /// Read compressed grains: neighbours in the file are fetched with one pread, then all are inflated in
    /// parallel.
    fn read_compressed(&self, jobs: Vec<Job<'_>>) -> Result<()> {
        let max_record = self.max_record();
        // Group jobs whose records follow each other in the file.
        let mut groups: Vec<(u64, u64, Vec<Job<'_>>)> = Vec::new();
        for job in jobs {
            if job.marker >= self.file.len() {
                return Err(self
                    .file
                    .corrupt(job.marker, format!("grain {} lies past the end of the file", job.grain)));
            }
            let record_end = (job.marker + max_record).min(self.file.len());
            match groups.last_mut() {
                Some((start, end, group))
                    if job.marker > group.last().map_or(0, |j| j.marker)
                        && job.marker <= *end
                        && record_end - *start <= MAX_COMPRESSED_SPAN =>
                {
                    *end = record_end.max(*end);
                    group.push(job);
                }
                _ => groups.push((job.marker, record_end, vec![job])),
            }
        }
        let mut spans = Vec::with_capacity(groups.len());
        let mut work = Vec::new();
        for (start, end, group) in groups {
            let mut span = vec![0u8; (end - start) as usize];
            self.file.read_exact_at(&mut span, start, "compressed grains")?;
            spans.push((start, span));
            let idx = spans.len() - 1;
            work.extend(group.into_iter().map(|j| (idx, j)));
        }
        work.into_par_iter().try_for_each(|(idx, job)| {
            let (start, span) = &spans[idx];
            let record = &span[(job.marker - start) as usize..];
            self.inflate_grain(record, job)
        })
    }

    /// Inflate one compressed grain whose record (marker and data, possibly followed by other bytes)
    /// starts `record`.
    fn inflate_grain(&self, record: &[u8], job: Job<'_>) -> Result<()> {
        let data = if self.markers {
            if record.len() < GRAIN_MARKER_LEN {
                return Err(self.file.corrupt(job.marker, "grain marker extends past the end of the file"));
            }
            let m = Marker::parse(&record[..GRAIN_MARKER_LEN]);
            if m.size == 0 || m.size as u64 > 2 * self.grain_bytes {
                return Err(self.file.corrupt(
                    job.marker,
                    format!("grain marker of grain {} has an impossible size of {} bytes", job.grain, m.size),
                ));
            }
            let end = GRAIN_MARKER_LEN + m.size as usize;
            record.get(GRAIN_MARKER_LEN..end).ok_or_else(|| {
                self.file
                    .corrupt(job.marker, format!("compressed grain {} extends past the end of the file", job.grain))
            })?
        } else {
            record
        };
        let grain = self.grain_bytes as usize;
        let result = if job.in_grain == 0 && job.out.len() == grain {
            inflate(data, job.out)
        } else {
            let mut full = vec![0u8; grain];
            let r = inflate(data, &mut full);
            let n = job.out.len();
            job.out.copy_from_slice(&full[job.in_grain..job.in_grain + n]);
            r
        };
        result.map_err(|why| self.file.corrupt(job.marker, format!("compressed grain {}: {why}", job.grain)))
    }

    /// Grain marker at `offset` (streamOptimized), for the check.
    pub fn marker_at(&self, offset: u64) -> Result<Marker> {
        let mut b = [0u8; 16];
        self.file.read_zero_padded(&mut b, offset, "marker")?;
        Ok(Marker::parse(&b))
    }

    /// Sector `grain` starts at, relative to the extent (what a grain marker must say).
    pub fn grain_lba(&self, grain: u64) -> u64 {
        grain * (self.grain_bytes / SECTOR)
    }
}

/// What a grain table entry means.
pub fn classify(gte: u32) -> Grain {
    match gte {
        0 => Grain::Unallocated,
        // A zeroed-grain GTE. Without the zeroed-grain flag, sector 1 would be the header's own
        // descriptor area: never grain data, so zero is the only sensible reading.
        GTE_ZERO => Grain::Zero,
        s => Grain::Stored(s as u64 * SECTOR),
    }
}

#[derive(Clone, Copy)]
enum Piece {
    Zero,
    Raw { host: u64 },
    Compressed { marker: u64, grain: u64, in_grain: usize },
}

struct Job<'a> {
    marker: u64,
    grain: u64,
    in_grain: usize,
    out: &'a mut [u8],
}

/// Inflate a zlib stream into `out` (a whole grain). A shorter result is zero-filled: qemu writes the
/// last grain of a disk whose size is not a multiple of the grain only up to the end of the disk.
fn inflate(data: &[u8], out: &mut [u8]) -> Result<(), String> {
    thread_local! {
        static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(true));
    }
    INFLATER.with(|d| {
        let mut d = d.borrow_mut();
        d.reset(true);
        let status = d.decompress(data, out, FlushDecompress::Finish).map_err(|e| format!("bad deflate data: {e}"))?;
        let produced = d.total_out() as usize;
        match status {
            Status::StreamEnd => {}
            _ if produced == out.len() => {
                // Output full: the stream must end here, with nothing more to produce.
                let consumed = d.total_in() as usize;
                let mut extra = [0u8; 1];
                let more = d
                    .decompress(&data[consumed.min(data.len())..], &mut extra, FlushDecompress::Finish)
                    .map_err(|e| format!("bad deflate data: {e}"))?;
                if d.total_out() as usize > produced || more != Status::StreamEnd {
                    return Err("inflates to more than one grain".to_string());
                }
            }
            _ => return Err("compressed data is truncated".to_string()),
        }
        out[produced..].fill(0);
        Ok(())
    })
}

/// Read the streamOptimized footer: footer marker, header copy, end-of-stream marker in the last three
/// sectors. Returns the footer header and its offset.
fn read_footer(file: &ImageFile, primary: &SparseHeader) -> Result<(SparseHeader, u64)> {
    let missing = |detail: &str| {
        file.corrupt(
            file.len().saturating_sub(1024),
            format!(
                "the header's grain directory is at the end (GD_AT_END) but there is no valid footer: {detail}; \
                 the streamOptimized file is truncated or was not completely written"
            ),
        )
    };
    if file.len() < 1536 + 512 {
        return Err(missing("the file is too short"));
    }
    let at = file.len() - 1536;
    let mut b = [0u8; 1536];
    file.read_exact_at(&mut b, at, "footer")?;
    let footer_marker = Marker::parse(&b[0..16]);
    let eos = Marker::parse(&b[1024..1040]);
    if primary.has_markers() && (footer_marker.size != 0 || footer_marker.kind != MARKER_FOOTER) {
        return Err(missing("no footer marker at EOF-1536"));
    }
    if &b[512..516] != super::header::KDMV_MAGIC {
        return Err(missing("no KDMV footer at EOF-1024"));
    }
    if primary.has_markers() && (eos.value != 0 || eos.size != 0 || eos.kind != MARKER_EOS) {
        return Err(missing("no end-of-stream marker at EOF-512"));
    }
    let mut h = [0u8; 512];
    h.copy_from_slice(&b[512..1024]);
    Ok((SparseHeader::parse(&h), at + 512))
}

fn sectors_to_bytes(file: &ImageFile, sectors: u64, at: u64, what: &str) -> Result<u64> {
    // 2^55 sectors = 16 EiB: anything larger cannot be a byte offset.
    sectors
        .checked_mul(SECTOR)
        .filter(|&b| b < (1 << 62))
        .ok_or_else(|| file.invalid(at, format!("{what} of {sectors} sectors is impossible")))
}

/// Read a table of little-endian u32 entries, refusing tables larger than the file or than the cap before
/// allocating anything.
pub fn read_table(file: &ImageFile, offset: u64, entries: u64, what: &str) -> Result<Vec<u32>> {
    let bytes = entries.saturating_mul(4);
    if bytes > MAX_GD_BYTES {
        return Err(file.unsupported(format!(
            "{what} of {entries} entries is larger than {} MiB: declared capacity is implausible",
            MAX_GD_BYTES >> 20
        )));
    }
    if offset.checked_add(bytes).is_none_or(|end| end > file.len()) {
        return Err(file.corrupt(
            offset,
            format!("{what} ({bytes} bytes) extends past the end of the file ({} bytes)", file.len()),
        ));
    }
    let mut raw = vec![0u8; bytes as usize];
    file.read_exact_at(&mut raw, offset, what)?;
    Ok((0..entries as usize).map(|i| le_u32(&raw, i * 4)).collect())
}

fn poisoned() -> Error {
    Error::new(crate::ErrorKind::Io, "grain table cache lock poisoned")
}

/// A bounded cache of grain tables; evicts the least recently used table.
struct GtCache {
    tables: HashMap<usize, (Arc<[u32]>, u64)>,
    tick: u64,
    capacity: usize,
}

impl GtCache {
    fn new(entries_per_table: usize) -> Self {
        GtCache { tables: HashMap::new(), tick: 0, capacity: (GT_CACHE_BYTES / (entries_per_table * 4)).max(16) }
    }
    /// A cache of at most `bytes` of tables (at least one table).
    fn with_budget(entries_per_table: usize, bytes: usize) -> Self {
        GtCache { tables: HashMap::new(), tick: 0, capacity: (bytes / (entries_per_table * 4)).max(1) }
    }
    fn get(&mut self, index: usize) -> Option<Arc<[u32]>> {
        self.tick += 1;
        let tick = self.tick;
        self.tables.get_mut(&index).map(|(t, used)| {
            *used = tick;
            t.clone()
        })
    }
    fn insert(&mut self, index: usize, table: Arc<[u32]>) {
        if self.tables.len() >= self.capacity {
            // Drop the tables not used during the last half-capacity operations: amortised O(1), and a
            // sequential scan of a huge disk never rescans the whole cache per table.
            let keep_after = self.tick.saturating_sub(self.capacity as u64 / 2);
            self.tables.retain(|_, (_, used)| *used > keep_after);
            if self.tables.len() >= self.capacity {
                self.tables.clear();
            }
        }
        self.tick += 1;
        self.tables.insert(index, (table, self.tick));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut c = Compress::new(Compression::new(6), true);
        let mut out = Vec::with_capacity(data.len() + 1024);
        c.compress_vec(data, &mut out, FlushCompress::Finish).unwrap();
        out
    }

    #[test]
    fn inflate_exact_short_and_oversized() {
        let grain = vec![7u8; 4096];
        let mut out = vec![1u8; 4096];
        inflate(&zlib(&grain), &mut out).unwrap();
        assert_eq!(out, grain);
        // Shorter than a grain: the rest reads as zeros.
        let mut out = vec![1u8; 4096];
        inflate(&zlib(&grain[..1000]), &mut out).unwrap();
        assert_eq!(&out[..1000], &grain[..1000]);
        assert!(out[1000..].iter().all(|&b| b == 0));
        // Larger than a grain: refused.
        let mut out = vec![0u8; 2048];
        assert!(inflate(&zlib(&grain), &mut out).unwrap_err().contains("more than one grain"));
        // Truncated and garbage streams: refused, no panic.
        let z = zlib(&grain);
        let mut out = vec![0u8; 4096];
        assert!(inflate(&z[..z.len() / 2], &mut out).is_err());
        assert!(inflate(b"not zlib at all", &mut out).is_err());
        assert!(inflate(b"", &mut out).is_err());
    }

    #[test]
    fn cache_is_bounded_and_keeps_recent_tables() {
        let mut c = GtCache::new(512);
        let cap = c.capacity;
        for i in 0..cap * 3 {
            c.insert(i, vec![0u32; 4].into());
            assert!(c.get(0).is_some(), "the table in use stays cached");
            assert!(c.get(i).is_some(), "the table just loaded is cached");
            assert!(c.tables.len() <= cap);
        }
    }
}
