//! Decompression of compressed extents (inline or regular). btrfs compresses at most 128 KiB of file data into at
//! most 128 KiB per extent, so both sides are capped there, and the output is cut at exactly the extent's
//! `ram_bytes`, whatever the stream would produce.

use super::corrupt;
use crate::bytes::le32;
use crate::fs::{FsError, FsResult};
use std::io::Read;

/// `BTRFS_MAX_UNCOMPRESSED` and `BTRFS_MAX_COMPRESSED`.
pub(super) const MAX_UNCOMPRESSED: u64 = 128 << 10;
pub(super) const MAX_COMPRESSED: u64 = 128 << 10;

const ZLIB: u8 = 1;
const LZO: u8 = 2;
const ZSTD: u8 = 3;
/// btrfs compresses with zstd windows of at most 2^17 bytes; a larger one in a frame header is refused rather
/// than allocated.
const ZSTD_WINDOW_LOG_MAX: u32 = 17;

/// Decompress `input` with btrfs compression `kind` into exactly `ram_bytes` bytes. A stream that ends cleanly
/// but short leaves zeros behind it, as the kernel does; one that is damaged is an error.
pub(super) fn decompress(kind: u8, input: &[u8], ram_bytes: u64, sectorsize: u32, what: &str) -> FsResult<Vec<u8>> {
    if ram_bytes > MAX_UNCOMPRESSED {
        return Err(corrupt(format!("{what}: {ram_bytes} bytes once decompressed, more than btrfs's 128 KiB")));
    }
    if input.len() as u64 > MAX_COMPRESSED {
        return Err(corrupt(format!("{what}: {} compressed bytes, more than btrfs's 128 KiB", input.len())));
    }
    let want = ram_bytes as usize;
    let mut out = Vec::with_capacity(want);
    let result = match kind {
        ZLIB => flate2::read::ZlibDecoder::new(input).take(ram_bytes).read_to_end(&mut out).map(drop),
        ZSTD => zstd_into(input, ram_bytes, &mut out),
        LZO => lzo_into(input, want, sectorsize as usize, &mut out)
            .map_err(|m| std::io::Error::new(std::io::ErrorKind::InvalidData, m)),
        other => return Err(FsError::Unsupported(format!("btrfs: {what}: compression type {other}"))),
    };
    result.map_err(|e| corrupt(format!("{what}: {} data does not decompress: {e}", name(kind))))?;
    out.resize(want, 0);
    Ok(out)
}

fn name(kind: u8) -> &'static str {
    match kind {
        ZLIB => "zlib",
        LZO => "lzo",
        _ => "zstd",
    }
}

fn zstd_into(input: &[u8], ram_bytes: u64, out: &mut Vec<u8>) -> std::io::Result<()> {
    // One frame; the zeros padding the extent to a sector after it are not read as another.
    let mut d = zstd::stream::read::Decoder::with_buffer(input)?.single_frame();
    d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
    d.take(ram_bytes).read_to_end(out).map(drop)
}

/// Bytes of the length fields of btrfs's LZO framing.
const LZO_LEN: usize = 4;

/// btrfs's LZO framing: a little-endian u32 total length (itself included), then segments of a u32 length and
/// that many bytes of LZO1X, each decompressing to at most one sector. A segment's length field never straddles
/// a sector boundary: when fewer than four bytes are left in a sector, they are padding.
fn lzo_into(input: &[u8], want: usize, sectorsize: usize, out: &mut Vec<u8>) -> Result<(), String> {
    if input.len() < LZO_LEN {
        return Err(format!("{} bytes, too short for the length header", input.len()));
    }
    let total = le32(input, 0) as usize;
    if total < LZO_LEN || total > input.len() {
        return Err(format!("total length {total} outside the extent's {} bytes", input.len()));
    }
    // `lzo1x_worst_compress(sectorsize)`: the largest a segment of one sector can be.
    let max_segment = sectorsize + sectorsize / 16 + 64 + 3;
    let mut scratch = vec![0u8; sectorsize];
    let mut at = LZO_LEN;
    while at < total && out.len() < want {
        let left_in_sector = sectorsize - at % sectorsize;
        if left_in_sector < LZO_LEN {
            at += left_in_sector;
            continue;
        }
        if total - at < LZO_LEN {
            return Err(format!("segment header at byte {at} cut by the total length {total}"));
        }
        let len = le32(input, at) as usize;
        at += LZO_LEN;
        if len == 0 || len > max_segment || len > total - at {
            return Err(format!("segment at byte {} of length {len} does not fit", at - LZO_LEN));
        }
        let seg = input.get(at..at + len).unwrap_or(&[]);
        let n =
            lzo::decompress_into(seg, &mut scratch).map_err(|e| format!("segment at byte {}: {e}", at - LZO_LEN))?;
        let keep = n.min(want - out.len());
        out.extend_from_slice(scratch.get(..keep).unwrap_or(&[]));
        at += len;
    }
    Ok(())
}
