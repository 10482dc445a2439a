//! Harnesses for the guest inspection's parsers of untrusted bytes: partition tables, filesystem front ends, the
//! btrfs reader, LVM labels and metadata, registry hives, SQLite databases and initramfs archives. Each takes the input as the whole
//! structure (a disk, a partition, a file) and walks everything a caller would, within small budgets.

use imgport_disk::{CheckReport, DiskImage, Extent, ImageDetails, MemImage};
use imgport_guest::fs::btrfs::{BtrfsFs, Subvol};
use imgport_guest::fs::{FileType, GuestFs};
use imgport_guest::partition::{gpt, mbr, read_table};
use imgport_guest::reader::{Disk, Region};
use imgport_guest::regf::Hive;
use imgport_guest::{initramfs, probe, sqlite};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Directory entries, hive keys or table pages visited per input: enough to reach every structure of a 64 KiB
/// input, few enough that a looping structure costs milliseconds.
const WALK_BUDGET: usize = 256;
/// Bytes read from one file of a fuzzed filesystem.
const FILE_BUDGET: usize = 64 << 10;

fn disk(data: &[u8]) -> Disk {
    Disk::new(Arc::new(MemImage(data.to_vec())))
}

fn whole(data: &[u8]) -> Region {
    disk(data).view(0, data.len() as u64)
}

/// The input as a disk: GPT header parsing (primary at 512 and 4096 bytes per sector, and the backup), then the
/// whole table read with its layout checks.
pub fn gpt(data: &[u8]) {
    for sector in [512usize, 4096] {
        if let Some(s) = data.get(sector..sector * 2) {
            let _ = gpt::parse_header(s);
        }
    }
    let d = disk(data);
    let lba0 = mbr::parse_lba0(data.get(..512).unwrap_or(data));
    let _ = gpt::read(&d, &lba0);
    let _ = read_table(&d);
}

/// The input as a disk: the MBR and its chain of extended boot records, then the whole table with layout checks.
pub fn mbr(data: &[u8]) {
    let d = disk(data);
    let lba0 = mbr::parse_lba0(data.get(..512).unwrap_or(data));
    let _ = lba0.is_volume_boot_record(data);
    let _ = mbr::read(&d, &lba0);
    let _ = read_table(&d);
}

/// The input as a partition: the filesystem probe (every signature), then, for a filesystem imgport reads files
/// from, a walk of its tree reading directories, links and the start of each file.
pub fn filesystem(data: &[u8]) {
    let mut region = whole(data);
    let Ok(Some(info)) = probe::probe(&mut region) else { return };
    let Ok(mut fs) = imgport_guest::fs::open(whole(data), &info) else { return };
    let _ = fs.free_bytes();
    walk_tree(fs.as_mut());
}

/// Block size and count of the sparse partition a `btrfs` input describes (256 MiB).
const BTRFS_BLOCK: usize = 4096;
const BTRFS_BLOCKS: u64 = 1 << 16;

/// A partition of zeros holding the blocks a `btrfs` input places in it.
struct SparseImage(BTreeMap<u64, Vec<u8>>);

impl DiskImage for SparseImage {
    fn virtual_size(&self) -> u64 {
        BTRFS_BLOCKS * BTRFS_BLOCK as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> imgport_disk::Result<()> {
        if offset.checked_add(buf.len() as u64).is_none_or(|e| e > self.virtual_size()) {
            return Err(imgport_disk::Error::corrupt("read past the end of the sparse partition"));
        }
        for (i, b) in buf.iter_mut().enumerate() {
            let at = offset + i as u64;
            let block = self.0.get(&(at / BTRFS_BLOCK as u64));
            *b = block.and_then(|d| d.get((at % BTRFS_BLOCK as u64) as usize)).copied().unwrap_or(0);
        }
        Ok(())
    }
    fn map(&self, offset: u64, length: u64) -> imgport_disk::Result<Vec<Extent>> {
        Ok(vec![Extent::data(offset, length, None)])
    }
    fn details(&self) -> ImageDetails {
        ImageDetails::new(imgport_disk::Format::Raw)
    }
    fn check(&self) -> imgport_disk::Result<CheckReport> {
        Ok(CheckReport::default())
    }
}

/// The input as a btrfs partition, given sparsely: records of a little-endian u32 block number (modulo 65 536)
/// followed by 4 KiB of data, placed in a 256 MiB partition of zeros. btrfs spreads its structures over megabytes
/// (the superblock at 64 KiB, the trees and data chunks further on), which a 64 KiB input could not hold whole; a
/// seed is a small mkfs.btrfs image with its all-zero blocks left out. Then everything a caller would do: open the
/// default subvolume and walk it, list the subvolumes, and open a few of them by id (walking them) and by path.
pub fn btrfs(data: &[u8]) {
    let mut blocks = BTreeMap::new();
    for record in data.chunks(4 + BTRFS_BLOCK) {
        let Some((number, body)) = record.split_first_chunk::<4>() else { break };
        let mut block = body.to_vec();
        block.resize(BTRFS_BLOCK, 0);
        blocks.insert(u64::from(u32::from_le_bytes(*number)) % BTRFS_BLOCKS, block);
    }
    let region = Disk::new(Arc::new(SparseImage(blocks))).view(0, BTRFS_BLOCKS * BTRFS_BLOCK as u64);
    let Ok(mut fs) = BtrfsFs::open(region.clone(), &Subvol::Default) else { return };
    walk_tree(&mut fs);
    let Ok(subvolumes) = fs.subvolumes() else { return };
    for s in subvolumes.iter().take(4) {
        if let Ok(mut sub) = BtrfsFs::open(region.clone(), &Subvol::Id(s.id)) {
            walk_tree(&mut sub);
        }
        let _ = BtrfsFs::open(region.clone(), &Subvol::Path(s.path.clone()));
    }
}

fn walk_tree(fs: &mut dyn GuestFs) {
    let mut pending = vec!["/".to_string()];
    let mut visited = 0;
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs.read_dir(&dir) else { continue };
        for entry in entries {
            visited += 1;
            if visited > WALK_BUDGET {
                return;
            }
            if entry.name == "." || entry.name == ".." {
                continue;
            }
            let path = if dir == "/" { format!("/{}", entry.name) } else { format!("{dir}/{}", entry.name) };
            let _ = fs.lstat(&path);
            let _ = fs.inode_flags(&path);
            match entry.file_type {
                FileType::Dir => pending.push(path),
                FileType::Symlink => {
                    let _ = fs.read_link(&path);
                }
                FileType::File => {
                    let _ = fs.read_file(&path, FILE_BUDGET);
                    let mut buf = [0u8; 512];
                    let _ = fs.read_at(&path, 4096, &mut buf);
                }
                FileType::Other => {}
            }
        }
    }
}

/// The input as a partition holding an LVM physical volume: the label scan, the metadata area header and the
/// volume group text it points to.
pub fn lvm(data: &[u8]) {
    use imgport_disk::DiskImage;
    use imgport_guest::lvm_layout::{LvImage, PvSource};
    let mut region = whole(data);
    let Some(pv) = imgport_guest::lvm::read_pv(&mut region, "fuzz") else { return };
    let Some(vg) = &pv.volume_group else { return };
    // Every PV of the group read from the input itself: the layouts' bounds checks meet any extent numbers.
    let disk = region.disk().clone();
    let sources: Vec<Option<PvSource>> =
        vg.pv_extents.iter().map(|_| Some(PvSource { disk: disk.clone(), start: 0, len: disk.size() })).collect();
    let mut buf = vec![0u8; 4096];
    for lv in &vg.lvs {
        let Ok(layout) = &lv.layout else { continue };
        let Some(img) = LvImage::new(&lv.name, vg.extent_size, vg.pv_extents.clone(), layout, sources.clone()) else {
            continue;
        };
        let size = img.virtual_size();
        for offset in [0, size / 2, size.saturating_sub(buf.len() as u64)] {
            let n = (size - offset.min(size)).min(buf.len() as u64) as usize;
            let _ = img.read_at(&mut buf[..n], offset);
        }
    }
}

/// The input as a registry hive file: the base block, then keys, subkey lists and values breadth first.
pub fn regf(data: &[u8]) {
    let Ok(mut hive) = Hive::open(data, data.len() as u64) else { return };
    let mut pending = vec![hive.root()];
    let mut visited = 0;
    while let Some(key) = pending.pop() {
        visited += 1;
        if visited > WALK_BUDGET {
            return;
        }
        let _ = hive.name(key);
        let _ = hive.values(key);
        let _ = hive.value(key, "ProductName");
        if let Ok(subkeys) = hive.subkeys(key) {
            pending.extend(subkeys.into_iter().map(|(_, off)| off));
        }
    }
    let _ = hive.open_path("Microsoft\\Windows NT\\CurrentVersion");
}

/// The input as an SQLite database file (the RPM database's format): the schema look-up the package reader
/// makes, then the rows of every b-tree rooted in the first pages, and a record decoded from the input as is.
pub fn sqlite(data: &[u8]) {
    let _ = sqlite::record(data);
    let Ok(db) = sqlite::Db::open(data) else { return };
    if let Ok(Some(root)) = db.table_root("Packages") {
        let _ = db.rows(root);
    }
    for page in 1..=16 {
        let _ = db.rows(page);
    }
}

/// The input as an initramfs file: cpio archives, plain or in gzip, xz, zstd or lz4 streams, with limits small
/// enough that a decompression bomb ends within the fuzzer's time budget.
pub fn initramfs(data: &[u8]) {
    let limits = initramfs::Limits { max_bytes: 32 << 20, max_entries: 10_000, max_name: 4096, max_capture: 1 << 20 };
    let _ = initramfs::read(data, limits);
}
