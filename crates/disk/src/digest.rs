//! Content digests of the virtual disk, independent of the container format.
//!
//! **imgport digest v1**: split the virtual disk into 1 MiB chunks (the last may be shorter); hash each
//! chunk with SHA-256; the digest is SHA-256 over `"imgport-digest-v1"`, the virtual size as 8 bytes
//! little-endian, then the chunk hashes in order. Chunks the extent map shows hold no data are not read:
//! their hash is that of zeros, computed once. The cost is proportional to the allocated data, and the
//! result is the same for the same content in any container.
//!
//! The plain digest is SHA-256 of the whole virtual disk, equal to `qemu-img convert -O raw | sha256sum`.

use crate::error::Result;
use crate::image::DiskImage;
use crate::scan::{data_ranges, scan_ranges, Granules};
use crate::write::Control;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

pub const DIGEST_CHUNK: u64 = 1 << 20;
const DOMAIN: &[u8] = b"imgport-digest-v1";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn zero_hash(len: usize) -> [u8; 32] {
    Sha256::digest(vec![0u8; len]).into()
}

/// The imgport digest v1 of the virtual disk, as lowercase hex.
pub fn digest(src: &dyn DiskImage, ctl: &Control) -> Result<String> {
    let size = src.virtual_size();
    let nchunks = size.div_ceil(DIGEST_CHUNK) as usize;
    let full_zero = zero_hash(DIGEST_CHUNK as usize);
    let mut hashes: Vec<[u8; 32]> = vec![full_zero; nchunks];
    let tail = (size % DIGEST_CHUNK) as usize;
    if tail != 0 {
        hashes[nchunks - 1] = zero_hash(tail);
    }
    let ranges = data_ranges(src, Granules::new(DIGEST_CHUNK))?;
    scan_ranges(src, &ranges, ctl, &mut |offset, buf| {
        let first = (offset / DIGEST_CHUNK) as usize;
        let computed: Vec<[u8; 32]> = buf.par_chunks(DIGEST_CHUNK as usize).map(|c| Sha256::digest(c).into()).collect();
        hashes[first..first + computed.len()].copy_from_slice(&computed);
        Ok(())
    })?;
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(size.to_le_bytes());
    for c in &hashes {
        h.update(c);
    }
    Ok(hex(&h.finalize()))
}

/// SHA-256 of the full virtual disk, as lowercase hex. Holes are hashed as zeros without being read.
pub fn plain_sha256(src: &dyn DiskImage, ctl: &Control) -> Result<String> {
    let size = src.virtual_size();
    let zeros = vec![0u8; 1 << 20];
    let mut h = Sha256::new();
    let mut pos = 0u64;
    let ranges = data_ranges(src, Granules::new(4096))?;
    scan_ranges(src, &ranges, ctl, &mut |offset, buf| {
        hash_zeros(&mut h, &zeros, offset - pos);
        h.update(buf);
        pos = offset + buf.len() as u64;
        Ok(())
    })?;
    hash_zeros(&mut h, &zeros, size - pos);
    Ok(hex(&h.finalize()))
}

fn hash_zeros(h: &mut Sha256, zeros: &[u8], mut len: u64) {
    while len > 0 {
        let n = len.min(zeros.len() as u64) as usize;
        h.update(&zeros[..n]);
        len -= n as u64;
    }
}
