//! GPT: primary header at LBA 1, backup at the last LBA, both CRC32-protected, each naming an entry array with
//! its own CRC32. Sector size 512, or 4096 when the header is found there.

use super::mbr::{to_partition, Lba0};
use super::types::gpt_type;
use super::{Partition, PartitionTable, TableKind};
use crate::bytes::{guid_mixed, le32, le64, slice};
use crate::error::Error;
use crate::finding::Finding;
use crate::reader::Disk;
use imgport_disk::Result;

/// Largest entry array read (the usual one is 16 KiB: 128 entries of 128 bytes).
pub const MAX_ARRAY_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub struct Header {
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable: u64,
    pub last_usable: u64,
    pub disk_guid: String,
    pub entries_lba: u64,
    pub num_entries: u32,
    pub entry_size: u32,
    pub entries_crc: u32,
}

/// Parse and CRC-check a header sector; `Err` says what is wrong.
/// The structure name errors about a header carry; offsets are within the header sector.
const HEADER: &str = "gpt header";

pub fn parse_header(sector: &[u8]) -> crate::error::Result<Header> {
    if slice(sector, 0, 8) != b"EFI PART" {
        return Err(Error::invalid(HEADER, "no \"EFI PART\" signature").at(0));
    }
    let hsize = le32(sector, 12) as usize;
    if hsize < 92 || hsize > sector.len() {
        return Err(Error::invalid(HEADER, format!("header size {hsize} is outside 92..={}", sector.len())).at(12));
    }
    let mut h = sector[..hsize].to_vec();
    h[16..20].fill(0);
    let stored = le32(sector, 16);
    let computed = crc32fast::hash(&h);
    if stored != computed {
        let why = format!("header CRC32 mismatch (stored {stored:#010x}, computed {computed:#010x})");
        return Err(Error::corrupt(HEADER, why).at(16));
    }
    let header = Header {
        my_lba: le64(sector, 24),
        alternate_lba: le64(sector, 32),
        first_usable: le64(sector, 40),
        last_usable: le64(sector, 48),
        disk_guid: guid_mixed(slice(sector, 56, 16)),
        entries_lba: le64(sector, 72),
        num_entries: le32(sector, 80),
        entry_size: le32(sector, 84),
        entries_crc: le32(sector, 88),
    };
    if header.entry_size < 128 || header.entry_size & 7 != 0 || header.entry_size > 4096 {
        let why = format!("entry size {} is not a multiple of 8 in 128..=4096", header.entry_size);
        return Err(Error::invalid(HEADER, why).at(84));
    }
    if u64::from(header.num_entries) * u64::from(header.entry_size) > MAX_ARRAY_BYTES {
        let why = format!(
            "entry array of {} x {} bytes exceeds the {MAX_ARRAY_BYTES}-byte limit",
            header.num_entries, header.entry_size
        );
        return Err(Error::limit(HEADER, why).at(80));
    }
    if header.first_usable > header.last_usable {
        let why = format!("first usable LBA {} is after the last {}", header.first_usable, header.last_usable);
        return Err(Error::corrupt(HEADER, why).at(40));
    }
    Ok(header)
}

/// A header with its entry array, when both check out.
struct Copy {
    header: Header,
    array: Vec<u8>,
}

fn read_copy(disk: &Disk, ss: u64, lba: u64, which: &str, findings: &mut Vec<Finding>) -> Result<Option<Copy>> {
    let at = lba.saturating_mul(ss);
    let structure = format!("gpt {which} header");
    if at.saturating_add(ss) > disk.size() {
        findings.push(Finding::error(&structure, Some(at), format!("LBA {lba} is past the end of the disk")));
        return Ok(None);
    }
    let mut sector = vec![0u8; ss as usize];
    disk.read_at(&mut sector, at)?;
    let header = match parse_header(&sector) {
        Ok(h) => h,
        Err(e) => {
            findings.push(Finding::error(&structure, Some(at), e.to_string()));
            return Ok(None);
        }
    };
    if header.my_lba != lba {
        findings.push(Finding::error(
            &structure,
            Some(at),
            format!("says it is at LBA {} but was read from LBA {lba}", header.my_lba),
        ));
    }
    let len = u64::from(header.num_entries) * u64::from(header.entry_size);
    let arr_at = header.entries_lba.saturating_mul(ss);
    let arr_structure = format!("gpt {which} entry array");
    if arr_at.saturating_add(len) > disk.size() || header.entries_lba < 2 && which == "primary" {
        findings.push(Finding::error(
            &arr_structure,
            Some(arr_at),
            format!("entry array at LBA {} ({len} bytes) lies outside the disk", header.entries_lba),
        ));
        return Ok(None);
    }
    let mut array = vec![0u8; len as usize];
    disk.read_at(&mut array, arr_at)?;
    let crc = crc32fast::hash(&array);
    if crc != header.entries_crc {
        findings.push(Finding::error(
            &arr_structure,
            Some(arr_at),
            format!("entry array CRC32 mismatch (stored {:#010x}, computed {crc:#010x})", header.entries_crc),
        ));
        return Ok(None);
    }
    Ok(Some(Copy { header, array }))
}

/// Read a GPT if LBA 1 (at 512 or 4096 bytes per sector) or the backup location holds one. `None` when there is
/// no sign of a GPT at all.
pub fn read(disk: &Disk, lba0: &Lba0) -> Result<Option<PartitionTable>> {
    let protective = lba0.entries.iter().any(|e| e.is_used() && e.ptype == 0xEE);
    let mut ss = 0u64;
    for candidate in [512u64, 4096] {
        if disk.size() >= candidate * 3 {
            let mut sig = [0u8; 8];
            disk.read_at(&mut sig, candidate)?;
            if &sig == b"EFI PART" {
                ss = candidate;
                break;
            }
        }
    }
    if ss == 0 {
        // No primary header: still a GPT if the MBR says so (the backup may save it), else not a GPT.
        if !protective {
            return Ok(None);
        }
        ss = 512;
    }
    let mut t = PartitionTable::empty(TableKind::Gpt, ss as u32);
    let last_lba = disk.size() / ss - 1;
    let primary = read_copy(disk, ss, 1, "primary", &mut t.findings)?;
    // The backup is where the primary says, and must be the disk's last LBA.
    let backup_lba = primary.as_ref().map_or(last_lba, |p| p.header.alternate_lba);
    if primary.is_some() && backup_lba != last_lba {
        t.findings.push(Finding::warning(
            "gpt primary header",
            Some(ss),
            format!(
                "backup header LBA {backup_lba} is not the last LBA {last_lba} (disk resized without moving the backup GPT)"
            ),
        ));
    }
    let backup = read_copy(disk, ss, backup_lba, "backup", &mut t.findings)?;
    if let (Some(p), Some(b)) = (&primary, &backup) {
        if p.header.disk_guid != b.header.disk_guid || p.array != b.array {
            t.findings.push(Finding::error(
                "gpt backup header",
                Some(backup_lba.saturating_mul(ss)),
                "backup GPT differs from the primary (disk GUID or partition entries)",
            ));
        }
        if b.header.alternate_lba != 1 {
            t.findings.push(Finding::error(
                "gpt backup header",
                Some(backup_lba.saturating_mul(ss)),
                format!("backup header points to alternate LBA {} instead of 1", b.header.alternate_lba),
            ));
        }
    }
    let Some(good) = primary.as_ref().or(backup.as_ref()) else {
        t.findings.push(Finding::error("gpt", Some(ss), "neither GPT header is valid: partitions unknown"));
        return Ok(Some(t));
    };
    if primary.is_none() {
        t.findings.push(Finding::warning("gpt", Some(ss), "partitions taken from the backup GPT"));
    }
    t.disk_id = Some(good.header.disk_guid.clone());
    t.partitions = entries(&good.header, &good.array, ss, last_lba, &mut t.findings);

    // Protective MBR: one 0xEE entry. Hybrid: 0xEE plus real entries mirroring GPT partitions.
    if !protective {
        t.findings.push(Finding::warning("mbr", Some(446), "GPT disk without a protective 0xEE MBR entry"));
    } else if lba0.entries.iter().any(|e| e.is_used() && e.ptype != 0xEE) {
        t.hybrid_mbr = true;
        for (i, e) in lba0.entries.iter().enumerate() {
            if e.is_used() && e.ptype != 0xEE {
                t.hybrid_entries.push(to_partition(i as u32 + 1, e, u64::from(e.lba), lba0.disk_signature, false));
            }
        }
    } else {
        t.protective_mbr = true;
    }
    Ok(Some(t))
}

fn entries(h: &Header, array: &[u8], ss: u64, last_lba: u64, findings: &mut Vec<Finding>) -> Vec<Partition> {
    let mut out = Vec::new();
    let es = h.entry_size as usize;
    for i in 0..h.num_entries as usize {
        let e = slice(array, i * es, es);
        let type_bytes = slice(e, 0, 16);
        if type_bytes.iter().all(|&b| b == 0) {
            continue;
        }
        let number = i as u32 + 1;
        let entry_at = (h.entries_lba * ss).saturating_add((i * es) as u64);
        let type_id = guid_mixed(type_bytes);
        let (role, type_name) = gpt_type(&type_id);
        let (first, last) = (le64(e, 32), le64(e, 40));
        let attributes = le64(e, 48);
        if first > last || first < h.first_usable || last > h.last_usable || last > last_lba {
            findings.push(Finding::error(
                format!("gpt entry {number}"),
                Some(entry_at),
                format!(
                    "LBAs {first}..={last} are outside the usable range {}..={} (disk ends at LBA {last_lba})",
                    h.first_usable, h.last_usable
                ),
            ));
            if first > last || first > last_lba {
                continue;
            }
        }
        let name_units: Vec<u16> = slice(e, 56, 72)
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let name = String::from_utf16_lossy(&name_units);
        out.push(Partition {
            number,
            start: first.saturating_mul(ss),
            size: (last - first + 1).saturating_mul(ss),
            first_lba: first,
            last_lba: last,
            type_id,
            type_name,
            role,
            partuuid: Some(guid_mixed(slice(e, 16, 16)).to_lowercase()),
            name: (!name.is_empty()).then_some(name),
            bootable: attributes & 4 != 0,
            attributes: Some(attributes),
            logical: false,
        });
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::partition::read_table;
    use crate::partition::PartitionRole;
    use crate::reader::tests::mem_disk;

    const LINUX: [u8; 16] =
        [0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4];

    fn header(my: u64, alt: u64, entries_lba: u64, last_usable: u64, array_crc: u32) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[40..48].copy_from_slice(&34u64.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&[7u8; 16]);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&array_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// A 4 MiB disk with a protective MBR, both GPT copies and one Linux partition 2048..=4095.
    pub fn gpt_disk() -> Vec<u8> {
        gpt_disk_ss(512, 8192)
    }

    /// `sectors` sectors of `ss` bytes; the partition spans LBAs 2048..=4095 (at 4096 bytes: 8 MiB..16 MiB).
    pub fn gpt_disk_ss(ss: usize, sectors: u64) -> Vec<u8> {
        let mut d = vec![0u8; sectors as usize * ss];
        d[510] = 0x55;
        d[511] = 0xAA;
        d[446 + 4] = 0xEE;
        d[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        d[446 + 12..446 + 16].copy_from_slice(&((sectors - 1) as u32).to_le_bytes());
        let mut array = vec![0u8; 128 * 128];
        array[..16].copy_from_slice(&LINUX);
        array[16..32].copy_from_slice(&[9u8; 16]);
        array[32..40].copy_from_slice(&2048u64.to_le_bytes());
        array[40..48].copy_from_slice(&4095u64.to_le_bytes());
        for (i, c) in "root".encode_utf16().enumerate() {
            array[56 + 2 * i..58 + 2 * i].copy_from_slice(&c.to_le_bytes());
        }
        let crc = crc32fast::hash(&array);
        let last = sectors - 1;
        let array_sectors = (array.len() / ss) as u64;
        let mut h = header(1, last, 2, last - array_sectors - 1, crc);
        h.resize(ss, 0);
        d[ss..2 * ss].copy_from_slice(&h);
        d[2 * ss..2 * ss + array.len()].copy_from_slice(&array);
        let bak_arr = ((last - array_sectors) as usize) * ss;
        d[bak_arr..bak_arr + array.len()].copy_from_slice(&array);
        let mut h = header(last, 1, last - array_sectors, last - array_sectors - 1, crc);
        h.resize(ss, 0);
        d[last as usize * ss..].copy_from_slice(&h);
        d
    }

    #[test]
    fn gpt_with_4096_byte_sectors() {
        let t = read_table(&mem_disk(gpt_disk_ss(4096, 8192))).unwrap();
        assert_eq!((t.kind, t.sector_size), (TableKind::Gpt, 4096));
        assert!(t.findings.is_empty(), "{:?}", t.findings);
        assert_eq!((t.partitions[0].start, t.partitions[0].size), (8 << 20, 8 << 20));
    }

    #[test]
    fn good_gpt() {
        let t = read_table(&mem_disk(gpt_disk())).unwrap();
        assert_eq!(t.kind, TableKind::Gpt);
        assert!(t.findings.is_empty(), "{:?}", t.findings);
        assert!(t.protective_mbr && !t.hybrid_mbr);
        let p = &t.partitions[0];
        assert_eq!((p.number, p.first_lba, p.last_lba, p.role), (1, 2048, 4095, PartitionRole::Linux));
        assert_eq!(p.name.as_deref(), Some("root"));
        assert_eq!(p.partuuid.as_deref(), Some("09090909-0909-0909-0909-090909090909"));
    }

    #[test]
    fn corrupt_primary_header_falls_back_to_backup() {
        let mut d = gpt_disk();
        d[512 + 40] ^= 1;
        let t = read_table(&mem_disk(d)).unwrap();
        assert!(t.findings.iter().any(|f| f.structure == "gpt primary header" && f.message.contains("CRC32")));
        assert_eq!(t.partitions.len(), 1);
    }

    #[test]
    fn corrupt_entry_array_is_reported() {
        let mut d = gpt_disk();
        d[1024 + 40] ^= 1;
        let t = read_table(&mem_disk(d)).unwrap();
        assert!(t.findings.iter().any(|f| f.structure == "gpt primary entry array"));
        assert_eq!(t.partitions[0].last_lba, 4095, "backup array used");
    }

    #[test]
    fn both_copies_bad_gives_no_partitions_and_no_panic() {
        let mut d = gpt_disk();
        d[512 + 40] ^= 1;
        let n = d.len();
        d[n - 512 + 40] ^= 1;
        let t = read_table(&mem_disk(d)).unwrap();
        assert_eq!(t.kind, TableKind::Gpt);
        assert!(t.partitions.is_empty());
        assert!(t.findings.iter().any(|f| f.message.contains("neither GPT header")));
    }

    #[test]
    fn huge_entry_count_is_refused() {
        let mut h = header(1, 100, 2, 50, 0);
        h[80..84].copy_from_slice(&u32::MAX.to_le_bytes());
        h[16..20].fill(0);
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        let e = parse_header(&h).unwrap_err();
        assert!(e.to_string().contains("exceeds"));
        assert_eq!((e.kind(), e.offset()), (crate::ErrorKind::LimitExceeded, Some(80)));
    }

    #[test]
    fn truncated_disk_loses_backup_but_keeps_primary() {
        let mut d = gpt_disk();
        d.truncate(3 << 20);
        let t = read_table(&mem_disk(d)).unwrap();
        assert_eq!(t.partitions.len(), 1);
        assert!(t.findings.iter().any(|f| f.structure == "gpt backup header"), "{:?}", t.findings);
    }
}
