//! Writing a VHDX (dynamic by default, or fixed) as one sequential stream.
//!
//! Layout, all MiB-aligned: the 1 MiB header section (file identifier, two headers, two region tables),
//! an empty 1 MiB log, the 1 MiB metadata region, the BAT, then payload blocks. Everything before the
//! first payload block is the sink's header region, written last because the BAT depends on which blocks
//! hold data. Dynamic: only blocks holding non-zero data are stored (FULLY_PRESENT), in guest order; the
//! others are NOT_PRESENT, which qemu and Hyper-V read as zeros (qemu's own ZERO state is documented as
//! non-standard). Fixed: every block is FULLY_PRESENT at its place and LeaveBlockAllocated is set; blocks of
//! zeros are left as holes in a local file. Zero granules inside stored blocks are never written either.

use super::format::*;
use crate::error::{Error, Result};
use crate::image::DiskImage;
use crate::scan::{scan_data, Granules};
use crate::sink::Sink;
use crate::write::{Control, Subformat, WriteOptions};
use std::io::Read;

pub const DEFAULT_BLOCK_SIZE: u64 = 32 * MIB;
const LOGICAL_SECTOR: u64 = 512;
const PHYSICAL_SECTOR: u32 = 4096;
const LOG_OFFSET: u64 = MIB;
const LOG_LENGTH: u64 = MIB;
const METADATA_OFFSET: u64 = 2 * MIB;
const METADATA_LENGTH: u64 = MIB;
const BAT_OFFSET: u64 = 3 * MIB;
/// The BAT is generated and written in pieces of this size, so memory does not grow with the disk.
const BAT_PIECE: u64 = MIB;

/// Sizes and offsets of one output image.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub virtual_size: u64,
    pub block_size: u64,
    pub logical_sector: u64,
    pub chunk_ratio: u64,
    pub bat_entries: u64,
    pub bat_length: u64,
    /// Where payload blocks start: the end of the sink's header region.
    pub data_start: u64,
    pub fixed: bool,
    /// GUIDs from this instead of /dev/urandom.
    pub stamp: Option<crate::write::Stamp>,
}

impl Layout {
    pub fn new(virtual_size: u64, block_size: u64, logical_sector: u64, fixed: bool) -> Layout {
        let virtual_size = virtual_size.div_ceil(logical_sector) * logical_sector;
        let chunk_ratio = chunk_ratio(logical_sector, block_size);
        let bat_entries = bat_entries(virtual_size, block_size, chunk_ratio);
        let bat_length = (bat_entries * 8).div_ceil(MIB).max(1) * MIB;
        Layout {
            virtual_size,
            block_size,
            logical_sector,
            chunk_ratio,
            bat_entries,
            bat_length,
            data_start: BAT_OFFSET + bat_length,
            fixed,
            stamp: None,
        }
    }

    fn blocks(&self) -> u64 {
        self.virtual_size.div_ceil(self.block_size)
    }
}

/// Check the options that apply to VHDX and return the layout they ask for.
fn layout_for(src: &dyn DiskImage, opts: &WriteOptions) -> Result<Layout> {
    if opts.cluster_size.is_some() {
        return Err(Error::invalid_argument("cluster_size does not apply to vhdx output (use block_size)"));
    }
    let fixed = match opts.subformat {
        None | Some(Subformat::Dynamic) => false,
        Some(Subformat::Fixed) => true,
        Some(other) => {
            return Err(Error::invalid_argument(format!(
                "subformat {other:?} does not apply to vhdx output (expected dynamic or fixed)"
            )))
        }
    };
    let block_size = opts.block_size.unwrap_or(DEFAULT_BLOCK_SIZE);
    if !block_size.is_power_of_two() || !(BLOCK_SIZE_MIN..=BLOCK_SIZE_MAX).contains(&block_size) {
        return Err(Error::invalid_argument(format!(
            "vhdx block_size must be a power of two from 1M to 256M, not {block_size}"
        )));
    }
    if src.virtual_size() > MAX_VIRTUAL_SIZE {
        return Err(Error::invalid_argument(format!(
            "virtual size {} is larger than the 64 TiB a VHDX can hold",
            src.virtual_size()
        )));
    }
    let mut layout = Layout::new(src.virtual_size(), block_size, LOGICAL_SECTOR, fixed);
    layout.stamp = opts.stamp;
    Ok(layout)
}

pub(crate) fn write(src: &dyn DiskImage, opts: &WriteOptions, sink: &mut dyn Sink, ctl: &Control) -> Result<()> {
    let layout = layout_for(src, opts)?;
    write_layout(src, &layout, sink, ctl)
}

/// Write `src` with the given layout (also used by tests for 4096-byte logical sectors).
pub(crate) fn write_layout(src: &dyn DiskImage, layout: &Layout, sink: &mut dyn Sink, ctl: &Control) -> Result<()> {
    let bs = layout.block_size;
    sink.begin(layout.data_start)?;
    // Payload blocks in guest order: the n-th stored block lives at data_start + n * block_size.
    let mut stored: Vec<u64> = Vec::new();
    scan_data(src, Granules::new(4096), ctl, &mut |offset, data| {
        if layout.fixed {
            return sink.write_at(layout.data_start + offset, data);
        }
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let block = pos / bs;
            let n = ((bs - pos % bs) as usize).min(rest.len());
            if stored.last() != Some(&block) {
                stored.push(block);
            }
            let host = layout.data_start + (stored.len() as u64 - 1) * bs + pos % bs;
            sink.write_at(host, &rest[..n])?;
            pos += n as u64;
            rest = &rest[n..];
        }
        Ok(())
    })?;
    ctl.check()?;

    write_header_region(layout, &stored, sink, ctl)?;
    let blocks = if layout.fixed { layout.blocks() } else { stored.len() as u64 };
    sink.finish(layout.data_start + blocks * bs)
}

/// 16 random bytes for a GUID (derived from the stamp when there is one).
fn random_guid(layout: &Layout, purpose: &str) -> Result<Guid> {
    if let Some(s) = &layout.stamp {
        return Ok(Guid::random_v4(s.bytes(purpose)));
    }
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| Error::io("cannot read /dev/urandom for the image's GUIDs", e))?;
    Ok(Guid::random_v4(b))
}

/// File identifier, headers, region tables, metadata and BAT.
fn write_header_region(layout: &Layout, stored: &[u64], sink: &mut dyn Sink, ctl: &Control) -> Result<()> {
    let mut section = vec![0u8; 320 * KIB as usize];
    section[0..8].copy_from_slice(FILE_SIGNATURE);
    let creator = format!("imgport v{}", env!("CARGO_PKG_VERSION"));
    for (i, unit) in creator.encode_utf16().take(CREATOR_LEN / 2 - 1).enumerate() {
        section[8 + 2 * i..10 + 2 * i].copy_from_slice(&unit.to_le_bytes());
    }
    let mut header = Header {
        sequence: 1,
        file_write_guid: random_guid(layout, "vhdx file write guid")?,
        data_write_guid: random_guid(layout, "vhdx data write guid")?,
        log_guid: Guid::ZERO,
        log_version: 0,
        version: 1,
        log_length: LOG_LENGTH as u32,
        log_offset: LOG_OFFSET,
    };
    for off in HEADER_OFFSETS {
        let b = encode_header(&header);
        section[off as usize..off as usize + HEADER_SIZE].copy_from_slice(&b);
        header.sequence += 1;
    }
    let regions = [
        Region { guid: BAT_REGION, file_offset: BAT_OFFSET, length: layout.bat_length as u32, required: true },
        Region { guid: METADATA_REGION, file_offset: METADATA_OFFSET, length: METADATA_LENGTH as u32, required: true },
    ];
    let table = encode_region_table(&regions);
    for off in REGION_TABLE_OFFSETS {
        section[off as usize..off as usize + REGION_TABLE_SIZE].copy_from_slice(&table);
    }
    sink.write_at(0, &section)?;
    // The log stays all zeros: with a zero log GUID it is empty.

    sink.write_at(METADATA_OFFSET, &encode_metadata(layout, random_guid(layout, "vhdx disk id")?))?;

    // The BAT, piece by piece; all-zero pieces (nothing stored) are left unwritten.
    let mut next_stored = stored.iter().copied().enumerate().peekable();
    let entries_per_piece = BAT_PIECE / 8;
    let mut first = 0u64;
    while first < layout.bat_entries {
        ctl.check()?;
        let count = entries_per_piece.min(layout.bat_entries - first);
        let mut piece = vec![0u8; (count * 8) as usize];
        let mut any = false;
        for i in 0..count {
            let idx = first + i;
            // Every (chunk_ratio + 1)-th entry is a sector bitmap entry: never allocated here.
            if (idx + 1).is_multiple_of(layout.chunk_ratio + 1) {
                continue;
            }
            let block = idx - idx / (layout.chunk_ratio + 1);
            let slot = if layout.fixed {
                Some(block)
            } else {
                match next_stored.peek() {
                    Some(&(slot, b)) if b == block => {
                        next_stored.next();
                        Some(slot as u64)
                    }
                    _ => None,
                }
            };
            if let Some(slot) = slot {
                let entry = (layout.data_start + slot * layout.block_size) | PAYLOAD_FULLY_PRESENT;
                piece[(i * 8) as usize..(i * 8 + 8) as usize].copy_from_slice(&entry.to_le_bytes());
                any = true;
            }
        }
        if any {
            sink.write_at(BAT_OFFSET + first * 8, &piece)?;
        }
        first += count;
    }
    Ok(())
}

/// The metadata region's table and items (64 KiB + 40 bytes).
fn encode_metadata(layout: &Layout, page83: Guid) -> Vec<u8> {
    let item = 64 * KIB as u32;
    let vd = META_IS_VIRTUAL_DISK | META_IS_REQUIRED;
    let entries = [
        MetadataEntry { item: FILE_PARAMETERS, offset: item, length: 8, flags: META_IS_REQUIRED },
        MetadataEntry { item: VIRTUAL_DISK_SIZE, offset: item + 8, length: 8, flags: vd },
        MetadataEntry { item: PAGE83_DATA, offset: item + 16, length: 16, flags: vd },
        MetadataEntry { item: LOGICAL_SECTOR_SIZE, offset: item + 32, length: 4, flags: vd },
        MetadataEntry { item: PHYSICAL_SECTOR_SIZE, offset: item + 36, length: 4, flags: vd },
    ];
    let mut b = encode_metadata_table(&entries);
    let flags = if layout.fixed { PARAM_LEAVE_BLOCKS_ALLOCATED } else { 0 };
    b.extend_from_slice(&(layout.block_size as u32).to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&layout.virtual_size.to_le_bytes());
    b.extend_from_slice(&page83.0);
    b.extend_from_slice(&(layout.logical_sector as u32).to_le_bytes());
    b.extend_from_slice(&PHYSICAL_SECTOR.to_le_bytes());
    b
}
