//! Which drivers a kernel has at boot: built in (`CONFIG_...=y` in `/boot/config-<version>`, or listed in a
//! modules.builtin), or a module inside its initramfs. A module only in /lib/modules is installed but not
//! loadable before the root filesystem is found, so it does not count for storage drivers.

use crate::fs::FileType;
use crate::initramfs::{self, InitramfsContents};
use crate::linux::Kernel;
use crate::vfs::Vfs;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The drivers the clouds' checks ask about, by module name, with the config symbol that builds each.
pub const BOOT_DRIVERS: &[(&str, &str)] = &[
    ("virtio", "CONFIG_VIRTIO"),
    ("virtio_ring", "CONFIG_VIRTIO"),
    ("virtio_pci", "CONFIG_VIRTIO_PCI"),
    ("virtio_blk", "CONFIG_VIRTIO_BLK"),
    ("virtio_net", "CONFIG_VIRTIO_NET"),
    ("virtio_scsi", "CONFIG_SCSI_VIRTIO"),
    ("nvme", "CONFIG_BLK_DEV_NVME"),
    ("hv_vmbus", "CONFIG_HYPERV"),
    ("hv_storvsc", "CONFIG_HYPERV_STORAGE"),
    ("hv_netvsc", "CONFIG_HYPERV_NET"),
    ("xen_blkfront", "CONFIG_XEN_BLKDEV_FRONTEND"),
    ("ena", "CONFIG_ENA_ETHERNET"),
    // Device mapper, which a root on LVM (or LUKS) needs before it can be found; and btrfs for a btrfs root.
    ("dm_mod", "CONFIG_BLK_DEV_DM"),
    ("btrfs", "CONFIG_BTRFS_FS"),
];

/// Largest kernel config, modules.builtin or modules.dep read.
const MAX_LIST: usize = 8 << 20;
/// Entries visited when a module tree has no modules.dep.
const MAX_WALK: usize = 50_000;

#[derive(Debug, Clone, Serialize)]
pub struct Driver {
    /// Module name, '-' written as '_' as the kernel does ("xen_blkfront").
    pub name: &'static str,
    /// "y", "m" or "n" from `/boot/config-<version>` ("n" for "# ... is not set"), absent without a config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Built into the kernel image (config "y", or named in a modules.builtin).
    pub builtin: bool,
    /// A module file for it is inside the initramfs (false too when the initramfs was not read: see the
    /// kernel's `initramfs_contents`).
    pub in_initramfs: bool,
    /// A module file for it is installed in `/lib/modules/<version>`.
    pub in_module_tree: bool,
    /// Built in or in the initramfs: usable before the root filesystem is mounted.
    pub available_at_boot: bool,
    /// Where each yes came from.
    pub evidence: Vec<String>,
}

/// `CONFIG_X=y|m` and `# CONFIG_X is not set` lines.
pub fn parse_kernel_config(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# ").and_then(|r| r.strip_suffix(" is not set")) {
            if rest.starts_with("CONFIG_") {
                out.insert(rest.to_string(), "n".to_string());
            }
        } else if let Some((k, v)) = line.split_once('=') {
            if k.starts_with("CONFIG_") {
                out.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
    }
    out
}

/// Module names installed under `/lib/modules/<version>`: from modules.dep, or a bounded walk of the tree.
fn module_tree(vfs: &mut Vfs, dir: &str) -> BTreeSet<String> {
    if let Ok(dep) = vfs.read_file(&format!("{dir}/modules.dep"), MAX_LIST) {
        let text = String::from_utf8_lossy(&dep);
        return text.lines().filter_map(|l| l.split(':').next()).filter_map(initramfs::module_name).collect();
    }
    let mut out = BTreeSet::new();
    let mut stack = vec![(format!("{dir}/kernel"), 0u32)];
    let mut seen = 0usize;
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = vfs.read_dir(&d) else { continue };
        for e in entries {
            seen += 1;
            if seen > MAX_WALK {
                return out;
            }
            match e.file_type {
                FileType::Dir if depth < 12 => stack.push((format!("{d}/{}", e.name), depth + 1)),
                FileType::File => {
                    if let Some(m) = initramfs::module_name(&e.name) {
                        out.insert(m);
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Work out the kernel's boot drivers, reading its initramfs (when it has one) if `read_initramfs`.
pub fn examine(vfs: &mut Vfs, kernel: &mut Kernel, limits: initramfs::Limits, read_initramfs: bool) {
    if let Some(path) = kernel.initramfs.clone().filter(|_| read_initramfs) {
        let contents = match vfs.open_reader(&path) {
            Ok(r) => initramfs::read(r, limits),
            Err(e) => InitramfsContents { problems: vec![format!("cannot open: {e}")], ..Default::default() },
        };
        kernel.initramfs_contents = Some(contents);
    }
    let config = kernel
        .config
        .as_deref()
        .and_then(|p| vfs.read_file(p, MAX_LIST).ok())
        .map(|b| parse_kernel_config(&String::from_utf8_lossy(&b)));
    let dir = format!("/lib/modules/{}", kernel.version);
    let root_builtin = vfs
        .read_file(&format!("{dir}/modules.builtin"), MAX_LIST)
        .ok()
        .map(|b| initramfs::parse_modules_builtin(&String::from_utf8_lossy(&b)));
    let tree = if kernel.modules_dir.is_some() { module_tree(vfs, &dir) } else { BTreeSet::new() };
    let ir = kernel.initramfs_contents.as_ref();
    kernel.drivers = BOOT_DRIVERS
        .iter()
        .map(|&(name, symbol)| {
            let mut evidence = Vec::new();
            let cfg = config.as_ref().map(|c| c.get(symbol).cloned().unwrap_or_else(|| "n".to_string()));
            let mut builtin = false;
            if cfg.as_deref() == Some("y") {
                builtin = true;
                evidence.push(format!("{symbol}=y in {}", kernel.config.as_deref().unwrap_or("")));
            }
            if root_builtin.as_ref().is_some_and(|b| b.iter().any(|m| m == name)) {
                builtin = true;
                evidence.push(format!("{dir}/modules.builtin"));
            }
            if ir.and_then(|i| i.modules_builtin.as_ref()).is_some_and(|b| b.iter().any(|m| m == name)) {
                builtin = true;
                evidence.push(format!("modules.builtin in {}", kernel.initramfs.as_deref().unwrap_or("")));
            }
            let in_initramfs = ir.is_some_and(|i| i.modules.iter().any(|m| m == name));
            if in_initramfs {
                evidence.push(format!("module in {}", kernel.initramfs.as_deref().unwrap_or("")));
            }
            let in_module_tree = tree.contains(name);
            if in_module_tree {
                evidence.push(format!("module in {dir}"));
            }
            Driver {
                name,
                config: cfg,
                builtin,
                in_initramfs,
                in_module_tree,
                available_at_boot: builtin || in_initramfs,
                evidence,
            }
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values() {
        let c = parse_kernel_config(
            "CONFIG_VIRTIO_BLK=m\n# CONFIG_HYPERV is not set\nCONFIG_VIRTIO=y\nCONFIG_LOCALVERSION=\"\"\n",
        );
        assert_eq!(c["CONFIG_VIRTIO_BLK"], "m");
        assert_eq!(c["CONFIG_HYPERV"], "n");
        assert_eq!(c["CONFIG_VIRTIO"], "y");
        assert_eq!(c["CONFIG_LOCALVERSION"], "");
    }
}
