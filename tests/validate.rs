//! `imgport validate` on the realistic guest images of scripts/build-test-images.sh: each image gets exactly the
//! problems it was built with, for every target profile; every check is seen passing and failing; the derived import
//! parameters; exit codes, human output and the JSON schema.

use crate::common::*;
use imgport_validate::facts::{
    Availability, BootDrivers, BootEntry, Fact, GuestExtras, Network, Shadow, Sshd, WindowsDrivers,
};
use imgport_validate::{Options, Report, Status, Target};
use serde_json::Value;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn image(name: &str) -> PathBuf {
    guest_images().join(format!("{name}.raw"))
}

fn validate(name: &str, target: &str) -> (i32, Value) {
    validate_json(&["--target", target, s(&image(name))])
}

/// A private sparse copy of a test image, for tests that change it.
fn copy_image(name: &str, dir: &Path) -> PathBuf {
    let dst = dir.join(format!("{name}.raw"));
    let st = Command::new("cp").arg("--sparse=always").arg(image(name)).arg(&dst).status().unwrap();
    assert!(st.success());
    dst
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(bytes, offset).unwrap();
}

fn run_tool(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

fn status_of(r: &Value, id: &str) -> Vec<String> {
    findings_of(r, id).iter().map(|f| f["status"].as_str().unwrap().to_string()).collect()
}

fn assert_passes(r: &Value, id: &str) {
    assert_eq!(status_of(r, id), ["pass"], "{id}: {:#?}", findings_of(r, id));
}

fn assert_not_checked(r: &Value, id: &str, because: &str) {
    let f = findings_of(r, id);
    assert_eq!(f.len(), 1, "{id}: {f:#?}");
    assert_eq!(f[0]["status"], "not_checked", "{id}: {f:#?}");
    assert!(f[0]["message"].as_str().unwrap().contains(because), "{id}: {f:#?}");
}

/// Warnings and errors each image was built to have, per target (notes are not problems). Azure accepts only a
/// fixed VHD, so for Azure each raw image is validated as the fixed VHD qemu-img makes of it. Every image carries
/// what the targets need apart from its own problems (virtio, NVMe and Hyper-V drivers at boot, an enabled sshd):
/// the good images have none, for every target.
const EXPECTED: &[(&str, [&[&str]; 4])] = &[
    // image: [alibaba, aws, azure, gce]
    ("mbr-bios-ext4", [&[], &[], &[], &[]]),
    ("gpt-uefi-ext4", [&[], &[], &[], &[]]),
    ("gpt-hybrid-ext4", [&[], &[], &[], &[]]),
    ("deb-xfs", [&[], &[], &[], &[]]),
    ("win-ntfs", [&[], &[], &[], &[]]),
    (
        "mbr-xfs5",
        [&["cloud-init:warning", "qemu-guest-agent:warning", "selinux:warning"], &[], &["cloud-init:warning"], &[]],
    ),
    (
        "mbr-xfs4",
        [
            &[
                "cloud-init:warning",
                "network:warning",
                "network:warning",
                "network:warning",
                "root-last:warning",
                "sshd:warning",
                "swap:warning",
            ],
            &["network:warning", "network:warning", "network:warning", "sshd:warning"],
            &[
                "cloud-init:warning",
                "network:warning",
                "network:warning",
                "network:warning",
                "sshd:warning",
                "swap:warning",
            ],
            &["network:warning", "network:warning", "network:warning", "sshd:warning"],
        ],
    ),
    ("deb-novirtio-gzip", [&["virtio:error", "virtio:error"], &[], &[], &["virtio:error", "virtio:error"]]),
    ("deb-novirtio-xz", [&["virtio:error", "virtio:error"], &[], &[], &["virtio:error", "virtio:error"]]),
    ("deb-novirtio-zstd", [&["virtio:error", "virtio:error"], &[], &[], &["virtio:error", "virtio:error"]]),
    ("deb-novirtio-lz4", [&["virtio:error", "virtio:error"], &[], &[], &["virtio:error", "virtio:error"]]),
    ("deb-nodrivers", [&["nvme:warning"], &["nvme:warning"], &["hyperv:error"], &[]]),
    (
        "deb-bad-ext4",
        [
            &[
                "cloud-init:warning",
                "grub:warning",
                "lib-symlinks:warning",
                "network:warning",
                "network:warning",
                "shadow:error",
                "sshd:warning",
            ],
            &["grub:warning", "network:warning", "network:warning", "sshd:warning"],
            &["grub:warning", "network:warning", "network:warning", "sshd:warning"],
            &["grub:warning", "network:warning", "network:warning", "sshd:warning"],
        ],
    ),
    ("win-novirtio", [&["windows-drivers:error"], &[], &[], &["windows-drivers:error"]]),
    (
        "mbr-bad-fstab",
        [
            &["fstab:error", "fstab:error", "fstab:warning"],
            &["fstab:error", "fstab:error"],
            &["fstab:error", "fstab:error", "fstab:warning"],
            &["fstab:error", "fstab:error"],
        ],
    ),
    ("mbr-lvm-root", [&["lvm:warning"], &[], &["lvm:warning"], &[]]),
    ("mbr-lvm-striped", [&["lvm:warning"], &[], &["lvm:warning"], &[]]),
    ("gpt-ubuntu-lvm", [&["lvm:warning"], &[], &["lvm:warning"], &[]]),
    ("mbr-rhel-lvm", [&["lvm:warning", "swap:warning"], &[], &["lvm:warning", "swap:warning"], &[]]),
    // Without its data disk: the group spans disks (an error everywhere), the root LV is not read (a warning).
    (
        "mbr-lvm-spanning",
        [
            &["lvm:error", "lvm:warning", "lvm:warning"],
            &["lvm:error", "lvm:warning"],
            &["lvm:error", "lvm:warning", "lvm:warning"],
            &["lvm:error", "lvm:warning"],
        ],
    ),
    // btrfs roots on subvolumes: outside Alibaba's filesystem list, and AWS takes no subvolumes; both warnings.
    ("gpt-fedora-btrfs", [&["root-filesystem:warning"], &["root-filesystem:warning"], &[], &[]]),
    ("gpt-opensuse-btrfs", [&["root-filesystem:warning"], &["root-filesystem:warning"], &[], &[]]),
    ("gpt-ubuntu-btrfs", [&["root-filesystem:warning"], &["root-filesystem:warning"], &[], &[]]),
    // The root is encrypted: a blocker with the fix, and no operating system to look at.
    (
        "mbr-luks-root",
        [
            &["os:warning", "root-filesystem:error"],
            &["os:warning", "root-filesystem:error"],
            &["os:warning", "root-filesystem:error"],
            &["os:warning", "root-filesystem:error"],
        ],
    ),
    ("mbr-inodes-full", [&["usage:warning"], &["usage:warning"], &["usage:warning"], &["usage:warning"]]),
    ("gpt-uefi-arm64", [&[], &[], &[], &[]]),
    ("mbr-arm64-bios", [&["boot-mode:error"], &["boot-mode:error"], &["boot-mode:error"], &["boot-mode:error"]]),
    (
        "mbr-exotic-riscv",
        [
            &["architecture:error", "kernel:error", "os:warning"],
            &["architecture:error", "kernel:error"],
            &["architecture:error", "kernel:error"],
            &["architecture:error", "kernel:error"],
        ],
    ),
    (
        "mbr-vmware-unclean",
        [
            &["ext4-features:warning", "hypervisor-tools:warning"],
            &["ext4-features:warning", "hypervisor-tools:warning"],
            &["ext4-features:warning", "hypervisor-tools:warning"],
            &["ext4-features:warning", "hypervisor-tools:warning"],
        ],
    ),
    (
        "mbr-ext4-recovery",
        [
            &["ext4-features:warning"],
            &["ext4-features:warning"],
            &["ext4-features:warning"],
            &["ext4-features:warning"],
        ],
    ),
];

/// The images that pass every check of every target.
const GOOD: &[&str] = &["mbr-bios-ext4", "gpt-uefi-ext4", "gpt-hybrid-ext4", "deb-xfs", "win-ntfs"];

/// The fixed VHD of a test image, as Azure takes it: made by qemu-img once per test process, after the images were
/// built (a VHD left by an earlier run may hold an older build of the image).
fn azure_vhd(name: &str) -> PathBuf {
    let dir = guest_images().join("azure");
    let vhd = dir.join(format!("{name}.vhd"));
    static MADE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    if !made.iter().any(|m| m == name) {
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join(format!("{name}.vhd.tmp"));
        let _ = std::fs::remove_file(&tmp);
        qemu_convert(&image(name), &tmp, "vpc", "subformat=fixed,force_size=on", &[]);
        std::fs::rename(&tmp, &vhd).unwrap();
        made.push(name.to_string());
    }
    vhd
}

/// Validate a test image for a target in the container that target takes (Azure: a fixed VHD; else the raw image).
fn validate_as_imported(name: &str, target: &str) -> (i32, Value) {
    let path = if target == "azure" { azure_vhd(name) } else { image(name) };
    validate_json(&["--target", target, s(&path)])
}

#[test]
fn each_image_has_exactly_the_problems_it_was_built_with_for_every_target() {
    let targets = ["alibaba", "aws", "azure", "gce"];
    for (name, per_target) in EXPECTED {
        for (target, want) in targets.iter().zip(per_target) {
            let (code, r) = validate_as_imported(name, target);
            assert_eq!(failures(&r, "warning"), *want, "{name} for {target}");
            let errors = want.iter().any(|w| w.ends_with(":error"));
            assert_eq!(code, i32::from(errors), "{name} for {target}: exit code");
            assert_eq!(r["exit_code"], code);
            assert_eq!(r["target"], *target);
            let sum = &r["summary"];
            let count = |sev: &str| want.iter().filter(|w| w.ends_with(sev)).count() as u64;
            assert_eq!(
                (sum["errors"].as_u64(), sum["warnings"].as_u64()),
                (Some(count(":error")), Some(count(":warning")))
            );
            // --strict fails exactly when there is a warning or an error.
            let path = if *target == "azure" { azure_vhd(name) } else { image(name) };
            let (strict, _) = validate_json(&["--strict", "--target", target, s(&path)]);
            assert_eq!(strict, i32::from(!want.is_empty()), "{name} for {target}: exit code with --strict");
        }
    }
    // Every built image is in the table (data disks, which have no facts file of their own, go with theirs).
    let mut built: Vec<String> = std::fs::read_dir(guest_images())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".env").map(str::to_string))
        .collect();
    built.sort();
    let mut listed: Vec<String> = EXPECTED.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(built, listed, "images built vs images in EXPECTED");
}

/// The good images pass every check of every target: no failure of any severity (not even a note), exit code 0
/// with --strict, every check the target runs passing.
#[test]
fn good_images_pass_every_check_for_every_target() {
    for name in GOOD {
        for target in ["alibaba", "aws", "azure", "gce"] {
            let (code, r) = validate_as_imported(name, target);
            assert_eq!(failures(&r, "info"), Vec::<String>::new(), "{name} for {target}");
            assert_eq!(
                (code, &r["summary"]["errors"], &r["summary"]["warnings"]),
                (0, &Value::from(0), &Value::from(0))
            );
            assert_eq!(r["summary"]["notes"], 0, "{name} for {target}");
            let not_passing: Vec<String> = r["findings"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["status"] != "pass")
                .map(|f| format!("{}: {}", f["id"].as_str().unwrap(), f["message"].as_str().unwrap()))
                .collect();
            assert_eq!(not_passing, Vec::<String>::new(), "{name} for {target}");
            // The checks that matter for the target each passed: the drivers, the container, the boot mode.
            for id in ["container", "partition-table", "boot-mode", "architecture"] {
                assert_passes(&r, id);
            }
            let drivers = match (target, *name) {
                (_, "win-ntfs") if target == "alibaba" || target == "gce" => Some("windows-drivers"),
                (_, "win-ntfs") => None,
                ("alibaba", _) => Some("virtio"),
                ("aws", _) => Some("nvme"),
                ("azure", _) => Some("hyperv"),
                _ => Some("virtio"),
            };
            if let Some(id) = drivers {
                assert_passes(&r, id);
            }
            let (strict, _) = validate_json(&[
                "--strict",
                "--target",
                target,
                s(&if target == "azure" { azure_vhd(name) } else { image(name) }),
            ]);
            assert_eq!(strict, 0, "{name} for {target} with --strict");
        }
    }
}

#[test]
fn strict_makes_warnings_count() {
    let (code, _) = validate_json(&["--strict", s(&image("mbr-xfs5"))]);
    assert_eq!(code, 1);
    // For AWS root on LVM is only a note; mbr-lvm-root lacks a GRUB and a network configuration (not checked).
    let (code, r) = validate_json(&["--strict", "--target", "aws", s(&image("mbr-lvm-root"))]);
    assert!(failures(&r, "info").contains(&"lvm:info".to_string()), "{:?}", failures(&r, "info"));
    assert!(r["summary"]["not_checked"].as_u64().unwrap() > 0);
    assert_eq!(code, 0, "notes and unchecked facts do not fail --strict");
    // GCE has no rule mbr-xfs5 breaks (qemu-guest-agent, SELinux enforcing and no cloud-init are Alibaba's).
    let (code, _) = validate_json(&["--strict", "--target", "gce", s(&image("mbr-xfs5"))]);
    assert_eq!(code, 0);
}

#[test]
fn unreadable_images_exit_2() {
    let dir = tempdir();
    let (code, _, err) = imgport_no_panic(&["validate", s(&dir.path().join("missing.raw"))]);
    assert_eq!(code, 2);
    assert!(err.contains("missing.raw"), "{err}");
    // A qcow2 whose header is cut off.
    let q = dir.path().join("cut.qcow2");
    std::fs::write(&q, b"QFI\xfb\0\0\0\x03").unwrap();
    let (code, _, err) = imgport_no_panic(&["validate", s(&q)]);
    assert_eq!(code, 2, "{err}");
    // A good image's qcow2 cut off in its L2 table (an interrupted copy): unreadable for every target.
    let t = dir.path().join("truncated.qcow2");
    qemu_convert(&image("mbr-bios-ext4"), &t, "qcow2", "", &[]);
    std::fs::OpenOptions::new().write(true).open(&t).unwrap().set_len(200_000).unwrap();
    for target in ["alibaba", "aws", "azure", "gce"] {
        let (code, _, err) = imgport_no_panic(&["validate", "--target", target, s(&t)]);
        assert_eq!(code, 2, "{target}: {err}");
        assert!(err.contains("truncated image"), "{err}");
        let (code, _, _) = imgport_no_panic(&["validate", "--strict", "--json", "--target", target, s(&t)]);
        assert_eq!(code, 2, "{target}");
    }
    let (code, _, _) = imgport_no_panic(&["validate", "--target", "openstack", s(&image("mbr-bios-ext4"))]);
    assert_eq!(code, 2, "clap refuses an unknown target");
}

fn params(r: &Value) -> &Value {
    &r["parameters"]
}

#[test]
fn derived_alibaba_import_parameters() {
    for (name, platform, arch, boot, size, os_type) in [
        ("mbr-bios-ext4", "Debian", "x86_64", "BIOS", 1, "linux"),
        ("gpt-uefi-ext4", "Ubuntu", "x86_64", "UEFI", 1, "linux"),
        ("gpt-hybrid-ext4", "Debian", "x86_64", "UEFI-Preferred", 1, "linux"),
        ("mbr-xfs5", "Rocky Linux", "x86_64", "BIOS", 1, "linux"),
        ("mbr-xfs4", "CentOS", "x86_64", "BIOS", 1, "linux"),
        ("gpt-uefi-arm64", "Debian", "arm64", "UEFI", 1, "linux"),
        ("mbr-arm64-bios", "Debian", "arm64", "BIOS", 1, "linux"),
    ] {
        let (_, r) = validate(name, "alibaba");
        let p = params(&r);
        assert_eq!(
            (&p["platform"], &p["os_type"], &p["architecture"], &p["boot_mode"], &p["disk_image_size"], &p["format"]),
            (
                &Value::from(platform),
                &Value::from(os_type),
                &Value::from(arch),
                &Value::from(boot),
                &Value::from(size),
                &Value::from("RAW")
            ),
            "{name}"
        );
    }
    // An unknown distribution falls back to Others Linux; an unsupported architecture gives no Architecture.
    let (_, r) = validate("mbr-exotic-riscv", "alibaba");
    assert_eq!(params(&r)["platform"], "Others Linux");
    assert_eq!(params(&r)["architecture"], Value::Null);
    // Root on LVM: the guest inside the logical volume is read, so everything is derived as for a partition.
    let (_, r) = validate("mbr-lvm-root", "alibaba");
    let p = params(&r);
    assert_eq!(
        (&p["platform"], &p["os_type"], &p["boot_mode"]),
        (&Value::from("Debian"), &Value::from("linux"), &Value::from("BIOS"))
    );
}

#[test]
fn derived_parameters_for_the_other_targets() {
    let (_, r) = validate("gpt-hybrid-ext4", "aws");
    assert_eq!(
        params(&r),
        &serde_json::json!({"platform": "Linux", "architecture": "x86_64", "boot_mode": "uefi-preferred", "format": "RAW"})
    );
    let (_, r) = validate("mbr-bios-ext4", "aws");
    assert_eq!(params(&r)["boot_mode"], "legacy-bios");
    let (_, r) = validate("mbr-bios-ext4", "azure");
    assert_eq!(params(&r), &serde_json::json!({"os_type": "Linux", "hyper_v_generation": "V1", "architecture": "x64"}));
    let (_, r) = validate("gpt-uefi-arm64", "azure");
    assert_eq!(
        (&params(&r)["hyper_v_generation"], &params(&r)["architecture"]),
        (&Value::from("V2"), &Value::from("Arm64"))
    );
    let (_, r) = validate("gpt-uefi-ext4", "gce");
    assert_eq!(params(&r), &serde_json::json!({"architecture": "X86_64", "guest_os_features": ["UEFI_COMPATIBLE"]}));
    let (_, r) = validate("mbr-bios-ext4", "gce");
    assert_eq!(params(&r)["guest_os_features"], serde_json::json!([]));
}

/// qcow2 of a test image, resized (the partitions stay where they are).
fn qcow2_of(name: &str, dir: &Path, size: &str) -> PathBuf {
    let q = dir.join(format!("{name}.qcow2"));
    qemu_convert(&image(name), &q, "qcow2", "", &[]);
    if !size.is_empty() {
        qemu_img(&["resize", "-q", "-f", "qcow2", s(&q), size]);
    }
    q
}

#[test]
fn size_limits_and_disk_image_size_rounding() {
    let dir = tempdir();
    let q = qcow2_of("mbr-bios-ext4", dir.path(), "20G");
    let (code, r) = validate_json(&[s(&q)]);
    assert_eq!(code, 0);
    assert_eq!((&params(&r)["disk_image_size"], &params(&r)["format"]), (&Value::from(20), &Value::from("QCOW2")));
    assert_passes(&r, "size");
    // One MiB over a whole GiB rounds up.
    qemu_img(&["resize", "-q", "-f", "qcow2", s(&q), "+1M"]);
    let (_, r) = validate_json(&[s(&q)]);
    assert_eq!(params(&r)["disk_image_size"], 21);
    // Past Alibaba's 2048 GiB and Azure's 1023 GiB.
    qemu_img(&["resize", "-q", "-f", "qcow2", s(&q), "2049G"]);
    let (code, r) = validate_json(&[s(&q)]);
    assert_eq!(failures(&r, "warning"), ["size:error"]);
    assert_eq!(code, 1);
    assert_eq!(params(&r)["disk_image_size"], 2049);
    let (_, r) = validate_json(&["--target", "aws", s(&q)]);
    assert_eq!(failures(&r, "warning"), ["container:error"], "aws allows up to 8 TiB");
    let (_, r) = validate_json(&["--target", "azure", s(&q)]);
    assert!(failures(&r, "warning").contains(&"size:error".to_string()));
}

#[test]
fn container_formats_per_target() {
    let dir = tempdir();
    let src = image("mbr-bios-ext4");
    let conv = |name: &str, fmt: &str, opts: &str| {
        let p = dir.path().join(name);
        qemu_convert(&src, &p, fmt, opts, &[]);
        p
    };
    let qcow2 = conv("d.qcow2", "qcow2", "");
    let stream = conv("s.vmdk", "vmdk", "subformat=streamOptimized");
    let sparse = conv("m.vmdk", "vmdk", "subformat=monolithicSparse");
    let vhdx = conv("d.vhdx", "vhdx", "");
    let dynamic = conv("d.vhd", "vpc", "subformat=dynamic,force_size=on");
    let fixed = conv("f.vhd", "vpc", "subformat=fixed,force_size=on");
    let check = |p: &Path, target: &str, want: &[&str], format: Value| {
        let (_, r) = validate_json(&["--target", target, s(p)]);
        let got: Vec<String> = failures(&r, "info").into_iter().filter(|f| f.starts_with("container:")).collect();
        assert_eq!(got, want, "{} for {target}", p.display());
        if want.is_empty() {
            assert_passes(&r, "container");
        }
        if format != Value::Null {
            assert_eq!(params(&r)["format"], format, "{} for {target}", p.display());
        }
    };
    check(&qcow2, "alibaba", &[], "QCOW2".into());
    check(&qcow2, "aws", &["container:error"], Value::Null);
    check(&stream, "aws", &[], "VMDK".into());
    check(&stream, "alibaba", &["container:warning"], "VMDK".into());
    check(&sparse, "aws", &["container:error"], "VMDK".into());
    check(&vhdx, "alibaba", &["container:error"], Value::Null);
    check(&vhdx, "aws", &[], "VHDX".into());
    check(&dynamic, "azure", &["container:error"], Value::Null);
    check(&fixed, "azure", &[], Value::Null);
    check(&dynamic, "alibaba", &[], "VHD".into());
    check(&qcow2, "gce", &["container:error"], Value::Null);
    check(&src, "gce", &[], Value::Null);
}

#[test]
fn qcow2_backing_file_and_header_flags() {
    let dir = tempdir();
    let base = qcow2_of("mbr-bios-ext4", dir.path(), "");
    let top = dir.path().join("top.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", "-b", "mbr-bios-ext4.qcow2", "-F", "qcow2", s(&top)]);
    // Without --follow-backing the guest cannot be read at all.
    let (code, _, err) = imgport_no_panic(&["validate", s(&top)]);
    assert_eq!(code, 2);
    assert!(err.contains("--follow-backing"), "{err}");
    let (code, r) = validate_json(&["--follow-backing", s(&top)]);
    assert_eq!(code, 1);
    assert_eq!(failures(&r, "warning"), ["container:error"]);
    assert!(findings_of(&r, "container")[0]["message"].as_str().unwrap().contains("backing file"));
    assert_eq!(params(&r)["platform"], "Debian", "the guest is read through the chain");

    // The dirty bit (incompatible feature bit 0, header byte 79): a warning; the corrupt bit (bit 1): an error.
    let q = dir.path().join("flags.qcow2");
    std::fs::copy(&base, &q).unwrap();
    patch(&q, 79, &[0x01]);
    let (code, r) = validate_json(&[s(&q)]);
    assert_eq!((code, failures(&r, "warning")), (0, vec!["container:warning".to_string()]));
    patch(&q, 79, &[0x02]);
    let (code, r) = validate_json(&[s(&q)]);
    assert_eq!((code, failures(&r, "warning")), (1, vec!["container:error".to_string()]));
}

/// Rewrite a VHD footer's current size and fix its checksum (one's complement of the byte sum).
fn set_vhd_current_size(path: &Path, size: u64) {
    let len = std::fs::metadata(path).unwrap().len();
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut footer = [0u8; 512];
    f.read_exact_at(&mut footer, len - 512).unwrap();
    footer[48..56].copy_from_slice(&size.to_be_bytes());
    footer[64..68].fill(0);
    let sum = !footer.iter().map(|&b| u32::from(b)).sum::<u32>();
    footer[64..68].copy_from_slice(&sum.to_be_bytes());
    f.write_all_at(&footer, len - 512).unwrap();
}

#[test]
fn vhd_alignment_and_exact_size() {
    let dir = tempdir();
    let src = image("mbr-bios-ext4");
    // qemu-img without force_size rounds the size to a CHS geometry: not a whole number of MiB.
    let chs = dir.path().join("chs.vhd");
    qemu_convert(&src, &chs, "vpc", "subformat=fixed", &[]);
    let (_, r) = validate_json(&["--target", "azure", s(&chs)]);
    assert_eq!(failures(&r, "warning"), ["vhd-alignment:error"]);
    assert!(findings_of(&r, "vhd-alignment")[0]["message"].as_str().unwrap().contains("not a whole number of MiB"));
    let (_, r) = validate_json(&["--target", "alibaba", s(&chs)]);
    assert_passes(&r, "vhd-alignment");
    // imgport's own fixed VHD pads to whole MiB.
    let ours = dir.path().join("ours.vhd");
    imgport_ok(&["convert", "-O", "vhd", "-o", "subformat=fixed", s(&chs), s(&ours)]);
    let (code, r) = validate_json(&["--target", "azure", s(&ours)]);
    // Nothing else is wrong with the guest.
    assert_eq!((code, failures(&r, "info")), (0, vec![]));
    assert_passes(&r, "vhd-alignment");
    // A footer whose current size disagrees with its geometry and with the file: readers see different sizes.
    let cur = qemu_info(&chs, "vpc")["virtual-size"].as_u64().unwrap();
    set_vhd_current_size(&chs, cur + (1 << 20));
    let (code, r) = validate_json(&["--target", "alibaba", s(&chs)]);
    assert_eq!(code, 1);
    assert_eq!(failures(&r, "warning"), ["vhd-alignment:error", "vhd-alignment:error"]);
}

#[test]
fn damaged_partition_tables() {
    let dir = tempdir();
    // Truncated: the root partition runs past the end of the disk.
    let t = copy_image("mbr-bios-ext4", dir.path());
    std::fs::OpenOptions::new().write(true).open(&t).unwrap().set_len(40 << 20).unwrap();
    let (code, r) = validate_json(&[s(&t)]);
    assert_eq!(code, 1);
    assert!(failures(&r, "error").contains(&"partition-table:error".to_string()), "{:?}", failures(&r, "info"));
    assert!(findings_of(&r, "partition-table")[0]["message"].as_str().unwrap().contains("disk has only"));
    // Both GPT headers broken.
    let g = copy_image("gpt-uefi-ext4", dir.path());
    let size = std::fs::metadata(&g).unwrap().len();
    patch(&g, 512 + 56, b"\xde\xad");
    patch(&g, size - 512 + 56, b"\xde\xad");
    let (code, r) = validate_json(&[s(&g)]);
    assert_eq!(code, 1);
    let f = findings_of(&r, "partition-table");
    assert!(f.iter().any(|f| f["message"].as_str().unwrap().contains("neither GPT header is valid")), "{f:#?}");
    // A filesystem on the whole disk, no table.
    let whole = dir.path().join("whole.ext4");
    run_tool(
        Command::new("dd").arg(format!("if={}", s(&image("mbr-bios-ext4")))).arg(format!("of={}", s(&whole))).args([
            "bs=1M",
            "skip=1",
            "conv=sparse",
            "status=none",
        ]),
    );
    let (code, r) = validate_json(&[s(&whole)]);
    assert_eq!(code, 1);
    assert!(failures(&r, "error").contains(&"partition-table:error".to_string()));
    assert!(failures(&r, "error").contains(&"boot-mode:error".to_string()));
    assert_eq!(params(&r)["platform"], "Debian");
}

#[test]
fn boot_modes() {
    let dir = tempdir();
    // No boot code in the MBR: nothing can start the image.
    let m = copy_image("mbr-bios-ext4", dir.path());
    patch(&m, 0, &[0u8; 440]);
    let (code, r) = validate_json(&[s(&m)]);
    assert_eq!((code, failures(&r, "warning")), (1, vec!["boot-mode:error".to_string()]));
    assert_eq!(params(&r)["boot_mode"], Value::Null);
    // UEFI through a distribution loader only: fine for Alibaba, not for AWS (it wants \EFI\BOOT\BOOTX64.EFI).
    require("mdel");
    let g = copy_image("gpt-uefi-ext4", dir.path());
    let esp = format!("{}@@1048576", s(&g));
    run_tool(Command::new("mmd").args(["-i", &esp, "::/EFI/ubuntu"]));
    run_tool(Command::new("mcopy").args(["-i", &esp, "::/EFI/BOOT/BOOTX64.EFI", "::/EFI/ubuntu/shimx64.efi"]));
    run_tool(Command::new("mdel").args(["-i", &esp, "::/EFI/BOOT/BOOTX64.EFI"]));
    let (code, r) = validate_json(&["--target", "aws", s(&g)]);
    assert_eq!((code, failures(&r, "warning")), (1, vec!["boot-mode:error".to_string()]));
    let (code, r) = validate_json(&[s(&g)]);
    assert_eq!(code, 0);
    assert_passes(&r, "boot-mode");
    assert_eq!(params(&r)["boot_mode"], "UEFI");
}

#[test]
fn no_root_filesystem_and_windows_disks() {
    require("mkntfs");
    let dir = tempdir();
    // A partitioned disk holding only an empty ext4.
    let fs = dir.path().join("data.ext4");
    run_tool(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&fs).arg("16M"));
    let disk = dir.path().join("data.raw");
    std::fs::File::create(&disk).unwrap().set_len(20 << 20).unwrap();
    run_tool(
        Command::new("sh")
            .arg("-c")
            .arg(format!("printf 'label: dos\\nstart=2048, type=83\\n' | sfdisk -q {}", s(&disk))),
    );
    run_tool(Command::new("dd").arg(format!("if={}", s(&fs))).arg(format!("of={}", s(&disk))).args([
        "bs=1M",
        "seek=1",
        "conv=notrunc,sparse",
        "status=none",
    ]));
    let (code, r) = validate_json(&[s(&disk)]);
    assert_eq!(code, 1);
    assert_eq!(failures(&r, "warning"), ["boot-mode:error", "os:warning", "root-filesystem:error"]);
    assert_not_checked(&r, "kernel", "root filesystem");

    // NTFS: a Windows guest, not read yet.
    let ntfs = dir.path().join("win.raw");
    std::fs::File::create(&ntfs).unwrap().set_len(32 << 20).unwrap();
    run_tool(Command::new("mkntfs").args(["-q", "-Q", "-F", "-L", "win"]).arg(&ntfs));
    let (_, r) = validate_json(&[s(&ntfs)]);
    assert_not_checked(&r, "root-filesystem", "NTFS");
    assert_not_checked(&r, "windows-drivers", "registry");
    let (_, r) = validate("mbr-bios-ext4", "alibaba");
    assert!(findings_of(&r, "windows-drivers").is_empty(), "Windows checks are not run on Linux guests");
}

#[test]
fn every_implemented_check_passes_somewhere() {
    // (check, target, an image where it passes)
    for (id, target, name) in [
        ("container", "alibaba", "mbr-bios-ext4"),
        ("size", "alibaba", "mbr-bios-ext4"),
        ("vhd-alignment", "alibaba", "mbr-bios-ext4"),
        ("partition-table", "alibaba", "gpt-hybrid-ext4"),
        ("boot-mode", "alibaba", "gpt-hybrid-ext4"),
        ("root-filesystem", "alibaba", "mbr-xfs5"),
        ("ext4-features", "alibaba", "mbr-bad-fstab"),
        ("lvm", "alibaba", "mbr-bios-ext4"),
        ("root-last", "alibaba", "gpt-hybrid-ext4"),
        ("swap", "alibaba", "mbr-bios-ext4"),
        ("os", "alibaba", "mbr-xfs4"),
        ("architecture", "alibaba", "gpt-uefi-arm64"),
        ("kernel", "alibaba", "mbr-xfs5"),
        ("fstab", "alibaba", "gpt-hybrid-ext4"),
        ("cloud-init", "alibaba", "gpt-uefi-ext4"),
        ("qemu-guest-agent", "alibaba", "mbr-bios-ext4"),
        ("selinux", "alibaba", "mbr-bios-ext4"),
        ("usage", "alibaba", "mbr-bios-ext4"),
        ("hypervisor-tools", "alibaba", "mbr-bios-ext4"),
        ("os", "aws", "mbr-exotic-riscv"),
        ("container", "azure", "mbr-bios-ext4"),
    ] {
        let (_, r) = if target == "azure" {
            let dir = tempdir();
            let v = dir.path().join("f.vhd");
            qemu_convert(&image(name), &v, "vpc", "subformat=fixed,force_size=on", &[]);
            validate_json(&["--target", target, s(&v)])
        } else {
            validate(name, target)
        };
        assert_passes(&r, id);
    }
    // The 64bit ext4 feature (deb-bad-ext4 has it; the good images do not) is a note for Alibaba only.
    let (_, r) = validate("mbr-bios-ext4", "alibaba");
    assert_eq!(failures(&r, "info"), Vec::<String>::new());
    let (_, r) = validate("deb-bad-ext4", "alibaba");
    assert_eq!(findings_of(&r, "ext4-features").len(), 1);
    assert!(failures(&r, "info").contains(&"ext4-features:info".to_string()), "{:?}", failures(&r, "info"));
    assert!(findings_of(&r, "ext4-features")[0]["message"].as_str().unwrap().contains("64bit"));
    let (_, r) = validate("deb-bad-ext4", "aws");
    assert_passes(&r, "ext4-features");
}

#[test]
fn checks_waiting_for_guest_facts_say_what_they_need() {
    // mbr-bad-fstab has neither a GRUB configuration nor network configuration.
    let (_, r) = validate("mbr-bad-fstab", "alibaba");
    for (id, need) in [("grub", "GRUB configuration"), ("network", "network configuration")] {
        assert_not_checked(&r, id, need);
        assert_eq!(findings_of(&r, id)[0]["severity"], "info");
    }
    // A root filesystem that was not read leaves every guest fact open.
    let (_, r) = validate("mbr-ext4-recovery", "alibaba");
    for id in ["virtio", "nvme", "grub", "network", "shadow", "lib-symlinks", "sshd", "cloud-init"] {
        assert_eq!(status_of(&r, id), ["not_checked"], "{id}: {:#?}", findings_of(&r, id));
    }
}

/// Each wired guest-fact check passes on a good image and fails on the image built with that problem.
#[test]
fn guest_fact_checks_pass_and_fail_on_real_images() {
    let fails = |r: &Value, id: &str| -> Vec<String> {
        findings_of(r, id)
            .iter()
            .filter(|f| f["status"] == "fail")
            .map(|f| f["severity"].as_str().unwrap().to_string())
            .collect()
    };
    // (check, target, passing image, failing image, severities of the failures)
    for (id, target, good, bad, want) in [
        ("virtio", "alibaba", "mbr-bios-ext4", "deb-novirtio-gzip", &["error", "error"][..]),
        ("virtio", "alibaba", "mbr-bios-ext4", "deb-novirtio-xz", &["error", "error"]),
        ("virtio", "alibaba", "mbr-bios-ext4", "deb-novirtio-zstd", &["error", "error"]),
        ("virtio", "alibaba", "mbr-bios-ext4", "deb-novirtio-lz4", &["error", "error"]),
        ("virtio", "gce", "mbr-bios-ext4", "deb-novirtio-gzip", &["error", "error"]),
        ("nvme", "alibaba", "gpt-uefi-ext4", "deb-nodrivers", &["warning"]),
        ("nvme", "aws", "mbr-bios-ext4", "deb-nodrivers", &["warning"]),
        ("hyperv", "azure", "mbr-bios-ext4", "deb-nodrivers", &["error"]),
        ("hyperv", "azure", "gpt-uefi-ext4", "deb-nodrivers", &["error"]),
        ("windows-drivers", "alibaba", "win-ntfs", "win-novirtio", &["error"]),
        ("windows-drivers", "gce", "win-ntfs", "win-novirtio", &["error"]),
        ("grub", "alibaba", "mbr-bios-ext4", "deb-bad-ext4", &["warning"]),
        ("network", "alibaba", "mbr-bios-ext4", "deb-bad-ext4", &["warning", "warning"]),
        ("network", "aws", "mbr-bios-ext4", "mbr-xfs4", &["warning", "warning", "warning"]),
        ("shadow", "alibaba", "mbr-bios-ext4", "deb-bad-ext4", &["error"]),
        ("lib-symlinks", "alibaba", "mbr-bios-ext4", "deb-bad-ext4", &["warning"]),
        ("sshd", "alibaba", "mbr-bios-ext4", "deb-bad-ext4", &["warning"]),
        ("sshd", "alibaba", "mbr-bios-ext4", "mbr-xfs4", &["warning"]),
        ("cloud-init", "alibaba", "gpt-uefi-ext4", "deb-bad-ext4", &["warning"]),
    ] {
        let (_, r) = validate(good, target);
        assert_passes(&r, id);
        let (_, r) = validate(bad, target);
        assert_eq!(fails(&r, id), want, "{id} on {bad} for {target}: {:#?}", findings_of(&r, id));
    }
    // The findings name what the images were built with.
    let (_, r) = validate("deb-novirtio-gzip", "alibaba");
    let virtio = findings_of(&r, "virtio");
    assert!(virtio.iter().any(|f| f["message"].as_str().unwrap().contains("virtio_blk")), "{virtio:#?}");
    let (_, r) = validate("deb-bad-ext4", "alibaba");
    let msg =
        |id: &str| findings_of(&r, id).iter().map(|f| f["message"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert!(msg("grub")[0].contains("root=/dev/sda1"), "{:?}", msg("grub"));
    assert!(msg("cloud-init")[0].contains("0.7.9"), "{:?}", msg("cloud-init"));
    assert!(msg("shadow")[0].contains("/etc/shadow is immutable"), "{:?}", msg("shadow"));
    assert!(msg("lib-symlinks")[0].contains("/lib is an absolute symlink to /usr/lib"), "{:?}", msg("lib-symlinks"));
    assert!(msg("sshd")[0].contains("not enabled"), "{:?}", msg("sshd"));
    assert!(msg("network").iter().any(|m| m.contains("52:54:00:aa:bb:cc")), "{:?}", msg("network"));
    // The cloud-init minimum is Alibaba's: other targets only need it installed.
    let (_, r) = validate("deb-bad-ext4", "azure");
    assert_passes(&r, "cloud-init");
    // Hyper-V and NVMe: deb-nodrivers has them as modules in /lib/modules only, not in its initramfs.
    let (_, r) = validate("deb-nodrivers", "azure");
    let m = findings_of(&r, "hyperv")[0]["message"].as_str().unwrap().to_string();
    assert!(m.contains("hv_vmbus, hv_storvsc, hv_netvsc are modules but not in the initramfs"), "{m}");
    let fix = findings_of(&r, "hyperv")[0]["fix"].as_str().unwrap().to_string();
    assert!(fix.contains("update-initramfs"), "{fix}");
    let (_, r) = validate("deb-nodrivers", "alibaba");
    assert!(findings_of(&r, "nvme")[0]["message"].as_str().unwrap().contains("nvme are modules but not in"));
    // The Hyper-V drivers are Azure's rule only.
    assert!(findings_of(&r, "hyperv").is_empty());
    // Windows: win-ntfs's SYSTEM hive registers viostor (boot start) and netkvm with their .sys files present;
    // win-novirtio has neither.
    let (_, r) = validate("win-ntfs", "alibaba");
    assert_passes(&r, "windows-drivers");
    let (_, r) = validate("win-novirtio", "alibaba");
    let m = findings_of(&r, "windows-drivers")[0]["message"].as_str().unwrap().to_string();
    assert!(m.contains("viostor, netkvm (viostor: no service key; netkvm: no service key)"), "{m}");
    // Windows guests are not judged by the Linux driver checks, and Azure and AWS do not ask for virtio.
    for target in ["aws", "azure"] {
        let (_, r) = validate("win-novirtio", target);
        assert!(findings_of(&r, "windows-drivers").is_empty() && findings_of(&r, "hyperv").is_empty(), "{target}");
    }
}

/// Validate a test image through the library with facts replaced: shows each check's rule on facts no test image
/// has (a driver missing entirely, root= naming no filesystem, Windows without viostor).
fn with_facts(name: &str, target: Target, edit: impl FnOnce(&mut GuestExtras)) -> Report {
    let img: std::sync::Arc<dyn imgport_disk::DiskImage> =
        std::sync::Arc::from(imgport_disk::open(&image(name), &Default::default()).unwrap());
    let details = img.details();
    let inspection = imgport_guest::inspect(img).unwrap();
    let mut extras = GuestExtras::from_inspection(&inspection);
    edit(&mut extras);
    imgport_validate::validate_with_facts(&inspection, &details, &extras, &Options { target, file_size: None })
}

fn outcome(r: &Report, id: &str) -> Vec<(Status, String)> {
    r.findings.iter().filter(|f| f.id == id).map(|f| (f.status, f.severity.name().to_string())).collect()
}

#[test]
fn waiting_checks_apply_their_rules_once_facts_arrive() {
    use Availability::*;
    let drivers = |virtio_blk: Availability| BootDrivers {
        kernel: "6.1.0-18-amd64".into(),
        drivers: vec![
            ("virtio_blk".into(), virtio_blk),
            ("virtio_pci".into(), BuiltIn("CONFIG_VIRTIO_PCI=y".into())),
            ("virtio_net".into(), InInitramfs("virtio_net.ko".into())),
            ("nvme".into(), InInitramfs("nvme.ko".into())),
        ],
    };
    let pass = vec![(Status::Pass, "info".to_string())];
    let r = with_facts("mbr-bios-ext4", Target::Alibaba, |e| {
        e.boot_drivers = Fact::Known(drivers(InInitramfs("virtio_blk.ko".into())))
    });
    assert_eq!((outcome(&r, "virtio"), outcome(&r, "nvme")), (pass.clone(), pass.clone()));
    let r = with_facts("mbr-bios-ext4", Target::Alibaba, |e| {
        e.boot_drivers = Fact::Known(drivers(ModuleOnly("/lib/modules/6.1.0-18-amd64/virtio_blk.ko".into())))
    });
    assert_eq!(outcome(&r, "virtio"), [(Status::Fail, "error".to_string())]);
    let fix = r.findings.iter().find(|f| f.id == "virtio").unwrap().fix.clone().unwrap();
    assert!(fix.contains("/etc/initramfs-tools/modules") && fix.contains("update-initramfs -u"), "{fix}");
    let r = with_facts("mbr-xfs5", Target::Alibaba, |e| e.boot_drivers = Fact::Known(drivers(Missing)));
    assert_eq!(outcome(&r, "virtio"), [(Status::Fail, "error".to_string())]);
    assert_eq!(outcome(&r, "nvme"), pass);
    let r = with_facts("mbr-xfs5", Target::Alibaba, |e| {
        e.boot_drivers = Fact::Known(drivers(ModuleOnly("virtio_blk.ko.xz".into())))
    });
    let fix = r.findings.iter().find(|f| f.id == "virtio").unwrap().fix.clone().unwrap();
    assert!(fix.contains("dracut --add-drivers 'virtio_blk'"), "{fix}");
    // Azure wants the Hyper-V drivers, which this kernel lacks.
    let r = with_facts("mbr-bios-ext4", Target::Azure, |e| e.boot_drivers = Fact::Known(drivers(Missing)));
    assert_eq!(outcome(&r, "hyperv"), [(Status::Fail, "error".to_string())]);

    let entry = |root: &str, resolves: bool| BootEntry {
        source: "/boot/grub/grub.cfg".into(),
        kernel: "/boot/vmlinuz-6.1.0-18-amd64".into(),
        initrd: Some("/boot/initrd.img-6.1.0-18-amd64".into()),
        root: Some(root.into()),
        kernel_exists: true,
        initrd_exists: true,
        root_resolves: resolves,
        default: true,
    };
    let r = with_facts("mbr-bios-ext4", Target::Alibaba, |e| e.boot_entries = Fact::Known(vec![entry("UUID=x", true)]));
    assert_eq!(outcome(&r, "grub"), pass);
    let r =
        with_facts("mbr-bios-ext4", Target::Alibaba, |e| e.boot_entries = Fact::Known(vec![entry("/dev/sda1", true)]));
    assert_eq!(outcome(&r, "grub"), [(Status::Fail, "warning".to_string())]);
    let r =
        with_facts("mbr-bios-ext4", Target::Alibaba, |e| e.boot_entries = Fact::Known(vec![entry("/dev/sdb1", false)]));
    assert_eq!(outcome(&r, "grub"), [(Status::Fail, "error".to_string())]);

    let net = |dhcp: bool, pinned: Vec<String>| Network {
        sources: vec!["/etc/network/interfaces".into()],
        primary_dhcp: dhcp,
        pinned,
    };
    let r = with_facts("mbr-bios-ext4", Target::Alibaba, |e| e.network = Fact::Known(net(true, vec![])));
    assert_eq!(outcome(&r, "network"), pass);
    let r = with_facts("mbr-bios-ext4", Target::Alibaba, |e| {
        e.network = Fact::Known(net(false, vec!["HWADDR=52:54:00:12:34:56".into()]))
    });
    assert_eq!(outcome(&r, "network"), [(Status::Fail, "warning".to_string()), (Status::Fail, "warning".to_string())]);

    let r = with_facts("mbr-bios-ext4", Target::Alibaba, |e| {
        e.shadow = Fact::Known(Shadow { root_entry: true, immutable: vec![] })
    });
    assert_eq!(outcome(&r, "shadow"), pass);
    let r = with_facts("mbr-bios-ext4", Target::Alibaba, |e| {
        e.shadow = Fact::Known(Shadow { root_entry: true, immutable: vec!["/etc/shadow".into()] })
    });
    assert_eq!(outcome(&r, "shadow"), [(Status::Fail, "error".to_string())]);

    let r = with_facts("mbr-bios-ext4", Target::Alibaba, |e| e.absolute_lib_links = Fact::Known(vec![]));
    assert_eq!(outcome(&r, "lib-symlinks"), pass);
    let r = with_facts("mbr-bios-ext4", Target::Alibaba, |e| {
        e.absolute_lib_links = Fact::Known(vec![("/lib64".into(), "/usr/lib64".into())])
    });
    assert_eq!(outcome(&r, "lib-symlinks"), [(Status::Fail, "warning".to_string())]);
    assert!(r.findings.iter().any(|f| f.fix.as_deref() == Some("make it relative: ln -sfn usr/lib64 /lib64")));

    let r = with_facts("mbr-bios-ext4", Target::Alibaba, |e| {
        e.sshd = Fact::Known(Sshd { installed: true, enabled: true, evidence: None })
    });
    assert_eq!(outcome(&r, "sshd"), pass);
    let r = with_facts("mbr-bios-ext4", Target::Alibaba, |e| {
        e.sshd = Fact::Known(Sshd { installed: true, enabled: false, evidence: None })
    });
    assert_eq!(outcome(&r, "sshd"), [(Status::Fail, "warning".to_string())]);

    // Windows drivers only matter on a Windows disk: here an NTFS one.
    require("mkntfs");
    let dir = tempdir();
    let ntfs = dir.path().join("win.raw");
    std::fs::File::create(&ntfs).unwrap().set_len(32 << 20).unwrap();
    run_tool(Command::new("mkntfs").args(["-q", "-Q", "-F"]).arg(&ntfs));
    let img: std::sync::Arc<dyn imgport_disk::DiskImage> =
        std::sync::Arc::from(imgport_disk::open(&ntfs, &Default::default()).unwrap());
    let inspection = imgport_guest::inspect(img.clone()).unwrap();
    for (viostor, want) in [(true, Status::Pass), (false, Status::Fail)] {
        let mut extras = GuestExtras::from_inspection(&inspection);
        extras.windows_drivers = Fact::Known(WindowsDrivers { viostor, netkvm: true, why_not: Vec::new() });
        let r = imgport_validate::validate_with_facts(&inspection, &img.details(), &extras, &Options::default());
        assert_eq!(outcome(&r, "windows-drivers")[0].0, want);
    }
}

#[test]
fn human_output_one_line_per_finding_and_summary_last() {
    let path = image("mbr-xfs4");
    let (_, r) = validate_json(&[s(&path)]);
    let shown = r["findings"].as_array().unwrap().iter().filter(|f| f["status"] != "pass").count();
    let out = imgport_ok(&["validate", s(&path)]);
    let lines: Vec<&str> = out.lines().collect();
    // Header, one line per finding, the parameters, the summary.
    assert_eq!(lines.len(), 1 + shown + 2, "{out}");
    assert!(lines[1].starts_with("warning") && lines[1].contains(" -- fix: "), "{out}");
    assert!(
        lines[lines.len() - 2].starts_with(
            "ImportImage: Platform=CentOS OSType=linux Architecture=x86_64 BootMode=BIOS DiskImageSize=1 Format=RAW"
        ),
        "{out}"
    );
    let last = lines.last().unwrap();
    assert!(last.starts_with("summary: OK for alibaba: 0 error(s), 7 warning(s)"), "{last}");
    assert!(!out.contains('\x1b'), "no colour when stdout is not a terminal");
    // Errors come before warnings.
    let out = imgport_no_panic(&["validate", s(&image("mbr-bad-fstab"))]).1;
    let first_warning = out.lines().position(|l| l.starts_with("warning")).unwrap();
    assert!(out.lines().take(first_warning).filter(|l| l.starts_with("error")).count() == 2, "{out}");
    assert!(out.lines().last().unwrap().starts_with("summary: FAIL for alibaba: 2 error(s)"), "{out}");
    // -v adds the passes, with evidence.
    let v = imgport_ok(&["validate", "-v", s(&path)]);
    let passes = r["summary"]["passed"].as_u64().unwrap() as usize;
    assert_eq!(v.lines().filter(|l| l.starts_with("pass")).count(), passes, "{v}");
    assert!(v.contains("[/dev/sda1 @0x100000 = xfs]"), "{v}");
    // --strict says why it fails.
    let out = imgport_no_panic(&["validate", "--strict", s(&path)]).1;
    assert!(out.lines().last().unwrap().contains("FAIL") && out.contains("--strict"), "{out}");
}

#[test]
fn json_schema_is_stable() {
    let (_, r) = validate("mbr-xfs5", "alibaba");
    let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "image",
        "target",
        "format",
        "virtual_size",
        "findings",
        "parameters",
        "summary",
        "bytes_read",
        "exit_code",
    ];
    want.sort();
    let mut got = keys.clone();
    got.sort();
    assert_eq!(got, want);
    let sorted = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(sorted(&r["summary"]), ["errors", "not_checked", "notes", "passed", "warnings"]);
    assert_eq!(
        sorted(&r["parameters"]),
        ["architecture", "boot_mode", "disk_image_size", "format", "os_type", "platform"]
    );
    let ids: Vec<&str> = imgport_validate::CheckId::ALL.iter().map(|c| c.name()).collect();
    for f in r["findings"].as_array().unwrap() {
        let o = f.as_object().unwrap();
        for k in o.keys() {
            assert!(["id", "severity", "status", "message", "evidence", "fix"].contains(&k.as_str()), "{k}");
        }
        assert!(ids.contains(&f["id"].as_str().unwrap()));
        assert!(["pass", "fail", "not_checked"].contains(&f["status"].as_str().unwrap()));
        assert!(["info", "warning", "error"].contains(&f["severity"].as_str().unwrap()));
        assert_eq!(f.get("fix").is_some(), f["status"] == "fail", "{f}");
        if let Some(e) = f.get("evidence") {
            for k in e.as_object().unwrap().keys() {
                assert!(["path", "offset", "value"].contains(&k.as_str()), "{k}");
            }
        }
    }
    // Findings come in catalogue order.
    let order: Vec<usize> =
        r["findings"].as_array().unwrap().iter().map(|f| ids.iter().position(|i| *i == f["id"]).unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
    let q = &findings_of(&r, "qemu-guest-agent")[0];
    assert_eq!(q["evidence"]["path"], "/usr/bin/qemu-ga");
    assert_eq!(q["fix"], "yum remove qemu-guest-agent");
}

#[test]
fn validation_reads_little() {
    for (name, _) in EXPECTED {
        let (_, r) = validate(name, "alibaba");
        let read = r["bytes_read"].as_u64().unwrap();
        assert!(read > 0 && read < 4 << 20, "{name}: read {read} bytes");
    }
}

/// Random damage to the tables, superblocks and LVM structures: validation gives findings, never a panic; a
/// bounded, deterministic number of rounds.
#[test]
fn mutated_metadata_never_panics() {
    let mut rng = Rng::new(4242);
    let pv = 67584 * 512;
    let targets: [(&str, &[(u64, u64)]); 3] = [
        ("mbr-lvm-spanning", &[(0, 512), (pv, 8192), (1 << 20, 4096)]),
        ("gpt-uefi-arm64", &[(0, 34 * 512), (1 << 20, 4096), (34 << 20, 64 << 10)]),
        ("mbr-bad-fstab", &[(0, 512), (1 << 20, 64 << 10)]),
    ];
    for (name, ranges) in targets {
        for round in 0..25 {
            let mut patches = Vec::new();
            for _ in 0..1 + rng.below(16) {
                let (start, len) = ranges[rng.below(ranges.len() as u64) as usize];
                patches.push((start + rng.below(len), rng.next_u64() as u8));
            }
            for target in Target::ALL {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    imgport_validate::validate(
                        std::sync::Arc::new(Patched {
                            inner: imgport_disk::open(&image(name), &Default::default()).unwrap(),
                            patches: patches.clone(),
                        }),
                        &Options { target, file_size: None },
                    )
                }));
                assert!(r.is_ok(), "{name} round {round} for {target}: panicked with patches {patches:?}");
            }
        }
    }
}

/// A driver service whose .sys file is gone (an uninstall that left the key behind) loads nothing: the check fails
/// for it. win-ntfs's netkvm.sys is renamed in place on a private copy (its two NTFS name records: the MFT
/// record's $FILE_NAME and the directory index entry), the SYSTEM hive left as it is.
#[test]
fn windows_driver_registered_without_its_file_fails() {
    let dir = tempdir();
    let w = copy_image("win-ntfs", dir.path());
    let bytes = std::fs::read(&w).unwrap();
    let name: Vec<u8> = "netkvm.sys".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut renamed = 0;
    for at in 2..bytes.len().saturating_sub(name.len()) {
        // The hive's ImagePath ("...\drivers\netkvm.sys") is preceded by a backslash; NTFS names are not.
        if bytes[at..at + name.len()] == name[..] && bytes[at - 2..at] != *b"\\\0" {
            patch(&w, at as u64 + 10, b"x\0");
            renamed += 1;
        }
    }
    assert_eq!(renamed, 2, "netkvm.sys name records in the NTFS volume");
    let r = imgport_json(&["inspect", "--json", s(&w)]);
    let drivers = r["operating_systems"][0]["windows"]["drivers"].as_array().unwrap();
    let d = |n: &str| drivers.iter().find(|d| d["name"] == n).unwrap().clone();
    assert_eq!(
        (&d("netkvm")["registered"], &d("netkvm")["file"], &d("netkvm")["file_present"]),
        (&Value::from(true), &Value::from("/Windows/System32/drivers/netkvm.sys"), &Value::from(false))
    );
    assert_eq!(d("viostor")["file_present"], true);
    for target in ["alibaba", "gce"] {
        let (code, r) = validate_json(&["--target", target, s(&w)]);
        assert_eq!((code, failures(&r, "info")), (1, vec!["windows-drivers:error".to_string()]), "{target}");
        let m = findings_of(&r, "windows-drivers")[0]["message"].as_str().unwrap().to_string();
        assert!(m.contains("netkvm") && !m.contains("viostor"), "{m}");
        assert!(m.contains("netkvm: registered, but /Windows/System32/drivers/netkvm.sys is missing"), "{m}");
    }
}

/// The images that declare their problems (PROBLEMS in their .env) fail exactly the checks those problems belong
/// to, summed over the targets and counting notes: what the builder says it put there is what validate finds.
#[test]
fn declared_problems_are_the_failing_checks() {
    // Problem names in the .env files that are not check ids, and the check each belongs to.
    fn check_of(p: &str) -> &str {
        match p {
            "grub-device-name" => "grub",
            "cloud-init-old" => "cloud-init",
            "shadow-immutable" => "shadow",
            "lib-absolute" => "lib-symlinks",
            "sshd-disabled" => "sshd",
            "network-static" => "network",
            "ext4-64bit" => "ext4-features",
            id => id,
        }
    }
    let mut seen = 0;
    for (name, _) in EXPECTED {
        let env = guest_env(name);
        let Some(problems) = env.get("PROBLEMS") else { continue };
        seen += 1;
        let mut want: Vec<&str> = problems.split(',').map(check_of).collect();
        want.sort();
        want.dedup();
        let mut got: Vec<String> = Vec::new();
        for target in ["alibaba", "aws", "azure", "gce"] {
            let (_, r) = validate_as_imported(name, target);
            got.extend(failures(&r, "info").into_iter().map(|f| f.split(':').next().unwrap_or_default().to_string()));
        }
        got.sort();
        got.dedup();
        assert_eq!(got, want, "{name}: failing checks vs PROBLEMS={problems}");
    }
    assert_eq!(seen, 7, "images declaring PROBLEMS");
}

/// A root spanning two disks, validated with its data disk: the guest is read whole (its parameters derived), and
/// the spanning is the one error, since a cloud imports the system disk alone.
#[test]
fn a_volume_group_spanning_disks_is_read_whole_with_its_data_disk() {
    let data = guest_images().join("mbr-lvm-spanning-data.raw");
    let (code, r) = validate_json(&["--target", "alibaba", s(&image("mbr-lvm-spanning")), "--data-disk", s(&data)]);
    assert_eq!(code, 1);
    assert_eq!(failures(&r, "warning"), ["lvm:error", "lvm:warning"]);
    let span = r["findings"].as_array().unwrap().iter().find(|f| f["severity"] == "error").unwrap();
    assert!(span["message"].as_str().unwrap().contains("physical volume(s) /dev/sdb are on data disks"), "{span}");
    assert_eq!(params(&r)["platform"], "Debian");
    assert!(
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["status"] != "not_checked" || f["id"] == "grub" || f["id"] == "network"),
        "only what the image lacks is unchecked: {r:#}"
    );
}
