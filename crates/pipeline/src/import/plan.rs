//! What an import will send, decided from the image before anything leaves the machine: the ImportImage
//! parameters (derived from the guest, an explicit value checked against it), the format the object is uploaded
//! in, its key, and the ClientToken that makes a rerun answer the same image.

use imgport_disk::Format;
use imgport_validate::params::{AlibabaParams, Parameters};
use imgport_validate::Report;
use serde::Serialize;

/// Values the user gave for ImportImage parameters; unset ones are derived from the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub platform: Option<String>,
    pub os_type: Option<String>,
    pub architecture: Option<String>,
    pub boot_mode: Option<String>,
    /// The system disk's size in GiB; at least the image's virtual size.
    pub disk_size_gib: Option<u64>,
}

/// The ImportImage parameters an import sends (`None`: not sent, ECS decides).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportParameters {
    pub platform: Option<String>,
    pub os_type: Option<String>,
    pub architecture: Option<String>,
    pub boot_mode: Option<String>,
    pub disk_image_size: u64,
    /// `QCOW2`, `RAW` or `VHD`: the uploaded object's format.
    pub format: String,
}

/// How the image travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Upload {
    /// The file itself: a format ECS reads, as it is.
    AsIs,
    /// Converted to qcow2 while uploading (no temporary file).
    ConvertToQcow2,
}

/// The format the object goes up in, and why when it is not the file itself.
pub fn choose_upload(format: Format, virtual_size: u64, sparse: bool) -> (Upload, &'static str, Option<&'static str>) {
    const MIB: u64 = 1 << 20;
    match format {
        Format::Qcow2 => (Upload::AsIs, "QCOW2", None),
        Format::Raw if sparse => {
            (Upload::ConvertToQcow2, "QCOW2", Some("a sparse raw file: qcow2 sends only the allocated data"))
        }
        Format::Raw => (Upload::AsIs, "RAW", None),
        Format::Vhd if virtual_size.is_multiple_of(MIB) => (Upload::AsIs, "VHD", None),
        Format::Vhd => (
            Upload::ConvertToQcow2,
            "QCOW2",
            Some("ECS refuses a VHD whose virtual size is not a whole MiB (InvalidVHDImage.IncorrectSize)"),
        ),
        Format::Vhdx | Format::Vmdk => (Upload::ConvertToQcow2, "QCOW2", Some("ECS does not import this format")),
    }
}

/// A conflict between an explicit value and what the image holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{flag} {given} contradicts the image: {reason}")]
pub struct Contradiction {
    pub flag: &'static str,
    pub given: String,
    pub reason: String,
}

/// The parameters to send: each derived one unless given; a given one that the image contradicts is refused.
pub fn parameters(report: &Report, o: &Overrides, format: &str) -> Result<ImportParameters, Contradiction> {
    let derived = match &report.parameters {
        Parameters::Alibaba(p) => p.clone(),
        _ => AlibabaParams {
            platform: None,
            os_type: None,
            architecture: None,
            boot_mode: None,
            disk_image_size: imgport_validate::params::size_gib(report.virtual_size),
            format: None,
        },
    };
    let boot_mode = match (o.boot_mode.as_deref(), derived.boot_mode) {
        (Some(given), Some(found)) if !boot_fits(given, found) => {
            return Err(Contradiction {
                flag: "boot-mode",
                given: given.to_string(),
                reason: format!("the guest boots with {found} only"),
            })
        }
        (Some(given), _) => Some(given.to_string()),
        (None, found) => found.map(str::to_string),
    };
    let architecture = checked("arch", o.architecture.as_deref(), derived.architecture)?;
    let os_type = checked("os-type", o.os_type.as_deref(), derived.os_type)?;
    let disk_image_size = match o.disk_size_gib {
        Some(s) if s < derived.disk_image_size => {
            return Err(Contradiction {
                flag: "disk-size",
                given: s.to_string(),
                reason: format!("the virtual disk needs {} GiB", derived.disk_image_size),
            })
        }
        Some(s) => s,
        None => derived.disk_image_size,
    };
    Ok(ImportParameters {
        platform: o.platform.clone().or(derived.platform),
        os_type,
        architecture,
        boot_mode,
        disk_image_size,
        format: format.to_string(),
    })
}

fn checked(flag: &'static str, given: Option<&str>, found: Option<&str>) -> Result<Option<String>, Contradiction> {
    match (given, found) {
        (Some(g), Some(f)) if !g.eq_ignore_ascii_case(f) => {
            Err(Contradiction { flag, given: g.to_string(), reason: format!("the guest is {f}") })
        }
        (Some(g), _) => Ok(Some(g.to_string())),
        (None, f) => Ok(f.map(str::to_string)),
    }
}

/// Whether booting as `given` works for a guest that boots as `found` (`UEFI-Preferred` boots either way).
fn boot_fits(given: &str, found: &str) -> bool {
    found == "UEFI-Preferred" || given.eq_ignore_ascii_case(found) || given.eq_ignore_ascii_case("UEFI-Preferred")
}

/// The object key for an image: under `imgport/`, named by the image name and the content digest, so the
/// same content under the same name lands on the same key.
pub fn object_key(name: &str, digest: &str, format: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).collect();
    let short = &digest[..digest.len().min(16)];
    format!("imgport/{safe}-{short}.{}", format.to_ascii_lowercase())
}

/// The ClientToken of an import: the same content, name and region give the same token, so a retried or rerun
/// ImportImage answers the first one's image instead of creating a second (ECS takes at most 64 ASCII characters).
pub fn client_token(digest: &str, name: &str, region: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::new()
        .chain_update(b"imgport-import-v1\n")
        .chain_update(digest.as_bytes())
        .chain_update(b"\n")
        .chain_update(name.as_bytes())
        .chain_update(b"\n")
        .chain_update(region.as_bytes())
        .finalize();
    let hex: String = h.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("imgport-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_formats() {
        assert_eq!(choose_upload(Format::Qcow2, 1 << 30, true).0, Upload::AsIs);
        assert_eq!(choose_upload(Format::Raw, 1 << 30, false).1, "RAW");
        assert_eq!(choose_upload(Format::Raw, 1 << 30, true).0, Upload::ConvertToQcow2);
        assert_eq!(choose_upload(Format::Vhd, 1 << 30, false).1, "VHD");
        assert_eq!(choose_upload(Format::Vhd, (1 << 30) + 512, false).0, Upload::ConvertToQcow2);
        assert_eq!(choose_upload(Format::Vmdk, 1 << 30, false).1, "QCOW2");
        assert_eq!(choose_upload(Format::Vhdx, 1 << 30, false).0, Upload::ConvertToQcow2);
    }

    #[test]
    fn boot_modes_fit() {
        assert!(boot_fits("BIOS", "BIOS") && boot_fits("uefi", "UEFI") && boot_fits("BIOS", "UEFI-Preferred"));
        assert!(!boot_fits("BIOS", "UEFI") && !boot_fits("UEFI", "BIOS"));
    }

    #[test]
    fn keys_and_tokens_are_stable() {
        let d = "0123456789abcdef0123456789abcdef";
        assert_eq!(object_key("web 2026/12", d, "QCOW2"), "imgport/web-2026-12-0123456789abcdef.qcow2");
        let t = client_token(d, "web", "cn-hangzhou");
        assert_eq!(t, client_token(d, "web", "cn-hangzhou"));
        assert_ne!(t, client_token(d, "web", "cn-shanghai"));
        assert!(t.len() <= 64 && t.is_ascii());
    }
}
