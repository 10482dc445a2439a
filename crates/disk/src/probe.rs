//! Format detection from content, never from the file name.

use crate::error::{Error, Result};
use crate::file::ImageFile;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// A disk image container format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Raw,
    Qcow2,
    /// Microsoft VHD (qemu calls it `vpc`), fixed or dynamic.
    Vhd,
    Vhdx,
    Vmdk,
}

impl Format {
    pub const ALL: [Format; 5] = [Format::Raw, Format::Qcow2, Format::Vhd, Format::Vhdx, Format::Vmdk];

    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vhd => "vhd",
            Format::Vhdx => "vhdx",
            Format::Vmdk => "vmdk",
        }
    }
    /// The name qemu-img uses for the same driver.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Format::Vhd => "vpc",
            other => other.name(),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "raw" | "img" => Ok(Format::Raw),
            "qcow2" => Ok(Format::Qcow2),
            "vhd" | "vpc" => Ok(Format::Vhd),
            "vhdx" => Ok(Format::Vhdx),
            "vmdk" => Ok(Format::Vmdk),
            _ => Err(Error::invalid_argument(format!("unknown format '{s}' (expected raw, qcow2, vhd, vhdx or vmdk)"))),
        }
    }
}

const VMDK_DESCRIPTOR_MAGIC: &[u8] = b"# Disk DescriptorFile";

/// Detect the format of an open image from its content.
pub fn detect(file: &ImageFile) -> Result<Format> {
    let mut head = [0u8; 512];
    file.read_zero_padded(&mut head, 0, "first sector")?;
    if head.starts_with(b"QFI\xfb") {
        return Ok(Format::Qcow2);
    }
    if head.starts_with(b"vhdxfile") {
        return Ok(Format::Vhdx);
    }
    if head.starts_with(b"KDMV") {
        return Ok(Format::Vmdk);
    }
    if head.starts_with(b"conectix") {
        return Ok(Format::Vhd);
    }
    // A fixed VHD is the raw data followed by a 512-byte footer; qemu calls it raw, imgport does not.
    if file.len() >= 512 {
        let mut tail = [0u8; 512];
        file.read_exact_at(&mut tail, file.len() - 512, "last sector")?;
        if tail.starts_with(b"conectix") {
            return Ok(Format::Vhd);
        }
    }
    // A text descriptor (monolithicFlat, twoGbMaxExtent*): small, starts with the magic comment
    // (optionally after blank lines).
    let trimmed = trim_leading_whitespace(&head);
    if file.len() < 64 * 1024 && (trimmed.starts_with(VMDK_DESCRIPTOR_MAGIC) || looks_like_descriptor(&head)) {
        return Ok(Format::Vmdk);
    }
    Ok(Format::Raw)
}

/// A descriptor without the usual first comment: text whose lines include `version=` and `createType=`
/// (qemu's probe accepts these too).
fn looks_like_descriptor(head: &[u8]) -> bool {
    let text_len = head.iter().position(|&b| b == 0).unwrap_or(head.len());
    let Ok(text) = std::str::from_utf8(&head[..text_len]) else { return false };
    let mut version = false;
    let mut create_type = false;
    for line in text.lines().map(str::trim) {
        version |= line.starts_with("version=") || line.starts_with("version =");
        create_type |= line.starts_with("createType");
    }
    version && create_type
}

fn trim_leading_whitespace(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    &b[start..]
}

#[cfg(test)]
mod tests {
    use super::looks_like_descriptor;

    #[test]
    fn descriptor_without_magic_comment() {
        assert!(looks_like_descriptor(b"# made by hand\nversion=1\nCID=fffffffe\ncreateType=\"monolithicFlat\"\n"));
        assert!(!looks_like_descriptor(b"version=1\nsomething else\n"));
        assert!(!looks_like_descriptor(&[0xff, 0xfe, 0x00]));
    }
}
