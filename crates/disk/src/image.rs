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

/// Where a range of the virtual disk comes from. Each variant carries only what can exist for it: a host
/// offset only for data stored uncompressed at one place, no offset at all for zeros, holes or compressed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Stored uncompressed. `host_offset` is where the bytes lie in [`DiskImage::data_file`] when a direct read
    /// of the file gives exactly them; None when only [`DiskImage::read_at`] may produce them (a backing file's
    /// data, blocks whose reads are refused, a data file the image does not expose).
    Data { host_offset: Option<u64> },
    /// Stored compressed: only [`DiskImage::read_at`] can produce the bytes.
    Compressed,
    /// Explicitly marked as zero by the format: reads as zeros.
    Zero,
    /// Nothing stored: reads as zeros.
    Unallocated,
}

/// A contiguous range of the virtual disk with one kind of backing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Offset in the virtual disk.
    pub offset: u64,
    pub length: u64,
    pub mapping: Mapping,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
    pub fn data(offset: u64, length: u64, host_offset: Option<u64>) -> Self {
        Extent { offset, length, mapping: Mapping::Data { host_offset } }
    }
    pub fn compressed(offset: u64, length: u64) -> Self {
        Extent { offset, length, mapping: Mapping::Compressed }
    }
    pub fn zero(offset: u64, length: u64) -> Self {
        Extent { offset, length, mapping: Mapping::Zero }
    }
    pub fn unallocated(offset: u64, length: u64) -> Self {
        Extent { offset, length, mapping: Mapping::Unallocated }
    }
    /// The kind of backing, compressed data counting as data.
    pub fn kind(&self) -> ExtentKind {
        match self.mapping {
            Mapping::Data { .. } | Mapping::Compressed => ExtentKind::Data,
            Mapping::Zero => ExtentKind::Zero,
            Mapping::Unallocated => ExtentKind::Unallocated,
        }
    }
    /// Where uncompressed data lies in the data file, when a direct read may use it.
    pub fn host_offset(&self) -> Option<u64> {
        match self.mapping {
            Mapping::Data { host_offset } => host_offset,
            _ => None,
        }
    }
    pub fn is_compressed(&self) -> bool {
        self.mapping == Mapping::Compressed
    }
    /// The same range without its host offset: data that only [`DiskImage::read_at`] may produce.
    pub fn without_host_offset(self) -> Self {
        match self.mapping {
            Mapping::Data { host_offset: Some(_) } => Extent { mapping: Mapping::Data { host_offset: None }, ..self },
            _ => self,
        }
    }
    /// The part `[start, end)` of this extent (which must lie inside it), its host offset moved along.
    pub fn slice(&self, start: u64, end: u64) -> Self {
        let mapping = match self.mapping {
            Mapping::Data { host_offset } => {
                Mapping::Data { host_offset: host_offset.map(|h| h + (start - self.offset)) }
            }
            other => other,
        };
        Extent { offset: start, length: end - start, mapping }
    }
    /// Whether `next` continues this extent as one: same mapping, adjacent, host offsets contiguous.
    pub fn continued_by(&self, next: &Extent) -> bool {
        let same_mapping = match (self.mapping, next.mapping) {
            (Mapping::Data { host_offset: Some(a) }, Mapping::Data { host_offset: Some(b) }) => {
                a.checked_add(self.length) == Some(b)
            }
            (a, b) => a == b,
        };
        same_mapping && self.end() == next.offset
    }
}

/// Serialised as `imgport map --output json` has always written it: offset, length, kind, and `host_offset` or
/// `compressed: true` where they apply.
impl Serialize for Extent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let host_offset = self.host_offset();
        let fields = 3 + usize::from(host_offset.is_some()) + usize::from(self.is_compressed());
        let mut s = serializer.serialize_struct("Extent", fields)?;
        s.serialize_field("offset", &self.offset)?;
        s.serialize_field("length", &self.length)?;
        s.serialize_field("kind", &self.kind())?;
        if let Some(h) = host_offset {
            s.serialize_field("host_offset", &h)?;
        }
        if self.is_compressed() {
            s.serialize_field("compressed", &true)?;
        }
        s.end()
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
    /// What only this format has (none for raw). Serialised under the format's name (`"qcow2": {...}`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub specific: Option<FormatInfo>,
}

/// The facts only one format has.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FormatInfo {
    Qcow2(crate::qcow2::Qcow2Info),
    Vhd(crate::vhd::VhdInfo),
    Vhdx(crate::vhdx::VhdxInfo),
    Vmdk(crate::vmdk::VmdkInfo),
}

impl ImageDetails {
    pub fn new(format: Format) -> Self {
        ImageDetails { format, subformat: None, cluster_size: None, backing_file: None, specific: None }
    }
    pub fn qcow2(&self) -> Option<&crate::qcow2::Qcow2Info> {
        match &self.specific {
            Some(FormatInfo::Qcow2(i)) => Some(i),
            _ => None,
        }
    }
    pub fn vhd(&self) -> Option<&crate::vhd::VhdInfo> {
        match &self.specific {
            Some(FormatInfo::Vhd(i)) => Some(i),
            _ => None,
        }
    }
    pub fn vhdx(&self) -> Option<&crate::vhdx::VhdxInfo> {
        match &self.specific {
            Some(FormatInfo::Vhdx(i)) => Some(i),
            _ => None,
        }
    }
    pub fn vmdk(&self) -> Option<&crate::vmdk::VmdkInfo> {
        match &self.specific {
            Some(FormatInfo::Vmdk(i)) => Some(i),
            _ => None,
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

#[cfg(test)]
mod extent_tests {
    use super::*;

    #[test]
    fn extents_serialise_as_map_always_printed_them() {
        let json = |e: Extent| serde_json::to_string(&e).unwrap();
        assert_eq!(
            json(Extent::data(0, 512, Some(4096))),
            r#"{"offset":0,"length":512,"kind":"data","host_offset":4096}"#
        );
        assert_eq!(json(Extent::data(0, 512, None)), r#"{"offset":0,"length":512,"kind":"data"}"#);
        assert_eq!(
            json(Extent::compressed(512, 512)),
            r#"{"offset":512,"length":512,"kind":"data","compressed":true}"#
        );
        assert_eq!(json(Extent::zero(0, 1)), r#"{"offset":0,"length":1,"kind":"zero"}"#);
        assert_eq!(json(Extent::unallocated(0, 1)), r#"{"offset":0,"length":1,"kind":"unallocated"}"#);
    }

    #[test]
    fn neighbours_merge_only_with_the_same_mapping_and_contiguous_host_offsets() {
        let mut list = ExtentList::new();
        list.push(Extent::data(0, 512, Some(1024)));
        list.push(Extent::data(512, 512, Some(1536)));
        list.push(Extent::data(1024, 512, Some(4096)));
        list.push(Extent::data(1536, 512, None));
        list.push(Extent::data(2048, 512, None));
        list.push(Extent::compressed(2560, 512));
        list.push(Extent::compressed(3072, 512));
        list.push(Extent::zero(3584, 512));
        list.push(Extent::unallocated(4096, 512));
        let lengths: Vec<_> = list.into_vec().iter().map(|e| (e.offset, e.length)).collect();
        assert_eq!(lengths, [(0, 1024), (1024, 512), (1536, 1024), (2560, 1024), (3584, 512), (4096, 512)]);
    }

    #[test]
    fn a_slice_moves_the_host_offset_along() {
        let e = Extent::data(4096, 8192, Some(65536)).slice(6144, 8192);
        assert_eq!((e.offset, e.length, e.host_offset()), (6144, 2048, Some(65536 + 2048)));
        assert_eq!(Extent::zero(0, 100).slice(10, 20), Extent::zero(10, 10));
        assert_eq!(Extent::data(0, 100, Some(7)).without_host_offset().host_offset(), None);
    }
}
