//! What a partition is for, from its MBR type byte or GPT type GUID.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionRole {
    Esp,
    BiosBoot,
    /// Linux filesystem data, root, /home, /srv, extended boot (XBOOTLDR).
    Linux,
    Swap,
    Lvm,
    Raid,
    Luks,
    MicrosoftBasicData,
    MicrosoftReserved,
    WindowsRecovery,
    /// A FAT partition marked by an MBR type (0x01, 0x04, 0x06, 0x0b, 0x0c, 0x0e).
    Fat,
    /// The MBR extended partition (container of logical partitions).
    Extended,
    /// The 0xEE entry of a protective or hybrid MBR.
    GptProtective,
    Unknown,
}

pub fn mbr_type(t: u8) -> (PartitionRole, &'static str) {
    use PartitionRole::*;
    match t {
        0x83 => (Linux, "Linux"),
        0x82 => (Swap, "Linux swap"),
        0x8e => (Lvm, "Linux LVM"),
        0xfd => (Raid, "Linux RAID autodetect"),
        0xef => (Esp, "EFI System"),
        0x07 => (MicrosoftBasicData, "HPFS/NTFS/exFAT"),
        0x27 => (WindowsRecovery, "Hidden NTFS WinRE"),
        0x01 => (Fat, "FAT12"),
        0x04 | 0x06 | 0x0e => (Fat, "FAT16"),
        0x0b | 0x0c => (Fat, "W95 FAT32"),
        0x05 | 0x0f | 0x85 => (Extended, "Extended"),
        0xee => (GptProtective, "GPT protective"),
        _ => (Unknown, "unknown"),
    }
}

pub fn gpt_type(guid: &str) -> (PartitionRole, &'static str) {
    use PartitionRole::*;
    match guid {
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" => (Esp, "EFI System"),
        "21686148-6449-6E6F-744E-656564454649" => (BiosBoot, "BIOS boot"),
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4" => (Linux, "Linux filesystem"),
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" => (Linux, "Linux root (x86-64)"),
        "44479540-F297-41B2-9AF7-D131D5F0458A" => (Linux, "Linux root (x86)"),
        "B921B045-1DF0-41C3-AF44-4C6F280D3FAE" => (Linux, "Linux root (ARM-64)"),
        "8484680C-9521-48C6-9C11-B0720656F69E" => (Linux, "Linux /usr (x86-64)"),
        "B0E01050-EE5F-4390-949A-9101B17104E9" => (Linux, "Linux /usr (ARM-64)"),
        "933AC7E1-2EB4-4F13-B844-0E14E2AEF915" => (Linux, "Linux /home"),
        "3B8F8425-20E0-4F3B-907F-1A25A76F98E8" => (Linux, "Linux /srv"),
        "BC13C2FF-59E6-4262-A352-B275FD6F7172" => (Linux, "Linux extended boot"),
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" => (Swap, "Linux swap"),
        "E6D6D379-F507-44C2-A23C-238F2A3DF928" => (Lvm, "Linux LVM"),
        "A19D880F-05FC-4D3B-A006-743F0F84911E" => (Raid, "Linux RAID"),
        "CA7D7CCB-63ED-4C53-861C-1742536059CC" => (Luks, "Linux LUKS"),
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" => (MicrosoftBasicData, "Microsoft basic data"),
        "E3C9E316-0B5C-4DB8-817D-F92DF00215AE" => (MicrosoftReserved, "Microsoft reserved"),
        "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC" => (WindowsRecovery, "Windows recovery environment"),
        _ => (Unknown, "unknown"),
    }
}
