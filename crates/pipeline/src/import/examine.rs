//! Reading the disks before anything is sent: inspection, validation and the content digest, off the async
//! threads.

use super::{plan, ImportSpec};
use imgport_disk::{open, Control, DiskImage, OpenOptions};
use imgport_validate::{Report, Target};
use plan::Upload;
use std::path::PathBuf;
use std::sync::Arc;

/// A data disk, read and digested: how it goes up and where.
pub(super) struct DataDisk {
    pub(super) path: PathBuf,
    pub(super) how: Upload,
    /// The object's format as ImportImage names it.
    pub(super) format: &'static str,
    /// GiB; ECS takes data disks of 5 GiB and more.
    pub(super) size_gib: u64,
    /// Bytes.
    pub(super) virtual_size: u64,
    pub(super) digest: String,
    pub(super) key: String,
}

/// Reads and digests a data disk (no guest to validate: its data is the user's).
pub(super) fn examine_data(
    path: &std::path::Path,
    open_options: &OpenOptions,
    ctl: &Control,
) -> Result<(imgport_disk::Format, u64, String, bool), imgport_disk::Error> {
    let img = open(path, open_options)?;
    let digest = imgport_disk::digest(img.as_ref(), ctl)?;
    Ok((img.details().format, img.virtual_size(), digest, is_sparse(path)))
}

/// The digest an import is known by: the system disk's alone, or with data disks a digest over all of them.
pub(super) fn combined_digest(system: &str, data: &[DataDisk]) -> String {
    if data.is_empty() {
        return system.to_string();
    }
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"imgport-disks-v1\n");
    for d in std::iter::once(system).chain(data.iter().map(|d| d.digest.as_str())) {
        h.update(d.as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Inspects, validates and digests the image (blocking work, off the async threads).
pub(super) fn examine(spec: &ImportSpec, ctl: &Control) -> Result<(Report, String, bool), imgport_disk::Error> {
    let img = open(&spec.image, &spec.open)?;
    let image: Arc<dyn DiskImage> = Arc::from(img);
    let details = image.details();
    let file_size = std::fs::metadata(&spec.image).ok().map(|m| m.len());
    let inspection = imgport_guest::inspect(image.clone())?;
    let options = imgport_validate::Options { target: Target::Alibaba, file_size };
    let report = imgport_validate::validate_inspection(&inspection, &details, &options);
    let digest = match &spec.known_digest {
        Some(d) => d.clone(),
        None => imgport_disk::digest(image.as_ref(), ctl)?,
    };
    Ok((report, digest, is_sparse(&spec.image)))
}

/// A file whose allocated blocks hold less than 90% of its length.
pub(super) fn is_sparse(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|m| m.blocks().saturating_mul(512) < m.len() / 10 * 9)
}

pub(super) fn size(r: &Report) -> String {
    let mib = r.virtual_size as f64 / (1u64 << 20) as f64;
    if mib < 1024.0 {
        format!("{mib:.0} MiB virtual")
    } else {
        format!("{:.1} GiB virtual", mib / 1024.0)
    }
}
