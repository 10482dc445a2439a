//! The read interface every format implements, and the extent map it reports.

use crate::error::{Error, Result};
use crate::probe::Format;
use serde::Serialize;

/// What a range of the virtual disk is backed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtentKind {
    /// Stored data (which may still happen to be zeros).
    Data,
    /// Explicitly marked as zero by the format (qcow2 zero cluster, VHDX ZERO block...): reads as zeros.
    Zero,
    /// Nothing stored (hole, unallocated cluster or block): reads as zeros.
    Unallocated,
}

impl ExtentKind {
    /// True when the range is known to read as zeros without looking at it.
    pub fn reads_as_zero(self) -> bool {
        !matches!(self, ExtentKind::Data)
    }
}

/// A contiguous range of the virtual disk with one kind of backing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Extent {
    /// Offset in the virtual disk.
    pub offset: u64,
    pub length: u64,
    pub kind: ExtentKind,
    /// Where the data lives in the image file, when it is stored uncompressed at one place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_offset: Option<u64>,
    /// Data stored compressed (no single host offset).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub compressed: bool,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
    pub fn data(offset: u64, length: u64, host_offset: Option<u64>) -> Self {
        Extent { offset, length, kind: ExtentKind::Data, host_offset, compressed: false }
    }
    pub fn compressed(offset: u64, length: u64) -> Self {
        Extent { offset, length, kind: ExtentKind::Data, host_offset: None, compressed: true }
    }
    pub fn zero(offset: u64, length: u64) -> Self {
        Extent { offset, length, kind: ExtentKind::Zero, host_offset: None, compressed: false }
    }
    pub fn unallocated(offset: u64, length: u64) -> Self {
        Extent { offset, length, kind: ExtentKind::Unallocated, host_offset: None, compressed: false }
    }
    /// Whether `next` continues this extent as one: same kind, adjacent, host offsets contiguous.
    pub fn continued_by(&self, next: &Extent) -> bool {
        let host_contiguous = match (self.host_offset, next.host_offset) {
            (Some(a), Some(b)) => a.checked_add(self.length) == Some(b),
            (None, None) => true,
            _ => false,
        };
        self.kind == next.kind && self.compressed == next.compressed && self.end() == next.offset && host_contiguous
    }
}

/// Builds an extent list, merging neighbours of the same kind (and contiguous host offsets).
#[derive(Debug, Default)]
pub struct ExtentList {
    extents: Vec<Extent>,
}

impl ExtentList {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, e: Extent) {
        if e.length == 0 {
            return;
        }
        if let Some(last) = self.extents.last_mut() {
            if last.continued_by(&e) {
                last.length += e.length;
                return;
            }
        }
        self.extents.push(e);
    }
    pub fn extend(&mut self, it: impl IntoIterator<Item = Extent>) {
        for e in it {
            self.push(e);
        }
    }
    pub fn into_vec(self) -> Vec<Extent> {
        self.extents
    }
}

/// A virtual disk that can be read by position and mapped.
///
/// Implementations are `Sync`: readers use positional I/O so several threads can read at once.
pub trait DiskImage: Send + Sync {
    /// Size of the virtual disk in bytes.
    fn virtual_size(&self) -> u64;

    /// Fill `buf` with the virtual disk's contents at `offset`. Holes and zero ranges read as zeros.
    /// `offset + buf.len()` must not exceed the virtual size.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;

    /// The extents covering `[offset, offset + length)`, in order, without gaps, merged where possible.
    /// Costs metadata reads only.
    fn map(&self, offset: u64, length: u64) -> Result<Vec<Extent>>;

    /// The smallest range one extent of [`DiskImage::map`] can cover (a cluster, a grain, a sector where a
    /// bitmap says which sectors are present), so a caller can bound how many extents a range maps to. The
    /// default, a sector, is right for every format; a larger one lets [`crate::extents::Extents`] map in
    /// fewer, larger windows.
    fn map_granularity(&self) -> u64 {
        512
    }

    /// Format-level facts for `imgport info`.
    fn details(&self) -> ImageDetails;

    /// Structural integrity check. Errors that stop the check entirely are returned as `Err`.
    fn check(&self) -> Result<CheckReport>;

    /// The file that the `host_offset` of this image's Data extents point into, when the bytes there are
    /// exactly the virtual disk's bytes (no overlay such as a replayed log). Lets converters take data
    /// straight from the file's mapping. None (the default) means: always go through `read_at`.
    fn data_file(&self) -> Option<&crate::file::ImageFile> {
        None
    }

    /// Files other than the opened one that hold part of the image (a VMDK descriptor's extent files), so
    /// `info` can size the whole image as qemu-img does. Empty (the default) for single-file formats.
    fn extra_files(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }

    /// The files of the backing chain, nearest first, each followed by its own extra files: what the virtual
    /// disk's bytes also come from, so a caller can tell when any of them changed. Empty (the default) without a
    /// backing file.
    fn backing_files(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }
}

/// Check that a read request lies within the virtual disk.
pub fn check_bounds(virtual_size: u64, offset: u64, len: usize) -> Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= virtual_size => Ok(()),
        _ => Err(Error::invalid_argument(format!(
            "read of {len} bytes at {offset} is beyond the virtual size {virtual_size}"
        ))),
    }
}

/// Format-specific facts; the generic ones (sizes, allocation) are added by [`crate::info::ImageInfo`].
#[derive(Debug, Clone, Serialize)]
pub struct ImageDetails {
    pub format: Format,
    /// e.g. "fixed", "dynamic", "monolithicSparse", "streamOptimized".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subformat: Option<String>,
    /// qcow2 cluster size, VHD/VHDX block size, VMDK grain size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qcow2: Option<crate::qcow2::Qcow2Info>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vhd: Option<crate::vhd::VhdInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vhdx: Option<crate::vhdx::VhdxInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vmdk: Option<crate::vmdk::VmdkInfo>,
}

impl ImageDetails {
    pub fn new(format: Format) -> Self {
        ImageDetails {
            format,
            subformat: None,
            cluster_size: None,
            backing_file: None,
            qcow2: None,
            vhd: None,
            vhdx: None,
            vmdk: None,
        }
    }
}

/// One problem found by a check.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The structure concerned, e.g. "L2 table", "BAT entry 17", "footer".
    pub structure: String,
    /// Offset in the image file, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    pub message: String,
}

impl Finding {
    pub fn new(structure: impl Into<String>, offset: Option<u64>, message: impl Into<String>) -> Self {
        Finding { structure: structure.into(), offset, message: message.into() }
    }
}

/// Result of a structural check. Exit codes follow `qemu-img check`: 0 clean, 2 corruptions, 3 leaks only.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub corruptions: Vec<Finding>,
    pub leaks: Vec<Finding>,
    /// Worth knowing, not damage (dirty bit, checksum only wrong in the footer copy...).
    pub warnings: Vec<Finding>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.corruptions.is_empty() && self.leaks.is_empty()
    }
    pub fn exit_code(&self) -> i32 {
        if !self.corruptions.is_empty() {
            2
        } else if !self.leaks.is_empty() {
            3
        } else {
            0
        }
    }
}
