//! Guest facts some checks need that the inspection report does not carry yet (initramfs contents, GRUB, network
//! configuration, /etc/shadow flags, /lib links, sshd, Windows drivers, package versions).
//!
//! Each is a named input struct: [`GuestExtras::from_inspection`] fills it from what the report holds, which today
//! is nothing, so the checks report `not_checked` with the reason. When the inspection grows a fact, filling its
//! struct here is the whole change; the check already knows what to do with it.

use imgport_guest::Inspection;
use serde::Serialize;

/// A fact that may not be known, with the reason when it is not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fact<T> {
    Known(T),
    Unknown(String),
}

impl<T> Fact<T> {
    pub fn unknown(reason: &str) -> Self {
        Fact::Unknown(reason.to_string())
    }
    pub fn known(&self) -> Option<&T> {
        match self {
            Fact::Known(t) => Some(t),
            Fact::Unknown(_) => None,
        }
    }
}

/// Whether a kernel driver can be loaded before the root filesystem is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "evidence")]
pub enum Availability {
    /// Compiled into the kernel (`CONFIG_X=y`, or listed in modules.builtin).
    BuiltIn(String),
    /// A module inside the initramfs.
    InInitramfs(String),
    /// A module under /lib/modules that the initramfs does not carry: available only after the root is mounted.
    ModuleOnly(String),
    Missing,
}

impl Availability {
    pub fn at_boot(&self) -> bool {
        matches!(self, Availability::BuiltIn(_) | Availability::InInitramfs(_))
    }
}

/// Boot-time driver availability for the default kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootDrivers {
    /// Kernel version the facts are for.
    pub kernel: String,
    /// Driver name (as the module is named: "virtio_blk", "hv_storvsc", "nvme") and where it was found.
    pub drivers: Vec<(String, Availability)>,
}

impl BootDrivers {
    pub fn get(&self, driver: &str) -> Availability {
        self.drivers.iter().find(|(d, _)| d == driver).map_or(Availability::Missing, |(_, a)| a.clone())
    }
}

/// A boot entry from grub.cfg or a BLS snippet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootEntry {
    /// Where the entry was read ("/boot/grub/grub.cfg", "/boot/loader/entries/x.conf").
    pub source: String,
    pub kernel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    /// The `root=` kernel parameter as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Whether the kernel and initrd paths exist in the image.
    pub kernel_exists: bool,
    pub initrd_exists: bool,
    /// Whether `root=` names a filesystem in the image.
    pub root_resolves: bool,
    /// The entry GRUB boots by default.
    pub default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    /// The configuration files read.
    pub sources: Vec<String>,
    /// The primary interface gets its address by DHCP.
    pub primary_dhcp: bool,
    /// Configuration tied to a MAC address or a predictable interface name (e.g. udev rules, `HWADDR=`).
    pub pinned: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shadow {
    pub root_entry: bool,
    /// /etc/shadow (or /etc/passwd) carries the immutable or append-only inode flag.
    pub immutable: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sshd {
    pub installed: bool,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

/// Windows storage and network drivers from the SYSTEM hive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowsDrivers {
    pub viostor: bool,
    pub netkvm: bool,
}

/// Facts beyond the inspection report, each possibly unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestExtras {
    pub boot_drivers: Fact<BootDrivers>,
    pub boot_entries: Fact<Vec<BootEntry>>,
    pub network: Fact<Network>,
    pub shadow: Fact<Shadow>,
    /// /lib and /lib64 when they are absolute symlinks: (path, target).
    pub absolute_lib_links: Fact<Vec<(String, String)>>,
    pub sshd: Fact<Sshd>,
    pub windows_drivers: Fact<WindowsDrivers>,
    /// Installed cloud-init version.
    pub cloud_init_version: Fact<Option<String>>,
}

pub const NEEDS_INITRAMFS: &str = "needs initramfs reading (kernel config, modules.builtin, initramfs contents)";
pub const NEEDS_GRUB: &str = "needs GRUB reading (grub.cfg, BLS entries, grubenv)";
pub const NEEDS_NETWORK: &str =
    "needs network configuration reading (ifupdown, netplan, NetworkManager, systemd-networkd, ifcfg)";
pub const NEEDS_SHADOW: &str = "needs /etc/shadow inode flags and its root entry";
pub const NEEDS_LIB_LINKS: &str = "needs /lib and /lib64 link targets";
pub const NEEDS_SSHD: &str = "needs sshd unit and configuration reading";
pub const NEEDS_REGISTRY: &str = "needs the Windows SYSTEM registry hive";
pub const NEEDS_PACKAGES: &str = "needs the installed package list";

impl GuestExtras {
    /// Everything the report carries today; the rest stays unknown with its reason.
    pub fn from_inspection(_inspection: &Inspection) -> Self {
        GuestExtras {
            boot_drivers: Fact::unknown(NEEDS_INITRAMFS),
            boot_entries: Fact::unknown(NEEDS_GRUB),
            network: Fact::unknown(NEEDS_NETWORK),
            shadow: Fact::unknown(NEEDS_SHADOW),
            absolute_lib_links: Fact::unknown(NEEDS_LIB_LINKS),
            sshd: Fact::unknown(NEEDS_SSHD),
            windows_drivers: Fact::unknown(NEEDS_REGISTRY),
            cloud_init_version: Fact::unknown(NEEDS_PACKAGES),
        }
    }
}
