//! Content digests of the virtual disk, independent of the container format.
//!
//! **imgport-digest-v1**: split the virtual disk into 1 MiB chunks (the last may be shorter). Feed SHA-256 with
//! the ASCII string `imgport-digest-v1`, the virtual size as 8 bytes little-endian, then one record per chunk in
//! order, where each maximal run of all-zero chunks becomes one record `Z` + run length (8 bytes little-endian)
//! and every other chunk becomes `D` + SHA-256 of the chunk. The digest is the final SHA-256, in hex.
//!
//! Whether a chunk is zero depends only on its contents, so the same content gives the same digest in any
//! container; chunks the extent map shows hold no data are never read, so the cost follows the allocated data,
//! not the virtual size (a sparse 2 TiB disk costs as much as its data).
//!
//! The plain digest is SHA-256 of the whole virtual disk, equal to `qemu-img convert -O raw | sha256sum`; it
//! must hash every zero byte, so its cost follows the virtual size.

use crate::error::Result;
use crate::image::DiskImage;
use crate::scan::{data_ranges, is_zero, scan_ranges, Granules};
use crate::write::Control;
use imgport_wire::hex;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

pub const DIGEST_CHUNK: u64 = 1 << 20;
const DOMAIN: &[u8] = b"imgport-digest-v1";

/// Builds the record stream of imgport-digest-v1.
struct ChunkRecords {
    outer: Sha256,
    /// Index of the next chunk not yet accounted for.
    next: u64,
    /// Zero chunks seen but not yet written as a run record.
    zero_run: u64,
}

impl ChunkRecords {
    fn new(size: u64) -> Self {
        let mut outer = Sha256::new();
        outer.update(DOMAIN);
        outer.update(size.to_le_bytes());
        ChunkRecords { outer, next: 0, zero_run: 0 }
    }
    /// Chunks up to `index` (exclusive) not delivered are zero.
    fn skip_to(&mut self, index: u64) {
        self.zero_run += index.saturating_sub(self.next);
        self.next = self.next.max(index);
    }
    fn flush_zero_run(&mut self) {
        if self.zero_run > 0 {
            self.outer.update(b"Z");
            self.outer.update(self.zero_run.to_le_bytes());
            self.zero_run = 0;
        }
    }
    /// Chunk `index` has this hash, or is all zero (None).
    fn chunk(&mut self, index: u64, hash: Option<[u8; 32]>) {
        self.skip_to(index);
        match hash {
            None => self.zero_run += 1,
            Some(h) => {
                self.flush_zero_run();
                self.outer.update(b"D");
                self.outer.update(h);
            }
        }
        self.next = index + 1;
    }
    fn finish(mut self, nchunks: u64) -> String {
        self.skip_to(nchunks);
        self.flush_zero_run();
        hex(&self.outer.finalize())
    }
}

/// The imgport-digest-v1 of the virtual disk, as lowercase hex.
pub fn digest(src: &dyn DiskImage, ctl: &Control) -> Result<String> {
    let size = src.virtual_size();
    let mut records = ChunkRecords::new(size);
    let ranges = data_ranges(src, Granules::new(DIGEST_CHUNK), ctl);
    scan_ranges(src, ranges, ctl, &mut |offset, buf| {
        let first = offset / DIGEST_CHUNK;
        let hashes: Vec<Option<[u8; 32]>> = buf
            .par_chunks(DIGEST_CHUNK as usize)
            .map(|c| if is_zero(c) { None } else { Some(Sha256::digest(c).into()) })
            .collect();
        for (i, h) in hashes.into_iter().enumerate() {
            records.chunk(first + i as u64, h);
        }
        Ok(())
    })?;
    Ok(records.finish(size.div_ceil(DIGEST_CHUNK)))
}

/// SHA-256 of the full virtual disk, as lowercase hex. Holes are hashed as zeros without being read.
pub fn plain_sha256(src: &dyn DiskImage, ctl: &Control) -> Result<String> {
    let size = src.virtual_size();
    let zeros = vec![0u8; 1 << 20];
    let mut h = Sha256::new();
    let mut pos = 0u64;
    let ranges = data_ranges(src, Granules::new(4096), ctl);
    scan_ranges(src, ranges, ctl, &mut |offset, buf| {
        hash_zeros(&mut h, &zeros, offset - pos, ctl)?;
        h.update(buf);
        pos = offset + buf.len() as u64;
        Ok(())
    })?;
    hash_zeros(&mut h, &zeros, size - pos, ctl)?;
    Ok(hex(&h.finalize()))
}

fn hash_zeros(h: &mut Sha256, zeros: &[u8], mut len: u64, ctl: &Control) -> Result<()> {
    while len > 0 {
        let n = len.min(zeros.len() as u64) as usize;
        h.update(&zeros[..n]);
        len -= n as u64;
        ctl.check()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_runs_collapse_and_are_canonical() {
        // Delivering a zero chunk explicitly or skipping it gives the same digest.
        let mut a = ChunkRecords::new(5 << 20);
        a.chunk(1, Some([7; 32]));
        a.chunk(2, None);
        a.chunk(4, Some([9; 32]));
        let mut b = ChunkRecords::new(5 << 20);
        b.chunk(1, Some([7; 32]));
        b.chunk(4, Some([9; 32]));
        assert_eq!(a.finish(5), b.finish(5));
        // A different virtual size changes the digest even when the data is the same.
        let c = ChunkRecords::new(6 << 20);
        let d = ChunkRecords::new(5 << 20);
        assert_ne!(c.finish(6), d.finish(5));
    }
}
