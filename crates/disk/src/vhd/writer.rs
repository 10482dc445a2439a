//! Writing fixed and dynamic VHDs (dynamic by default).
//!
//! The virtual size is padded up to a whole MiB (what Azure requires) and stored exactly in `current_size`
//! and `original_size`; the geometry is the spec's when it describes that size exactly, else 65535x16x255,
//! which makes qemu and Hyper-V-style readers use `current_size`. The creator is `impt` on `Wi2k` (the host
//! OS qemu also writes; readers only look at it for information).
//!
//! - Fixed: the data (zero runs left as holes), then the footer: N MiB + 512 bytes.
//! - Dynamic: footer copy, dynamic header, BAT sized exactly to the disk (written last, from the sink's
//!   header region), then each block holding non-zero data with an all-ones sector bitmap, then the footer.
//!   Wholly zero blocks stay unallocated.

use super::footer::{
    bitmap_size, geometry_for_exact_size, DynHeader, Footer, BAT_UNALLOCATED, DISK_TYPE_DYNAMIC, DISK_TYPE_FIXED,
    DYN_HEADER_SIZE, FOOTER_COOKIE, FOOTER_SIZE, VHD_EPOCH_UNIX,
};
use super::reader::MAX_BAT_ENTRIES;
use crate::error::{Error, Result};
use crate::image::DiskImage;
use crate::scan::{scan_data, Granules};
use crate::sink::Sink;
use crate::write::{Control, Stamp, Subformat, WriteOptions};

const MIB: u64 = 1 << 20;
pub(crate) const DEFAULT_BLOCK_SIZE: u64 = 2 * MIB;
const BAT_OFFSET: u64 = FOOTER_SIZE + DYN_HEADER_SIZE;

pub(crate) fn write(src: &dyn DiskImage, opts: &WriteOptions, sink: &mut dyn Sink, ctl: &Control) -> Result<()> {
    if opts.cluster_size.is_some() {
        return Err(Error::invalid_argument(
            "cluster_size does not apply to VHD output (block_size sets a dynamic VHD's block size)",
        ));
    }
    let fixed = match opts.subformat {
        None | Some(Subformat::Dynamic) => false,
        Some(Subformat::Fixed) => true,
        Some(other) => {
            return Err(Error::invalid_argument(format!(
                "subformat {other:?} does not apply to VHD output (expected fixed or dynamic)"
            )))
        }
    };
    if fixed && opts.block_size.is_some() {
        return Err(Error::invalid_argument("block_size only applies to dynamic VHD output"));
    }
    let size = src
        .virtual_size()
        .checked_next_multiple_of(MIB)
        .ok_or_else(|| Error::invalid_argument("virtual size too large for VHD"))?;
    if fixed {
        let footer = new_footer(size, DISK_TYPE_FIXED, u64::MAX, opts.stamp);
        sink.begin(0)?;
        scan_data(src, Granules::new(4096), ctl, &mut |offset, data| sink.write_at(offset, data))?;
        sink.write_at(size, &footer)?;
        sink.finish(size + FOOTER_SIZE)
    } else {
        let block_size = opts.block_size.unwrap_or(DEFAULT_BLOCK_SIZE);
        write_dynamic(src, size, block_size, opts.stamp, sink, ctl)
    }
}

fn write_dynamic(
    src: &dyn DiskImage,
    size: u64,
    block_size: u64,
    stamp: Option<Stamp>,
    sink: &mut dyn Sink,
    ctl: &Control,
) -> Result<()> {
    if !block_size.is_power_of_two() || !(4096..=256 * MIB).contains(&block_size) {
        return Err(Error::invalid_argument(format!(
            "VHD block_size {block_size} must be a power of two from 4 KiB to 256 MiB (Windows uses 512 KiB or 2 MiB)"
        )));
    }
    let entries = size.div_ceil(block_size);
    if entries > MAX_BAT_ENTRIES {
        return Err(Error::invalid_argument(format!(
            "a {size}-byte disk needs {entries} BAT entries of {block_size} bytes, more than {MAX_BAT_ENTRIES}: \
             use a larger block_size"
        )));
    }
    let bat_len = (entries * 4).next_multiple_of(512);
    let header_len = BAT_OFFSET + bat_len;
    let bitmap = vec![0xFFu8; bitmap_size(block_size) as usize];
    let block_span = bitmap.len() as u64 + block_size;

    sink.begin(header_len)?;
    let mut bat = vec![BAT_UNALLOCATED; entries as usize];
    let mut next_block = header_len;
    scan_data(src, Granules::new(block_size.min(4096)), ctl, &mut |offset, data| {
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let index = (pos / block_size) as usize;
            let in_block = pos % block_size;
            let n = ((block_size - in_block) as usize).min(data.len() - done);
            if bat[index] == BAT_UNALLOCATED {
                let sector = u32::try_from(next_block / 512)
                    .ok()
                    .filter(|&s| s != BAT_UNALLOCATED)
                    .ok_or_else(|| Error::invalid_argument("a dynamic VHD cannot address blocks past 2 TiB"))?;
                bat[index] = sector;
                sink.write_at(next_block, &bitmap)?;
                next_block += block_span;
            }
            let host = bat[index] as u64 * 512 + bitmap.len() as u64 + in_block;
            sink.write_at(host, &data[done..done + n])?;
            done += n;
        }
        Ok(())
    })?;

    let footer = new_footer(size, DISK_TYPE_DYNAMIC, FOOTER_SIZE, stamp);
    sink.write_at(next_block, &footer)?;
    // The header region: footer copy, dynamic header, BAT (padding entries unallocated, as qemu writes them).
    sink.write_at(0, &footer)?;
    sink.write_at(FOOTER_SIZE, &DynHeader::new_bytes(BAT_OFFSET, entries as u32, block_size as u32))?;
    let mut table = vec![0xFFu8; bat_len as usize];
    for (slot, entry) in table.chunks_exact_mut(4).zip(&bat) {
        slot.copy_from_slice(&entry.to_be_bytes());
    }
    if !table.is_empty() {
        sink.write_at(BAT_OFFSET, &table)?;
    }
    sink.finish(next_block + FOOTER_SIZE)
}

/// A footer for a new disk of exactly `size` bytes (a MiB multiple); time and unique id from `stamp` if given.
fn new_footer(size: u64, disk_type: u32, data_offset: u64, stamp: Option<Stamp>) -> [u8; 512] {
    let (cylinders, heads, sectors_per_track) = geometry_for_exact_size(size);
    let now = match stamp {
        Some(s) => s.unix_time,
        None => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    };
    let version = |s: &str| s.parse::<u32>().unwrap_or(0) & 0xffff;
    Footer {
        cookie: *FOOTER_COOKIE,
        // Bit 1 is "reserved, must be set" in the spec.
        features: 2,
        format_version: 0x0001_0000,
        data_offset,
        timestamp: now.saturating_sub(VHD_EPOCH_UNIX) as u32,
        creator_app: *b"impt",
        creator_version: version(env!("CARGO_PKG_VERSION_MAJOR")) << 16 | version(env!("CARGO_PKG_VERSION_MINOR")),
        creator_host_os: *b"Wi2k",
        original_size: size,
        current_size: size,
        cylinders,
        heads,
        sectors_per_track,
        disk_type,
        checksum: 0,
        unique_id: new_unique_id(size, stamp),
        saved_state: 0,
    }
    .to_bytes()
}

/// A random (version 4) UUID from /dev/urandom (or the stamp); should that fail, one derived from the time and
/// process.
fn new_unique_id(size: u64, stamp: Option<Stamp>) -> [u8; 16] {
    use std::io::Read;
    let mut id = [0u8; 16];
    let random = match stamp {
        Some(s) => {
            id = s.bytes("vhd unique id");
            Ok(())
        }
        None => std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut id)),
    };
    if random.is_err() {
        use sha2::Digest;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let h = sha2::Sha256::new()
            .chain_update(nanos.to_le_bytes())
            .chain_update(std::process::id().to_le_bytes())
            .chain_update(size.to_le_bytes())
            .finalize();
        id.copy_from_slice(&h[..16]);
    }
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Format;
    use crate::sink::VecSink;

    use crate::mem::MemImage as Mem;

    fn write_mem(src: &Mem, opts: &str) -> Result<Vec<u8>> {
        let mut o = WriteOptions::new(Format::Vhd);
        for kv in opts.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap();
            o.set(k, v)?;
        }
        let mut sink = VecSink::default();
        write(src, &o, &mut sink, &Control::new())?;
        Ok(sink.data)
    }

    fn source(size: usize) -> Mem {
        let mut v = vec![0u8; size];
        // Data in block 0, a zero block 1, data at the very end.
        v[100..5000].fill(0xAB);
        let n = v.len();
        v[n - 10..].fill(0xCD);
        Mem(v)
    }

    #[test]
    fn fixed_is_padded_data_plus_footer() {
        let src = source(5 * MIB as usize + 1000);
        let out = write_mem(&src, "subformat=fixed").unwrap();
        assert_eq!(out.len() as u64, 6 * MIB + 512);
        assert_eq!(&out[..src.0.len()], &src.0[..]);
        let f = Footer::parse(out[out.len() - 512..].try_into().unwrap());
        assert!(f.has_cookie());
        assert_eq!((f.current_size, f.original_size, f.disk_type), (6 * MIB, 6 * MIB, DISK_TYPE_FIXED));
        assert_eq!(f.virtual_size().0, 6 * MIB);
        assert_eq!(f.data_offset, u64::MAX);
        assert_eq!(&f.creator_app, b"impt");
        assert_eq!(f.unique_id[6] >> 4, 4);
    }

    #[test]
    fn dynamic_leaves_zero_blocks_unallocated() {
        let src = source(7 * MIB as usize + 1000);
        let out = write_mem(&src, "").unwrap();
        let head = Footer::parse(out[..512].try_into().unwrap());
        let tail = Footer::parse(out[out.len() - 512..].try_into().unwrap());
        assert_eq!(head, tail);
        assert_eq!((head.disk_type, head.data_offset), (DISK_TYPE_DYNAMIC, 512));
        // 7 MiB is not CHS-exact: maximum geometry, size from current_size (padded to 8 MiB).
        assert_eq!((head.cylinders, head.heads, head.sectors_per_track), (65535, 16, 255));
        assert_eq!(head.virtual_size().0, 8 * MIB);
        let h = DynHeader::parse(out[512..1536].try_into().unwrap());
        assert_eq!((h.max_table_entries, h.block_size, h.table_offset), (4, 2 << 20, 1536));
        let bat: Vec<u32> = out[1536..1552].chunks(4).map(|c| u32::from_be_bytes(c.try_into().unwrap())).collect();
        assert_eq!(bat[1], BAT_UNALLOCATED);
        assert_eq!(bat[2], BAT_UNALLOCATED);
        assert_eq!(bat[0] as u64 * 512, 2048);
        assert!(out[2048..2560].iter().all(|&b| b == 0xFF));
        assert_eq!(&out[2560 + 100..2560 + 5000], &src.0[100..5000]);
        // The last block holds the tail of the source; the file ends right after its full block and the footer.
        assert_eq!(bat[3] as u64 * 512, 2048 + 512 + 2 * MIB);
        assert_eq!(out.len() as u64, 2048 + 2 * (512 + 2 * MIB) + 512);
        // Padding of the BAT sector is unallocated entries.
        assert!(out[1552..2048].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn block_size_option_and_refusals() {
        let src = source(3 * MIB as usize);
        let out = write_mem(&src, "block_size=512k").unwrap();
        let h = DynHeader::parse(out[512..1536].try_into().unwrap());
        assert_eq!((h.block_size, h.max_table_entries), (512 << 10, 6));
        for bad in ["block_size=3000", "block_size=1k", "subformat=fixed,block_size=2M", "cluster_size=64k"] {
            let e = write_mem(&src, bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{bad}");
        }
        assert!(write_mem(&src, "subformat=streamOptimized").is_err());
    }

    #[test]
    fn empty_source() {
        let out = write_mem(&Mem(Vec::new()), "").unwrap();
        assert_eq!(out.len(), 1536 + 512);
        let out = write_mem(&Mem(Vec::new()), "subformat=fixed").unwrap();
        assert_eq!(out.len(), 512);
    }
}
