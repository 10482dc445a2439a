//! MBR: four primary entries at 446, 0x55AA at 510, logical partitions in a chain of EBRs inside the extended
//! partition (each EBR: entry 0 = the logical partition relative to that EBR, entry 1 = the next EBR relative to
//! the start of the extended partition).

use super::types::{mbr_type, PartitionRole};
use super::{Partition, PartitionTable, TableKind};
use crate::bytes::{le32, u8_at};
use crate::finding::Finding;
use crate::reader::Disk;
use imgport_disk::Result;
use std::collections::HashSet;

/// Logical partitions followed before the chain is declared runaway (Linux stops at 256 minors).
pub const MAX_LOGICAL: usize = 128;

#[derive(Debug, Clone, Copy, Default)]
pub struct RawEntry {
    pub status: u8,
    pub ptype: u8,
    pub lba: u32,
    pub sectors: u32,
}

impl RawEntry {
    pub fn is_used(&self) -> bool {
        self.ptype != 0 && self.sectors != 0
    }
}

#[derive(Debug, Clone)]
pub struct Lba0 {
    pub signature: bool,
    pub boot_code: bool,
    pub disk_signature: u32,
    pub entries: [RawEntry; 4],
}

impl Lba0 {
    pub fn has_entries(&self) -> bool {
        self.entries.iter().any(RawEntry::is_used)
    }

    /// A FAT or NTFS boot sector also ends in 0x55AA: a whole-disk filesystem, not a partition table.
    pub fn is_volume_boot_record(&self, lba0: &[u8]) -> bool {
        let jump = matches!(u8_at(lba0, 0), 0xEB | 0xE9);
        let oem_ntfs = lba0.get(3..11) == Some(b"NTFS    ");
        let fat = lba0.get(54..59) == Some(b"FAT12")
            || lba0.get(54..59) == Some(b"FAT16")
            || lba0.get(82..87) == Some(b"FAT32");
        jump && (oem_ntfs || fat)
    }
}

fn entry(b: &[u8], i: usize) -> RawEntry {
    let o = 446 + 16 * i;
    RawEntry { status: u8_at(b, o), ptype: u8_at(b, o + 4), lba: le32(b, o + 8), sectors: le32(b, o + 12) }
}

pub fn parse_lba0(b: &[u8]) -> Lba0 {
    Lba0 {
        signature: u8_at(b, 510) == 0x55 && u8_at(b, 511) == 0xAA,
        boot_code: b.get(..440).is_some_and(|c| c.iter().any(|&x| x != 0)),
        disk_signature: le32(b, 440),
        entries: [entry(b, 0), entry(b, 1), entry(b, 2), entry(b, 3)],
    }
}

/// A partition from an MBR entry whose LBA is already absolute.
pub fn to_partition(number: u32, e: &RawEntry, abs_lba: u64, disk_signature: u32, logical: bool) -> Partition {
    let (role, name) = mbr_type(e.ptype);
    Partition {
        number,
        start: abs_lba * 512,
        size: u64::from(e.sectors) * 512,
        first_lba: abs_lba,
        last_lba: abs_lba + u64::from(e.sectors) - 1,
        type_id: format!("0x{:02x}", e.ptype),
        type_name: name,
        role,
        partuuid: (disk_signature != 0).then(|| format!("{disk_signature:08x}-{number:02x}")),
        name: None,
        bootable: e.status == 0x80,
        attributes: None,
        logical,
    }
}

pub fn read(disk: &Disk, lba0: &Lba0) -> Result<PartitionTable> {
    let mut t = PartitionTable::empty(TableKind::Mbr, 512);
    t.disk_id = Some(format!("{:08x}", lba0.disk_signature));
    let mut extended = None;
    for (i, e) in lba0.entries.iter().enumerate() {
        if !e.is_used() {
            continue;
        }
        let structure = format!("mbr entry {}", i + 1);
        let at = Some(446 + 16 * i as u64);
        if e.status != 0 && e.status != 0x80 {
            t.findings.push(Finding::error(&structure, at, format!("invalid status byte {:#04x}", e.status)));
        }
        if e.lba == 0 {
            t.findings.push(Finding::error(&structure, at, "partition starts at LBA 0, over the MBR itself"));
            continue;
        }
        let p = to_partition(i as u32 + 1, e, u64::from(e.lba), lba0.disk_signature, false);
        if p.role == PartitionRole::Extended {
            if extended.is_some() {
                t.findings.push(Finding::error(&structure, at, "second extended partition ignored"));
            } else {
                extended = Some((u64::from(e.lba), u64::from(e.sectors)));
            }
        }
        t.partitions.push(p);
    }
    if let Some((base, sectors)) = extended {
        read_logical(disk, lba0.disk_signature, base, sectors, &mut t)?;
    }
    if lba0.entries.iter().filter(|e| e.is_used() && e.status == 0x80).count() > 1 {
        t.findings.push(Finding::warning("mbr", Some(446), "more than one partition is marked active"));
    }
    Ok(t)
}

/// Follow the EBR chain: capped in count, refusing loops and EBRs outside the extended partition.
fn read_logical(disk: &Disk, sig: u32, base: u64, sectors: u64, t: &mut PartitionTable) -> Result<()> {
    let mut seen = HashSet::new();
    let mut ebr_rel = 0u64;
    let mut number = 5u32;
    loop {
        let ebr_lba = base + ebr_rel;
        let at = ebr_lba * 512;
        let structure = format!("ebr at lba {ebr_lba}");
        if ebr_rel >= sectors {
            t.findings.push(Finding::error(&structure, Some(at), "EBR lies outside the extended partition"));
            break;
        }
        if !seen.insert(ebr_lba) {
            t.findings.push(Finding::error(&structure, Some(at), "EBR chain loops back to an EBR already read"));
            break;
        }
        if seen.len() > MAX_LOGICAL {
            t.findings.push(Finding::error(
                &structure,
                Some(at),
                format!("more than {MAX_LOGICAL} logical partitions: chain not followed further"),
            ));
            break;
        }
        let mut b = [0u8; 512];
        if at.saturating_add(512) > disk.size() {
            t.findings.push(Finding::error(&structure, Some(at), "EBR lies past the end of the disk"));
            break;
        }
        disk.read_at(&mut b, at)?;
        let ebr = parse_lba0(&b);
        if !ebr.signature {
            // An empty extended partition may have no EBR at all.
            if ebr_rel != 0 {
                t.findings.push(Finding::error(&structure, Some(at), "EBR lacks the 0x55AA signature"));
            }
            break;
        }
        let (part, next) = (ebr.entries[0], ebr.entries[1]);
        if part.is_used() {
            let abs = ebr_lba + u64::from(part.lba);
            if part.lba == 0 || abs + u64::from(part.sectors) > base + sectors {
                t.findings.push(Finding::error(
                    &structure,
                    Some(at + 446),
                    format!("logical partition {number} lies outside the extended partition"),
                ));
            }
            t.partitions.push(to_partition(number, &part, abs, sig, true));
            number += 1;
        }
        if !next.is_used() {
            break;
        }
        ebr_rel = u64::from(next.lba);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::read_table;
    use crate::reader::tests::mem_disk;

    fn put_entry(b: &mut [u8], at: usize, status: u8, ptype: u8, lba: u32, sectors: u32) {
        b[at] = status;
        b[at + 4] = ptype;
        b[at + 8..at + 12].copy_from_slice(&lba.to_le_bytes());
        b[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
    }

    fn sign(b: &mut [u8], at: usize) {
        b[at + 510] = 0x55;
        b[at + 511] = 0xAA;
    }

    #[test]
    fn primary_and_logical_partitions() {
        let mut d = vec![0u8; 8 << 20];
        sign(&mut d, 0);
        d[440..444].copy_from_slice(&0x1234abcdu32.to_le_bytes());
        put_entry(&mut d, 446, 0x80, 0x83, 2048, 4096);
        put_entry(&mut d, 462, 0, 0x05, 6144, 8192);
        // EBR 1 at 6144: logical at +2048, next EBR at ext+4096.
        let e1 = 6144 * 512;
        sign(&mut d, e1);
        put_entry(&mut d, e1 + 446, 0, 0x82, 2048, 1024);
        put_entry(&mut d, e1 + 462, 0, 0x05, 4096, 4096);
        let e2 = (6144 + 4096) * 512;
        sign(&mut d, e2);
        put_entry(&mut d, e2 + 446, 0, 0x83, 2048, 2048);
        let t = read_table(&mem_disk(d)).unwrap();
        assert_eq!(t.kind, TableKind::Mbr);
        assert!(t.findings.is_empty(), "{:?}", t.findings);
        let nums: Vec<_> = t.partitions.iter().map(|p| (p.number, p.first_lba, p.role)).collect();
        assert_eq!(
            nums,
            vec![
                (1, 2048, PartitionRole::Linux),
                (2, 6144, PartitionRole::Extended),
                (5, 8192, PartitionRole::Swap),
                (6, 12288, PartitionRole::Linux)
            ]
        );
        assert_eq!(t.partitions[0].partuuid.as_deref(), Some("1234abcd-01"));
        assert!(t.partitions[0].bootable);
    }

    #[test]
    fn looping_ebr_chain_is_reported_not_followed_forever() {
        let mut d = vec![0u8; 4 << 20];
        sign(&mut d, 0);
        put_entry(&mut d, 446, 0, 0x05, 2048, 4096);
        let e1 = 2048 * 512;
        sign(&mut d, e1);
        put_entry(&mut d, e1 + 446, 0, 0x83, 1, 10);
        put_entry(&mut d, e1 + 462, 0, 0x05, 0, 10); // points back at itself
        let t = read_table(&mem_disk(d)).unwrap();
        assert!(t.findings.iter().any(|f| f.message.contains("loops")), "{:?}", t.findings);
    }

    #[test]
    fn partition_past_end_and_overlap_are_findings() {
        let mut d = vec![0u8; 1 << 20];
        sign(&mut d, 0);
        put_entry(&mut d, 446, 0, 0x83, 100, 1000);
        put_entry(&mut d, 462, 0, 0x83, 500, 100_000);
        let t = read_table(&mem_disk(d)).unwrap();
        assert!(t.findings.iter().any(|f| f.message.contains("but the disk has only")));
        assert!(t.findings.iter().any(|f| f.message.contains("overlaps")));
    }

    #[test]
    fn fat_boot_sector_is_not_a_partition_table() {
        let mut d = vec![0u8; 1 << 20];
        d[0] = 0xEB;
        d[82..87].copy_from_slice(b"FAT32");
        sign(&mut d, 0);
        put_entry(&mut d, 446, 0x12, 0x34, 5, 6); // boot code bytes that look like an entry
        let t = read_table(&mem_disk(d)).unwrap();
        assert_eq!(t.kind, TableKind::None);
    }
}
