//! On-disk structures of VHDX (MS-VHDX v1.0): file identifier, headers, region table, metadata table and
//! BAT entries, with their CRC-32C checksums. Everything is little-endian.
//!
//! Parsers take byte slices whose length the caller fixed (a 4 KiB header, a 64 KiB table) and never trust a
//! count or offset read from them without a bounds check.

use crate::file::{le_u16, le_u32, le_u64};
use std::fmt;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;

/// The file identifier (signature and creator) starts the file.
pub const FILE_SIGNATURE: &[u8; 8] = b"vhdxfile";
/// Creator: up to 256 UTF-16 code units after the signature.
pub const CREATOR_LEN: usize = 512;
/// The two headers; each is checksummed over 4 KiB.
pub const HEADER_OFFSETS: [u64; 2] = [64 * KIB, 128 * KIB];
pub const HEADER_SIZE: usize = 4096;
pub const HEADER_SIGNATURE: &[u8; 4] = b"head";
/// The two region table copies, each 64 KiB and checksummed whole.
pub const REGION_TABLE_OFFSETS: [u64; 2] = [192 * KIB, 256 * KIB];
pub const REGION_TABLE_SIZE: usize = 64 * 1024;
pub const REGION_SIGNATURE: &[u8; 4] = b"regi";
/// Per spec at most 2047 entries fit after the 16-byte table header.
pub const MAX_REGION_ENTRIES: u32 = 2047;
/// Nothing but the file identifier, headers and region tables lives below 1 MiB.
pub const HEADER_SECTION_END: u64 = MIB;

/// The metadata table occupies the first 64 KiB of the metadata region; items follow.
pub const METADATA_TABLE_SIZE: usize = 64 * 1024;
pub const METADATA_SIGNATURE: &[u8; 8] = b"metadata";
pub const MAX_METADATA_ENTRIES: u16 = 2047;
/// A metadata item is at most 1 MiB long.
pub const MAX_METADATA_ITEM: u32 = MIB as u32;

pub const BLOCK_SIZE_MIN: u64 = MIB;
pub const BLOCK_SIZE_MAX: u64 = 256 * MIB;
/// Largest virtual disk the format allows (64 TiB).
pub const MAX_VIRTUAL_SIZE: u64 = 64 << 40;
/// One sector bitmap block describes 2^23 logical sectors; it determines the BAT interleaving.
pub const SECTORS_PER_BITMAP_BLOCK: u64 = 1 << 23;

/// BAT entry: state in bits 0..3, file offset in MiB in bits 20..64, bits 3..20 reserved.
pub const BAT_STATE_MASK: u64 = 0x7;
pub const BAT_OFFSET_MASK: u64 = 0xFFFF_FFFF_FFF0_0000;
pub const BAT_RESERVED_MASK: u64 = !(BAT_STATE_MASK | BAT_OFFSET_MASK);

/// Payload block states.
pub const PAYLOAD_NOT_PRESENT: u64 = 0;
pub const PAYLOAD_UNDEFINED: u64 = 1;
pub const PAYLOAD_ZERO: u64 = 2;
pub const PAYLOAD_UNMAPPED: u64 = 3;
/// UNMAPPED as numbered by the v0.95 draft; qemu still reads it as zeros.
pub const PAYLOAD_UNMAPPED_V095: u64 = 5;
pub const PAYLOAD_FULLY_PRESENT: u64 = 6;
pub const PAYLOAD_PARTIALLY_PRESENT: u64 = 7;
/// Sector bitmap block states.
pub const SB_PRESENT: u64 = 6;

/// A GUID as stored on disk (Microsoft layout: three little-endian fields then 8 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    pub const ZERO: Guid = Guid([0; 16]);

    /// Build the on-disk form from the textual fields `d1-d2-d3-d4`.
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Guid([a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5], d4[6], d4[7]])
    }

    pub fn read(b: &[u8], at: usize) -> Guid {
        let mut g = [0u8; 16];
        g.copy_from_slice(&b[at..at + 16]);
        Guid(g)
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }

    /// A random (version 4) GUID from 16 random bytes, in the on-disk layout.
    pub fn random_v4(mut bytes: [u8; 16]) -> Guid {
        // data3 is little-endian: its high nibble (the version) is the high nibble of byte 7.
        bytes[7] = (bytes[7] & 0x0f) | 0x40;
        // The variant lives in the first byte of data4.
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Guid(bytes)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::guid::mixed_endian(&self.0))
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Region table entries imgport understands.
pub const BAT_REGION: Guid =
    Guid::from_fields(0x2dc2_7766, 0xf623, 0x4200, [0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08]);
pub const METADATA_REGION: Guid =
    Guid::from_fields(0x8b7c_a206, 0x4790, 0x4b9a, [0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e]);

/// Metadata items imgport understands.
pub const FILE_PARAMETERS: Guid =
    Guid::from_fields(0xcaa1_6737, 0xfa36, 0x4d43, [0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b]);
pub const VIRTUAL_DISK_SIZE: Guid =
    Guid::from_fields(0x2fa5_4224, 0xcd1b, 0x4876, [0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8]);
pub const PAGE83_DATA: Guid =
    Guid::from_fields(0xbeca_12ab, 0xb2e6, 0x4523, [0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46]);
pub const LOGICAL_SECTOR_SIZE: Guid =
    Guid::from_fields(0x8141_bf1d, 0xa96f, 0x4709, [0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f]);
pub const PHYSICAL_SECTOR_SIZE: Guid =
    Guid::from_fields(0xcda3_48c7, 0x445d, 0x4471, [0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56]);
pub const PARENT_LOCATOR: Guid =
    Guid::from_fields(0xa8d3_5f2d, 0xb30b, 0x454d, [0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c]);

/// CRC-32C of `buf` with the 4-byte checksum field at `at` taken as zero (how every VHDX checksum is defined).
pub fn checksum(buf: &[u8], at: usize) -> u32 {
    let crc = crc32c::crc32c(&buf[..at]);
    let crc = crc32c::crc32c_append(crc, &[0; 4]);
    crc32c::crc32c_append(crc, &buf[at + 4..])
}

/// Store the checksum of `buf` in its checksum field at `at`.
pub fn seal(buf: &mut [u8], at: usize) {
    let crc = checksum(buf, at);
    buf[at..at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// True when the checksum field at `at` matches the contents.
pub fn checksum_ok(buf: &[u8], at: usize) -> bool {
    le_u32(buf, at) == checksum(buf, at)
}

/// The creator string of the file identifier (UTF-16LE, up to the first NUL).
pub fn parse_creator(b: &[u8]) -> String {
    let units: Vec<u16> = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
    String::from_utf16_lossy(&units)
}

/// One of the two headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub sequence: u64,
    pub file_write_guid: Guid,
    pub data_write_guid: Guid,
    pub log_guid: Guid,
    pub log_version: u16,
    pub version: u16,
    pub log_length: u32,
    pub log_offset: u64,
}

/// What a header copy looks like on disk.
#[derive(Debug, Clone)]
pub enum HeaderCopy {
    Valid(Header),
    /// Signature and version right, checksum wrong: usable only when checksums are ignored.
    BadChecksum(Header),
    /// Not a header at all (wrong signature or version).
    Invalid(&'static str),
}

impl HeaderCopy {
    pub fn parse(b: &[u8]) -> HeaderCopy {
        debug_assert_eq!(b.len(), HEADER_SIZE);
        if &b[0..4] != HEADER_SIGNATURE {
            return HeaderCopy::Invalid("signature is not 'head'");
        }
        let header = Header {
            sequence: le_u64(b, 8),
            file_write_guid: Guid::read(b, 16),
            data_write_guid: Guid::read(b, 32),
            log_guid: Guid::read(b, 48),
            log_version: le_u16(b, 64),
            version: le_u16(b, 66),
            log_length: le_u32(b, 68),
            log_offset: le_u64(b, 72),
        };
        if header.version != 1 {
            return HeaderCopy::Invalid("version is not 1");
        }
        if checksum_ok(b, 4) {
            HeaderCopy::Valid(header)
        } else {
            HeaderCopy::BadChecksum(header)
        }
    }

    pub fn header(&self) -> Option<&Header> {
        match self {
            HeaderCopy::Valid(h) => Some(h),
            _ => None,
        }
    }
}

/// Serialize a header into a 4 KiB buffer with its checksum.
pub fn encode_header(h: &Header) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_SIZE];
    b[0..4].copy_from_slice(HEADER_SIGNATURE);
    b[8..16].copy_from_slice(&h.sequence.to_le_bytes());
    b[16..32].copy_from_slice(&h.file_write_guid.0);
    b[32..48].copy_from_slice(&h.data_write_guid.0);
    b[48..64].copy_from_slice(&h.log_guid.0);
    b[64..66].copy_from_slice(&h.log_version.to_le_bytes());
    b[66..68].copy_from_slice(&h.version.to_le_bytes());
    b[68..72].copy_from_slice(&h.log_length.to_le_bytes());
    b[72..80].copy_from_slice(&h.log_offset.to_le_bytes());
    seal(&mut b, 4);
    b
}

/// One region table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub guid: Guid,
    pub file_offset: u64,
    pub length: u32,
    pub required: bool,
}

impl Region {
    pub fn end(&self) -> u64 {
        self.file_offset.saturating_add(self.length as u64)
    }
}

/// A region table copy.
#[derive(Debug, Clone)]
pub enum RegionTableCopy {
    Valid(Vec<Region>),
    BadChecksum(Vec<Region>),
    Invalid(String),
}

impl RegionTableCopy {
    pub fn parse(b: &[u8]) -> RegionTableCopy {
        debug_assert_eq!(b.len(), REGION_TABLE_SIZE);
        if &b[0..4] != REGION_SIGNATURE {
            return RegionTableCopy::Invalid("signature is not 'regi'".into());
        }
        let count = le_u32(b, 8);
        if count > MAX_REGION_ENTRIES {
            return RegionTableCopy::Invalid(format!("{count} entries (at most {MAX_REGION_ENTRIES} fit)"));
        }
        let regions = (0..count as usize)
            .map(|i| {
                let at = 16 + 32 * i;
                Region {
                    guid: Guid::read(b, at),
                    file_offset: le_u64(b, at + 16),
                    length: le_u32(b, at + 24),
                    required: le_u32(b, at + 28) & 1 != 0,
                }
            })
            .collect();
        if checksum_ok(b, 4) {
            RegionTableCopy::Valid(regions)
        } else {
            RegionTableCopy::BadChecksum(regions)
        }
    }
}

/// Serialize a region table into a 64 KiB buffer with its checksum.
pub fn encode_region_table(regions: &[Region]) -> Vec<u8> {
    let mut b = vec![0u8; REGION_TABLE_SIZE];
    b[0..4].copy_from_slice(REGION_SIGNATURE);
    b[8..12].copy_from_slice(&(regions.len() as u32).to_le_bytes());
    for (i, r) in regions.iter().enumerate() {
        let at = 16 + 32 * i;
        b[at..at + 16].copy_from_slice(&r.guid.0);
        b[at + 16..at + 24].copy_from_slice(&r.file_offset.to_le_bytes());
        b[at + 24..at + 28].copy_from_slice(&r.length.to_le_bytes());
        b[at + 28..at + 32].copy_from_slice(&(r.required as u32).to_le_bytes());
    }
    seal(&mut b, 4);
    b
}

/// Metadata table entry flags.
pub const META_IS_VIRTUAL_DISK: u32 = 2;
pub const META_IS_REQUIRED: u32 = 4;

/// One metadata table entry; `offset` is relative to the metadata region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataEntry {
    pub item: Guid,
    pub offset: u32,
    pub length: u32,
    pub flags: u32,
}

/// Parse the metadata table (the first 64 KiB of the metadata region).
pub fn parse_metadata_table(b: &[u8]) -> Result<Vec<MetadataEntry>, String> {
    debug_assert_eq!(b.len(), METADATA_TABLE_SIZE);
    if &b[0..8] != METADATA_SIGNATURE {
        return Err("signature is not 'metadata'".into());
    }
    let count = le_u16(b, 10);
    if count > MAX_METADATA_ENTRIES {
        return Err(format!("{count} entries (at most {MAX_METADATA_ENTRIES} fit)"));
    }
    Ok((0..count as usize)
        .map(|i| {
            let at = 32 + 32 * i;
            MetadataEntry {
                item: Guid::read(b, at),
                offset: le_u32(b, at + 16),
                length: le_u32(b, at + 20),
                flags: le_u32(b, at + 24),
            }
        })
        .collect())
}

/// Serialize a metadata table into a 64 KiB buffer (the table has no checksum).
pub fn encode_metadata_table(entries: &[MetadataEntry]) -> Vec<u8> {
    let mut b = vec![0u8; METADATA_TABLE_SIZE];
    b[0..8].copy_from_slice(METADATA_SIGNATURE);
    b[10..12].copy_from_slice(&(entries.len() as u16).to_le_bytes());
    for (i, e) in entries.iter().enumerate() {
        let at = 32 + 32 * i;
        b[at..at + 16].copy_from_slice(&e.item.0);
        b[at + 16..at + 20].copy_from_slice(&e.offset.to_le_bytes());
        b[at + 20..at + 24].copy_from_slice(&e.length.to_le_bytes());
        b[at + 24..at + 28].copy_from_slice(&e.flags.to_le_bytes());
    }
    b
}

/// File parameters flags.
pub const PARAM_LEAVE_BLOCKS_ALLOCATED: u32 = 1;
pub const PARAM_HAS_PARENT: u32 = 2;

/// How many payload blocks follow each sector bitmap entry in the BAT.
pub fn chunk_ratio(logical_sector_size: u64, block_size: u64) -> u64 {
    SECTORS_PER_BITMAP_BLOCK * logical_sector_size / block_size
}

/// Number of BAT entries a non-differencing disk needs: every payload block, plus the sector bitmap entries
/// interleaved before the last payload block (MS-VHDX 2.5: the last entry is that of the last payload block).
pub fn bat_entries(virtual_size: u64, block_size: u64, chunk_ratio: u64) -> u64 {
    let payload = virtual_size.div_ceil(block_size);
    if payload == 0 {
        0
    } else {
        payload + (payload - 1) / chunk_ratio
    }
}

/// Index in the BAT of payload block `block`.
pub fn bat_index(block: u64, chunk_ratio: u64) -> u64 {
    block + block / chunk_ratio
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_text_and_disk_layout_agree() {
        assert_eq!(BAT_REGION.to_string(), "2dc27766-f623-4200-9d64-115e9bfd4a08");
        // As qemu writes it at the start of a region table entry.
        assert_eq!(&BAT_REGION.0[..4], &[0x66, 0x77, 0xc2, 0x2d]);
        assert_eq!(METADATA_REGION.to_string(), "8b7ca206-4790-4b9a-b8fe-575f050f886e");
        let g = Guid::random_v4([0xff; 16]);
        assert_eq!(g.to_string().as_bytes()[14], b'4');
        assert!(!g.is_zero());
    }

    #[test]
    fn header_round_trip_and_checksum() {
        let h = Header {
            sequence: 7,
            file_write_guid: Guid([1; 16]),
            data_write_guid: Guid([2; 16]),
            log_guid: Guid::ZERO,
            log_version: 0,
            version: 1,
            log_length: MIB as u32,
            log_offset: MIB,
        };
        let mut b = encode_header(&h);
        assert!(matches!(HeaderCopy::parse(&b), HeaderCopy::Valid(ref p) if *p == h));
        b[4000] ^= 1;
        assert!(matches!(HeaderCopy::parse(&b), HeaderCopy::BadChecksum(_)));
        b[0] = b'x';
        assert!(matches!(HeaderCopy::parse(&b), HeaderCopy::Invalid(_)));
    }

    #[test]
    fn region_table_rejects_absurd_counts() {
        let r = Region { guid: BAT_REGION, file_offset: 3 * MIB, length: MIB as u32, required: true };
        let mut b = encode_region_table(&[r]);
        assert!(matches!(RegionTableCopy::parse(&b), RegionTableCopy::Valid(ref v) if v == &[r]));
        b[8..12].copy_from_slice(&5000u32.to_le_bytes());
        assert!(matches!(RegionTableCopy::parse(&b), RegionTableCopy::Invalid(_)));
    }

    #[test]
    fn bat_geometry() {
        // 512-byte sectors, 1 MiB blocks: a sector bitmap entry after every 4096 payload entries.
        let cr = chunk_ratio(512, MIB);
        assert_eq!(cr, 4096);
        assert_eq!(bat_entries(10 * MIB, MIB, cr), 10);
        assert_eq!(bat_entries(4096 * MIB, MIB, cr), 4096);
        assert_eq!(bat_entries(4097 * MIB, MIB, cr), 4098);
        assert_eq!(bat_index(4096, cr), 4097);
        assert_eq!(bat_entries(0, MIB, cr), 0);
        assert_eq!(chunk_ratio(4096, 256 * MIB), 128);
        assert_eq!(chunk_ratio(512, 256 * MIB), 16);
    }

    #[test]
    fn creator_stops_at_nul() {
        let mut b = vec![0u8; CREATOR_LEN];
        for (i, c) in "QEMU v10".encode_utf16().enumerate() {
            b[2 * i..2 * i + 2].copy_from_slice(&c.to_le_bytes());
        }
        assert_eq!(parse_creator(&b), "QEMU v10");
    }
}
