//! DetectionStrategy=Standard: the emulator's own server-side check of the system disk, from disk-level reads
//! only. Each problem becomes one `DetectionOptions.Items.Item` (Name, Value, RiskLevel); the import itself is
//! judged by the rules in [`super`], never by these items.

use super::partitions::{self, Role, Table};
use crate::ecs::Detection;
use imgport_disk::DiskImage;

pub(super) const PARTITION_TABLE: &str = "GUESTOS.PartitionTable";
pub(super) const BOOT_LOADER: &str = "GUESTOS.BootLoader";
pub(super) const FILESYSTEM: &str = "GUESTOS.Filesystem";

fn item(name: &str, value: String, level: &str) -> (String, String, String) {
    (name.to_string(), value, level.to_string())
}

/// The problems found on the system disk (empty when none).
pub(super) fn run(image: &dyn DiskImage, first_sector: Option<&[u8; 512]>, table: Option<&Table>) -> Detection {
    let Some(table) = table else {
        return vec![item(PARTITION_TABLE, "no MBR or GPT partition table was found".into(), "High")];
    };
    let mut found = Vec::new();
    let boot_code = first_sector.is_some_and(partitions::has_boot_code);
    let boot_partition = table.partitions.iter().any(|p| matches!(p.role, Role::EfiSystem | Role::BiosBoot));
    if !boot_code && !boot_partition {
        found.push(item(
            BOOT_LOADER,
            "the MBR holds no boot code and there is no EFI system or BIOS boot partition".into(),
            "High",
        ));
    }
    let unknown: Vec<String> = table
        .partitions
        .iter()
        .filter(|p| matches!(p.role, Role::Data | Role::EfiSystem))
        .filter(|p| partitions::filesystem(image, p).is_none())
        .map(|p| format!("partition {} (at byte {})", p.number, p.start))
        .collect();
    if !unknown.is_empty() {
        found.push(item(
            FILESYSTEM,
            format!("no ext2/3/4, XFS, Btrfs, NTFS, FAT, swap or LVM signature on {}", unknown.join(", ")),
            "Medium",
        ));
    }
    found
}
