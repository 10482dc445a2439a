//! The VHD on-disk structures: the 512-byte hard disk footer and the 1024-byte dynamic disk header.
//!
//! Both are big-endian and protected by a one's-complement byte-sum checksum. Parsing never fails: the
//! caller decides what a bad cookie or checksum means (refuse, or warn with `--ignore-checksums`).
//! Also here: the spec's CHS geometry algorithm and qemu's rule for which size field a reader trusts.

use crate::file::{be_u16, be_u32, be_u64};

pub(crate) const FOOTER_SIZE: u64 = 512;
pub(crate) const DYN_HEADER_SIZE: u64 = 1024;
pub(crate) const FOOTER_COOKIE: &[u8; 8] = b"conectix";
pub(crate) const DYN_HEADER_COOKIE: &[u8; 8] = b"cxsparse";

pub(crate) const DISK_TYPE_FIXED: u32 = 2;
pub(crate) const DISK_TYPE_DYNAMIC: u32 = 3;
pub(crate) const DISK_TYPE_DIFFERENCING: u32 = 4;

/// BAT entry of a block that is not stored.
pub(crate) const BAT_UNALLOCATED: u32 = 0xFFFF_FFFF;

/// The largest geometry a footer can hold; qemu (and imgport) then read the size from `current_size`.
pub(crate) const CHS_MAX: (u16, u8, u8) = (65535, 16, 255);
const CHS_MAX_SECTORS: u64 = 65535 * 16 * 255;

/// qemu's vpc limit: it refuses images of more than 0xff000000 sectors (2040 GiB).
pub(crate) const QEMU_MAX_SIZE: u64 = 0xff00_0000 * 512;

/// Seconds between the Unix epoch and the VHD epoch (2000-01-01 00:00:00 UTC).
pub(crate) const VHD_EPOCH_UNIX: u64 = 946_684_800;

/// One's complement of the byte sum of `buf`, with the 4-byte checksum field at `checksum_at` counted as zero.
pub(crate) fn checksum(buf: &[u8], checksum_at: usize) -> u32 {
    let sum = buf.iter().enumerate().fold(0u32, |acc, (i, &b)| {
        if (checksum_at..checksum_at + 4).contains(&i) {
            acc
        } else {
            acc.wrapping_add(b as u32)
        }
    });
    !sum
}

/// Which footer field gives the virtual size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SizeSource {
    Chs,
    CurrentSize,
}

impl SizeSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SizeSource::Chs => "chs",
            SizeSource::CurrentSize => "current_size",
        }
    }
}

/// The hard disk footer (found at the end of every VHD, and copied at offset 0 of dynamic ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Footer {
    pub cookie: [u8; 8],
    pub features: u32,
    pub format_version: u32,
    pub data_offset: u64,
    pub timestamp: u32,
    pub creator_app: [u8; 4],
    pub creator_version: u32,
    pub creator_host_os: [u8; 4],
    pub original_size: u64,
    pub current_size: u64,
    pub cylinders: u16,
    pub heads: u8,
    pub sectors_per_track: u8,
    pub disk_type: u32,
    pub checksum: u32,
    pub unique_id: [u8; 16],
    pub saved_state: u8,
}

const FOOTER_CHECKSUM_AT: usize = 64;

impl Footer {
    pub(crate) fn parse(b: &[u8; 512]) -> Footer {
        let mut cookie = [0u8; 8];
        cookie.copy_from_slice(&b[0..8]);
        let mut unique_id = [0u8; 16];
        unique_id.copy_from_slice(&b[68..84]);
        Footer {
            cookie,
            features: be_u32(b, 8),
            format_version: be_u32(b, 12),
            data_offset: be_u64(b, 16),
            timestamp: be_u32(b, 24),
            creator_app: [b[28], b[29], b[30], b[31]],
            creator_version: be_u32(b, 32),
            creator_host_os: [b[36], b[37], b[38], b[39]],
            original_size: be_u64(b, 40),
            current_size: be_u64(b, 48),
            cylinders: be_u16(b, 56),
            heads: b[58],
            sectors_per_track: b[59],
            disk_type: be_u32(b, 60),
            checksum: be_u32(b, 64),
            unique_id,
            saved_state: b[84],
        }
    }

    /// The checksum the footer bytes `b` should carry.
    pub(crate) fn computed_checksum(b: &[u8; 512]) -> u32 {
        checksum(b, FOOTER_CHECKSUM_AT)
    }

    pub(crate) fn has_cookie(&self) -> bool {
        &self.cookie == FOOTER_COOKIE
    }

    /// Serialize with a freshly computed checksum (reserved bytes are zero).
    pub(crate) fn to_bytes(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[0..8].copy_from_slice(&self.cookie);
        b[8..12].copy_from_slice(&self.features.to_be_bytes());
        b[12..16].copy_from_slice(&self.format_version.to_be_bytes());
        b[16..24].copy_from_slice(&self.data_offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.timestamp.to_be_bytes());
        b[28..32].copy_from_slice(&self.creator_app);
        b[32..36].copy_from_slice(&self.creator_version.to_be_bytes());
        b[36..40].copy_from_slice(&self.creator_host_os);
        b[40..48].copy_from_slice(&self.original_size.to_be_bytes());
        b[48..56].copy_from_slice(&self.current_size.to_be_bytes());
        b[56..58].copy_from_slice(&self.cylinders.to_be_bytes());
        b[58] = self.heads;
        b[59] = self.sectors_per_track;
        b[60..64].copy_from_slice(&self.disk_type.to_be_bytes());
        b[68..84].copy_from_slice(&self.unique_id);
        b[84] = self.saved_state;
        let sum = checksum(&b, FOOTER_CHECKSUM_AT);
        b[64..68].copy_from_slice(&sum.to_be_bytes());
        b
    }

    pub(crate) fn chs_sectors(&self) -> u64 {
        self.cylinders as u64 * self.heads as u64 * self.sectors_per_track as u64
    }

    /// The virtual size as qemu computes it (block/vpc.c `vpc_open`): Virtual PC and old qemu images size
    /// the disk by its CHS geometry; Hyper-V, Disk2vhd, XenServer, XenConverter and qemu's `force_size`
    /// images by `current_size`; the maximum geometry always means `current_size`. Any other creator
    /// (imgport's own `impt` included) gets the CHS rule. Either way the size is whole 512-byte sectors.
    pub(crate) fn virtual_size(&self) -> (u64, SizeSource) {
        let trusts_current_size = matches!(&self.creator_app, b"win " | b"qem2" | b"d2v " | b"CTXS" | b"tap\0");
        if trusts_current_size || self.chs_sectors() == CHS_MAX_SECTORS {
            (self.current_size / 512 * 512, SizeSource::CurrentSize)
        } else {
            (self.chs_sectors() * 512, SizeSource::Chs)
        }
    }

    /// Fields whose disagreement between the two footer copies changes how the disk is read.
    pub(crate) fn layout_differences(&self, other: &Footer) -> Vec<&'static str> {
        let mut d = Vec::new();
        if self.data_offset != other.data_offset {
            d.push("data offset");
        }
        if self.creator_app != other.creator_app {
            d.push("creator application");
        }
        if self.current_size != other.current_size {
            d.push("current size");
        }
        if (self.cylinders, self.heads, self.sectors_per_track)
            != (other.cylinders, other.heads, other.sectors_per_track)
        {
            d.push("disk geometry");
        }
        if self.disk_type != other.disk_type {
            d.push("disk type");
        }
        d
    }
}

/// The dynamic disk header (dynamic and differencing disks), at the footer's `data_offset`.
#[derive(Debug, Clone)]
pub(crate) struct DynHeader {
    pub cookie: [u8; 8],
    pub table_offset: u64,
    pub header_version: u32,
    pub max_table_entries: u32,
    pub block_size: u32,
    pub checksum: u32,
    /// Parent's file name (UTF-16 big-endian in the file), for differencing disks.
    pub parent_name: String,
}

const DYN_HEADER_CHECKSUM_AT: usize = 36;

impl DynHeader {
    pub(crate) fn parse(b: &[u8; 1024]) -> DynHeader {
        let mut cookie = [0u8; 8];
        cookie.copy_from_slice(&b[0..8]);
        let units: Vec<u16> =
            b[64..576].chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
        DynHeader {
            cookie,
            table_offset: be_u64(b, 16),
            header_version: be_u32(b, 24),
            max_table_entries: be_u32(b, 28),
            block_size: be_u32(b, 32),
            checksum: be_u32(b, 36),
            parent_name: String::from_utf16_lossy(&units),
        }
    }

    pub(crate) fn computed_checksum(b: &[u8; 1024]) -> u32 {
        checksum(b, DYN_HEADER_CHECKSUM_AT)
    }

    pub(crate) fn has_cookie(&self) -> bool {
        &self.cookie == DYN_HEADER_COOKIE
    }

    /// A header for a new dynamic disk (no parent), with its checksum.
    pub(crate) fn new_bytes(table_offset: u64, max_table_entries: u32, block_size: u32) -> [u8; 1024] {
        let mut b = [0u8; 1024];
        b[0..8].copy_from_slice(DYN_HEADER_COOKIE);
        // The spec says 0xFFFFFFFF, but Microsoft's tools (and qemu) write all 64 bits set.
        b[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        b[16..24].copy_from_slice(&table_offset.to_be_bytes());
        b[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        b[28..32].copy_from_slice(&max_table_entries.to_be_bytes());
        b[32..36].copy_from_slice(&block_size.to_be_bytes());
        let sum = checksum(&b, DYN_HEADER_CHECKSUM_AT);
        b[36..40].copy_from_slice(&sum.to_be_bytes());
        b
    }
}

/// Size of the sector bitmap in front of each block: one bit per sector, padded to whole sectors.
pub(crate) fn bitmap_size(block_size: u64) -> u64 {
    (block_size / 512).div_ceil(8).div_ceil(512) * 512
}

/// The spec's CHS geometry for a disk of `total_sectors` (it rounds down; capped at 65535x16x255).
pub(crate) fn geometry(total_sectors: u64) -> (u16, u8, u8) {
    let total = total_sectors.min(CHS_MAX_SECTORS);
    let (spt, heads, cyl_times_heads) = if total >= 65535 * 16 * 63 {
        (255u64, 16u64, total / 255)
    } else {
        let mut spt = 17;
        let mut cth = total / spt;
        let mut heads = cth.div_ceil(1024).max(4);
        if cth >= heads * 1024 || heads > 16 {
            spt = 31;
            heads = 16;
            cth = total / spt;
        }
        if cth >= heads * 1024 {
            spt = 63;
            heads = 16;
            cth = total / spt;
        }
        (spt, heads, cth)
    };
    // All three fit their fields: cth / heads <= 65535 by construction of the thresholds above.
    ((cyl_times_heads / heads).min(65535) as u16, heads as u8, spt as u8)
}

/// The geometry to store for a disk of exactly `size` bytes: the spec's geometry when it describes the
/// size exactly, else the maximum geometry so that every reader falls back to `current_size`.
pub(crate) fn geometry_for_exact_size(size: u64) -> (u16, u8, u8) {
    let chs = geometry(size / 512);
    if size.is_multiple_of(512) && chs.0 as u64 * chs.1 as u64 * chs.2 as u64 * 512 == size {
        chs
    } else {
        CHS_MAX
    }
}

/// Render 4 bytes of a footer text field (creator application, host OS), dropping trailing NULs.
pub(crate) fn text4(b: &[u8; 4]) -> String {
    let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    b[..end].iter().map(|&c| if c.is_ascii_graphic() || c == b' ' { c as char } else { '?' }).collect()
}

/// A VHD timestamp (seconds since 2000-01-01 UTC) as an RFC 3339 UTC date.
pub(crate) fn timestamp_utc(ts: u32) -> String {
    let secs = VHD_EPOCH_UNIX + ts as u64;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_the_spec_examples() {
        // 10 MiB: the spec's function rounds down (qemu then searches upwards for an exact geometry).
        assert_eq!(geometry(20480), (301, 4, 17));
        assert_eq!(geometry(65535 * 16 * 255 + 1000), CHS_MAX);
        assert_eq!(geometry(65535 * 16 * 63), (16191, 16, 255));
        // 127 GiB-ish boundary stays below 255 sectors per track.
        let (c, h, s) = geometry(65535 * 16 * 63 - 1);
        assert_eq!((h, s), (16, 63));
        assert!((c as u64) * 16 * 63 < 65535 * 16 * 63);
    }

    #[test]
    fn exact_geometry_or_maximum() {
        // qemu rounds 10 MiB up to 10514432 bytes = 302 x 4 x 17 sectors.
        let (c, h, s) = geometry(10514432 / 512);
        assert_eq!(c as u64 * h as u64 * s as u64 * 512, 10514432);
        assert_eq!(geometry_for_exact_size(10514432), (c, h, s));
        assert_eq!(geometry_for_exact_size(10 << 20), CHS_MAX);
        assert_eq!(geometry_for_exact_size(3000 << 30), CHS_MAX);
    }

    #[test]
    fn size_rule_follows_the_creator() {
        let mut f = Footer::parse(&[0u8; 512]);
        f.cylinders = 100;
        f.heads = 4;
        f.sectors_per_track = 17;
        f.current_size = 12345 * 512 + 7;
        for app in [b"vpc ", b"qemu", b"impt", b"\0\0\0\0"] {
            f.creator_app = *app;
            assert_eq!(f.virtual_size(), (100 * 4 * 17 * 512, SizeSource::Chs), "{app:?}");
        }
        for app in [b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\0"] {
            f.creator_app = *app;
            assert_eq!(f.virtual_size(), (12345 * 512, SizeSource::CurrentSize), "{app:?}");
        }
        f.creator_app = *b"tap ";
        assert_eq!(f.virtual_size().1, SizeSource::Chs);
        f.creator_app = *b"vpc ";
        (f.cylinders, f.heads, f.sectors_per_track) = CHS_MAX;
        assert_eq!(f.virtual_size(), (12345 * 512, SizeSource::CurrentSize));
    }

    #[test]
    fn footer_round_trips_with_a_valid_checksum() {
        let mut f = Footer::parse(&[0u8; 512]);
        f.cookie = *FOOTER_COOKIE;
        f.current_size = 1 << 30;
        f.creator_app = *b"impt";
        f.unique_id = [7; 16];
        let b = f.to_bytes();
        let g = Footer::parse(&b);
        assert_eq!(g.checksum, Footer::computed_checksum(&b));
        f.checksum = g.checksum;
        assert_eq!(f, g);
    }

    #[test]
    fn dyn_header_parses_parent_name_and_checksum() {
        let mut b = DynHeader::new_bytes(1536, 5, 2 << 20);
        let h = DynHeader::parse(&b);
        assert!(h.has_cookie());
        assert_eq!((h.table_offset, h.max_table_entries, h.block_size), (1536, 5, 2 << 20));
        assert_eq!(h.checksum, DynHeader::computed_checksum(&b));
        for (i, u) in "base.vhd".encode_utf16().enumerate() {
            b[64 + 2 * i..66 + 2 * i].copy_from_slice(&u.to_be_bytes());
        }
        assert_eq!(DynHeader::parse(&b).parent_name, "base.vhd");
        assert_ne!(DynHeader::computed_checksum(&b), h.checksum);
    }

    #[test]
    fn bitmap_sizes() {
        assert_eq!(bitmap_size(2 << 20), 512);
        assert_eq!(bitmap_size(512), 512);
        assert_eq!(bitmap_size(32 << 20), 8192);
    }

    #[test]
    fn text_guid_and_time() {
        assert_eq!(text4(b"tap\0"), "tap");
        assert_eq!(text4(b"vpc "), "vpc ");
        assert_eq!(crate::guid::big_endian(&[0xab; 16]), "abababab-abab-abab-abab-abababababab");
        assert_eq!(timestamp_utc(0), "2000-01-01T00:00:00Z");
        assert_eq!(timestamp_utc(86_400 * 60 + 3661), "2000-03-01T01:01:01Z");
    }
}
