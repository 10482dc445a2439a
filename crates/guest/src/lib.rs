//! Offline guest inspection: reads the guest inside a disk image through [`imgport_disk::DiskImage`] (any
//! container format) without booting it, mounting it or needing root.
//!
//! - [`reader`]: byte-range views of the virtual disk with a small block cache and a count of bytes read.
//! - [`partition`]: MBR and GPT tables; damage becomes [`Finding`]s.
//! - [`probe`]: filesystem and volume signatures with label, UUID, size and usage.
//! - [`lvm`]: LVM physical volumes with their volume group metadata (logical volume contents are not read).
//! - [`fs`]: file access to ext2/3/4, XFS, FAT and NTFS behind [`fs::GuestFs`]; [`vfs`] adds mounts and symlinks.
//! - [`linux`]: guest facts from a Linux root; [`initramfs`] and [`drivers`] (boot drivers per kernel), [`grub`],
//!   [`network`], [`packages`] (dpkg, RPM through [`sqlite`]) and [`system`] (root account, /etc/shadow flags,
//!   /lib links, sshd) add to them.
//! - [`windows`]: facts from a Windows systemroot, with the registry read by [`regf`].
//! - [`inspect()`] puts everything together.
//!
//! The parsers report [`Error`]s with a stable [`ErrorKind`], the structure and, where known, the offset.

pub mod bytes;
pub mod drivers;
pub mod error;
pub mod finding;
pub mod fs;
pub mod grub;
pub mod initramfs;
pub mod inspect;
pub mod linux;
pub mod lvm;
pub mod lvm_layout;
pub mod network;
pub mod packages;
pub mod partition;
pub mod probe;
pub mod reader;
pub mod regf;
pub mod sqlite;
pub mod system;
pub mod vfs;
pub mod windows;

pub use error::{Error, ErrorKind};
pub use finding::{Finding, Severity};
pub use inspect::{inspect, inspect_disks, inspect_with, InitramfsScope, Inspection, Options};

#[cfg(test)]
mod hostile_tests {
    use crate::reader::tests::mem_disk;

    /// xorshift64*: deterministic noise without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    fn disk_image(rng: &mut Rng) -> crate::reader::tests::MemDisk {
        crate::reader::tests::MemDisk((0..(96 << 10) / 8).flat_map(|_| rng.next().to_le_bytes()).collect())
    }

    /// Random bytes with each known signature planted: the table parsers and probes must not panic (debug builds
    /// trap arithmetic overflow) whatever the fields hold.
    #[test]
    fn random_fields_behind_real_signatures_never_panic() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let plants: &[(usize, &[u8])] = &[
            (512, b"EFI PART"),
            (4096, b"EFI PART"),
            (1024 + 56, &[0x53, 0xEF]),
            (0, b"XFSB"),
            (3, b"NTFS    "),
            (0, b"LUKS\xba\xbe"),
            (512, b"LABELONE"),
            (4086, b"SWAPSPACE2"),
            (0x10040, b"_BHRfS_M"),
            (0x8001, b"CD001"),
            (82, b"FAT32"),
        ];
        for round in 0..3000u32 {
            let mut d: Vec<u8> = (0..(96 << 10) / 8).flat_map(|_| rng.next().to_le_bytes()).collect();
            let (at, magic) = plants[round as usize % plants.len()];
            d[at..at + magic.len()].copy_from_slice(magic);
            if round % 2 == 0 {
                d[510] = 0x55;
                d[511] = 0xAA;
                d[0] = 0xEB;
            }
            if round % 3 == 0 {
                d[446 + 4] = 0xEE;
            }
            // Let some GPT headers pass their CRC, and some ext superblocks their block-size check, so the
            // fields behind them are used.
            if magic == b"EFI PART" && round % 4 < 2 {
                let h = at;
                d[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
                d[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
                d[h + 80..h + 84].copy_from_slice(&(rng.next() as u32 % 300).to_le_bytes());
                d[h + 16..h + 20].fill(0);
                let crc = crc32fast::hash(&d[h..h + 92]);
                d[h + 16..h + 20].copy_from_slice(&crc.to_le_bytes());
            }
            if at == 1024 + 56 {
                d[1024 + 24..1024 + 28].copy_from_slice(&(rng.next() as u32 % 4).to_le_bytes());
            }
            let disk = mem_disk(d);
            let _ = crate::partition::read_table(&disk);
            let mut region = disk.view(0, disk.size());
            if let Ok(Some(info)) = crate::probe::probe(&mut region) {
                if let Ok(mut fs) = crate::fs::open(region, &info) {
                    let _ = fs.read_dir("/");
                    let _ = fs.read_file("/etc/os-release", 4096);
                }
            }
            if round % 10 == 0 {
                let _ = crate::inspect::inspect(std::sync::Arc::new(disk_image(&mut rng)));
            }
        }
    }
}
