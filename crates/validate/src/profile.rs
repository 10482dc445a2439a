//! Target profiles: what each cloud's image import accepts, as data the checks consult.

use crate::checks::CheckId::{self, *};
use crate::finding::Severity::{self, Error, Info, Warning};
use imgport_disk::Format;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    #[default]
    Alibaba,
    Aws,
    Azure,
    Gce,
}

impl Target {
    pub const ALL: [Target; 4] = [Target::Alibaba, Target::Aws, Target::Azure, Target::Gce];
    pub fn name(self) -> &'static str {
        match self {
            Target::Alibaba => "alibaba",
            Target::Aws => "aws",
            Target::Azure => "azure",
            Target::Gce => "gce",
        }
    }
    pub fn profile(self) -> &'static Profile {
        match self {
            Target::Alibaba => &ALIBABA,
            Target::Aws => &AWS,
            Target::Azure => &AZURE,
            Target::Gce => &GCE,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "alibaba" | "aliyun" | "ecs" => Ok(Target::Alibaba),
            "aws" | "ec2" => Ok(Target::Aws),
            "azure" => Ok(Target::Azure),
            "gce" | "gcp" => Ok(Target::Gce),
            _ => Err(format!("unknown target '{s}' (expected alibaba, aws, azure or gce)")),
        }
    }
}

/// Boot firmware a target can start the image with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Firmware {
    Bios,
    Uefi,
}

/// A container the target imports: a format, optionally limited to some subformats, and how bad other
/// subformats are.
#[derive(Debug, Clone, Copy)]
pub struct ContainerRule {
    pub format: Format,
    /// Accepted subformats as `ImageDetails::subformat` spells them; `None` accepts all.
    pub subformats: Option<&'static [&'static str]>,
    /// Severity when the format is used at all (e.g. Alibaba's VMDK "on request"): `None` for fully supported.
    pub caveat: Option<(Severity, &'static str)>,
}

#[derive(Debug)]
pub struct Profile {
    pub target: Target,
    /// Human name of the import service.
    pub service: &'static str,
    pub containers: &'static [ContainerRule],
    /// What to convert to when the container is not accepted (an imgport command line tail).
    pub convert_hint: &'static str,
    /// Hard virtual size limits in bytes (inclusive), checked against the size rounded up to whole GiB.
    pub size_limit: Option<(u64, u64)>,
    /// Outside this range the size is legal but unusual: an info note.
    pub size_note: Option<(u64, u64, &'static str)>,
    /// The VHD virtual size must be a whole number of MiB.
    pub vhd_whole_mib: bool,
    /// The VHD footer's current size must be the size every reader sees (CHS geometry agrees, file length fits).
    pub vhd_exact_size: bool,
    pub firmware: &'static [Firmware],
    /// UEFI boot needs the removable-media fallback loader (\EFI\BOOT\BOOTX64.EFI), not only a distro loader.
    pub uefi_needs_fallback: bool,
    /// arm64 images boot only with UEFI.
    pub arm64_needs_uefi: bool,
    /// Architectures as the guest report names them.
    pub architectures: &'static [&'static str],
    /// Root filesystems accepted without a warning; empty accepts any Linux filesystem.
    pub root_filesystems: &'static [&'static str],
    /// Kernel drivers the guest must be able to load at boot, with the severity when one is missing.
    pub boot_drivers: &'static [(CheckId, &'static [&'static str], Severity)],
    /// Severity of a failure of each check; checks absent here are not run for this target.
    pub checks: &'static [(CheckId, Severity)],
    /// fstab entries naming /dev/sdX-style devices.
    pub fstab_device_names: Severity,
    /// Root on an LVM logical volume (a volume group spanning disks is always an error).
    pub lvm_root: Severity,
    /// ext4 `64bit` feature (Alibaba's old check tool); `None` ignores it.
    pub ext4_64bit: Option<Severity>,
    /// Agents that should be present: (report name, human name); any one of them satisfies the check.
    pub provisioning_agents: &'static [(&'static str, &'static str)],
    /// Oldest cloud-init the target's datasource works with; older ones get a warning.
    pub cloud_init_min: Option<&'static str>,
}

const GIB: u64 = 1 << 30;

impl Profile {
    pub fn severity(&self, id: CheckId) -> Option<Severity> {
        self.checks.iter().find(|(c, _)| *c == id).map(|(_, s)| *s)
    }
    pub fn allows(&self, fw: Firmware) -> bool {
        self.firmware.contains(&fw)
    }
}

const VIRTIO: (CheckId, &[&str], Severity) = (Virtio, &["virtio_blk", "virtio_pci", "virtio_net"], Error);

pub static ALIBABA: Profile = Profile {
    target: Target::Alibaba,
    service: "Alibaba Cloud ECS ImportImage",
    containers: &[
        ContainerRule { format: Format::Raw, subformats: None, caveat: None },
        ContainerRule { format: Format::Qcow2, subformats: None, caveat: None },
        ContainerRule { format: Format::Vhd, subformats: None, caveat: None },
        ContainerRule {
            format: Format::Vmdk,
            subformats: None,
            caveat: Some((Warning, "ECS imports VMDK only on request; RAW, QCOW2 or VHD always work")),
        },
    ],
    convert_hint: "-O qcow2",
    size_limit: Some((GIB, 2048 * GIB)),
    size_note: Some((
        5 * GIB,
        500 * GIB,
        "older ImportImage docs and Packer allow 5-500 GiB for a system disk; 40-500 GiB is recommended",
    )),
    vhd_whole_mib: false,
    vhd_exact_size: true,
    firmware: &[Firmware::Bios, Firmware::Uefi],
    uefi_needs_fallback: false,
    arm64_needs_uefi: true,
    architectures: &["x86_64", "aarch64", "i386"],
    root_filesystems: &["ext2", "ext3", "ext4", "xfs"],
    boot_drivers: &[VIRTIO, (Nvme, &["nvme"], Warning)],
    checks: &[
        (Container, Error),
        (Size, Error),
        (VhdAlignment, Error),
        (PartitionTable, Error),
        (BootMode, Error),
        (RootFilesystem, Error),
        (Ext4Features, Warning),
        (Lvm, Error),
        (RootLast, Warning),
        (Swap, Warning),
        (Os, Warning),
        (Architecture, Error),
        (Kernel, Error),
        (Virtio, Error),
        (Nvme, Warning),
        (Fstab, Error),
        (Grub, Error),
        (Network, Warning),
        (CloudInit, Warning),
        (QemuGuestAgent, Warning),
        (Selinux, Warning),
        (Shadow, Error),
        (LibSymlinks, Warning),
        (Sshd, Warning),
        (Usage, Warning),
        (HypervisorTools, Warning),
        (WindowsDrivers, Error),
    ],
    fstab_device_names: Warning,
    lvm_root: Warning,
    ext4_64bit: Some(Info),
    provisioning_agents: &[("cloud_init", "cloud-init")],
    // ECS's Alibaba Cloud datasource needs 19.1.3 or later (the ImportImage documentation).
    cloud_init_min: Some("19.1.3"),
};

pub static AWS: Profile = Profile {
    target: Target::Aws,
    service: "AWS VM Import/Export",
    containers: &[
        ContainerRule { format: Format::Raw, subformats: None, caveat: None },
        ContainerRule { format: Format::Vhd, subformats: None, caveat: None },
        ContainerRule { format: Format::Vhdx, subformats: None, caveat: None },
        ContainerRule { format: Format::Vmdk, subformats: Some(&["streamOptimized"]), caveat: None },
    ],
    convert_hint: "-O vmdk -o subformat=streamOptimized",
    size_limit: Some((GIB, 8 << 40)),
    size_note: None,
    vhd_whole_mib: false,
    vhd_exact_size: false,
    firmware: &[Firmware::Bios, Firmware::Uefi],
    uefi_needs_fallback: true,
    arm64_needs_uefi: true,
    architectures: &["x86_64", "aarch64"],
    root_filesystems: &["ext2", "ext3", "ext4", "xfs", "btrfs", "jfs"],
    boot_drivers: &[(Nvme, &["nvme"], Warning)],
    checks: &[
        (Container, Error),
        (Size, Error),
        (PartitionTable, Error),
        (BootMode, Error),
        (RootFilesystem, Error),
        (Ext4Features, Warning),
        (Lvm, Error),
        (RootLast, Info),
        (Swap, Info),
        (Os, Warning),
        (Architecture, Error),
        (Kernel, Error),
        (Nvme, Warning),
        (Fstab, Error),
        (Grub, Error),
        (Network, Warning),
        (CloudInit, Info),
        (Sshd, Warning),
        (Usage, Warning),
        (HypervisorTools, Warning),
    ],
    fstab_device_names: Info,
    lvm_root: Info,
    ext4_64bit: None,
    provisioning_agents: &[("cloud_init", "cloud-init")],
    cloud_init_min: None,
};

pub static AZURE: Profile = Profile {
    target: Target::Azure,
    service: "Azure managed image / disk upload",
    containers: &[ContainerRule { format: Format::Vhd, subformats: Some(&["fixed"]), caveat: None }],
    convert_hint: "-O vhd -o subformat=fixed",
    size_limit: Some((GIB, 1023 * GIB)),
    size_note: None,
    vhd_whole_mib: true,
    vhd_exact_size: true,
    firmware: &[Firmware::Bios, Firmware::Uefi],
    uefi_needs_fallback: false,
    arm64_needs_uefi: true,
    architectures: &["x86_64", "aarch64"],
    root_filesystems: &[],
    boot_drivers: &[(Hyperv, &["hv_vmbus", "hv_storvsc", "hv_netvsc"], Error)],
    checks: &[
        (Container, Error),
        (Size, Error),
        (VhdAlignment, Error),
        (PartitionTable, Error),
        (BootMode, Error),
        (RootFilesystem, Error),
        (Ext4Features, Warning),
        (Lvm, Error),
        (RootLast, Info),
        (Swap, Warning),
        (Os, Warning),
        (Architecture, Error),
        (Kernel, Error),
        (Hyperv, Error),
        (Fstab, Error),
        (Grub, Error),
        (Network, Warning),
        (CloudInit, Warning),
        (Sshd, Warning),
        (Usage, Warning),
        (HypervisorTools, Warning),
    ],
    fstab_device_names: Warning,
    lvm_root: Warning,
    ext4_64bit: None,
    provisioning_agents: &[("waagent", "the Azure Linux agent (waagent)"), ("cloud_init", "cloud-init")],
    cloud_init_min: None,
};

pub static GCE: Profile = Profile {
    target: Target::Gce,
    service: "Google Compute Engine image import",
    containers: &[ContainerRule { format: Format::Raw, subformats: None, caveat: None }],
    convert_hint: "-O raw",
    size_limit: None,
    size_note: None,
    vhd_whole_mib: false,
    vhd_exact_size: false,
    firmware: &[Firmware::Bios, Firmware::Uefi],
    uefi_needs_fallback: false,
    arm64_needs_uefi: true,
    architectures: &["x86_64", "aarch64"],
    root_filesystems: &[],
    boot_drivers: &[(Virtio, &["virtio_scsi", "virtio_pci", "virtio_net"], Error)],
    checks: &[
        (Container, Error),
        (Size, Error),
        (PartitionTable, Error),
        (BootMode, Error),
        (RootFilesystem, Error),
        (Ext4Features, Warning),
        (Lvm, Error),
        (RootLast, Info),
        (Swap, Info),
        (Os, Warning),
        (Architecture, Error),
        (Kernel, Error),
        (Virtio, Error),
        (Fstab, Error),
        (Grub, Error),
        (Network, Warning),
        (CloudInit, Info),
        (Sshd, Warning),
        (Usage, Warning),
        (HypervisorTools, Warning),
        (WindowsDrivers, Error),
    ],
    fstab_device_names: Info,
    lvm_root: Info,
    ext4_64bit: None,
    provisioning_agents: &[("cloud_init", "cloud-init")],
    cloud_init_min: None,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_names_each_check_once() {
        for t in Target::ALL {
            let p = t.profile();
            assert_eq!(p.target, t);
            for (i, (id, _)) in p.checks.iter().enumerate() {
                assert!(!p.checks[..i].iter().any(|(o, _)| o == id), "{t}: {id} twice");
            }
            for (id, _, _) in p.boot_drivers {
                assert!(p.severity(*id).is_some(), "{t}: driver check {id} not in the table");
            }
        }
    }

    #[test]
    fn target_names_round_trip() {
        for t in Target::ALL {
            assert_eq!(t.name().parse::<Target>(), Ok(t));
        }
        assert!("openstack".parse::<Target>().is_err());
    }
}
