//! What starts the guest: the boot mode, the kernel and initramfs, boot drivers and GRUB's default entry.

use super::{debian_like, linux_guest, pending, CheckId, Route, Subject};
use crate::facts::{Availability, Fact};
use crate::finding::{Finding, Severity};
use crate::profile::{Firmware, Profile};
use imgport_guest::inspect::OperatingSystem;

pub(super) fn boot_mode(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::BootMode;
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

pub(super) fn kernel(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::Kernel;
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

pub(super) fn drivers(profile: &Profile, s: &Subject, id: CheckId) -> Vec<Finding> {
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

pub(super) fn grub(s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::Grub;
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
