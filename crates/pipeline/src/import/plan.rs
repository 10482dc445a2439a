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
    /// `Features.NvmeSupport`: `supported` or `unsupported`; unset or `auto`: derived from the guest.
    pub nvme: Option<String>,
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
    /// `Features.NvmeSupport`: `supported` when the guest's kernel has the nvme driver at boot (built in or in the
    /// initramfs), `unsupported` when it does not; not sent when the guest could not be read for it (Windows, an
    /// unread root filesystem) and not given.
    pub nvme_support: Option<String>,
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

/// [`choose_upload`]'s answer, converted to qcow2 all the same when `always` (`--upload-format qcow2`).
pub fn forced(
    chosen: (Upload, &'static str, Option<&'static str>),
    always: bool,
) -> (Upload, &'static str, Option<&'static str>) {
    match chosen {
        (Upload::AsIs, _, _) if always => (Upload::ConvertToQcow2, "QCOW2", Some("qcow2 asked for")),
        other => other,
    }
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

/// A value ECS would refuse, found before anything is read or uploaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// The user tags an import may carry: ECS takes 20 per image and imgport adds two of its own.
pub const MAX_USER_TAGS: usize = 18;

/// Checks what ECS and OSS would refuse only after the upload: the name, description, family, tags, object key
/// and disk size, by the rules ImportImage and OSS document.
pub fn check_request(
    name: &str,
    description: Option<&str>,
    family: Option<&str>,
    tags: &[(String, String)],
    key: Option<&str>,
    disk_size_gib: Option<u64>,
) -> Result<(), Invalid> {
    let bad = |m: String| Err(Invalid(m));
    let reserved = |s: &str| {
        let l = s.to_ascii_lowercase();
        l.starts_with("aliyun") || l.starts_with("acs:")
    };
    let label = |s: &str| {
        (2..=128).contains(&s.chars().count()) && s.chars().next().is_some_and(|c| c.is_alphabetic()) && !reserved(s)
    };
    let lower = name.to_ascii_lowercase();
    if !label(name)
        || lower.starts_with("http://")
        || lower.starts_with("https://")
        || !name.chars().all(|c| c.is_alphanumeric() || "-_.:,()[] ".contains(c))
    {
        return bad(format!(
            "--name {name:?}: an image name is 2-128 characters, starts with a letter, does not start with aliyun, \
             acs: or http(s)://, and holds letters, digits, spaces and - _ . : , ( ) [ ]"
        ));
    }
    if let Some(d) = description {
        if !(2..=256).contains(&d.chars().count()) || d.starts_with("http://") || d.starts_with("https://") {
            return bad("--description: 2-256 characters, not starting with http:// or https://".into());
        }
    }
    if let Some(f) = family {
        let l = f.to_ascii_lowercase();
        if !label(f)
            || l.contains("http://")
            || l.contains("https://")
            || !f.chars().all(|c| c.is_alphanumeric() || ".:_-".contains(c))
        {
            return bad(format!(
                "--family {f:?}: 2-128 characters, starting with a letter, not with aliyun or acs:, of letters, \
                 digits and . : _ -"
            ));
        }
    }
    if tags.len() > MAX_USER_TAGS {
        return bad(format!("{} tags: at most {MAX_USER_TAGS} (ECS takes 20; imgport adds 2 of its own)", tags.len()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in tags {
        let url = |s: &str| s.contains("http://") || s.contains("https://");
        if k.is_empty() || k.chars().count() > 128 || reserved(k) || url(k) || k.starts_with("imgport:") {
            return bad(format!(
                "--tag {k:?}: a key is 1-128 characters, not starting with aliyun, acs: or imgport: (imgport's own), \
                 without http(s)://"
            ));
        }
        if v.chars().count() > 128 || reserved(v) || url(v) {
            return bad(format!(
                "--tag {k}={v:?}: a value is at most 128 characters, not starting with aliyun or acs:"
            ));
        }
        if !seen.insert(k.as_str()) {
            return bad(format!("--tag {k}: given twice"));
        }
    }
    if let Some(k) = key {
        if k.is_empty() || k.len() > 1023 || k.starts_with('/') || k.chars().any(char::is_control) {
            return bad(format!(
                "--key {k:?}: an object key is 1-1023 bytes, not starting with /, without control characters"
            ));
        }
        if k.split('/').any(|part| part == ".." || part == ".") {
            return bad(format!("--key {k:?}: . and .. are not allowed as key segments"));
        }
    }
    if let Some(s) = disk_size_gib {
        if !(1..=2048).contains(&s) {
            return bad(format!("--disk-size {s}: a system disk is 1-2048 GiB"));
        }
    }
    Ok(())
}

/// The canonical spelling of a value out of `allowed` (case-insensitive), or the list in the error.
fn canonical(flag: &'static str, given: &str, allowed: &[&str]) -> Result<String, Contradiction> {
    allowed.iter().find(|a| a.eq_ignore_ascii_case(given)).map(|a| a.to_string()).ok_or_else(|| Contradiction {
        flag,
        given: given.to_string(),
        reason: format!("ECS takes {}", allowed.join(", ")),
    })
}

/// The parameters to send: each derived one unless given; a given one that the image contradicts is refused.
pub fn parameters(report: &Report, o: &Overrides, format: &str) -> Result<ImportParameters, Contradiction> {
    let given_boot = o.boot_mode.as_deref().map(|b| canonical("boot-mode", b, &["BIOS", "UEFI", "UEFI-Preferred"]));
    let given_arch = o.architecture.as_deref().map(|a| canonical("arch", a, &["x86_64", "i386", "arm64"]));
    let given_os = o.os_type.as_deref().map(|t| canonical("os-type", t, &["linux", "windows"]));
    let given_nvme = o.nvme.as_deref().map(|n| canonical("nvme", n, &["auto", "supported", "unsupported"]));
    let o = Overrides {
        boot_mode: given_boot.transpose()?,
        architecture: given_arch.transpose()?,
        os_type: given_os.transpose()?,
        nvme: given_nvme.transpose()?.filter(|n| n != "auto"),
        ..o.clone()
    };
    let o = &o;
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
        nvme_support: o.nvme.clone().or_else(|| nvme_support(report).map(str::to_string)),
    })
}

/// NVMe support as validation found it: the `nvme` check passed (the driver is built into the kernel or carried
/// by the initramfs) or failed (a module only after the root is mounted, or missing); `None` when it was not checked
/// (no Linux guest read, no initramfs facts).
fn nvme_support(report: &Report) -> Option<&'static str> {
    use imgport_validate::{CheckId, Status};
    let nvme: Vec<Status> = report.findings.iter().filter(|f| f.id == CheckId::Nvme).map(|f| f.status).collect();
    if nvme.contains(&Status::Fail) {
        Some("unsupported")
    } else if !nvme.is_empty() && nvme.iter().all(|s| *s == Status::Pass) {
        Some("supported")
    } else {
        None
    }
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

/// Whether booting as `given` works for a guest that boots as `found`: a guest that boots either way takes any
/// mode; `UEFI-Preferred` (UEFI, falling back to BIOS) suits a UEFI guest, not a BIOS-only one.
fn boot_fits(given: &str, found: &str) -> bool {
    found == "UEFI-Preferred"
        || given.eq_ignore_ascii_case(found)
        || (given.eq_ignore_ascii_case("UEFI-Preferred") && found == "UEFI")
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
        assert_eq!(forced(choose_upload(Format::Raw, 1 << 30, false), true).0, Upload::ConvertToQcow2);
        assert_eq!(forced(choose_upload(Format::Qcow2, 1 << 30, false), false).0, Upload::AsIs);
    }

    #[test]
    fn boot_modes_fit() {
        assert!(boot_fits("BIOS", "BIOS") && boot_fits("uefi", "UEFI") && boot_fits("BIOS", "UEFI-Preferred"));
        assert!(!boot_fits("BIOS", "UEFI") && !boot_fits("UEFI", "BIOS") && !boot_fits("UEFI-Preferred", "BIOS"));
    }

    #[test]
    fn requests_are_checked_before_the_upload() {
        let ok = |name: &str| check_request(name, None, None, &[], None, None).is_ok();
        assert!(ok("web-2026-12") && ok("Web (x) [1], v2.0: final"));
        assert!(!ok("") && !ok("1abc") && !ok("a") && !ok("http://x") && !ok("a/b") && !ok(&"a".repeat(129)));
        assert!(!ok("aliyun-x") && !ok("ACS:x"));
        let tags = |t: &[(&str, &str)]| {
            let t: Vec<(String, String)> = t.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            check_request("ok-name", None, None, &t, None, None).is_ok()
        };
        assert!(tags(&[("team", "web")]));
        assert!(!tags(&[("imgport:digest", "x")]) && !tags(&[("acs:x", "1")]) && !tags(&[("a", "1"), ("a", "2")]));
        let many: Vec<(String, String)> = (0..19).map(|n| (format!("k{n}"), String::new())).collect();
        assert!(check_request("ok-name", None, None, &many, None, None).is_err());
        let key = |k: &str| check_request("ok-name", None, None, &[], Some(k), None).is_ok();
        assert!(key("images/web.qcow2") && !key("") && !key("/abs") && !key("a/../b") && !key("a\nb"));
        assert!(check_request("ok-name", None, None, &[], None, Some(4096)).is_err());
        assert!(check_request("ok-name", Some("http://x"), None, &[], None, None).is_err());
        assert!(check_request("ok-name", None, Some("aliyun-f"), &[], None, None).is_err());
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
