//! VHD (Microsoft Virtual Hard Disk, qemu's `vpc`): reader, writer and structural check for fixed and
//! dynamic disks. Differencing disks are refused.
//!
//! - `footer`: the footer and dynamic header structures, checksums, geometry and qemu's size rule.
//! - `reader`: opening (which footer to trust, BAT validation) and bit-exact reads against qemu.
//! - `check`: imgport's own structural check (qemu-img has none for vpc).
//! - `writer`: MiB-padded, exact-size fixed and dynamic output.

mod check;
mod footer;
mod reader;
mod writer;

use serde::Serialize;

pub(crate) use reader::open;
pub(crate) use writer::write;

/// VHD-specific facts shown by `imgport info`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VhdInfo {
    /// "fixed" or "dynamic".
    pub disk_type: &'static str,
    /// Creator application, e.g. "vpc ", "qemu", "qem2", "win ", "d2v ", "tap", "impt" (trailing NULs dropped).
    pub creator_app: String,
    /// Creator version as "major.minor".
    pub creator_version: String,
    /// Creator host OS: "Wi2k" or "Mac ".
    pub creator_host_os: String,
    pub cylinders: u16,
    pub heads: u8,
    pub sectors_per_track: u8,
    /// The footer's current size field (the virtual size when `size_source` is "current_size").
    pub current_size: u64,
    pub original_size: u64,
    /// Which field gives the virtual size: "chs" (cylinders x heads x sectors x 512) or "current_size".
    pub size_source: &'static str,
    /// Dynamic disks: bytes per block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u64>,
    /// Dynamic disks: BAT entries declared by the header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_table_entries: Option<u32>,
    /// The footer's unique id, bytes in file order.
    pub unique_id: String,
    /// Creation time: seconds since 2000-01-01 00:00:00 UTC, as stored.
    pub timestamp: u32,
    /// The same time as an RFC 3339 UTC date.
    pub timestamp_utc: String,
    /// A virtual machine was suspended with this disk.
    pub saved_state: bool,
    /// Where the footer in use was read: the end of the file, or 0 when only the copy there was usable.
    pub footer_offset: u64,
}
