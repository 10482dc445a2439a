//! Whole-image inspection: partition table, every volume's filesystem, the Linux root(s) with their facts, and
//! the boot modes the disk supports.

use crate::finding::{Finding, Severity};
use crate::fs::{self, FileType, GuestFs};
use crate::linux::{self, Agent, Architecture, FstabEntry, Kernel, OsRelease, Selinux};
use crate::partition::{self, PartitionRole, PartitionTable, TableKind};
use crate::probe::{self, FsInfo};
use crate::reader::{Disk, Region};
use crate::vfs::Vfs;
use imgport_disk::{DiskImage, Format, Result};
use serde::Serialize;
use std::sync::Arc;

/// One volume (a partition, or the whole disk when it has no table) and what it holds.
#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    /// "/dev/sda1" style name, as the guest would see the disk as its first SCSI/SATA disk.
    pub device: String,
    /// Partition number, absent for a whole-disk volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    pub start: u64,
    pub size: u64,
    /// The recognised filesystem or volume signature, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FsInfo>,
    /// Where the guest's fstab mounts it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<String>,
    /// Why the files could not be read, where imgport tried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a logical volume (`/dev/VG/LV`): its group, layout and where its extents are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logical_volume: Option<LogicalVolume>,
    /// For a btrfs subvolume read as a volume of its own (`btrfsvol:/dev/sda2/@`, as libguestfs names it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub btrfs_subvolume: Option<BtrfsSubvolume>,
}

/// A btrfs subvolume or snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct BtrfsSubvolume {
    /// The volume holding the btrfs ("/dev/sda2").
    pub filesystem: String,
    /// Its tree id (5 is the top level, which is not listed as a subvolume).
    pub id: u64,
    /// From the top level, as `subvol=` names it: "@", "root", "@/.snapshots/1/snapshot".
    pub path: String,
    pub read_only: bool,
    /// What a mount without `subvol=` shows (`btrfs subvolume set-default`).
    pub default: bool,
}

/// An LVM logical volume read as a volume.
#[derive(Debug, Clone, Serialize)]
pub struct LogicalVolume {
    pub volume_group: String,
    pub name: String,
    /// "linear", "striped", or the segment type that is not read (thin, raid1, cache, ...).
    pub layout: String,
    /// The volumes of the physical volumes its extents lie on; a physical volume on no disk given is named by
    /// its metadata key and device hint.
    pub physical_volumes: Vec<String>,
    /// The disks those are on ("/dev/sda", "/dev/sdb"): more than one means the LV spans disks.
    pub disks: Vec<String>,
    /// Some of its physical volumes are on no disk given.
    pub incomplete: bool,
}

/// A data disk given with the system disk.
#[derive(Debug, Clone, Serialize)]
pub struct DataDisk {
    /// "/dev/sdb", "/dev/sdc", ... in the order given.
    pub device: String,
    pub format: Format,
    pub virtual_size: u64,
    pub partition_table: PartitionTable,
}

#[derive(Debug, Clone, Serialize)]
pub struct FstabLine {
    #[serde(flatten)]
    pub entry: FstabEntry,
    /// The volume the spec resolves to in this image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolves_to: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OperatingSystem {
    /// "linux" or "windows".
    pub os_type: String,
    /// Device of the root filesystem.
    pub root: String,
    #[serde(flatten)]
    pub release: OsRelease,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
    pub kernels: Vec<Kernel>,
    /// Directories in /lib/modules.
    pub module_trees: Vec<String>,
    pub fstab: Vec<FstabLine>,
    /// Mount points whose filesystems were found and read (besides "/").
    pub mounted: Vec<String>,
    pub agents: Vec<Agent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selinux: Option<Selinux>,
    /// GRUB's menu, default entry and settings, when the guest has GRUB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grub: Option<crate::grub::Grub>,
    pub network: crate::network::Network,
    /// Installed packages with versions, from the dpkg or RPM database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<crate::packages::Packages>,
    /// root in /etc/passwd and /etc/shadow, and /etc/shadow's immutable flag.
    pub accounts: crate::system::Accounts,
    /// /lib and /lib64: directories, or symlinks (absolute ones break).
    pub lib_links: Vec<crate::system::LibLink>,
    pub sshd: crate::system::Sshd,
    /// Windows facts (product, version, computer name, drivers) when `os_type` is "windows".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<crate::windows::WindowsInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BootModes {
    pub bios: bool,
    pub uefi: bool,
    /// The ImportImage BootMode these imply: "BIOS", "UEFI", "UEFI-Preferred" (both), or absent (neither).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    pub bios_evidence: Vec<String>,
    pub uefi_evidence: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// Container format of the image ("raw", "qcow2", "vhd", ...).
    pub format: Format,
    pub virtual_size: u64,
    pub partition_table: PartitionTable,
    /// The data disks given with the system disk (their volumes are among `volumes`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub data_disks: Vec<DataDisk>,
    pub volumes: Vec<Volume>,
    /// The LVM physical volumes among `volumes`, in the same order, with their volume group metadata.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lvm: Vec<crate::lvm::PhysicalVolume>,
    pub operating_systems: Vec<OperatingSystem>,
    pub boot: BootModes,
    /// Damage and oddities found on the way (the partition table's own findings are in `partition_table`).
    pub findings: Vec<Finding>,
    /// Bytes read from the virtual disk to produce this report.
    pub bytes_read: u64,
}

/// Largest BIOS boot partition prefix looked at for a GRUB core image.
const CORE_PROBE: usize = 512;

/// Disks past the system disk that inspection takes (`/dev/sdb` .. `/dev/sdz`).
pub const MAX_DATA_DISKS: usize = 25;

/// "/dev/sda" for the system disk (0), "/dev/sdb" for the first data disk, ...
fn disk_name(disk: usize) -> String {
    format!("/dev/sd{}", char::from(b'a' + disk.min(MAX_DATA_DISKS) as u8))
}

fn device_name(disk: usize, n: Option<u32>) -> String {
    match n {
        Some(n) => format!("{}{n}", disk_name(disk)),
        None => disk_name(disk),
    }
}

struct Vol {
    /// Index of the disk holding it (0: the system disk), for volumes on a partition table.
    disk: usize,
    /// A logical volume's device-mapper UUID, `LVM-<VG UUID><LV UUID>`.
    dm_uuid: Option<String>,
    /// The btrfs subvolume (tree id) read, for a `btrfsvol:` volume.
    subvol: Option<u64>,
    volume: Volume,
    region: Region,
    partuuid: Option<String>,
    partlabel: Option<String>,
}

/// Which kernels' initramfs files are read (the costliest part of an inspection: tens of MiB each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InitramfsScope {
    #[default]
    All,
    /// Only the kernel GRUB boots by default (the newest when GRUB says nothing).
    DefaultKernel,
    None,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub initramfs: InitramfsScope,
}

/// Inspect the guest in `image`. Only an unreadable disk is an error; damage inside it becomes findings.
pub fn inspect(image: Arc<dyn DiskImage>) -> Result<Inspection> {
    inspect_with(image, &Options::default())
}

/// [`inspect`] with options.
pub fn inspect_with(image: Arc<dyn DiskImage>, opts: &Options) -> Result<Inspection> {
    inspect_disks(image, &[], opts)
}

/// The volumes of one disk: its partitions, or the whole disk when it has no table.
fn disk_volumes(disk_index: usize, disk: &Disk, table: &PartitionTable) -> Vec<Vol> {
    let volume = |partition: Option<u32>, start: u64, size: u64| Volume {
        device: device_name(disk_index, partition),
        partition,
        start,
        size,
        filesystem: None,
        mountpoint: None,
        error: None,
        logical_volume: None,
        btrfs_subvolume: None,
    };
    if table.kind == TableKind::None {
        return vec![Vol {
            disk: disk_index,
            dm_uuid: None,
            subvol: None,
            volume: volume(None, 0, disk.size()),
            region: disk.view(0, disk.size()),
            partuuid: None,
            partlabel: None,
        }];
    }
    table
        .partitions
        .iter()
        .filter(|p| !matches!(p.role, PartitionRole::Extended | PartitionRole::GptProtective))
        .map(|p| Vol {
            disk: disk_index,
            dm_uuid: None,
            subvol: None,
            volume: volume(Some(p.number), p.start, p.size),
            region: disk.view(p.start, p.size),
            partuuid: p.partuuid.clone(),
            partlabel: p.name.clone(),
        })
        .collect()
}

/// Inspect the guest whose system disk is `image`, with its data disks (`/dev/sdb`, ... in order): their
/// volumes are read too, so a volume group spanning disks is read whole. A data disk whose partition table cannot
/// be read is a finding; only an unreadable system disk is an error.
pub fn inspect_disks(image: Arc<dyn DiskImage>, data: &[Arc<dyn DiskImage>], opts: &Options) -> Result<Inspection> {
    let format = image.details().format;
    let disk = Disk::new(image);
    let table = partition::read_table(&disk)?;
    let mut findings = Vec::new();

    let mut vols: Vec<Vol> = disk_volumes(0, &disk, &table);
    let mut data_disks = Vec::new();
    let mut all_disks = vec![disk.clone()];
    for (i, img) in data.iter().take(MAX_DATA_DISKS).enumerate() {
        let n = i + 1;
        let d = Disk::new(img.clone());
        match partition::read_table(&d) {
            Ok(t) => {
                vols.extend(disk_volumes(n, &d, &t));
                data_disks.push(DataDisk {
                    device: disk_name(n),
                    format: img.details().format,
                    virtual_size: d.size(),
                    partition_table: t,
                });
            }
            Err(e) => findings.push(Finding::error(format!("disk {}", disk_name(n)), None, e.to_string())),
        }
        all_disks.push(d);
    }
    if data.len() > MAX_DATA_DISKS {
        findings.push(Finding::warning(
            "disks",
            None,
            format!("{} data disks given; the first {MAX_DATA_DISKS} were read", data.len()),
        ));
    }

    for v in vols.iter_mut() {
        if v.region.is_empty() {
            v.volume.error = Some("lies entirely past the end of the disk".into());
            continue;
        }
        match probe::probe(&mut v.region) {
            Ok(info) => {
                if let Some(i) = &info {
                    if let Some(size) = i.size.filter(|&s| s > v.volume.size) {
                        findings.push(Finding::error(
                            format!("{} {}", i.kind.blkid_name(), v.volume.device),
                            Some(v.volume.start),
                            format!("filesystem claims {size} bytes but its partition has {}", v.volume.size),
                        ));
                    }
                }
                v.volume.filesystem = info;
            }
            Err(e) => {
                findings.push(Finding::error(
                    format!("volume {}", v.volume.device),
                    Some(v.volume.start),
                    e.to_string(),
                ));
                v.volume.error = Some(e.to_string());
            }
        }
    }

    for v in vols.iter().filter(|v| v.disk == 0) {
        let role = v.volume.partition.and_then(|n| table.partitions.iter().find(|p| p.number == n)).map(|p| p.role);
        let kind = v.volume.filesystem.as_ref().map(|f| f.kind);
        if role == Some(PartitionRole::Esp) && kind != Some(probe::FsKind::Vfat) && v.volume.error.is_none() {
            findings.push(Finding::error(
                format!("esp {}", v.volume.device),
                Some(v.volume.start),
                "the EFI system partition holds no FAT filesystem",
            ));
        }
    }

    let lvm: Vec<crate::lvm::PhysicalVolume> = vols
        .iter()
        .filter(|v| v.volume.filesystem.as_ref().is_some_and(|f| f.kind == probe::FsKind::Lvm2Member))
        .filter_map(|v| crate::lvm::read_pv(&mut v.region.clone(), &v.volume.device))
        .collect();

    // The logical volumes, read as volumes of their own.
    for mut v in logical_volumes(&vols, &lvm, &mut findings) {
        if v.volume.error.is_some() {
            vols.push(v);
            continue;
        }
        match probe::probe(&mut v.region) {
            Ok(info) => v.volume.filesystem = info,
            Err(e) => {
                findings.push(Finding::error(format!("volume {}", v.volume.device), None, e.to_string()));
                v.volume.error = Some(e.to_string());
            }
        }
        vols.push(v);
    }

    let subvolumes = btrfs_subvolumes(&mut vols, &mut findings);
    vols.extend(subvolumes);

    // Linux roots: filesystems whose files can be read and that look like a root (virt-inspector's rule).
    let mut oses = Vec::new();
    for i in 0..vols.len() {
        let Some(info) = vols[i].volume.filesystem.clone() else { continue };
        if !(info.kind.is_ext() || info.kind == probe::FsKind::Xfs || info.kind == probe::FsKind::Ntfs) {
            continue;
        }
        let fs = match fs::open(vols[i].region.clone(), &info) {
            Ok(fs) => fs,
            Err(e) => {
                findings.push(Finding::error(
                    format!("{} {}", info.kind.blkid_name(), vols[i].volume.device),
                    Some(vols[i].volume.start),
                    format!("cannot read files: {e}"),
                ));
                vols[i].volume.error = Some(e.to_string());
                continue;
            }
        };
        let mut vfs = Vfs::new(fs);
        if info.kind == probe::FsKind::Ntfs {
            if let Some(os) = windows_os(&mut vfs, i, &mut vols, &mut findings) {
                oses.push(os);
            }
            continue;
        }
        if !linux::is_linux_root(&mut vfs) {
            continue;
        }
        oses.push(linux_os(&mut vfs, i, &mut vols, &mut findings, opts));
    }
    // A btrfs holds at most one root here: the subvolume its own fstab mounts at "/" (snapshots of it are roots
    // too, but not the one that boots).
    for i in 0..vols.len() {
        let is_btrfs = vols[i].volume.filesystem.as_ref().is_some_and(|f| f.kind == probe::FsKind::Btrfs);
        if !is_btrfs || vols[i].subvol.is_some() || vols[i].volume.error.is_some() {
            continue;
        }
        if let Some((root, mut vfs)) = btrfs_root(&vols, i) {
            oses.push(linux_os(&mut vfs, root, &mut vols, &mut findings, opts));
        }
    }

    let boot = boot_modes(&table, &mut vols, &mut findings);
    let volumes = vols.into_iter().map(|v| v.volume).collect();
    Ok(Inspection {
        format,
        virtual_size: disk.size(),
        partition_table: table,
        data_disks,
        volumes,
        lvm,
        operating_systems: oses,
        boot,
        findings,
        bytes_read: all_disks.iter().map(Disk::bytes_read).sum(),
    })
}

/// The logical volumes of each volume group whose metadata was read (the newest copy among its PVs), as volumes
/// `/dev/VG/LV` over an [`crate::lvm_layout::LvImage`]. Hidden sub-volumes (of thin pools, RAID, caches) are
/// skipped; a visible LV that cannot be read extent for extent (thin, RAID, cache, snapshot) or whose segments are
/// wrong is a volume with an error saying why, and a finding. A group with physical volumes on several disks, or on
/// none given, is a finding too.
fn logical_volumes(vols: &[Vol], pvs: &[crate::lvm::PhysicalVolume], findings: &mut Vec<Finding>) -> Vec<Vol> {
    use crate::lvm_layout::{Layout, LvImage, PvSource};
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for pv in pvs {
        let Some(vg) = &pv.volume_group else { continue };
        if seen.contains(&vg.name.as_str()) {
            continue;
        }
        seen.push(&vg.name);
        // The newest metadata among the group's PVs.
        let vg = pvs
            .iter()
            .filter_map(|p| p.volume_group.as_ref())
            .filter(|g| g.name == vg.name)
            .max_by_key(|g| g.seqno)
            .unwrap_or(vg);
        // Per member PV: the volume holding it, when one of the disks given has it.
        let holders: Vec<Option<&Vol>> = vg
            .physical_volumes
            .iter()
            .map(|m| {
                let found = pvs.iter().find(|p| p.uuid == m.uuid)?;
                vols.iter().find(|v| v.volume.device == found.device)
            })
            .collect();
        let sources: Vec<Option<PvSource>> = holders
            .iter()
            .map(|h| {
                h.map(|v| PvSource { disk: v.region.disk().clone(), start: v.region.start(), len: v.region.len() })
            })
            .collect();
        let member_name = |i: usize| match holders.get(i).copied().flatten() {
            Some(v) => v.volume.device.clone(),
            None => {
                let m = &vg.physical_volumes[i];
                format!("{} ({}, on no disk given)", m.key, m.device_hint.as_deref().unwrap_or("no device hint"))
            }
        };
        let mut vg_disks: Vec<String> = holders.iter().flatten().map(|v| disk_name(v.disk)).collect();
        vg_disks.sort();
        vg_disks.dedup();
        let missing: Vec<String> = (0..holders.len()).filter(|&i| holders[i].is_none()).map(member_name).collect();
        if !missing.is_empty() {
            findings.push(Finding::warning(
                format!("lvm volume group {}", vg.name),
                None,
                format!(
                    "needs physical volume(s) {} that are on no disk given; logical volumes on them are not read \
                     (give their disks with --data-disk)",
                    missing.join(", ")
                ),
            ));
        } else if vg_disks.len() > 1 {
            findings.push(Finding::warning(
                format!("lvm volume group {}", vg.name),
                None,
                format!("spans disks {}: a cloud imports the system disk alone", vg_disks.join(", ")),
            ));
        }
        for lv in vg.lvs.iter().filter(|lv| lv.visible) {
            let device = format!("/dev/{}/{}", vg.name, lv.name);
            let (kind, used): (String, Vec<usize>) = match &lv.layout {
                Ok(Layout::Mapped { segments, .. }) => {
                    let striped = segments.iter().any(|s| s.stripes.len() > 1);
                    let mut used: Vec<usize> = segments.iter().flat_map(|s| s.stripes.iter().map(|st| st.0)).collect();
                    used.sort_unstable();
                    used.dedup();
                    (if striped { "striped" } else { "linear" }.to_string(), used)
                }
                Ok(Layout::Unsupported { kind, .. }) => (kind.clone(), Vec::new()),
                Err(_) => ("invalid".to_string(), Vec::new()),
            };
            let mut disks: Vec<String> =
                used.iter().filter_map(|&i| holders.get(i).copied().flatten()).map(|v| disk_name(v.disk)).collect();
            disks.sort();
            disks.dedup();
            let info = LogicalVolume {
                volume_group: vg.name.clone(),
                name: lv.name.clone(),
                layout: kind,
                physical_volumes: used.iter().map(|&i| member_name(i)).collect(),
                disks,
                incomplete: used.iter().any(|&i| holders.get(i).copied().flatten().is_none()),
            };
            let unread = |why: String, out: &mut Vec<Vol>| {
                let empty = Disk::new(Arc::new(crate::lvm_layout::EmptyImage));
                out.push(Vol {
                    disk: 0,
                    dm_uuid: None,
                    subvol: None,
                    volume: Volume {
                        device: device.clone(),
                        partition: None,
                        start: 0,
                        size: 0,
                        filesystem: None,
                        mountpoint: None,
                        error: Some(why),
                        logical_volume: Some(info.clone()),
                        btrfs_subvolume: None,
                    },
                    region: empty.view(0, 0),
                    partuuid: None,
                    partlabel: None,
                });
            };
            let layout = match &lv.layout {
                Ok(l) => l,
                Err(e) => {
                    findings.push(Finding::error(format!("lvm {device}"), None, e.clone()));
                    unread(e.clone(), &mut out);
                    continue;
                }
            };
            let Some(img) = LvImage::new(&lv.name, vg.extent_size, vg.pv_extents.clone(), layout, sources.clone())
            else {
                if let Layout::Unsupported { why, .. } = layout {
                    findings.push(Finding::warning(format!("lvm {device}"), None, format!("not read: {why}")));
                    unread(format!("not read: {why}"), &mut out);
                }
                continue;
            };
            if info.incomplete {
                unread("not read: some of its physical volumes are on no disk given (--data-disk)".into(), &mut out);
                continue;
            }
            let lv_disk = Disk::new(Arc::new(img));
            out.push(Vol {
                disk: 0,
                dm_uuid: Some(format!("LVM-{}{}", vg.uuid, lv.uuid)),
                subvol: None,
                volume: Volume {
                    device,
                    partition: None,
                    start: 0,
                    size: lv_disk.size(),
                    filesystem: None,
                    mountpoint: None,
                    error: None,
                    logical_volume: Some(info),
                    btrfs_subvolume: None,
                },
                region: lv_disk.view(0, lv_disk.size()),
                partuuid: None,
                partlabel: None,
            });
        }
    }
    out
}

/// Open a volume's filesystem: a `btrfsvol:` volume reads its own subvolume, any other volume what a mount of it
/// without options would show.
fn open_vol(v: &Vol, info: &FsInfo) -> fs::FsResult<Box<dyn GuestFs>> {
    match v.subvol {
        Some(id) => Ok(Box::new(fs::btrfs::BtrfsFs::open(v.region.clone(), &fs::btrfs::Subvol::Id(id))?)),
        None => fs::open(v.region.clone(), info),
    }
}

/// Filesystems mounted from one guest's fstab.
const MAX_MOUNTS: usize = 64;

/// Subvolumes listed as volumes per btrfs (snapper can keep hundreds of snapshots; the rest is a finding).
const MAX_LISTED_SUBVOLUMES: usize = 256;
/// Subvolumes tried as the Linux root per btrfs: the default and the writable ones first.
const MAX_ROOT_CANDIDATES: usize = 32;

/// The subvolumes of every btrfs among `vols`, as volumes `btrfsvol:DEVICE/PATH` (libguestfs's names), each
/// reading its own tree. A btrfs whose trees cannot be read gets an error and a finding.
fn btrfs_subvolumes(vols: &mut [Vol], findings: &mut Vec<Finding>) -> Vec<Vol> {
    use fs::btrfs::{BtrfsFs, Subvol};
    let mut out = Vec::new();
    for v in vols.iter_mut() {
        let Some(info) = v.volume.filesystem.clone().filter(|f| f.kind == probe::FsKind::Btrfs) else { continue };
        if v.volume.error.is_some() {
            continue;
        }
        let what = format!("btrfs {}", v.volume.device);
        let listed = BtrfsFs::open(v.region.clone(), &Subvol::Id(5)).and_then(|mut b| {
            let default = b.default_subvolume_id();
            Ok((default, b.subvolumes()?))
        });
        let (default, subvolumes) = match listed {
            Ok(l) => l,
            Err(e) => {
                findings.push(Finding::error(what, Some(v.volume.start), format!("cannot read files: {e}")));
                v.volume.error = Some(e.to_string());
                continue;
            }
        };
        if subvolumes.len() > MAX_LISTED_SUBVOLUMES {
            findings.push(Finding::warning(
                what,
                Some(v.volume.start),
                format!("{} subvolumes; the first {MAX_LISTED_SUBVOLUMES} are listed", subvolumes.len()),
            ));
        }
        // The default first, so the cap never drops the subvolume a plain mount shows.
        let (mut listed, rest): (Vec<_>, Vec<_>) = subvolumes.into_iter().partition(|s| s.id == default);
        listed.extend(rest);
        for s in listed.into_iter().take(MAX_LISTED_SUBVOLUMES) {
            out.push(Vol {
                disk: v.disk,
                dm_uuid: None,
                subvol: Some(s.id),
                volume: Volume {
                    device: format!("btrfsvol:{}/{}", v.volume.device, s.path),
                    partition: None,
                    start: v.volume.start,
                    size: v.volume.size,
                    filesystem: Some(info.clone()),
                    mountpoint: None,
                    error: None,
                    logical_volume: None,
                    btrfs_subvolume: Some(BtrfsSubvolume {
                        filesystem: v.volume.device.clone(),
                        id: s.id,
                        path: s.path,
                        read_only: s.read_only,
                        default: s.id == default,
                    }),
                },
                region: v.region.clone(),
                partuuid: None,
                partlabel: None,
            });
        }
    }
    out
}

/// Which subvolume `subvol=` or `subvolid=` in mount options names, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SubvolOption {
    Path(String),
    Id(u64),
}

fn subvol_option<'a>(options: impl IntoIterator<Item = &'a str>) -> Option<SubvolOption> {
    let mut found = None;
    for o in options {
        if let Some(p) = o.strip_prefix("subvol=") {
            found = Some(SubvolOption::Path(p.trim_matches('/').to_string()));
        } else if let Some(id) = o.strip_prefix("subvolid=").and_then(|n| n.parse().ok()) {
            found = Some(SubvolOption::Id(id));
        }
    }
    found
}

/// The `btrfsvol:` volume of the btrfs on `fs_device` that `opt` names; the top level (`subvol=/`, id 5) is the
/// btrfs's own volume.
fn subvolume_named(vols: &[Vol], fs_device: &str, opt: &SubvolOption) -> Option<usize> {
    let top = matches!(opt, SubvolOption::Id(5)) || *opt == SubvolOption::Path(String::new());
    vols.iter().position(|v| match &v.volume.btrfs_subvolume {
        None => top && v.volume.device == fs_device,
        Some(b) => {
            b.filesystem == fs_device
                && match opt {
                    SubvolOption::Path(p) => &b.path == p,
                    SubvolOption::Id(id) => b.id == *id,
                }
        }
    })
}

/// The Linux root in the btrfs of volume `fs_index`: among its default and writable subvolumes (and the top level
/// when it is the default), the one whose /etc/fstab mounts itself at "/", else the first that looks like a root.
fn btrfs_root(vols: &[Vol], fs_index: usize) -> Option<(usize, Vfs)> {
    let device = &vols[fs_index].volume.device;
    let subvolume_of = |v: &Vol| v.volume.btrfs_subvolume.as_ref().filter(|b| &b.filesystem == device).cloned();
    let default_listed = vols.iter().any(|v| subvolume_of(v).is_some_and(|b| b.default));
    let mut candidates: Vec<usize> = Vec::new();
    if !default_listed {
        candidates.push(fs_index);
    }
    candidates.extend((0..vols.len()).filter(|&i| subvolume_of(&vols[i]).is_some_and(|b| b.default)));
    candidates.extend((0..vols.len()).filter(|&i| subvolume_of(&vols[i]).is_some_and(|b| !b.default && !b.read_only)));
    let mut first = None;
    for i in candidates.into_iter().take(MAX_ROOT_CANDIDATES) {
        let info = vols[i].volume.filesystem.clone()?;
        let Ok(fs) = open_vol(&vols[i], &info) else { continue };
        let mut vfs = Vfs::new(fs);
        if !linux::is_linux_root(&mut vfs) {
            continue;
        }
        let fstab = linux::parse_fstab(&vfs.read_text("/etc/fstab", linux::MAX_TEXT).unwrap_or_default());
        let mounts_itself = fstab.iter().filter(|e| e.mountpoint == "/").any(|e| {
            match subvol_option(e.options.iter().map(String::as_str)) {
                Some(opt) => subvolume_named(vols, device, &opt) == Some(i),
                // No option: the default subvolume.
                None => subvolume_of(&vols[i]).map_or(!default_listed, |b| b.default),
            }
        });
        if mounts_itself {
            return Some((i, vfs));
        }
        first.get_or_insert((i, vfs));
    }
    first
}

/// `subvol=`/`subvolid=` inside a kernel command line's `rootflags=`.
fn rootflags(options: &str) -> Vec<String> {
    options
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("rootflags="))
        .flat_map(|f| f.split(','))
        .map(str::to_string)
        .collect()
}

/// `/dev/mapper/VG-LV` (dashes in the names doubled) for the volume `/dev/VG/LV`.
fn mapper_name(device: &str) -> Option<String> {
    let (vg, lv) = device.strip_prefix("/dev/")?.split_once('/')?;
    Some(format!("/dev/mapper/{}-{}", vg.replace('-', "--"), lv.replace('-', "--")))
}

/// The disk index and partition number a kernel device name means: `/dev/sdb2` -> (1, Some(2)), `/dev/vda` ->
/// (0, None); the guest sees the system disk first whichever driver names it.
fn kernel_device(dev: &str) -> Option<(usize, Option<u32>)> {
    let rest = ["/dev/sd", "/dev/vd", "/dev/xvd", "/dev/hd"].iter().find_map(|p| dev.strip_prefix(p))?;
    let letter = rest.chars().next().filter(char::is_ascii_lowercase)?;
    let disk = usize::from(letter as u8 - b'a');
    match &rest[1..] {
        "" => Some((disk, None)),
        n => n.parse::<u32>().ok().map(|n| (disk, Some(n))),
    }
}

/// Whether `value` names the logical volume `v` the way the guest may: `/dev/VG/LV`, `/dev/mapper/VG-LV`,
/// `/dev/disk/by-id/dm-name-VG-LV` or `/dev/disk/by-id/dm-uuid-LVM-<VG UUID><LV UUID>` (Ubuntu's installer).
fn names_logical_volume(v: &Vol, value: &str) -> bool {
    if v.volume.logical_volume.is_none() {
        return false;
    }
    let mapper = mapper_name(&v.volume.device);
    let dm_name = mapper.as_deref().and_then(|m| m.strip_prefix("/dev/mapper/"));
    v.volume.device == value
        || mapper.as_deref() == Some(value)
        || value.strip_prefix("/dev/disk/by-id/dm-name-").is_some_and(|n| Some(n) == dm_name)
        || value.strip_prefix("/dev/disk/by-id/dm-uuid-").is_some_and(|u| v.dm_uuid.as_deref() == Some(u))
}

/// Which volume an fstab spec names: with `subvol=`/`subvolid=` on a btrfs, that subvolume's volume (none when
/// the btrfs has no such subvolume).
fn resolve_spec(e: &FstabEntry, vols: &[Vol]) -> Option<usize> {
    let (kind, value) = e.spec_kind();
    let device = kernel_device(&value);
    let found = vols.iter().position(|v| {
        if v.subvol.is_some() {
            return false;
        }
        let fs = v.volume.filesystem.as_ref();
        match kind {
            "uuid" => fs.and_then(|f| f.uuid.as_deref()).is_some_and(|u| u.eq_ignore_ascii_case(&value)),
            "label" => fs.and_then(|f| f.label.as_deref()) == Some(value.as_str()),
            "partuuid" => v.partuuid.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(&value)),
            "partlabel" => v.partlabel.as_deref() == Some(value.as_str()),
            _ if names_logical_volume(v, &value) => true,
            // /dev/sdXN, /dev/vdXN, /dev/xvdXN, /dev/hdXN: the disk and partition number.
            _ => {
                v.volume.logical_volume.is_none()
                    && device.is_some_and(|(disk, part)| disk == v.disk && part == v.volume.partition)
            }
        }
    })?;
    let is_btrfs = vols[found].volume.filesystem.as_ref().is_some_and(|f| f.kind == probe::FsKind::Btrfs);
    if !is_btrfs {
        return Some(found);
    }
    let device = &vols[found].volume.device;
    match subvol_option(e.options.iter().map(String::as_str)) {
        Some(opt) => subvolume_named(vols, device, &opt),
        // No option: the default subvolume, the btrfs's own volume when that is the top level.
        None => vols
            .iter()
            .position(|v| v.volume.btrfs_subvolume.as_ref().is_some_and(|b| &b.filesystem == device && b.default))
            .or(Some(found)),
    }
}

fn linux_os(
    vfs: &mut Vfs,
    root: usize,
    vols: &mut [Vol],
    findings: &mut Vec<Finding>,
    opts: &Options,
) -> OperatingSystem {
    vols[root].volume.mountpoint = Some("/".into());
    let fstab_text = vfs.read_text("/etc/fstab", linux::MAX_TEXT).unwrap_or_default();
    let mut fstab = Vec::new();
    let mut mounted_count = 0;
    for entry in linux::parse_fstab(&fstab_text) {
        let target = resolve_spec(&entry, vols);
        // Mount what the guest mounts, so /boot or /usr on their own partitions are read too: each mount point
        // once, and at most MAX_MOUNTS of them (each is a reader with its own caches).
        if let Some(t) = target {
            let mp = entry.mountpoint.clone();
            let fresh = !vfs.mount_points().iter().any(|m| fs::components(m).eq(fs::components(&mp)));
            if t != root && mp.starts_with('/') && mp != "/" && fresh && mounted_count < MAX_MOUNTS {
                mounted_count += 1;
                if let Some(info) = vols[t].volume.filesystem.clone() {
                    match open_vol(&vols[t], &info) {
                        Ok(fs) => {
                            vfs.mount(&mp, fs);
                            vols[t].volume.mountpoint.get_or_insert(mp);
                        }
                        Err(fs::FsError::Unsupported(_)) => {
                            vols[t].volume.mountpoint.get_or_insert(mp);
                        }
                        Err(e) => {
                            findings.push(Finding::error(
                                format!("{} {}", info.kind.blkid_name(), vols[t].volume.device),
                                Some(vols[t].volume.start),
                                format!("cannot read files of the filesystem mounted at {mp}: {e}"),
                            ));
                        }
                    }
                }
            }
        }
        fstab.push(FstabLine { entry, resolves_to: target.map(|t| vols[t].volume.device.clone()) });
    }
    let mounted = vfs.mount_points().into_iter().filter(|m| m != "/").collect();
    // GRUB reads a btrfs from its top level: the root subvolume's files are under /<subvolume>/.
    let subvol_path = vols[root].volume.btrfs_subvolume.as_ref().map(|b| b.path.clone());
    let mut grub = crate::grub::grub(vfs, subvol_path.as_deref());
    if let Some(g) = grub.as_mut() {
        for e in g.entries.iter_mut().chain(g.default_entry.as_mut()) {
            e.root_resolves_to = e.root.as_ref().and_then(|r| resolve_root(r, &e.options, vols));
        }
    }
    let mut kernels = linux::kernels(vfs);
    // The kernel GRUB boots by default, else the newest.
    let default_kernel = grub
        .as_ref()
        .and_then(|g| g.default_entry.as_ref())
        .and_then(|e| e.kernel_path.clone())
        .and_then(|p| kernels.iter().position(|k| vfs.resolve(&k.path, true).ok() == vfs.resolve(&p, true).ok()))
        .unwrap_or(0);
    for (i, k) in kernels.iter_mut().enumerate() {
        let read = match opts.initramfs {
            InitramfsScope::All => true,
            InitramfsScope::DefaultKernel => i == default_kernel,
            InitramfsScope::None => false,
        };
        crate::drivers::examine(vfs, k, crate::initramfs::Limits::default(), read);
        if let (Some(path), Some(c)) = (&k.initramfs, &k.initramfs_contents) {
            for p in &c.problems {
                findings.push(Finding::warning(format!("initramfs {path}"), None, p.clone()));
            }
        }
    }
    let packages = crate::packages::packages(vfs);
    if let Some(p) = &packages {
        for problem in &p.problems {
            findings.push(Finding::warning(format!("package database {}", p.source), None, problem.clone()));
        }
    }
    OperatingSystem {
        os_type: "linux".into(),
        root: vols[root].volume.device.clone(),
        release: linux::os_release(vfs),
        hostname: linux::hostname(vfs),
        architecture: linux::architecture(vfs),
        kernels,
        module_trees: linux::module_trees(vfs),
        fstab,
        mounted,
        agents: linux::agents(vfs),
        selinux: linux::selinux(vfs),
        grub,
        network: crate::network::network(vfs),
        packages,
        accounts: crate::system::accounts(vfs),
        lib_links: crate::system::lib_links(vfs),
        sshd: crate::system::sshd(vfs),
        windows: None,
    }
}

/// A Windows installation on the NTFS volume `i`, if it holds a systemroot.
fn windows_os(vfs: &mut Vfs, i: usize, vols: &mut [Vol], findings: &mut Vec<Finding>) -> Option<OperatingSystem> {
    let (info, arch) = crate::windows::windows(vfs)?;
    vols[i].volume.mountpoint = Some("C:".into());
    // NTFS keeps no free-cluster counter in its boot sector: count the system volume's $Bitmap.
    match vfs.root_free_bytes() {
        Some(Ok(free)) => {
            if let Some(f) = vols[i].volume.filesystem.as_mut() {
                f.free_bytes = Some(free);
            }
        }
        Some(Err(e)) => findings.push(Finding::warning(
            format!("ntfs {}", vols[i].volume.device),
            Some(vols[i].volume.start),
            format!("free space not counted: {e}"),
        )),
        None => {}
    }
    for p in &info.problems {
        findings.push(Finding::warning(format!("registry on {}", vols[i].volume.device), None, p.clone()));
    }
    let architecture = arch.and_then(|a| {
        let (name, evidence) = a.split_once(':')?;
        let bits = if matches!(name, "i386" | "armv7l") { 32 } else { 64 };
        Some(Architecture { name: name.to_string(), evidence: evidence.to_string(), bits })
    });
    let version = match (info.major_version, info.minor_version) {
        (Some(a), Some(b)) => Some(format!("{a}.{b}")),
        _ => info.current_version.clone(),
    };
    let release = OsRelease {
        distro: Some("windows".into()),
        name: info.product_name.clone(),
        pretty_name: info.product_name.clone(),
        version,
        major_version: info.major_version,
        minor_version: info.minor_version,
        codename: info.display_version.clone(),
        id_like: Vec::new(),
        source: Some(format!("{}/System32/config/SOFTWARE", info.systemroot)),
    };
    Some(OperatingSystem {
        os_type: "windows".into(),
        root: vols[i].volume.device.clone(),
        release,
        hostname: info.computer_name.clone(),
        architecture,
        kernels: Vec::new(),
        module_trees: Vec::new(),
        fstab: Vec::new(),
        mounted: Vec::new(),
        agents: Vec::new(),
        selinux: None,
        grub: None,
        network: crate::network::Network::default(),
        packages: None,
        accounts: crate::system::Accounts::default(),
        lib_links: Vec::new(),
        sshd: crate::system::Sshd::default(),
        windows: Some(info),
    })
}

/// The volume a kernel `root=` names (UUID=, LABEL=, PARTUUID=, /dev/sdXN, /dev/disk/by-*), with the btrfs
/// subvolume its `rootflags=` name.
fn resolve_root(root: &str, cmdline: &str, vols: &[Vol]) -> Option<String> {
    let e = FstabEntry {
        spec: root.to_string(),
        mountpoint: "/".into(),
        fstype: String::new(),
        options: rootflags(cmdline),
        dump: 0,
        pass: 0,
        line: 0,
    };
    resolve_spec(&e, vols).map(|i| vols[i].volume.device.clone())
}

const UEFI_FALLBACK: &[&str] = &["/EFI/BOOT/BOOTX64.EFI", "/EFI/BOOT/BOOTAA64.EFI", "/EFI/BOOT/BOOTIA32.EFI"];
const UEFI_DISTRO_LOADERS: &[&str] =
    &["shimx64.efi", "grubx64.efi", "shimaa64.efi", "grubaa64.efi", "systemd-bootx64.efi"];

fn boot_modes(table: &PartitionTable, vols: &mut [Vol], findings: &mut Vec<Finding>) -> BootModes {
    let mut bios_evidence = Vec::new();
    let mut uefi_evidence = Vec::new();
    let mbr_like = table.kind == TableKind::Mbr || table.hybrid_mbr;
    if table.mbr_boot_code && table.mbr_signature && mbr_like {
        bios_evidence.push("boot code in the MBR".to_string());
    }
    for p in &table.partitions {
        if p.role == PartitionRole::BiosBoot {
            let Some(v) = vols.iter_mut().find(|v| v.disk == 0 && v.volume.partition == Some(p.number)) else {
                continue;
            };
            let n = (CORE_PROBE as u64).min(v.region.len()) as usize;
            let has_core = v.region.read_vec(0, n).is_ok_and(|b| b.iter().any(|&x| x != 0));
            if has_core && table.mbr_boot_code {
                bios_evidence.push(format!("BIOS boot partition {} holds a core image", v.volume.device));
            } else if has_core {
                bios_evidence
                    .push(format!("BIOS boot partition {} holds data but the MBR has no boot code", v.volume.device));
            }
        }
    }
    // The BIOS-boot-partition-without-MBR-code case cannot boot: only MBR code starts the chain.
    let bios = bios_evidence.iter().any(|e| !e.contains("no boot code"));

    for v in vols.iter_mut() {
        let is_esp = v.disk == 0
            && table.partitions.iter().any(|p| Some(p.number) == v.volume.partition && p.role == PartitionRole::Esp);
        let Some(info) = v.volume.filesystem.clone() else { continue };
        if !is_esp || info.kind != probe::FsKind::Vfat {
            continue;
        }
        let mut esp = match fs::open(v.region.clone(), &info) {
            Ok(fs) => fs,
            Err(e) => {
                findings.push(Finding::error(
                    format!("esp {}", v.volume.device),
                    Some(v.volume.start),
                    format!("cannot read the EFI system partition: {e}"),
                ));
                continue;
            }
        };
        for path in UEFI_FALLBACK {
            if esp.lstat(path).is_ok_and(|m| m.file_type == FileType::File) {
                uefi_evidence.push(format!("{}:{path}", v.volume.device));
            }
        }
        if let Ok(dirs) = esp.read_dir("/EFI") {
            for d in dirs.iter().filter(|d| d.file_type == FileType::Dir && !d.name.eq_ignore_ascii_case("BOOT")) {
                for loader in UEFI_DISTRO_LOADERS {
                    let path = format!("/EFI/{}/{loader}", d.name);
                    if esp_file(esp.as_mut(), &path) {
                        uefi_evidence.push(format!("{}:{path}", v.volume.device));
                    }
                }
            }
        }
    }
    let uefi = !uefi_evidence.is_empty();
    let mode = match (bios, uefi) {
        (true, true) => Some("UEFI-Preferred"),
        (true, false) => Some("BIOS"),
        (false, true) => Some("UEFI"),
        (false, false) => None,
    };
    if mode.is_none() {
        findings.push(Finding::new(Severity::Warning, "boot", None, "no BIOS boot code and no UEFI loader found"));
    }
    BootModes { bios, uefi, mode, bios_evidence, uefi_evidence }
}

fn esp_file(esp: &mut dyn GuestFs, path: &str) -> bool {
    esp.lstat(path).is_ok_and(|m| m.file_type == FileType::File)
}
