//! Facts about a Windows guest on NTFS: the systemroot (a folder holding System32\config and System32\cmd.exe,
//! as virt-inspector finds it), the product and version from the SOFTWARE hive, the computer name and the storage
//! and network drivers registered in the SYSTEM hive, and the architecture from the PE header of ntoskrnl.exe or
//! cmd.exe.

use crate::error::Error;
use crate::regf::{self, Data, Hive};

/// The structure name errors about a hive file carry.
const HIVE: &str = "regf hive";
use crate::vfs::Vfs;
use serde::Serialize;

/// Drivers the clouds care about, by service name: virtio (viostor, vioscsi, netkvm), Hyper-V, NVMe, AWS.
pub const WINDOWS_DRIVERS: &[&str] =
    &["viostor", "vioscsi", "netkvm", "vioser", "storvsc", "netvsc", "vmbus", "stornvme", "AWSNVMe", "ena"];

#[derive(Debug, Clone, Serialize)]
pub struct WindowsDriver {
    pub name: &'static str,
    /// A service key exists for it in the current control set.
    pub registered: bool,
    /// Its Start value (0 boot, 1 system, 2 automatic, 3 on demand, 4 disabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_path: Option<String>,
    /// Guest path of the driver file the service loads (its ImagePath, else System32\drivers\NAME.sys), when
    /// registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Whether that file exists in the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_present: Option<bool>,
}

impl WindowsDriver {
    /// Registered, not disabled (Start 4), and its file present where that could be checked: Windows can load it.
    pub fn installed(&self) -> bool {
        self.registered && self.start != Some(4) && self.file_present != Some(false)
    }
}

/// The guest path of a service's driver file: its ImagePath as Windows resolves it (`\SystemRoot\...`,
/// `%SystemRoot%\...` and relative paths from the systemroot, `\??\C:\...` from the volume root), or the
/// default `System32\drivers\NAME.sys`. `None` for a path on another volume.
pub fn driver_file(systemroot: &str, name: &str, image_path: Option<&str>) -> Option<String> {
    let raw = image_path.map_or_else(|| format!("System32\\drivers\\{name}.sys"), str::to_string);
    let p = raw.trim().trim_matches('"');
    let lower = p.to_ascii_lowercase();
    let (base, rest) = if let Some(r) = ["\\systemroot\\", "%systemroot%\\"].iter().find(|pre| lower.starts_with(**pre))
    {
        (systemroot.to_string(), &p[r.len()..])
    } else if lower.starts_with("\\??\\c:\\") {
        (String::new(), &p[7..])
    } else if lower.starts_with("c:\\") {
        (String::new(), &p[3..])
    } else if lower.starts_with("\\??\\") || lower.get(1..2) == Some(":") {
        return None;
    } else {
        (systemroot.to_string(), p.trim_start_matches('\\'))
    };
    Some(format!("{base}/{}", rest.replace('\\', "/")))
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct WindowsInfo {
    /// Guest path of the systemroot ("/Windows").
    pub systemroot: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edition_id: Option<String>,
    /// "Client" or "Server".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installation_type: Option<String>,
    /// CurrentVersion ("6.3" on Windows 8.1 and later, whatever the product).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_build: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub computer_name: Option<String>,
    /// "ControlSet001" etc., from SYSTEM\Select\Current.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_set: Option<String>,
    pub drivers: Vec<WindowsDriver>,
    /// What could not be read, naming the hive and the structure.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// The systemroot: the first of /Windows, /WINNT with System32/config and System32/cmd.exe (names compare
/// case-insensitively on NTFS).
pub fn systemroot(vfs: &mut Vfs) -> Option<String> {
    ["/Windows", "/WINNT"]
        .into_iter()
        .find(|r| vfs.is_dir(&format!("{r}/System32/config")) && vfs.is_file(&format!("{r}/System32/cmd.exe")))
        .map(str::to_string)
}

/// Architecture named by a PE header: "x86_64", "i386", "aarch64", "armv7l", or `None` when `h` is not PE.
pub fn pe_arch(h: &[u8]) -> Option<&'static str> {
    if h.get(..2) != Some(b"MZ") {
        return None;
    }
    let pe = crate::bytes::le32(h, 0x3C) as usize;
    if crate::bytes::slice(h, pe, 4) != b"PE\0\0" {
        return None;
    }
    Some(match crate::bytes::le16(h, pe + 4) {
        0x8664 => "x86_64",
        0x014c => "i386",
        0xAA64 => "aarch64",
        0x01c4 => "armv7l",
        _ => "unknown",
    })
}

/// Reads a hive file in the guest at any offset.
struct GuestFile<'a> {
    vfs: &'a mut Vfs,
    path: String,
}

impl regf::Source for GuestFile<'_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> regf::Result<usize> {
        self.vfs.read_at(&self.path, offset, buf).map_err(|e| Error::new(e.kind(), HIVE, format!("{}: {e}", self.path)))
    }
}

fn string(d: Option<Data>) -> Option<String> {
    match d {
        Some(Data::String(s)) => Some(s).filter(|s| !s.is_empty()),
        _ => None,
    }
}

fn dword(d: Option<Data>) -> Option<u32> {
    match d {
        Some(Data::Dword(v)) => Some(v),
        _ => None,
    }
}

fn open_hive<'a>(vfs: &'a mut Vfs, path: &str) -> regf::Result<Hive<GuestFile<'a>>> {
    let len = vfs.stat(path).map_err(|e| Error::new(e.kind(), HIVE, format!("{path}: {e}")))?.size;
    Hive::open(GuestFile { vfs, path: path.to_string() }, len).map_err(|e| e.context(path))
}

fn software(vfs: &mut Vfs, root: &str, w: &mut WindowsInfo) -> regf::Result<()> {
    let path = format!("{root}/System32/config/SOFTWARE");
    let mut h = open_hive(vfs, &path)?;
    let Some(k) = h.open_path("Microsoft\\Windows NT\\CurrentVersion").map_err(|e| e.context(&path))? else {
        return Err(Error::invalid(HIVE, format!("{path}: no Microsoft\\Windows NT\\CurrentVersion key")));
    };
    let values = h.values(k).map_err(|e| e.context(&path))?;
    let get = |n: &str| values.iter().find(|v| v.name.eq_ignore_ascii_case(n)).map(|v| v.data.clone());
    w.product_name = string(get("ProductName"));
    w.edition_id = string(get("EditionID"));
    w.installation_type = string(get("InstallationType"));
    w.current_version = string(get("CurrentVersion"));
    w.current_build = string(get("CurrentBuild")).or_else(|| string(get("CurrentBuildNumber")));
    w.display_version = string(get("DisplayVersion")).or_else(|| string(get("ReleaseId")));
    w.major_version = dword(get("CurrentMajorVersionNumber"));
    w.minor_version = dword(get("CurrentMinorVersionNumber"));
    // Before Windows 10 the version is only in CurrentVersion ("6.1").
    if w.major_version.is_none() {
        if let Some((a, b)) = w.current_version.as_deref().and_then(|v| v.split_once('.')) {
            w.major_version = a.parse().ok();
            w.minor_version = b.parse().ok();
        }
    }
    Ok(())
}

fn system(vfs: &mut Vfs, root: &str, w: &mut WindowsInfo) -> regf::Result<()> {
    let path = format!("{root}/System32/config/SYSTEM");
    let mut h = open_hive(vfs, &path)?;
    let err = |e: Error| e.context(&path);
    let current = match h.open_path("Select").map_err(err)? {
        Some(k) => dword(h.value(k, "Current").map_err(err)?).unwrap_or(1),
        None => 1,
    };
    let set = format!("ControlSet{current:03}");
    let Some(cs) = h.open_path(&set).map_err(err)? else {
        return Err(Error::invalid(HIVE, format!("{path}: no {set} key")));
    };
    w.control_set = Some(set);
    if let Some(k) = h
        .open_path(&format!("{}\\Control\\ComputerName\\ComputerName", w.control_set.as_deref().unwrap_or("")))
        .map_err(err)?
    {
        w.computer_name = string(h.value(k, "ComputerName").map_err(err)?);
    }
    let services = h.subkey(cs, "Services").map_err(err)?;
    for name in WINDOWS_DRIVERS {
        let key = match services {
            Some(s) => h.subkey(s, name).map_err(err)?,
            None => None,
        };
        let (start, image_path) = match key {
            Some(k) => {
                let vals = h.values(k).map_err(err)?;
                let get = |n: &str| vals.iter().find(|v| v.name.eq_ignore_ascii_case(n)).map(|v| v.data.clone());
                (dword(get("Start")), string(get("ImagePath")))
            }
            None => (None, None),
        };
        w.drivers.push(WindowsDriver {
            name,
            registered: key.is_some(),
            start,
            image_path,
            file: None,
            file_present: None,
        });
    }
    Ok(())
}

/// Look up each registered driver's file (after the hive is closed: both read through the same filesystem).
fn driver_files(vfs: &mut Vfs, root: &str, w: &mut WindowsInfo) {
    for d in w.drivers.iter_mut().filter(|d| d.registered) {
        d.file = driver_file(root, d.name, d.image_path.as_deref());
        d.file_present = d.file.as_deref().map(|f| vfs.is_file(f));
    }
}

/// Windows facts, when `vfs` holds a systemroot.
pub fn windows(vfs: &mut Vfs) -> Option<(WindowsInfo, Option<String>)> {
    let root = systemroot(vfs)?;
    let mut w = WindowsInfo { systemroot: root.clone(), ..WindowsInfo::default() };
    if let Err(e) = software(vfs, &root, &mut w) {
        w.problems.push(e.to_string());
    }
    if let Err(e) = system(vfs, &root, &mut w) {
        w.problems.push(e.to_string());
    }
    driver_files(vfs, &root, &mut w);
    let mut arch = None;
    for exe in ["System32/ntoskrnl.exe", "System32/cmd.exe"] {
        if let Ok(head) = vfs.read_file(&format!("{root}/{exe}"), 4096) {
            if let Some(a) = pe_arch(&head) {
                arch = Some(format!("{a}:{root}/{exe}"));
                break;
            }
        }
    }
    Some((w, arch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_needs_the_key_a_start_other_than_disabled_and_the_file() {
        let d = |registered, start, file_present| WindowsDriver {
            name: "viostor",
            registered,
            start,
            image_path: None,
            file: None,
            file_present,
        };
        assert!(d(true, Some(0), Some(true)).installed());
        assert!(d(true, None, None).installed(), "unknown Start or file: registered is what is known");
        assert!(!d(false, None, None).installed());
        assert!(!d(true, Some(4), Some(true)).installed(), "disabled");
        assert!(!d(true, Some(0), Some(false)).installed(), "file gone");
    }

    #[test]
    fn driver_file_paths() {
        let f = |p: Option<&str>| driver_file("/Windows", "viostor", p);
        assert_eq!(f(None).as_deref(), Some("/Windows/System32/drivers/viostor.sys"));
        assert_eq!(f(Some("System32\\drivers\\viostor.sys")).as_deref(), Some("/Windows/System32/drivers/viostor.sys"));
        assert_eq!(
            f(Some("\\SystemRoot\\System32\\drivers\\x.sys")).as_deref(),
            Some("/Windows/System32/drivers/x.sys")
        );
        assert_eq!(
            f(Some("%SystemRoot%\\system32\\DRIVERS\\x.sys")).as_deref(),
            Some("/Windows/system32/DRIVERS/x.sys")
        );
        assert_eq!(f(Some("\\??\\C:\\Drivers\\x.sys")).as_deref(), Some("/Drivers/x.sys"));
        assert_eq!(f(Some("\"C:\\Program Files\\x.sys\"")).as_deref(), Some("/Program Files/x.sys"));
        assert_eq!(f(Some("D:\\x.sys")), None);
        assert_eq!(f(Some("\\??\\D:\\x.sys")), None);
    }

    #[test]
    fn pe_machines() {
        let mut h = vec![0u8; 512];
        h[..2].copy_from_slice(b"MZ");
        h[0x3C] = 0x80;
        h[0x80..0x84].copy_from_slice(b"PE\0\0");
        h[0x84..0x86].copy_from_slice(&0x8664u16.to_le_bytes());
        assert_eq!(pe_arch(&h), Some("x86_64"));
        h[0x84..0x86].copy_from_slice(&0xAA64u16.to_le_bytes());
        assert_eq!(pe_arch(&h), Some("aarch64"));
        h[0x3C] = 0xFF;
        assert_eq!(pe_arch(&h), None);
        assert_eq!(pe_arch(b"MZ"), None);
    }
}
