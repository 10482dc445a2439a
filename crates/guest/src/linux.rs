//! Facts about a Linux guest read from its root filesystem: root detection as virt-inspector does it, release
//! files, hostname, architecture from an ELF header, kernels, fstab, agents and SELinux mode.

use crate::fs::FileType;
use crate::vfs::Vfs;
use serde::Serialize;
use std::collections::BTreeMap;

/// Largest configuration file read (os-release, fstab, ...).
pub const MAX_TEXT: usize = 256 * 1024;

/// `/etc` exists, `/bin` is a directory or a symlink, and `/etc/fstab` or `/etc/hosts` exists.
pub fn is_linux_root(vfs: &mut Vfs) -> bool {
    vfs.is_dir("/etc")
        && vfs.lstat("/bin").is_ok_and(|m| matches!(m.file_type, FileType::Dir | FileType::Symlink))
        && (vfs.exists("/etc/fstab") || vfs.exists("/etc/hosts"))
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OsRelease {
    /// Lower-case distribution id: "debian", "ubuntu", "rhel", "centos", "rocky", ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distro: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codename: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub id_like: Vec<String>,
    /// The file the facts came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `KEY=value` lines with optional shell quoting, as os-release and lsb-release use.
pub fn parse_shell_vars(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        let k = k.trim().trim_start_matches("export ").trim();
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
        {
            v[1..v.len() - 1].replace("\\\"", "\"").replace("\\$", "$").replace("\\\\", "\\")
        } else {
            v.to_string()
        };
        if !k.is_empty() {
            out.insert(k.to_string(), v);
        }
    }
    out
}

fn split_version(v: &str) -> (Option<u32>, Option<u32>) {
    let mut it = v.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty());
    let major = it.next().and_then(|s| s.parse().ok());
    let minor = it.next().and_then(|s| s.parse().ok());
    (major, minor)
}

fn non_empty(s: Option<&String>) -> Option<String> {
    s.filter(|s| !s.is_empty()).cloned()
}

/// First number-dotted token of a free-text release line ("CentOS Linux release 7.9.2009 (Core)" -> "7.9.2009").
fn version_in(text: &str) -> Option<String> {
    text.split_whitespace().find(|w| w.starts_with(|c: char| c.is_ascii_digit())).map(|w| w.to_string())
}

fn distro_from_redhat_release(line: &str) -> &'static str {
    let l = line.to_ascii_lowercase();
    [
        ("centos", "centos"),
        ("rocky", "rocky"),
        ("almalinux", "almalinux"),
        ("fedora", "fedora"),
        ("oracle", "ol"),
        ("alibaba cloud linux", "alinux"),
        ("red hat", "rhel"),
    ]
    .into_iter()
    .find(|(k, _)| l.contains(k))
    .map_or("redhat-based", |(_, id)| id)
}

pub fn os_release(vfs: &mut Vfs) -> OsRelease {
    for path in ["/etc/os-release", "/usr/lib/os-release"] {
        if let Some(text) = vfs.read_text(path, MAX_TEXT) {
            let v = parse_shell_vars(&text);
            if v.get("ID").is_none_or(|s| s.is_empty()) {
                continue;
            }
            let version = non_empty(v.get("VERSION_ID"));
            let (major, minor) = version.as_deref().map(split_version).unwrap_or_default();
            let mut r = OsRelease {
                distro: v.get("ID").map(|s| s.to_ascii_lowercase()),
                name: non_empty(v.get("NAME")),
                pretty_name: non_empty(v.get("PRETTY_NAME")),
                version,
                major_version: major,
                minor_version: minor,
                codename: non_empty(v.get("VERSION_CODENAME")),
                id_like: v
                    .get("ID_LIKE")
                    .map(|s| s.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default(),
                source: Some(path.into()),
            };
            // Debian's os-release has no minor version: /etc/debian_version has it ("12.5").
            if r.distro.as_deref() == Some("debian") && r.minor_version.is_none() {
                if let Some(dv) = vfs.read_text("/etc/debian_version", 4096) {
                    let dv = dv.trim();
                    let (maj, min) = split_version(dv);
                    if maj == r.major_version && min.is_some() {
                        r.minor_version = min;
                    }
                }
            }
            return r;
        }
    }
    if let Some(text) = vfs.read_text("/etc/lsb-release", MAX_TEXT) {
        let v = parse_shell_vars(&text);
        if let Some(id) = non_empty(v.get("DISTRIB_ID")) {
            let version = non_empty(v.get("DISTRIB_RELEASE"));
            let (major, minor) = version.as_deref().map(split_version).unwrap_or_default();
            return OsRelease {
                distro: Some(id.to_ascii_lowercase()),
                name: Some(id),
                pretty_name: non_empty(v.get("DISTRIB_DESCRIPTION")),
                version,
                major_version: major,
                minor_version: minor,
                codename: non_empty(v.get("DISTRIB_CODENAME")),
                id_like: Vec::new(),
                source: Some("/etc/lsb-release".into()),
            };
        }
    }
    for path in ["/etc/redhat-release", "/etc/centos-release", "/etc/system-release"] {
        if let Some(text) = vfs.read_text(path, 4096) {
            let line = text.lines().next().unwrap_or("").trim().to_string();
            if line.is_empty() {
                continue;
            }
            let version = version_in(&line);
            let (major, minor) = version.as_deref().map(split_version).unwrap_or_default();
            return OsRelease {
                distro: Some(distro_from_redhat_release(&line).into()),
                name: None,
                pretty_name: Some(line),
                version,
                major_version: major,
                minor_version: minor,
                codename: None,
                id_like: Vec::new(),
                source: Some(path.into()),
            };
        }
    }
    if let Some(text) = vfs.read_text("/etc/debian_version", 4096) {
        let dv = text.trim().to_string();
        let (major, minor) = split_version(&dv);
        return OsRelease {
            distro: Some("debian".into()),
            version: major.map(|_| dv.clone()),
            major_version: major,
            minor_version: minor,
            codename: major.is_none().then_some(dv),
            source: Some("/etc/debian_version".into()),
            ..OsRelease::default()
        };
    }
    OsRelease::default()
}

pub fn hostname(vfs: &mut Vfs) -> Option<String> {
    let from_file = vfs
        .read_text("/etc/hostname", 4096)
        .and_then(|t| t.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string));
    from_file.or_else(|| {
        let t = vfs.read_text("/etc/sysconfig/network", MAX_TEXT)?;
        non_empty(parse_shell_vars(&t).get("HOSTNAME"))
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Architecture {
    /// "x86_64", "i386", "aarch64", "armv7l", "riscv64", "ppc64le", "ppc64", "s390x", "loongarch64" or "unknown".
    pub name: String,
    /// The binary whose ELF header said so.
    pub evidence: String,
    pub bits: u8,
}

/// Architecture named by an ELF header, `None` when `h` is not ELF.
pub fn elf_arch(h: &[u8]) -> Option<(String, u8)> {
    if h.get(..4) != Some(b"\x7fELF") {
        return None;
    }
    let class = *h.get(4)?;
    let little = *h.get(5)? == 1;
    let machine = if little { crate::bytes::le16(h, 18) } else { crate::bytes::be16(h, 18) };
    let bits = if class == 2 { 64 } else { 32 };
    let name = match (machine, bits) {
        (0x3E, 64) => "x86_64",
        (0x3E, _) => "x32",
        (0x03, _) => "i386",
        (0xB7, _) => "aarch64",
        (0x28, _) => "armv7l",
        (0xF3, 64) => "riscv64",
        (0xF3, _) => "riscv32",
        (0x15, _) if little => "ppc64le",
        (0x15, _) => "ppc64",
        (0x14, _) => "ppc",
        (0x16, _) => "s390x",
        (0x08, _) => "mips",
        (0x102, _) => "loongarch64",
        _ => "unknown",
    };
    Some((name.to_string(), bits))
}

pub fn architecture(vfs: &mut Vfs) -> Option<Architecture> {
    for path in ["/bin/sh", "/bin/bash", "/usr/bin/bash", "/bin/ls", "/usr/bin/ls", "/usr/bin/sh"] {
        let Ok(head) = vfs.read_file(path, 64) else { continue };
        if let Some((name, bits)) = elf_arch(&head) {
            let evidence = vfs.resolve(path, true).unwrap_or_else(|_| path.to_string());
            return Some(Architecture { name, evidence, bits });
        }
    }
    None
}

#[derive(Debug, Clone, Serialize)]
pub struct Kernel {
    pub version: String,
    /// e.g. "/boot/vmlinuz-6.1.0-18-amd64".
    pub path: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initramfs: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initramfs_size: Option<u64>,
    /// "/lib/modules/<version>" when that directory exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modules_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// What the initramfs holds, when there is one and it was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initramfs_contents: Option<crate::initramfs::InitramfsContents>,
    /// The boot drivers the clouds ask about ([`crate::drivers::BOOT_DRIVERS`]) and whether this kernel has them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drivers: Vec<crate::drivers::Driver>,
}

/// Order versions by their numeric and text runs ("6.1.0-18" < "6.1.0-20" < "6.10.0").
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn runs(s: &str) -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let d = c.is_ascii_digit();
            match out.last_mut() {
                Some((kd, run)) if *kd == d => run.push(c),
                _ => out.push((d, c.to_string())),
            }
        }
        out
    }
    let (ra, rb) = (runs(a), runs(b));
    for (x, y) in ra.iter().zip(rb.iter()) {
        let ord = match (x.0, y.0) {
            (true, true) => {
                let (xs, ys) = (x.1.trim_start_matches('0'), y.1.trim_start_matches('0'));
                xs.len().cmp(&ys.len()).then_with(|| xs.cmp(ys))
            }
            _ => x.1.cmp(&y.1),
        };
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
    ra.len().cmp(&rb.len())
}

/// Kernels in /boot (vmlinuz-*, vmlinux-*, Image-*, kernel-*), newest first, with their initramfs and modules.
pub fn kernels(vfs: &mut Vfs) -> Vec<Kernel> {
    let Ok(entries) = vfs.read_dir("/boot") else { return Vec::new() };
    let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
    let mut out = Vec::new();
    for name in &names {
        let Some(version) = ["vmlinuz-", "vmlinux-", "Image-", "kernel-"]
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .filter(|v| !v.is_empty() && !v.ends_with(".hmac") && !v.contains("rescue"))
        else {
            continue;
        };
        let path = format!("/boot/{name}");
        let Ok(meta) = vfs.stat(&path) else { continue };
        if meta.file_type != FileType::File {
            continue;
        }
        let candidates = [
            format!("initrd.img-{version}"),
            format!("initramfs-{version}.img"),
            format!("initrd-{version}"),
            format!("initrd-{version}.img"),
            format!("initramfs-{version}"),
        ];
        let mut initramfs = None;
        for c in candidates.iter().filter(|c| names.contains(c)) {
            let p = format!("/boot/{c}");
            if let Ok(m) = vfs.stat(&p) {
                if m.file_type == FileType::File {
                    initramfs = Some((p, m.size));
                    break;
                }
            }
        }
        let modules = format!("/lib/modules/{version}");
        let config = format!("config-{version}");
        out.push(Kernel {
            version: version.to_string(),
            path,
            size: meta.size,
            initramfs_size: initramfs.as_ref().map(|i| i.1),
            initramfs: initramfs.map(|i| i.0),
            modules_dir: vfs.is_dir(&modules).then_some(modules),
            config: names.contains(&config).then(|| format!("/boot/{config}")),
            initramfs_contents: None,
            drivers: Vec::new(),
        });
    }
    out.sort_by(|a, b| version_cmp(&b.version, &a.version));
    out
}

/// Module trees in /lib/modules, whether or not a kernel in /boot goes with them.
pub fn module_trees(vfs: &mut Vfs) -> Vec<String> {
    let mut v: Vec<String> = vfs
        .read_dir("/lib/modules")
        .map(|es| es.into_iter().filter(|e| e.file_type == FileType::Dir).map(|e| e.name).collect())
        .unwrap_or_default();
    v.sort_by(|a, b| version_cmp(b, a));
    v
}

#[derive(Debug, Clone, Serialize)]
pub struct FstabEntry {
    /// The first field as written ("UUID=...", "/dev/sda1", "LABEL=root", ...).
    pub spec: String,
    pub mountpoint: String,
    pub fstype: String,
    pub options: Vec<String>,
    pub dump: u32,
    pub pass: u32,
    /// 1-based line number in /etc/fstab.
    pub line: usize,
}

impl FstabEntry {
    /// The kind and value of the spec: ("uuid", v), ("label", v), ("partuuid", v), ("partlabel", v), ("device", v).
    pub fn spec_kind(&self) -> (&'static str, String) {
        let s = self.spec.as_str();
        let unquote = |v: &str| v.trim_matches('"').to_string();
        for (prefix, kind) in
            [("UUID=", "uuid"), ("LABEL=", "label"), ("PARTUUID=", "partuuid"), ("PARTLABEL=", "partlabel")]
        {
            if let Some(v) = s.strip_prefix(prefix) {
                return (kind, unquote(v));
            }
        }
        for (prefix, kind) in
            [("/dev/disk/by-uuid/", "uuid"), ("/dev/disk/by-label/", "label"), ("/dev/disk/by-partuuid/", "partuuid")]
        {
            if let Some(v) = s.strip_prefix(prefix) {
                return (kind, v.to_string());
            }
        }
        ("device", s.to_string())
    }
    pub fn has_option(&self, o: &str) -> bool {
        self.options.iter().any(|x| x == o)
    }
}

/// fstab fields are separated by blanks; "\040" encodes a space inside a field.
pub fn parse_fstab(text: &str) -> Vec<FstabEntry> {
    let unescape = |s: &str| s.replace("\\040", " ").replace("\\011", "\t");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 2 {
            continue;
        }
        out.push(FstabEntry {
            spec: unescape(f[0]),
            mountpoint: unescape(f[1]),
            fstype: f.get(2).map_or("auto", |s| s).to_string(),
            options: f.get(3).map_or("defaults", |s| s).split(',').map(str::to_string).collect(),
            dump: f.get(4).and_then(|s| s.parse().ok()).unwrap_or(0),
            pass: f.get(5).and_then(|s| s.parse().ok()).unwrap_or(0),
            line: i + 1,
        });
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct Agent {
    /// "cloud_init", "qemu_guest_agent", "cloud_assistant", "vmware_tools", "virtualbox_additions",
    /// "xen_tools", "hyperv_daemons", "waagent".
    pub name: &'static str,
    pub present: bool,
    /// The files that showed it.
    pub evidence: Vec<String>,
}

const AGENTS: &[(&str, &[&str])] = &[
    (
        "cloud_init",
        &[
            "/usr/bin/cloud-init",
            "/etc/cloud/cloud.cfg",
            "/lib/systemd/system/cloud-init.service",
            "/usr/lib/systemd/system/cloud-init.service",
        ],
    ),
    (
        "qemu_guest_agent",
        &[
            "/usr/sbin/qemu-ga",
            "/usr/bin/qemu-ga",
            "/lib/systemd/system/qemu-guest-agent.service",
            "/usr/lib/systemd/system/qemu-guest-agent.service",
        ],
    ),
    (
        "cloud_assistant",
        &["/usr/local/share/aliyun-assist", "/usr/sbin/aliyun-service", "/etc/systemd/system/aliyun.service"],
    ),
    ("vmware_tools", &["/usr/bin/vmtoolsd", "/etc/vmware-tools", "/usr/lib/vmware-tools"]),
    ("virtualbox_additions", &["/usr/sbin/VBoxService", "/opt/VBoxGuestAdditions"]),
    ("xen_tools", &["/usr/sbin/xe-daemon", "/usr/sbin/xe-linux-distribution"]),
    ("hyperv_daemons", &["/usr/sbin/hv_kvp_daemon", "/usr/sbin/hypervkvpd"]),
    ("waagent", &["/usr/sbin/waagent", "/usr/bin/waagent"]),
];

pub fn agents(vfs: &mut Vfs) -> Vec<Agent> {
    AGENTS
        .iter()
        .map(|(name, paths)| {
            let evidence: Vec<String> = paths.iter().filter(|p| vfs.exists(p)).map(|p| p.to_string()).collect();
            Agent { name, present: !evidence.is_empty(), evidence }
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct Selinux {
    /// "enforcing", "permissive" or "disabled", as /etc/selinux/config says.
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

pub fn selinux(vfs: &mut Vfs) -> Option<Selinux> {
    let text = vfs.read_text("/etc/selinux/config", MAX_TEXT)?;
    let v = parse_shell_vars(&text);
    Some(Selinux { mode: v.get("SELINUX")?.to_ascii_lowercase(), policy: non_empty(v.get("SELINUXTYPE")) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::tests::MemFs;
    use FileType::*;

    #[test]
    fn os_release_and_fallbacks() {
        let fs = MemFs::new(&[
            ("/etc", Dir, b""),
            ("/etc/os-release", File, b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n"),
            ("/etc/debian_version", File, b"12.5\n"),
        ]);
        let r = os_release(&mut Vfs::new(Box::new(fs)));
        assert_eq!(r.distro.as_deref(), Some("debian"));
        assert_eq!((r.major_version, r.minor_version), (Some(12), Some(5)));
        assert_eq!(r.codename.as_deref(), Some("bookworm"));

        let fs =
            MemFs::new(&[("/etc", Dir, b""), ("/etc/redhat-release", File, b"CentOS Linux release 7.9.2009 (Core)\n")]);
        let r = os_release(&mut Vfs::new(Box::new(fs)));
        assert_eq!((r.distro.as_deref(), r.version.as_deref()), (Some("centos"), Some("7.9.2009")));
        assert_eq!((r.major_version, r.minor_version), (Some(7), Some(9)));
    }

    #[test]
    fn elf_machines() {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[18] = 0xB7;
        assert_eq!(elf_arch(&h), Some(("aarch64".to_string(), 64)));
        assert_eq!(elf_arch(b"#!/bin/sh"), None);
        assert_eq!(elf_arch(b"\x7fELF"), None);
    }

    #[test]
    fn fstab_fields() {
        let e = parse_fstab("# c\nUUID=abc / ext4 errors=remount-ro 0 1\n/dev/sdb1 /mnt\\040x xfs defaults,nofail\nLABEL=\"ESP\" /boot/efi vfat umask=0077 0 2\n");
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].spec_kind(), ("uuid", "abc".to_string()));
        assert_eq!((e[1].mountpoint.as_str(), e[1].pass, e[1].line), ("/mnt x", 0, 3));
        assert!(e[1].has_option("nofail"));
        assert_eq!(e[2].spec_kind(), ("label", "ESP".to_string()));
    }

    #[test]
    fn versions_sort_naturally() {
        let mut v = vec!["6.1.0-9-amd64", "6.1.0-18-amd64", "5.10.0-28-amd64", "6.10.0"];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(v, vec!["5.10.0-28-amd64", "6.1.0-9-amd64", "6.1.0-18-amd64", "6.10.0"]);
    }

    #[test]
    fn kernels_with_initramfs_and_modules() {
        let fs = MemFs::new(&[
            ("/boot", Dir, b""),
            ("/boot/vmlinuz-6.1.0-18-amd64", File, b"k"),
            ("/boot/initrd.img-6.1.0-18-amd64", File, b"ii"),
            ("/boot/config-6.1.0-18-amd64", File, b"c"),
            ("/boot/vmlinuz-5.10.0-28-amd64", File, b"k"),
            ("/usr", Dir, b""),
            ("/usr/lib", Dir, b""),
            ("/usr/lib/modules", Dir, b""),
            ("/usr/lib/modules/6.1.0-18-amd64", Dir, b""),
            ("/lib", Symlink, b"usr/lib"),
        ]);
        let mut vfs = Vfs::new(Box::new(fs));
        let k = kernels(&mut vfs);
        assert_eq!(k.len(), 2);
        assert_eq!(k[0].version, "6.1.0-18-amd64");
        assert_eq!(k[0].initramfs.as_deref(), Some("/boot/initrd.img-6.1.0-18-amd64"));
        assert_eq!(k[0].initramfs_size, Some(2));
        assert_eq!(k[0].modules_dir.as_deref(), Some("/lib/modules/6.1.0-18-amd64"));
        assert!(k[1].initramfs.is_none() && k[1].modules_dir.is_none());
        assert_eq!(module_trees(&mut vfs), vec!["6.1.0-18-amd64"]);
    }
}
