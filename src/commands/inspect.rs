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
}

pub fn run(args: Args) -> u8 {
    let report = open(&args.image, &args.open.options()).and_then(|img| imgport_guest::inspect(Arc::from(img)));
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
    println!("format: {}, virtual size: {}", r.format, human_size(r.virtual_size));
    println!("partition table: {kind}{}", t.disk_id.as_ref().map(|d| format!(", disk id {d}")).unwrap_or_default());
    for p in &t.partitions {
        println!(
            "  {:>2}  start {:>12}  size {:>11}  {}{}{}",
            p.number,
            p.start,
            human_size(p.size),
            p.type_name,
            p.name.as_ref().map(|n| format!(" \"{n}\"")).unwrap_or_default(),
            if p.bootable { " *" } else { "" }
        );
    }
    println!("filesystems:");
    for v in &r.volumes {
        match &v.filesystem {
            Some(f) => {
                let usage = match (f.size, f.free_bytes) {
                    (Some(s), Some(free)) if s > 0 => {
                        format!("  {} free of {}", human_size(free), human_size(s))
                    }
                    (Some(s), _) => format!("  {}", human_size(s)),
                    _ => String::new(),
                };
                println!(
                    "  {:<10} {:<12} label {:<16} uuid {}{}{}",
                    v.device,
                    f.kind.blkid_name(),
                    opt(&f.label),
                    opt(&f.uuid),
                    usage,
                    v.mountpoint.as_ref().map(|m| format!("  on {m}")).unwrap_or_default()
                );
            }
            None => println!("  {:<10} (unrecognised)", v.device),
        }
    }
    if r.operating_systems.is_empty() {
        println!("operating system: none found");
    }
    for os in &r.operating_systems {
        let rel = &os.release;
        println!("operating system: {} {} {} (root {})", os.os_type, opt(&rel.distro), opt(&rel.version), os.root);
        if let Some(p) = &rel.pretty_name {
            println!("  product: {p}");
        }
        println!("  hostname: {}", opt(&os.hostname));
        match &os.architecture {
            Some(a) => println!("  architecture: {} (from {})", a.name, a.evidence),
            None => println!("  architecture: unknown"),
        }
        for k in &os.kernels {
            println!(
                "  kernel {}: {}, initramfs {}, modules {}",
                k.version,
                k.path,
                opt(&k.initramfs),
                opt(&k.modules_dir)
            );
        }
        for f in &os.fstab {
            println!(
                "  fstab: {} {} {} -> {}",
                f.entry.spec,
                f.entry.mountpoint,
                f.entry.fstype,
                f.resolves_to.as_deref().unwrap_or("NOT FOUND")
            );
        }
        let present: Vec<&str> = os.agents.iter().filter(|a| a.present).map(|a| a.name).collect();
        println!("  agents: {}", if present.is_empty() { "none".to_string() } else { present.join(", ") });
        if let Some(s) = &os.selinux {
            println!("  selinux: {}", s.mode);
        }
    }
    println!("boot: {}", r.boot.mode.unwrap_or("none"));
    for e in r.boot.bios_evidence.iter().chain(&r.boot.uefi_evidence) {
        println!("  {e}");
    }
    for f in t.findings.iter().chain(&r.findings) {
        println!("{f}");
    }
}
