//! Partition tables: MBR (with extended/logical chains), GPT (CRC-checked, with its backup), protective and
//! hybrid MBRs. Damage becomes findings; only an unreadable disk is an error.

pub mod gpt;
pub mod mbr;
pub mod types;

use crate::finding::Finding;
use crate::reader::Disk;
use imgport_disk::Result;
use serde::Serialize;
pub use types::PartitionRole;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    Mbr,
    Gpt,
    /// No partition table: the disk holds one filesystem, or nothing recognisable.
    None,
}

#[derive(Debug, Clone, Serialize)]
pub struct Partition {
    /// 1-based as Linux numbers them (MBR logical partitions from 5).
    pub number: u32,
    /// Byte offset in the virtual disk.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    pub first_lba: u64,
    pub last_lba: u64,
    /// MBR type byte as "0x83", or the GPT type GUID.
    pub type_id: String,
    pub type_name: &'static str,
    pub role: PartitionRole,
    /// PARTUUID as the kernel and blkid spell it (GPT unique GUID lower-case, MBR "sig-nn").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partuuid: Option<String>,
    /// GPT partition name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MBR active flag, or GPT "legacy BIOS bootable" attribute.
    pub bootable: bool,
    /// GPT attribute bits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<u64>,
    /// MBR logical partition (inside the extended one).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub logical: bool,
}

impl Partition {
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionTable {
    pub kind: TableKind,
    pub sector_size: u32,
    /// GPT disk GUID, or the MBR disk signature as 8 hex digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_id: Option<String>,
    /// LBA 0 ends in 0x55AA.
    pub mbr_signature: bool,
    /// Any non-zero byte in the MBR boot code area (bytes 0..440).
    pub mbr_boot_code: bool,
    /// GPT behind an MBR whose only entry is 0xEE.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub protective_mbr: bool,
    /// GPT behind an MBR with 0xEE plus other entries.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hybrid_mbr: bool,
    /// The MBR entries of a hybrid MBR, besides the 0xEE one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hybrid_entries: Vec<Partition>,
    pub partitions: Vec<Partition>,
    pub findings: Vec<Finding>,
}

impl PartitionTable {
    fn empty(kind: TableKind, sector_size: u32) -> Self {
        PartitionTable {
            kind,
            sector_size,
            disk_id: None,
            mbr_signature: false,
            mbr_boot_code: false,
            protective_mbr: false,
            hybrid_mbr: false,
            hybrid_entries: Vec::new(),
            partitions: Vec::new(),
            findings: Vec::new(),
        }
    }
}

/// Read the partition table of `disk`. A disk too small for a sector is an error; everything else is reported.
pub fn read_table(disk: &Disk) -> Result<PartitionTable> {
    let mut lba0 = [0u8; 512];
    let size = disk.size();
    if size < 512 {
        let mut t = PartitionTable::empty(TableKind::None, 512);
        t.findings.push(Finding::error("disk", None, format!("the disk is only {size} bytes: no partition table")));
        return Ok(t);
    }
    disk.read_at(&mut lba0, 0)?;
    let mbr = mbr::parse_lba0(&lba0);

    let mut table = if let Some(gpt) = gpt::read(disk, &mbr)? {
        gpt
    } else if mbr.signature && !mbr.is_volume_boot_record(&lba0) && mbr.has_entries() {
        mbr::read(disk, &mbr)?
    } else {
        PartitionTable::empty(TableKind::None, 512)
    };
    table.mbr_signature = mbr.signature;
    table.mbr_boot_code = mbr.boot_code;
    check_layout(&mut table, size);
    Ok(table)
}

/// Partitions in bounds and not overlapping.
fn check_layout(t: &mut PartitionTable, disk_size: u64) {
    let structure = |p: &Partition| format!("partition {}", p.number);
    for p in &t.partitions {
        if p.end() > disk_size {
            t.findings.push(Finding::error(
                structure(p),
                Some(p.start),
                format!(
                    "ends at byte {} but the disk has only {disk_size} bytes (image truncated, or table wrong)",
                    p.end()
                ),
            ));
        }
    }
    // The extended container holds the logical partitions: it overlaps them by design.
    let mut parts: Vec<&Partition> = t.partitions.iter().filter(|p| p.role != PartitionRole::Extended).collect();
    parts.sort_by_key(|p| p.start);
    let mut overlaps = Vec::new();
    for w in parts.windows(2) {
        if w[1].start < w[0].end() {
            overlaps.push(Finding::error(
                structure(w[1]),
                Some(w[1].start),
                format!("overlaps partition {}", w[0].number),
            ));
        }
    }
    t.findings.extend(overlaps);
}
