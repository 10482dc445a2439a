//! VHDX (Microsoft "VHDX Format Specification" v1.0, MS-VHDX): reader, writer and structural check.
//!
//! - [`format`]: on-disk structures and CRC-32C checksums.
//! - [`log`]: in-memory replay of the metadata log (qemu refuses a read-only open of such an image; imgport
//!   reads it without writing anything), applied through [`store`] to every later read.
//! - [`reader`]: headers, region table, metadata, BAT; reads and extent map.
//! - [`check`]: structural check.
//! - [`writer`]: dynamic (default) or fixed output, 512-byte logical sectors, streamed.
//!
//! Differencing disks (HasParent) are refused: they need their parent, which imgport does not follow.

mod check;
mod format;
mod log;
mod reader;
mod store;
mod writer;

use crate::error::Result;
use crate::file::ImageFile;
use crate::image::DiskImage;
use crate::open::OpenCtx;
use crate::sink::Sink;
use crate::write::{Control, WriteOptions};
use serde::Serialize;

/// VHDX-specific facts shown by `imgport info`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VhdxInfo {
    /// The file identifier's creator string (e.g. "QEMU v10.0.2"), diagnostic only.
    pub creator: String,
    pub block_size: u64,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
    /// Payload blocks per sector bitmap entry in the BAT.
    pub chunk_ratio: u64,
    /// Set in fixed disks: blocks are never deallocated.
    pub leave_block_allocated: bool,
    /// Always false: differencing disks are refused.
    pub has_parent: bool,
    /// Which header copy is current (1 or 2) and its sequence number.
    pub current_header: u8,
    pub header_sequence: u64,
    pub file_write_guid: String,
    pub data_write_guid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page83_data: Option<String>,
    /// "empty", "replayed N entries", or "log GUID set, no complete sequence to replay".
    pub log_state: String,
    /// How many payload blocks are in each state.
    pub block_states: BlockStates,
}

/// Payload block counts by BAT state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BlockStates {
    pub not_present: u64,
    pub undefined: u64,
    pub zero: u64,
    pub unmapped: u64,
    pub fully_present: u64,
    pub partially_present: u64,
    pub invalid: u64,
}

impl BlockStates {
    fn count(&mut self, state: u64) {
        let slot = match state {
            format::PAYLOAD_NOT_PRESENT => &mut self.not_present,
            format::PAYLOAD_UNDEFINED => &mut self.undefined,
            format::PAYLOAD_ZERO => &mut self.zero,
            format::PAYLOAD_UNMAPPED | format::PAYLOAD_UNMAPPED_V095 => &mut self.unmapped,
            format::PAYLOAD_FULLY_PRESENT => &mut self.fully_present,
            format::PAYLOAD_PARTIALLY_PRESENT => &mut self.partially_present,
            _ => &mut self.invalid,
        };
        *slot += 1;
    }
}

pub(crate) fn open(file: ImageFile, ctx: &mut OpenCtx) -> Result<Box<dyn DiskImage>> {
    Ok(Box::new(reader::VhdxImage::open(file, ctx.options.ignore_checksums)?))
}

pub(crate) fn write(src: &dyn DiskImage, opts: &WriteOptions, sink: &mut dyn Sink, ctl: &Control) -> Result<()> {
    writer::write(src, opts, sink, ctl)
}

#[cfg(test)]
mod tests;
