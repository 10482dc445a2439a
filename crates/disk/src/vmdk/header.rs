//! The binary structures of sparse extents: the `KDMV` header (VMware "Virtual Disk Format 5.0", hosted
//! sparse extent header), the older `COWD` header of ESX vmfsSparse extents, and the 512-byte markers of
//! streamOptimized extents.
//!
//! Everything here is plain parsing and serialising of fixed-size records; the sanity limits on the values
//! (what the reader is willing to allocate for) live with the reader.

use crate::file::{le_u32, le_u64};

pub const SECTOR: u64 = 512;

pub const KDMV_MAGIC: &[u8; 4] = b"KDMV";
pub const COWD_MAGIC: &[u8; 4] = b"COWD";

/// gdOffset of a streamOptimized header whose grain directory is only known at the end (read the footer).
pub const GD_AT_END: u64 = u64::MAX;

/// Header flags.
pub const FLAG_NL_DETECT: u32 = 1 << 0;
pub const FLAG_RGD: u32 = 1 << 1;
pub const FLAG_ZERO_GRAIN: u32 = 1 << 2;
pub const FLAG_COMPRESSED: u32 = 1 << 16;
pub const FLAG_MARKERS: u32 = 1 << 17;
pub const KNOWN_FLAGS: u32 = FLAG_NL_DETECT | FLAG_RGD | FLAG_ZERO_GRAIN | FLAG_COMPRESSED | FLAG_MARKERS;

pub const COMPRESS_NONE: u16 = 0;
pub const COMPRESS_DEFLATE: u16 = 1;

/// The newline-detection bytes: a file that went through a text-mode transfer has them rewritten.
pub const NL_CHECK: [u8; 4] = *b"\n \r\n";

/// Marker types of streamOptimized metadata markers.
pub const MARKER_EOS: u32 = 0;
pub const MARKER_GT: u32 = 1;
pub const MARKER_GD: u32 = 2;
pub const MARKER_FOOTER: u32 = 3;

/// A grain marker is the grain's first sector number (8 bytes) and the compressed length (4 bytes).
pub const GRAIN_MARKER_LEN: usize = 12;

/// A grain table entry meaning "this grain reads as zeros" (the zeroed-grain GTE of version 2 extents).
pub const GTE_ZERO: u32 = 1;

/// The `KDMV` sparse extent header (also the streamOptimized footer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseHeader {
    pub version: u32,
    pub flags: u32,
    /// Size of the extent in sectors.
    pub capacity: u64,
    /// Sectors per grain.
    pub grain_sectors: u64,
    /// Embedded descriptor, in sectors (0 when there is none).
    pub desc_offset: u64,
    pub desc_size: u64,
    pub gtes_per_gt: u32,
    /// Redundant (backup) grain directory, in sectors.
    pub rgd_offset: u64,
    /// Grain directory, in sectors ([`GD_AT_END`] in a streamOptimized header: see the footer).
    pub gd_offset: u64,
    /// Sectors of metadata before the first grain ("overHead").
    pub overhead: u64,
    pub unclean_shutdown: bool,
    pub nl_check: [u8; 4],
    pub compress_algorithm: u16,
}

impl SparseHeader {
    /// Parse the 512-byte header; the caller checked the magic.
    pub fn parse(b: &[u8; 512]) -> SparseHeader {
        SparseHeader {
            version: le_u32(b, 4),
            flags: le_u32(b, 8),
            capacity: le_u64(b, 12),
            grain_sectors: le_u64(b, 20),
            desc_offset: le_u64(b, 28),
            desc_size: le_u64(b, 36),
            gtes_per_gt: le_u32(b, 44),
            rgd_offset: le_u64(b, 48),
            gd_offset: le_u64(b, 56),
            overhead: le_u64(b, 64),
            unclean_shutdown: b[72] != 0,
            nl_check: [b[73], b[74], b[75], b[76]],
            compress_algorithm: u16::from_le_bytes([b[77], b[78]]),
        }
    }

    pub fn to_bytes(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[0..4].copy_from_slice(KDMV_MAGIC);
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..20].copy_from_slice(&self.capacity.to_le_bytes());
        b[20..28].copy_from_slice(&self.grain_sectors.to_le_bytes());
        b[28..36].copy_from_slice(&self.desc_offset.to_le_bytes());
        b[36..44].copy_from_slice(&self.desc_size.to_le_bytes());
        b[44..48].copy_from_slice(&self.gtes_per_gt.to_le_bytes());
        b[48..56].copy_from_slice(&self.rgd_offset.to_le_bytes());
        b[56..64].copy_from_slice(&self.gd_offset.to_le_bytes());
        b[64..72].copy_from_slice(&self.overhead.to_le_bytes());
        b[72] = self.unclean_shutdown as u8;
        b[73..77].copy_from_slice(&self.nl_check);
        b[77..79].copy_from_slice(&self.compress_algorithm.to_le_bytes());
        b
    }

    pub fn has_markers(&self) -> bool {
        self.flags & FLAG_MARKERS != 0
    }
}

/// The `COWD` header of ESX vmfsSparse extents (VMDK version 3 format): 4096-entry grain tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CowdHeader {
    pub version: u32,
    pub flags: u32,
    pub capacity: u32,
    pub grain_sectors: u32,
    pub gd_offset: u32,
    pub gd_entries: u32,
    pub next_free_sector: u32,
}

pub const COWD_GTES_PER_GT: u32 = 4096;

impl CowdHeader {
    pub fn parse(b: &[u8; 512]) -> CowdHeader {
        CowdHeader {
            version: le_u32(b, 4),
            flags: le_u32(b, 8),
            capacity: le_u32(b, 12),
            grain_sectors: le_u32(b, 16),
            gd_offset: le_u32(b, 20),
            gd_entries: le_u32(b, 24),
            next_free_sector: le_u32(b, 28),
        }
    }
}

/// A 512-byte metadata marker of a streamOptimized extent (a grain marker has a non-zero size instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Grain markers: the grain's first sector. Metadata markers: sectors of metadata that follow.
    pub value: u64,
    /// Grain markers: compressed length in bytes. Metadata markers: 0.
    pub size: u32,
    /// Metadata markers only (`MARKER_*`).
    pub kind: u32,
}

impl Marker {
    pub fn parse(b: &[u8]) -> Marker {
        let kind = if b.len() >= 16 { le_u32(b, 12) } else { 0 };
        Marker { value: le_u64(b, 0), size: le_u32(b, 8), kind }
    }

    /// A metadata marker sector: `sectors` of metadata of type `kind` follow it.
    pub fn metadata(sectors: u64, kind: u32) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[0..8].copy_from_slice(&sectors.to_le_bytes());
        b[12..16].copy_from_slice(&kind.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = SparseHeader {
            version: 3,
            flags: FLAG_NL_DETECT | FLAG_COMPRESSED | FLAG_MARKERS,
            capacity: 12345,
            grain_sectors: 128,
            desc_offset: 1,
            desc_size: 20,
            gtes_per_gt: 512,
            rgd_offset: 0,
            gd_offset: GD_AT_END,
            overhead: 128,
            unclean_shutdown: false,
            nl_check: NL_CHECK,
            compress_algorithm: COMPRESS_DEFLATE,
        };
        let b = h.to_bytes();
        assert_eq!(&b[0..4], b"KDMV");
        assert_eq!(SparseHeader::parse(&b), h);
        // Layout fixed by the specification.
        assert_eq!(&b[73..77], b"\n \r\n");
        assert_eq!(b[77], 1);
        assert_eq!(&b[56..64], &[0xff; 8]);
    }

    #[test]
    fn markers() {
        let m = Marker::metadata(4, MARKER_GT);
        assert_eq!(Marker::parse(&m), Marker { value: 4, size: 0, kind: MARKER_GT });
        let grain = [0x80, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x20, 0, 0];
        assert_eq!(Marker::parse(&grain), Marker { value: 0x80, size: 0x2010, kind: 0 });
    }
}
