//! The rules an uploaded disk is judged by (the table in [`super`]): the header rules ImportImage answers at once,
//! and the rules the import task fails on.

use super::partitions::has_boot_signature;
use super::probe::Probe;
use crate::ecs::{DiskMapping, GIB};
use imgport_disk::Format;

const MIB: u64 = 1 << 20;
const VHD_FOOTER: u64 = 512;
/// The largest DiskImageSize ImportImage accepts, in GiB.
pub(super) const MAX_DISK_GIB: u64 = 2048;

/// A broken rule: the error code and the message, as the API or the task reports them.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Broken {
    pub code: String,
    pub message: String,
}

impl Broken {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Broken { code: code.to_string(), message: message.into() }
    }

    /// The HTTP status ImportImage answers this with: 403 for `InvalidVHDImage.IncorrectSize` (ImportImage's error
    /// table), 400 for the rest.
    pub fn status(&self) -> u16 {
        if self.code == "InvalidVHDImage.IncorrectSize" {
            403
        } else {
            400
        }
    }

    /// `CODE: message`, as the task keeps it.
    pub fn task_failure(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }
}

pub(super) fn format_name(f: Format) -> &'static str {
    match f {
        Format::Raw => "RAW",
        Format::Qcow2 => "QCOW2",
        Format::Vhd => "VHD",
        Format::Vhdx => "VHDX",
        Format::Vmdk => "VMDK",
    }
}

/// The VHD size rules: a whole number of MiB, a fixed VHD's data exactly that size, and a dynamic VHD's block
/// table (`MaxTableEntries` x `BlockSize`) covering it.
fn vhd_size(p: &Probe) -> Option<Broken> {
    let code = "InvalidVHDImage.IncorrectSize";
    if p.format != Format::Vhd {
        return None;
    }
    if !p.virtual_size.is_multiple_of(MIB) {
        return Some(Broken::new(
            code,
            format!("The virtual size of the VHD image ({} bytes) is not a multiple of 1 MiB.", p.virtual_size),
        ));
    }
    if let Some(table) = p.vhd_table_bytes.filter(|t| *t < p.virtual_size) {
        return Some(Broken::new(
            code,
            format!(
                "The specified size of the VHD image does not meet the 'header.MaxTableEntries * header.BlockSize' \
                 specification: the block table addresses {table} bytes of a {}-byte disk.",
                p.virtual_size
            ),
        ));
    }
    let data = p.object_size.saturating_sub(VHD_FOOTER);
    if p.fixed_vhd && data != p.virtual_size {
        return Some(Broken::new(
            code,
            format!(
                "The fixed VHD image holds {data} bytes of data before its footer, but the footer declares a \
                 {}-byte disk.",
                p.virtual_size
            ),
        ));
    }
    None
}

/// The header rules ImportImage checks before queueing, for a disk the engine could open. `size_code` is
/// InvalidImageSize for the system disk and InvalidDataDiskSize for a data disk. Returns the disk's size in GiB:
/// DiskImageSize, or the virtual size rounded up.
pub(super) fn at_request(p: &Probe, declared_gib: Option<u64>, size_code: &str) -> Result<u64, Broken> {
    if let Some(b) = vhd_size(p) {
        return Err(b);
    }
    let need = p.virtual_size.div_ceil(GIB).max(1);
    match declared_gib {
        Some(size) if size < need => Err(Broken::new(
            size_code,
            format!("The DiskImageSize {size} GiB is smaller than the image's virtual size ({need} GiB)."),
        )),
        Some(size) => Ok(size),
        None if need > MAX_DISK_GIB => Err(Broken::new(
            size_code,
            format!("The image's virtual size ({need} GiB) is larger than {MAX_DISK_GIB} GiB."),
        )),
        None => Ok(need),
    }
}

/// The rules the import task fails on, for disk `n` (0 is the system disk) of the request.
pub(super) fn in_task(n: usize, d: &DiskMapping, p: &Probe) -> Option<Broken> {
    let malformed = "InvalidImageFormat.Malformed";
    let detected = format_name(p.format);
    if p.format == Format::Vhdx {
        return Some(Broken::new(malformed, "VHDX images are not supported; convert to VHD or QCOW2"));
    }
    if !d.format.is_empty() && d.format != detected {
        return Some(Broken::new(malformed, format!("the image file is not {} (it reads as {detected})", d.format)));
    }
    if let Some(b) = vhd_size(p) {
        return Some(b);
    }
    if p.virtual_size > d.size_gib * GIB {
        return Some(Broken::new(
            "InvalidImageSize",
            format!("the image's virtual size ({} bytes) exceeds DiskImageSize {} GiB", p.virtual_size, d.size_gib),
        ));
    }
    if n > 0 {
        return None;
    }
    if !p.first_sector.as_ref().is_some_and(has_boot_signature) {
        return Some(Broken::new(
            "ImportImageFailed",
            "the system disk has no boot sector (its first sector does not end with the 0x55AA signature)",
        ));
    }
    if p.table.is_none() {
        return Some(Broken::new(
            "ImportImageFailed",
            "the system disk has no partition table (no MBR partition inside the disk, and no GPT behind a \
             protective MBR)",
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vhd(virtual_size: u64, table: Option<u64>, fixed: bool, object_size: u64) -> Probe {
        Probe {
            format: Format::Vhd,
            fixed_vhd: fixed,
            vhd_table_bytes: table,
            virtual_size,
            object_size,
            first_sector: None,
            table: None,
            detection: None,
        }
    }

    #[test]
    fn vhd_size_rules_answer_403() {
        let dynamic = |size, table| vhd(size, Some(table), false, 4 << 20);
        assert!(vhd_size(&dynamic(16 * MIB, 16 * MIB)).is_none());
        assert!(vhd_size(&dynamic(15 * MIB, 16 * MIB)).is_none(), "a table larger than the disk is fine");
        let short = vhd_size(&dynamic(16 * MIB, 8 * MIB)).expect("table too small");
        assert_eq!((short.code.as_str(), short.status()), ("InvalidVHDImage.IncorrectSize", 403));
        assert!(short.message.contains("MaxTableEntries"), "{}", short.message);
        assert!(vhd_size(&vhd(MIB + 512, None, false, 4 << 20)).is_some(), "not a whole MiB");
        assert!(vhd_size(&vhd(8 * MIB, None, true, 7 * MIB + 512)).is_some(), "fixed data too short");
        assert!(vhd_size(&vhd(8 * MIB, None, true, 8 * MIB + 512)).is_none());
        assert_eq!(Broken::new("InvalidImageSize", "x").status(), 400);
    }
}
