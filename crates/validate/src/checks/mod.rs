//! The check catalogue. Each check looks at the inspection report (and the few extra facts of
//! [`crate::facts`]), applies the target profile's rule, and reports a pass, one failure per problem, or
//! `not_checked` with what it would need.
//!
//! [`CheckId`] is the one table of checks: its ids, their report order ([`CheckId::ALL`]) and, in
//! [`CheckId::run`], the function behind each. The checks themselves live by concern: [`container`] (the image
//! file), [`layout`] (partitions, filesystems, LVM), [`boot`] (boot mode, kernel, drivers, GRUB), [`os`] (the
//! operating system and architecture), [`linux`] and [`windows`] (the guest's configuration).

mod boot;
mod container;
mod layout;
mod linux;
mod os;
mod windows;

use crate::facts::{Fact, GuestExtras};
use crate::finding::{Finding, Severity};
use crate::profile::Profile;
use imgport_disk::ImageDetails;
use imgport_guest::inspect::{OperatingSystem, Volume};
use imgport_guest::lvm::PhysicalVolume;
use imgport_guest::probe::FsKind;
use imgport_guest::Inspection;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// Declares [`CheckId`] with its ids and [`CheckId::ALL`] from one list, so the two cannot drift apart.
macro_rules! check_ids {
    ($($(#[$doc:meta])* $variant:ident => $id:literal,)*) => {
        /// A check, serialised as its stable kebab-case id ("fstab", "boot-mode", ...).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        pub enum CheckId {
            // Serialised from the same literal `name` returns: the id is written once.
            $($(#[$doc])* #[serde(rename = $id)] $variant,)*
        }

        impl CheckId {
            /// Every check, in report order.
            pub const ALL: &'static [CheckId] = &[$(CheckId::$variant,)*];

            /// The stable id, as reports and profiles spell it.
            pub fn name(self) -> &'static str {
                match self {
                    $(CheckId::$variant => $id,)*
                }
            }
        }
    };
}

check_ids! {
    /// The container format and its state (backing file, dirty or corrupt flags, snapshots).
    Container => "container",
    Size => "size",
    VhdAlignment => "vhd-alignment",
    PartitionTable => "partition-table",
    BootMode => "boot-mode",
    RootFilesystem => "root-filesystem",
    Ext4Features => "ext4-features",
    Lvm => "lvm",
    RootLast => "root-last",
    Swap => "swap",
    Os => "os",
    Architecture => "architecture",
    Kernel => "kernel",
    /// Boot drivers a profile lists under this id (see [`Profile::boot_drivers`]).
    Virtio => "virtio",
    Nvme => "nvme",
    Hyperv => "hyperv",
    Fstab => "fstab",
    Grub => "grub",
    Network => "network",
    CloudInit => "cloud-init",
    QemuGuestAgent => "qemu-guest-agent",
    Selinux => "selinux",
    Shadow => "shadow",
    LibSymlinks => "lib-symlinks",
    Sshd => "sshd",
    Usage => "usage",
    HypervisorTools => "hypervisor-tools",
    WindowsDrivers => "windows-drivers",
}

impl CheckId {
    /// The findings of this check under `profile`, at severity `sev` for its main failure.
    pub fn run(self, profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
        match self {
            CheckId::Container => container::container(profile, s, sev),
            CheckId::Size => container::size(profile, s, sev),
            CheckId::VhdAlignment => container::vhd_alignment(profile, s, sev),
            CheckId::PartitionTable => layout::partition_table(s, sev),
            CheckId::BootMode => boot::boot_mode(profile, s, sev),
            CheckId::RootFilesystem => layout::root_filesystem(profile, s, sev),
            CheckId::Ext4Features => layout::ext4_features(profile, s, sev),
            CheckId::Lvm => layout::lvm(profile, s, sev),
            CheckId::RootLast => layout::root_last(s, sev),
            CheckId::Swap => layout::swap(s, sev),
            CheckId::Os => os::os_check(profile, s, sev),
            CheckId::Architecture => os::architecture(profile, s, sev),
            CheckId::Kernel => boot::kernel(s, sev),
            CheckId::Virtio | CheckId::Nvme | CheckId::Hyperv => boot::drivers(profile, s, self),
            CheckId::Fstab => linux::fstab(profile, s, sev),
            CheckId::Grub => boot::grub(s, sev),
            CheckId::Network => linux::network(s, sev),
            CheckId::CloudInit => linux::cloud_init(profile, s, sev),
            CheckId::QemuGuestAgent => linux::qemu_guest_agent(s, sev),
            CheckId::Selinux => linux::selinux(s, sev),
            CheckId::Shadow => linux::shadow(s, sev),
            CheckId::LibSymlinks => linux::lib_symlinks(s, sev),
            CheckId::Sshd => linux::sshd(s, sev),
            CheckId::Usage => layout::usage(s, sev),
            CheckId::HypervisorTools => linux::hypervisor_tools(s, sev),
            CheckId::WindowsDrivers => windows::windows_drivers(s, sev),
        }
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for CheckId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        CheckId::ALL.iter().copied().find(|c| c.name() == s).ok_or_else(|| {
            let known: Vec<&str> = CheckId::ALL.iter().map(|c| c.name()).collect();
            format!("unknown check '{s}' (known checks: {})", known.join(", "))
        })
    }
}

impl PartialEq<str> for CheckId {
    fn eq(&self, other: &str) -> bool {
        self.name() == other
    }
}

impl PartialEq<&str> for CheckId {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Everything the checks look at.
pub struct Subject<'a> {
    pub inspection: &'a Inspection,
    pub details: &'a ImageDetails,
    /// Length of the image file, where known (a fixed VHD's footer must sit right after the data).
    pub file_size: Option<u64>,
    pub extras: &'a GuestExtras,
}

/// Which kind of guest the checks are looking at.
enum Guest<'a> {
    Linux(&'a OperatingSystem),
    Windows(&'a OperatingSystem),
    /// No operating system could be read; the reason says what stood in the way.
    Unknown(String),
}

impl<'a> Subject<'a> {
    /// The LVM physical volumes the inspection read.
    fn physical_volumes(&self) -> &'a [PhysicalVolume] {
        &self.inspection.lvm
    }
    fn os(&self) -> Option<&'a OperatingSystem> {
        self.inspection.operating_systems.first()
    }
    fn guest(&self) -> Guest<'a> {
        match self.os() {
            Some(os) if os.os_type == "windows" => Guest::Windows(os),
            Some(os) => Guest::Linux(os),
            None => Guest::Unknown(self.no_root_reason()),
        }
    }
    fn volume(&self, device: &str) -> Option<&'a Volume> {
        self.inspection.volumes.iter().find(|v| v.device == device)
    }
    fn root_volume(&self) -> Option<&'a Volume> {
        self.os().and_then(|os| self.volume(&os.root))
    }
    /// The volume holding the root: the root's own, or for a btrfs subvolume the btrfs's (a partition or an LV).
    fn root_holder(&self) -> Option<&'a Volume> {
        let root = self.root_volume()?;
        match &root.btrfs_subvolume {
            Some(b) => self.volume(&b.filesystem),
            None => Some(root),
        }
    }
    fn has_fs(&self, kind: FsKind) -> bool {
        self.inspection.volumes.iter().any(|v| v.filesystem.as_ref().is_some_and(|f| f.kind == kind))
    }
    fn lvm_summary(&self) -> String {
        let mut groups: Vec<String> = Vec::new();
        for pv in self.physical_volumes() {
            if let Some(vg) = &pv.volume_group {
                let s = format!("{} ({})", vg.name, vg.logical_volumes.join(", "));
                if !groups.contains(&s) {
                    groups.push(s);
                }
            }
        }
        if groups.is_empty() {
            "an LVM physical volume".into()
        } else {
            format!("LVM volume group {}", groups.join("; "))
        }
    }
    fn no_root_reason(&self) -> String {
        let has_pv = !self.physical_volumes().is_empty() || self.has_fs(FsKind::Lvm2Member);
        if let Some((v, e)) = self.unreadable_linux_fs().first() {
            format!(
                "the {} filesystem on {} could not be read ({e})",
                v.filesystem.as_ref().map_or("", |f| f.kind.blkid_name()),
                v.device
            )
        } else if let Some(v) = self.encrypted_volumes().first() {
            format!("the root is probably on the encrypted (LUKS) volume {}, which cannot be read offline", v.device)
        } else if let Some((v, e)) = self.unreadable_logical_volumes().first() {
            format!(
                "the root filesystem is probably inside {}: {} could not be read ({e})",
                self.lvm_summary(),
                v.device
            )
        } else if has_pv {
            format!("no logical volume of {} holds a Linux root", self.lvm_summary())
        } else if self.has_fs(FsKind::Ntfs) {
            "the disk holds NTFS: Windows guests are not read yet (needs the registry reader)".into()
        } else if self.has_fs(FsKind::Btrfs) {
            "no subvolume of the btrfs on the disk holds a Linux root (no /etc, /bin and /etc/fstab or /etc/hosts)"
                .into()
        } else {
            "no Linux root filesystem was found (no volume with /etc, /bin and /etc/fstab or /etc/hosts)".into()
        }
    }
    /// ext2/3/4, XFS and btrfs volumes whose files could not be read, with the reason.
    fn unreadable_linux_fs(&self) -> Vec<(&'a Volume, &'a str)> {
        self.inspection
            .volumes
            .iter()
            .filter(|v| {
                v.filesystem.as_ref().is_some_and(|f| f.kind.is_ext() || matches!(f.kind, FsKind::Xfs | FsKind::Btrfs))
            })
            .filter_map(|v| v.error.as_deref().map(|e| (v, e)))
            .collect()
    }
    /// Logical volumes that could not be read (thin, RAID, on a disk not given), with the reason.
    fn unreadable_logical_volumes(&self) -> Vec<(&'a Volume, &'a str)> {
        self.inspection
            .volumes
            .iter()
            .filter(|v| v.logical_volume.is_some())
            .filter_map(|v| v.error.as_deref().map(|e| (v, e)))
            .collect()
    }
    /// LUKS volumes: partitions, whole disks or logical volumes.
    fn encrypted_volumes(&self) -> Vec<&'a Volume> {
        self.inspection
            .volumes
            .iter()
            .filter(|v| v.filesystem.as_ref().is_some_and(|f| f.kind == FsKind::CryptoLuks))
            .collect()
    }
    /// A root that may exist but could not be read (an LV that is not read, NTFS, a filesystem feature the
    /// readers do not support) rather than no root at all, or a damaged one. Encrypted volumes are not among
    /// them: they are a blocker of their own.
    fn root_unreadable_kind(&self) -> bool {
        !self.unreadable_logical_volumes().is_empty()
            || (self.has_fs(FsKind::Lvm2Member) && self.physical_volumes().is_empty())
            || self.has_fs(FsKind::Ntfs)
            || self.unreadable_linux_fs().iter().any(|(_, e)| e.starts_with("unsupported"))
    }
    /// Which check reports a finding of the inspection.
    fn route(&self, f: &imgport_guest::Finding) -> Route {
        if f.structure == "boot" || f.structure.starts_with("esp ") {
            return Route::Boot;
        }
        if f.structure.starts_with("volume ") {
            return Route::PartitionTable;
        }
        // Volume groups and logical volumes: the LVM check reads them from the inspection itself.
        if f.structure.starts_with("lvm ") {
            return Route::Lvm;
        }
        let device = f.structure.rsplit(' ').next().unwrap_or("");
        match self.volume(device) {
            Some(v) if v.mountpoint.as_deref() == Some("/") => Route::RootFs,
            Some(_) if self.os().is_none() => Route::RootFs,
            Some(v) if v.mountpoint.is_some() => Route::Fstab,
            _ => Route::PartitionTable,
        }
    }
    fn findings_for(&self, route: Route) -> impl Iterator<Item = &'a imgport_guest::Finding> + '_ {
        self.inspection.findings.iter().filter(move |f| self.route(f) == route)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    PartitionTable,
    Lvm,
    Boot,
    RootFs,
    Fstab,
}

fn debian_like(os: &OperatingSystem) -> bool {
    let r = &os.release;
    matches!(r.distro.as_deref(), Some("debian" | "ubuntu")) || r.id_like.iter().any(|i| i == "debian" || i == "ubuntu")
}

fn human(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else if bytes >= GIB {
        format!("{:.2} GiB", bytes as f64 / GIB as f64)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= MIB {
        format!("{:.2} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} bytes")
    }
}

/// Run every check the profile lists, in catalogue order.
pub fn run(profile: &Profile, s: &Subject) -> Vec<Finding> {
    CheckId::ALL.iter().filter_map(|&id| Some(id.run(profile, s, profile.severity(id)?))).flatten().collect()
}

/// Linux checks run only on a Linux guest; without a readable root they are `not_checked`.
fn linux_guest<'a>(s: &Subject<'a>, id: CheckId) -> Result<&'a OperatingSystem, Vec<Finding>> {
    match s.guest() {
        Guest::Linux(os) => Ok(os),
        Guest::Windows(_) => Err(Vec::new()),
        Guest::Unknown(_) => {
            Err(vec![Finding::not_checked(id, "needs the root filesystem, which was not read (see root-filesystem)")])
        }
    }
}

fn pending<T>(id: CheckId, s: &Subject, fact: &Fact<T>, what: &str) -> Result<(), Vec<Finding>> {
    linux_guest(s, id)?;
    match fact {
        Fact::Known(_) => Ok(()),
        Fact::Unknown(why) => Err(vec![Finding::not_checked(id, format!("{what}: cannot check: {why}"))]),
    }
}

fn agent<'a>(os: &'a OperatingSystem, name: &str) -> Option<&'a imgport_guest::linux::Agent> {
    os.agents.iter().find(|a| a.name == name && a.present)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialise_as_their_names_in_report_order() {
        let mut seen = Vec::new();
        for (i, id) in CheckId::ALL.iter().enumerate() {
            assert_eq!(*id as usize, i, "{id} out of order");
            assert_eq!(serde_json::to_value(id).unwrap(), id.name());
            assert_eq!(id.name().parse::<CheckId>(), Ok(*id));
            assert!(!seen.contains(&id.name()), "{id} twice");
            seen.push(id.name());
        }
        assert_eq!(CheckId::ALL.len(), 28);
        let e = "fstab-typo".parse::<CheckId>().unwrap_err();
        assert!(e.contains("unknown check 'fstab-typo'") && e.contains("windows-drivers"), "{e}");
        assert_eq!(format!("{:<8}|", CheckId::Os), "os      |");
    }
}
