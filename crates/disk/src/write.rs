//! Writing an image in any output format from any source.

use crate::error::{Error, Result};
use crate::image::DiskImage;
use crate::probe::Format;
use crate::sink::Sink;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Layout variant of an output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subformat {
    /// VHD fixed.
    Fixed,
    /// VHD dynamic, VHDX dynamic.
    Dynamic,
    /// VMDK streamOptimized.
    StreamOptimized,
}

impl FromStr for Subformat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fixed" => Ok(Subformat::Fixed),
            "dynamic" => Ok(Subformat::Dynamic),
            "streamOptimized" | "streamoptimized" | "stream-optimized" => Ok(Subformat::StreamOptimized),
            _ => Err(Error::invalid_argument(format!(
                "unknown subformat '{s}' (expected fixed, dynamic or streamOptimized)"
            ))),
        }
    }
}

/// Compression of qcow2 output clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zlib,
    Zstd,
}

impl FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "zlib" | "deflate" => Ok(Compression::Zlib),
            "zstd" => Ok(Compression::Zstd),
            _ => Err(Error::invalid_argument(format!("unknown compression '{s}' (expected zstd or zlib)"))),
        }
    }
}

/// What to write.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub format: Format,
    /// None: the format's default (VHD: dynamic; VMDK: streamOptimized).
    pub subformat: Option<Subformat>,
    pub compression: Option<Compression>,
    /// qcow2 cluster size (default 64 KiB).
    pub cluster_size: Option<u64>,
    /// VHD/VHDX block size (defaults 2 MiB / 32 MiB).
    pub block_size: Option<u64>,
    /// None: timestamps from the clock and random identifiers, as qemu-img writes them.
    pub stamp: Option<Stamp>,
}

/// Fixes what formats otherwise take from the clock or a random source (VHD timestamp and unique id, VMDK
/// content id, VHDX GUIDs), so the same source and options give the same bytes. A streamed upload needs this:
/// on resume it writes the output again and skips the parts the store already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Seconds since 1970 for the image's creation time.
    pub unix_time: u64,
    pub seed: [u8; 32],
}

impl Stamp {
    /// 16 bytes derived from the seed, different for each `purpose`.
    pub fn bytes(&self, purpose: &str) -> [u8; 16] {
        use sha2::Digest;
        let h = sha2::Sha256::new().chain_update(self.seed).chain_update(purpose.as_bytes()).finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&h[..16]);
        out
    }
}

impl WriteOptions {
    pub fn new(format: Format) -> Self {
        WriteOptions { format, subformat: None, compression: None, cluster_size: None, block_size: None, stamp: None }
    }

    /// Apply one `-o key=value` option, as qemu-img spells them where it has an equivalent.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "subformat" => self.subformat = Some(value.parse()?),
            "compression_type" | "compression" => self.compression = Some(value.parse()?),
            "cluster_size" => self.cluster_size = Some(option_size(key, value)?),
            "block_size" => self.block_size = Some(option_size(key, value)?),
            _ => return Err(Error::invalid_argument(format!("unknown option '{key}' for {} output", self.format))),
        }
        Ok(())
    }
}

/// A size option's value, in any spelling [`crate::size::parse_size`] accepts (`64k`, `64KiB`, `65536`).
fn option_size(key: &str, value: &str) -> Result<u64> {
    crate::size::parse_size(value).map_err(|e| Error::invalid_argument(format!("option {key}: {e}")))
}

/// Progress reporting and cancellation shared by long operations.
#[derive(Clone, Default)]
pub struct Control {
    cancel: Arc<AtomicBool>,
    progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

impl Control {
    pub fn new() -> Self {
        Self::default()
    }
    /// Report progress as the virtual-disk offset reached so far.
    pub fn with_progress(mut self, f: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }
    /// A flag that, once set, makes the operation stop with [`crate::ErrorKind::Interrupted`].
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::interrupted())
        } else {
            Ok(())
        }
    }
    pub fn report(&self, pos: u64) {
        if let Some(p) = &self.progress {
            p(pos);
        }
    }
}

/// Write `src` in the requested format to `sink`.
pub fn write_image(src: &dyn DiskImage, opts: &WriteOptions, sink: &mut dyn Sink, ctl: &Control) -> Result<()> {
    if opts.compression.is_some() && opts.format != Format::Qcow2 {
        return Err(Error::invalid_argument("compression is only available for qcow2 output"));
    }
    match opts.format {
        Format::Raw => crate::raw::write(src, opts, sink, ctl),
        Format::Qcow2 => crate::qcow2::write(src, opts, sink, ctl),
        Format::Vhd => crate::vhd::write(src, opts, sink, ctl),
        Format::Vhdx => crate::vhdx::write(src, opts, sink, ctl),
        Format::Vmdk => crate::vmdk::write(src, opts, sink, ctl),
    }
}

/// An upper bound of the output's length for a virtual disk of `virtual_size` bytes, in every format: the
/// data (rounded up to whole MiB, as VHD pads it), incompressible data stored by compressed formats with their
/// per-cluster framing, and the metadata (tables, bitmaps, VHDX's fixed regions), all well under 1/64 of the
/// data plus 64 MiB. A streamed upload sizes its parts from it before the real length is known.
pub fn output_len_bound(virtual_size: u64) -> u64 {
    let size = virtual_size.div_ceil(1 << 20).saturating_mul(1 << 20);
    size.saturating_add(size / 64).saturating_add(64 << 20)
}

/// A tighter bound than [`output_len_bound`] for the formats that store only the data (qcow2, VHD and VHDX
/// dynamic, VMDK streamOptimized): the source's data extents rounded out to the output's allocation unit
/// (cluster, block or grain), plus 1/32 of that for per-cluster framing, plus 1/2048 of the virtual size for the
/// tables (qcow2 L2 and refcounts, VMDK grain tables, BATs) and 64 MiB; never more than [`output_len_bound`].
/// A 1 TiB disk holding 2 GiB then streams in parts sized for about 2.6 GiB, not for 1 TiB, so the upload's
/// memory follows the data. The extent map is walked in windows, so its cost stays bounded on any image.
pub fn output_len_bound_for(src: &dyn DiskImage, opts: &WriteOptions) -> Result<u64> {
    const WINDOW: u64 = 1 << 30;
    let virtual_size = src.virtual_size();
    let whole = output_len_bound(virtual_size);
    let unit = match (opts.format, opts.subformat) {
        (Format::Raw, _) | (_, Some(Subformat::Fixed)) => return Ok(whole),
        (Format::Qcow2, _) => opts.cluster_size.unwrap_or(64 << 10),
        (Format::Vhd, _) => opts.block_size.unwrap_or(2 << 20),
        (Format::Vhdx, _) => opts.block_size.unwrap_or(32 << 20),
        (Format::Vmdk, _) => 64 << 10,
    }
    .max(512);
    let (mut data, mut counted_to) = (0u64, 0u64);
    let mut offset = 0;
    while offset < virtual_size {
        let len = WINDOW.min(virtual_size - offset);
        for e in src.map(offset, len)? {
            if e.kind().reads_as_zero() || e.length == 0 {
                continue;
            }
            let start = (e.offset / unit).saturating_mul(unit).max(counted_to);
            let end = e.end().div_ceil(unit).saturating_mul(unit);
            if end > start {
                data = data.saturating_add(end - start);
                counted_to = end;
            }
        }
        offset += len;
    }
    let bound = data.saturating_add(data / 32).saturating_add(virtual_size / 2048).saturating_add(64 << 20);
    Ok(bound.min(whole))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemImage;
    use crate::sink::VecSink;

    fn write(src: &MemImage, format: Format, stamp: Option<Stamp>) -> Vec<u8> {
        let mut opts = WriteOptions::new(format);
        opts.stamp = stamp;
        let mut sink = VecSink::default();
        write_image(src, &opts, &mut sink, &Control::new()).expect("write");
        sink.data
    }

    /// The bound follows the data for sparse outputs, the virtual size for raw and fixed ones, and holds for
    /// what the writers really produce.
    #[test]
    fn len_bound_follows_the_data() {
        let mut src = MemImage(vec![0u8; 64 << 20]);
        src.0[1 << 20..4 << 20].fill(7);
        src.0[40 << 20..(40 << 20) + 512].fill(1);
        for format in [Format::Qcow2, Format::Vhd, Format::Vhdx, Format::Vmdk, Format::Raw] {
            let bound = output_len_bound_for(&src, &WriteOptions::new(format)).expect("bound");
            let written = write(&src, format, None).len() as u64;
            assert!(written <= bound, "{format}: {written} > {bound}");
            assert!(bound <= output_len_bound(src.virtual_size()), "{format}");
        }
        let mut fixed = WriteOptions::new(Format::Vhd);
        fixed.subformat = Some(Subformat::Fixed);
        assert_eq!(output_len_bound_for(&src, &fixed).expect("bound"), output_len_bound(64 << 20));

        // A 1 TiB disk holding 4 KiB: the bound is about its tables, not its size.
        struct Sparse;
        impl DiskImage for Sparse {
            fn virtual_size(&self) -> u64 {
                1 << 40
            }
            fn read_at(&self, buf: &mut [u8], _: u64) -> Result<()> {
                buf.fill(9);
                Ok(())
            }
            fn map(&self, offset: u64, length: u64) -> Result<Vec<crate::image::Extent>> {
                use crate::image::Extent;
                let data = (512u64 << 30, 4096u64);
                let end = offset + length;
                if data.0 >= end || data.0 + data.1 <= offset {
                    return Ok(vec![Extent::unallocated(offset, length)]);
                }
                Ok(vec![
                    Extent::unallocated(offset, data.0 - offset),
                    Extent::data(data.0, data.1, None),
                    Extent::unallocated(data.0 + data.1, end - data.0 - data.1),
                ])
            }
            fn details(&self) -> crate::image::ImageDetails {
                crate::image::ImageDetails::new(Format::Raw)
            }
            fn check(&self) -> Result<crate::image::CheckReport> {
                Ok(Default::default())
            }
        }
        let bound = output_len_bound_for(&Sparse, &WriteOptions::new(Format::Qcow2)).expect("bound");
        assert!(bound <= (64 << 20) + (1 << 40) / 2048 + (1 << 20), "{bound}");
    }

    /// With a stamp, every format writes the same bytes twice; VHD without one does not (time and random id).
    #[test]
    fn stamped_output_is_deterministic_and_bounded() {
        let mut data = vec![0u8; 5 << 20];
        for (i, b) in data.iter_mut().enumerate().skip(1 << 20).take(1 << 20) {
            *b = (i * 7 % 251) as u8;
        }
        let src = MemImage(data);
        let stamp = Stamp { unix_time: 1_700_000_000, seed: [3; 32] };
        for format in [Format::Raw, Format::Qcow2, Format::Vhd, Format::Vhdx, Format::Vmdk] {
            let a = write(&src, format, Some(stamp));
            assert_eq!(a, write(&src, format, Some(stamp)), "{format}");
            assert!((a.len() as u64) <= output_len_bound(src.0.len() as u64), "{format}");
        }
        let other = Stamp { seed: [4; 32], ..stamp };
        assert_ne!(write(&src, Format::Vhd, Some(stamp)), write(&src, Format::Vhd, Some(other)));
        assert_ne!(write(&src, Format::Vhd, None), write(&src, Format::Vhd, None));
    }
}
