//! Guest facts beyond the basics (initramfs contents and boot drivers, GRUB, network configuration, installed
//! packages, root account and /etc/shadow flags, /lib symlinks, sshd) on the images scripts/build-test-images.sh
//! makes, checked against the facts each was built with and against real tools (rpm, dpkg, debugfs, xfs_db); plus
//! hostile initramfs archives and RPM databases that must give findings, never a panic, a hang or unbounded memory.

use crate::common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn image(name: &str) -> PathBuf {
    guest_images().join(format!("{name}.raw"))
}

fn inspect(name: &str) -> (Value, HashMap<String, String>) {
    let r = imgport_json(&["inspect", "--json", image(name).to_str().unwrap()]);
    (r, guest_env(name))
}

fn os(r: &Value) -> &Value {
    &r["operating_systems"][0]
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

fn list(env: &HashMap<String, String>, key: &str) -> Vec<String> {
    env[key].split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn findings(r: &Value) -> Vec<String> {
    r["findings"].as_array().unwrap().iter().map(|f| format!("{}: {}", f["structure"], f["message"])).collect()
}

/// Read one file of a partition of a disk image through the library (symlinks followed).
fn guest_file(img: &Path, part: u32, path: &str) -> Vec<u8> {
    use imgport_guest::{fs, partition, probe, reader::Disk, vfs::Vfs};
    let disk = Disk::new(std::sync::Arc::from(imgport_disk::open(img, &Default::default()).unwrap()));
    let table = partition::read_table(&disk).unwrap();
    let p = table.partitions.iter().find(|p| p.number == part).expect("partition");
    let mut region = disk.view(p.start, p.size);
    let info = probe::probe(&mut region).unwrap().expect("filesystem");
    let mut vfs = Vfs::new(fs::open(region, &info).unwrap());
    vfs.read_file(path, usize::MAX).unwrap()
}

const ALL_IMAGES: &[&str] = &[
    "mbr-bios-ext4",
    "gpt-uefi-ext4",
    "gpt-hybrid-ext4",
    "mbr-xfs5",
    "deb-novirtio-gzip",
    "deb-novirtio-xz",
    "deb-novirtio-zstd",
    "deb-novirtio-lz4",
    "deb-nodrivers",
    "deb-xfs",
    "deb-bad-ext4",
];

#[test]
fn initramfs_contents_and_boot_drivers() {
    for name in ALL_IMAGES {
        let (r, env) = inspect(name);
        assert!(findings(&r).is_empty(), "{name}: {:?}", findings(&r));
        let k = &os(&r)["kernels"][0];
        let ir = &k["initramfs_contents"];
        assert_eq!(ir["complete"], true, "{name}: {ir}");
        let kinds: Vec<&str> =
            ir["segments"].as_array().unwrap().iter().map(|s| s["compression"].as_str().unwrap()).collect();
        // The early microcode archive comes first, uncompressed; then the main archive.
        assert_eq!(kinds, ["none", env["INITRD_COMPRESSION"].as_str()], "{name}");
        assert_eq!(ir["early_microcode"], env["MICROCODE"] == "1", "{name}");
        assert_eq!(ir["kernel_versions"], serde_json::json!([env["KERNEL"]]), "{name}");
        let modules = strs(&ir["modules"]);
        for m in ["ahci", "ext4", "sd_mod"] {
            assert!(modules.contains(&m.to_string()), "{name}: {m} missing from {modules:?}");
        }
        let want = list(&env, "DRIVERS_AT_BOOT");
        let at_boot: Vec<String> = k["drivers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["available_at_boot"] == true)
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect();
        let mut a = at_boot.clone();
        let mut b = want.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{name}: drivers available at boot");
    }
    // How each driver counts: a module in the initramfs (Debian), built in by config and modules.builtin
    // (Ubuntu), or only installed in /lib/modules (not at boot).
    let (r, _) = inspect("mbr-bios-ext4");
    let d = |r: &Value, n: &str| {
        os(r)["kernels"][0]["drivers"].as_array().unwrap().iter().find(|d| d["name"] == n).unwrap().clone()
    };
    let blk = d(&r, "virtio_blk");
    assert_eq!(
        (blk["config"].as_str(), blk["builtin"].as_bool(), blk["in_initramfs"].as_bool()),
        (Some("m"), Some(false), Some(true))
    );
    let (r, _) = inspect("gpt-uefi-ext4");
    let blk = d(&r, "virtio_blk");
    assert_eq!(
        (blk["config"].as_str(), blk["builtin"].as_bool(), blk["in_initramfs"].as_bool()),
        (Some("y"), Some(true), Some(false))
    );
    assert!(strs(&blk["evidence"]).iter().any(|e| e.ends_with("/modules.builtin")), "{blk}");
    let (r, _) = inspect("deb-novirtio-xz");
    let blk = d(&r, "virtio_blk");
    assert_eq!(
        (blk["in_module_tree"].as_bool(), blk["in_initramfs"].as_bool(), blk["available_at_boot"].as_bool()),
        (Some(true), Some(false), Some(false))
    );
}

/// The main archive of each test initramfs, unpacked by the real tools, lists what imgport lists.
#[test]
fn initramfs_listing_matches_cpio() {
    for tool in ["cpio", "gzip", "xz", "zstd", "lz4"] {
        require(tool);
    }
    let dir = tempdir();
    for (name, unpack) in [
        ("mbr-bios-ext4", "gzip -dc"),
        ("deb-novirtio-xz", "xz -dc"),
        ("gpt-uefi-ext4", "zstd -dc"),
        ("deb-novirtio-lz4", "lz4 -dc"),
    ] {
        let env = guest_env(name);
        let part: u32 = env["ROOT_PART"].parse().unwrap();
        let data = guest_file(&image(name), part, &format!("/boot/initrd.img-{}", env["KERNEL"]));
        let file = dir.path().join(format!("{name}.img"));
        std::fs::write(&file, &data).unwrap();
        // The early archive is uncompressed: cpio itself says where it ends (in 512-byte blocks).
        let early = Command::new("sh")
            .arg("-c")
            .arg(format!("cpio -it < {} 2>&1 >/dev/null", file.display()))
            .output()
            .unwrap();
        let blocks: u64 = String::from_utf8_lossy(&early.stdout).split_whitespace().next().unwrap().parse().unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("tail -c +{} {} | {unpack} | cpio -it --quiet", blocks * 512 + 1, file.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let mut theirs: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| imgport_guest::initramfs::module_name(l.trim()))
            .collect();
        theirs.sort();
        let r = imgport_guest::initramfs::read(&data[..], Default::default());
        assert_eq!(r.modules, theirs, "{name}");
        assert_eq!(r.segments[1].offset, blocks * 512, "{name}");
    }
}

#[test]
fn grub_default_entry() {
    for name in ["mbr-bios-ext4", "gpt-uefi-ext4", "gpt-hybrid-ext4", "mbr-xfs5", "deb-bad-ext4", "deb-novirtio-zstd"] {
        let (r, env) = inspect(name);
        let g = &os(&r)["grub"];
        assert_eq!(g["config"], env["GRUB_CONFIG"].as_str(), "{name}");
        let d = &g["default_entry"];
        assert_eq!(d["root"], env["GRUB_ROOT"].as_str(), "{name}");
        assert_eq!(d["root_resolves_to"], env["GRUB_ROOT_DEVICE"].as_str(), "{name}");
        assert_eq!(strs(&d["consoles"]), consoles(&env), "{name}");
        assert_eq!(d["kernel_path"], env["GRUB_KERNEL"].as_str(), "{name}");
        assert_eq!(d["kernel_exists"], true, "{name}");
        assert_eq!(d["initrd_exists"], true, "{name}");
        assert_eq!(g["blscfg"], env.get("GRUB_BLS").is_some_and(|v| v == "1"), "{name}");
    }
    // Debian: the recovery entry in the submenu; /etc/default/grub's console.
    let (r, _) = inspect("mbr-bios-ext4");
    let g = &os(&r)["grub"];
    assert_eq!(g["entries"][1]["position"], "1>0");
    assert_eq!(g["etc_default_grub"]["consoles"], serde_json::json!(["tty0", "ttyS0,115200n8"]));
    // Separate /boot: GRUB names the kernel relative to that partition.
    let (r, _) = inspect("gpt-hybrid-ext4");
    assert_eq!(os(&r)["grub"]["default_entry"]["kernel"], "/vmlinuz-6.1.0-18-amd64");
    // Rocky: BLS entries, saved_entry from grubenv, kernelopts expanded.
    let (r, env) = inspect("mbr-xfs5");
    let g = &os(&r)["grub"];
    assert_eq!(g["entries"].as_array().unwrap().len(), 2);
    assert_eq!(g["default_entry"]["id"], format!("0123456789abcdef0123456789abcdef-{}", env["KERNEL"]));
    assert!(g["default_entry"]["options"].as_str().unwrap().starts_with(&format!("root=UUID={} ro", env["ROOT_UUID"])));
    assert_eq!(g["grubenv_path"], "/boot/grub2/grubenv");
    assert_eq!(g["etc_default_grub"]["enable_blscfg"], "true");
    // The rescue entry names a kernel that is not there.
    assert_eq!(g["entries"][1]["kernel_exists"], false);
}

fn consoles(env: &HashMap<String, String>) -> Vec<String> {
    // GRUB_CONSOLE lists console= values separated by commas, but a value may hold a comma itself
    // ("ttyS0,115200n8"): rejoin the speed parts.
    let mut out: Vec<String> = Vec::new();
    for part in env["GRUB_CONSOLE"].split(',') {
        if part.starts_with(|c: char| c.is_ascii_digit()) {
            if let Some(last) = out.last_mut() {
                last.push(',');
                last.push_str(part);
                continue;
            }
        }
        out.push(part.to_string());
    }
    out
}

#[test]
fn network_configuration() {
    for name in ["mbr-bios-ext4", "gpt-uefi-ext4", "mbr-xfs5", "mbr-xfs4", "deb-bad-ext4"] {
        let (r, env) = inspect(name);
        let net = &os(&r)["network"];
        let mut want = env["NET"].splitn(4, ':');
        let (system, iface, mode) = (want.next().unwrap(), want.next().unwrap(), want.next().unwrap());
        let mac = want.next();
        let ifs = net["interfaces"].as_array().unwrap();
        assert_eq!(ifs.len(), 1, "{name}: {ifs:?}");
        let i = &ifs[0];
        assert_eq!((i["system"].as_str(), i["name"].as_str()), (Some(system), Some(iface)), "{name}");
        assert_eq!(i["dhcp4"], mode == "dhcp", "{name}");
        assert_eq!(net["any_dhcp4"], mode == "dhcp", "{name}");
        assert_eq!(i["mac"].as_str(), mac, "{name}");
        if mode == "static" {
            assert!(!i["addresses"].as_array().unwrap().is_empty(), "{name}");
        }
        let pinned: Vec<String> = net["pinned_names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{}={}", p["name"].as_str().unwrap(), p["mac"].as_str().unwrap()))
            .collect();
        assert_eq!(pinned, list(&env, "PINNED"), "{name}");
    }
}

#[test]
fn dpkg_packages_and_versions() {
    for name in ["mbr-bios-ext4", "gpt-uefi-ext4", "deb-bad-ext4"] {
        let (r, env) = inspect(name);
        let p = &os(&r)["packages"];
        assert_eq!(p["format"], env["PKG_FORMAT"].as_str());
        assert_eq!(p["source"], "/var/lib/dpkg/status");
        let names: Vec<&str> = p["packages"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap()).collect();
        // Removed packages whose configuration files remain are not installed.
        assert_eq!(names, ["base-files", "cloud-init", "linux-image-6.1.0-18-amd64", "openssh-server"], "{name}");
        let ci = p["packages"].as_array().unwrap().iter().find(|x| x["name"] == "cloud-init").unwrap();
        assert_eq!(ci["version"], env["CLOUD_INIT_VERSION"].as_str());
    }
    // The ordering used for "cloud-init >= 19.1.3" is dpkg's own.
    require("dpkg");
    let pairs = [
        ("22.4.2-1+deb12u1", "19.1.3"),
        ("0.7.9-1", "19.1.3"),
        ("22.4.2-0ubuntu0~22.04.1", "22.4.2"),
        ("1:9.2p1-2+deb12u2", "9.2p1"),
        ("1.0~rc1", "1.0"),
        ("1.0+dfsg-1", "1.0-1"),
        ("2.36-9+deb12u4", "2.36-9"),
        ("1.2.3a", "1.2.3.1"),
        ("10.0", "9.99"),
        ("1.0-1~bpo11+1", "1.0-1"),
    ];
    for (a, b) in pairs {
        for (x, y) in [(a, b), (b, a), (a, a)] {
            let lt = Command::new("dpkg").args(["--compare-versions", x, "lt", y]).status().unwrap().success();
            let eq = Command::new("dpkg").args(["--compare-versions", x, "eq", y]).status().unwrap().success();
            let theirs = if lt {
                std::cmp::Ordering::Less
            } else if eq {
                std::cmp::Ordering::Equal
            } else {
                std::cmp::Ordering::Greater
            };
            assert_eq!(imgport_guest::packages::dpkg_cmp(x, y), theirs, "{x} vs {y}");
        }
    }
}

/// The RPM database of the Rocky image, read by imgport, lists what `rpm -qa` lists for the same file.
#[test]
fn rpm_sqlite_packages_match_rpm() {
    require("rpm");
    let (r, env) = inspect("mbr-xfs5");
    let p = &os(&r)["packages"];
    assert_eq!(p["format"], "rpm_sqlite");
    assert_eq!(p["source"], "/var/lib/rpm/rpmdb.sqlite");
    assert_eq!(p["complete"], true);
    let dir = tempdir();
    let db = guest_file(&image("mbr-xfs5"), env["ROOT_PART"].parse().unwrap(), "/var/lib/rpm/rpmdb.sqlite");
    std::fs::write(dir.path().join("rpmdb.sqlite"), &db).unwrap();
    let out = Command::new("rpm")
        .args([
            "--dbpath",
            dir.path().to_str().unwrap(),
            "-qa",
            "--qf",
            "%{NAME} %|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE} %{ARCH}\\n",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "rpm -qa: {}", String::from_utf8_lossy(&out.stderr));
    let mut theirs: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    theirs.sort();
    let mut ours: Vec<String> = p["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            format!(
                "{} {} {}",
                x["name"].as_str().unwrap(),
                x["version"].as_str().unwrap(),
                x["arch"].as_str().unwrap()
            )
        })
        .collect();
    ours.sort();
    assert_eq!(ours, theirs);
    assert!(ours.len() > 30, "enough rows for interior b-tree pages");
    assert!(ours.iter().any(|l| l == "qemu-guest-agent 17:8.0.0-16.el9 noarch"));
    // The long header spills into overflow pages and still decodes.
    assert!(ours.iter().any(|l| l.starts_with("kernel-core 5.14.0-362.8.1.el9_3")));

    // RPM's own version ordering agrees with imgport's.
    let pairs = [
        ("23.4-7.el9", "19.1.3"),
        ("0.7.9-24.el7", "19.1.3"),
        ("1.0~rc1", "1.0"),
        ("1.0^git1", "1.0"),
        ("1.0^git1", "1.0.1"),
        ("5.14.0-362.8.1.el9_3", "5.14.0-70.13.1.el9_0"),
        ("1.0a", "1.0"),
        ("2.0", "10"),
        ("1.001", "1.1"),
        ("8.7p1", "8.7"),
    ];
    for (a, b) in pairs {
        for (x, y) in [(a, b), (b, a)] {
            let o = Command::new("rpm")
                .args(["--eval", &format!("%{{lua: print(rpm.vercmp('{x}', '{y}'))}}")])
                .output()
                .unwrap();
            let theirs: i32 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
            assert_eq!(imgport_guest::packages::rpmvercmp(x, y) as i32, theirs, "{x} vs {y}");
        }
    }
}

#[test]
fn root_account_shadow_lib_and_sshd() {
    for name in ["mbr-bios-ext4", "gpt-uefi-ext4", "gpt-hybrid-ext4", "mbr-xfs5", "mbr-xfs4", "deb-bad-ext4"] {
        let (r, env) = inspect(name);
        let o = os(&r);
        let a = &o["accounts"];
        assert_eq!(
            (a["passwd_root_entry"].as_bool(), a["shadow_root_entry"].as_bool()),
            (Some(true), Some(true)),
            "{name}"
        );
        assert_eq!(a["root_uid"], 0);
        assert_eq!(a["root_password"], "locked");
        assert_eq!(a["shadow_immutable"], env["SHADOW_IMMUTABLE"] == "1", "{name}: {a}");
        let lib = &o["lib_links"][0];
        assert_eq!(lib["path"], "/lib");
        assert_eq!(lib["absolute"], env["LIB_ABSOLUTE"] == "1", "{name}");
        assert_eq!(o["sshd"]["enabled"], env["SSHD_ENABLED"] == "1", "{name}: {}", o["sshd"]);
    }
    let (r, _) = inspect("deb-bad-ext4");
    assert_eq!(os(&r)["sshd"]["installed"], true);
    assert_eq!(os(&r)["lib_links"][0]["target"], "/usr/lib");
}

/// ext4 flags as debugfs reports them; an XFS file made immutable with xfs_db reads as immutable.
#[test]
fn inode_flags_agree_with_debugfs_and_xfs_db() {
    use imgport_guest::{fs, probe, reader::Disk, vfs::Vfs};
    for tool in ["debugfs", "mkfs.xfs", "xfs_db", "dd"] {
        require(tool);
    }
    let dir = tempdir();
    // The root filesystem of deb-bad-ext4, cut out of the disk.
    let fs_img = dir.path().join("root.ext4");
    let st = Command::new("dd")
        .arg(format!("if={}", image("deb-bad-ext4").display()))
        .arg(format!("of={}", fs_img.display()))
        .args(["bs=1M", "skip=1", "conv=sparse", "status=none"])
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new("debugfs").args(["-R", "stat /etc/shadow"]).arg(&fs_img).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let flags = text.split("Flags: ").nth(1).and_then(|t| t.split_whitespace().next()).expect("debugfs Flags");
    let theirs = u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap();
    let open = |img: &Path| {
        let disk = Disk::new(std::sync::Arc::from(imgport_disk::open(img, &Default::default()).unwrap()));
        let mut region = disk.view(0, disk.size());
        let info = probe::probe(&mut region).unwrap().unwrap();
        Vfs::new(fs::open(region, &info).unwrap())
    };
    let mut vfs = open(&fs_img);
    assert_eq!(vfs.inode_flags("/etc/shadow").unwrap(), Some(theirs));
    assert_eq!(theirs & 0x10, 0x10);
    assert_eq!(vfs.inode_flags("/etc/passwd").unwrap().map(|f| f & 0x10), Some(0));

    // XFS: set the immutable flag with xfs_db on one file of two.
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/shadow"), "root:*:1::::::\n").unwrap();
    std::fs::write(tree.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    let proto = dir.path().join("proto");
    std::fs::write(
        &proto,
        format!(
            "/dev/null\n0 0\nd--755 0 0\netc d--755 0 0\nshadow ---640 0 0 {}\npasswd ---644 0 0 {}\n$\n$\n",
            tree.join("etc/shadow").display(),
            tree.join("etc/passwd").display()
        ),
    )
    .unwrap();
    for crc in ["crc=1", "crc=0"] {
        let xfs = dir.path().join(format!("{crc}.xfs"));
        std::fs::File::create(&xfs).unwrap().set_len(300 << 20).unwrap();
        let o = Command::new("mkfs.xfs").args(["-q", "-f", "-m", crc, "-p"]).arg(&proto).arg(&xfs).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = Command::new("xfs_db")
            .args(["-x", "-c", "path /etc/shadow", "-c", "write core.immutable 1"])
            .arg(&xfs)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut vfs = open(&xfs);
        assert_eq!(vfs.inode_flags("/etc/shadow").unwrap(), Some(0x10), "{crc}");
        assert_eq!(vfs.inode_flags("/etc/passwd").unwrap(), Some(0), "{crc}");
    }
}

// ---- hostile input ---------------------------------------------------------------------------------------------

/// Longest one inspection of a hostile image may take.
const TIME_BOUND: Duration = Duration::from_secs(60);

/// A zstd frame that unpacks to `blocks` RLE blocks of 128 KiB of `byte` each: a few bytes per 128 KiB.
fn zstd_rle_bomb(byte: u8, blocks: usize) -> Vec<u8> {
    let mut out = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38];
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        let header = last | (1 << 1) | (128 << 10 << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.push(byte);
    }
    out
}

/// A newc header for one regular file of `size` bytes.
fn newc_header(name: &str, size: u64) -> Vec<u8> {
    let mut h = format!(
        "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
        1,
        0o100644,
        0,
        0,
        1,
        0,
        size,
        0,
        0,
        0,
        0,
        name.len() + 1,
        0
    )
    .into_bytes();
    h.extend_from_slice(name.as_bytes());
    h.push(0);
    while h.len() % 4 != 0 {
        h.push(0);
    }
    h
}

/// A Debian-like root with the given initramfs, on an MBR disk, built with mkfs.ext4 -d.
fn image_with_initramfs(dir: &Path, name: &str, initramfs: &[u8]) -> PathBuf {
    let tree = dir.join(format!("{name}-tree"));
    for d in ["etc", "boot", "usr/bin"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::os::unix::fs::symlink("usr/bin", tree.join("bin")).unwrap();
    std::fs::write(tree.join("etc/fstab"), "/dev/sda1 / ext4 defaults 0 1\n").unwrap();
    std::fs::write(tree.join("etc/os-release"), "ID=debian\nVERSION_ID=12\n").unwrap();
    std::fs::write(tree.join("boot/vmlinuz-6.1.0-18-amd64"), vec![0u8; 4096]).unwrap();
    std::fs::write(tree.join("boot/initrd.img-6.1.0-18-amd64"), initramfs).unwrap();
    let fs_img = dir.join(format!("{name}.ext4"));
    let o = Command::new("mkfs.ext4").args(["-q", "-F", "-d"]).arg(&tree).arg(&fs_img).arg("24M").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let disk = dir.join(format!("{name}.raw"));
    std::fs::File::create(&disk).unwrap().set_len(26 << 20).unwrap();
    let mut sf = Command::new("sfdisk").arg("-q").arg(&disk).stdin(Stdio::piped()).spawn().unwrap();
    {
        use std::io::Write;
        sf.stdin.take().unwrap().write_all(b"label: dos\nstart=2048, type=83\n").unwrap();
    }
    assert!(sf.wait().unwrap().success());
    let st = Command::new("dd")
        .arg(format!("if={}", fs_img.display()))
        .arg(format!("of={}", disk.display()))
        .args(["bs=1M", "seek=1", "conv=notrunc,sparse", "status=none"])
        .status()
        .unwrap();
    assert!(st.success());
    disk
}

fn initramfs_problem(r: &Value) -> String {
    let k = &r["operating_systems"][0]["kernels"][0];
    assert_eq!(k["initramfs_contents"]["complete"], false, "{k}");
    let f = findings(r);
    assert!(f.iter().any(|m| m.contains("initramfs /boot/initrd.img-6.1.0-18-amd64")), "{f:?}");
    k["initramfs_contents"]["problems"][0].as_str().unwrap().to_string()
}

/// A zstd frame that would unpack to 1.5 GiB of zeros inside one cpio entry: reading stops at the 1 GiB limit,
/// in bounded time and memory, with a finding.
#[test]
fn decompression_bomb_stops_at_the_limit() {
    for tool in ["mkfs.ext4", "sfdisk", "dd"] {
        require(tool);
    }
    let dir = tempdir();
    let body = newc_header("zeros", 3 << 29);
    // The header goes in as its own small zstd frame (zstd -c of it), the zeros as an RLE frame.
    let mut hdr_frame =
        Command::new("zstd").args(["-q", "-c"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    {
        use std::io::Write;
        hdr_frame.stdin.take().unwrap().write_all(&body).unwrap();
    }
    let mut initramfs = hdr_frame.wait_with_output().unwrap().stdout;
    initramfs.extend(zstd_rle_bomb(0, 12 * 1024));
    assert!(initramfs.len() < 64 << 10);
    let disk = image_with_initramfs(dir.path(), "bomb", &initramfs);
    let start = Instant::now();
    let BoundedRun { code, stdout: out, .. } = run_bounded(&["inspect", "--json", disk.to_str().unwrap()], TIME_BOUND);
    assert_eq!(code, 0);
    let r: Value = serde_json::from_str(&out).unwrap();
    let p = initramfs_problem(&r);
    assert!(p.contains("the limit"), "{p}");
    let k = &r["operating_systems"][0]["kernels"][0];
    assert!(k["initramfs_contents"]["unpacked_bytes"].as_u64().unwrap() <= (1 << 30) + (1 << 20));
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
}

/// Malformed archives made from a real cpio: bad magic mid-archive, huge name and file sizes, truncation,
/// junk after the archive, a corrupt gzip stream. Each gives a problem naming where, and the inspection goes on.
#[test]
fn malformed_initramfs_gives_findings() {
    for tool in ["cpio", "gzip", "mkfs.ext4", "sfdisk", "dd"] {
        require(tool);
    }
    let dir = tempdir();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("lib/modules/6.1.0-18-amd64/kernel/drivers/block")).unwrap();
    std::fs::write(src.join("lib/modules/6.1.0-18-amd64/kernel/drivers/block/virtio_blk.ko"), vec![7u8; 3000]).unwrap();
    std::fs::write(src.join("init"), "#!/bin/sh\n").unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("cd {} && find . | LC_ALL=C sort | cpio -o -H newc --quiet", src.display()))
        .output()
        .unwrap();
    assert!(out.status.success());
    let good = out.stdout;
    let second = good.windows(6).skip(1).position(|w| w == b"070701").unwrap() + 1;
    let gz = |b: &[u8]| {
        let mut c =
            Command::new("gzip").args(["-c", "-n"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b).unwrap();
        }
        c.wait_with_output().unwrap().stdout
    };
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let mut m = good.clone();
    m[second..second + 6].copy_from_slice(b"071701");
    cases.push(("bad magic mid-archive", m, "bad magic"));
    let mut m = good.clone();
    m[second + 94..second + 102].copy_from_slice(b"FFFFFFFF");
    cases.push(("huge namesize", m, "name size"));
    let mut m = good.clone();
    m[second + 54..second + 62].copy_from_slice(b"FFFFFFF0");
    cases.push(("huge filesize", m, "inside a cpio archive"));
    cases.push(("truncated", good[..good.len() / 3].to_vec(), "inside a cpio archive"));
    let mut m = good.clone();
    m.extend_from_slice(b"\x01junk");
    cases.push(("junk after", m, "neither a cpio archive"));
    let mut z = gz(&good);
    let n = z.len();
    z[n / 2] ^= 0xff;
    cases.push(("corrupt gzip", z, "gzip segment"));
    let z = gz(&good);
    cases.push(("truncated gzip", z[..z.len() - 12].to_vec(), "gzip segment"));
    for (i, (what, data, want)) in cases.into_iter().enumerate() {
        let disk = image_with_initramfs(dir.path(), &format!("case{i}"), &data);
        let BoundedRun { code, stdout: out, .. } =
            run_bounded(&["inspect", "--json", disk.to_str().unwrap()], TIME_BOUND);
        assert_eq!(code, 0, "{what}");
        let r: Value = serde_json::from_str(&out).unwrap();
        let p = initramfs_problem(&r);
        assert!(p.contains(want), "{what}: {p}");
        assert_eq!(r["operating_systems"][0]["distro"], "debian", "{what}");
    }
}

/// Random damage to a real RPM SQLite database: problems or a partial list, never a panic or a hang; a b-tree
/// page pointing at itself is reported as a loop.
#[test]
fn corrupt_rpm_database_never_panics() {
    let env = guest_env("mbr-xfs5");
    let db = guest_file(&image("mbr-xfs5"), env["ROOT_PART"].parse().unwrap(), "/var/lib/rpm/rpmdb.sqlite");
    let (good, problems) = imgport_guest::packages::read_rpm_sqlite(&db);
    assert!(problems.is_empty() && good.len() > 30, "{problems:?}");
    let page_size = u16::from_be_bytes([db[16], db[17]]) as usize;
    let mut rng = Rng::new(99);
    let start = Instant::now();
    for round in 0..400 {
        let mut d = db.clone();
        for _ in 0..1 + rng.below(16) {
            // Damage the b-tree pages' headers and cell pointers most of the time: that is what gets parsed.
            let page = rng.below((d.len() / page_size) as u64) as usize;
            let at = if round % 3 == 0 {
                rng.below(d.len() as u64) as usize
            } else {
                page * page_size + rng.below(64) as usize
            };
            d[at] = rng.next_u64() as u8;
        }
        let _ = imgport_guest::packages::read_rpm_sqlite(&d);
    }
    assert!(start.elapsed() < Duration::from_secs(60));
    // Every interior page's right-most child pointing at the page itself.
    let mut d = db.clone();
    let mut looped = 0;
    for page in 1..d.len() / page_size {
        let hdr = page * page_size;
        if d[hdr] == 0x05 {
            d[hdr + 8..hdr + 12].copy_from_slice(&((page + 1) as u32).to_be_bytes());
            looped += 1;
        }
    }
    assert!(looped > 0, "the database has interior pages");
    let (_, problems) = imgport_guest::packages::read_rpm_sqlite(&d);
    assert!(problems.iter().any(|p| p.contains("loops")), "{problems:?}");
    assert!(imgport_guest::packages::read_rpm_sqlite(&db[..db.len() / 2]).1.iter().any(|p| p.contains("outside")));
}

/// A byte range of an image copied to a file in a fresh temporary folder (tools that take a device, not an offset).
fn dir_copy_range(img: &Path, offset: u64, len: u64) -> (tempfile::TempDir, PathBuf) {
    use std::io::{Read, Seek, SeekFrom};
    let dir = tempdir();
    let out = dir.path().join("part.img");
    let mut f = std::fs::File::open(img).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    std::io::copy(&mut f.take(len), &mut std::fs::File::create(&out).unwrap()).unwrap();
    (dir, out)
}

/// The Windows skeleton: product, version and drivers from hives written by hivexsh, read back by imgport and
/// by hivexget; architecture from the PE header.
#[test]
fn windows_facts_from_real_hives() {
    require("hivexget");
    // win-novirtio: the same skeleton without the virtio drivers.
    let (r, env) = inspect("win-novirtio");
    assert!(findings(&r).is_empty(), "{:?}", findings(&r));
    assert_eq!(os(&r)["hostname"], env["HOSTNAME"].as_str());
    let drivers = os(&r)["windows"]["drivers"].as_array().unwrap().clone();
    assert!(drivers.iter().all(|d| d["registered"] == false && d.get("file").is_none()), "{drivers:#?}");
    assert_eq!(list(&env, "WIN_DRIVERS"), Vec::<String>::new());

    let (r, env) = inspect("win-ntfs");
    assert!(findings(&r).is_empty(), "{:?}", findings(&r));
    assert_eq!(r["operating_systems"].as_array().unwrap().len(), 1);
    let o = os(&r);
    assert_eq!(o["os_type"], "windows");
    assert_eq!(o["root"], format!("/dev/sda{}", env["ROOT_PART"]));
    assert_eq!(o["distro"], env["DISTRO"].as_str());
    assert_eq!(o["version"], format!("{}.{}", env["MAJOR"], env["MINOR"]));
    assert_eq!(o["hostname"], env["HOSTNAME"].as_str());
    assert_eq!(o["architecture"]["name"], env["ARCH"].as_str());
    assert_eq!(r["boot"]["mode"], env["BOOT_MODE"].as_str());
    let w = &o["windows"];
    assert_eq!(w["product_name"], env["PRODUCT"].as_str());
    assert_eq!(w["edition_id"], env["EDITION"].as_str());
    assert_eq!(w["installation_type"], env["INSTALLATION_TYPE"].as_str());
    assert_eq!(w["current_build"], env["BUILD"].as_str());
    assert_eq!(w["display_version"], env["DISPLAY_VERSION"].as_str());
    let registered: Vec<String> = w["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["registered"] == true)
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(registered, list(&env, "WIN_DRIVERS"));
    // Each registered driver's file, resolved from its ImagePath, is in System32\drivers.
    for d in w["drivers"].as_array().unwrap().iter().filter(|d| d["registered"] == true) {
        assert_eq!(d["file"], format!("/Windows/System32/drivers/{}.sys", d["name"].as_str().unwrap()), "{d}");
        assert_eq!(d["file_present"], true, "{d}");
    }
    // Free space on NTFS (no counter in its boot sector) from $Bitmap, as ntfsinfo (ntfs-3g) counts it.
    require("ntfsinfo");
    let v = r["volumes"].as_array().unwrap().iter().find(|v| v["device"] == o["root"]).unwrap();
    let part = dir_copy_range(&image("win-ntfs"), v["start"].as_u64().unwrap(), v["size"].as_u64().unwrap());
    let out = Command::new("ntfsinfo").arg("-m").arg(part.1.as_path()).output().unwrap();
    assert!(out.status.success(), "ntfsinfo: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |k: &str| -> u64 {
        let line = text.lines().find(|l| l.trim_start().starts_with(k)).unwrap_or_else(|| panic!("{k}: {text}"));
        line.split(':').nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
    };
    assert_eq!(
        v["filesystem"]["free_bytes"].as_u64(),
        Some(field("Free Clusters") * field("Cluster Size")),
        "NTFS free space vs ntfsinfo"
    );
    let start = |n: &str| w["drivers"].as_array().unwrap().iter().find(|d| d["name"] == n).unwrap()["start"].clone();
    assert_eq!((start("viostor"), start("netkvm")), (Value::from(0), Value::from(3)));
    // hivexget, on the same hive files, agrees.
    let dir = tempdir();
    let part: u32 = env["ROOT_PART"].parse().unwrap();
    for (hive, key, value, ours) in [
        ("SOFTWARE", "Microsoft\\Windows NT\\CurrentVersion", "ProductName", w["product_name"].clone()),
        ("SOFTWARE", "Microsoft\\Windows NT\\CurrentVersion", "CurrentBuild", w["current_build"].clone()),
        ("SYSTEM", "ControlSet001\\Control\\ComputerName\\ComputerName", "ComputerName", w["computer_name"].clone()),
        ("SYSTEM", "ControlSet001\\Services\\viostor", "ImagePath", w["drivers"][0]["image_path"].clone()),
    ] {
        let file = dir.path().join(hive);
        std::fs::write(&file, guest_file(&image("win-ntfs"), part, &format!("/Windows/System32/config/{hive}")))
            .unwrap();
        let out = Command::new("hivexget").arg(&file).arg(key).arg(value).output().unwrap();
        assert!(out.status.success(), "hivexget {key} {value}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), ours.as_str().unwrap(), "{key}\\{value}");
    }
}

/// Damage to a real hive (random bytes in its bins; a subkey list pointing at itself; a huge cell size): errors
/// naming the structure, never a panic or a hang.
#[test]
fn corrupt_hive_never_panics() {
    use imgport_guest::regf::Hive;
    let env = guest_env("win-ntfs");
    let part: u32 = env["ROOT_PART"].parse().unwrap();
    let hive = guest_file(&image("win-ntfs"), part, "/Windows/System32/config/SOFTWARE");
    let lookup = |d: &[u8]| -> Result<Option<String>, imgport_guest::Error> {
        let mut h = Hive::open(d, d.len() as u64)?;
        let Some(k) = h.open_path("Microsoft\\Windows NT\\CurrentVersion")? else { return Ok(None) };
        Ok(h.value(k, "ProductName")?.map(|v| format!("{v:?}")))
    };
    assert!(lookup(&hive).unwrap().unwrap().contains("Windows Server 2022"));
    let mut rng = Rng::new(5);
    let start = Instant::now();
    for _ in 0..2000 {
        let mut d = hive.clone();
        for _ in 0..1 + rng.below(8) {
            let at = 4096 + rng.below(d.len() as u64 - 4096) as usize;
            d[at] = rng.next_u64() as u8;
        }
        let _ = lookup(&d);
    }
    assert!(start.elapsed() < Duration::from_secs(60));
    // The Microsoft key's subkey list (hivex writes lh records) made to contain itself as an ri record.
    let le32 = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let root = 4096 + le32(&hive, 36) as usize + 4;
    let root_list = 4096 + le32(&hive, root + 28) as usize + 4;
    let microsoft = 4096 + le32(&hive, root_list + 4) as usize + 4;
    assert_eq!(&hive[microsoft..microsoft + 2], b"nk");
    let list_off = le32(&hive, microsoft + 28);
    let list = 4096 + list_off as usize + 4;
    let mut d = hive.clone();
    d[list..list + 2].copy_from_slice(b"ri");
    d[list + 4..list + 8].copy_from_slice(&list_off.to_le_bytes());
    let e = lookup(&d).unwrap_err().to_string();
    assert!(e.contains("loop") || e.contains("deeper"), "{e}");
    let mut d = hive.clone();
    d[microsoft - 4..microsoft].copy_from_slice(&(-0x4000_0000i32).to_le_bytes());
    let e = lookup(&d).unwrap_err().to_string();
    assert!(e.contains("size"), "{e}");
}

/// A real initramfs made by initramfs-tools for a real Debian kernel in /boot (linux-image-amd64, which
/// scripts/install-peers.sh installs for virt-inspector's appliance, makes one): imgport lists the modules
/// lsinitramfs lists, and finds virtio.
#[test]
fn real_debian_initramfs_matches_lsinitramfs() {
    let Some(img) = std::fs::read_dir("/boot")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("initrd.img-")))
    else {
        panic!("no /boot/initrd.img-* on this machine: install linux-image-amd64 to run this test");
    };
    require("lsinitramfs");
    let out = Command::new("lsinitramfs").arg(&img).output().unwrap();
    assert!(out.status.success());
    let mut theirs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("lib/modules/"))
        .filter_map(imgport_guest::initramfs::module_name)
        .collect();
    theirs.sort();
    theirs.dedup();
    let start = Instant::now();
    let r = imgport_guest::initramfs::read(std::fs::File::open(&img).unwrap(), Default::default());
    let took = start.elapsed();
    assert!(r.complete, "{:?}", r.problems);
    assert_eq!(r.modules, theirs);
    for m in ["virtio_blk", "virtio_net", "virtio_scsi", "nvme"] {
        assert!(r.modules.iter().any(|x| x == m), "{m} missing");
    }
    eprintln!("{}: {:?} in {took:?}", img.display(), r.segments);
}

/// Callers that need less can skip initramfs files, or read only the default kernel's.
#[test]
fn initramfs_scope_option() {
    use imgport_guest::{inspect_with, InitramfsScope, Options};
    let open = || std::sync::Arc::from(imgport_disk::open(&image("mbr-bios-ext4"), &Default::default()).unwrap());
    let all = inspect_with(open(), &Options::default()).unwrap();
    let none = inspect_with(open(), &Options { initramfs: InitramfsScope::None }).unwrap();
    let default = inspect_with(open(), &Options { initramfs: InitramfsScope::DefaultKernel }).unwrap();
    assert!(all.operating_systems[0].kernels[0].initramfs_contents.is_some());
    assert!(default.operating_systems[0].kernels[0].initramfs_contents.is_some());
    assert!(none.operating_systems[0].kernels[0].initramfs_contents.is_none());
    assert!(none.bytes_read <= all.bytes_read);
    // Built-in drivers are still known without the initramfs.
    let d = &none.operating_systems[0].kernels[0].drivers;
    assert!(d.iter().any(|d| d.name == "virtio_pci" && d.available_at_boot));
    assert!(d.iter().any(|d| d.name == "virtio_blk" && !d.available_at_boot));
}
