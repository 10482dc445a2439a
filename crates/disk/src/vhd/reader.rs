//! Opening and reading fixed and dynamic VHDs.
//!
//! Reads are bit-exact with qemu's `vpc` driver: the virtual size follows qemu's creator rule, a fixed
//! disk reads the file directly (zeros past its end), and an allocated dynamic block is read whole — the
//! sector bitmap in front of it is ignored, as qemu does. Unlike qemu, the footer at the end of the file is
//! the authoritative one (the spec says so), and BAT entries that point past the end of the file, into
//! metadata or into each other do not stop the image from opening: reads of those blocks fail instead,
//! and `check` lists them.

use super::footer::{
    bitmap_size, text4, DynHeader, Footer, SizeSource, BAT_UNALLOCATED, DISK_TYPE_DIFFERENCING, DISK_TYPE_DYNAMIC,
    DISK_TYPE_FIXED, DYN_HEADER_SIZE, FOOTER_SIZE,
};
use super::VhdInfo;
use crate::error::{Error, Result};
use crate::file::ImageFile;
use crate::image::{check_bounds, CheckReport, DiskImage, Extent, ExtentList, Finding, ImageDetails};
use crate::open::OpenCtx;
use crate::probe::Format;

/// Most BAT entries loaded (64 MiB of table: 32 TiB of disk at the default 2 MiB block size). Bounds
/// memory on hostile headers; the overlap check needs as much again for its sort.
pub(crate) const MAX_BAT_ENTRIES: u64 = 16 << 20;

/// What is wrong with a BAT entry's block, found at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum BlockTrouble {
    None = 0,
    PastEof = 1,
    OverlapsMetadata = 2,
    OverlapsBlock = 3,
}

pub(crate) struct VhdImage {
    pub(crate) file: ImageFile,
    pub(crate) footer: Footer,
    /// Where the footer in use was read (EOF - 512, or 0 when only the copy was usable).
    pub(crate) footer_offset: u64,
    pub(crate) virtual_size: u64,
    pub(crate) size_source: SizeSource,
    pub(crate) layout: Layout,
    /// Problems noticed while opening (checksums ignored, footer copies disagreeing...), repeated by `check`.
    pub(crate) open_findings: CheckReport,
}

pub(crate) enum Layout {
    Fixed,
    Dynamic(Dynamic),
}

pub(crate) struct Dynamic {
    pub(crate) header_offset: u64,
    pub(crate) header: DynHeader,
    pub(crate) block_size: u64,
    pub(crate) bitmap_size: u64,
    pub(crate) bat_offset: u64,
    /// The entries covering the virtual disk (the header may declare more).
    pub(crate) bat: Vec<u32>,
    /// One [`BlockTrouble`] per BAT entry.
    trouble: Vec<u8>,
    /// File ranges holding metadata: (start, end, name).
    pub(crate) metadata: Vec<(u64, u64, &'static str)>,
}

impl Dynamic {
    /// Where the block of BAT entry `entry` starts (its sector bitmap).
    pub(crate) fn block_start(entry: u32) -> u64 {
        entry as u64 * 512
    }
    /// End of the block of BAT entry `entry` (bitmap and data).
    pub(crate) fn block_end(&self, entry: u32) -> u64 {
        Self::block_start(entry) + self.bitmap_size + self.block_size
    }
    pub(crate) fn trouble(&self, index: usize) -> BlockTrouble {
        match self.trouble.get(index).copied().unwrap_or(0) {
            1 => BlockTrouble::PastEof,
            2 => BlockTrouble::OverlapsMetadata,
            3 => BlockTrouble::OverlapsBlock,
            _ => BlockTrouble::None,
        }
    }
    /// Where BAT entry `index` is stored in the file.
    pub(crate) fn entry_offset(&self, index: usize) -> u64 {
        self.bat_offset + index as u64 * 4
    }
    /// What is wrong with the block of BAT entry `index`, if anything.
    pub(crate) fn describe_trouble(&self, index: usize, file_len: u64) -> Option<String> {
        let entry = *self.bat.get(index)?;
        let (start, end) = (Self::block_start(entry), self.block_end(entry));
        let what = match self.trouble(index) {
            BlockTrouble::None => return None,
            BlockTrouble::PastEof => format!("ends at {end:#x}, past the end of the file ({file_len:#x} bytes)"),
            BlockTrouble::OverlapsMetadata => {
                let name = self.metadata.iter().find(|m| start < m.1 && m.0 < end).map_or("metadata", |m| m.2);
                format!("overlaps the {name}")
            }
            BlockTrouble::OverlapsBlock => "overlaps another block".to_string(),
        };
        Some(format!("block at {start:#x}..{end:#x} {what}"))
    }
}

fn checksum_mismatch(what: &str, stored: u32, computed: u32) -> String {
    format!("{what} checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")
}

pub(crate) fn open(file: ImageFile, ctx: &mut OpenCtx) -> Result<Box<dyn DiskImage>> {
    Ok(Box::new(open_image(file, ctx.options.ignore_checksums)?))
}

pub(crate) fn open_image(file: ImageFile, ignore_checksums: bool) -> Result<VhdImage> {
    let len = file.len();
    if len < FOOTER_SIZE {
        return Err(file.invalid(0, format!("file of {len} bytes is too small for a VHD footer (512 bytes)")));
    }
    let mut head = [0u8; 512];
    let mut tail = [0u8; 512];
    file.read_exact_at(&mut head, 0, "VHD footer copy")?;
    let tail_at = len - FOOTER_SIZE;
    file.read_exact_at(&mut tail, tail_at, "VHD footer")?;
    let (head_f, tail_f) = (Footer::parse(&head), Footer::parse(&tail));
    let head_sum = Footer::computed_checksum(&head);
    let tail_sum = Footer::computed_checksum(&tail);
    let head_good = head_f.has_cookie() && head_f.checksum == head_sum;
    let tail_good = tail_f.has_cookie() && tail_f.checksum == tail_sum;
    let mut notes = CheckReport::default();

    let (footer, footer_offset) = if tail_good {
        (tail_f, tail_at)
    } else if head_good {
        let why = if tail_f.has_cookie() {
            format!("has a bad checksum (stored {:#010x}, computed {tail_sum:#010x})", tail_f.checksum)
        } else {
            "is missing (truncated or overwritten?)".to_string()
        };
        notes.warnings.push(Finding::new(
            "footer",
            Some(tail_at),
            format!("the footer at the end of the file {why}; using the copy at offset 0"),
        ));
        (head_f.clone(), 0)
    } else {
        // No footer with a good checksum: refuse, unless told to proceed.
        let (f, at, computed, what) = if tail_f.has_cookie() {
            (tail_f, tail_at, tail_sum, "footer")
        } else if head_f.has_cookie() {
            (head_f.clone(), 0, head_sum, "footer copy")
        } else {
            return Err(file.invalid(tail_at, "no VHD footer ('conectix') at the end of the file or at offset 0"));
        };
        let msg = checksum_mismatch(&format!("VHD {what}"), f.checksum, computed);
        if !ignore_checksums {
            return Err(file.corrupt(at, format!("{msg} (--ignore-checksums proceeds anyway)")));
        }
        notes.warnings.push(Finding::new(what, Some(at), format!("{msg}; ignored as requested")));
        (f, at)
    };

    match footer.disk_type {
        DISK_TYPE_FIXED | DISK_TYPE_DYNAMIC => {}
        DISK_TYPE_DIFFERENCING => return Err(differencing_error(&file, &footer)),
        t => {
            return Err(file.invalid(
                footer_offset + 60,
                format!("unknown VHD disk type {t} (expected 2 fixed, 3 dynamic or 4 differencing)"),
            ))
        }
    }

    // Compare the two footers of a dynamic disk (a fixed disk has only one).
    if footer_offset == tail_at && footer.disk_type == DISK_TYPE_DYNAMIC {
        if !head_f.has_cookie() {
            notes.warnings.push(Finding::new(
                "footer copy",
                Some(0),
                "no footer copy at offset 0 (qemu does not recognise the image without it)",
            ));
        } else if head_f.checksum != head_sum {
            notes.warnings.push(Finding::new(
                "footer copy",
                Some(0),
                format!(
                    "{}; the footer at the end of the file is used",
                    checksum_mismatch("footer copy", head_f.checksum, head_sum)
                ),
            ));
        } else if head != tail {
            let layout = head_f.layout_differences(&footer);
            let finding = |msg: String| Finding::new("footer copy", Some(0), msg);
            if layout.is_empty() {
                notes.warnings.push(finding(
                    "the footer copy at offset 0 differs from the footer at the end of the file (timestamp, id \
                     or flags only); the footer at the end is used"
                        .to_string(),
                ));
            } else {
                notes.corruptions.push(finding(format!(
                    "the footer copy at offset 0 differs from the footer at the end of the file in: {}; the \
                     footer at the end is used (qemu uses the copy)",
                    layout.join(", ")
                )));
            }
        }
    }

    let (virtual_size, size_source) = footer.virtual_size();
    let layout = if footer.disk_type == DISK_TYPE_FIXED {
        Layout::Fixed
    } else {
        Layout::Dynamic(open_dynamic(&file, &footer, footer_offset, virtual_size, ignore_checksums, &mut notes)?)
    };
    Ok(VhdImage { file, footer, footer_offset, virtual_size, size_source, layout, open_findings: notes })
}

/// Read and validate the dynamic header, the part of the BAT that covers the disk, and each block's place.
fn open_dynamic(
    file: &ImageFile,
    footer: &Footer,
    footer_offset: u64,
    virtual_size: u64,
    ignore_checksums: bool,
    notes: &mut CheckReport,
) -> Result<Dynamic> {
    let len = file.len();
    let header_offset = footer.data_offset;
    let header = read_dyn_header(file, header_offset, ignore_checksums, notes)?;
    let block_size = header.block_size as u64;
    if !block_size.is_power_of_two() || block_size < 512 {
        return Err(file.invalid(
            header_offset + 32,
            format!("dynamic disk header: block size {block_size} is not a power of two of at least 512"),
        ));
    }
    let bitmap_size = bitmap_size(block_size);
    let needed = virtual_size.div_ceil(block_size);
    let declared = header.max_table_entries as u64;
    if declared < needed {
        return Err(file.corrupt(
            header_offset + 28,
            format!(
                "BAT too small: {declared} entries of {block_size} bytes cannot hold the {virtual_size}-byte disk \
                 ({needed} needed)"
            ),
        ));
    }
    let bat_offset = header.table_offset;
    let bat_bytes = declared * 4;
    if bat_offset.checked_add(bat_bytes).is_none_or(|end| end > len) {
        return Err(file.corrupt(
            header_offset + 16,
            format!(
                "BAT of {declared} entries at {bat_offset:#x} extends past the end of the file ({len} bytes): \
                 truncated image or bad max table entries"
            ),
        ));
    }
    if needed > MAX_BAT_ENTRIES {
        return Err(file.unsupported(format!(
            "BAT of {needed} entries is larger than imgport's limit of {MAX_BAT_ENTRIES} entries"
        )));
    }
    let bat = read_bat(file, bat_offset, needed as usize)?;

    let mut metadata = vec![
        (0, FOOTER_SIZE, "footer copy"),
        (header_offset, header_offset.saturating_add(DYN_HEADER_SIZE), "dynamic disk header"),
        (bat_offset, bat_offset + bat_bytes.div_ceil(512) * 512, "BAT"),
    ];
    if footer_offset == len - FOOTER_SIZE {
        metadata.push((footer_offset, len, "footer"));
    }
    let mut dynamic =
        Dynamic { header_offset, header, block_size, bitmap_size, bat_offset, bat, trouble: Vec::new(), metadata };
    dynamic.trouble = find_block_trouble(&dynamic, len);
    Ok(dynamic)
}

/// Read the dynamic disk header at `offset`, checking its cookie and (unless told not to) its checksum.
pub(crate) fn read_dyn_header(
    file: &ImageFile,
    offset: u64,
    ignore_checksums: bool,
    notes: &mut CheckReport,
) -> Result<DynHeader> {
    let mut raw = [0u8; 1024];
    file.read_exact_at(&mut raw, offset, "dynamic disk header")?;
    let header = DynHeader::parse(&raw);
    if !header.has_cookie() {
        return Err(file.invalid(offset, "no dynamic disk header ('cxsparse') at the footer's data offset"));
    }
    let computed = DynHeader::computed_checksum(&raw);
    if header.checksum != computed {
        let msg = checksum_mismatch("dynamic disk header", header.checksum, computed);
        if !ignore_checksums {
            return Err(file.corrupt(offset, format!("{msg} (--ignore-checksums proceeds anyway)")));
        }
        notes.warnings.push(Finding::new("dynamic disk header", Some(offset), format!("{msg}; ignored as requested")));
    }
    Ok(header)
}

fn read_bat(file: &ImageFile, offset: u64, entries: usize) -> Result<Vec<u32>> {
    let mut bat = Vec::with_capacity(entries);
    let mut chunk = vec![0u8; (entries * 4).min(1 << 20)];
    let mut done = 0usize;
    while done < entries {
        let n = (entries - done).min(chunk.len() / 4);
        let buf = &mut chunk[..n * 4];
        file.read_exact_at(buf, offset + done as u64 * 4, "BAT")?;
        bat.extend(buf.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])));
        done += n;
    }
    Ok(bat)
}

/// Classify every allocated block: past the end of the file, overlapping metadata, overlapping another block.
fn find_block_trouble(d: &Dynamic, file_len: u64) -> Vec<u8> {
    let mut trouble = vec![BlockTrouble::None as u8; d.bat.len()];
    let mut allocated: Vec<u32> = Vec::new();
    for (i, &entry) in d.bat.iter().enumerate() {
        if entry == BAT_UNALLOCATED {
            continue;
        }
        let (start, end) = (Dynamic::block_start(entry), d.block_end(entry));
        if end > file_len {
            trouble[i] = BlockTrouble::PastEof as u8;
        } else if d.metadata.iter().any(|m| start < m.1 && m.0 < end) {
            trouble[i] = BlockTrouble::OverlapsMetadata as u8;
        }
        allocated.push(i as u32);
    }
    allocated.sort_unstable_by_key(|&i| d.bat[i as usize]);
    // Sweep in host order, remembering the block reaching furthest so far.
    let mut furthest: Option<(u64, usize)> = None;
    for &i in &allocated {
        let i = i as usize;
        let entry = d.bat[i];
        if let Some((end, j)) = furthest {
            if Dynamic::block_start(entry) < end {
                for k in [i, j] {
                    if trouble[k] == BlockTrouble::None as u8 {
                        trouble[k] = BlockTrouble::OverlapsBlock as u8;
                    }
                }
            }
        }
        let end = d.block_end(entry);
        if furthest.is_none_or(|(e, _)| end > e) {
            furthest = Some((end, i));
        }
    }
    trouble
}

fn differencing_error(file: &ImageFile, footer: &Footer) -> Error {
    // The parent's name is in the dynamic header; name it when the header can be read.
    let mut ignored = CheckReport::default();
    let parent = read_dyn_header(file, footer.data_offset, true, &mut ignored)
        .ok()
        .map(|h| h.parent_name)
        .filter(|n| !n.is_empty());
    let msg = match parent {
        Some(name) => format!(
            "differencing VHD (disk type 4) with parent \"{name}\" is not supported: merge it into its parent \
             first (for example with Hyper-V's Merge-VHD or `qemu-img convert` of the chain)"
        ),
        None => "differencing VHD (disk type 4) is not supported: merge it into its parent first".to_string(),
    };
    file.unsupported(msg)
}

impl VhdImage {
    /// A fixed disk is the file itself: map its holes (SEEK_HOLE) so converters never read them.
    fn map_fixed(&self, offset: u64, end: u64, list: &mut ExtentList) {
        let in_file = end.min(self.file.len());
        self.file.map_allocation(offset, in_file, list);
        let pos = offset.max(in_file);
        // Past the end of the file qemu reads zeros.
        if end > pos {
            list.push(Extent::unallocated(pos, end - pos));
        }
    }

    fn info(&self) -> VhdInfo {
        let f = &self.footer;
        let dynamic = match &self.layout {
            Layout::Dynamic(d) => Some(d),
            Layout::Fixed => None,
        };
        VhdInfo {
            disk_type: if dynamic.is_some() { "dynamic" } else { "fixed" },
            creator_app: text4(&f.creator_app),
            creator_version: format!("{}.{}", f.creator_version >> 16, f.creator_version & 0xffff),
            creator_host_os: text4(&f.creator_host_os),
            cylinders: f.cylinders,
            heads: f.heads,
            sectors_per_track: f.sectors_per_track,
            current_size: f.current_size,
            original_size: f.original_size,
            size_source: self.size_source.as_str(),
            block_size: dynamic.map(|d| d.block_size),
            max_table_entries: dynamic.map(|d| d.header.max_table_entries),
            unique_id: crate::guid::big_endian(&f.unique_id),
            timestamp: f.timestamp,
            timestamp_utc: super::footer::timestamp_utc(f.timestamp),
            saved_state: f.saved_state != 0,
            footer_offset: self.footer_offset,
        }
    }
}

impl DiskImage for VhdImage {
    fn data_file(&self) -> Option<&ImageFile> {
        Some(&self.file)
    }

    fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_bounds(self.virtual_size, offset, buf.len())?;
        let d = match &self.layout {
            // qemu reads a fixed disk straight from the file (zeros past its end).
            Layout::Fixed => return self.file.read_zero_padded(buf, offset, "data"),
            Layout::Dynamic(d) => d,
        };
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let index = (pos / d.block_size) as usize;
            let in_block = pos % d.block_size;
            let n = ((d.block_size - in_block) as usize).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            match d.bat.get(index).copied() {
                None | Some(BAT_UNALLOCATED) => out.fill(0),
                Some(entry) => {
                    if let Some(msg) = d.describe_trouble(index, self.file.len()) {
                        return Err(self.file.corrupt(d.entry_offset(index), format!("BAT entry {index}: {msg}")));
                    }
                    let host = Dynamic::block_start(entry) + d.bitmap_size + in_block;
                    self.file.read_exact_at(out, host, "data block")?;
                }
            }
            done += n;
        }
        Ok(())
    }

    fn map(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        let end = offset.saturating_add(length).min(self.virtual_size);
        let mut list = ExtentList::new();
        match &self.layout {
            Layout::Fixed => self.map_fixed(offset, end, &mut list),
            Layout::Dynamic(d) => {
                let mut pos = offset;
                while pos < end {
                    let index = (pos / d.block_size) as usize;
                    let in_block = pos % d.block_size;
                    let n = (d.block_size - in_block).min(end - pos);
                    match d.bat.get(index).copied() {
                        None | Some(BAT_UNALLOCATED) => list.push(Extent::unallocated(pos, n)),
                        Some(entry) => {
                            // A block reads refuse (over the footer, the headers or the BAT, or past the end)
                            // is mapped without a host offset: callers then read it, and the read refuses, so
                            // no fast path copies metadata out as data. The map itself stays metadata-only.
                            let host = (d.describe_trouble(index, self.file.len()).is_none())
                                .then(|| Dynamic::block_start(entry) + d.bitmap_size + in_block);
                            list.push(Extent::data(pos, n, host));
                        }
                    }
                    pos += n;
                }
            }
        }
        Ok(list.into_vec())
    }

    fn map_granularity(&self) -> u64 {
        match &self.layout {
            // Holes of the file, found a filesystem block at a time.
            Layout::Fixed => 4096,
            // Blocks are mapped whole.
            Layout::Dynamic(d) => d.block_size,
        }
    }

    fn details(&self) -> ImageDetails {
        let mut d = ImageDetails::new(Format::Vhd);
        let info = self.info();
        d.subformat = Some(info.disk_type.to_string());
        // qemu-img reports the block size as the cluster size of a dynamic VHD and none for a fixed one.
        d.cluster_size = info.block_size;
        d.specific = Some(crate::FormatInfo::Vhd(info));
        d
    }

    fn check(&self) -> Result<CheckReport> {
        Ok(super::check::check(self))
    }
}

#[cfg(test)]
mod tests {
    use super::super::footer::{DynHeader, Footer, FOOTER_COOKIE};
    use super::*;
    use crate::ErrorKind;
    use std::io::Write;

    const BS: u64 = 4096;

    fn footer(size: u64, disk_type: u32, data_offset: u64) -> Footer {
        let mut f = Footer::parse(&[0u8; 512]);
        f.cookie = *FOOTER_COOKIE;
        f.format_version = 0x0001_0000;
        f.creator_app = *b"qem2";
        f.current_size = size;
        f.original_size = size;
        (f.cylinders, f.heads, f.sectors_per_track) = (65535, 16, 255);
        f.disk_type = disk_type;
        f.data_offset = data_offset;
        f
    }

    /// A dynamic VHD of 4 blocks of 4 KiB: header at 512, BAT at 1536, blocks from 2048 in BAT order,
    /// block i filled with byte i + 1; `bat` entries given in blocks-from-2048 units (None: unallocated).
    fn dynamic(bat: [Option<u32>; 4]) -> Vec<u8> {
        let size = 4 * BS;
        let f = footer(size, DISK_TYPE_DYNAMIC, 512).to_bytes();
        let mut out = Vec::new();
        out.extend_from_slice(&f);
        out.extend_from_slice(&DynHeader::new_bytes(1536, 4, BS as u32));
        let mut table = [0xFFu8; 512];
        let span = 512 + BS;
        let mut blocks = 0;
        for (i, e) in bat.iter().enumerate() {
            if let Some(n) = e {
                let sector = ((2048 + *n as u64 * span) / 512) as u32;
                table[i * 4..i * 4 + 4].copy_from_slice(&sector.to_be_bytes());
                blocks = blocks.max(n + 1);
            }
        }
        out.extend_from_slice(&table);
        for n in 0..blocks {
            let i = bat.iter().position(|e| *e == Some(n)).unwrap_or(0);
            out.extend_from_slice(&[0xFF; 512]);
            out.extend(std::iter::repeat_n(i as u8 + 1, BS as usize));
        }
        out.extend_from_slice(&f);
        out
    }

    fn open_bytes(bytes: &[u8], ignore: bool) -> Result<VhdImage> {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(bytes).unwrap();
        open_image(ImageFile::open(t.path()).unwrap(), ignore)
    }

    fn read_all(img: &VhdImage) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; img.virtual_size as usize];
        img.read_at(&mut buf, 0)?;
        Ok(buf)
    }

    #[test]
    fn reads_allocated_and_unallocated_blocks() {
        let img = open_bytes(&dynamic([Some(1), None, Some(0), None]), false).unwrap();
        let data = read_all(&img).unwrap();
        assert!(data[..4096].iter().all(|&b| b == 1));
        assert!(data[4096..8192].iter().all(|&b| b == 0));
        assert!(data[8192..12288].iter().all(|&b| b == 3));
        let map = img.map(0, 4 * BS).unwrap();
        assert_eq!(map.len(), 4);
        assert_eq!(map[0].host_offset(), Some(2048 + 4608 + 512));
        assert!(img.check().unwrap().is_clean());
        // A read across blocks.
        let mut buf = [0u8; 10];
        img.read_at(&mut buf, 4091).unwrap();
        assert_eq!(buf, [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
        assert_eq!(img.read_at(&mut buf, 4 * BS - 5).unwrap_err().kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn overlapping_blocks_fail_only_their_reads() {
        let mut v = dynamic([Some(0), None, Some(1), None]);
        // Entry 1 names entry 0's block.
        v[1536 + 4..1536 + 8].copy_from_slice(&4u32.to_be_bytes());
        let img = open_bytes(&v, false).unwrap();
        let mut buf = vec![0u8; BS as usize];
        img.read_at(&mut buf, 2 * BS).unwrap();
        let e = img.read_at(&mut buf, 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::CorruptImage);
        assert!(e.to_string().contains("overlaps another block"), "{e}");
        assert_eq!(img.check().unwrap().corruptions.len(), 2);
    }

    #[test]
    fn bad_block_sizes_and_short_bats_are_refused() {
        let mut v = dynamic([None; 4]);
        let mut header: [u8; 1024] = v[512..1536].try_into().unwrap();
        header[32..36].copy_from_slice(&3000u32.to_be_bytes());
        let sum = DynHeader::computed_checksum(&header);
        header[36..40].copy_from_slice(&sum.to_be_bytes());
        v[512..1536].copy_from_slice(&header);
        let e = open_bytes(&v, false).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidFormat);
        assert!(e.to_string().contains("power of two"), "{e}");

        header[32..36].copy_from_slice(&(BS as u32).to_be_bytes());
        header[28..32].copy_from_slice(&3u32.to_be_bytes());
        let sum = DynHeader::computed_checksum(&header);
        header[36..40].copy_from_slice(&sum.to_be_bytes());
        v[512..1536].copy_from_slice(&header);
        let e = open_bytes(&v, false).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::CorruptImage);
        assert!(e.to_string().contains("BAT too small"), "{e}");

        // max_table_entries huge: the BAT would run past the end of the file; nothing is allocated for it.
        header[28..32].copy_from_slice(&u32::MAX.to_be_bytes());
        let sum = DynHeader::computed_checksum(&header);
        header[36..40].copy_from_slice(&sum.to_be_bytes());
        v[512..1536].copy_from_slice(&header);
        let e = open_bytes(&v, false).err().unwrap();
        assert!(e.to_string().contains("extends past the end of the file"), "{e}");
    }

    #[test]
    fn footer_selection() {
        let good = dynamic([Some(0), None, None, None]);
        let n = good.len();
        // Neither footer: not a VHD.
        let mut v = good.clone();
        v[0] = b'x';
        v[n - 512] = b'x';
        assert_eq!(open_bytes(&v, false).err().unwrap().kind(), ErrorKind::InvalidFormat);
        // Both checksums bad: refused, or the EOF one used when ignoring checksums.
        let mut v = good.clone();
        v[200] ^= 1;
        v[n - 312] ^= 1;
        assert_eq!(open_bytes(&v, false).err().unwrap().kind(), ErrorKind::CorruptImage);
        let img = open_bytes(&v, true).unwrap();
        assert_eq!(img.footer_offset, n as u64 - 512);
        assert_eq!(img.check().unwrap().warnings.len(), 2);
        // A tiny file.
        assert_eq!(open_bytes(&[0u8; 100], false).err().unwrap().kind(), ErrorKind::InvalidFormat);
    }

    #[test]
    fn fixed_disk_reads_the_file_and_zeros_past_its_end() {
        let mut v = vec![9u8; 8192];
        v.extend_from_slice(&footer(8192, DISK_TYPE_FIXED, u64::MAX).to_bytes());
        let img = open_bytes(&v, false).unwrap();
        assert_eq!(img.virtual_size, 8192);
        assert!(read_all(&img).unwrap().iter().all(|&b| b == 9));
        assert!(img.check().unwrap().is_clean());
        assert!(img.details().cluster_size.is_none());
        // Claiming more than the file holds.
        let n = v.len();
        v[n - 512..].copy_from_slice(&footer(16384, DISK_TYPE_FIXED, u64::MAX).to_bytes());
        let img = open_bytes(&v, false).unwrap();
        let data = read_all(&img).unwrap();
        assert_eq!(&data[8192..8200], b"conectix");
        assert!(data[8704..].iter().all(|&b| b == 0));
        assert_eq!(img.check().unwrap().exit_code(), 2);
    }

    #[test]
    fn differencing_names_its_parent() {
        let mut v = dynamic([None; 4]);
        let n = v.len();
        let f = footer(4 * BS, DISK_TYPE_DIFFERENCING, 512).to_bytes();
        v[..512].copy_from_slice(&f);
        v[n - 512..].copy_from_slice(&f);
        let name: Vec<u8> = "C:\\vms\\base.vhd".encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
        v[512 + 64..512 + 64 + name.len()].copy_from_slice(&name);
        let e = open_bytes(&v, false).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::UnsupportedFeature);
        assert!(e.to_string().contains("C:\\vms\\base.vhd"), "{e}");
    }
}
