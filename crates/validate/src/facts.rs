//! Guest facts some checks need, in the shape the checks use (boot drivers, GRUB, network configuration,
//! /etc/shadow flags, /lib links, sshd, Windows drivers, package versions).
//!
//! Each is a named input struct: [`GuestExtras::from_inspection`] fills it from the inspection report. A fact the
//! report could not establish (an initramfs that was not read, a package database in a format not read) stays
//! unknown with the reason, so its check reports `not_checked` instead of guessing.

use imgport_guest::inspect::OperatingSystem;
use imgport_guest::linux::Kernel;
use imgport_guest::packages::{dpkg_cmp, rpm_evr_cmp, PackageFormat};
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

/// Windows storage and network drivers from the SYSTEM hive: registered, not disabled, their file present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowsDrivers {
    pub viostor: bool,
    pub netkvm: bool,
    /// Why a driver that is not installed does not count, one entry per such driver ("netkvm: registered, but
    /// /Windows/System32/drivers/netkvm.sys is missing").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub why_not: Vec<String>,
}

/// An installed package's version, with the rules its database orders versions by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageVersion {
    pub version: String,
    pub format: PackageFormat,
}

impl PackageVersion {
    /// Whether this version is `min` or later, by the package manager's own ordering ("0.7.9-1" < "19.1.3").
    pub fn at_least(&self, min: &str) -> bool {
        let ord = match self.format {
            PackageFormat::Dpkg => dpkg_cmp(&self.version, min),
            _ => rpm_evr_cmp(&self.version, min),
        };
        ord != std::cmp::Ordering::Less
    }
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
    pub cloud_init_version: Fact<Option<PackageVersion>>,
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
    /// The facts the report establishes; the rest stays unknown with its reason.
    pub fn from_inspection(inspection: &Inspection) -> Self {
        // The checks judge the guest the report lists first; its facts must come from the same place.
        let os = inspection.operating_systems.first();
        let linux = os.filter(|o| o.os_type == "linux");
        GuestExtras {
            boot_drivers: linux.map_or_else(|| Fact::unknown(NEEDS_INITRAMFS), boot_drivers),
            boot_entries: linux.map_or_else(|| Fact::unknown(NEEDS_GRUB), boot_entries),
            network: linux.map_or_else(|| Fact::unknown(NEEDS_NETWORK), network),
            shadow: linux.map_or_else(|| Fact::unknown(NEEDS_SHADOW), shadow),
            absolute_lib_links: linux.map_or_else(|| Fact::unknown(NEEDS_LIB_LINKS), lib_links),
            sshd: linux.map_or_else(|| Fact::unknown(NEEDS_SSHD), sshd),
            windows_drivers: windows_drivers(os),
            cloud_init_version: linux.map_or_else(|| Fact::unknown(NEEDS_PACKAGES), cloud_init_version),
        }
    }
}

/// The kernel GRUB boots by default, else the first the report lists (its newest).
fn default_kernel(os: &OperatingSystem) -> Option<&Kernel> {
    let grub_kernel = os
        .grub
        .as_ref()
        .and_then(|g| g.default_entry.as_ref())
        .and_then(|e| e.kernel_path.as_deref().or(e.kernel.as_deref()));
    grub_kernel
        .and_then(|p| os.kernels.iter().find(|k| k.path == p || p.ends_with(&format!("/vmlinuz-{}", k.version))))
        .or_else(|| os.kernels.first())
}

fn boot_drivers(os: &OperatingSystem) -> Fact<BootDrivers> {
    let Some(k) = default_kernel(os) else { return Fact::unknown("no kernel found in /boot") };
    if k.drivers.is_empty() {
        return Fact::unknown(&format!("kernel {}: its drivers were not examined", k.version));
    }
    // A driver absent from an initramfs that was not read, or read only in part, may still be in it: saying it is
    // missing would send the user to fix a problem that may not exist.
    if let Some(initrd) = &k.initramfs {
        match &k.initramfs_contents {
            None => return Fact::unknown(&format!("kernel {}: {initrd} was not read", k.version)),
            Some(c) if !c.complete && k.drivers.iter().any(|d| !d.available_at_boot) => {
                let why = c.problems.first().map_or("reading stopped early", String::as_str);
                return Fact::unknown(&format!("kernel {}: {initrd} was read only in part ({why})", k.version));
            }
            Some(_) => {}
        }
    }
    let drivers = k
        .drivers
        .iter()
        .map(|d| {
            let evidence = d.evidence.first().cloned().unwrap_or_default();
            let a = if d.builtin {
                Availability::BuiltIn(evidence)
            } else if d.in_initramfs {
                Availability::InInitramfs(evidence)
            } else if d.in_module_tree {
                Availability::ModuleOnly(evidence)
            } else {
                Availability::Missing
            };
            (d.name.to_string(), a)
        })
        .collect::<Vec<_>>();
    // Without /boot/config-<version> a built-in driver not listed in a modules.builtin looks missing.
    if k.drivers.iter().any(|d| d.config.is_none()) && drivers.iter().any(|(_, a)| *a == Availability::Missing) {
        return Fact::unknown(&format!(
            "kernel {}: no /boot/config-{} to tell built-in drivers from missing ones",
            k.version, k.version
        ));
    }
    Fact::Known(BootDrivers { kernel: k.version.clone(), drivers })
}

fn cloud_init_version(os: &OperatingSystem) -> Fact<Option<PackageVersion>> {
    let Some(p) = &os.packages else { return Fact::unknown("no package database found") };
    match p.get("cloud-init") {
        Some(c) => Fact::Known(Some(PackageVersion { version: c.version.clone(), format: p.format })),
        // A database read only in part (or in a format not read) cannot show that a package is absent.
        None if !p.complete => Fact::unknown(&format!("{} was not read completely", p.source)),
        None => Fact::Known(None),
    }
}

fn shadow(os: &OperatingSystem) -> Fact<Shadow> {
    let a = &os.accounts;
    if !a.shadow_exists {
        return Fact::unknown("no /etc/shadow in the image");
    }
    let mut immutable = Vec::new();
    if a.shadow_immutable == Some(true) || a.shadow_append_only == Some(true) {
        immutable.push("/etc/shadow".to_string());
    }
    // Flags that could not be read leave immutability open; a missing root entry is still certain.
    if a.shadow_immutable.is_none() && a.shadow_root_entry {
        if let Some(e) = &a.shadow_flags_error {
            return Fact::unknown(&format!("/etc/shadow inode flags not read: {e}"));
        }
    }
    Fact::Known(Shadow { root_entry: a.shadow_root_entry, immutable })
}

fn lib_links(os: &OperatingSystem) -> Fact<Vec<(String, String)>> {
    Fact::Known(
        os.lib_links.iter().filter(|l| l.absolute).filter_map(|l| Some((l.path.clone(), l.target.clone()?))).collect(),
    )
}

fn sshd(os: &OperatingSystem) -> Fact<Sshd> {
    let d = &os.sshd;
    let evidence = d.enabled_evidence.first().or(d.installed_evidence.first()).cloned();
    Fact::Known(Sshd { installed: d.installed, enabled: d.enabled, evidence })
}

fn boot_entries(os: &OperatingSystem) -> Fact<Vec<BootEntry>> {
    let Some(g) = &os.grub else { return Fact::unknown("no GRUB configuration found (grub.cfg, BLS entries)") };
    let Some(e) = &g.default_entry else {
        return Fact::unknown(&format!(
            "{}: no default boot entry could be worked out",
            g.config.as_deref().unwrap_or("the GRUB configuration")
        ));
    };
    Fact::Known(vec![BootEntry {
        source: e.source.clone(),
        kernel: e.kernel_path.clone().or_else(|| e.kernel.clone()).unwrap_or_default(),
        initrd: e.initrd.first().cloned(),
        root: e.root.clone(),
        // An entry without a kernel cannot boot Linux; one without an initrd names nothing missing.
        kernel_exists: e.kernel_exists.unwrap_or(false),
        initrd_exists: e.initrd_exists.unwrap_or(true),
        root_resolves: e.root_resolves_to.is_some(),
        default: true,
    }])
}

fn network(os: &OperatingSystem) -> Fact<Network> {
    let n = &os.network;
    let ifaces: Vec<_> = n.interfaces.iter().filter(|i| i.name != "lo").collect();
    if ifaces.is_empty() && n.pinned_names.is_empty() {
        return Fact::unknown("no network configuration found (ifupdown, netplan, NetworkManager, networkd, ifcfg)");
    }
    let mut sources: Vec<String> = ifaces.iter().map(|i| i.source.clone()).collect();
    sources.dedup();
    let mut pinned: Vec<String> =
        n.pinned_names.iter().map(|p| format!("{} named by MAC {} ({})", p.name, p.mac, p.source)).collect();
    pinned.extend(
        ifaces.iter().filter_map(|i| i.mac.as_ref().map(|m| format!("{} matched by MAC {m} ({})", i.name, i.source))),
    );
    Fact::Known(Network { sources, primary_dhcp: ifaces.iter().any(|i| i.dhcp4), pinned })
}

fn windows_drivers(os: Option<&OperatingSystem>) -> Fact<WindowsDrivers> {
    let Some(w) = os.and_then(|o| o.windows.as_ref()) else { return Fact::unknown(NEEDS_REGISTRY) };
    if w.drivers.is_empty() {
        let why = w.problems.first().map_or("no driver services read", String::as_str);
        return Fact::unknown(&format!("SYSTEM hive: {why}"));
    }
    // A service key left behind without its .sys file, or disabled, loads nothing.
    let has = |name: &str| w.drivers.iter().any(|d| d.name == name && d.installed());
    let why_not = w
        .drivers
        .iter()
        .filter(|d| ["viostor", "netkvm"].contains(&d.name) && !d.installed())
        .map(|d| {
            let why = if !d.registered {
                "no service key".to_string()
            } else if d.start == Some(4) {
                "registered, but disabled (Start=4)".to_string()
            } else {
                format!("registered, but {} is missing", d.file.as_deref().unwrap_or("its driver file"))
            };
            format!("{}: {why}", d.name)
        })
        .collect();
    Fact::Known(WindowsDrivers { viostor: has("viostor"), netkvm: has("netkvm"), why_not })
}
