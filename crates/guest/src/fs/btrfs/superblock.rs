//! The primary superblock at 64 KiB: geometry, the roots of the root and chunk trees, and the bootstrap chunk
//! array. Only the primary copy is read; a damaged primary is an error rather than a silent fall-back to an older
//! backup whose trees may since have been overwritten.

use super::corrupt;
use crate::bytes::{le16, le32, le64, slice, u8_at};
use crate::fs::{FsError, FsResult};
use crate::reader::Region;

pub(super) const SUPER_OFFSET: u64 = 0x10000;
const SUPER_SIZE: usize = 0x1000;
const MAGIC: &[u8; 8] = b"_BHRfS_M";
/// `sys_chunk_array` holds at most this many bytes.
const SYS_CHUNK_ARRAY_MAX: usize = 2048;
const SYS_CHUNK_ARRAY_OFFSET: usize = 0x32b;
/// Deepest b-tree btrfs builds: levels 0 (leaves) to 7.
pub(super) const MAX_LEVEL: u8 = 7;

pub(super) const CSUM_CRC32C: u16 = 0;
const CSUM_NAMES: [&str; 4] = ["crc32c", "xxhash64", "sha256", "blake2b"];

/// Incompatible features that change how blocks are found or trees are laid out, which this reader does not
/// implement: a global-roots extent tree (v2), a RAID stripe tree (logical addresses are remapped per stripe),
/// zoned allocation (the superblock lives in a log of zones) and the remap tree (logical addresses remapped after
/// relocation).
const INCOMPAT_UNSUPPORTED: &[(u64, &str)] =
    &[(1 << 12, "zoned"), (1 << 13, "extent_tree_v2"), (1 << 14, "raid_stripe_tree"), (1 << 17, "remap_tree")];
/// Every incompatible feature bit btrfs-progs 6.14 knows; an unknown one may change the format in a way we
/// cannot guess.
const INCOMPAT_KNOWN: u64 = 0x3_7fff;
const INCOMPAT_METADATA_UUID: u64 = 1 << 10;

#[derive(Debug, Clone)]
pub(super) struct Superblock {
    /// The UUID every tree block header carries (`metadata_uuid` when that feature is on, else `fsid`).
    pub metadata_fsid: [u8; 16],
    pub generation: u64,
    pub root: u64,
    pub root_level: u8,
    pub chunk_root: u64,
    pub chunk_root_level: u8,
    pub chunk_root_generation: u64,
    pub sectorsize: u32,
    pub nodesize: u32,
    pub csum_type: u16,
    /// This device's id: every chunk stripe read must be on it.
    pub devid: u64,
    pub sys_chunk_array: Vec<u8>,
}

/// Read and check the primary superblock of the filesystem in `region`.
pub(super) fn read(region: &mut Region) -> FsResult<Superblock> {
    if region.len() < SUPER_OFFSET + SUPER_SIZE as u64 {
        return Err(corrupt(format!("the volume ({} bytes) is too small to hold a superblock", region.len())));
    }
    let sb = region
        .read_vec(SUPER_OFFSET, SUPER_SIZE)
        .map_err(|e| corrupt(format!("superblock at offset {SUPER_OFFSET:#x}: {e}")))?;
    parse(&sb)
}

pub(super) fn parse(sb: &[u8]) -> FsResult<Superblock> {
    let at = |m: String| corrupt(format!("superblock at offset {SUPER_OFFSET:#x}: {m}"));
    if slice(sb, 0x40, 8) != MAGIC {
        return Err(at("no btrfs magic".into()));
    }
    let csum_type = le16(sb, 0xc4);
    let Some(csum_name) = CSUM_NAMES.get(usize::from(csum_type)) else {
        return Err(FsError::Unsupported(format!("btrfs: checksum type {csum_type}")));
    };
    // Only CRC32C (the default, and what nearly every filesystem uses) is verified; for xxhash64, sha256 and
    // blake2b the checksums are not checked and the structural checks below stand alone.
    if csum_type == CSUM_CRC32C {
        let want = le32(sb, 0);
        let got = crc32c::crc32c(slice(sb, 0x20, SUPER_SIZE - 0x20));
        if want != got {
            return Err(at(format!("{csum_name} checksum {want:#010x} does not match the contents ({got:#010x})")));
        }
    }
    let bytenr = le64(sb, 0x30);
    if bytenr != SUPER_OFFSET {
        return Err(at(format!("records its own location as {bytenr:#x}")));
    }
    let sectorsize = le32(sb, 0x90);
    let nodesize = le32(sb, 0x94);
    for (name, v) in [("sectorsize", sectorsize), ("nodesize", nodesize)] {
        if !v.is_power_of_two() || !(4096..=65536).contains(&v) {
            return Err(at(format!("{name} {v} is not a power of two from 4 KiB to 64 KiB")));
        }
    }
    if nodesize < sectorsize {
        return Err(at(format!("nodesize {nodesize} is smaller than sectorsize {sectorsize}")));
    }
    let num_devices = le64(sb, 0x88);
    if num_devices == 0 {
        return Err(at("counts no devices".into()));
    }
    if num_devices > 1 {
        return Err(FsError::Unsupported(format!(
            "btrfs: the filesystem spans {num_devices} devices; imgport reads a filesystem on one disk"
        )));
    }
    let incompat = le64(sb, 0xbc);
    for &(bit, name) in INCOMPAT_UNSUPPORTED {
        if incompat & bit != 0 {
            return Err(FsError::Unsupported(format!("btrfs: the {name} feature")));
        }
    }
    if incompat & !INCOMPAT_KNOWN != 0 {
        return Err(FsError::Unsupported(format!(
            "btrfs: unknown incompatible features {:#x}",
            incompat & !INCOMPAT_KNOWN
        )));
    }
    let root_level = u8_at(sb, 0xc6);
    let chunk_root_level = u8_at(sb, 0xc7);
    if root_level > MAX_LEVEL || chunk_root_level > MAX_LEVEL {
        return Err(at(format!("tree levels {root_level} (root) and {chunk_root_level} (chunk) exceed {MAX_LEVEL}")));
    }
    let sys_len = le32(sb, 0xa0) as usize;
    if sys_len > SYS_CHUNK_ARRAY_MAX {
        return Err(at(format!("sys_chunk_array_size {sys_len} exceeds {SYS_CHUNK_ARRAY_MAX}")));
    }
    let metadata_fsid = if incompat & INCOMPAT_METADATA_UUID != 0 { uuid(sb, 0x23b) } else { uuid(sb, 0x20) };
    Ok(Superblock {
        metadata_fsid,
        generation: le64(sb, 0x48),
        root: le64(sb, 0x50),
        root_level,
        chunk_root: le64(sb, 0x58),
        chunk_root_level,
        chunk_root_generation: le64(sb, 0xa4),
        sectorsize,
        nodesize,
        csum_type,
        devid: le64(sb, 0xc9),
        sys_chunk_array: slice(sb, SYS_CHUNK_ARRAY_OFFSET, sys_len).to_vec(),
    })
}

/// 16 bytes at `off` (zeros where the buffer ends first).
pub(super) fn uuid(b: &[u8], off: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    let s = slice(b, off, 16);
    if s.len() == 16 {
        a.copy_from_slice(s);
    }
    a
}
