//! How the disk is laid out: the partition table, the root filesystem, ext4 state, LVM, the root's place, swap
//! and free space.

use super::{human, CheckId, Guest, Route, Subject};
use crate::finding::{Finding, Severity};
use crate::profile::{Profile, Target};
use imgport_guest::inspect::{OperatingSystem, Volume};
use imgport_guest::partition::{PartitionRole, TableKind};
use imgport_guest::probe::FsKind;

pub(super) fn partition_table(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::PartitionTable;
    let t = &s.inspection.partition_table;
    let mut out = Vec::new();
    for f in &t.findings {
        // The table's own errors take the profile's severity; its warnings and notes keep theirs.
        let fsev = if f.severity == Severity::Error { sev } else { f.severity };
        let mut fd = Finding::fail(
            ID,
            fsev,
            format!("{}: {}", f.structure, f.message),
            "repair the table with the tool that made it (sgdisk -v / gdisk's recovery menu for GPT, sfdisk for MBR), \
             or re-export the disk: a truncated or damaged image does not boot",
        )
        .path(f.structure.clone());
        if let Some(o) = f.offset {
            fd = fd.offset(o);
        }
        out.push(fd);
    }
    for f in s.findings_for(Route::PartitionTable) {
        let fsev = if f.severity == Severity::Error { sev } else { Severity::Warning };
        let mut fd = Finding::fail(
            ID,
            fsev,
            format!("{}: {}", f.structure, f.message),
            "check and repair the filesystem (fsck) or the partition bounds, or re-export the disk",
        )
        .path(f.structure.clone());
        if let Some(o) = f.offset {
            fd = fd.offset(o);
        }
        out.push(fd);
    }
    if t.kind == TableKind::None {
        let what = s.inspection.volumes.first().and_then(|v| v.filesystem.as_ref()).map(|f| f.kind.blkid_name());
        let msg = match what {
            Some(k) => format!("no partition table: the disk is one {k} filesystem, which a boot loader cannot start"),
            None => "no partition table (no MBR 0x55AA signature, no GPT) and no filesystem".into(),
        };
        out.push(
            Finding::fail(
                ID,
                sev,
                msg,
                "make a partitioned disk: create an MBR or GPT with a partition for the filesystem (sfdisk/sgdisk), \
                 copy the filesystem into it and install the boot loader",
            )
            .offset(510),
        );
    }
    if out.is_empty() {
        let kind = match t.kind {
            TableKind::Gpt if t.hybrid_mbr => "GPT with a hybrid MBR",
            TableKind::Gpt => "GPT",
            _ => "MBR",
        };
        let n = t.partitions.iter().filter(|p| p.role != PartitionRole::Extended).count();
        out.push(Finding::pass(ID, format!("{kind} with {n} partition(s), all within the disk and not overlapping")));
    }
    out
}

pub(super) fn root_filesystem(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::RootFilesystem;
    let encrypted = s.encrypted_volumes();
    match s.guest() {
        Guest::Unknown(reason) if !encrypted.is_empty() => {
            let v = encrypted[0];
            let version = v.filesystem.as_ref().and_then(|f| f.version.clone()).unwrap_or_default();
            vec![Finding::fail(
                ID,
                Severity::Error,
                format!("{reason}: an imported image boots unattended, with no console to type the LUKS{version} passphrase"),
                format!(
                    "decrypt it in the source VM before export (cryptsetup reencrypt --decrypt {}, then remove it from \
                     /etc/crypttab and rebuild the initramfs), and use the cloud's disk encryption instead",
                    v.device
                ),
            )
            .path(v.device.clone())
            .offset(v.start)]
        }
        Guest::Unknown(reason) if s.root_unreadable_kind() => {
            vec![Finding::not_checked(ID, reason)]
        }
        Guest::Unknown(reason) => {
            let damage: Vec<Finding> = s
                .findings_for(Route::RootFs)
                .map(|f| {
                    let mut fd = Finding::fail(
                        ID,
                        sev,
                        format!("{}: {}", f.structure, f.message),
                        "repair the filesystem in the source VM (e2fsck -f / xfs_repair) and export the disk again",
                    )
                    .path(f.structure.clone());
                    if let Some(o) = f.offset {
                        fd = fd.offset(o);
                    }
                    fd
                })
                .collect();
            if !damage.is_empty() {
                return damage;
            }
            vec![Finding::fail(
                ID,
                sev,
                reason,
                "check that this is the system disk of the VM; the root must be ext3/ext4/xfs on a partition",
            )]
        }
        Guest::Windows(_) => vec![Finding::pass(ID, "Windows system volume on NTFS")],
        Guest::Linux(_) => {
            let Some(v) = s.root_volume() else { return vec![Finding::not_checked(ID, "root volume not found")] };
            let kind = v.filesystem.as_ref().map_or("unknown", |f| f.kind.blkid_name());
            let mut out = Vec::new();
            for f in s.findings_for(Route::RootFs) {
                out.push(
                    Finding::fail(
                        ID,
                        sev,
                        format!("{}: {}", f.structure, f.message),
                        "repair the root filesystem (e2fsck -f / xfs_repair) and export the disk again",
                    )
                    .path(v.device.clone())
                    .offset(f.offset.unwrap_or(v.start)),
                );
            }
            if !profile.root_filesystems.is_empty() && !profile.root_filesystems.contains(&kind) {
                out.push(
                    Finding::fail(
                        ID,
                        Severity::Warning,
                        format!(
                            "root filesystem is {kind}; {} expects {}",
                            profile.service,
                            profile.root_filesystems.join(", ")
                        ),
                        "move the root to ext4 or xfs",
                    )
                    .path(v.device.clone())
                    .offset(v.start)
                    .value(kind),
                );
            }
            if let (Some(os), true) = (s.os(), kind == "btrfs") {
                out.extend(btrfs_root(profile, s, os, v));
            }
            for e in &encrypted {
                out.push(
                    Finding::fail(
                        ID,
                        Severity::Warning,
                        format!(
                            "{} is an encrypted (LUKS) volume: if /etc/crypttab opens it at boot, the boot waits for a \
                             passphrase no one can type",
                            e.device
                        ),
                        "decrypt it before export, or mark it noauto/nofail in /etc/crypttab and /etc/fstab",
                    )
                    .path(e.device.clone())
                    .offset(e.start),
                );
            }
            if out.is_empty() {
                out.push(
                    Finding::pass(ID, format!("root filesystem is {kind} on {}", v.device))
                        .path(v.device.clone())
                        .offset(v.start)
                        .value(kind),
                );
            }
            out
        }
    }
}

pub(super) fn ext4_features(profile: &Profile, s: &Subject, _sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::Ext4Features;
    let mut out = Vec::new();
    let mut seen = 0;
    for v in &s.inspection.volumes {
        let Some(f) = v.filesystem.as_ref().filter(|f| f.kind.is_ext()) else { continue };
        // Only what the guest mounts matters; a stray data partition does not affect the import.
        let mp = match &v.mountpoint {
            Some(m) => m.clone(),
            None if s.os().is_none() => v.device.clone(),
            None => continue,
        };
        seen += 1;
        let name = if mp == v.device {
            format!("{} on {mp}", f.kind.blkid_name())
        } else {
            format!("{} on {mp} ({})", f.kind.blkid_name(), v.device)
        };
        if f.needs_recovery {
            out.push(
                Finding::fail(
                    ID,
                    Severity::Warning,
                    format!("{name}: the journal holds transactions not yet applied (needs_recovery)"),
                    format!(
                        "replay the journal before exporting: e2fsck -fy on {} (or boot and shut down cleanly)",
                        v.device
                    ),
                )
                .path(v.device.clone())
                .offset(v.start.saturating_add(1024))
                .value("needs_recovery"),
            );
        }
        if f.not_clean && !f.needs_recovery {
            out.push(
                Finding::fail(
                    ID,
                    Severity::Warning,
                    format!("{name}: not cleanly unmounted, or errors recorded in the superblock"),
                    format!("check it before exporting: e2fsck -f {}", v.device),
                )
                .path(v.device.clone())
                .offset(v.start.saturating_add(1024))
                .value("not clean"),
            );
        }
        if let Some(sev64) = profile.ext4_64bit {
            if f.features.iter().any(|x| x == "64bit") {
                out.push(
                    Finding::fail(
                        ID,
                        sev64,
                        format!("{name}: has the 64bit feature, which Alibaba's older image check tool rejects"),
                        format!(
                            "only if an import is refused for it: resize2fs -s {} (unmounted) turns 64bit off",
                            v.device
                        ),
                    )
                    .path(v.device.clone())
                    .offset(v.start.saturating_add(1024))
                    .value("64bit"),
                );
            }
        }
    }
    if out.is_empty() {
        out.push(Finding::pass(
            ID,
            if seen == 0 {
                "no ext2/3/4 filesystem in use".to_string()
            } else {
                format!("{seen} ext2/3/4 filesystem(s): clean, no journal to replay")
            },
        ));
    }
    out
}

pub(super) fn lvm(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::Lvm;
    let mut out = Vec::new();
    let labelled: Vec<&Volume> = s
        .inspection
        .volumes
        .iter()
        .filter(|v| v.filesystem.as_ref().is_some_and(|f| f.kind == FsKind::Lvm2Member))
        .collect();
    if labelled.is_empty() {
        return vec![Finding::pass(ID, "no LVM physical volumes")];
    }
    let here: Vec<&str> = s.physical_volumes().iter().map(|p| p.uuid.as_str()).collect();
    let mut reported_vgs: Vec<&str> = Vec::new();
    for pv in s.physical_volumes() {
        if let Some(e) = &pv.error {
            out.push(
                Finding::fail(
                    ID,
                    sev,
                    format!("LVM physical volume on {}: {e}", pv.device),
                    "repair the LVM metadata in the source VM (vgcfgrestore from /etc/lvm/backup) and export again",
                )
                .path(pv.device.clone())
                .offset(pv.start),
            );
        }
        let Some(vg) = &pv.volume_group else { continue };
        if reported_vgs.contains(&vg.name.as_str()) {
            continue;
        }
        reported_vgs.push(&vg.name);
        let missing: Vec<String> = vg
            .physical_volumes
            .iter()
            .filter(|m| !here.contains(&m.uuid.as_str()))
            .map(|m| format!("{} ({})", m.key, m.device_hint.as_deref().unwrap_or("no device hint")))
            .collect();
        // Where the group's PVs that were found are: the system disk is /dev/sda.
        let on_data_disks: Vec<&str> = s
            .physical_volumes()
            .iter()
            .filter(|p| vg.physical_volumes.iter().any(|m| m.uuid == p.uuid) && !p.device.starts_with("/dev/sda"))
            .map(|p| p.device.as_str())
            .collect();
        let spans = if !missing.is_empty() {
            Some(format!("physical volume(s) {} are not on the system disk", missing.join(", ")))
        } else if !on_data_disks.is_empty() {
            Some(format!("physical volume(s) {} are on data disks", on_data_disks.join(", ")))
        } else {
            None
        };
        if let Some(spans) = spans {
            out.push(
                Finding::fail(
                    ID,
                    Severity::Error,
                    format!("volume group {} spans disks: {spans}; a cloud imports the system disk alone", vg.name),
                    "move the volume group onto the system disk first (pvmove then vgreduce), or keep the root's \
                     volume group on the system disk and import the other disks as data disks",
                )
                .path(pv.device.clone())
                .offset(pv.start)
                .value(vg.name.clone()),
            );
        }
    }
    for v in s.inspection.volumes.iter() {
        let (Some(lv), Some(e)) = (&v.logical_volume, &v.error) else { continue };
        let (sev, fix) = if lv.incomplete {
            // The spanning itself is the error above; this says what could not be looked at.
            (
                Severity::Warning,
                "give the other disks with --data-disk to read it; to import it, move its volume group onto the \
                 system disk first (pvmove, vgreduce)",
            )
        } else {
            (
                if s.os().is_none() { sev } else { Severity::Warning },
                "convert it to a linear volume in the source VM (lvconvert), or import it as a data disk",
            )
        };
        out.push(Finding::fail(ID, sev, format!("logical volume {}: {e}", v.device), fix).path(v.device.clone()));
    }
    let devices: Vec<&str> = labelled.iter().map(|v| v.device.as_str()).collect();
    let root_lv = s.root_holder().filter(|v| v.logical_volume.is_some());
    match (s.os(), root_lv) {
        (Some(os), Some(root)) => {
            let what = format!("the root filesystem is on the logical volume {} ({})", root.device, s.lvm_summary());
            let fix = match profile.target {
                Target::Alibaba => {
                    "ECS imports root on LVM, but marketplace rules and growpart expect plain partitions: prefer them \
                     for the system disk and keep LVM for data disks"
                }
                _ => "prefer plain partitions for the system disk so the root can be grown with growpart",
            };
            out.push(Finding::fail(ID, profile.lvm_root, what, fix).path(root.device.clone()));
            out.extend(lvm_boot(s, os, root));
        }
        _ if s.os().is_none() => {
            let what = format!("the root filesystem may be on LVM ({} on {})", s.lvm_summary(), devices.join(", "));
            out.push(
                Finding::fail(
                    ID,
                    profile.lvm_root,
                    what,
                    "use plain partitions for the system disk; keep LVM for data disks",
                )
                .path(labelled[0].device.clone())
                .offset(labelled[0].start),
            );
        }
        _ => {
            out.push(
                Finding::pass(ID, format!("the root is not on LVM; the disk also holds {}", s.lvm_summary()))
                    .path(labelled[0].device.clone()),
            );
        }
    }
    out
}

/// What booting from a btrfs root needs: the btrfs driver at boot (built in or in the initramfs), the kernel
/// mounting the subvolume that holds the root (`rootflags=subvol=` when it is not the default), and on AWS no
/// subvolumes at all.
fn btrfs_root(profile: &Profile, s: &Subject, os: &OperatingSystem, root: &Volume) -> Vec<Finding> {
    const ID: CheckId = CheckId::RootFilesystem;
    let mut out = Vec::new();
    if let Some(bd) = s.extras.boot_drivers.known() {
        if !bd.get("btrfs").at_boot() {
            let kernel = os.kernels.iter().find(|k| k.version == bd.kernel);
            let fix = if super::debian_like(os) {
                "install btrfs-progs in the guest (its initramfs hook adds the driver), then update-initramfs -u -k all"
            } else {
                "install btrfs-progs in the guest, then dracut -f --add btrfs --regenerate-all"
            };
            let mut f = Finding::fail(
                ID,
                Severity::Error,
                format!(
                    "kernel {}: btrfs is neither built in nor in the initramfs, so the root {} cannot be mounted at boot",
                    bd.kernel, root.device
                ),
                fix,
            )
            .value(bd.kernel.clone());
            if let Some(p) = kernel.and_then(|k| k.initramfs.clone()) {
                f = f.path(p);
            }
            out.push(f);
        }
    }
    let subvolume = root.btrfs_subvolume.as_ref();
    let default_entry = os.grub.as_ref().and_then(|g| g.default_entry.as_ref());
    if let (Some(sub), Some(e)) = (subvolume, default_entry) {
        // The volume `root=` and `rootflags=` name: the btrfs itself (its default subvolume) or a subvolume.
        if let Some(mounted) = e.root_resolves_to.as_deref().filter(|d| *d != root.device) {
            let same_fs = mounted == sub.filesystem
                || s.volume(mounted)
                    .and_then(|v| v.btrfs_subvolume.as_ref())
                    .is_some_and(|b| b.filesystem == sub.filesystem);
            if same_fs {
                out.push(
                    Finding::fail(
                        ID,
                        Severity::Error,
                        format!(
                            "GRUB's default entry \"{}\" has the kernel mount {mounted} as the root, but the root is the \
                             subvolume {}",
                            e.title, sub.path
                        ),
                        format!(
                            "add rootflags=subvol={} to GRUB_CMDLINE_LINUX in /etc/default/grub and regenerate the \
                             GRUB configuration (or make it the default: btrfs subvolume set-default)",
                            sub.path
                        ),
                    )
                    .path(e.source.clone())
                    .value(e.options.clone()),
                );
            }
        }
    }
    let fs_device = subvolume.map_or(root.device.as_str(), |b| b.filesystem.as_str());
    let has_subvolumes =
        s.inspection.volumes.iter().any(|v| v.btrfs_subvolume.as_ref().is_some_and(|b| b.filesystem == fs_device));
    if profile.target == Target::Aws && has_subvolumes {
        out.push(
            Finding::fail(
                ID,
                Severity::Warning,
                format!("the root btrfs on {} has subvolumes, which VM Import does not support", root.device),
                "move the root to a btrfs without subvolumes, or to ext4 or xfs",
            )
            .path(root.device.clone()),
        );
    }
    out
}

/// What booting from a root logical volume needs: device mapper and the `lvm` tool in the initramfs, and no
/// `rd.lvm.lv=` naming a volume that does not exist (dracut waits for it, then drops to its shell).
fn lvm_boot(s: &Subject, os: &imgport_guest::inspect::OperatingSystem, root: &Volume) -> Vec<Finding> {
    const ID: CheckId = CheckId::Lvm;
    let mut out = Vec::new();
    let rebuild = if super::debian_like(os) {
        "install lvm2 in the guest (apt-get install lvm2), then update-initramfs -u -k all"
    } else {
        "install lvm2 in the guest, then dracut -f --add lvm --regenerate-all"
    };
    if let Some(bd) = s.extras.boot_drivers.known() {
        let kernel = os.kernels.iter().find(|k| k.version == bd.kernel);
        let contents = kernel.and_then(|k| k.initramfs_contents.as_ref());
        let dm = bd.get("dm_mod").at_boot();
        let tool = contents.is_some_and(|c| c.boot_tools.iter().any(|t| t == "lvm"));
        let mut lacks = Vec::new();
        if !dm {
            lacks.push("the dm_mod driver");
        }
        if !tool {
            lacks.push("the lvm tool");
        }
        if !lacks.is_empty() {
            let mut f = Finding::fail(
                ID,
                Severity::Error,
                format!(
                    "kernel {}: the initramfs lacks {}, so the root logical volume {} is not activated at boot",
                    bd.kernel,
                    lacks.join(" and "),
                    root.device
                ),
                rebuild,
            )
            .value(bd.kernel.clone());
            if let Some(p) = kernel.and_then(|k| k.initramfs.clone()) {
                f = f.path(p);
            }
            out.push(f);
        }
    }
    let lvs: Vec<String> = s
        .inspection
        .volumes
        .iter()
        .filter_map(|v| v.logical_volume.as_ref())
        .map(|lv| format!("{}/{}", lv.volume_group, lv.name))
        .collect();
    let entries = os.grub.as_ref().map(|g| g.entries.iter().chain(g.default_entry.as_ref())).into_iter().flatten();
    let mut named: Vec<String> = Vec::new();
    for e in entries {
        for arg in e.options.split_whitespace() {
            if let Some(lv) = arg.strip_prefix("rd.lvm.lv=") {
                if !lvs.iter().any(|l| l == lv) && !named.iter().any(|n| n == lv) {
                    named.push(lv.to_string());
                    out.push(
                        Finding::fail(
                            ID,
                            Severity::Error,
                            format!(
                                "GRUB entry \"{}\" asks the initramfs for the logical volume {lv} (rd.lvm.lv), which \
                                 does not exist; the boot waits for it and stops",
                                e.title
                            ),
                            "remove the rd.lvm.lv= argument or correct it (grubby --update-kernel=ALL \
                             --remove-args=rd.lvm.lv=...), then regenerate grub.cfg",
                        )
                        .path(e.source.clone())
                        .value(lv.to_string()),
                    );
                }
            }
        }
    }
    out
}

pub(super) fn root_last(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::RootLast;
    let parts: Vec<_> = s
        .inspection
        .partition_table
        .partitions
        .iter()
        .filter(|p| !matches!(p.role, PartitionRole::Extended | PartitionRole::GptProtective))
        .collect();
    let Some(last) = parts.iter().max_by_key(|p| p.start) else {
        return match s.os() {
            Some(_) => vec![Finding::pass(ID, "the root filesystem fills the whole disk")],
            None => vec![Finding::not_checked(ID, "no partitions and no readable root")],
        };
    };
    let root_part = match s.root_holder() {
        Some(v) => v.partition,
        None => {
            // Root inside LVM: what has to grow is the physical volume.
            let pv = s.physical_volumes().first().and_then(|pv| s.volume(&pv.device)).and_then(|v| v.partition);
            if pv.is_none() {
                return vec![Finding::not_checked(
                    ID,
                    "needs the root filesystem, which was not read (see root-filesystem)",
                )];
            }
            pv
        }
    };
    match root_part {
        None => vec![Finding::pass(ID, "the root filesystem fills the whole disk")],
        Some(n) if n == last.number => {
            vec![Finding::pass(ID, format!("the root's partition {n} is the last one, so it can grow"))]
        }
        Some(n) => vec![Finding::fail(
            ID,
            sev,
            format!(
                "the root's partition {n} is not the last one (partition {} follows it): growpart cannot grow it",
                last.number
            ),
            "move or remove the partitions after the root (often swap: delete it and its fstab line)",
        )
        .path(format!("/dev/sda{n}"))
        .offset(last.start)],
    }
}

pub(super) fn swap(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::Swap;
    let mut out = Vec::new();
    for v in &s.inspection.volumes {
        let role_swap = v
            .partition
            .and_then(|n| s.inspection.partition_table.partitions.iter().find(|p| p.number == n))
            .is_some_and(|p| p.role == PartitionRole::Swap);
        let fs_swap = v.filesystem.as_ref().is_some_and(|f| f.kind == FsKind::Swap);
        if role_swap || fs_swap {
            out.push(
                Finding::fail(
                    ID,
                    sev,
                    format!("swap partition {} on the system disk", v.device),
                    "remove it: swapoff, delete the partition and its /etc/fstab line (a swap file or the instance's \
                     local disk can replace it)",
                )
                .path(v.device.clone())
                .offset(v.start),
            );
        }
    }
    if let Some(os) = s.os() {
        for l in os.fstab.iter().filter(|l| l.entry.fstype == "swap") {
            let resolved_to_partition =
                l.resolves_to.as_ref().is_some_and(|d| out.iter().any(|f| f.evidence.path.as_ref() == Some(d)));
            if resolved_to_partition {
                continue;
            }
            out.push(
                Finding::fail(
                    ID,
                    sev,
                    format!("/etc/fstab line {} enables swap on {}", l.entry.line, l.entry.spec),
                    "remove the swap line from /etc/fstab (and the swap file)",
                )
                .path("/etc/fstab")
                .value(l.entry.spec.clone()),
            );
        }
    }
    if out.is_empty() {
        out.push(Finding::pass(ID, "no swap partition or swap entry in /etc/fstab"));
    }
    out
}

fn percent(part: u64, whole: u64) -> u128 {
    u128::from(part) * 100 / u128::from(whole.max(1))
}

pub(super) fn usage(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::Usage;
    let mut out = Vec::new();
    let mut seen = 0;
    // A btrfs mounted several times (subvolumes at /, /home, ...) has one free space: counted once.
    let mut btrfs_seen: Vec<&str> = Vec::new();
    for v in &s.inspection.volumes {
        let (Some(f), Some(mp)) = (&v.filesystem, &v.mountpoint) else { continue };
        if f.kind == FsKind::Btrfs {
            let filesystem = v.btrfs_subvolume.as_ref().map_or(v.device.as_str(), |b| b.filesystem.as_str());
            if btrfs_seen.contains(&filesystem) {
                continue;
            }
            btrfs_seen.push(filesystem);
        }
        let (Some(size), Some(free)) = (f.size, f.free_bytes) else { continue };
        if size == 0 {
            continue;
        }
        seen += 1;
        if free.saturating_mul(10) < size {
            out.push(
                Finding::fail(
                    ID,
                    sev,
                    format!("{mp} ({}) has {}% free space ({} of {})", v.device, percent(free, size), human(free), human(size)),
                    format!("free space on {mp} (apt-get clean / dnf clean all, journalctl --vacuum-size, old logs) or grow it"),
                )
                .path(v.device.clone())
                .offset(v.start)
                .value(free.to_string()),
            );
        }
        // XFS allocates inodes on demand: its counters say nothing about running out.
        if f.kind.is_ext() {
            if let (Some(inodes), Some(free_i)) = (f.inodes, f.free_inodes) {
                if inodes > 0 && free_i.saturating_mul(10) < inodes {
                    out.push(
                        Finding::fail(
                            ID,
                            sev,
                            format!("{mp} ({}) has {}% free inodes ({free_i} of {inodes})", v.device, percent(free_i, inodes)),
                            format!("delete many small files on {mp} (caches, mail queues, session files) or rebuild it with more inodes"),
                        )
                        .path(v.device.clone())
                        .offset(v.start)
                        .value(free_i.to_string()),
                    );
                }
            }
        }
    }
    if out.is_empty() {
        if seen == 0 {
            return vec![Finding::not_checked(ID, "no mounted filesystem with usage counters")];
        }
        out.push(Finding::pass(ID, format!("{seen} mounted filesystem(s) have more than 10% free space and inodes")));
    }
    out
}
