//! `imgport inspect` on realistic guest images built by scripts/build-test-images.sh, checked against the facts
//! they were built with and against real tools (sfdisk, blkid); plus damaged images that must give findings,
//! never a panic.

use crate::common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn image(name: &str) -> PathBuf {
    guest_images().join(format!("{name}.raw"))
}

fn inspect(path: &Path) -> Value {
    imgport_json(&["inspect", "--json", s(path)])
}

/// A private copy of a test image, for tests that damage it.
fn copy_image(name: &str, dir: &Path) -> PathBuf {
    let dst = dir.join(format!("{name}.raw"));
    require("cp");
    let st = std::process::Command::new("cp").arg("--sparse=always").arg(image(name)).arg(&dst).status().unwrap();
    assert!(st.success());
    dst
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(bytes, offset).unwrap();
}

fn volume(r: &Value, part: u64) -> &Value {
    r["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["partition"] == part)
        .unwrap_or_else(|| panic!("no volume {part}"))
}

fn all_findings(r: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for f in r["partition_table"]["findings"].as_array().unwrap().iter().chain(r["findings"].as_array().unwrap()) {
        out.push(format!("{}: {}", f["structure"].as_str().unwrap(), f["message"].as_str().unwrap()));
    }
    out
}

/// The partition table imgport reports equals sfdisk's reading of it.
fn assert_table_matches_sfdisk(path: &Path, r: &Value) {
    let sf = sfdisk_json(path);
    let t = &r["partition_table"];
    let label = sf["label"].as_str().unwrap();
    assert_eq!(t["kind"], if label == "dos" { "mbr" } else { "gpt" });
    let id = sf["id"].as_str().unwrap();
    let id = id.strip_prefix("0x").unwrap_or(id).to_lowercase();
    assert_eq!(t["disk_id"].as_str().unwrap().to_lowercase(), id);
    let ours: Vec<&Value> = t["partitions"].as_array().unwrap().iter().filter(|p| p["role"] != "extended").collect();
    let theirs = sf["partitions"].as_array().unwrap();
    assert_eq!(ours.len(), theirs.len(), "partition count vs sfdisk");
    for (o, t) in ours.iter().zip(theirs) {
        let node = t["node"].as_str().unwrap();
        let digits = node.len() - node.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let num: u64 = node[node.len() - digits..].parse().unwrap();
        assert_eq!(o["number"], num, "number of {node}");
        assert_eq!(o["first_lba"], t["start"], "start of {node}");
        assert_eq!(o["last_lba"].as_u64().unwrap() - o["first_lba"].as_u64().unwrap() + 1, t["size"].as_u64().unwrap());
        assert_eq!(o["size"].as_u64().unwrap(), t["size"].as_u64().unwrap() * 512);
        let ty = t["type"].as_str().unwrap();
        if label == "dos" {
            assert_eq!(o["type_id"].as_str().unwrap(), format!("0x{ty}"));
            assert_eq!(o["bootable"].as_bool().unwrap(), t["bootable"].as_bool().unwrap_or(false));
        } else {
            assert_eq!(o["type_id"].as_str().unwrap(), ty);
            assert_eq!(o["partuuid"].as_str().unwrap(), t["uuid"].as_str().unwrap().to_lowercase());
            assert_eq!(o["name"], t["name"]);
        }
    }
}

/// Every recognised volume reports what blkid reports for the same byte range.
fn assert_volumes_match_blkid(path: &Path, r: &Value) {
    // Logical volumes are not byte ranges of the disk: their filesystems are checked by UUID elsewhere.
    for v in r["volumes"].as_array().unwrap().iter().filter(|v| v.get("logical_volume").is_none()) {
        let Some(fs) = v.get("filesystem") else { continue };
        let b = blkid_range(path, v["start"].as_u64().unwrap(), v["size"].as_u64().unwrap());
        let kind = match fs["kind"].as_str().unwrap() {
            "lvm2_member" => "LVM2_member",
            "crypto_luks" => "crypto_LUKS",
            k => k,
        };
        assert_eq!(b.get("TYPE").map(String::as_str), Some(kind), "TYPE of {}", v["device"]);
        assert_eq!(b.get("UUID").map(String::as_str), fs["uuid"].as_str(), "UUID of {}", v["device"]);
        assert_eq!(b.get("LABEL").map(String::as_str), fs["label"].as_str(), "LABEL of {}", v["device"]);
    }
}

fn assert_os_facts(r: &Value, env: &HashMap<String, String>) {
    let os = &r["operating_systems"][0];
    assert_eq!(os["os_type"], "linux");
    assert_eq!(os["root"], format!("/dev/sda{}", env["ROOT_PART"]));
    assert_eq!(os["distro"], env["DISTRO"].as_str());
    assert_eq!(os["version"], env["VERSION"].as_str());
    assert_eq!(os["major_version"], env["MAJOR"].parse::<u64>().unwrap());
    assert_eq!(os["minor_version"], env["MINOR"].parse::<u64>().unwrap());
    assert_eq!(os["hostname"], env["HOSTNAME"].as_str());
    assert_eq!(os["architecture"]["name"], env["ARCH"].as_str());
    let k = &os["kernels"][0];
    assert_eq!(k["version"], env["KERNEL"].as_str());
    assert!(k["initramfs"].as_str().unwrap().contains(&env["KERNEL"]));
    assert_eq!(k["modules_dir"], format!("/lib/modules/{}", env["KERNEL"]));
    let agent = |n: &str| os["agents"].as_array().unwrap().iter().find(|a| a["name"] == n).unwrap()["present"].clone();
    assert_eq!(agent("cloud_init"), env["CLOUD_INIT"] == "1");
    assert_eq!(agent("qemu_guest_agent"), env["QEMU_GA"] == "1");
    match env["SELINUX"].as_str() {
        "" => assert!(os.get("selinux").is_none()),
        mode => assert_eq!(os["selinux"]["mode"], mode),
    }
    for line in os["fstab"].as_array().unwrap() {
        assert!(line.get("resolves_to").is_some(), "fstab entry does not resolve: {line}");
    }
    assert_eq!(r["boot"]["mode"], env["BOOT_MODE"].as_str());
    let root = volume(r, env["ROOT_PART"].parse().unwrap());
    assert_eq!(root["mountpoint"], "/");
    assert_eq!(root["filesystem"]["kind"], env["ROOT_TYPE"].as_str());
    assert_eq!(root["filesystem"]["uuid"], env["ROOT_UUID"].as_str());
    assert_eq!(root["filesystem"]["label"], env["ROOT_LABEL"].as_str());
    let fs = &root["filesystem"];
    assert!(fs["free_bytes"].as_u64().unwrap() < fs["size"].as_u64().unwrap());
    assert!(fs["free_inodes"].as_u64().unwrap() <= fs["inodes"].as_u64().unwrap());
}

fn good_image(name: &str) -> Value {
    let path = image(name);
    let r = inspect(&path);
    assert_table_matches_sfdisk(&path, &r);
    assert_volumes_match_blkid(&path, &r);
    assert_os_facts(&r, &guest_env(name));
    assert!(all_findings(&r).is_empty(), "{name}: unexpected findings {:?}", all_findings(&r));
    r
}

#[test]
fn mbr_bios_ext4_debian() {
    let r = good_image("mbr-bios-ext4");
    assert_eq!(r["format"], "raw");
    assert!(r["partition_table"]["mbr_boot_code"].as_bool().unwrap());
    assert_eq!(r["partition_table"]["partitions"][0]["partuuid"], "1a2b3c4d-01");
    assert_eq!(r["operating_systems"][0]["codename"], "bookworm");
    assert_eq!(r["operating_systems"][0]["architecture"]["evidence"], "/usr/bin/dash");
    assert_eq!(r["boot"]["bios"], true);
    assert_eq!(r["boot"]["uefi"], false);
}

#[test]
fn gpt_uefi_ext4_ubuntu() {
    let r = good_image("gpt-uefi-ext4");
    let env = guest_env("gpt-uefi-ext4");
    let t = &r["partition_table"];
    assert_eq!(t["protective_mbr"], true);
    assert_eq!(t["mbr_boot_code"], false);
    let esp = volume(&r, 1);
    assert_eq!(t["partitions"][0]["role"], "esp");
    assert_eq!(esp["filesystem"]["kind"], "vfat");
    assert_eq!(esp["filesystem"]["version"], "FAT32");
    assert_eq!(esp["filesystem"]["uuid"], env["ESP_UUID"].as_str());
    assert_eq!(esp["mountpoint"], "/boot/efi");
    assert_eq!(r["boot"]["uefi_evidence"][0], "/dev/sda1:/EFI/BOOT/BOOTX64.EFI");
    assert_eq!(r["operating_systems"][0]["fstab"][0]["resolves_to"], "/dev/sda2");
}

#[test]
fn gpt_with_bios_boot_partition_and_esp_is_uefi_preferred() {
    let r = good_image("gpt-hybrid-ext4");
    let os = &r["operating_systems"][0];
    // The kernel lives on the separate /boot partition, the modules on the root.
    assert_eq!(os["mounted"], serde_json::json!(["/boot/efi", "/boot"]));
    assert_eq!(volume(&r, 3)["mountpoint"], "/boot");
    assert_eq!(os["fstab"][0]["spec"], "PARTUUID=bbbbbbbb-0000-0000-0000-000000000004");
    assert_eq!(os["fstab"][0]["resolves_to"], "/dev/sda4");
    assert_eq!(r["partition_table"]["partitions"][0]["role"], "bios_boot");
    let uefi: Vec<&str> = r["boot"]["uefi_evidence"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(uefi.contains(&"/dev/sda2:/EFI/debian/grubx64.efi"), "{uefi:?}");
}

#[test]
fn real_hybrid_mbr_is_recognised() {
    require("sgdisk");
    let dir = tempdir();
    let path = copy_image("gpt-hybrid-ext4", dir.path());
    let out = std::process::Command::new("sgdisk").args(["-h", "4"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "sgdisk -h: {}", String::from_utf8_lossy(&out.stderr));
    let r = inspect(&path);
    let t = &r["partition_table"];
    assert_eq!(t["kind"], "gpt");
    assert_eq!(t["hybrid_mbr"], true);
    assert!(t.get("protective_mbr").is_none());
    let h = &t["hybrid_entries"][0];
    assert_eq!(h["first_lba"], t["partitions"][3]["first_lba"]);
    assert_eq!(h["type_id"], "0x83");
    assert_eq!(r["operating_systems"][0]["distro"], "debian");
}

#[test]
fn xfs_v5_rocky_with_selinux_and_qemu_guest_agent() {
    let r = good_image("mbr-xfs5");
    let fs = &volume(&r, 1)["filesystem"];
    assert_eq!(fs["version"], "5");
    let os = &r["operating_systems"][0];
    assert_eq!(os["id_like"], serde_json::json!(["rhel", "centos", "fedora"]));
    assert_eq!(os["kernels"][0]["initramfs"], "/boot/initramfs-6.1.0-18-amd64.img");
}

#[test]
fn xfs_v4_centos7_from_redhat_release_with_swap() {
    let r = good_image("mbr-xfs4");
    let env = guest_env("mbr-xfs4");
    assert_eq!(volume(&r, 1)["filesystem"]["version"], "4");
    let swap = volume(&r, 2);
    assert_eq!(r["partition_table"]["partitions"][1]["role"], "swap");
    assert_eq!(swap["filesystem"]["kind"], "swap");
    assert_eq!(swap["filesystem"]["uuid"], env["SWAP_UUID"].as_str());
    assert_eq!(swap["filesystem"]["label"], env["SWAP_LABEL"].as_str());
    let os = &r["operating_systems"][0];
    assert_eq!(os["source"], "/etc/redhat-release");
    assert_eq!(os["fstab"][1]["resolves_to"], "/dev/sda2");
}

#[test]
fn same_facts_through_vhd_containers() {
    let dir = tempdir();
    let src = image("mbr-bios-ext4");
    let raw = inspect(&src);
    for (opts, name) in [("subformat=dynamic", "dyn.vhd"), ("subformat=fixed", "fixed.vhd")] {
        let vhd = dir.path().join(name);
        qemu_convert(&src, &vhd, "vpc", opts, &[]);
        let r = inspect(&vhd);
        assert_eq!(r["format"], "vhd");
        assert_eq!(r["operating_systems"], raw["operating_systems"], "{name}");
        assert_eq!(r["volumes"], raw["volumes"], "{name}");
        assert_eq!(r["boot"], raw["boot"], "{name}");
    }
}

#[test]
fn whole_disk_filesystem_without_partition_table() {
    require("dd");
    let dir = tempdir();
    let whole = dir.path().join("whole.ext4");
    let st = std::process::Command::new("dd")
        .arg(format!("if={}", s(&image("mbr-bios-ext4"))))
        .arg(format!("of={}", s(&whole)))
        .args(["bs=1M", "skip=1", "conv=sparse", "status=none"])
        .status()
        .unwrap();
    assert!(st.success());
    let r = inspect(&whole);
    assert_eq!(r["partition_table"]["kind"], "none");
    assert_eq!(r["volumes"][0]["device"], "/dev/sda");
    assert_eq!(r["volumes"][0]["filesystem"]["kind"], "ext4");
    assert_eq!(r["operating_systems"][0]["root"], "/dev/sda");
    assert_eq!(r["operating_systems"][0]["hostname"], "deb-bios");
}

#[test]
fn large_sparse_image_reads_little_and_fast() {
    let dir = tempdir();
    let path = copy_image("gpt-uefi-ext4", dir.path());
    // Grow to 20 GiB and move the backup GPT to the new end, as a real resize does.
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(20 << 30).unwrap();
    let out = std::process::Command::new("sgdisk").arg("-e").arg(&path).output().unwrap();
    assert!(out.status.success(), "sgdisk -e: {}", String::from_utf8_lossy(&out.stderr));
    let start = std::time::Instant::now();
    let r = inspect(&path);
    let took = start.elapsed();
    assert_eq!(r["virtual_size"], 20u64 << 30);
    assert_eq!(r["operating_systems"][0]["distro"], "ubuntu");
    let read = r["bytes_read"].as_u64().unwrap();
    assert!(read < 64 << 20, "read {read} bytes");
    assert!(took.as_secs_f64() < 1.0, "took {took:?}");
    assert!(all_findings(&r).is_empty(), "{:?}", all_findings(&r));
}

#[test]
fn corrupt_gpt_header_crc_is_a_finding_and_backup_is_used() {
    let dir = tempdir();
    let path = copy_image("gpt-uefi-ext4", dir.path());
    patch(&path, 512 + 56, b"\xde\xad"); // disk GUID bytes: header CRC no longer matches
    let r = inspect(&path);
    let f = all_findings(&r);
    assert!(f.iter().any(|m| m.starts_with("gpt primary header") && m.contains("CRC32 mismatch")), "{f:?}");
    assert_eq!(r["partition_table"]["partitions"].as_array().unwrap().len(), 2);
    assert_eq!(r["operating_systems"][0]["distro"], "ubuntu");
}

#[test]
fn corrupt_gpt_entry_array_and_both_headers() {
    let dir = tempdir();
    let path = copy_image("gpt-uefi-ext4", dir.path());
    patch(&path, 1024 + 32, b"\x01"); // first LBA of entry 1 in the primary array
    let r = inspect(&path);
    let f = all_findings(&r);
    assert!(f.iter().any(|m| m.starts_with("gpt primary entry array") && m.contains("CRC32")), "{f:?}");
    assert_eq!(r["partition_table"]["partitions"][0]["first_lba"], 2048, "backup array used");

    let size = std::fs::metadata(&path).unwrap().len();
    patch(&path, 512 + 56, b"\xde\xad");
    patch(&path, size - 512 + 56, b"\xde\xad");
    let (code, out, err) = imgport_no_panic(&["inspect", "--json", s(&path)]);
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert!(all_findings(&r).iter().any(|m| m.contains("neither GPT header is valid")));
    assert!(r["partition_table"]["partitions"].as_array().unwrap().is_empty());
}

#[test]
fn truncated_image_gives_findings_not_a_panic() {
    let dir = tempdir();
    for (name, keep) in [("mbr-bios-ext4", 40u64 << 20), ("gpt-uefi-ext4", 60 << 20), ("mbr-xfs5", 5 << 20)] {
        let path = copy_image(name, dir.path());
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(keep).unwrap();
        let (code, out, err) = imgport_no_panic(&["inspect", "--json", s(&path)]);
        assert_eq!(code, 0, "{name}: {err}");
        let r: Value = serde_json::from_str(&out).unwrap();
        let f = all_findings(&r);
        assert!(f.iter().any(|m| m.contains("but the disk has only") || m.contains("past the end")), "{name}: {f:?}");
    }
}

#[test]
fn garbage_superblocks_give_findings_not_a_panic() {
    let dir = tempdir();
    let mut rng = Rng::new(7);
    // ext4: keep the magic so the probe trusts it, scramble the geometry and the rest.
    let path = copy_image("mbr-bios-ext4", dir.path());
    let sb = 2048 * 512 + 1024;
    let mut garbage = vec![0u8; 1024];
    rng.fill(&mut garbage);
    garbage[56..58].copy_from_slice(&0xEF53u16.to_le_bytes());
    patch(&path, sb, &garbage);
    let (code, out, err) = imgport_no_panic(&["inspect", "--json", s(&path)]);
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert!(r["operating_systems"].as_array().unwrap().is_empty());
    assert!(all_findings(&r).iter().any(|m| m.contains("ext")), "{:?}", all_findings(&r));

    // ext4: sane superblock, destroyed group descriptors and inode table start.
    let path = copy_image("mbr-bios-ext4", dir.path());
    let mut garbage = vec![0u8; 64 << 10];
    rng.fill(&mut garbage);
    patch(&path, 2048 * 512 + 2048, &garbage);
    let (code, _, err) = imgport_no_panic(&["inspect", "--json", s(&path)]);
    assert_eq!(code, 0, "{err}");

    // XFS: keep "XFSB", scramble the rest of the superblock.
    let path = copy_image("mbr-xfs5", dir.path());
    let mut garbage = vec![0u8; 512];
    rng.fill(&mut garbage);
    garbage[..4].copy_from_slice(b"XFSB");
    patch(&path, 2048 * 512, &garbage);
    let (code, out, err) = imgport_no_panic(&["inspect", "--json", s(&path)]);
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert!(all_findings(&r).iter().any(|m| m.contains("xfs")), "{:?}", all_findings(&r));

    // FAT ESP: scramble the BPB after the jump and OEM name.
    let path = copy_image("gpt-uefi-ext4", dir.path());
    let mut garbage = vec![0u8; 80];
    rng.fill(&mut garbage);
    patch(&path, 2048 * 512 + 11, &garbage);
    let (code, _, err) = imgport_no_panic(&["inspect", "--json", s(&path)]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn human_output_names_the_facts() {
    let out = imgport_ok(&["inspect", s(&image("gpt-uefi-ext4"))]);
    for want in ["partition table: gpt", "ubuntu 22.04", "hostname: ubu-uefi", "architecture: x86_64", "boot: UEFI"] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn unreadable_input_is_an_error() {
    let dir = tempdir();
    let missing = dir.path().join("missing.raw");
    let (code, _, err) = imgport_no_panic(&["inspect", s(&missing)]);
    assert_eq!(code, 1);
    assert!(err.contains("missing.raw"), "{err}");
}

/// Read every file of a filesystem built from a known folder through the library, and compare the bytes: for XFS
/// the files are spread over several allocation groups (checked with xfs_db), where a reader that only handles
/// the first AG would return zeros.
#[test]
fn file_contents_match_the_source_tree_across_allocation_groups() {
    use imgport_guest::{fs, probe, reader::Disk, vfs::Vfs};
    for tool in ["mkfs.xfs", "xfs_db", "mkfs.ext4"] {
        require(tool);
    }
    let dir = tempdir();
    let tree = dir.path().join("tree");
    let mut rng = Rng::new(42);
    let mut files = Vec::new();
    let mut proto = String::from("/dev/null\n0 0\nd--755 0 0\n");
    for d in 0..8 {
        let sub = tree.join(format!("d{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        proto.push_str(&format!(" d{d} d--755 0 0\n"));
        let mut data = vec![0u8; 1_500_000 + d * 70_001];
        rng.fill(&mut data);
        let f = sub.join("blob");
        std::fs::write(&f, &data).unwrap();
        proto.push_str(&format!("  blob ---644 0 0 {}\n $\n", f.display()));
        files.push((format!("/d{d}/blob"), data));
    }
    proto.push_str("$\n");
    std::fs::write(dir.path().join("proto"), proto).unwrap();

    let mut images = Vec::new();
    for (name, crc) in [("v5.xfs", "crc=1"), ("v4.xfs", "crc=0")] {
        let img = dir.path().join(name);
        std::fs::File::create(&img).unwrap().set_len(300 << 20).unwrap();
        let out = std::process::Command::new("mkfs.xfs")
            .args(["-q", "-f", "-m", crc, "-d", "agcount=4", "-p"])
            .arg(dir.path().join("proto"))
            .arg(&img)
            .output()
            .unwrap();
        assert!(out.status.success(), "mkfs.xfs: {}", String::from_utf8_lossy(&out.stderr));
        // Where the data went: at least one file must start outside AG 0.
        let ags: Vec<u32> = files
            .iter()
            .map(|(p, _)| {
                let o = std::process::Command::new("xfs_db")
                    .args(["-r", "-c", &format!("path {p}"), "-c", "bmap"])
                    .arg(&img)
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&o.stdout).to_string();
                let ag = text.split('(').nth(1).and_then(|t| t.split('/').next()).and_then(|n| n.parse().ok());
                ag.unwrap_or_else(|| panic!("xfs_db bmap of {p}: {text}"))
            })
            .collect();
        assert!(ags.iter().any(|&a| a > 0), "{name}: all files in AG 0 ({ags:?}), test would prove nothing");
        images.push(img);
    }
    for (mkfs, name) in [("mkfs.ext4", "t.ext4"), ("mkfs.ext3", "t.ext3"), ("mkfs.ext2", "t.ext2")] {
        let ext = dir.path().join(name);
        run_tool(std::process::Command::new(mkfs).args(["-q", "-F", "-d"]).arg(&tree).arg(&ext).arg("64M"));
        images.push(ext);
    }

    for img in &images {
        let disk = Disk::new(std::sync::Arc::from(imgport_disk::open(img, &Default::default()).unwrap()));
        let mut region = disk.view(0, disk.size());
        let info = probe::probe(&mut region).unwrap().expect("filesystem recognised");
        let ext = img.extension().unwrap().to_str().unwrap();
        assert_eq!(info.kind.blkid_name(), if ext == "xfs" { "xfs" } else { ext }, "{}", img.display());
        let mut vfs = Vfs::new(fs::open(region, &info).unwrap());
        for (path, data) in &files {
            let got = vfs.read_file(path, usize::MAX).unwrap();
            assert!(got == *data, "{}: {path} differs from the source", img.display());
            let head = vfs.read_file(path, 1000).unwrap();
            assert_eq!(head, data[..1000], "capped read of {path}");
        }
        assert_eq!(vfs.read_dir("/").unwrap().len(), 8 + usize::from(info.kind.is_ext()), "{}", img.display());
    }
}

fn run_tool(cmd: &mut std::process::Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// NTFS, btrfs, LUKS2 and swap made by their real tools on a GPT disk, plus an ISO9660 and an NTFS whole disk:
/// type, UUID and label must equal blkid's, and partition roles follow the GPT types.
#[test]
fn volume_signatures_match_blkid() {
    use std::process::Command;
    for tool in ["mkntfs", "mkfs.btrfs", "cryptsetup", "mkswap", "genisoimage", "sgdisk"] {
        require(tool);
    }
    let dir = tempdir();
    let d = |n: &str| dir.path().join(n);
    let sized = |n: &str, mib: u64| {
        let p = d(n);
        std::fs::File::create(&p).unwrap().set_len(mib << 20).unwrap();
        p
    };
    let ntfs = sized("ntfs.img", 48);
    run_tool(Command::new("mkntfs").args(["-q", "-Q", "-F", "-L", "winsys"]).arg(&ntfs));
    let btrfs = sized("btrfs.img", 128);
    run_tool(Command::new("mkfs.btrfs").args(["-q", "-L", "bt-data"]).arg(&btrfs));
    let luks = sized("luks.img", 20);
    std::fs::write(d("key"), "test passphrase").unwrap();
    run_tool(
        Command::new("cryptsetup")
            .args(["luksFormat", "-q", "--type", "luks2", "--label", "vault", "--pbkdf", "pbkdf2"])
            .args(["--pbkdf-force-iterations", "1000", "--key-file"])
            .arg(d("key"))
            .arg(&luks),
    );
    let swap = sized("swap.img", 8);
    run_tool(Command::new("mkswap").args(["-q", "-L", "sw"]).arg(&swap));

    let disk = sized("disk.raw", 220);
    run_tool(
        Command::new("sgdisk")
            .args(["-n1:2048:+48M", "-t1:0700", "-n2:0:+128M", "-t2:8300", "-n3:0:+20M", "-t3:8309"])
            .args(["-n4:0:+8M", "-t4:8200", "-n5:0:+1M", "-t5:2700", "-n6:0:+1M", "-t6:8E00"])
            .arg(&disk),
    );
    let sf = sfdisk_json(&disk);
    for (i, img) in [&ntfs, &btrfs, &luks, &swap].iter().enumerate() {
        let start = sf["partitions"][i]["start"].as_u64().unwrap();
        run_tool(Command::new("dd").arg(format!("if={}", img.display())).arg(format!("of={}", disk.display())).args([
            "bs=512",
            &format!("seek={start}"),
            "conv=notrunc,sparse",
            "status=none",
        ]));
    }
    let r = inspect(&disk);
    assert_table_matches_sfdisk(&disk, &r);
    assert_volumes_match_blkid(&disk, &r);
    let roles: Vec<&str> =
        r["partition_table"]["partitions"].as_array().unwrap().iter().map(|p| p["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["microsoft_basic_data", "linux", "luks", "swap", "windows_recovery", "lvm"]);
    let kinds: Vec<&str> =
        r["volumes"].as_array().unwrap().iter().filter_map(|v| v["filesystem"]["kind"].as_str()).collect();
    assert_eq!(kinds, ["ntfs", "btrfs", "crypto_luks", "swap"]);
    assert_eq!(volume(&r, 3)["filesystem"]["version"], "2");
    assert!(r["operating_systems"].as_array().unwrap().is_empty());

    // Whole-disk volumes: an NTFS boot sector ends in 0x55AA too but is not an MBR; an ISO9660 image.
    let iso_tree = d("iso");
    std::fs::create_dir_all(&iso_tree).unwrap();
    std::fs::write(iso_tree.join("readme.txt"), "x").unwrap();
    let iso = d("t.iso");
    run_tool(Command::new("genisoimage").args(["-quiet", "-V", "IMGPORT_ISO", "-o"]).arg(&iso).arg(&iso_tree));
    for img in [&ntfs, &iso] {
        let r = inspect(img);
        assert_eq!(r["partition_table"]["kind"], "none", "{}", img.display());
        assert_volumes_match_blkid(img, &r);
        assert!(r["volumes"][0].get("filesystem").is_some(), "{}", img.display());
    }
}

/// Random damage to the metadata the inspection reads (tables, superblocks, descriptors, inode tables, FATs,
/// directories) must never panic or hang; a bounded, deterministic number of rounds.
#[test]
fn mutated_metadata_never_panics() {
    let mut rng = Rng::new(2024);
    // (image, ranges where metadata lives: GPT/MBR, and the first MiB of each filesystem)
    // win-ntfs: the NTFS boot sector and the first 64 MFT records (the system files, $Bitmap among them, whose
    // runs locate the data the free-space count and the hive reads go through). The MFT's place comes from the
    // boot sector: cluster number at 0x30, bytes per sector at 11, sectors per cluster at 13.
    let ntfs = 34u64 << 20;
    let mut boot = [0u8; 512];
    std::fs::File::open(image("win-ntfs")).unwrap().read_exact_at(&mut boot, ntfs).unwrap();
    let cluster = u64::from(u16::from_le_bytes([boot[11], boot[12]])) * u64::from(boot[13]);
    let mft = ntfs + u64::from_le_bytes(boot[0x30..0x38].try_into().unwrap()) * cluster;
    let win: &[(u64, u64)] = &[(ntfs, 512), (mft, 64 << 10)];
    // gpt-fedora-btrfs: the btrfs at 66 MiB, its superblock (64 KiB in) and the metadata mkfs.btrfs writes first.
    let targets: [(&str, &[(u64, u64)]); 5] = [
        ("gpt-hybrid-ext4", &[(0, 34 * 512), (2 << 20, 1 << 20), (36_700_160, 1 << 20), (70_254_592, 2 << 20)]),
        ("mbr-xfs5", &[(0, 512), (1 << 20, 1 << 20)]),
        ("mbr-bios-ext4", &[(0, 512), (1 << 20, 2 << 20)]),
        ("win-ntfs", win),
        ("gpt-fedora-btrfs", &[((66 << 20) + (64 << 10), 4096), (66 << 20, 8 << 20)]),
    ];
    for (name, ranges) in targets {
        for round in 0..120 {
            let inner = imgport_disk::open(&image(name), &Default::default()).unwrap();
            let mut patches = Vec::new();
            for _ in 0..1 + rng.below(24) {
                let (start, len) = ranges[rng.below(ranges.len() as u64) as usize];
                patches.push((start + rng.below(len), rng.next_u64() as u8));
            }
            let disk = Patched { inner, patches: patches.clone() };
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                imgport_guest::inspect(std::sync::Arc::new(disk))
            }));
            assert!(r.is_ok(), "{name} round {round}: inspection panicked with patches {patches:?}");
        }
    }
}

/// A FAT directory whose cluster chain points at itself and holds only deleted entries: fatfs would walk it
/// forever; the read budget of the view ends it with an error.
#[test]
fn fat_directory_cycle_ends_with_an_error() {
    use imgport_guest::{fs, probe, reader::Disk};
    for tool in ["mkfs.fat", "mmd"] {
        require(tool);
    }
    let dir = tempdir();
    let img = dir.path().join("fat16.img");
    run_tool(std::process::Command::new("mkfs.fat").args(["-F", "16", "-C"]).arg(&img).arg("20480"));
    run_tool(std::process::Command::new("mmd").arg("-i").arg(&img).arg("::/D"));
    let mut b = std::fs::read(&img).unwrap();
    let le16 = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let (bps, spc, res, fats, root_entries, fat_size) =
        (le16(&b, 11), b[13] as usize, le16(&b, 14), b[16] as usize, le16(&b, 17), le16(&b, 22));
    let root = (res + fats * fat_size) * bps;
    let entry = (0..root_entries).map(|i| root + 32 * i).find(|&e| &b[e..e + 11] == b"D          ").unwrap();
    let cluster = le16(&b, entry + 26);
    for k in 0..fats {
        let at = (res + k * fat_size) * bps + 2 * cluster;
        b[at..at + 2].copy_from_slice(&(cluster as u16).to_le_bytes());
    }
    let data = root + root_entries * 32 + (cluster - 2) * spc * bps;
    for j in 0..spc * bps / 32 {
        b[data + 32 * j] = 0xE5;
        b[data + 32 * j + 11] = 0x20;
    }
    std::fs::write(&img, &b).unwrap();

    let disk = Disk::new(std::sync::Arc::from(imgport_disk::open(&img, &Default::default()).unwrap()));
    let mut region = disk.view(0, disk.size());
    let info = probe::probe(&mut region).unwrap().expect("FAT recognised");
    let mut fat = fs::open(region, &info).unwrap();
    let start = std::time::Instant::now();
    assert!(fat.read_dir("/D").is_err());
    assert!(fat.lstat("/D/x").is_err());
    assert!(start.elapsed().as_secs() < 120, "took {:?}", start.elapsed());
}

/// The volume named `device` in an inspection report.
fn volume_named<'a>(r: &'a Value, device: &str) -> &'a Value {
    r["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["device"] == device)
        .unwrap_or_else(|| panic!("no volume {device} in {:#?}", r["volumes"]))
}

/// Logical volumes as the guest names them, with their layout and where their extents are: linear, striped over
/// two partitions, spanning a data disk (read whole when the disk is given, reported when it is not), and a
/// group of two LVs (root and swap) as Rocky installs it; their filesystems are those the images were built with.
#[test]
fn logical_volumes_are_read_linear_striped_and_across_disks() {
    let r = inspect(&image("mbr-lvm-striped"));
    let root = volume_named(&r, "/dev/vg0/root");
    let lv = &root["logical_volume"];
    assert_eq!(
        (lv["volume_group"].as_str(), lv["name"].as_str(), lv["layout"].as_str()),
        (Some("vg0"), Some("root"), Some("striped"))
    );
    assert_eq!(lv["physical_volumes"], serde_json::json!(["/dev/sda2", "/dev/sda3"]));
    assert_eq!(lv["disks"], serde_json::json!(["/dev/sda"]));
    assert_eq!(root["filesystem"]["uuid"], guest_env("mbr-lvm-striped")["ROOT_UUID"]);
    assert_eq!(r["operating_systems"][0]["root"], "/dev/vg0/root");

    // Ubuntu's layout: dashes doubled in the mapper name GRUB uses, and fstab's dm-uuid name resolved.
    let r = inspect(&image("gpt-ubuntu-lvm"));
    let os = &r["operating_systems"][0];
    assert_eq!((os["distro"].as_str(), os["root"].as_str()), (Some("ubuntu"), Some("/dev/ubuntu-vg/ubuntu-lv")));
    let fstab = os["fstab"].as_array().expect("fstab");
    assert!(fstab[0]["spec"].as_str().is_some_and(|s| s.starts_with("/dev/disk/by-id/dm-uuid-LVM-")), "{fstab:?}");
    let resolved: Vec<&str> = fstab.iter().map(|l| l["resolves_to"].as_str().unwrap_or("-")).collect();
    assert_eq!(resolved, ["/dev/ubuntu-vg/ubuntu-lv", "/dev/sda2", "/dev/sda1"]);
    assert_eq!(os["grub"]["default_entry"]["root_resolves_to"], "/dev/ubuntu-vg/ubuntu-lv");
    assert_eq!(r["boot"]["mode"], "UEFI");
    let tools = &os["kernels"][0]["initramfs_contents"]["boot_tools"];
    assert_eq!(*tools, serde_json::json!(["lvm"]));

    // Rocky: two LVs, swap among them, XFS root.
    let r = inspect(&image("mbr-rhel-lvm"));
    assert_eq!(volume_named(&r, "/dev/rl/swap")["filesystem"]["kind"], "swap");
    assert_eq!(volume_named(&r, "/dev/rl/root")["filesystem"]["kind"], "xfs");
    assert_eq!(r["operating_systems"][0]["distro"], "rocky");

    // Spanning: without the data disk the LV is listed, not read, and the group's missing PV named.
    let name = "mbr-lvm-spanning";
    let r = inspect(&image(name));
    let root = volume_named(&r, "/dev/vg0/root");
    assert_eq!(root["logical_volume"]["incomplete"], true);
    assert!(root["error"].as_str().is_some_and(|e| e.contains("--data-disk")), "{root}");
    assert!(r["operating_systems"].as_array().is_some_and(Vec::is_empty));
    assert!(all_findings(&r).iter().any(|f| f.contains("pv1 (/dev/sdb, on no disk given)")), "{:?}", all_findings(&r));
    // With it: read whole, the same guest as on one disk, the spanning reported.
    let data = guest_images().join(format!("{name}-data.raw"));
    let r = imgport_json(&["inspect", "--json", s(&image(name)), "--data-disk", s(&data)]);
    assert_eq!(r["data_disks"][0]["device"], "/dev/sdb");
    assert_eq!(r["data_disks"][0]["partition_table"]["kind"], "none");
    assert_eq!(volume_named(&r, "/dev/sdb")["filesystem"]["kind"], "lvm2_member");
    let root = volume_named(&r, "/dev/vg0/root");
    assert_eq!(root["logical_volume"]["disks"], serde_json::json!(["/dev/sda", "/dev/sdb"]));
    assert_eq!(root["logical_volume"]["physical_volumes"], serde_json::json!(["/dev/sda2", "/dev/sdb"]));
    assert_eq!(root["filesystem"]["uuid"], guest_env(name)["ROOT_UUID"]);
    assert_eq!(r["operating_systems"][0]["hostname"], "deb-lvm");
    assert!(all_findings(&r).iter().any(|f| f.contains("spans disks /dev/sda, /dev/sdb")), "{:?}", all_findings(&r));
    // A data disk that cannot be opened is an error naming it.
    let out = run_imgport(&["inspect", s(&image(name)), "--data-disk", "/nonexistent/disk.raw"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("/nonexistent/disk.raw"), "{err}");
}

/// A LUKS2 container is recognised (version, UUID) and, holding the root, stops the guest from being read.
#[test]
fn luks_root_is_recognised() {
    let r = inspect(&image("mbr-luks-root"));
    let v = volume(&r, 2);
    assert_eq!(
        (v["filesystem"]["kind"].as_str(), v["filesystem"]["version"].as_str()),
        (Some("crypto_luks"), Some("2"))
    );
    assert_eq!(v["filesystem"]["uuid"], "6d6d6d6d-2222-4333-8444-555555555555");
    assert_volumes_match_blkid(&image("mbr-luks-root"), &r);
    assert!(r["operating_systems"].as_array().is_some_and(Vec::is_empty));
}

/// btrfs layouts as installers make them: each subvolume a volume (`btrfsvol:/dev/sdaN/PATH`), the root the
/// subvolume the guest's fstab mounts at / (Fedora's `root`, openSUSE's default snapshot, Ubuntu's `@`), the
/// other fstab lines resolved to their subvolumes and mounted, and GRUB's paths found under the root subvolume.
#[test]
fn btrfs_subvolumes_are_read_as_the_guest_mounts_them() {
    for (name, part, home, distro) in [
        ("gpt-fedora-btrfs", 3, "home", "fedora"),
        ("gpt-opensuse-btrfs", 2, "@/home", "opensuse-leap"),
        ("gpt-ubuntu-btrfs", 2, "@home", "ubuntu"),
    ] {
        let env = guest_env(name);
        let r = inspect(&image(name));
        let os = &r["operating_systems"][0];
        let root = format!("btrfsvol:/dev/sda{part}/{}", env["ROOT_SUBVOL"]);
        assert_eq!((os["root"].as_str(), os["distro"].as_str()), (Some(root.as_str()), Some(distro)), "{name}");
        let v = volume_named(&r, &root);
        assert_eq!(v["mountpoint"], "/", "{name}");
        assert_eq!(v["filesystem"]["uuid"], env["ROOT_UUID"].as_str(), "{name}");
        assert_eq!(v["btrfs_subvolume"]["filesystem"], format!("/dev/sda{part}"), "{name}");
        let home = volume_named(&r, &format!("btrfsvol:/dev/sda{part}/{home}"));
        assert_eq!(home["mountpoint"], "/home", "{name}");
        assert!(os["mounted"].as_array().unwrap().iter().any(|m| m == "/home"), "{name}: {}", os["mounted"]);
        for line in os["fstab"].as_array().unwrap() {
            assert!(line.get("resolves_to").is_some(), "{name}: fstab entry does not resolve: {line}");
        }
        let fstab_root = os["fstab"].as_array().unwrap().iter().find(|l| l["mountpoint"] == "/").unwrap();
        assert_eq!(fstab_root["resolves_to"].as_str(), Some(root.as_str()), "{name}");
        let entry = &os["grub"]["default_entry"];
        assert_eq!(entry["kernel_exists"], true, "{name}: {entry}");
        assert_eq!(entry["initrd_exists"], true, "{name}: {entry}");
        assert_eq!(entry["root_resolves_to"].as_str(), Some(root.as_str()), "{name}: {entry}");
        let kernel = &os["kernels"][0];
        let btrfs = kernel["drivers"].as_array().unwrap().iter().find(|d| d["name"] == "btrfs").cloned();
        assert_eq!(btrfs.map(|d| d["available_at_boot"].clone()), Some(Value::Bool(true)), "{name}: {kernel}");
        assert_eq!(r["boot"]["mode"], "UEFI", "{name}");
        assert_volumes_match_blkid(&image(name), &r);
    }
    // openSUSE: the root is the default subvolume, a snapshot; the snapshots' own subvolume is mounted too.
    let r = inspect(&image("gpt-opensuse-btrfs"));
    let root = volume_named(&r, "btrfsvol:/dev/sda2/@/.snapshots/1/snapshot");
    assert_eq!(root["btrfs_subvolume"]["default"], true);
    assert_eq!(volume_named(&r, "btrfsvol:/dev/sda2/@/.snapshots")["mountpoint"], "/.snapshots");
    assert!(volume_named(&r, "/dev/sda2").get("mountpoint").is_none());
    // Ubuntu: GRUB reads the top level, so its kernel path runs through the subvolume.
    let r = inspect(&image("gpt-ubuntu-btrfs"));
    let entry = &r["operating_systems"][0]["grub"]["default_entry"];
    assert_eq!(entry["kernel"].as_str().map(|k| k.starts_with("/@/boot/vmlinuz-")), Some(true), "{entry}");
    assert_eq!(entry["kernel_path"].as_str().map(|k| k.starts_with("/boot/vmlinuz-")), Some(true), "{entry}");
}
