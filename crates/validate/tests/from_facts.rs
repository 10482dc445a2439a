//! Validation from facts written by hand, no image read: an inspection and container details built in the test,
//! judged by `validate_with_facts`.

use imgport_disk::{Format, ImageDetails};
use imgport_guest::inspect::{BootModes, LogicalVolume, OperatingSystem, Volume};
use imgport_guest::linux::{Architecture, OsRelease};
use imgport_guest::lvm::{PhysicalVolume, VgMember, VolumeGroup};
use imgport_guest::partition::{Partition, PartitionRole, PartitionTable, TableKind};
use imgport_guest::probe::{FsInfo, FsKind};
use imgport_guest::Inspection;
use imgport_validate::facts::{Availability, BootDrivers, Fact, GuestExtras};
use imgport_validate::{validate_with_facts, CheckId, Finding, Options, Report, Severity, Status, Target};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn fs(kind: FsKind) -> FsInfo {
    FsInfo {
        kind,
        version: None,
        label: None,
        uuid: Some("0f9e1c2a-1111-2222-3333-444455556666".into()),
        size: None,
        block_size: None,
        free_bytes: None,
        inodes: None,
        free_inodes: None,
        features: Vec::new(),
        needs_recovery: false,
        not_clean: false,
    }
}

fn partition(number: u32, role: PartitionRole) -> Partition {
    let start = u64::from(number) * MIB;
    Partition {
        number,
        start,
        size: 4 * GIB,
        first_lba: start / 512,
        last_lba: (start + 4 * GIB) / 512 - 1,
        type_id: "0x83".into(),
        type_name: "Linux",
        role,
        partuuid: None,
        name: None,
        bootable: false,
        attributes: None,
        logical: false,
    }
}

fn volume(number: u32, kind: FsKind, mountpoint: Option<&str>) -> Volume {
    Volume {
        device: format!("/dev/sda{number}"),
        partition: Some(number),
        start: u64::from(number) * MIB,
        size: 4 * GIB,
        filesystem: Some(fs(kind)),
        mountpoint: mountpoint.map(str::to_string),
        error: None,
        logical_volume: None,
        btrfs_subvolume: None,
    }
}

fn bios_boot() -> BootModes {
    BootModes {
        bios: true,
        uefi: false,
        mode: Some("BIOS"),
        bios_evidence: vec!["boot code in the MBR".into()],
        uefi_evidence: Vec::new(),
    }
}

/// A Debian guest on /dev/sda1 of an MBR disk, booting with BIOS.
fn debian(arch: &str) -> Inspection {
    Inspection {
        format: Format::Raw,
        virtual_size: 8 * GIB,
        partition_table: table(TableKind::Mbr, vec![partition(1, PartitionRole::Linux)]),
        data_disks: Vec::new(),
        volumes: vec![volume(1, FsKind::Ext4, Some("/"))],
        lvm: Vec::new(),
        operating_systems: vec![linux_os(arch)],
        boot: bios_boot(),
        findings: Vec::new(),
        bytes_read: 0,
    }
}

fn table(kind: TableKind, partitions: Vec<Partition>) -> PartitionTable {
    PartitionTable {
        kind,
        sector_size: 512,
        disk_id: None,
        mbr_signature: true,
        mbr_boot_code: kind == TableKind::Mbr,
        protective_mbr: kind == TableKind::Gpt,
        hybrid_mbr: false,
        hybrid_entries: Vec::new(),
        partitions,
        findings: Vec::new(),
    }
}

fn linux_os(arch: &str) -> OperatingSystem {
    OperatingSystem {
        os_type: "linux".into(),
        root: "/dev/sda1".into(),
        release: OsRelease {
            distro: Some("debian".into()),
            name: Some("Debian GNU/Linux".into()),
            version: Some("12".into()),
            major_version: Some(12),
            ..OsRelease::default()
        },
        hostname: None,
        architecture: Some(Architecture { name: arch.into(), evidence: "/bin/sh".into(), bits: 64 }),
        kernels: Vec::new(),
        module_trees: Vec::new(),
        fstab: Vec::new(),
        mounted: Vec::new(),
        agents: Vec::new(),
        selinux: None,
        grub: None,
        network: Default::default(),
        packages: None,
        accounts: Default::default(),
        lib_links: Vec::new(),
        sshd: Default::default(),
        windows: None,
    }
}

fn judge(inspection: &Inspection, extras: &GuestExtras, target: Target) -> Report {
    validate_with_facts(inspection, &ImageDetails::new(Format::Raw), extras, &Options { target, file_size: None })
}

fn of(r: &Report, id: CheckId) -> Vec<&Finding> {
    r.findings.iter().filter(|f| f.id == id).collect()
}

/// A thin logical volume of vg0, listed by the inspection but not read.
fn thin_lv(name: &str) -> Volume {
    Volume {
        device: format!("/dev/vg0/{name}"),
        partition: None,
        start: 0,
        size: 0,
        filesystem: None,
        mountpoint: None,
        error: Some("not read: a thin volume: its blocks are mapped by the pool's metadata, not read yet".into()),
        logical_volume: Some(LogicalVolume {
            volume_group: "vg0".into(),
            name: name.into(),
            layout: "thin".into(),
            physical_volumes: Vec::new(),
            disks: Vec::new(),
            incomplete: false,
        }),
        btrfs_subvolume: None,
    }
}

/// An LVM system disk: the root is inside a logical volume, which is not read (thin); the LVM check names the
/// group and its volumes, and a group with a member on another disk is an error whatever the target.
#[test]
fn lvm_root_is_named_from_its_volume_group() {
    let member = |key: &str, uuid: &str, hint: &str| VgMember {
        key: key.into(),
        uuid: uuid.into(),
        device_hint: Some(hint.into()),
    };
    let pv = |members: Vec<VgMember>| PhysicalVolume {
        device: "/dev/sda2".into(),
        start: 2 * MIB,
        uuid: "JIrYxoFzX55oMaqwO7SPnQnoZ2K4WEY5".into(),
        volume_group: Some(VolumeGroup {
            name: "vg0".into(),
            seqno: 3,
            physical_volumes: members,
            logical_volumes: vec!["root".into(), "swap".into()],
            extent_size: 4 << 20,
            pv_extents: Vec::new(),
            uuid: String::new(),
            lvs: Vec::new(),
        }),
        error: None,
    };
    let mut inspection = Inspection {
        format: Format::Raw,
        virtual_size: 8 * GIB,
        partition_table: table(
            TableKind::Mbr,
            vec![partition(1, PartitionRole::Linux), partition(2, PartitionRole::Lvm)],
        ),
        data_disks: Vec::new(),
        volumes: vec![
            volume(1, FsKind::Ext4, None),
            volume(2, FsKind::Lvm2Member, None),
            thin_lv("root"),
            thin_lv("swap"),
        ],
        lvm: vec![pv(vec![member("pv0", "JIrYxoFzX55oMaqwO7SPnQnoZ2K4WEY5", "/dev/sda2")])],
        operating_systems: Vec::new(),
        boot: bios_boot(),
        findings: Vec::new(),
        bytes_read: 0,
    };
    let extras = GuestExtras::from_inspection(&inspection);
    let r = judge(&inspection, &extras, Target::Alibaba);
    let root = of(&r, CheckId::RootFilesystem);
    assert_eq!(root.len(), 1);
    assert_eq!(root[0].status, Status::NotChecked);
    assert!(root[0].message.contains("inside LVM volume group vg0 (root, swap)"), "{}", root[0].message);
    let lvm = of(&r, CheckId::Lvm);
    // Each thin LV not read (an error: the root cannot be looked at), then the root on LVM (a warning on ECS).
    let sev: Vec<_> = lvm.iter().map(|f| (f.status, f.severity)).collect();
    assert_eq!(
        sev,
        [(Status::Fail, Severity::Error), (Status::Fail, Severity::Error), (Status::Fail, Severity::Warning)]
    );
    assert!(lvm[0].message.starts_with("logical volume /dev/vg0/root: not read: a thin volume"), "{}", lvm[0].message);
    assert_eq!(lvm[2].message, "the root filesystem may be on LVM (LVM volume group vg0 (root, swap) on /dev/sda2)");
    assert_eq!((lvm[2].evidence.path.as_deref(), lvm[2].evidence.offset), (Some("/dev/sda2"), Some(2 * MIB)));
    // The root's partition is the physical volume, the last one: it can grow.
    assert_eq!(of(&r, CheckId::RootLast)[0].status, Status::Pass);

    inspection.lvm = vec![pv(vec![
        member("pv0", "JIrYxoFzX55oMaqwO7SPnQnoZ2K4WEY5", "/dev/sda2"),
        member("pv1", "AAAAAABBBBCCCCDDDDEEEEFFFFGGGGGG", "/dev/sdb"),
    ])];
    for target in Target::ALL {
        let r = judge(&inspection, &extras, target);
        let spans: Vec<_> = of(&r, CheckId::Lvm)
            .into_iter()
            .filter(|f| f.severity == Severity::Error && f.message.contains("spans disks"))
            .collect();
        assert_eq!(spans.len(), 1, "{target}");
        assert!(
            spans[0].message.contains("vg0 spans disks: physical volume(s) pv1 (/dev/sdb)"),
            "{}",
            spans[0].message
        );
    }
}

/// The driver checks judge the boot-driver facts: a missing virtio driver is an error, one left out of the
/// initramfs gets the distribution's initramfs fix, and unknown facts leave the check unchecked.
#[test]
fn missing_virtio_driver_fails_from_the_facts() {
    let inspection = debian("x86_64");
    let mut extras = GuestExtras::from_inspection(&inspection);
    let drivers = |virtio_blk: Availability| BootDrivers {
        kernel: "6.1.0-18-amd64".into(),
        drivers: vec![
            ("virtio_blk".into(), virtio_blk),
            ("virtio_pci".into(), Availability::BuiltIn("CONFIG_VIRTIO_PCI=y".into())),
            ("virtio_net".into(), Availability::InInitramfs("virtio_net.ko".into())),
            ("nvme".into(), Availability::InInitramfs("nvme.ko".into())),
        ],
    };
    extras.boot_drivers = Fact::Known(drivers(Availability::Missing));
    let r = judge(&inspection, &extras, Target::Alibaba);
    let v = of(&r, CheckId::Virtio);
    assert_eq!((v.len(), v[0].status, v[0].severity), (1, Status::Fail, Severity::Error));
    assert_eq!(v[0].message, "kernel 6.1.0-18-amd64 has no virtio_blk driver (neither built in nor a module)");
    assert_eq!(of(&r, CheckId::Nvme)[0].status, Status::Pass);
    assert_eq!(r.exit_code(false), 1);

    extras.boot_drivers = Fact::Known(drivers(Availability::ModuleOnly("virtio_blk.ko".into())));
    let r = judge(&inspection, &extras, Target::Alibaba);
    let fix = of(&r, CheckId::Virtio)[0].fix.clone().unwrap_or_default();
    assert!(
        fix.contains("/etc/initramfs-tools/modules") && fix.contains("update-initramfs -u -k 6.1.0-18-amd64"),
        "{fix}"
    );

    // GCE asks for virtio_scsi, which these facts do not list.
    extras.boot_drivers = Fact::Known(drivers(Availability::InInitramfs("virtio_blk.ko".into())));
    let r = judge(&inspection, &extras, Target::Gce);
    assert!(of(&r, CheckId::Virtio)[0].message.contains("no virtio_scsi driver"));
    assert!(of(&r, CheckId::Nvme).is_empty(), "GCE does not run the nvme check");

    extras.boot_drivers = Fact::unknown("kernel 6.1.0-18-amd64: its drivers were not examined");
    let r = judge(&inspection, &extras, Target::Alibaba);
    let v = of(&r, CheckId::Virtio);
    assert_eq!(v[0].status, Status::NotChecked);
    assert!(v[0].message.ends_with("cannot check: kernel 6.1.0-18-amd64: its drivers were not examined"));
}

/// Boot mode from the facts: a GPT disk whose BIOS boot partition holds a core image but whose MBR has no boot
/// code starts nothing; an arm64 guest that only boots with BIOS cannot start on any target.
#[test]
fn gpt_bios_mismatch_cannot_boot() {
    let mut inspection = debian("x86_64");
    inspection.partition_table =
        table(TableKind::Gpt, vec![partition(1, PartitionRole::BiosBoot), partition(2, PartitionRole::Linux)]);
    inspection.partition_table.mbr_boot_code = false;
    inspection.boot = BootModes {
        bios: false,
        uefi: false,
        mode: None,
        bios_evidence: vec!["BIOS boot partition /dev/sda1 holds data but the MBR has no boot code".into()],
        uefi_evidence: Vec::new(),
    };
    let extras = GuestExtras::from_inspection(&inspection);
    for target in Target::ALL {
        let r = judge(&inspection, &extras, target);
        let b = of(&r, CheckId::BootMode);
        assert_eq!((b.len(), b[0].status, b[0].severity), (1, Status::Fail, Severity::Error), "{target}");
        assert_eq!(
            b[0].message,
            "no BIOS boot code and no UEFI loader found: the image cannot boot (BIOS boot partition /dev/sda1 \
             holds data but the MBR has no boot code)"
        );
        if target == Target::Alibaba {
            let mode = r.parameters.pairs().into_iter().find(|(k, _)| *k == "BootMode").map(|(_, v)| v);
            assert_eq!(mode.as_deref(), Some("-"), "no BootMode to derive");
        }
    }

    let inspection = debian("aarch64");
    let r = judge(&inspection, &GuestExtras::from_inspection(&inspection), Target::Alibaba);
    let b = of(&r, CheckId::BootMode);
    assert_eq!((b.len(), b[0].severity), (1, Severity::Error));
    assert_eq!(b[0].message, "arm64 instances boot only with UEFI, and the image has no UEFI loader");
    assert_eq!(of(&r, CheckId::Architecture)[0].status, Status::Pass);
}

/// Root on a logical volume that is read: the LVM check wants device mapper and the lvm tool in the initramfs of
/// the kernel that boots, and no rd.lvm.lv= naming a volume that does not exist.
#[test]
fn root_on_a_logical_volume_needs_lvm_in_the_initramfs() {
    use imgport_guest::grub::{BootEntry, Grub};
    use imgport_guest::initramfs::InitramfsContents;
    use imgport_guest::linux::Kernel;
    let mut inspection = debian("x86_64");
    inspection.partition_table =
        table(TableKind::Mbr, vec![partition(1, PartitionRole::Linux), partition(2, PartitionRole::Lvm)]);
    let mut root = thin_lv("root");
    root.error = None;
    root.size = 4 * GIB;
    root.filesystem = Some(fs(FsKind::Ext4));
    root.mountpoint = Some("/".into());
    if let Some(lv) = root.logical_volume.as_mut() {
        lv.layout = "linear".into();
        lv.physical_volumes = vec!["/dev/sda2".into()];
        lv.disks = vec!["/dev/sda".into()];
    }
    inspection.volumes = vec![volume(1, FsKind::Ext4, Some("/boot")), volume(2, FsKind::Lvm2Member, None), root];
    inspection.lvm = vec![PhysicalVolume {
        device: "/dev/sda2".into(),
        start: 2 * MIB,
        uuid: "JIrYxoFzX55oMaqwO7SPnQnoZ2K4WEY5".into(),
        volume_group: Some(VolumeGroup {
            name: "vg0".into(),
            seqno: 3,
            physical_volumes: vec![VgMember {
                key: "pv0".into(),
                uuid: "JIrYxoFzX55oMaqwO7SPnQnoZ2K4WEY5".into(),
                device_hint: Some("/dev/sda2".into()),
            }],
            logical_volumes: vec!["root".into(), "swap".into()],
            extent_size: 4 << 20,
            pv_extents: Vec::new(),
            uuid: String::new(),
            lvs: Vec::new(),
        }),
        error: None,
    }];
    let os = &mut inspection.operating_systems[0];
    os.root = "/dev/vg0/root".into();
    let contents = |tools: &[&str]| InitramfsContents {
        boot_tools: tools.iter().map(|t| t.to_string()).collect(),
        complete: true,
        ..Default::default()
    };
    os.kernels = vec![Kernel {
        version: "6.1.0-18-amd64".into(),
        path: "/boot/vmlinuz-6.1.0-18-amd64".into(),
        size: 4096,
        initramfs: Some("/boot/initrd.img-6.1.0-18-amd64".into()),
        initramfs_size: Some(4096),
        modules_dir: None,
        config: None,
        initramfs_contents: Some(contents(&[])),
        drivers: Vec::new(),
    }];
    let entry = |options: &str| BootEntry {
        title: "Debian GNU/Linux".into(),
        position: "0".into(),
        source: "/boot/grub/grub.cfg".into(),
        kernel: Some("/vmlinuz-6.1.0-18-amd64".into()),
        options: options.into(),
        root: Some("/dev/mapper/vg0-root".into()),
        root_resolves_to: Some("/dev/vg0/root".into()),
        ..Default::default()
    };
    os.grub = Some(Grub {
        entries: vec![entry("root=/dev/mapper/vg0-root ro rd.lvm.lv=vg0/root rd.lvm.lv=vg0/swap")],
        ..Default::default()
    });
    let mut extras = GuestExtras::from_inspection(&inspection);
    let drivers =
        |dm: Availability| BootDrivers { kernel: "6.1.0-18-amd64".into(), drivers: vec![("dm_mod".into(), dm)] };
    extras.boot_drivers = Fact::Known(drivers(Availability::ModuleOnly("dm-mod.ko".into())));
    let r = judge(&inspection, &extras, Target::Alibaba);
    let messages: Vec<(Severity, &str)> =
        of(&r, CheckId::Lvm).iter().map(|f| (f.severity, f.message.as_str())).collect();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert_eq!(
        messages[0],
        (
            Severity::Warning,
            "the root filesystem is on the logical volume /dev/vg0/root (LVM volume group vg0 (root, swap))"
        )
    );
    assert_eq!(
        messages[1],
        (
            Severity::Error,
            "kernel 6.1.0-18-amd64: the initramfs lacks the dm_mod driver and the lvm tool, so the root logical volume \
             /dev/vg0/root is not activated at boot"
        )
    );
    assert!(messages[2].1.contains("logical volume vg0/swap (rd.lvm.lv), which does not exist"), "{}", messages[2].1);
    let fix = of(&r, CheckId::Lvm)[1].fix.clone().unwrap_or_default();
    assert!(fix.contains("apt-get install lvm2") && fix.contains("update-initramfs -u"), "{fix}");

    // With both in the initramfs and the GRUB argument naming only what exists: the root on LVM remains, a warning.
    let os = &mut inspection.operating_systems[0];
    os.kernels[0].initramfs_contents = Some(contents(&["lvm"]));
    os.grub =
        Some(Grub { entries: vec![entry("root=/dev/mapper/vg0-root ro rd.lvm.lv=vg0/root")], ..Default::default() });
    extras.boot_drivers = Fact::Known(drivers(Availability::InInitramfs("dm-mod.ko".into())));
    let r = judge(&inspection, &extras, Target::Alibaba);
    let lvm = of(&r, CheckId::Lvm);
    assert_eq!(lvm.len(), 1, "{lvm:#?}");
    assert_eq!(lvm[0].severity, Severity::Warning);
    assert_eq!(of(&r, CheckId::RootFilesystem)[0].status, Status::Pass);
}

/// A root on the btrfs subvolume `@`: the btrfs driver must be there at boot and the kernel told to mount `@`
/// (rootflags=subvol=@), since a mount without it shows the top level; AWS takes no subvolumes at all.
#[test]
fn btrfs_root_needs_the_driver_at_boot_and_its_subvolume_named() {
    use imgport_guest::grub::{BootEntry, Grub};
    use imgport_guest::inspect::BtrfsSubvolume;
    let mut inspection = debian("x86_64");
    inspection.partition_table =
        table(TableKind::Mbr, vec![partition(1, PartitionRole::Linux), partition(2, PartitionRole::Linux)]);
    let subvolume = |path: &str, id: u64, mountpoint: Option<&str>| {
        let mut v = volume(2, FsKind::Btrfs, mountpoint);
        v.device = format!("btrfsvol:/dev/sda2/{path}");
        v.partition = None;
        v.btrfs_subvolume = Some(BtrfsSubvolume {
            filesystem: "/dev/sda2".into(),
            id,
            path: path.into(),
            read_only: false,
            default: false,
        });
        v
    };
    inspection.volumes = vec![
        volume(1, FsKind::Ext4, Some("/boot")),
        volume(2, FsKind::Btrfs, None),
        subvolume("@", 256, Some("/")),
        subvolume("@home", 257, Some("/home")),
    ];
    let os = &mut inspection.operating_systems[0];
    os.root = "btrfsvol:/dev/sda2/@".into();
    let entry = |options: &str, resolves_to: &str| BootEntry {
        title: "Debian GNU/Linux".into(),
        position: "0".into(),
        source: "/boot/grub/grub.cfg".into(),
        kernel: Some("/vmlinuz-6.1.0-18-amd64".into()),
        options: options.into(),
        root: Some("UUID=0f9e1c2a-1111-2222-3333-444455556666".into()),
        root_resolves_to: Some(resolves_to.into()),
        ..Default::default()
    };
    let with_entry = |mut inspection: Inspection, e: BootEntry| {
        inspection.operating_systems[0].grub =
            Some(Grub { entries: vec![e.clone()], default_entry: Some(e), ..Default::default() });
        inspection
    };
    let drivers = |a: Availability| BootDrivers { kernel: "6.1.0-18-amd64".into(), drivers: vec![("btrfs".into(), a)] };
    let errors = |r: &Report| -> Vec<String> {
        of(r, CheckId::RootFilesystem)
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| format!("{} -- {}", f.message, f.fix.as_deref().unwrap_or_default()))
            .collect()
    };

    // No rootflags: the kernel mounts the top level (/dev/sda2); btrfs only as a module on disk.
    let bad = with_entry(inspection.clone(), entry("root=UUID=0f9e1c2a-1111-2222-3333-444455556666 ro", "/dev/sda2"));
    let mut extras = GuestExtras::from_inspection(&bad);
    extras.boot_drivers = Fact::Known(drivers(Availability::ModuleOnly("btrfs.ko".into())));
    let e = errors(&judge(&bad, &extras, Target::Alibaba));
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].contains("btrfs is neither built in nor in the initramfs") && e[0].contains("update-initramfs"),
        "{e:#?}"
    );
    assert!(e[1].contains("mount /dev/sda2 as the root") && e[1].contains("rootflags=subvol=@"), "{e:#?}");

    // Both right: the remaining finding is Alibaba's filesystem list (a warning), and AWS's no-subvolumes rule.
    let good = with_entry(
        inspection,
        entry("root=UUID=0f9e1c2a-1111-2222-3333-444455556666 ro rootflags=subvol=@", "btrfsvol:/dev/sda2/@"),
    );
    let mut extras = GuestExtras::from_inspection(&good);
    extras.boot_drivers = Fact::Known(drivers(Availability::InInitramfs("btrfs.ko".into())));
    let r = judge(&good, &extras, Target::Alibaba);
    assert!(errors(&r).is_empty(), "{:#?}", errors(&r));
    let warnings: Vec<&str> = of(&r, CheckId::RootFilesystem).iter().map(|f| f.message.as_str()).collect();
    assert_eq!(warnings, ["root filesystem is btrfs; Alibaba Cloud ECS ImportImage expects ext2, ext3, ext4, xfs"]);
    let r = judge(&good, &extras, Target::Aws);
    let aws: Vec<&str> = of(&r, CheckId::RootFilesystem).iter().map(|f| f.message.as_str()).collect();
    assert_eq!(aws, ["the root btrfs on btrfsvol:/dev/sda2/@ has subvolumes, which VM Import does not support"]);
    // What grows is the btrfs's partition, the last one here.
    let last: Vec<&str> = of(&r, CheckId::RootLast).iter().map(|f| f.message.as_str()).collect();
    assert_eq!(last, ["the root's partition 2 is the last one, so it can grow"]);
    // A swap partition after it: the btrfs's partition cannot grow.
    let mut swap_after = good.clone();
    swap_after.partition_table.partitions.push(partition(3, PartitionRole::Swap));
    let r = judge(&swap_after, &extras, Target::Alibaba);
    let last: Vec<String> = of(&r, CheckId::RootLast).iter().map(|f| f.message.clone()).collect();
    assert!(last[0].starts_with("the root's partition 2 is not the last one"), "{last:?}");
}
