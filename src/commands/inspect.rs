use super::OpenArgs;
use crate::output::{human_size, print_error, print_json};
use imgport_disk::open;
use imgport_guest::inspect::Inspection;
use imgport_guest::partition::TableKind;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    open: OpenArgs,
    /// Print JSON (stable field names).
    #[arg(long)]
    json: bool,
    image: PathBuf,
    /// A data disk of the same VM (repeat for several): read with the system disk, so a volume group spanning
    /// disks is read whole. They become /dev/sdb, /dev/sdc, ... in the order given.
    #[arg(long = "data-disk", value_name = "IMAGE")]
    data_disks: Vec<PathBuf>,
}

pub fn run(args: Args) -> u8 {
    let data = match super::open_data_disks(&args.data_disks, &args.open) {
        Ok(d) => d,
        Err(e) => {
            print_error(&e);
            return 1;
        }
    };
    let report = open(&args.image, &args.open.options())
        .and_then(|img| imgport_guest::inspect_disks(Arc::from(img), &data, &Default::default()));
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            print_error(&e.in_file(&args.image));
            return 1;
        }
    };
    if args.json {
        print_json(&report);
    } else {
        print_human(&report);
    }
    0
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

fn print_human(r: &Inspection) {
    let t = &r.partition_table;
    let kind = match t.kind {
        TableKind::Mbr => "mbr",
        TableKind::Gpt if t.hybrid_mbr => "gpt (hybrid mbr)",
        TableKind::Gpt => "gpt",
        TableKind::None => "none",
    };
    guestln!("format: {}, virtual size: {}", r.format, human_size(r.virtual_size));
    guestln!("partition table: {kind}{}", t.disk_id.as_ref().map(|d| format!(", disk id {d}")).unwrap_or_default());
    for p in &t.partitions {
        guestln!(
            "  {:>2}  start {:>12}  size {:>11}  {}{}{}",
            p.number,
            p.start,
            human_size(p.size),
            p.type_name,
            p.name.as_ref().map(|n| format!(" \"{n}\"")).unwrap_or_default(),
            if p.bootable { " *" } else { "" }
        );
    }
    for d in &r.data_disks {
        guestln!(
            "data disk {}: {}, {}, {} partition(s)",
            d.device,
            d.format,
            human_size(d.virtual_size),
            d.partition_table.partitions.len()
        );
    }
    for v in &r.volumes {
        if let Some(lv) = &v.logical_volume {
            guestln!(
                "logical volume {}: {}, {} on {}{}",
                v.device,
                human_size(v.size),
                lv.layout,
                lv.physical_volumes.join(" + "),
                v.error.as_ref().map(|e| format!("  ({e})")).unwrap_or_default()
            );
        }
    }
    guestln!("filesystems:");
    let width = r.volumes.iter().map(|v| v.device.len()).max().unwrap_or(0).max(10);
    for v in &r.volumes {
        if v.logical_volume.is_some() && v.error.is_some() {
            continue;
        }
        match &v.filesystem {
            Some(f) => {
                let usage = match (f.size, f.free_bytes) {
                    (Some(s), Some(free)) if s > 0 => {
                        format!("  {} free of {}", human_size(free), human_size(s))
                    }
                    (Some(s), _) => format!("  {}", human_size(s)),
                    _ => String::new(),
                };
                let subvolume = match &v.btrfs_subvolume {
                    Some(b) if b.default && b.read_only => "  (default subvolume, read-only)",
                    Some(b) if b.default => "  (default subvolume)",
                    Some(b) if b.read_only => "  (read-only)",
                    _ => "",
                };
                guestln!(
                    "  {:<width$} {:<12} label {:<16} uuid {}{}{}{}",
                    v.device,
                    f.kind.blkid_name(),
                    opt(&f.label),
                    opt(&f.uuid),
                    usage,
                    v.mountpoint.as_ref().map(|m| format!("  on {m}")).unwrap_or_default(),
                    subvolume
                );
            }
            None => guestln!("  {:<width$} (unrecognised)", v.device),
        }
    }
    if r.operating_systems.is_empty() {
        guestln!("operating system: none found");
    }
    for os in &r.operating_systems {
        let rel = &os.release;
        guestln!("operating system: {} {} {} (root {})", os.os_type, opt(&rel.distro), opt(&rel.version), os.root);
        if let Some(p) = &rel.pretty_name {
            guestln!("  product: {p}");
        }
        guestln!("  hostname: {}", opt(&os.hostname));
        match &os.architecture {
            Some(a) => guestln!("  architecture: {} (from {})", a.name, a.evidence),
            None => guestln!("  architecture: unknown"),
        }
        for k in &os.kernels {
            guestln!(
                "  kernel {}: {}, initramfs {}, modules {}",
                k.version,
                k.path,
                opt(&k.initramfs),
                opt(&k.modules_dir)
            );
            if let Some(c) = &k.initramfs_contents {
                let kinds: Vec<&str> = c.segments.iter().map(|s| s.compression).collect();
                guestln!(
                    "    initramfs: {} ({} entries, {} modules{})",
                    kinds.join(" + "),
                    c.entries,
                    c.modules.len(),
                    if c.complete { "" } else { ", not read to the end" }
                );
            }
            if !k.drivers.is_empty() {
                let at_boot: Vec<&str> = k.drivers.iter().filter(|d| d.available_at_boot).map(|d| d.name).collect();
                guestln!(
                    "    drivers at boot: {}",
                    if at_boot.is_empty() { "none".into() } else { at_boot.join(", ") }
                );
            }
        }
        if let Some(e) = os.grub.as_ref().and_then(|g| g.default_entry.as_ref()) {
            guestln!(
                "  grub default: {} (kernel {}{}, root={}{})",
                e.title,
                opt(&e.kernel),
                if e.kernel_exists == Some(false) { " MISSING" } else { "" },
                opt(&e.root),
                if e.consoles.is_empty() {
                    String::new()
                } else {
                    format!(", console={}", e.consoles.join(" console="))
                }
            );
        }
        for i in &os.network.interfaces {
            guestln!(
                "  network: {} {} {}{} ({})",
                i.system,
                i.name,
                if i.dhcp4 { "dhcp" } else { "static" },
                i.mac.as_ref().map(|m| format!(", mac {m}")).unwrap_or_default(),
                i.source
            );
        }
        for p in &os.network.pinned_names {
            guestln!("  network: {} pinned to {} ({})", p.name, p.mac, p.source);
        }
        if let Some(p) = &os.packages {
            guestln!("  packages: {} installed ({})", p.packages.len(), p.source);
        }
        if let Some(w) = &os.windows {
            let drivers: Vec<&str> = w.drivers.iter().filter(|d| d.registered).map(|d| d.name).collect();
            guestln!(
                "  windows: {}, build {}, drivers registered: {}",
                opt(&w.installation_type),
                opt(&w.current_build),
                if drivers.is_empty() { "none".into() } else { drivers.join(", ") }
            );
            continue;
        }
        let a = &os.accounts;
        guestln!(
            "  root account: passwd {}, shadow {}{}",
            if a.passwd_root_entry { "yes" } else { "no" },
            if a.shadow_root_entry { "yes" } else { "no" },
            if a.shadow_immutable == Some(true) { ", /etc/shadow IMMUTABLE" } else { "" }
        );
        for l in os.lib_links.iter().filter(|l| l.absolute) {
            guestln!("  {} is an absolute symlink to {}", l.path, opt(&l.target));
        }
        guestln!(
            "  sshd: {}",
            match (os.sshd.installed, os.sshd.enabled) {
                (false, _) => "not installed",
                (true, false) => "installed, not enabled",
                (true, true) => "installed, enabled",
            }
        );
        for f in &os.fstab {
            guestln!(
                "  fstab: {} {} {} -> {}",
                f.entry.spec,
                f.entry.mountpoint,
                f.entry.fstype,
                f.resolves_to.as_deref().unwrap_or("NOT FOUND")
            );
        }
        let present: Vec<&str> = os.agents.iter().filter(|a| a.present).map(|a| a.name).collect();
        guestln!("  agents: {}", if present.is_empty() { "none".to_string() } else { present.join(", ") });
        if let Some(s) = &os.selinux {
            guestln!("  selinux: {}", s.mode);
        }
    }
    guestln!("boot: {}", r.boot.mode.unwrap_or("none"));
    for e in r.boot.bios_evidence.iter().chain(&r.boot.uefi_evidence) {
        guestln!("  {e}");
    }
    for f in t.findings.iter().chain(&r.findings) {
        guestln!("{f}");
    }
}
