//! Opening a VHDX and reading its virtual disk.
//!
//! Open order follows the spec (and qemu): file identifier, current header, log replay, region table,
//! metadata, BAT. Everything after the headers is read through [`Store`], so a replayed log is seen by every
//! structure. The BAT is loaded whole (it is small: 8 bytes per block); payload reads coalesce blocks that
//! are contiguous in the file into one pread.

use super::format::*;
use super::log::{self, LogLocation};
use super::store::Store;
use super::{BlockStates, VhdxInfo};
use crate::error::Result;
use crate::file::{le_u32, le_u64, ImageFile};
use crate::image::{check_bounds, CheckReport, DiskImage, Extent, ExtentList, Finding, ImageDetails};
use crate::probe::Format;

/// The BAT is held in memory; refuse tables larger than this (64 TiB in 8 MiB blocks still fits).
pub const MAX_BAT_BYTES: u64 = 80 * MIB;

/// A range of the file reserved for a structure, for overlap checks.
#[derive(Debug, Clone)]
pub struct Area {
    pub name: String,
    pub start: u64,
    pub end: u64,
}

impl Area {
    fn new(name: impl Into<String>, start: u64, len: u64) -> Area {
        Area { name: name.into(), start, end: start.saturating_add(len) }
    }
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        start < self.end && self.start < end
    }
}

/// Something noticed while opening, reported again by `check`.
#[derive(Debug, Clone)]
pub enum Note {
    Warning(Finding),
    Corruption(Finding),
}

/// Where a payload block's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    /// Reads as zeros (not present, zero, unmapped...).
    Zero,
    /// Stored at this file offset.
    Host(u64),
}

pub struct VhdxImage {
    pub(super) store: Store,
    pub(super) virtual_size: u64,
    pub(super) block_size: u64,
    pub(super) chunk_ratio: u64,
    pub(super) bat: Vec<u64>,
    pub(super) bat_offset: u64,
    /// Header section, log, BAT, metadata and other regions.
    pub(super) areas: Vec<Area>,
    pub(super) notes: Vec<Note>,
    pub(super) info: VhdxInfo,
}

/// Read one copy of a fixed-size structure, as part of the header section (always on disk, never logged).
fn read_vec(file: &ImageFile, offset: u64, len: usize, what: &str) -> Result<Vec<u8>> {
    let mut b = vec![0u8; len];
    file.read_exact_at(&mut b, offset, what)?;
    Ok(b)
}

impl VhdxImage {
    pub fn open(file: ImageFile, ignore_checksums: bool) -> Result<VhdxImage> {
        let mut notes = Vec::new();

        let mut ident = [0u8; 8 + CREATOR_LEN];
        file.read_exact_at(&mut ident, 0, "file identifier")?;
        if &ident[..8] != FILE_SIGNATURE {
            return Err(file.invalid(0, "not a VHDX file: the file identifier is not 'vhdxfile'"));
        }
        let creator = parse_creator(&ident[8..]);

        let (current, header) = choose_header(&file, ignore_checksums, &mut notes)?;
        let header_offset = HEADER_OFFSETS[current];

        // The log, replayed in memory when the header says it is in use.
        if header.log_version != 0 {
            return Err(file.unsupported(format!("log version {} is unknown (only 0 exists)", header.log_version)));
        }
        if header.log_offset < HEADER_SECTION_END || header.log_offset % MIB != 0 {
            return Err(file.corrupt(
                header_offset,
                format!("header: log offset {:#x} is not a whole MiB past the header section", header.log_offset),
            ));
        }
        let log_length = header.log_length as u64;
        let mut areas = vec![Area::new("header section", 0, HEADER_SECTION_END)];
        if log_length > 0 {
            areas.push(Area::new("log", header.log_offset, log_length));
        }
        let (log_state, store) = if !header.log_guid.is_zero() && log_length > 0 {
            if !log_length.is_multiple_of(MIB) {
                return Err(file.corrupt(header_offset, format!("header: log length {log_length} is not a whole MiB")));
            }
            let loc = LogLocation { offset: header.log_offset, length: log_length, guid: header.log_guid };
            let replay = log::replay(&file, &loc)?;
            let state = if replay.entries == 0 {
                notes.push(Note::Warning(Finding::new(
                    "log",
                    Some(header.log_offset),
                    "the header names a log, but it holds no complete log sequence: nothing to replay",
                )));
                "log GUID set, no complete sequence to replay".to_string()
            } else {
                notes.push(Note::Warning(Finding::new(
                    "log",
                    Some(header.log_offset),
                    format!(
                        "the log needs replaying (the image was not closed cleanly): {} entries replayed in memory \
                         (up to sequence number {}); the file was not modified",
                        replay.entries, replay.head_sequence
                    ),
                )));
                format!("replayed {} entries", replay.entries)
            };
            (state, Store::new(file, replay.overlay, replay.file_len))
        } else {
            ("empty".to_string(), Store::new(file, Default::default(), 0))
        };

        let (bat_region, metadata_region) = read_region_table(&store, ignore_checksums, &mut areas, &mut notes)?;
        let meta = read_metadata(&store, &metadata_region, &mut notes)?;

        let chunk_ratio = chunk_ratio(meta.logical_sector_size as u64, meta.block_size);
        let entries = bat_entries(meta.virtual_size, meta.block_size, chunk_ratio);
        let bat_bytes = entries * 8;
        if bat_bytes > bat_region.length as u64 {
            return Err(store.file.corrupt(
                bat_region.file_offset,
                format!(
                    "BAT region ({} bytes) is too small for the {entries} entries a {}-byte disk in {}-byte blocks needs",
                    bat_region.length, meta.virtual_size, meta.block_size
                ),
            ));
        }
        if bat_bytes > MAX_BAT_BYTES {
            return Err(store.file.unsupported(format!(
                "BAT of {entries} entries ({} MiB) is larger than the {} MiB imgport loads",
                bat_bytes / MIB,
                MAX_BAT_BYTES / MIB
            )));
        }
        if bat_region.file_offset.saturating_add(bat_bytes) > store.len() {
            return Err(store.file.corrupt(
                bat_region.file_offset,
                format!(
                    "BAT ({entries} entries) extends past the end of the file ({} bytes): truncated image?",
                    store.len()
                ),
            ));
        }
        // Read in 1 MiB pieces so the raw bytes never sit in memory beside the whole table.
        let mut bat: Vec<u64> = Vec::with_capacity(entries as usize);
        let mut piece = vec![0u8; MIB as usize];
        let mut done = 0u64;
        while done < bat_bytes {
            let n = (bat_bytes - done).min(MIB) as usize;
            store.read(&mut piece[..n], bat_region.file_offset + done, "BAT")?;
            bat.extend(piece[..n].chunks_exact(8).map(|c| le_u64(c, 0)));
            done += n as u64;
        }

        let mut states = BlockStates::default();
        for block in 0..meta.virtual_size.div_ceil(meta.block_size) {
            states.count(bat[bat_index(block, chunk_ratio) as usize] & BAT_STATE_MASK);
        }
        let info = VhdxInfo {
            creator,
            block_size: meta.block_size,
            logical_sector_size: meta.logical_sector_size,
            physical_sector_size: meta.physical_sector_size,
            chunk_ratio,
            leave_block_allocated: meta.leave_block_allocated,
            has_parent: false,
            current_header: current as u8 + 1,
            header_sequence: header.sequence,
            file_write_guid: header.file_write_guid.to_string(),
            data_write_guid: header.data_write_guid.to_string(),
            page83_data: meta.page83.map(|g| g.to_string()),
            log_state,
            block_states: states,
        };
        Ok(VhdxImage {
            store,
            virtual_size: meta.virtual_size,
            block_size: meta.block_size,
            chunk_ratio,
            bat,
            bat_offset: bat_region.file_offset,
            areas,
            notes,
            info,
        })
    }

    pub(super) fn payload_blocks(&self) -> u64 {
        self.virtual_size.div_ceil(self.block_size)
    }

    /// Bytes of block `block` that belong to the virtual disk (the last block may be cut short).
    pub(super) fn block_len(&self, block: u64) -> u64 {
        self.block_size.min(self.virtual_size - block * self.block_size)
    }

    pub(super) fn entry(&self, block: u64) -> (u64, u64) {
        let idx = bat_index(block, self.chunk_ratio);
        (self.bat[idx as usize], self.bat_offset + idx * 8)
    }

    /// Where block `block` is stored, refusing entries that would read something other than its data.
    fn locate(&self, block: u64) -> Result<Location> {
        let (entry, at) = self.entry(block);
        let corrupt = |msg: String| Err(self.store.file.corrupt(at, format!("BAT entry of block {block}: {msg}")));
        match entry & BAT_STATE_MASK {
            PAYLOAD_NOT_PRESENT | PAYLOAD_UNDEFINED | PAYLOAD_ZERO | PAYLOAD_UNMAPPED | PAYLOAD_UNMAPPED_V095 => {
                Ok(Location::Zero)
            }
            PAYLOAD_FULLY_PRESENT => {
                let host = entry & BAT_OFFSET_MASK;
                let end = host.checked_add(self.block_len(block));
                match end {
                    _ if host < HEADER_SECTION_END => corrupt(format!("offset {host:#x} lies in the header section")),
                    Some(end) if end <= self.store.len() => match self.areas.iter().find(|a| a.overlaps(host, end)) {
                        Some(a) => corrupt(format!("payload at {host:#x} overlaps the {}", a.name)),
                        None => Ok(Location::Host(host)),
                    },
                    _ => corrupt(format!(
                        "payload at {host:#x} extends past the end of the file ({} bytes): truncated image?",
                        self.store.len()
                    )),
                }
            }
            PAYLOAD_PARTIALLY_PRESENT => corrupt(
                "state PARTIALLY_PRESENT is only valid in a differencing disk, which this is not \
                 (qemu fails reads of it too)"
                    .into(),
            ),
            s => corrupt(format!("invalid block state {s}")),
        }
    }
}

/// Pick the current header: the valid one, or the valid one with the larger sequence number.
fn choose_header(file: &ImageFile, ignore_checksums: bool, notes: &mut Vec<Note>) -> Result<(usize, Header)> {
    let mut copies = Vec::with_capacity(2);
    for (i, &off) in HEADER_OFFSETS.iter().enumerate() {
        let b = read_vec(file, off, HEADER_SIZE, &format!("header {}", i + 1))?;
        copies.push(HeaderCopy::parse(&b));
    }
    let why = |c: &HeaderCopy| match c {
        HeaderCopy::Valid(_) => "valid".to_string(),
        HeaderCopy::BadChecksum(_) => "checksum mismatch".to_string(),
        HeaderCopy::Invalid(why) => (*why).to_string(),
    };
    let chosen = match (copies[0].header(), copies[1].header()) {
        (Some(a), Some(b)) => {
            if a.sequence == b.sequence && a != b {
                return Err(file.corrupt(
                    HEADER_OFFSETS[0],
                    "both headers are valid with the same sequence number but different contents",
                ));
            }
            if b.sequence > a.sequence {
                1
            } else {
                0
            }
        }
        (Some(_), None) | (None, Some(_)) => {
            let (good, bad) = if copies[0].header().is_some() { (0, 1) } else { (1, 0) };
            notes.push(Note::Warning(Finding::new(
                format!("header {}", bad + 1),
                Some(HEADER_OFFSETS[bad]),
                format!("{}; header {} is used", why(&copies[bad]), good + 1),
            )));
            good
        }
        (None, None) => {
            let usable = |i: usize| match &copies[i] {
                HeaderCopy::BadChecksum(h) => Some(h.sequence),
                _ => None,
            };
            let pick = match (usable(0), usable(1)) {
                (Some(a), Some(b)) => Some(if b > a { 1 } else { 0 }),
                (Some(_), None) => Some(0),
                (None, Some(_)) => Some(1),
                (None, None) => None,
            };
            let summary = format!("no valid header: header 1: {}; header 2: {}", why(&copies[0]), why(&copies[1]));
            match pick {
                Some(i) if ignore_checksums => {
                    notes.push(Note::Corruption(Finding::new(
                        "headers",
                        Some(HEADER_OFFSETS[0]),
                        format!("{summary}; header {} used anyway (--ignore-checksums)", i + 1),
                    )));
                    i
                }
                Some(_) => {
                    return Err(
                        file.corrupt(HEADER_OFFSETS[0], format!("{summary} (--ignore-checksums reads it anyway)"))
                    )
                }
                None => return Err(file.corrupt(HEADER_OFFSETS[0], summary)),
            }
        }
    };
    let header = match &copies[chosen] {
        HeaderCopy::Valid(h) | HeaderCopy::BadChecksum(h) => h.clone(),
        HeaderCopy::Invalid(why) => return Err(file.corrupt(HEADER_OFFSETS[chosen], format!("header: {why}"))),
    };
    Ok((chosen, header))
}

/// Read the region table (the first valid copy), validate its regions and return the BAT and metadata ones.
fn read_region_table(
    store: &Store,
    ignore_checksums: bool,
    areas: &mut Vec<Area>,
    notes: &mut Vec<Note>,
) -> Result<(Region, Region)> {
    let file = &store.file;
    let mut copies = Vec::with_capacity(2);
    for (i, &off) in REGION_TABLE_OFFSETS.iter().enumerate() {
        let mut b = vec![0u8; REGION_TABLE_SIZE];
        store.read(&mut b, off, &format!("region table {}", i + 1))?;
        copies.push(RegionTableCopy::parse(&b));
    }
    let why = |c: &RegionTableCopy| match c {
        RegionTableCopy::Valid(_) => "valid".to_string(),
        RegionTableCopy::BadChecksum(_) => "checksum mismatch".to_string(),
        RegionTableCopy::Invalid(why) => why.clone(),
    };
    let regions = match (&copies[0], &copies[1]) {
        (RegionTableCopy::Valid(a), RegionTableCopy::Valid(b)) => {
            if a != b {
                notes.push(Note::Warning(Finding::new(
                    "region table 2",
                    Some(REGION_TABLE_OFFSETS[1]),
                    "differs from region table 1, which is used",
                )));
            }
            a.clone()
        }
        (RegionTableCopy::Valid(a), other) | (other, RegionTableCopy::Valid(a)) => {
            let bad = if matches!(copies[0], RegionTableCopy::Valid(_)) { 1 } else { 0 };
            notes.push(Note::Warning(Finding::new(
                format!("region table {}", bad + 1),
                Some(REGION_TABLE_OFFSETS[bad]),
                format!("{}; region table {} is used", why(other), 2 - bad),
            )));
            a.clone()
        }
        (a, b) => {
            let summary = format!("no valid region table: table 1: {}; table 2: {}", why(a), why(b));
            let usable = [a, b].into_iter().find_map(|c| match c {
                RegionTableCopy::BadChecksum(r) => Some(r.clone()),
                _ => None,
            });
            match usable {
                Some(r) if ignore_checksums => {
                    notes.push(Note::Corruption(Finding::new(
                        "region tables",
                        Some(REGION_TABLE_OFFSETS[0]),
                        format!("{summary}; used anyway (--ignore-checksums)"),
                    )));
                    r
                }
                Some(_) => {
                    return Err(file
                        .corrupt(REGION_TABLE_OFFSETS[0], format!("{summary} (--ignore-checksums reads it anyway)")))
                }
                None => return Err(file.corrupt(REGION_TABLE_OFFSETS[0], summary)),
            }
        }
    };

    let (mut bat, mut metadata) = (None, None);
    for (i, r) in regions.iter().enumerate() {
        let at = REGION_TABLE_OFFSETS[0] + 16 + 32 * i as u64;
        let name = match r.guid {
            BAT_REGION => "BAT region".to_string(),
            METADATA_REGION => "metadata region".to_string(),
            g => format!("region {g}"),
        };
        if r.file_offset.checked_add(r.length as u64).is_none() {
            return Err(file.corrupt(at, format!("{name}: offset {:#x} overflows", r.file_offset)));
        }
        if let Some(a) = areas.iter().find(|a| a.overlaps(r.file_offset, r.end())) {
            return Err(
                file.corrupt(at, format!("{name} ({:#x}, {} bytes) overlaps the {}", r.file_offset, r.length, a.name))
            );
        }
        if r.file_offset % MIB != 0 || !(r.length as u64).is_multiple_of(MIB) {
            notes.push(Note::Warning(Finding::new(
                name.clone(),
                Some(at),
                format!("offset {:#x} and length {} should be whole MiB", r.file_offset, r.length),
            )));
        }
        match r.guid {
            BAT_REGION if bat.is_some() => return Err(file.corrupt(at, "the region table lists two BAT regions")),
            METADATA_REGION if metadata.is_some() => {
                return Err(file.corrupt(at, "the region table lists two metadata regions"))
            }
            BAT_REGION => bat = Some(*r),
            METADATA_REGION => metadata = Some(*r),
            g if r.required => {
                return Err(file.unsupported(format!(
                    "the region table has a region {g} marked required that imgport does not know"
                )))
            }
            _ => {}
        }
        areas.push(Area::new(name, r.file_offset, r.length as u64));
    }
    match (bat, metadata) {
        (Some(b), Some(m)) => Ok((b, m)),
        (None, _) => Err(file.corrupt(REGION_TABLE_OFFSETS[0], "the region table has no BAT region")),
        (_, None) => Err(file.corrupt(REGION_TABLE_OFFSETS[0], "the region table has no metadata region")),
    }
}

/// The metadata items imgport needs.
#[derive(Debug)]
struct Metadata {
    block_size: u64,
    leave_block_allocated: bool,
    virtual_size: u64,
    logical_sector_size: u32,
    physical_sector_size: u32,
    page83: Option<Guid>,
}

fn read_metadata(store: &Store, region: &Region, notes: &mut Vec<Note>) -> Result<Metadata> {
    let file = &store.file;
    let base = region.file_offset;
    if (region.length as usize) < METADATA_TABLE_SIZE {
        return Err(file.corrupt(base, format!("metadata region ({} bytes) cannot hold its table", region.length)));
    }
    let mut table = vec![0u8; METADATA_TABLE_SIZE];
    store.read(&mut table, base, "metadata table")?;
    let entries = parse_metadata_table(&table).map_err(|e| file.corrupt(base, format!("metadata table: {e}")))?;

    let known = [
        (FILE_PARAMETERS, "file parameters", 8u32),
        (VIRTUAL_DISK_SIZE, "virtual disk size", 8),
        (PAGE83_DATA, "page 83 data", 16),
        (LOGICAL_SECTOR_SIZE, "logical sector size", 4),
        (PHYSICAL_SECTOR_SIZE, "physical sector size", 4),
        (PARENT_LOCATOR, "parent locator", 0),
    ];
    let mut found: [Option<MetadataEntry>; 6] = [None; 6];
    for (i, e) in entries.iter().enumerate() {
        let at = base + 32 + 32 * i as u64;
        match known.iter().position(|(g, _, _)| *g == e.item) {
            Some(k) if found[k].is_some() => {
                return Err(file.corrupt(at, format!("metadata table lists the {} twice", known[k].1)))
            }
            Some(k) => {
                let (_, name, min_len) = known[k];
                let end = e.offset as u64 + e.length as u64;
                if e.length < min_len
                    || e.length > MAX_METADATA_ITEM
                    || (e.length > 0 && (e.offset as usize) < METADATA_TABLE_SIZE)
                    || end > region.length as u64
                {
                    return Err(file.corrupt(
                        at,
                        format!(
                            "metadata item {name}: {} bytes at {:#x} does not fit the {}-byte metadata region",
                            e.length, e.offset, region.length
                        ),
                    ));
                }
                found[k] = Some(*e);
            }
            None if e.flags & META_IS_REQUIRED != 0 => {
                return Err(file
                    .unsupported(format!("metadata item {} is marked required and imgport does not know it", e.item)))
            }
            None => {}
        }
    }
    let read_item = |k: usize, len: usize| -> Result<Option<Vec<u8>>> {
        match found[k] {
            None => Ok(None),
            Some(e) => {
                let mut b = vec![0u8; len];
                store.read(&mut b, base + e.offset as u64, &format!("metadata item {}", known[k].1))?;
                Ok(Some(b))
            }
        }
    };
    let missing = |k: usize| file.corrupt(base, format!("the required metadata item {} is missing", known[k].1));

    let params = read_item(0, 8)?.ok_or_else(|| missing(0))?;
    let block_size = le_u32(&params, 0) as u64;
    let flags = le_u32(&params, 4);
    let params_at = base + found[0].map_or(0, |e| e.offset as u64);
    if flags & PARAM_HAS_PARENT != 0 {
        return Err(file.unsupported(
            "differencing VHDX (HasParent is set): it holds only the changes against a parent disk; \
             imgport reads self-contained VHDX only. Merge it into its parent first (Hyper-V: Merge-VHD)",
        ));
    }
    if !block_size.is_power_of_two() || !(BLOCK_SIZE_MIN..=BLOCK_SIZE_MAX).contains(&block_size) {
        return Err(
            file.corrupt(params_at, format!("block size {block_size} is not a power of two between 1 MiB and 256 MiB"))
        );
    }

    let lss = read_item(3, 4)?.ok_or_else(|| missing(3))?;
    let logical_sector_size = le_u32(&lss, 0);
    if logical_sector_size != 512 && logical_sector_size != 4096 {
        return Err(file.corrupt(
            base + found[3].map_or(0, |e| e.offset as u64),
            format!("logical sector size {logical_sector_size} is neither 512 nor 4096"),
        ));
    }
    let pss = read_item(4, 4)?.ok_or_else(|| missing(4))?;
    let physical_sector_size = le_u32(&pss, 0);
    if physical_sector_size != 512 && physical_sector_size != 4096 {
        notes.push(Note::Warning(Finding::new(
            "physical sector size",
            Some(base + found[4].map_or(0, |e| e.offset as u64)),
            format!("{physical_sector_size} is neither 512 nor 4096"),
        )));
    }

    let size = read_item(1, 8)?.ok_or_else(|| missing(1))?;
    let declared = le_u64(&size, 0);
    let size_at = base + found[1].map_or(0, |e| e.offset as u64);
    if declared > MAX_VIRTUAL_SIZE {
        return Err(file.unsupported(format!("virtual size {declared} is larger than the 64 TiB VHDX allows")));
    }
    // Like qemu, a size that is not whole sectors is cut to whole sectors.
    let virtual_size = declared / logical_sector_size as u64 * logical_sector_size as u64;
    if virtual_size != declared {
        notes.push(Note::Warning(Finding::new(
            "virtual disk size",
            Some(size_at),
            format!("{declared} is not a multiple of the {logical_sector_size}-byte sector; read as {virtual_size}"),
        )));
    }

    let page83 = read_item(2, 16)?.map(|b| Guid::read(&b, 0));
    if page83.is_none() {
        notes.push(Note::Warning(Finding::new("metadata table", Some(base), "the page 83 data item is missing")));
    }
    Ok(Metadata {
        block_size,
        leave_block_allocated: flags & PARAM_LEAVE_BLOCKS_ALLOCATED != 0,
        virtual_size,
        logical_sector_size,
        physical_sector_size,
        page83,
    })
}

impl DiskImage for VhdxImage {
    fn data_file(&self) -> Option<&ImageFile> {
        // After a log replay the bytes on disk are not the image's bytes: always read through the overlay.
        let store = &self.store;
        (store.overlay().is_empty() && store.len() == store.file.len()).then_some(&store.file)
    }

    fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_bounds(self.virtual_size, offset, buf.len())?;
        let bs = self.block_size;
        let mut pos = 0usize;
        while pos < buf.len() {
            let voff = offset + pos as u64;
            let block = voff / bs;
            let in_block = voff % bs;
            let n = ((bs - in_block) as usize).min(buf.len() - pos);
            match self.locate(block)? {
                Location::Zero => {
                    buf[pos..pos + n].fill(0);
                    pos += n;
                }
                Location::Host(host) => {
                    // Extend over following blocks stored right after this one: one pread for the run.
                    let start = host + in_block;
                    let mut len = n;
                    let mut next = block + 1;
                    while pos + len < buf.len() && self.locate(next)? == Location::Host(start + len as u64) {
                        len += (bs as usize).min(buf.len() - pos - len);
                        next += 1;
                    }
                    self.store.read(&mut buf[pos..pos + len], start, "payload block")?;
                    pos += len;
                }
            }
        }
        Ok(())
    }

    fn map(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        let end = offset.saturating_add(length).min(self.virtual_size);
        let bs = self.block_size;
        let overlay = self.store.overlay();
        let mut list = ExtentList::new();
        let mut pos = offset;
        while pos < end {
            let block = pos / bs;
            let in_block = pos % bs;
            let n = (bs - in_block).min(end - pos);
            let (entry, _) = self.entry(block);
            let extent = match entry & BAT_STATE_MASK {
                PAYLOAD_NOT_PRESENT | PAYLOAD_UNDEFINED => Extent::unallocated(pos, n),
                PAYLOAD_ZERO | PAYLOAD_UNMAPPED | PAYLOAD_UNMAPPED_V095 => Extent::zero(pos, n),
                // A payload reads refuse (overlapping the BAT, the log, a header, or past the end of the file;
                // an invalid state) is mapped without a host offset: callers then read it, and the read
                // refuses, so no fast path copies metadata out as data. The map itself stays metadata-only.
                _ => match self.locate(block) {
                    Ok(Location::Host(host)) => {
                        let host = host + in_block;
                        // Pages rewritten by the replayed log are not where the BAT says.
                        let host = (!overlay.touches(host, n)).then_some(host);
                        Extent::data(pos, n, host)
                    }
                    Ok(Location::Zero) => Extent::zero(pos, n),
                    Err(_) => Extent::data(pos, n, None),
                },
            };
            list.push(extent);
            pos += n;
        }
        Ok(list.into_vec())
    }

    fn map_granularity(&self) -> u64 {
        // Blocks are wholly present or not (partial presence is refused).
        self.block_size
    }

    fn details(&self) -> ImageDetails {
        let mut d = ImageDetails::new(Format::Vhdx);
        d.subformat = Some(if self.info.leave_block_allocated { "fixed" } else { "dynamic" }.to_string());
        d.cluster_size = Some(self.block_size);
        d.specific = Some(crate::FormatInfo::Vhdx(self.info.clone()));
        d
    }

    fn check(&self) -> Result<CheckReport> {
        Ok(self.check_report())
    }
}
