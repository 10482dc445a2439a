//! Compressed clusters: zlib (raw deflate) and zstd, one cluster at a time.
//!
//! Decompression must produce exactly one cluster, as qemu requires; bytes after the end of the stream
//! (the rest of the last sector) are ignored. Compression uses a 4 KiB deflate window (qemu inflates with
//! window bits 12, so a larger window would produce clusters qemu cannot read). Contexts are kept per
//! thread because creating one costs more than compressing a small cluster.

use super::header::CompressionType;
use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};
use std::cell::RefCell;
use zstd::stream::raw::{InBuffer, Operation, OutBuffer};

/// zlib level used for output (qemu uses the zlib default, 6).
const ZLIB_LEVEL: u32 = 6;
/// zstd level used for output (qemu uses the zstd default, 3).
const ZSTD_LEVEL: i32 = 3;
/// zstd level of the pass that spots incompressible clusters before zlib runs.
const PROBE_LEVEL: i32 = 1;

thread_local! {
    static INFLATE: RefCell<Option<Decompress>> = const { RefCell::new(None) };
    static DEFLATE: RefCell<Option<Compress>> = const { RefCell::new(None) };
    static ZSTD_D: RefCell<Option<zstd::stream::raw::Decoder<'static>>> = const { RefCell::new(None) };
    static ZSTD_C: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static ZSTD_PROBE: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// Decompress `input` into exactly `out.len()` bytes. Returns a description of the problem on failure.
pub(crate) fn decompress(kind: CompressionType, input: &[u8], out: &mut [u8]) -> Result<(), String> {
    match kind {
        CompressionType::Zlib => inflate(input, out),
        CompressionType::Zstd => zstd_decompress(input, out),
    }
}

fn inflate(input: &[u8], out: &mut [u8]) -> Result<(), String> {
    INFLATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        // Window bits 15 accepts every stream qemu's window-12 inflate accepts.
        let d = slot.get_or_insert_with(|| Decompress::new(false));
        d.reset(false);
        let status = d.decompress(input, out, FlushDecompress::Finish).map_err(|e| format!("deflate error: {e}"))?;
        let produced = d.total_out() as usize;
        match status {
            _ if produced == out.len() => Ok(()),
            Status::StreamEnd => Err(format!("deflate stream ended after {produced} of {} bytes", out.len())),
            _ => Err(format!("deflate stream is truncated ({produced} of {} bytes)", out.len())),
        }
    })
}

fn zstd_decompress(input: &[u8], out: &mut [u8]) -> Result<(), String> {
    ZSTD_D.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(zstd::stream::raw::Decoder::new().map_err(|e| format!("zstd: {e}"))?),
        };
        d.reinit().map_err(|e| format!("zstd: {e}"))?;
        let mut inb = InBuffer::around(input);
        let mut outb = OutBuffer::around(out);
        let mut remaining = 1;
        while outb.pos() < outb.capacity() {
            let (last_in, last_out) = (inb.pos(), outb.pos());
            remaining = d.run(&mut inb, &mut outb).map_err(|e| format!("zstd error: {e}"))?;
            if inb.pos() == last_in && outb.pos() == last_out {
                return Err(format!("zstd stream is truncated ({} of {} bytes)", outb.pos(), outb.capacity()));
            }
        }
        // Like qemu: the frame must be complete once the cluster is full.
        if remaining != 0 {
            let mut probe = [0u8; 1];
            let mut extra = OutBuffer::around(&mut probe[..]);
            let r = d.run(&mut inb, &mut extra).map_err(|e| format!("zstd error: {e}"))?;
            if extra.pos() != 0 {
                return Err("zstd frame holds more than one cluster".into());
            }
            if r != 0 {
                return Err("zstd frame is incomplete".into());
            }
        }
        Ok(())
    })
}

/// Compress one cluster; `None` when the result would not be smaller than the cluster minus one byte
/// (qemu's rule: such clusters are stored uncompressed).
pub(crate) fn compress(kind: CompressionType, input: &[u8]) -> Option<Vec<u8>> {
    let limit = input.len().checked_sub(1)?;
    match kind {
        // Deflating incompressible data costs about 20 ms per MiB, and such clusters end up stored raw
        // anyway: a zstd level-1 pass (some 50 times faster, and at least as strong on this kind of data)
        // decides first. A cluster zstd cannot shrink at all is stored uncompressed without trying zlib.
        CompressionType::Zlib if zstd_with(&ZSTD_PROBE, PROBE_LEVEL, input, limit).is_none() => None,
        CompressionType::Zlib => deflate(input, limit),
        CompressionType::Zstd => zstd_with(&ZSTD_C, ZSTD_LEVEL, input, limit),
    }
}

fn deflate(input: &[u8], limit: usize) -> Option<Vec<u8>> {
    DEFLATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let c =
            slot.get_or_insert_with(|| Compress::new_with_window_bits(flate2::Compression::new(ZLIB_LEVEL), false, 12));
        c.reset();
        // Room for the worst case (stored blocks), so the stream always ends: a deflate state reset after
        // running out of output space was seen to panic on its next use (zlib-rs 0.6.8).
        let mut out = Vec::with_capacity(input.len() + input.len() / 8 + 64);
        match c.compress_vec(input, &mut out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) => (out.len() <= limit).then_some(out),
            _ => {
                *slot = None;
                None
            }
        }
    })
}

type ZstdSlot = std::thread::LocalKey<RefCell<Option<zstd::bulk::Compressor<'static>>>>;

fn zstd_with(slot: &'static ZstdSlot, level: i32, input: &[u8], limit: usize) -> Option<Vec<u8>> {
    slot.with(|cell| {
        let mut slot = cell.borrow_mut();
        let c = match slot.as_mut() {
            Some(c) => c,
            None => slot.insert(zstd::bulk::Compressor::new(level).ok()?),
        };
        let mut out = Vec::with_capacity(limit);
        match c.compress_to_buffer(input, &mut out) {
            Ok(n) if n <= limit => Some(out),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 7) % 251) as u8 ^ ((i / 300) as u8)).collect()
    }

    #[test]
    fn round_trip_both_kinds_with_trailing_garbage() {
        for kind in [CompressionType::Zlib, CompressionType::Zstd] {
            for len in [512usize, 65536, 2 << 20] {
                let data = sample(len);
                let mut c = compress(kind, &data).expect("compressible");
                // The rest of the last sector (or the next compressed cluster) follows the stream.
                c.extend_from_slice(&[0xAB; 700]);
                let mut out = vec![0u8; len];
                decompress(kind, &c, &mut out).unwrap();
                assert_eq!(out, data, "{kind:?} {len}");
            }
        }
    }

    #[test]
    fn incompressible_cluster_is_refused() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let data: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(compress(CompressionType::Zlib, &data).is_none());
        assert!(compress(CompressionType::Zstd, &data).is_none());
    }

    #[test]
    fn reused_contexts_survive_incompressible_clusters() {
        // Hundreds of incompressible clusters, then partly compressible and compressible ones, on one thread.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for cs in [512usize, 4096] {
            for round in 0..400 {
                let data: Vec<u8> = (0..cs)
                    .map(|i| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        match if round < 300 { 0 } else { round % 3 } {
                            0 => x as u8,
                            1 if i % 3 == 0 => 7,
                            1 => x as u8,
                            _ => (i % 11) as u8,
                        }
                    })
                    .collect();
                for kind in [CompressionType::Zlib, CompressionType::Zstd] {
                    if let Some(c) = compress(kind, &data) {
                        let mut out = vec![0u8; cs];
                        decompress(kind, &c, &mut out).unwrap();
                        assert!(out == data);
                    }
                }
            }
        }
    }

    #[test]
    fn truncated_or_garbage_streams_are_errors() {
        for kind in [CompressionType::Zlib, CompressionType::Zstd] {
            let data = sample(65536);
            let c = compress(kind, &data).unwrap();
            let mut out = vec![0u8; 65536];
            assert!(decompress(kind, &c[..c.len() / 2], &mut out).is_err(), "{kind:?}");
            assert!(decompress(kind, &[0xff; 100], &mut out).is_err(), "{kind:?}");
            assert!(decompress(kind, &[], &mut out).is_err(), "{kind:?}");
            // A stream of a smaller cluster does not fill a bigger one.
            let small = compress(kind, &data[..4096]).unwrap();
            assert!(decompress(kind, &small, &mut out).is_err(), "{kind:?}");
        }
    }
}
