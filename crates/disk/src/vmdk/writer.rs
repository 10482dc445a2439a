//! streamOptimized writer, laid out the way VMware's own stream writer does it (and what AWS VM Import
//! and OVF deployment expect):
//!
//! ```text
//! header (gdOffset = GD_AT_END) | embedded descriptor, padded to 64 KiB
//! grain marker + deflated grain, padded to a sector        } for every grain holding data, in order;
//! GT marker + grain table (after the grains it covers)     } all-zero grains are left out
//! GD marker + grain directory | footer marker + header copy with the real gdOffset | end-of-stream marker
//! ```
//!
//! Every piece depends only on what came before it, so the output is one sequential stream. Grains are
//! compressed (zlib, level 6 as qemu and VMware use) on all cores in batches and written in order. A grain
//! whose bytes are as good as random (already compressed or encrypted data: order-0 entropy above
//! 7.99 bits per byte) is stored in deflate "stored" blocks instead: level 6 would spend ~40x the time to
//! produce the same size.

use super::descriptor::stream_optimized_text;
use super::header::{
    Marker, SparseHeader, COMPRESS_DEFLATE, FLAG_COMPRESSED, FLAG_MARKERS, FLAG_NL_DETECT, GD_AT_END, GRAIN_MARKER_LEN,
    MARKER_EOS, MARKER_FOOTER, MARKER_GD, MARKER_GT, NL_CHECK, SECTOR,
};
use crate::error::{Error, Result};
use crate::image::DiskImage;
use crate::scan::{scan_data, Granules};
use crate::sink::Sink;
use crate::write::{Control, Subformat, WriteOptions};
use flate2::{Compress, Compression, FlushCompress, Status};
use rayon::prelude::*;
use std::cell::RefCell;

const GRAIN: u64 = 64 * 1024;
const GRAIN_SECTORS: u64 = GRAIN / SECTOR;
const GTES_PER_GT: u64 = 512;
/// A sparse extent addresses at most 2^32 - 1 sectors (grain table entries are 32-bit sector numbers).
const MAX_SECTORS: u64 = u32::MAX as u64;
/// Uncompressed bytes compressed in one parallel batch.
const BATCH: usize = 8 << 20;
/// zlib level: qemu (`compress()`) and VMware use the default, 6.
const LEVEL: u32 = 6;
/// Order-0 entropy (bits per byte) above which a grain is stored rather than compressed: Huffman coding
/// could save at most 0.1% of such a grain, and only long repeats (rare in random-looking data) more.
const INCOMPRESSIBLE_BITS: f64 = 7.99;

pub(super) fn write(src: &dyn DiskImage, opts: &WriteOptions, sink: &mut dyn Sink, ctl: &Control) -> Result<()> {
    match opts.subformat {
        None | Some(Subformat::StreamOptimized) => {}
        Some(other) => {
            return Err(Error::invalid_argument(format!(
                "VMDK output is written as streamOptimized only (subformat {other:?} does not apply to VMDK)"
            )))
        }
    }
    if opts.cluster_size.is_some_and(|c| c != GRAIN) {
        return Err(Error::invalid_argument("VMDK streamOptimized grains are 64 KiB: cluster_size must be 64k"));
    }
    if opts.block_size.is_some() {
        return Err(Error::invalid_argument("block_size does not apply to VMDK output"));
    }
    let size = src.virtual_size();
    if size == 0 {
        // A sparse header with capacity 0 tells readers (qemu included) "the descriptor is all there is".
        return Err(Error::invalid_argument("cannot write an empty (0-byte) disk as VMDK"));
    }
    let capacity = size.div_ceil(SECTOR);
    if capacity > MAX_SECTORS {
        return Err(Error::invalid_argument(format!(
            "a VMDK sparse extent holds at most 2 TiB - 512 bytes; the source is {size} bytes"
        )));
    }
    let grains = capacity.div_ceil(GRAIN_SECTORS);
    let gd_entries = grains.div_ceil(GTES_PER_GT) as usize;

    let cid = match opts.stamp {
        Some(s) => stamped_cid(&s),
        None => random_cid(),
    };
    let desc = stream_optimized_text(cid, capacity, "disk.vmdk");
    // Room for the descriptor to be edited in place, as qemu leaves (20 sectors).
    let desc_sectors = (desc.len() as u64).div_ceil(SECTOR).max(20);
    let overhead = (1 + desc_sectors).div_ceil(GRAIN_SECTORS) * GRAIN_SECTORS;
    let mut header = SparseHeader {
        version: 3,
        flags: FLAG_NL_DETECT | FLAG_COMPRESSED | FLAG_MARKERS,
        capacity,
        grain_sectors: GRAIN_SECTORS,
        desc_offset: 1,
        desc_size: desc_sectors,
        gtes_per_gt: GTES_PER_GT as u32,
        rgd_offset: 0,
        gd_offset: GD_AT_END,
        overhead,
        unclean_shutdown: false,
        nl_check: NL_CHECK,
        compress_algorithm: COMPRESS_DEFLATE,
    };

    sink.begin(0)?;
    let mut head = vec![0u8; (overhead * SECTOR) as usize];
    head[..512].copy_from_slice(&header.to_bytes());
    head[512..512 + desc.len()].copy_from_slice(desc.as_bytes());
    let mut w = StreamWriter { sink, pos: 0, gd: vec![0; gd_entries], gt: None, out: Vec::new() };
    w.out = head;
    w.flush()?;

    let mut pending: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut pending_bytes = 0usize;
    scan_data(src, Granules::new(GRAIN), ctl, &mut |offset, data| {
        if data.len() >= BATCH / 2 {
            // Large runs are compressed straight from the reader's buffer.
            w.add_batch(&std::mem::take(&mut pending))?;
            pending_bytes = 0;
            return w.add_run(offset, data);
        }
        pending.push((offset, data.to_vec()));
        pending_bytes += data.len();
        if pending_bytes >= BATCH / 2 {
            w.add_batch(&std::mem::take(&mut pending))?;
            pending_bytes = 0;
        }
        Ok(())
    })?;
    w.add_batch(&pending)?;
    ctl.check()?;
    w.finish_tables(&mut header)?;
    let total = w.pos;
    w.sink.finish(total)
}

struct StreamWriter<'a> {
    sink: &'a mut dyn Sink,
    /// Bytes written so far (always a whole number of sectors after a flush).
    pos: u64,
    /// Grain directory: sector of each grain table written, 0 for tables left out.
    gd: Vec<u32>,
    /// The grain table being filled: its index and entries.
    gt: Option<(usize, Vec<u32>)>,
    /// Output assembled before one sink write.
    out: Vec<u8>,
}

impl StreamWriter<'_> {
    /// Current output sector (including what is assembled but not yet written).
    fn sector(&self) -> Result<u32> {
        let s = (self.pos + self.out.len() as u64) / SECTOR;
        u32::try_from(s).map_err(|_| {
            Error::invalid_argument("streamOptimized output would exceed 2 TiB: grain tables cannot address it")
        })
    }

    fn flush(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            self.sink.write_at(self.pos, &self.out)?;
            self.pos += self.out.len() as u64;
            self.out.clear();
        }
        Ok(())
    }

    fn add_run(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.add_batch_refs(&[(offset, data)])
    }

    fn add_batch(&mut self, runs: &[(u64, Vec<u8>)]) -> Result<()> {
        let refs: Vec<(u64, &[u8])> = runs.iter().map(|(o, d)| (*o, d.as_slice())).collect();
        self.add_batch_refs(&refs)
    }

    /// Compress the grains of `runs` in parallel and append them, in order, with the grain tables that
    /// become complete.
    fn add_batch_refs(&mut self, runs: &[(u64, &[u8])]) -> Result<()> {
        let grains: Vec<(u64, &[u8])> = runs
            .iter()
            .flat_map(|&(offset, data)| {
                data.chunks(GRAIN as usize).enumerate().map(move |(i, g)| (offset / GRAIN + i as u64, g))
            })
            .collect();
        if grains.is_empty() {
            return Ok(());
        }
        let encoded: Vec<Vec<u8>> =
            grains.par_iter().map(|&(g, data)| encode_grain(g * GRAIN_SECTORS, data)).collect::<Result<_>>()?;
        for ((g, _), bytes) in grains.iter().zip(encoded) {
            let table = (g / GTES_PER_GT) as usize;
            if self.gt.as_ref().is_some_and(|(t, _)| *t != table) {
                self.write_table()?;
            }
            let sector = self.sector()?;
            let (_, entries) = self.gt.get_or_insert_with(|| (table, vec![0; GTES_PER_GT as usize]));
            entries[(g % GTES_PER_GT) as usize] = sector;
            self.out.extend_from_slice(&bytes);
        }
        self.flush()
    }

    /// Append the grain table being filled, behind its marker, and record it in the directory.
    fn write_table(&mut self) -> Result<()> {
        let Some((table, entries)) = self.gt.take() else {
            return Ok(());
        };
        let sectors = (entries.len() as u64 * 4).div_ceil(SECTOR);
        self.out.extend_from_slice(&Marker::metadata(sectors, MARKER_GT));
        let sector = self.sector()?;
        if let Some(e) = self.gd.get_mut(table) {
            *e = sector;
        }
        append_table(&mut self.out, &entries);
        Ok(())
    }

    /// Last grain table, grain directory, footer and end-of-stream marker.
    fn finish_tables(&mut self, header: &mut SparseHeader) -> Result<()> {
        self.write_table()?;
        let gd_sectors = (self.gd.len() as u64 * 4).div_ceil(SECTOR);
        self.out.extend_from_slice(&Marker::metadata(gd_sectors, MARKER_GD));
        header.gd_offset = self.sector()? as u64;
        let gd = std::mem::take(&mut self.gd);
        append_table(&mut self.out, &gd);
        self.out.extend_from_slice(&Marker::metadata(1, MARKER_FOOTER));
        self.out.extend_from_slice(&header.to_bytes());
        self.out.extend_from_slice(&Marker::metadata(0, MARKER_EOS));
        self.flush()
    }
}

/// Little-endian u32 entries, zero-padded to a whole sector.
fn append_table(out: &mut Vec<u8>, entries: &[u32]) {
    for e in entries {
        out.extend_from_slice(&e.to_le_bytes());
    }
    pad_to_sector(out);
}

fn pad_to_sector(out: &mut Vec<u8>) {
    let padded = (out.len() as u64).div_ceil(SECTOR) * SECTOR;
    out.resize(padded as usize, 0);
}

/// Grain marker (first sector, compressed length) followed by the zlib stream, padded to a sector. The
/// last grain of a disk whose size is not a multiple of 64 KiB is compressed as a whole zero-padded grain.
fn encode_grain(lba: u64, data: &[u8]) -> Result<Vec<u8>> {
    thread_local! {
        static DEFLATER: RefCell<Compress> = RefCell::new(Compress::new(Compression::new(LEVEL), true));
        static STORER: RefCell<Compress> = RefCell::new(Compress::new(Compression::none(), true));
    }
    let padded;
    let input = if data.len() < GRAIN as usize {
        let mut p = vec![0u8; GRAIN as usize];
        p[..data.len()].copy_from_slice(data);
        padded = p;
        &padded[..]
    } else {
        data
    };
    // zlib's compressBound for one grain, plus the marker and the padding.
    let bound = input.len() + (input.len() >> 12) + (input.len() >> 14) + (input.len() >> 25) + 13;
    let mut out = Vec::with_capacity(GRAIN_MARKER_LEN + bound + SECTOR as usize);
    out.extend_from_slice(&lba.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let compressor = if looks_incompressible(input) { &STORER } else { &DEFLATER };
    compressor.with(|c| {
        let mut c = c.borrow_mut();
        c.reset();
        match c.compress_vec(input, &mut out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) => Ok(()),
            Ok(status) => Err(Error::new(crate::ErrorKind::Io, format!("deflate did not finish a grain ({status:?})"))),
            Err(e) => Err(Error::new(crate::ErrorKind::Io, format!("deflate failed: {e}"))),
        }
    })?;
    let compressed = (out.len() - GRAIN_MARKER_LEN) as u32;
    out[8..12].copy_from_slice(&compressed.to_le_bytes());
    pad_to_sector(&mut out);
    Ok(out)
}

/// True when the byte histogram of `data` is as flat as random data's.
fn looks_incompressible(data: &[u8]) -> bool {
    // Four interleaved histograms avoid store-to-load stalls on runs of one byte value.
    let mut h = [[0u32; 256]; 4];
    let (quads, rest) = data.as_chunks::<4>();
    for q in quads {
        h[0][q[0] as usize] += 1;
        h[1][q[1] as usize] += 1;
        h[2][q[2] as usize] += 1;
        h[3][q[3] as usize] += 1;
    }
    for &b in rest {
        h[0][b as usize] += 1;
    }
    let n = data.len() as f64;
    let entropy: f64 = (0..256)
        .map(|i| h[0][i] + h[1][i] + h[2][i] + h[3][i])
        .filter(|&c| c > 0)
        .map(|c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    entropy > INCOMPRESSIBLE_BITS
}

/// A content ID derived from the stamp (never "ffffffff").
fn stamped_cid(stamp: &crate::write::Stamp) -> u32 {
    let b = stamp.bytes("vmdk cid");
    match u32::from_le_bytes([b[0], b[1], b[2], b[3]]) {
        u32::MAX => 0x1234_5678,
        cid => cid,
    }
}

/// A content ID for the descriptor: random, and never "ffffffff" (which means "no parent").
fn random_cid() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.write_u32(std::process::id());
    match h.finish() as u32 {
        u32::MAX => 0x1234_5678,
        cid => cid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grain_record_layout() {
        let data: Vec<u8> = (0..GRAIN as usize).map(|i| (i * 7 % 251) as u8).collect();
        let rec = encode_grain(256, &data).unwrap();
        assert_eq!(rec.len() % 512, 0);
        let m = Marker::parse(&rec[..12]);
        assert_eq!(m.value, 256);
        let size = m.size as usize;
        assert!(size > 0 && 12 + size <= rec.len());
        assert_eq!(&rec[12..14], &[0x78, 0x9c], "zlib header, default level");
        let mut out = vec![0u8; GRAIN as usize];
        let mut d = flate2::Decompress::new(true);
        let st = d.decompress(&rec[12..12 + size], &mut out, flate2::FlushDecompress::Finish).unwrap();
        assert_eq!(st, Status::StreamEnd);
        assert_eq!(out, data);
    }

    #[test]
    fn short_last_grain_is_padded() {
        let rec = encode_grain(0, &[0xab; 1000]).unwrap();
        let size = Marker::parse(&rec[..12]).size as usize;
        let mut out = vec![1u8; GRAIN as usize];
        let mut d = flate2::Decompress::new(true);
        d.decompress(&rec[12..12 + size], &mut out, flate2::FlushDecompress::Finish).unwrap();
        assert_eq!(d.total_out(), GRAIN);
        assert!(out[..1000].iter().all(|&b| b == 0xab) && out[1000..].iter().all(|&b| b == 0));
    }

    #[test]
    fn random_grains_are_stored_and_others_compressed() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let random: Vec<u8> = (0..GRAIN)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert!(looks_incompressible(&random));
        let rec = encode_grain(0, &random).unwrap();
        // Stored: the grain plus a few bytes of block headers, decodable as any zlib stream.
        let size = Marker::parse(&rec[..12]).size as usize;
        assert!(size > GRAIN as usize && size < GRAIN as usize + 64, "{size}");
        let mut out = vec![0u8; GRAIN as usize];
        let mut d = flate2::Decompress::new(true);
        d.decompress(&rec[12..12 + size], &mut out, flate2::FlushDecompress::Finish).unwrap();
        assert_eq!(out, random);
        // Base64-like text (6 bits per byte) still goes through deflate.
        let text: Vec<u8> = random
            .iter()
            .map(|b| b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(b & 63) as usize])
            .collect();
        assert!(!looks_incompressible(&text));
        assert!((Marker::parse(&encode_grain(0, &text).unwrap()[..12]).size as u64) < GRAIN * 8 / 10);
        assert!(!looks_incompressible(&[0u8; 4096]));
    }

    #[test]
    fn cid_is_never_the_no_parent_value() {
        for _ in 0..100 {
            assert_ne!(random_cid(), u32::MAX);
        }
    }
}
