//! A Linux guest's configuration: fstab, network, provisioning agents, SELinux, accounts, libraries, sshd and
//! leftover hypervisor tools.

use super::{agent, debian_like, linux_guest, pending, CheckId, Subject};
use crate::facts::Fact;
use crate::finding::{Finding, Severity, Status};
use crate::profile::{Profile, Target};

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

pub(super) fn fstab(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::Fstab;
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
            if lvm_name && !s.physical_volumes().is_empty() {
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

pub(super) fn network(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::Network;
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

pub(super) fn cloud_init(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::CloudInit;
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

pub(super) fn qemu_guest_agent(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::QemuGuestAgent;
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

pub(super) fn selinux(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::Selinux;
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

pub(super) fn shadow(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::Shadow;
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

pub(super) fn lib_symlinks(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::LibSymlinks;
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

pub(super) fn sshd(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::Sshd;
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

pub(super) fn hypervisor_tools(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::HypervisorTools;
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
