//! Import parameters derived from the image, so users stop guessing them: Alibaba's ImportImage fields, and the
//! equivalent hints for the other targets.

use crate::profile::Target;
use imgport_disk::Format;
use imgport_guest::inspect::OperatingSystem;
use imgport_guest::linux::OsRelease;
use imgport_guest::Inspection;
use serde::Serialize;

const GIB: u64 = 1 << 30;

/// Alibaba ECS `ImportImage`: `Platform`, `OSType`, `Architecture`, `BootMode`, and the system disk's
/// `DiskDeviceMapping.1.DiskImageSize` (GiB) and `Format`. A field is null when it cannot be derived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlibabaParams {
    pub platform: Option<String>,
    pub os_type: Option<&'static str>,
    pub architecture: Option<&'static str>,
    pub boot_mode: Option<&'static str>,
    pub disk_image_size: u64,
    pub format: Option<&'static str>,
}

/// AWS `ec2 import-image`: `--platform`, `--architecture`, `--boot-mode`, and the disk container `Format`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AwsParams {
    pub platform: Option<&'static str>,
    pub architecture: Option<&'static str>,
    pub boot_mode: Option<&'static str>,
    pub format: Option<&'static str>,
}

/// Azure image / disk creation: `--os-type`, `--hyper-v-generation`, `--architecture`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AzureParams {
    pub os_type: Option<&'static str>,
    pub hyper_v_generation: Option<&'static str>,
    pub architecture: Option<&'static str>,
}

/// GCE `images create`: `--architecture`, `--guest-os-features`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GceParams {
    pub architecture: Option<&'static str>,
    pub guest_os_features: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Parameters {
    Alibaba(AlibabaParams),
    Aws(AwsParams),
    Azure(AzureParams),
    Gce(GceParams),
}

impl Parameters {
    /// (name as the target's API or CLI spells it, value) for human output.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        fn o<T: ToString>(v: &Option<T>) -> String {
            v.as_ref().map_or_else(|| "-".to_string(), |v| v.to_string())
        }
        match self {
            Parameters::Alibaba(p) => vec![
                ("Platform", o(&p.platform)),
                ("OSType", o(&p.os_type)),
                ("Architecture", o(&p.architecture)),
                ("BootMode", o(&p.boot_mode)),
                ("DiskImageSize", p.disk_image_size.to_string()),
                ("Format", o(&p.format)),
            ],
            Parameters::Aws(p) => vec![
                ("--platform", o(&p.platform)),
                ("--architecture", o(&p.architecture)),
                ("--boot-mode", o(&p.boot_mode)),
                ("Format", o(&p.format)),
            ],
            Parameters::Azure(p) => vec![
                ("--os-type", o(&p.os_type)),
                ("--hyper-v-generation", o(&p.hyper_v_generation)),
                ("--architecture", o(&p.architecture)),
            ],
            Parameters::Gce(p) => vec![
                ("--architecture", o(&p.architecture)),
                (
                    "--guest-os-features",
                    if p.guest_os_features.is_empty() { "-".into() } else { p.guest_os_features.join(",") },
                ),
            ],
        }
    }
}

/// Virtual size rounded up to whole GiB (at least 1 for a non-empty disk).
pub fn size_gib(virtual_size: u64) -> u64 {
    virtual_size.div_ceil(GIB)
}

/// Alibaba `Platform` for a Linux release; `None` when the distribution is not one of the enum's values.
pub fn alibaba_linux_platform(r: &OsRelease) -> Option<&'static str> {
    let id = r.distro.as_deref()?;
    let name = r.name.as_deref().unwrap_or("").to_ascii_lowercase();
    let pretty = r.pretty_name.as_deref().unwrap_or("").to_ascii_lowercase();
    let stream = name.contains("stream") || pretty.contains("stream");
    Some(match id {
        "debian" => "Debian",
        "ubuntu" => "Ubuntu",
        "centos" if stream => "CentOS Stream",
        "centos" => "CentOS",
        "rocky" => "Rocky Linux",
        "almalinux" => "AlmaLinux",
        "rhel" | "redhat" => "RedHat",
        "sles" | "sled" | "sles_sap" | "suse" => "SUSE",
        "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" | "opensuse-microos" => "OpenSUSE",
        "anolis" => "Anolis",
        "alinux" | "aliyun" => "Aliyun",
        "fedora" if name.contains("coreos") || pretty.contains("coreos") => "Fedora CoreOS",
        "fedora" | "fedora-asahi-remix" => "Fedora",
        "fcos" => "Fedora CoreOS",
        "coreos" | "flatcar" => "CoreOS",
        "freebsd" => "FreeBSD",
        "gentoo" => "Gentoo",
        "kylin" => "Kylin",
        "uos" | "uniontech" => "UOS",
        _ => return None,
    })
}

/// Alibaba `Platform` for a Windows product name ("Windows Server 2019 Datacenter" -> "Windows Server 2019").
pub fn alibaba_windows_platform(product: &str) -> Option<&'static str> {
    let p = product.to_ascii_lowercase();
    if !p.contains("windows server") {
        return None;
    }
    ["2003", "2008", "2012", "2016", "2019", "2022"].into_iter().find(|y| p.contains(y)).map(|y| match y {
        "2003" => "Windows Server 2003",
        "2008" => "Windows Server 2008",
        "2012" => "Windows Server 2012",
        "2016" => "Windows Server 2016",
        "2019" => "Windows Server 2019",
        _ => "Windows Server 2022",
    })
}

fn is_windows(os: &OperatingSystem) -> bool {
    os.os_type == "windows"
}

/// The Alibaba Platform to use, and whether it names the distribution (`false` means a fallback).
pub fn alibaba_platform(os: &OperatingSystem) -> (String, bool) {
    if is_windows(os) {
        let product = os.release.pretty_name.as_deref().or(os.release.name.as_deref()).unwrap_or("");
        return match alibaba_windows_platform(product) {
            Some(p) => (p.to_string(), true),
            None => ("Windows Server 2022".to_string(), false),
        };
    }
    match alibaba_linux_platform(&os.release) {
        Some(p) => (p.to_string(), true),
        None => ("Others Linux".to_string(), false),
    }
}

/// The guest's architecture as (Alibaba/AWS name) from the report's name.
fn arch_alibaba(name: &str) -> Option<&'static str> {
    match name {
        "x86_64" => Some("x86_64"),
        "aarch64" => Some("arm64"),
        "i386" => Some("i386"),
        _ => None,
    }
}

fn container_name(format: Format, target: Target) -> Option<&'static str> {
    match (target, format) {
        (Target::Alibaba, Format::Raw) | (Target::Aws, Format::Raw) => Some("RAW"),
        (Target::Alibaba, Format::Qcow2) => Some("QCOW2"),
        (Target::Alibaba, Format::Vhd) | (Target::Aws, Format::Vhd) => Some("VHD"),
        (Target::Alibaba, Format::Vmdk) | (Target::Aws, Format::Vmdk) => Some("VMDK"),
        (Target::Aws, Format::Vhdx) => Some("VHDX"),
        _ => None,
    }
}

/// Derive the parameters for `target` from the inspection.
pub fn derive(target: Target, inspection: &Inspection) -> Parameters {
    let os = inspection.operating_systems.first();
    let arch = os.and_then(|o| o.architecture.as_ref()).map(|a| a.name.as_str());
    let windows = os.is_some_and(is_windows);
    let boot = inspection.boot.mode;
    match target {
        Target::Alibaba => {
            let arch = arch.and_then(arch_alibaba);
            // arm64 instances boot only with UEFI: ECS takes arm64 as implying it.
            let boot_mode = match (arch, boot) {
                (Some("arm64"), Some(_)) if inspection.boot.uefi => Some("UEFI"),
                (_, b) => b,
            };
            Parameters::Alibaba(AlibabaParams {
                platform: os.map(|o| alibaba_platform(o).0),
                os_type: os.map(|_| if windows { "windows" } else { "linux" }),
                architecture: arch,
                boot_mode,
                disk_image_size: size_gib(inspection.virtual_size),
                format: container_name(inspection.format, target),
            })
        }
        Target::Aws => Parameters::Aws(AwsParams {
            platform: os.map(|_| if windows { "Windows" } else { "Linux" }),
            architecture: arch.and_then(arch_alibaba),
            boot_mode: boot.map(|b| match b {
                "BIOS" => "legacy-bios",
                "UEFI" => "uefi",
                _ => "uefi-preferred",
            }),
            format: container_name(inspection.format, target),
        }),
        Target::Azure => Parameters::Azure(AzureParams {
            os_type: os.map(|_| if windows { "Windows" } else { "Linux" }),
            // Generation 2 boots with UEFI, generation 1 with BIOS; an image that can do both runs as Gen2.
            hyper_v_generation: boot.map(|b| if b == "BIOS" { "V1" } else { "V2" }),
            architecture: arch.and_then(|a| match a {
                "x86_64" => Some("x64"),
                "aarch64" => Some("Arm64"),
                _ => None,
            }),
        }),
        Target::Gce => Parameters::Gce(GceParams {
            architecture: arch.and_then(|a| match a {
                "x86_64" => Some("X86_64"),
                "aarch64" => Some("ARM64"),
                _ => None,
            }),
            guest_os_features: if inspection.boot.uefi { vec!["UEFI_COMPATIBLE"] } else { Vec::new() },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(id: &str, name: &str) -> OsRelease {
        OsRelease { distro: Some(id.into()), name: Some(name.into()), ..OsRelease::default() }
    }

    #[test]
    fn linux_platforms() {
        for (id, name, want) in [
            ("debian", "Debian GNU/Linux", Some("Debian")),
            ("ubuntu", "Ubuntu", Some("Ubuntu")),
            ("centos", "CentOS Linux", Some("CentOS")),
            ("centos", "CentOS Stream", Some("CentOS Stream")),
            ("rocky", "Rocky Linux", Some("Rocky Linux")),
            ("almalinux", "AlmaLinux", Some("AlmaLinux")),
            ("rhel", "Red Hat Enterprise Linux", Some("RedHat")),
            ("sles", "SLES", Some("SUSE")),
            ("opensuse-leap", "openSUSE Leap", Some("OpenSUSE")),
            ("anolis", "Anolis OS", Some("Anolis")),
            ("alinux", "Alibaba Cloud Linux", Some("Aliyun")),
            ("fedora", "Fedora Linux", Some("Fedora")),
            ("fedora", "Fedora CoreOS", Some("Fedora CoreOS")),
            ("kylin", "Kylin Linux Advanced Server", Some("Kylin")),
            ("uos", "UOS Server", Some("UOS")),
            ("ol", "Oracle Linux Server", None),
            ("exotic", "Exotic", None),
        ] {
            assert_eq!(alibaba_linux_platform(&rel(id, name)), want, "{id} {name}");
        }
        assert_eq!(alibaba_linux_platform(&OsRelease::default()), None);
    }

    #[test]
    fn windows_platforms() {
        assert_eq!(alibaba_windows_platform("Windows Server 2019 Datacenter"), Some("Windows Server 2019"));
        assert_eq!(alibaba_windows_platform("Windows Server 2012 R2 Standard"), Some("Windows Server 2012"));
        assert_eq!(alibaba_windows_platform("Windows Server 2008 R2 Enterprise"), Some("Windows Server 2008"));
        assert_eq!(alibaba_windows_platform("Windows Server 2022 Datacenter"), Some("Windows Server 2022"));
        assert_eq!(alibaba_windows_platform("Windows 10 Pro"), None);
    }

    #[test]
    fn sizes_round_up_to_gib() {
        assert_eq!(size_gib(0), 0);
        assert_eq!(size_gib(1), 1);
        assert_eq!(size_gib(128 << 20), 1);
        assert_eq!(size_gib(1 << 30), 1);
        assert_eq!(size_gib((1 << 30) + 1), 2);
        assert_eq!(size_gib(20 << 30), 20);
    }
}
