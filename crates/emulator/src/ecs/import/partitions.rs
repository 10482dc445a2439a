//! The partition table and filesystem signatures of an uploaded disk, read as a service reads them: a few sectors
//! through the disk engine, no guest mounting. An MBR's four primary entries; a GPT behind a protective MBR (the
//! header's `EFI PART` signature and its entry array; CRCs are not checked).

use imgport_disk::DiskImage;

const SECTOR: u64 = 512;
/// A GPT entry array the emulator reads at most (128 entries of 128 bytes is the usual).
const MAX_GPT_ENTRIES: u64 = 1024;
const MAX_GPT_ENTRY_SIZE: u64 = 1024;
/// The EFI system partition's type GUID as GPT stores it (mixed-endian C12A7328-F81F-11D2-BA4B-00A0C93EC93B).
const ESP_GUID: [u8; 16] =
    [0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b];
/// The BIOS boot partition's type GUID as GPT stores it (21686148-6449-6E6F-744E-656564454649).
const BIOS_BOOT_GUID: [u8; 16] =
    [0x48, 0x61, 0x68, 0x21, 0x49, 0x64, 0x6f, 0x6e, 0x74, 0x4e, 0x65, 0x65, 0x64, 0x45, 0x46, 0x49];
const MBR_EXTENDED: [u8; 3] = [0x05, 0x0f, 0x85];
const MBR_ESP: u8 = 0xef;
const MBR_PROTECTIVE: u8 = 0xee;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Data,
    /// An MBR extended partition: a container for logical partitions, no filesystem of its own.
    Extended,
    EfiSystem,
    BiosBoot,
}

#[derive(Debug, Clone)]
pub(super) struct Partition {
    /// 1-based, as the table numbers it.
    pub number: usize,
    pub start: u64,
    pub length: u64,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub(super) struct Table {
    /// Only partitions that lie inside the disk.
    pub partitions: Vec<Partition>,
}

fn le_u32(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v) as u64
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// The first sector, when the disk has one.
pub(super) fn first_sector(image: &dyn DiskImage) -> Option<[u8; 512]> {
    let mut s = [0u8; 512];
    (image.virtual_size() >= SECTOR && image.read_at(&mut s, 0).is_ok()).then_some(s)
}

pub(super) fn has_boot_signature(sector0: &[u8; 512]) -> bool {
    sector0[510] == 0x55 && sector0[511] == 0xaa
}

/// Whether the MBR carries boot code (its first 440 bytes are not all zero).
pub(super) fn has_boot_code(sector0: &[u8; 512]) -> bool {
    sector0[..440].iter().any(|&b| b != 0)
}

/// The disk's partition table: `None` without a boot signature, or when no entry describes a partition inside
/// the disk.
pub(super) fn read_table(image: &dyn DiskImage, sector0: &[u8; 512]) -> Option<Table> {
    if !has_boot_signature(sector0) {
        return None;
    }
    let size = image.virtual_size();
    let entries: Vec<(u8, u64, u64)> = (0..4)
        .map(|i| 446 + 16 * i)
        .map(|at| (sector0[at + 4], le_u32(sector0, at + 8), le_u32(sector0, at + 12)))
        .filter(|&(kind, _, sectors)| kind != 0 && sectors != 0)
        .collect();
    if entries.iter().any(|&(kind, _, _)| kind == MBR_PROTECTIVE) {
        return read_gpt(image, size);
    }
    let partitions: Vec<Partition> = entries
        .iter()
        .enumerate()
        .filter(|(_, &(_, start, sectors))| (start + sectors) * SECTOR <= size)
        .map(|(n, &(kind, start, sectors))| Partition {
            number: n + 1,
            start: start * SECTOR,
            length: sectors * SECTOR,
            role: if MBR_EXTENDED.contains(&kind) {
                Role::Extended
            } else if kind == MBR_ESP {
                Role::EfiSystem
            } else {
                Role::Data
            },
        })
        .collect();
    (!partitions.is_empty()).then_some(Table { partitions })
}

fn read_gpt(image: &dyn DiskImage, size: u64) -> Option<Table> {
    let mut header = [0u8; 512];
    image.read_at(&mut header, SECTOR).ok()?;
    if &header[..8] != b"EFI PART" {
        return None;
    }
    let (array_lba, count, entry_size) = (le_u64(&header, 72), le_u32(&header, 80), le_u32(&header, 84));
    if count == 0 || count > MAX_GPT_ENTRIES || !(128..=MAX_GPT_ENTRY_SIZE).contains(&entry_size) {
        return None;
    }
    let mut array = vec![0u8; (count * entry_size) as usize];
    let at = array_lba.checked_mul(SECTOR)?;
    if at.checked_add(array.len() as u64)? > size {
        return None;
    }
    image.read_at(&mut array, at).ok()?;
    let partitions: Vec<Partition> = array
        .chunks_exact(entry_size as usize)
        .enumerate()
        .filter(|(_, e)| e[..16].iter().any(|&b| b != 0))
        .filter_map(|(n, e)| {
            let (first, last) = (le_u64(e, 32), le_u64(e, 40));
            let end = last.checked_add(1)?.checked_mul(SECTOR)?;
            (first <= last && end <= size).then(|| Partition {
                number: n + 1,
                start: first * SECTOR,
                length: end - first * SECTOR,
                role: match &e[..16] {
                    t if t == ESP_GUID => Role::EfiSystem,
                    t if t == BIOS_BOOT_GUID => Role::BiosBoot,
                    _ => Role::Data,
                },
            })
        })
        .collect();
    (!partitions.is_empty()).then_some(Table { partitions })
}

/// The filesystem (or volume) a partition's first sectors announce, if the emulator knows its signature.
pub(super) fn filesystem(image: &dyn DiskImage, p: &Partition) -> Option<&'static str> {
    let mut head = vec![0u8; 4096.min(p.length) as usize];
    image.read_at(&mut head, p.start).ok()?;
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    let found = if at(1024 + 56, &[0x53, 0xef]) {
        "ext2/3/4"
    } else if at(0, b"XFSB") {
        "xfs"
    } else if at(3, b"NTFS    ") {
        "ntfs"
    } else if at(54, b"FAT") || at(82, b"FAT32") {
        "vfat"
    } else if at(4086, b"SWAPSPACE2") {
        "swap"
    } else if at(512 + 24, b"LVM2 001") {
        "lvm"
    } else {
        let mut magic = [0u8; 8];
        let btrfs = 0x10040;
        let ok = p.length >= btrfs + 8 && image.read_at(&mut magic, p.start + btrfs).is_ok() && &magic == b"_BHRfS_M";
        return ok.then_some("btrfs");
    };
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgport_disk::MemImage;

    const MIB: usize = 1 << 20;

    fn with_signature(mut disk: Vec<u8>) -> MemImage {
        disk[510] = 0x55;
        disk[511] = 0xaa;
        MemImage(disk)
    }

    fn mbr_entry(disk: &mut [u8], slot: usize, kind: u8, start: u32, sectors: u32) {
        let at = 446 + 16 * slot;
        disk[at + 4] = kind;
        disk[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
        disk[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
    }

    fn table(image: &MemImage) -> Option<Table> {
        let s = first_sector(image).expect("a first sector");
        read_table(image, &s)
    }

    #[test]
    fn mbr_entries_inside_the_disk_count_and_others_do_not() {
        let mut disk = vec![0u8; 4 * MIB];
        mbr_entry(&mut disk, 0, 0x83, 2048, 4096);
        mbr_entry(&mut disk, 1, 0x83, 6144, 1 << 20);
        mbr_entry(&mut disk, 2, 0x05, 6144, 2048);
        let image = with_signature(disk);
        let t = table(&image).expect("a table");
        let got: Vec<_> = t.partitions.iter().map(|p| (p.number, p.start, p.length, p.role)).collect();
        assert_eq!(got, [(1, MIB as u64, 2 * MIB as u64, Role::Data), (3, 3 * MIB as u64, MIB as u64, Role::Extended)]);
        // An ext4 superblock magic on the first partition is recognised.
        let mut disk = image.0.clone();
        disk[MIB + 1024 + 56] = 0x53;
        disk[MIB + 1024 + 57] = 0xef;
        let image = MemImage(disk);
        let t = table(&image).expect("a table");
        assert_eq!(filesystem(&image, &t.partitions[0]), Some("ext2/3/4"));
        assert_eq!(filesystem(&image, &t.partitions[1]), None);
    }

    #[test]
    fn no_signature_or_no_entry_is_no_table() {
        let mut disk = vec![0u8; MIB];
        mbr_entry(&mut disk, 0, 0x83, 1, 100);
        assert!(table(&MemImage(disk.clone())).is_none(), "no 0x55AA");
        assert!(table(&with_signature(vec![0u8; MIB])).is_none(), "no entry");
    }

    #[test]
    fn gpt_behind_a_protective_mbr() {
        let mut disk = vec![0u8; 4 * MIB];
        mbr_entry(&mut disk, 0, 0xee, 1, 8191);
        disk[512..520].copy_from_slice(b"EFI PART");
        disk[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        disk[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        disk[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        let entry = |disk: &mut Vec<u8>, n: usize, kind: [u8; 16], first: u64, last: u64| {
            let at = 1024 + 128 * n;
            disk[at..at + 16].copy_from_slice(&kind);
            disk[at + 32..at + 40].copy_from_slice(&first.to_le_bytes());
            disk[at + 40..at + 48].copy_from_slice(&last.to_le_bytes());
        };
        entry(&mut disk, 0, ESP_GUID, 2048, 4095);
        entry(&mut disk, 1, [7; 16], 4096, 1 << 30);
        let image = with_signature(disk.clone());
        let t = table(&image).expect("a GPT");
        let got: Vec<_> = t.partitions.iter().map(|p| (p.number, p.start, p.role)).collect();
        assert_eq!(got, [(1, MIB as u64, Role::EfiSystem)], "the second entry ends past the disk");
        disk[512] = b'X';
        assert!(table(&with_signature(disk)).is_none(), "a protective MBR without a GPT header");
    }
}
