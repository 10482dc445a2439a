//! Filesystem and volume identification by signature, with the label, UUID, size and usage counters that the
//! superblocks carry. Reads at most a few small blocks per volume.

use crate::bytes::{be16, be32, be64, label, le16, le32, le64, slice, u8_at, uuid_be};
use crate::reader::Region;
use imgport_disk::{Error, Result};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FsKind {
    Ext2,
    Ext3,
    Ext4,
    Xfs,
    Vfat,
    Ntfs,
    Swap,
    Lvm2Member,
    CryptoLuks,
    Btrfs,
    Iso9660,
}

impl FsKind {
    /// The name blkid prints as TYPE.
    pub fn blkid_name(self) -> &'static str {
        match self {
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Xfs => "xfs",
            FsKind::Vfat => "vfat",
            FsKind::Ntfs => "ntfs",
            FsKind::Swap => "swap",
            FsKind::Lvm2Member => "LVM2_member",
            FsKind::CryptoLuks => "crypto_LUKS",
            FsKind::Btrfs => "btrfs",
            FsKind::Iso9660 => "iso9660",
        }
    }
    pub fn is_ext(self) -> bool {
        matches!(self, FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FsInfo {
    pub kind: FsKind,
    /// Format version where the format has one: XFS "4"/"5", FAT "FAT12"/"FAT16"/"FAT32", LUKS "1"/"2", swap "1".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// As blkid prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Size of the filesystem in bytes, from its own superblock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_inodes: Option<u64>,
    /// ext2/3/4 feature names (as mke2fs spells them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// ext2/3/4: the journal holds transactions not yet applied (needs_recovery).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub needs_recovery: bool,
    /// ext2/3/4: not cleanly unmounted, or errors recorded.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub not_clean: bool,
}

impl FsInfo {
    fn new(kind: FsKind) -> Self {
        FsInfo {
            kind,
            version: None,
            label: None,
            uuid: None,
            size: None,
            block_size: None,
            free_bytes: None,
            inodes: None,
            free_inodes: None,
            features: Vec::new(),
            needs_recovery: false,
            not_clean: false,
        }
    }
}

/// Identify what `region` holds; `Ok(None)` when no known signature matches.
pub fn probe(region: &mut Region) -> Result<Option<FsInfo>> {
    let len = region.len();
    if len < 1024 {
        return Ok(None);
    }
    let head = region.read_vec(0, 4096.min(len) as usize)?;
    if let Some(info) = ext(&head) {
        let at = region.start() + 1024;
        return info.map(Some).map_err(|m| Error::corrupt(format!("ext2/3/4 superblock: {m}")).at(at));
    }
    if slice(&head, 0, 4) == b"XFSB" {
        return Ok(Some(xfs(&head)));
    }
    if slice(&head, 0, 6) == b"LUKS\xba\xbe" {
        return Ok(Some(luks(&head)));
    }
    if let Some(info) = lvm2(&head) {
        return Ok(Some(info));
    }
    if slice(&head, 3, 8) == b"NTFS    " {
        return ntfs(region, &head);
    }
    if let Some(info) = fat(region, &head)? {
        return Ok(Some(info));
    }
    if let Some(info) = swap(region, &head)? {
        return Ok(Some(info));
    }
    if len >= 0x10000 + 0x1000 {
        let sb = region.read_vec(0x10000, 0x1000)?;
        if slice(&sb, 0x40, 8) == b"_BHRfS_M" {
            return Ok(Some(btrfs(&sb)));
        }
    }
    if len >= 0x8000 + 2048 {
        let pvd = region.read_vec(0x8000, 2048)?;
        if slice(&pvd, 1, 5) == b"CD001" {
            let mut info = FsInfo::new(FsKind::Iso9660);
            info.label = label(slice(&pvd, 40, 32));
            // blkid's UUID for ISO9660 is the volume creation time, "YYYY-MM-DD-HH-MM-SS-cc".
            let t = slice(&pvd, 813, 16);
            if t.iter().all(u8::is_ascii_digit) && t.iter().any(|&c| c != b'0') {
                let d = String::from_utf8_lossy(t);
                info.uuid = Some(format!(
                    "{}-{}-{}-{}-{}-{}-{}",
                    &d[0..4],
                    &d[4..6],
                    &d[6..8],
                    &d[8..10],
                    &d[10..12],
                    &d[12..14],
                    &d[14..16]
                ));
            }
            let bs = le16(&pvd, 128);
            info.block_size = Some(u32::from(bs));
            info.size = Some(u64::from(le32(&pvd, 80)) * u64::from(bs));
            return Ok(Some(info));
        }
    }
    Ok(None)
}

const EXT_FEATURES: &[(u32, u32, &str)] = &[
    // (set: 0 compat, 1 incompat, 2 ro_compat; bit; name)
    (0, 0x4, "has_journal"),
    (0, 0x8, "ext_attr"),
    (0, 0x10, "resize_inode"),
    (0, 0x20, "dir_index"),
    (0, 0x200, "sparse_super2"),
    (0, 0x1000, "orphan_file"),
    (1, 0x2, "filetype"),
    (1, 0x4, "needs_recovery"),
    (1, 0x8, "journal_dev"),
    (1, 0x10, "meta_bg"),
    (1, 0x40, "extent"),
    (1, 0x80, "64bit"),
    (1, 0x100, "mmp"),
    (1, 0x200, "flex_bg"),
    (1, 0x400, "ea_inode"),
    (1, 0x1000, "dirdata"),
    (1, 0x2000, "metadata_csum_seed"),
    (1, 0x4000, "large_dir"),
    (1, 0x8000, "inline_data"),
    (1, 0x10000, "encrypt"),
    (1, 0x20000, "casefold"),
    (2, 0x1, "sparse_super"),
    (2, 0x2, "large_file"),
    (2, 0x8, "huge_file"),
    (2, 0x10, "uninit_bg"),
    (2, 0x20, "dir_nlink"),
    (2, 0x40, "extra_isize"),
    (2, 0x100, "quota"),
    (2, 0x200, "bigalloc"),
    (2, 0x400, "metadata_csum"),
    (2, 0x1000, "read-only"),
    (2, 0x2000, "project"),
    (2, 0x8000, "verity"),
    (2, 0x10000, "orphan_present"),
];

/// `None` without the ext magic; `Some(Err)` when the magic is there but the superblock cannot be right.
/// Offsets in ext superblock errors count from the superblock.
const EXT_SUPERBLOCK: &str = "ext2/3/4 superblock";

fn ext(head: &[u8]) -> Option<crate::error::Result<FsInfo>> {
    let sb = slice(head, 1024, 1024);
    if le16(sb, 56) != 0xEF53 {
        return None;
    }
    let (compat, incompat, ro) = (le32(sb, 92), le32(sb, 96), le32(sb, 100));
    let log = le32(sb, 24);
    if log > 6 {
        return Some(Err(crate::error::Error::unsupported(
            EXT_SUPERBLOCK,
            format!("block size 2^(10+{log}) is above 64 KiB"),
        )
        .at(24)));
    }
    if le32(sb, 4) == 0 || le32(sb, 0) == 0 || le32(sb, 32) == 0 {
        return Some(Err(crate::error::Error::corrupt(EXT_SUPERBLOCK, "zero block, inode or blocks-per-group count")));
    }
    let bs = 1024u64 << log;
    let is64 = incompat & 0x80 != 0;
    let hi = |off: usize| if is64 { u64::from(le32(sb, off)) << 32 } else { 0 };
    let blocks = u64::from(le32(sb, 4)) | hi(0x150);
    let free = u64::from(le32(sb, 12)) | hi(0x158);
    // Same rule as blkid: ext3 features only -> ext3 (with a journal) or ext2; anything newer (or an external
    // journal device) -> ext4.
    let kind = if incompat & !(0x2 | 0x4 | 0x10) != 0 || ro & !(0x1 | 0x2 | 0x4) != 0 {
        FsKind::Ext4
    } else if compat & 0x4 != 0 {
        FsKind::Ext3
    } else {
        FsKind::Ext2
    };
    let mut info = FsInfo::new(kind);
    info.label = label(slice(sb, 120, 16));
    info.uuid = uuid_be(slice(sb, 104, 16));
    info.block_size = Some(bs as u32);
    info.size = blocks.checked_mul(bs);
    info.free_bytes = free.checked_mul(bs);
    info.inodes = Some(u64::from(le32(sb, 0)));
    info.free_inodes = Some(u64::from(le32(sb, 16)));
    for &(set, bit, name) in EXT_FEATURES {
        let word = [compat, incompat, ro][set as usize];
        if word & bit != 0 {
            info.features.push(name.to_string());
        }
    }
    info.needs_recovery = incompat & 0x4 != 0;
    let state = le16(sb, 58);
    info.not_clean = state & 1 == 0 || state & 2 != 0;
    Some(Ok(info))
}

fn xfs(sb: &[u8]) -> FsInfo {
    let mut info = FsInfo::new(FsKind::Xfs);
    let bs = be32(sb, 4);
    info.block_size = Some(bs);
    info.size = be64(sb, 8).checked_mul(u64::from(bs));
    info.uuid = uuid_be(slice(sb, 32, 16));
    info.version = Some((be16(sb, 100) & 0xf).to_string());
    info.label = label(slice(sb, 108, 12));
    info.inodes = Some(be64(sb, 128));
    info.free_inodes = Some(be64(sb, 136));
    info.free_bytes = be64(sb, 144).checked_mul(u64::from(bs));
    info
}

fn luks(h: &[u8]) -> FsInfo {
    let mut info = FsInfo::new(FsKind::CryptoLuks);
    let version = be16(h, 6);
    info.version = Some(version.to_string());
    info.uuid = label(slice(h, 168, 40));
    if version == 2 {
        info.label = label(slice(h, 24, 48));
    }
    info
}

fn lvm2(head: &[u8]) -> Option<FsInfo> {
    // The label sits in one of the first four sectors.
    for sector in 0..4usize {
        let l = slice(head, sector * 512, 512);
        if slice(l, 0, 8) == b"LABELONE" && slice(l, 24, 8) == b"LVM2 001" {
            let pvh = slice(l, le32(l, 20) as usize, 40);
            let raw = String::from_utf8_lossy(slice(pvh, 0, 32)).to_string();
            let mut info = FsInfo::new(FsKind::Lvm2Member);
            info.version = Some("LVM2 001".into());
            if raw.len() == 32 && raw.is_ascii() {
                // blkid groups the 32 characters 6-4-4-4-4-4-6.
                let cuts = [6, 4, 4, 4, 4, 4, 6];
                let mut parts = Vec::new();
                let mut at = 0;
                for c in cuts {
                    parts.push(&raw[at..at + c]);
                    at += c;
                }
                info.uuid = Some(parts.join("-"));
            }
            let dev_size = le64(pvh, 32);
            info.size = (dev_size != 0).then_some(dev_size);
            return Some(info);
        }
    }
    None
}

fn ntfs(region: &mut Region, bs: &[u8]) -> Result<Option<FsInfo>> {
    let sector = u64::from(le16(bs, 11));
    let spc_raw = u8_at(bs, 13);
    let spc = if spc_raw > 0x80 { 1u64 << (256 - u32::from(spc_raw)).min(20) } else { u64::from(spc_raw) };
    if !(256..=4096).contains(&sector) || !sector.is_power_of_two() || spc == 0 {
        return Ok(None);
    }
    let cluster = sector * spc;
    let mut info = FsInfo::new(FsKind::Ntfs);
    info.block_size = u32::try_from(cluster).ok();
    info.size = le64(bs, 40).checked_mul(sector);
    info.uuid = Some(format!("{:016X}", le64(bs, 72)));
    let rec = u8_at(bs, 64) as i8;
    let rec_size = if rec < 0 { 1u64 << (-i32::from(rec)).clamp(9, 16) } else { u64::from(rec as u8) * cluster };
    let mft = le64(bs, 48).checked_mul(cluster).and_then(|m| m.checked_add(3 * rec_size));
    // The label is the $VOLUME_NAME attribute of MFT record 3 ($Volume); a damaged record just leaves it unset.
    if let Some(at) = mft.filter(|&m| (1024..=65536).contains(&rec_size) && m.saturating_add(rec_size) <= region.len())
    {
        let mut r = region.read_vec(at, rec_size as usize)?;
        if slice(&r, 0, 4) == b"FILE" && apply_fixups(&mut r, sector as usize) {
            info.label = ntfs_volume_name(&r);
        }
    }
    Ok(Some(info))
}

/// NTFS update sequence: the last two bytes of every sector were moved to the update array.
fn apply_fixups(r: &mut [u8], sector: usize) -> bool {
    let (usa_off, usa_count) = (le16(r, 4) as usize, le16(r, 6) as usize);
    if usa_count < 2 || usa_off + 2 * usa_count > r.len() {
        return false;
    }
    let usn = [u8_at(r, usa_off), u8_at(r, usa_off + 1)];
    for i in 1..usa_count {
        let end = i * sector;
        if end > r.len() || end < 2 || r[end - 2..end] != usn {
            return false;
        }
        let fix = [u8_at(r, usa_off + 2 * i), u8_at(r, usa_off + 2 * i + 1)];
        r[end - 2..end].copy_from_slice(&fix);
    }
    true
}

fn ntfs_volume_name(r: &[u8]) -> Option<String> {
    let mut off = le16(r, 20) as usize;
    for _ in 0..64 {
        let (atype, alen) = (le32(r, off), le32(r, off + 4) as usize);
        if atype == 0xFFFF_FFFF || alen < 16 || off + alen > r.len() {
            return None;
        }
        if atype == 0x60 && u8_at(r, off + 8) == 0 {
            let (vlen, voff) = (le32(r, off + 16) as usize, le16(r, off + 20) as usize);
            let units: Vec<u16> =
                slice(r, off + voff, vlen).chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
            let s = String::from_utf16_lossy(&units);
            return (!s.is_empty()).then_some(s);
        }
        off += alen;
    }
    None
}

fn fat(region: &mut Region, bs: &[u8]) -> Result<Option<FsInfo>> {
    let bps = u32::from(le16(bs, 11));
    let spc = u32::from(u8_at(bs, 13));
    let reserved = u32::from(le16(bs, 14));
    let fats = u32::from(u8_at(bs, 16));
    let root_entries = u32::from(le16(bs, 17));
    let jump = matches!(u8_at(bs, 0), 0xEB | 0xE9);
    let sig = u8_at(bs, 510) == 0x55 && u8_at(bs, 511) == 0xAA;
    if !jump
        || !sig
        || !(512..=4096).contains(&bps)
        || !bps.is_power_of_two()
        || spc == 0
        || !spc.is_power_of_two()
        || reserved == 0
        || !(1..=4).contains(&fats)
    {
        return Ok(None);
    }
    let total = if le16(bs, 19) != 0 { u32::from(le16(bs, 19)) } else { le32(bs, 32) };
    let fat_size = if le16(bs, 22) != 0 { u32::from(le16(bs, 22)) } else { le32(bs, 36) };
    let root_sectors = (root_entries * 32).div_ceil(bps);
    let meta = u64::from(reserved) + u64::from(fats) * u64::from(fat_size) + u64::from(root_sectors);
    if fat_size == 0 || u64::from(total) <= meta {
        return Ok(None);
    }
    let clusters = (u64::from(total) - meta) / u64::from(spc);
    let mut info = FsInfo::new(FsKind::Vfat);
    let is32 = le16(bs, 22) == 0;
    let (kind, ext_at) = match clusters {
        _ if is32 => ("FAT32", 64),
        0..4085 => ("FAT12", 36),
        _ => ("FAT16", 36),
    };
    info.version = Some(kind.into());
    info.block_size = Some(bps * spc);
    info.size = Some(u64::from(total) * u64::from(bps));
    if u8_at(bs, ext_at + 2) == 0x29 {
        let id = le32(bs, ext_at + 3);
        info.uuid = Some(format!("{:04X}-{:04X}", id >> 16, id & 0xffff));
        info.label = label(slice(bs, ext_at + 7, 11)).filter(|l| l != "NO NAME");
    }
    if is32 {
        // FSInfo: free cluster count, when the sector is valid and the count plausible.
        let at = u64::from(le16(bs, 48)) * u64::from(bps);
        if at > 0 && at + 512 <= region.len() {
            let fsi = region.read_vec(at, 512)?;
            let free = le32(&fsi, 488);
            if le32(&fsi, 0) == 0x4161_5252 && le32(&fsi, 484) == 0x6141_7272 && u64::from(free) <= clusters {
                info.free_bytes = Some(u64::from(free) * u64::from(bps * spc));
            }
        }
    }
    Ok(Some(info))
}

fn swap(region: &mut Region, head: &[u8]) -> Result<Option<FsInfo>> {
    for page in [4096u64, 8192, 16384, 65536] {
        if page > region.len() {
            break;
        }
        let tail = if page == 4096 { slice(head, 4086, 10).to_vec() } else { region.read_vec(page - 10, 10)? };
        let version = match tail.as_slice() {
            b"SWAPSPACE2" => "1",
            b"SWAP-SPACE" => "0",
            _ => continue,
        };
        let mut info = FsInfo::new(FsKind::Swap);
        info.version = Some(version.into());
        if version == "1" {
            let last_page = u64::from(le32(head, 1028));
            info.size = (last_page + 1).checked_mul(page);
            info.uuid = uuid_be(slice(head, 1036, 16));
            info.label = label(slice(head, 1052, 16));
        }
        info.block_size = Some(page as u32);
        return Ok(Some(info));
    }
    Ok(None)
}

fn btrfs(sb: &[u8]) -> FsInfo {
    let mut info = FsInfo::new(FsKind::Btrfs);
    info.uuid = uuid_be(slice(sb, 0x20, 16));
    info.label = label(slice(sb, 0x12b, 256));
    let total = le64(sb, 0x70);
    info.size = Some(total);
    info.free_bytes = total.checked_sub(le64(sb, 0x78));
    info.block_size = Some(le32(sb, 0x90));
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::tests::mem_disk;

    fn probe_bytes(d: Vec<u8>) -> Option<FsInfo> {
        let disk = mem_disk(d);
        let mut r = disk.view(0, disk.size());
        probe(&mut r).unwrap()
    }

    #[test]
    fn ext4_superblock_fields() {
        let mut d = vec![0u8; 1 << 20];
        let sb = 1024;
        d[sb..sb + 4].copy_from_slice(&256u32.to_le_bytes()); // inodes
        d[sb + 4..sb + 8].copy_from_slice(&1024u32.to_le_bytes()); // blocks
        d[sb + 12..sb + 16].copy_from_slice(&1000u32.to_le_bytes()); // free blocks
        d[sb + 16..sb + 20].copy_from_slice(&200u32.to_le_bytes());
        d[sb + 24] = 0; // 1 KiB blocks
        d[sb + 32..sb + 36].copy_from_slice(&8192u32.to_le_bytes());
        d[sb + 56..sb + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
        d[sb + 58] = 1;
        d[sb + 92] = 0x4;
        d[sb + 96] = 0x42; // filetype + extent
        d[sb + 104..sb + 120].copy_from_slice(&[0x11; 16]);
        d[sb + 120..sb + 124].copy_from_slice(b"root");
        let i = probe_bytes(d).unwrap();
        assert_eq!(i.kind, FsKind::Ext4);
        assert_eq!(i.label.as_deref(), Some("root"));
        assert_eq!(i.uuid.as_deref(), Some("11111111-1111-1111-1111-111111111111"));
        assert_eq!((i.size, i.free_bytes, i.free_inodes), (Some(1 << 20), Some(1_024_000), Some(200)));
        assert!(i.features.contains(&"extent".to_string()) && !i.not_clean);
    }

    #[test]
    fn garbage_is_not_a_filesystem_and_bad_geometry_does_not_panic() {
        let mut d = vec![0xA5u8; 256 << 10];
        assert!(probe_bytes(d.clone()).is_none());
        // FAT-looking boot sector with absurd geometry.
        d[0] = 0xEB;
        d[11..13].copy_from_slice(&512u16.to_le_bytes());
        d[13] = 1;
        d[14..16].copy_from_slice(&1u16.to_le_bytes());
        d[16] = 2;
        d[19..21].copy_from_slice(&0u16.to_le_bytes());
        d[22..24].copy_from_slice(&0u16.to_le_bytes());
        d[510] = 0x55;
        d[511] = 0xAA;
        let _ = probe_bytes(d.clone());
        // NTFS with a hostile MFT location.
        d[3..11].copy_from_slice(b"NTFS    ");
        d[48..56].copy_from_slice(&u64::MAX.to_le_bytes());
        d[64] = 0x80;
        assert_eq!(probe_bytes(d).unwrap().kind, FsKind::Ntfs);
    }

    #[test]
    fn swap_and_lvm_signatures() {
        let mut d = vec![0u8; 1 << 20];
        d[4086..4096].copy_from_slice(b"SWAPSPACE2");
        d[1028..1032].copy_from_slice(&255u32.to_le_bytes());
        d[1052..1056].copy_from_slice(b"swp0");
        let i = probe_bytes(d).unwrap();
        assert_eq!((i.kind, i.size, i.label.as_deref()), (FsKind::Swap, Some(1 << 20), Some("swp0")));

        let mut d = vec![0u8; 1 << 20];
        d[512..520].copy_from_slice(b"LABELONE");
        d[512 + 20..512 + 24].copy_from_slice(&32u32.to_le_bytes());
        d[512 + 24..512 + 32].copy_from_slice(b"LVM2 001");
        d[512 + 32..512 + 64].copy_from_slice(b"abcdefghijklmnopqrstuvwxyz012345");
        let i = probe_bytes(d).unwrap();
        assert_eq!(i.uuid.as_deref(), Some("abcdef-ghij-klmn-opqr-stuv-wxyz-012345"));
    }
}
