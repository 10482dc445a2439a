//! The check catalogue. Each check looks at the inspection report (and the few extra facts of
//! [`crate::facts`] and [`crate::lvm`]), applies the target profile's rule, and reports a pass, one failure per
//! problem, or `not_checked` with what it would need.

use crate::facts::{Availability, Fact, GuestExtras};
use crate::finding::{Finding, Severity, Status};
use crate::lvm::PhysicalVolume;
use crate::params::size_gib;
use crate::profile::{Firmware, Profile, Target};
use imgport_disk::ImageDetails;
use imgport_guest::inspect::{OperatingSystem, Volume};
use imgport_guest::partition::{PartitionRole, TableKind};
use imgport_guest::probe::FsKind;
use imgport_guest::Inspection;

/// Every check id, in report order.
pub const ALL: [&str; 28] = [
    "container",
    "size",
    "vhd-alignment",
    "partition-table",
    "boot-mode",
    "root-filesystem",
    "ext4-features",
    "lvm",
    "root-last",
    "swap",
    "os",
    "architecture",
    "kernel",
    "virtio",
    "nvme",
    "hyperv",
    "fstab",
    "grub",
    "network",
    "cloud-init",
    "qemu-guest-agent",
    "selinux",
    "shadow",
    "lib-symlinks",
    "sshd",
    "usage",
    "hypervisor-tools",
    "windows-drivers",
];

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Everything the checks look at.
pub struct Subject<'a> {
    pub inspection: &'a Inspection,
    pub details: &'a ImageDetails,
    /// Length of the image file, where known (a fixed VHD's footer must sit right after the data).
    pub file_size: Option<u64>,
    pub physical_volumes: &'a [PhysicalVolume],
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
    fn has_fs(&self, kind: FsKind) -> bool {
        self.inspection.volumes.iter().any(|v| v.filesystem.as_ref().is_some_and(|f| f.kind == kind))
    }
    fn lvm_summary(&self) -> String {
        let mut groups: Vec<String> = Vec::new();
        for pv in self.physical_volumes {
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
        let has_pv = !self.physical_volumes.is_empty() || self.has_fs(FsKind::Lvm2Member);
        if let Some((v, e)) = self.unreadable_linux_fs().first() {
            format!(
                "the {} filesystem on {} could not be read ({e})",
                v.filesystem.as_ref().map_or("", |f| f.kind.blkid_name()),
                v.device
            )
        } else if has_pv {
            format!("the root filesystem is probably inside {}: logical volumes are not read yet", self.lvm_summary())
        } else if self.has_fs(FsKind::CryptoLuks) {
            "the disk holds an encrypted (LUKS) volume, which cannot be read offline".into()
        } else if self.has_fs(FsKind::Ntfs) {
            "the disk holds NTFS: Windows guests are not read yet (needs the registry reader)".into()
        } else if self.has_fs(FsKind::Btrfs) {
            "the disk holds btrfs, whose files are not read yet".into()
        } else {
            "no Linux root filesystem was found (no volume with /etc, /bin and /etc/fstab or /etc/hosts)".into()
        }
    }
    /// ext2/3/4 and XFS volumes whose files could not be read, with the reason.
    fn unreadable_linux_fs(&self) -> Vec<(&'a Volume, &'a str)> {
        self.inspection
            .volumes
            .iter()
            .filter(|v| v.filesystem.as_ref().is_some_and(|f| f.kind.is_ext() || f.kind == FsKind::Xfs))
            .filter_map(|v| v.error.as_deref().map(|e| (v, e)))
            .collect()
    }
    /// A root that may exist but could not be read (LVM, LUKS, NTFS, btrfs, a filesystem feature the readers do
    /// not support) rather than no root at all, or a damaged one.
    fn root_unreadable_kind(&self) -> bool {
        !self.physical_volumes.is_empty()
            || [FsKind::Lvm2Member, FsKind::CryptoLuks, FsKind::Ntfs, FsKind::Btrfs].iter().any(|&k| self.has_fs(k))
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
    let mut out = Vec::new();
    for id in ALL {
        let Some(sev) = profile.severity(id) else { continue };
        let found = match id {
            "container" => container(profile, s, sev),
            "size" => size(profile, s, sev),
            "vhd-alignment" => vhd_alignment(profile, s, sev),
            "partition-table" => partition_table(s, sev),
            "boot-mode" => boot_mode(profile, s, sev),
            "root-filesystem" => root_filesystem(profile, s, sev),
            "ext4-features" => ext4_features(profile, s, sev),
            "lvm" => lvm(profile, s, sev),
            "root-last" => root_last(s, sev),
            "swap" => swap(s, sev),
            "os" => os_check(profile, s, sev),
            "architecture" => architecture(profile, s, sev),
            "kernel" => kernel(s, sev),
            "virtio" | "nvme" | "hyperv" => drivers(profile, s, id),
            "fstab" => fstab(profile, s, sev),
            "grub" => grub(s, sev),
            "network" => network(s, sev),
            "cloud-init" => cloud_init(profile, s, sev),
            "qemu-guest-agent" => qemu_guest_agent(s, sev),
            "selinux" => selinux(s, sev),
            "shadow" => shadow(s, sev),
            "lib-symlinks" => lib_symlinks(s, sev),
            "sshd" => sshd(s, sev),
            "usage" => usage(s, sev),
            "hypervisor-tools" => hypervisor_tools(s, sev),
            "windows-drivers" => windows_drivers(s, sev),
            _ => Vec::new(),
        };
        out.extend(found);
    }
    out
}

/// Linux checks run only on a Linux guest; without a readable root they are `not_checked`.
fn linux_guest<'a>(s: &Subject<'a>, id: &'static str) -> Result<&'a OperatingSystem, Vec<Finding>> {
    match s.guest() {
        Guest::Linux(os) => Ok(os),
        Guest::Windows(_) => Err(Vec::new()),
        Guest::Unknown(_) => {
            Err(vec![Finding::not_checked(id, "needs the root filesystem, which was not read (see root-filesystem)")])
        }
    }
}

fn convert_fix(profile: &Profile) -> String {
    match profile.target {
        Target::Gce => "convert to raw and pack it as GCE expects: imgport convert -O raw IMAGE disk.raw && \
                        tar --format=oldgnu -Sczf image.tar.gz disk.raw"
            .into(),
        _ => format!("convert it: imgport convert {} IMAGE OUTPUT", profile.convert_hint),
    }
}

fn container(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "container";
    let d = s.details;
    let sub = d.subformat.as_deref();
    let shown = match sub {
        Some(sf) => format!("{} ({sf})", d.format),
        None => d.format.to_string(),
    };
    let mut out = Vec::new();
    match profile.containers.iter().find(|c| c.format == d.format) {
        None => {
            let accepted: Vec<String> = profile
                .containers
                .iter()
                .map(|c| match c.subformats {
                    Some(sfs) => format!("{} {}", c.format, sfs.join("/")),
                    None => c.format.to_string(),
                })
                .collect();
            out.push(
                Finding::fail(
                    ID,
                    sev,
                    format!("{} does not import {shown} images (accepts {})", profile.service, accepted.join(", ")),
                    convert_fix(profile),
                )
                .value(shown.clone()),
            );
        }
        Some(rule) => {
            if let Some(sfs) = rule.subformats {
                if !sub.is_some_and(|sf| sfs.contains(&sf)) {
                    out.push(
                        Finding::fail(
                            ID,
                            sev,
                            format!("{} needs {} {}, not {shown}", profile.service, d.format, sfs.join(" or ")),
                            convert_fix(profile),
                        )
                        .value(shown.clone()),
                    );
                }
            }
            if let Some((csev, why)) = rule.caveat {
                out.push(Finding::fail(ID, csev, why, convert_fix(profile)).value(shown.clone()));
            }
        }
    }
    if let Some(b) = &d.backing_file {
        out.push(
            Finding::fail(
                ID,
                Severity::Error,
                format!("the image has a backing file ({b}): only this layer would be uploaded"),
                "flatten it: imgport convert --follow-backing -O qcow2 IMAGE flat.qcow2 (or qemu-img convert)",
            )
            .value(b.clone()),
        );
    }
    if let Some(q) = d.qcow2() {
        if q.corrupt {
            out.push(
                Finding::fail(
                    ID,
                    Severity::Error,
                    "qcow2 header carries the corrupt flag: qemu found its metadata damaged",
                    "repair or recreate the image: qemu-img check -r all IMAGE, then convert it",
                )
                .offset(0),
            );
        }
        if q.dirty {
            out.push(
                Finding::fail(
                    ID,
                    Severity::Warning,
                    "qcow2 was not closed cleanly (dirty flag): its refcounts may be stale",
                    "shut the VM down cleanly, or run qemu-img check -r all IMAGE before uploading",
                )
                .offset(0),
            );
        }
        if q.snapshots > 0 {
            out.push(
                Finding::fail(
                    ID,
                    Severity::Info,
                    format!("{} internal snapshot(s) are ignored: only the active layer is imported", q.snapshots),
                    "nothing to do unless a snapshot is the state to import: qemu-img snapshot -a NAME IMAGE first",
                )
                .value(q.snapshots.to_string()),
            );
        }
    }
    if d.vhd().is_some_and(|v| v.saved_state) {
        out.push(Finding::fail(
            ID,
            Severity::Warning,
            "the VHD was saved with a suspended VM (saved-state flag): the disk may be inconsistent",
            "start and shut down the VM cleanly in its hypervisor, then export the disk again",
        ));
    }
    if let Some(x) = d.vhdx() {
        if x.log_state != "empty" {
            out.push(
                Finding::fail(
                    ID,
                    Severity::Warning,
                    format!("the VHDX log was not empty ({}): the disk was not closed cleanly", x.log_state),
                    "open and close the disk in Hyper-V (or mount and unmount it) so the log is applied",
                )
                .value(x.log_state.clone()),
            );
        }
    }
    if out.is_empty() {
        out.push(Finding::pass(ID, format!("{shown} is accepted by {}", profile.service)).value(shown));
    }
    out
}

fn size(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "size";
    let v = s.inspection.virtual_size;
    let gib = size_gib(v);
    let shown = format!("{} (rounded up: {gib} GiB)", human(v));
    let Some((min, max)) = profile.size_limit else {
        return vec![
            Finding::pass(ID, format!("virtual size {shown}: {} sets no limit", profile.service)).value(v.to_string())
        ];
    };
    let range = format!("{}-{} GiB", min / GIB, max / GIB);
    // Compared in GiB: the size rounded up, as DiskImageSize is given.
    let (min_gib, max_gib) = (min.div_ceil(GIB), max / GIB);
    if gib < min_gib || gib > max_gib {
        let fix = if gib < min_gib {
            format!("grow the virtual disk to at least {} GiB: qemu-img resize IMAGE {}G", min / GIB, min / GIB)
        } else {
            format!(
                "shrink the filesystems and partitions so the disk fits in {} GiB, then qemu-img resize --shrink",
                max / GIB
            )
        };
        return vec![Finding::fail(
            ID,
            sev,
            format!("virtual size {shown} is outside {range} for {}", profile.service),
            fix,
        )
        .value(v.to_string())];
    }
    let mut msg = format!("virtual size {shown} is within {range}");
    if let Some((lo, hi, note)) = profile.size_note {
        if gib < lo.div_ceil(GIB) || gib > hi / GIB {
            msg.push_str(&format!(" (note: {note})"));
        }
    }
    vec![Finding::pass(ID, msg).value(v.to_string())]
}

fn vhd_alignment(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "vhd-alignment";
    let Some(vhd) = s.details.vhd() else {
        return vec![Finding::pass(ID, format!("not a VHD container ({})", s.details.format))];
    };
    let fix = "rewrite it with a whole-MiB size and an exact footer: imgport convert -O vhd -o subformat=fixed IMAGE \
               fixed.vhd (pads the size up to whole MiB)";
    let mut out = Vec::new();
    let chs = u64::from(vhd.cylinders) * u64::from(vhd.heads) * u64::from(vhd.sectors_per_track) * 512;
    let chs_max = 65535u64 * 16 * 255 * 512;
    if profile.vhd_exact_size && chs != vhd.current_size && chs != chs_max {
        out.push(
            Finding::fail(
                ID,
                sev,
                format!(
                    "the footer's current size ({}) and its CHS geometry {}x{}x{} ({chs} bytes) disagree: readers see \
                     different disk sizes",
                    vhd.current_size, vhd.cylinders, vhd.heads, vhd.sectors_per_track
                ),
                fix,
            )
            .offset(vhd.footer_offset)
            .value(vhd.current_size.to_string()),
        );
    }
    if profile.vhd_whole_mib && !vhd.current_size.is_multiple_of(MIB) {
        out.push(
            Finding::fail(
                ID,
                sev,
                format!(
                    "virtual size {} is not a whole number of MiB ({} MiB + {} bytes)",
                    vhd.current_size,
                    vhd.current_size / MIB,
                    vhd.current_size % MIB
                ),
                fix,
            )
            .offset(vhd.footer_offset)
            .value(vhd.current_size.to_string()),
        );
    }
    if profile.vhd_exact_size && vhd.disk_type == "fixed" {
        if let Some(len) = s.file_size {
            if len != vhd.current_size.saturating_add(512) {
                out.push(
                    Finding::fail(
                        ID,
                        sev,
                        format!(
                            "fixed VHD file is {len} bytes but its footer declares {} bytes of data (+512 footer)",
                            vhd.current_size
                        ),
                        fix,
                    )
                    .value(len.to_string()),
                );
            }
        }
    }
    if out.is_empty() {
        out.push(
            Finding::pass(
                ID,
                format!("{} VHD of {} bytes: size matches its footer and geometry", vhd.disk_type, vhd.current_size),
            )
            .value(vhd.current_size.to_string()),
        );
    }
    out
}

fn partition_table(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "partition-table";
    let t = &s.inspection.partition_table;
    let mut out = Vec::new();
    for f in &t.findings {
        let fsev = match f.severity {
            imgport_guest::Severity::Error => sev,
            imgport_guest::Severity::Warning => Severity::Warning,
            imgport_guest::Severity::Info => Severity::Info,
        };
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
        let fsev = if f.severity == imgport_guest::Severity::Error { sev } else { Severity::Warning };
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

fn boot_mode(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "boot-mode";
    let b = &s.inspection.boot;
    let arch = s.os().and_then(|o| o.architecture.as_ref()).map(|a| a.name.as_str());
    let evidence: Vec<&str> = b.bios_evidence.iter().chain(&b.uefi_evidence).map(String::as_str).collect();
    let mut out = Vec::new();
    if !b.bios && !b.uefi {
        let mut msg = "no BIOS boot code and no UEFI loader found: the image cannot boot".to_string();
        if let Some(e) = b.bios_evidence.first() {
            msg = format!("{msg} ({e})");
        }
        out.push(Finding::fail(
            ID,
            sev,
            msg,
            "install a boot loader inside the guest: grub-install --target=i386-pc /dev/sdX for BIOS, or grub-install \
             --target=x86_64-efi --removable with an EFI system partition for UEFI",
        ));
    }
    if b.bios && !b.uefi && !profile.allows(Firmware::Bios) {
        out.push(Finding::fail(
            ID,
            sev,
            format!("the image boots only with BIOS, which {} does not offer", profile.service),
            "add an EFI system partition with a UEFI loader: grub-install --target=x86_64-efi --removable",
        ));
    }
    if b.uefi && !b.bios && !profile.allows(Firmware::Uefi) {
        out.push(Finding::fail(
            ID,
            sev,
            format!("the image boots only with UEFI, which {} does not offer", profile.service),
            "install GRUB for BIOS as well: grub-install --target=i386-pc /dev/sdX",
        ));
    }
    for f in s.findings_for(Route::Boot).filter(|f| f.structure != "boot") {
        let mut fd = Finding::fail(
            ID,
            Severity::Warning,
            format!("{}: {}", f.structure, f.message),
            "recreate the EFI system partition (mkfs.fat -F 32) and reinstall the UEFI loader",
        )
        .path(f.structure.clone());
        if let Some(o) = f.offset {
            fd = fd.offset(o);
        }
        out.push(fd);
    }
    if profile.arm64_needs_uefi && arch == Some("aarch64") && !b.uefi {
        out.push(Finding::fail(
            ID,
            sev,
            "arm64 instances boot only with UEFI, and the image has no UEFI loader",
            "add an EFI system partition with \\EFI\\BOOT\\BOOTAA64.EFI: grub-install --target=arm64-efi --removable",
        ));
    }
    if profile.uefi_needs_fallback && b.uefi && !b.bios {
        let fallback = b.uefi_evidence.iter().any(|e| e.to_ascii_uppercase().contains("/EFI/BOOT/BOOT"));
        if !fallback {
            out.push(
                Finding::fail(
                    ID,
                    sev,
                    format!(
                        "{} boots UEFI images only through \\EFI\\BOOT\\BOOTX64.EFI; this ESP has only a distribution \
                         loader",
                        profile.service
                    ),
                    "install the fallback loader: grub-install --target=x86_64-efi --removable (or copy shimx64.efi \
                     to \\EFI\\BOOT\\BOOTX64.EFI)",
                )
                .value(b.uefi_evidence.join(", ")),
            );
        }
    }
    if out.is_empty() {
        let mode = b.mode.unwrap_or("-");
        out.push(Finding::pass(ID, format!("boots with {mode} ({})", evidence.join("; "))).value(mode));
    }
    out
}

fn root_filesystem(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "root-filesystem";
    match s.guest() {
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

fn ext4_features(profile: &Profile, s: &Subject, _sev: Severity) -> Vec<Finding> {
    const ID: &str = "ext4-features";
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

fn lvm(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "lvm";
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
    let here: Vec<&str> = s.physical_volumes.iter().map(|p| p.uuid.as_str()).collect();
    let mut reported_vgs: Vec<&str> = Vec::new();
    for pv in s.physical_volumes {
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
        if !missing.is_empty() {
            out.push(
                Finding::fail(
                    ID,
                    Severity::Error,
                    format!(
                        "volume group {} spans disks: physical volume(s) {} are not on this disk",
                        vg.name,
                        missing.join(", ")
                    ),
                    "move the volume group onto the system disk first (pvmove then vgreduce), or import every disk \
                     and keep the root on one of them",
                )
                .path(pv.device.clone())
                .offset(pv.start)
                .value(vg.name.clone()),
            );
        }
    }
    let devices: Vec<&str> = labelled.iter().map(|v| v.device.as_str()).collect();
    let what = if s.os().is_none() {
        format!("the root filesystem is on LVM ({} on {})", s.lvm_summary(), devices.join(", "))
    } else {
        format!("the system disk holds {} on {}", s.lvm_summary(), devices.join(", "))
    };
    let fix = match profile.target {
        Target::Alibaba => {
            "use plain partitions for the system disk (ECS marketplace rules and growpart expect them); \
                            keep LVM for data disks"
        }
        _ => "prefer plain partitions for the system disk so the root can be grown with growpart",
    };
    out.push(Finding::fail(ID, profile.lvm_root, what, fix).path(labelled[0].device.clone()).offset(labelled[0].start));
    out
}

fn root_last(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "root-last";
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
    let root_part = match s.root_volume() {
        Some(v) => v.partition,
        None => {
            // Root inside LVM: what has to grow is the physical volume.
            let pv = s.physical_volumes.first().and_then(|pv| s.volume(&pv.device)).and_then(|v| v.partition);
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

fn swap(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "swap";
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

fn os_check(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "os";
    match s.guest() {
        Guest::Unknown(reason) if s.root_unreadable_kind() => vec![Finding::not_checked(ID, reason)],
        Guest::Unknown(reason) => vec![Finding::fail(
            ID,
            sev,
            format!("no operating system found: {reason}"),
            "check that this is the system disk of the VM",
        )],
        Guest::Windows(os) | Guest::Linux(os) => {
            let r = &os.release;
            let name = r.pretty_name.clone().or_else(|| r.name.clone()).unwrap_or_else(|| "unknown".into());
            let src = r.source.clone().unwrap_or_else(|| "/etc/os-release".into());
            let (platform, known) = crate::params::alibaba_platform(os);
            let recognised = r.distro.is_some() && (known || profile.target != Target::Alibaba);
            if !recognised {
                let (msg, fix) = match profile.target {
                    Target::Alibaba => (
                        format!(
                            "{name} ({}) is not one of ImportImage's Platform values: it imports as {platform}",
                            r.distro.as_deref().unwrap_or("no ID")
                        ),
                        "if it derives from a listed distribution, pass that Platform; otherwise Others Linux (ECS sets \
                         up nothing in the guest) or Customized Linux (needs Alibaba's customization script)"
                            .to_string(),
                    ),
                    _ => (
                        format!("cannot tell the distribution from {src}"),
                        "make sure /etc/os-release exists with ID and VERSION_ID".to_string(),
                    ),
                };
                return vec![Finding::fail(ID, sev, msg, fix).path(src).value(r.distro.clone().unwrap_or_default())];
            }
            let msg = match profile.target {
                Target::Alibaba => format!("{name}: Platform {platform}"),
                _ => name,
            };
            vec![Finding::pass(ID, msg).path(src).value(r.distro.clone().unwrap_or_default())]
        }
    }
}

fn architecture(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "architecture";
    let os = match s.guest() {
        Guest::Linux(os) | Guest::Windows(os) => os,
        Guest::Unknown(_) => {
            return vec![Finding::not_checked(
                ID,
                "needs the root filesystem, which was not read (see root-filesystem)",
            )]
        }
    };
    let Some(a) = &os.architecture else {
        return vec![Finding::fail(
            ID,
            Severity::Warning,
            "cannot tell the architecture: no ELF binary at /bin/sh, /bin/bash or /bin/ls",
            "pass the architecture explicitly when importing",
        )];
    };
    if !profile.architectures.contains(&a.name.as_str()) {
        return vec![Finding::fail(
            ID,
            sev,
            format!(
                "{} binaries ({}-bit): {} supports {}",
                a.name,
                a.bits,
                profile.service,
                profile.architectures.join(", ")
            ),
            "rebuild the image for a supported architecture",
        )
        .path(a.evidence.clone())
        .value(a.name.clone())];
    }
    vec![Finding::pass(ID, format!("{} ({}-bit, from {})", a.name, a.bits, a.evidence))
        .path(a.evidence.clone())
        .value(a.name.clone())]
}

fn kernel(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "kernel";
    let os = match linux_guest(s, ID) {
        Ok(os) => os,
        Err(f) => return f,
    };
    let reinstall = if debian_like(os) {
        "apt-get install --reinstall linux-image-VERSION"
    } else {
        "dnf reinstall kernel-core-VERSION (yum on older releases)"
    };
    let Some(k) = os.kernels.first() else {
        return vec![Finding::fail(
            ID,
            sev,
            "no kernel in /boot (vmlinuz-*)",
            if debian_like(os) {
                "install a kernel inside the guest: apt-get install linux-image-amd64 (linux-image-arm64 on arm64)"
            } else {
                "install a kernel inside the guest: dnf install kernel (yum on older releases)"
            },
        )
        .path("/boot")];
    };
    let mut out = Vec::new();
    match (&k.initramfs, k.initramfs_size) {
        (None, _) => out.push(
            Finding::fail(
                ID,
                sev,
                format!("kernel {} has no initramfs in /boot", k.version),
                if debian_like(os) {
                    format!("update-initramfs -c -k {}", k.version)
                } else {
                    format!("dracut -f --kver {}", k.version)
                },
            )
            .path(k.path.clone())
            .value(k.version.clone()),
        ),
        (Some(p), Some(0)) => out.push(
            Finding::fail(
                ID,
                sev,
                format!("the initramfs of kernel {} is empty", k.version),
                if debian_like(os) {
                    format!("update-initramfs -u -k {}", k.version)
                } else {
                    format!("dracut -f --kver {}", k.version)
                },
            )
            .path(p.clone())
            .value(k.version.clone()),
        ),
        _ => {}
    }
    if k.modules_dir.is_none() {
        out.push(
            Finding::fail(
                ID,
                sev,
                format!("kernel {} has no modules in /lib/modules/{}", k.version, k.version),
                reinstall.replace("VERSION", &k.version),
            )
            .path(format!("/lib/modules/{}", k.version))
            .value(k.version.clone()),
        );
    }
    if out.is_empty() {
        out.push(
            Finding::pass(
                ID,
                format!("kernel {} with initramfs {} and modules", k.version, k.initramfs.as_deref().unwrap_or("-")),
            )
            .path(k.path.clone())
            .value(k.version.clone()),
        );
    }
    out
}

fn initramfs_fix(os: &OperatingSystem, kernel: &str, modules: &[&str]) -> String {
    let list = modules.join(" ");
    if debian_like(os) {
        format!(
            "add the drivers to the initramfs: printf '%s\\n' {list} >> /etc/initramfs-tools/modules && \
             update-initramfs -u -k {kernel}"
        )
    } else {
        format!(
            "add the drivers to the initramfs: dracut --add-drivers '{list}' -f --kver {kernel} (persist with \
             add_drivers+=\" {list} \" in /etc/dracut.conf.d/cloud.conf)"
        )
    }
}

fn drivers(profile: &Profile, s: &Subject, id: &'static str) -> Vec<Finding> {
    let Some(&(_, modules, sev)) = profile.boot_drivers.iter().find(|(c, _, _)| *c == id) else { return Vec::new() };
    let os = match linux_guest(s, id) {
        Ok(os) => os,
        Err(f) => return f,
    };
    let bd = match &s.extras.boot_drivers {
        Fact::Known(bd) => bd,
        Fact::Unknown(why) => {
            let k = os.kernels.first();
            let mut f = Finding::not_checked(id, format!("{}: cannot check: {why}", modules.join(", ")));
            if let Some(k) = k {
                f = f.path(k.initramfs.clone().unwrap_or_else(|| k.path.clone())).value(k.version.clone());
            }
            return vec![f];
        }
    };
    let mut not_in_initramfs = Vec::new();
    let mut missing = Vec::new();
    for m in modules {
        match bd.get(m) {
            Availability::ModuleOnly(_) => not_in_initramfs.push(*m),
            Availability::Missing => missing.push(*m),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if !not_in_initramfs.is_empty() {
        out.push(
            Finding::fail(
                id,
                sev,
                format!(
                    "kernel {}: {} are modules but not in the initramfs, so the root disk is not found at boot",
                    bd.kernel,
                    not_in_initramfs.join(", ")
                ),
                initramfs_fix(os, &bd.kernel, &not_in_initramfs),
            )
            .value(bd.kernel.clone()),
        );
    }
    if !missing.is_empty() {
        out.push(
            Finding::fail(
                id,
                sev,
                format!("kernel {} has no {} driver (neither built in nor a module)", bd.kernel, missing.join(", ")),
                "install a distribution kernel (they build these drivers as modules), then rebuild the initramfs",
            )
            .value(bd.kernel.clone()),
        );
    }
    if out.is_empty() {
        out.push(
            Finding::pass(id, format!("kernel {}: {} available at boot", bd.kernel, modules.join(", ")))
                .value(bd.kernel.clone()),
        );
    }
    out
}

const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "tmpfs",
    "devpts",
    "devtmpfs",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "efivarfs",
    "hugetlbfs",
    "mqueue",
    "configfs",
    "pstore",
    "binfmt_misc",
    "autofs",
    "fusectl",
    "rpc_pipefs",
    "nfs",
    "nfs4",
    "cifs",
    "smbfs",
    "smb3",
    "9p",
    "virtiofs",
    "none",
    "ramfs",
    "overlay",
    "iso9660",
    "udf",
];

fn fstab(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "fstab";
    let os = match linux_guest(s, ID) {
        Ok(os) => os,
        Err(f) => return f,
    };
    let mut out = Vec::new();
    let mut checked = 0;
    for l in &os.fstab {
        let e = &l.entry;
        let (kind, value) = e.spec_kind();
        let remote = e.spec.contains(':') || e.spec.starts_with("//");
        if PSEUDO_FS.contains(&e.fstype.as_str()) || e.fstype.starts_with("fuse") || remote || e.has_option("bind") {
            continue;
        }
        // A swap file or other path that is not a device.
        if kind == "device" && !e.spec.starts_with("/dev/") {
            continue;
        }
        checked += 1;
        let optional = e.has_option("nofail") || e.has_option("noauto");
        let lvm_name = kind == "device" && (value.starts_with("/dev/mapper/") || value.matches('/').count() == 3);
        if l.resolves_to.is_none() {
            if lvm_name && !s.physical_volumes.is_empty() {
                out.push(
                    Finding::not_checked(ID, format!("line {}: {} is an LVM volume, not read yet", e.line, e.spec))
                        .path("/etc/fstab")
                        .value(e.spec.clone()),
                );
                continue;
            }
            let (fsev, msg) = if optional {
                (
                    Severity::Info,
                    format!("line {}: {} on {} does not resolve (marked nofail/noauto)", e.line, e.spec, e.mountpoint),
                )
            } else {
                (
                    sev,
                    format!(
                        "line {}: {} on {} does not resolve to any filesystem in this image: boot stops in emergency \
                         mode",
                        e.line, e.spec, e.mountpoint
                    ),
                )
            };
            out.push(
                Finding::fail(
                    ID,
                    fsev,
                    msg,
                    format!(
                        "in /etc/fstab, point {} at an existing filesystem by UUID= (blkid shows them), add nofail if \
                         it is an optional extra disk, or remove the line",
                        e.mountpoint
                    ),
                )
                .path("/etc/fstab")
                .value(e.spec.clone()),
            );
        }
        let device_name = kind == "device"
            && ["/dev/sd", "/dev/vd", "/dev/xvd", "/dev/hd", "/dev/nvme"].iter().any(|p| value.starts_with(p));
        if device_name {
            let uuid = l
                .resolves_to
                .as_ref()
                .and_then(|d| s.volume(d))
                .and_then(|v| v.filesystem.as_ref())
                .and_then(|f| f.uuid.clone());
            let fix = match uuid {
                Some(u) => format!("replace {} with UUID={u} in /etc/fstab", e.spec),
                None => format!("replace {} with the filesystem's UUID= (blkid) in /etc/fstab", e.spec),
            };
            out.push(
                Finding::fail(
                    ID,
                    profile.fstab_device_names,
                    format!(
                        "line {}: {} names a device, and device names change on the target (virtio disks are /dev/vda)",
                        e.line, e.spec
                    ),
                    fix,
                )
                .path("/etc/fstab")
                .value(e.spec.clone()),
            );
        }
    }
    if out.iter().all(|f| f.status != Status::Fail) {
        out.push(
            Finding::pass(
                ID,
                format!(
                    "{checked} /etc/fstab entr{} resolve by UUID/LABEL/PARTUUID",
                    if checked == 1 { "y" } else { "ies" }
                ),
            )
            .path("/etc/fstab"),
        );
    }
    out
}

fn pending<T>(id: &'static str, s: &Subject, fact: &Fact<T>, what: &str) -> Result<(), Vec<Finding>> {
    linux_guest(s, id)?;
    match fact {
        Fact::Known(_) => Ok(()),
        Fact::Unknown(why) => Err(vec![Finding::not_checked(id, format!("{what}: cannot check: {why}"))]),
    }
}

fn grub(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "grub";
    if let Err(f) = pending(ID, s, &s.extras.boot_entries, "root=, kernel and initrd of the default boot entry") {
        return f;
    }
    let Some(entries) = s.extras.boot_entries.known() else { return Vec::new() };
    let mut out = Vec::new();
    for e in entries.iter().filter(|e| e.default || entries.len() == 1) {
        if !e.kernel_exists || !e.initrd_exists {
            out.push(
                Finding::fail(
                    ID,
                    sev,
                    format!("default boot entry names a missing kernel or initrd ({})", e.kernel),
                    "regenerate the boot configuration: update-grub (Debian/Ubuntu) or grub2-mkconfig -o \
                     /boot/grub2/grub.cfg",
                )
                .path(e.source.clone()),
            );
        }
        if let Some(r) = &e.root {
            if !e.root_resolves {
                out.push(
                    Finding::fail(
                        ID,
                        sev,
                        format!("default boot entry has root={r}, which names no filesystem in this image"),
                        "set root=UUID=<root uuid> (GRUB_DISABLE_LINUX_UUID=false in /etc/default/grub), then update-grub",
                    )
                    .path(e.source.clone())
                    .value(r.clone()),
                );
            } else if r.starts_with("/dev/sd") || r.starts_with("/dev/hd") || r.starts_with("/dev/vd") {
                out.push(
                    Finding::fail(
                        ID,
                        Severity::Warning,
                        format!("default boot entry has root={r}: device names change on the target"),
                        "use root=UUID=<root uuid>: set GRUB_DISABLE_LINUX_UUID=false in /etc/default/grub and run \
                         update-grub",
                    )
                    .path(e.source.clone())
                    .value(r.clone()),
                );
            }
        }
    }
    if out.is_empty() {
        out.push(Finding::pass(ID, "the default boot entry's kernel, initrd and root= resolve"));
    }
    out
}

fn network(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "network";
    if let Err(f) = pending(ID, s, &s.extras.network, "DHCP on the primary interface") {
        return f;
    }
    let Some(n) = s.extras.network.known() else { return Vec::new() };
    let mut out = Vec::new();
    if !n.primary_dhcp {
        out.push(Finding::fail(
            ID,
            sev,
            "the primary interface is not configured for DHCP",
            "configure DHCP on the first interface (e.g. netplan dhcp4: true, or BOOTPROTO=dhcp)",
        ));
    }
    for p in &n.pinned {
        out.push(Finding::fail(
            ID,
            Severity::Warning,
            format!("network configuration is pinned to a MAC address or interface name: {p}"),
            "remove the MAC/name pinning (udev persistent-net rules, HWADDR=, match: macaddress:)",
        ));
    }
    if out.is_empty() {
        out.push(Finding::pass(ID, format!("DHCP on the primary interface ({})", n.sources.join(", "))));
    }
    out
}

fn agent<'a>(os: &'a OperatingSystem, name: &str) -> Option<&'a imgport_guest::linux::Agent> {
    os.agents.iter().find(|a| a.name == name && a.present)
}

fn cloud_init(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "cloud-init";
    let os = match linux_guest(s, ID) {
        Ok(os) => os,
        Err(f) => return f,
    };
    for (name, human) in profile.provisioning_agents {
        if let Some(a) = agent(os, name) {
            let version = match &s.extras.cloud_init_version {
                Fact::Known(Some(v)) if *name == "cloud_init" => format!(" {}", v.version),
                Fact::Unknown(_) if *name == "cloud_init" => " (version unknown)".into(),
                _ => String::new(),
            };
            let path = a.evidence.first().cloned().unwrap_or_default();
            if let (Fact::Known(Some(v)), Some(min), true) =
                (&s.extras.cloud_init_version, profile.cloud_init_min, *name == "cloud_init")
            {
                if !v.at_least(min) {
                    return vec![Finding::fail(
                        ID,
                        Severity::Warning,
                        format!("cloud-init {} is older than {min}, the oldest that supports this cloud", v.version),
                        format!(
                            "upgrade cloud-init to {min} or later (apt-get install cloud-init / yum update cloud-init)"
                        ),
                    )
                    .path(path)
                    .value(v.version.clone())];
                }
            }
            return vec![Finding::pass(ID, format!("{human} is installed{version}")).path(path)];
        }
    }
    let wanted: Vec<&str> = profile.provisioning_agents.iter().map(|(_, h)| *h).collect();
    let fix = match profile.target {
        Target::Alibaba => {
            "install cloud-init (apt-get install cloud-init / yum install cloud-init; 19.1.3 or later) \
                            so ECS sets hostname, keys, network and grows the root; Cloud Assistant (aliyun-assist) \
                            is recommended too"
        }
        Target::Azure => "install the Azure Linux agent (walinuxagent / WALinuxAgent) or cloud-init",
        _ => "install cloud-init so the instance gets its hostname, SSH keys and network on first boot",
    };
    let mut f = Finding::fail(ID, sev, format!("{} is not installed", wanted.join(" or ")), fix);
    if sev == Severity::Info {
        f.message.push_str(" (optional here)");
    }
    vec![f]
}

fn qemu_guest_agent(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "qemu-guest-agent";
    let os = match linux_guest(s, ID) {
        Ok(os) => os,
        Err(f) => return f,
    };
    match agent(os, "qemu_guest_agent") {
        Some(a) => vec![Finding::fail(
            ID,
            sev,
            "qemu-guest-agent is installed; ECS's image check flags it",
            if debian_like(os) { "apt-get purge qemu-guest-agent" } else { "yum remove qemu-guest-agent" },
        )
        .path(a.evidence.first().cloned().unwrap_or_default())],
        None => vec![Finding::pass(ID, "qemu-guest-agent is not installed")],
    }
}

fn selinux(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "selinux";
    let os = match linux_guest(s, ID) {
        Ok(os) => os,
        Err(f) => return f,
    };
    match &os.selinux {
        Some(se) if se.mode == "enforcing" => vec![Finding::fail(
            ID,
            sev,
            "SELinux is enforcing: the first boot on the new platform can fail on relabelling or policy denials",
            "set SELINUX=permissive (or disabled) in /etc/selinux/config before exporting",
        )
        .path("/etc/selinux/config")
        .value("enforcing")],
        Some(se) => vec![Finding::pass(ID, format!("SELinux is {}", se.mode))
            .path("/etc/selinux/config")
            .value(se.mode.clone())],
        None => vec![Finding::pass(ID, "no SELinux configuration (/etc/selinux/config)")],
    }
}

fn shadow(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "shadow";
    if let Err(f) = pending(ID, s, &s.extras.shadow, "a root entry, and not immutable") {
        return f;
    }
    let Some(sh) = s.extras.shadow.known() else { return Vec::new() };
    let mut out = Vec::new();
    if !sh.root_entry {
        out.push(
            Finding::fail(
                ID,
                sev,
                "/etc/shadow has no root entry",
                "restore root's line: pwconv, or copy it from /etc/passwd",
            )
            .path("/etc/shadow"),
        );
    }
    for p in &sh.immutable {
        out.push(
            Finding::fail(
                ID,
                sev,
                format!("{p} is immutable (chattr +i): the cloud cannot set the password or keys"),
                format!("chattr -i -a {p}"),
            )
            .path(p.clone()),
        );
    }
    if out.is_empty() {
        out.push(Finding::pass(ID, "/etc/shadow has a root entry and is not immutable").path("/etc/shadow"));
    }
    out
}

fn lib_symlinks(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "lib-symlinks";
    if let Err(f) = pending(ID, s, &s.extras.absolute_lib_links, "not absolute symlinks") {
        return f;
    }
    let Some(links) = s.extras.absolute_lib_links.known() else { return Vec::new() };
    if links.is_empty() {
        return vec![Finding::pass(ID, "/lib and /lib64 are directories or relative links")];
    }
    links
        .iter()
        .map(|(p, t)| {
            Finding::fail(
                ID,
                sev,
                format!("{p} is an absolute symlink to {t}"),
                format!("make it relative: ln -sfn {} {p}", t.trim_start_matches('/')),
            )
            .path(p.clone())
            .value(t.clone())
        })
        .collect()
}

fn sshd(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "sshd";
    if let Err(f) = pending(ID, s, &s.extras.sshd, "SSH server installed and enabled") {
        return f;
    }
    let Some(d) = s.extras.sshd.known() else { return Vec::new() };
    if !d.installed {
        return vec![Finding::fail(
            ID,
            sev,
            "no SSH server is installed: the instance cannot be logged into",
            "install openssh-server and enable it (systemctl enable ssh / sshd)",
        )];
    }
    if !d.enabled {
        return vec![Finding::fail(
            ID,
            sev,
            "the SSH server is installed but not enabled",
            "systemctl enable sshd (ssh on Debian)",
        )];
    }
    vec![Finding::pass(ID, "the SSH server is installed and enabled")]
}

fn percent(part: u64, whole: u64) -> u128 {
    u128::from(part) * 100 / u128::from(whole.max(1))
}

fn usage(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "usage";
    let mut out = Vec::new();
    let mut seen = 0;
    for v in &s.inspection.volumes {
        let (Some(f), Some(mp)) = (&v.filesystem, &v.mountpoint) else { continue };
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

fn hypervisor_tools(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "hypervisor-tools";
    let os = match linux_guest(s, ID) {
        Ok(os) => os,
        Err(f) => return f,
    };
    let tools = [
        ("vmware_tools", "VMware Tools", "apt-get purge open-vm-tools, or vmware-uninstall-tools.pl"),
        ("virtualbox_additions", "VirtualBox Guest Additions", "/opt/VBoxGuestAdditions-*/uninstall.sh"),
        ("xen_tools", "XenServer tools", "remove the xe-guest-utilities package"),
    ];
    let mut out = Vec::new();
    for (name, human, fix) in tools {
        if let Some(a) = agent(os, name) {
            out.push(
                Finding::fail(
                    ID,
                    sev,
                    format!("{human} installed: they do nothing on the target and may disturb it"),
                    format!("remove them: {fix}"),
                )
                .path(a.evidence.first().cloned().unwrap_or_default()),
            );
        }
    }
    if out.is_empty() {
        out.push(Finding::pass(ID, "no VMware, VirtualBox or Xen guest tools"));
    }
    out
}

fn windows_drivers(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: &str = "windows-drivers";
    let windows = match s.guest() {
        Guest::Windows(_) => true,
        Guest::Unknown(_) => s.has_fs(FsKind::Ntfs),
        Guest::Linux(_) => false,
    };
    if !windows {
        return Vec::new();
    }
    match &s.extras.windows_drivers {
        Fact::Unknown(why) => vec![Finding::not_checked(ID, format!("viostor, netkvm: cannot check: {why}"))],
        Fact::Known(d) => {
            let missing: Vec<&str> =
                [("viostor", d.viostor), ("netkvm", d.netkvm)].iter().filter(|(_, ok)| !ok).map(|(n, _)| *n).collect();
            if missing.is_empty() {
                vec![Finding::pass(ID, "viostor and netkvm (virtio) drivers are installed")]
            } else {
                let why = if d.why_not.is_empty() { String::new() } else { format!(" ({})", d.why_not.join("; ")) };
                vec![Finding::fail(
                    ID,
                    sev,
                    format!("virtio drivers missing: {}{why}", missing.join(", ")),
                    "install the virtio-win drivers in the guest (virtio-win-guest-tools.exe) before exporting",
                )]
            }
        }
    }
}
