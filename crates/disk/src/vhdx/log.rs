//! The VHDX metadata log, replayed in memory.
//!
//! A VHDX whose current header has a non-zero log GUID may hold metadata updates (BAT pages, metadata items)
//! that were journaled but never written in place: the spec requires replaying the log before reading
//! anything. qemu only does that by writing to the image, and refuses a read-only open. imgport never writes
//! its input, so the replay builds an [`Overlay`] of 4 KiB pages (and zeroed ranges) that every later read
//! of the file goes through.
//!
//! The log is a circular buffer of 4 KiB sectors. An entry is a 64-byte header and 32-byte descriptors
//! (data or zero) filling whole sectors, followed by one data sector per data descriptor; a CRC-32C covers
//! the whole entry. The active sequence is the run of contiguous entries with consecutive sequence numbers,
//! from the entry named by the newest (head) entry's `tail` field to that head, with the largest head
//! sequence number.

use super::format::{Guid, MIB};
use crate::error::{Error, Result};
use crate::file::{le_u32, le_u64, ImageFile};
use std::collections::BTreeMap;

pub const LOG_SECTOR: u64 = 4096;
const ENTRY_SIGNATURE: &[u8; 4] = b"loge";
const DATA_DESCRIPTOR: &[u8; 4] = b"desc";
const ZERO_DESCRIPTOR: &[u8; 4] = b"zero";
const DATA_SECTOR: &[u8; 4] = b"data";
const ENTRY_HEADER_LEN: u64 = 64;
const DESCRIPTOR_LEN: u64 = 32;
/// Logs larger than this are refused rather than read into memory (Hyper-V and qemu use 1 MiB).
pub const MAX_LOG_LENGTH: u64 = 32 * MIB;
/// Replayed descriptors may not reach past this file offset (far beyond any valid VHDX).
const MAX_TARGET_OFFSET: u64 = 1 << 50;

/// Pages written by the log, and ranges it zeroed, keyed by file offset; later writes win.
#[derive(Debug, Default)]
pub struct Overlay {
    pages: BTreeMap<u64, Box<[u8]>>,
    /// Zeroed ranges, start -> end, disjoint and not adjacent to a page they would contradict.
    zeros: BTreeMap<u64, u64>,
}

impl Overlay {
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty() && self.zeros.is_empty()
    }

    /// The highest file offset the overlay writes to.
    pub fn end(&self) -> u64 {
        let pages = self.pages.keys().next_back().map_or(0, |&p| p + LOG_SECTOR);
        let zeros = self.zeros.values().next_back().copied().unwrap_or(0);
        pages.max(zeros)
    }

    /// Record a 4 KiB page written at `offset` (4 KiB aligned).
    pub fn write_page(&mut self, offset: u64, page: Box<[u8]>) {
        debug_assert_eq!(page.len() as u64, LOG_SECTOR);
        self.unzero(offset, offset + LOG_SECTOR);
        self.pages.insert(offset, page);
    }

    /// Record `[start, end)` as zeroed (4 KiB aligned).
    pub fn write_zeros(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let covered: Vec<u64> = self.pages.range(start..end).map(|(&k, _)| k).collect();
        for k in covered {
            self.pages.remove(&k);
        }
        // Merge with every zero range touching [start, end).
        let (mut s, mut e) = (start, end);
        let touching: Vec<(u64, u64)> =
            self.zeros.range(..=end).rev().take_while(|(_, &re)| re >= start).map(|(&rs, &re)| (rs, re)).collect();
        for (rs, re) in touching {
            self.zeros.remove(&rs);
            s = s.min(rs);
            e = e.max(re);
        }
        self.zeros.insert(s, e);
    }

    /// Remove `[start, end)` from the zeroed ranges (a later page write supersedes them).
    fn unzero(&mut self, start: u64, end: u64) {
        let hit: Vec<(u64, u64)> =
            self.zeros.range(..end).rev().take_while(|(_, &re)| re > start).map(|(&rs, &re)| (rs, re)).collect();
        for (rs, re) in hit {
            self.zeros.remove(&rs);
            if rs < start {
                self.zeros.insert(rs, start);
            }
            if re > end {
                self.zeros.insert(end, re);
            }
        }
    }

    /// True when the overlay changes any byte of `[offset, offset + len)`.
    pub fn touches(&self, offset: u64, len: u64) -> bool {
        let end = offset.saturating_add(len);
        self.pages.range(offset.saturating_sub(LOG_SECTOR - 1)..end).next().is_some()
            || self.zeros.range(..end).next_back().is_some_and(|(_, &re)| re > offset)
    }

    /// Apply the overlay to `buf`, which holds the file's bytes at `offset`.
    pub fn patch(&self, buf: &mut [u8], offset: u64) {
        let end = offset + buf.len() as u64;
        for (&zs, &ze) in self.zeros.range(..end).rev().take_while(|(_, &ze)| ze > offset) {
            let a = zs.max(offset) - offset;
            let b = ze.min(end) - offset;
            buf[a as usize..b as usize].fill(0);
        }
        for (&ps, page) in self.pages.range(offset.saturating_sub(LOG_SECTOR - 1)..end) {
            let a = ps.max(offset);
            let b = (ps + LOG_SECTOR).min(end);
            if a < b {
                buf[(a - offset) as usize..(b - offset) as usize]
                    .copy_from_slice(&page[(a - ps) as usize..(b - ps) as usize]);
            }
        }
    }
}

/// The outcome of replaying a log.
#[derive(Debug)]
pub struct Replay {
    pub overlay: Overlay,
    /// Entries replayed (0 when the log GUID is set but no complete sequence exists).
    pub entries: usize,
    /// The file length after replay: the head entry's LastFileOffset and every replayed write, at least.
    pub file_len: u64,
    pub head_sequence: u64,
}

/// Where the log lives and which entries belong to it.
#[derive(Debug, Clone, Copy)]
pub struct LogLocation {
    pub offset: u64,
    pub length: u64,
    pub guid: Guid,
}

/// One valid log entry found in the buffer.
#[derive(Debug, Clone, Copy)]
struct Entry {
    sectors: u64,
    sequence: u64,
    tail_sector: u64,
    descriptors: u64,
    flushed_file_offset: u64,
    last_file_offset: u64,
}

/// The log buffer in memory, read as a ring of 4 KiB sectors.
struct Ring<'a> {
    buf: &'a [u8],
    sectors: u64,
}

impl Ring<'_> {
    /// Bytes `[pos, pos + len)` of the entry starting at `sector`, wrapping at the end of the log.
    /// `len` never exceeds the log length, so at most two pieces.
    fn copy(&self, sector: u64, pos: u64, out: &mut [u8]) {
        let total = self.sectors * LOG_SECTOR;
        let mut at = (sector * LOG_SECTOR + pos) % total;
        let mut done = 0;
        while done < out.len() {
            let n = ((total - at) as usize).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.buf[at as usize..at as usize + n]);
            done += n;
            at = 0;
        }
    }

    fn sector(&self, sector: u64) -> &[u8] {
        let s = (sector % self.sectors) as usize * LOG_SECTOR as usize;
        &self.buf[s..s + LOG_SECTOR as usize]
    }

    /// CRC-32C of the `sectors` sectors starting at `sector`, with the entry's checksum field as zero.
    fn entry_crc(&self, sector: u64, sectors: u64) -> u32 {
        let first = self.sector(sector);
        let mut crc = crc32c::crc32c(&first[..4]);
        crc = crc32c::crc32c_append(crc, &[0; 4]);
        crc = crc32c::crc32c_append(crc, &first[8..]);
        for i in 1..sectors {
            crc = crc32c::crc32c_append(crc, self.sector(sector + i));
        }
        crc
    }

    /// Descriptor `k` of the entry at `sector` (descriptors follow the 64-byte header, across sectors).
    fn descriptor(&self, sector: u64, k: u64) -> [u8; DESCRIPTOR_LEN as usize] {
        let mut d = [0u8; DESCRIPTOR_LEN as usize];
        self.copy(sector, ENTRY_HEADER_LEN + k * DESCRIPTOR_LEN, &mut d);
        d
    }
}

/// Sectors holding the header and `count` descriptors.
fn descriptor_sectors(count: u64) -> u64 {
    (ENTRY_HEADER_LEN + count * DESCRIPTOR_LEN).div_ceil(LOG_SECTOR)
}

/// Validate the entry starting at `sector`; `budget` bounds the bytes checksummed over the whole scan.
fn parse_entry(ring: &Ring, sector: u64, guid: &Guid, budget: &mut u64) -> Result<Option<Entry>> {
    let h = ring.sector(sector);
    if &h[0..4] != ENTRY_SIGNATURE {
        return Ok(None);
    }
    let length = le_u32(h, 8) as u64;
    let log_len = ring.sectors * LOG_SECTOR;
    let entry = Entry {
        sectors: length / LOG_SECTOR,
        sequence: le_u64(h, 16),
        tail_sector: le_u32(h, 12) as u64 / LOG_SECTOR,
        descriptors: le_u32(h, 24) as u64,
        flushed_file_offset: le_u64(h, 48),
        last_file_offset: le_u64(h, 56),
    };
    let desc_sectors = descriptor_sectors(entry.descriptors);
    if length == 0
        || !length.is_multiple_of(LOG_SECTOR)
        || length > log_len
        || entry.sequence == 0
        || Guid::read(h, 32) != *guid
        || !(le_u32(h, 12) as u64).is_multiple_of(LOG_SECTOR)
        || entry.tail_sector >= ring.sectors
        || desc_sectors > entry.sectors
    {
        return Ok(None);
    }
    *budget = budget.checked_sub(length).ok_or_else(|| {
        Error::corrupt("log holds too many overlapping entries to scan (hostile or badly damaged log)")
    })?;
    if ring.entry_crc(sector, entry.sectors) != le_u32(h, 4) {
        return Ok(None);
    }
    // Every descriptor must be well formed, and every data descriptor needs its data sector.
    let mut data = 0u64;
    for k in 0..entry.descriptors {
        let d = ring.descriptor(sector, k);
        if le_u64(&d, 24) != entry.sequence || !le_u64(&d, 16).is_multiple_of(LOG_SECTOR) {
            return Ok(None);
        }
        match &d[0..4] {
            s if s == ZERO_DESCRIPTOR => {
                if !le_u64(&d, 8).is_multiple_of(LOG_SECTOR) {
                    return Ok(None);
                }
            }
            s if s == DATA_DESCRIPTOR => {
                let at = desc_sectors + data;
                if at >= entry.sectors {
                    return Ok(None);
                }
                let ds = ring.sector(sector + at);
                let seq = (le_u32(ds, 4) as u64) << 32 | le_u32(ds, 4092) as u64;
                if &ds[0..4] != DATA_SECTOR || seq != entry.sequence {
                    return Ok(None);
                }
                data += 1;
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(entry))
}

/// Find the active sequence and build its overlay. `file` is only read.
pub fn replay(file: &ImageFile, loc: &LogLocation) -> Result<Replay> {
    if loc.length > MAX_LOG_LENGTH {
        return Err(file.unsupported(format!(
            "the log ({} MiB) needs replaying and is larger than the {} MiB imgport replays in memory",
            loc.length / MIB,
            MAX_LOG_LENGTH / MIB
        )));
    }
    if loc.offset.saturating_add(loc.length) > file.len() {
        return Err(file.corrupt(
            loc.offset,
            format!(
                "log ({} bytes) extends past the end of the file ({} bytes): truncated image?",
                loc.length,
                file.len()
            ),
        ));
    }
    let mut buf = vec![0u8; loc.length as usize];
    file.read_exact_at(&mut buf, loc.offset, "log")?;
    let ring = Ring { buf: &buf, sectors: loc.length / LOG_SECTOR };
    if ring.sectors == 0 {
        return Ok(Replay { overlay: Overlay::default(), entries: 0, file_len: file.len(), head_sequence: 0 });
    }

    // Every valid entry, by starting sector.
    let mut budget = loc.length.saturating_mul(8).saturating_add(MIB);
    let mut entries: Vec<Option<Entry>> = Vec::with_capacity(ring.sectors as usize);
    for s in 0..ring.sectors {
        entries.push(parse_entry(&ring, s, &loc.guid, &mut budget).map_err(|e| e.in_file(file.path()).at(loc.offset))?);
    }

    // Each valid entry is a candidate head: walk from its tail, entry after contiguous entry, and keep it if
    // the walk reaches it with consecutive sequence numbers. The newest complete sequence wins.
    let mut best: Option<(u64, Vec<(u64, Entry)>)> = None;
    for (head, e) in entries.iter().enumerate() {
        let Some(e) = e else { continue };
        if best.as_ref().is_some_and(|(seq, _)| *seq >= e.sequence) {
            continue;
        }
        let head = head as u64;
        let mut chain = Vec::new();
        let mut at = e.tail_sector;
        let mut walked = 0u64;
        let mut prev_sequence: Option<u64> = None;
        let complete = loop {
            let Some(cur) = entries[at as usize] else { break false };
            if prev_sequence.is_some_and(|p| cur.sequence != p.wrapping_add(1)) {
                break false;
            }
            prev_sequence = Some(cur.sequence);
            chain.push((at, cur));
            walked += cur.sectors;
            if at == head {
                break true;
            }
            if walked >= ring.sectors {
                break false;
            }
            at = (at + cur.sectors) % ring.sectors;
        };
        if complete {
            best = Some((e.sequence, chain));
        }
    }

    let Some((head_sequence, chain)) = best else {
        return Ok(Replay { overlay: Overlay::default(), entries: 0, file_len: file.len(), head_sequence: 0 });
    };
    let mut overlay = Overlay::default();
    let mut file_len = file.len();
    for &(start, e) in &chain {
        if e.flushed_file_offset > file.len() {
            return Err(file.corrupt(
                loc.offset + start * LOG_SECTOR,
                format!(
                    "log entry {} says the file was flushed up to {} bytes but it is only {} bytes: truncated image?",
                    e.sequence,
                    e.flushed_file_offset,
                    file.len()
                ),
            ));
        }
        file_len = file_len.max(e.last_file_offset);
        let desc_sectors = descriptor_sectors(e.descriptors);
        let mut data = 0u64;
        for k in 0..e.descriptors {
            let d = ring.descriptor(start, k);
            let target = le_u64(&d, 16);
            if &d[0..4] == ZERO_DESCRIPTOR {
                let end = target.checked_add(le_u64(&d, 8)).filter(|&end| end <= MAX_TARGET_OFFSET);
                let end = end.ok_or_else(|| {
                    file.corrupt(loc.offset + start * LOG_SECTOR, "log zero descriptor reaches past any valid file")
                })?;
                overlay.write_zeros(target, end);
            } else {
                if target >= MAX_TARGET_OFFSET {
                    return Err(
                        file.corrupt(loc.offset + start * LOG_SECTOR, "log data descriptor points past any valid file")
                    );
                }
                let ds = ring.sector(start + desc_sectors + data);
                data += 1;
                let mut page = vec![0u8; LOG_SECTOR as usize].into_boxed_slice();
                // The first 8 and last 4 bytes of the page travel in the descriptor, in place of the data
                // sector's signature and sequence number.
                page[0..8].copy_from_slice(&d[8..16]);
                page[8..4092].copy_from_slice(&ds[8..4092]);
                page[4092..4096].copy_from_slice(&d[4..8]);
                overlay.write_page(target, page);
            }
        }
    }
    file_len = file_len.max(overlay.end());
    Ok(Replay { overlay, entries: chain.len(), file_len, head_sequence })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build one log entry: `data` pages written at offsets, `zeros` (offset, length) ranges.
    pub(crate) fn build_entry(
        guid: &Guid,
        sequence: u64,
        tail: u32,
        data: &[(u64, Vec<u8>)],
        zeros: &[(u64, u64)],
        flushed: u64,
        last: u64,
    ) -> Vec<u8> {
        let count = (data.len() + zeros.len()) as u64;
        let desc_sectors = descriptor_sectors(count);
        let sectors = desc_sectors + data.len() as u64;
        let mut e = vec![0u8; (sectors * LOG_SECTOR) as usize];
        e[0..4].copy_from_slice(ENTRY_SIGNATURE);
        e[8..12].copy_from_slice(&((sectors * LOG_SECTOR) as u32).to_le_bytes());
        e[12..16].copy_from_slice(&tail.to_le_bytes());
        e[16..24].copy_from_slice(&sequence.to_le_bytes());
        e[24..28].copy_from_slice(&(count as u32).to_le_bytes());
        e[32..48].copy_from_slice(&guid.0);
        e[48..56].copy_from_slice(&flushed.to_le_bytes());
        e[56..64].copy_from_slice(&last.to_le_bytes());
        let mut k = 0usize;
        for (i, (off, page)) in data.iter().enumerate() {
            let d = 64 + 32 * k;
            e[d..d + 4].copy_from_slice(DATA_DESCRIPTOR);
            e[d + 4..d + 8].copy_from_slice(&page[4092..4096]);
            e[d + 8..d + 16].copy_from_slice(&page[0..8]);
            e[d + 16..d + 24].copy_from_slice(&off.to_le_bytes());
            e[d + 24..d + 32].copy_from_slice(&sequence.to_le_bytes());
            let s = ((desc_sectors as usize) + i) * LOG_SECTOR as usize;
            e[s..s + 4].copy_from_slice(DATA_SECTOR);
            e[s + 4..s + 8].copy_from_slice(&((sequence >> 32) as u32).to_le_bytes());
            e[s + 8..s + 4092].copy_from_slice(&page[8..4092]);
            e[s + 4092..s + 4096].copy_from_slice(&(sequence as u32).to_le_bytes());
            k += 1;
        }
        for (off, len) in zeros {
            let d = 64 + 32 * k;
            e[d..d + 4].copy_from_slice(ZERO_DESCRIPTOR);
            e[d + 8..d + 16].copy_from_slice(&len.to_le_bytes());
            e[d + 16..d + 24].copy_from_slice(&off.to_le_bytes());
            e[d + 24..d + 32].copy_from_slice(&sequence.to_le_bytes());
            k += 1;
        }
        super::super::format::seal(&mut e, 4);
        e
    }

    fn log_file(log: &[u8], file_len: u64) -> (tempfile::NamedTempFile, ImageFile) {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), log).unwrap();
        std::fs::OpenOptions::new().write(true).open(tmp.path()).unwrap().set_len(file_len).unwrap();
        let f = ImageFile::open(tmp.path()).unwrap();
        (tmp, f)
    }

    fn page(b: u8) -> Vec<u8> {
        (0..4096).map(|i| b.wrapping_add(i as u8)).collect()
    }

    #[test]
    fn overlay_later_writes_win() {
        let mut o = Overlay::default();
        o.write_page(8192, vec![7u8; 4096].into_boxed_slice());
        o.write_zeros(4096, 4 * 4096);
        assert!(o.pages.is_empty());
        o.write_page(8192, vec![9u8; 4096].into_boxed_slice());
        assert_eq!(o.zeros.iter().map(|(&a, &b)| (a, b)).collect::<Vec<_>>(), vec![(4096, 8192), (12288, 16384)]);
        let mut buf = vec![1u8; 5 * 4096];
        o.patch(&mut buf, 0);
        assert!(buf[..4096].iter().all(|&b| b == 1));
        assert!(buf[4096..8192].iter().all(|&b| b == 0));
        assert!(buf[8192..12288].iter().all(|&b| b == 9));
        assert!(buf[12288..16384].iter().all(|&b| b == 0));
        assert!(buf[16384..].iter().all(|&b| b == 1));
        // Unaligned window.
        let mut small = vec![1u8; 10];
        o.patch(&mut small, 12283);
        assert_eq!(small, [9, 9, 9, 9, 9, 0, 0, 0, 0, 0]);
        assert!(o.touches(12000, 1) && !o.touches(0, 4096) && !o.touches(16384, 100));
        o.write_zeros(0, 4096);
        o.write_zeros(16384, 20480);
        // Adjacent zero ranges merge.
        assert_eq!(o.zeros.iter().map(|(&a, &b)| (a, b)).collect::<Vec<_>>(), vec![(0, 8192), (12288, 20480)]);
        assert_eq!(o.end(), 20480);
    }

    #[test]
    fn replays_the_newest_complete_sequence() {
        let guid = Guid([5; 16]);
        let other = Guid([6; 16]);
        let mut log = vec![0u8; MIB as usize];
        // Sequence 10 at sector 0 (tail 0) then 11 at sector 2 (tail 0): both replayed in order.
        let e1 = build_entry(&guid, 10, 0, &[(2 * MIB, page(1))], &[], 0, 0);
        let e2 = build_entry(&guid, 11, 0, &[(2 * MIB, page(2)), (2 * MIB + 4096, page(3))], &[(3 * MIB, 8192)], 0, 0);
        log[..e1.len()].copy_from_slice(&e1);
        log[8192..8192 + e2.len()].copy_from_slice(&e2);
        // A newer entry of another log GUID, and one with a broken checksum: both ignored.
        let mut stale = build_entry(&other, 50, 0x40000, &[(2 * MIB, page(9))], &[], 0, 0);
        log[0x40000..0x40000 + stale.len()].copy_from_slice(&stale);
        stale = build_entry(&guid, 12, 0x80000, &[(2 * MIB, page(9))], &[], 0, 0);
        stale[5000] ^= 1;
        log[0x80000..0x80000 + stale.len()].copy_from_slice(&stale);
        let (_tmp, f) = log_file(&log, 4 * MIB);
        let r = replay(&f, &LogLocation { offset: 0, length: MIB, guid }).unwrap();
        assert_eq!((r.entries, r.head_sequence, r.file_len), (2, 11, 4 * MIB));
        let mut buf = vec![0xaau8; 3 * 4096];
        r.overlay.patch(&mut buf, 2 * MIB);
        assert_eq!(&buf[..4096], &page(2)[..]);
        assert_eq!(&buf[4096..8192], &page(3)[..]);
        assert!(buf[8192..].iter().all(|&b| b == 0xaa));
        assert!(r.overlay.touches(3 * MIB + 4096, 1));
    }

    #[test]
    fn entry_wrapping_around_the_end_of_the_log() {
        let guid = Guid([5; 16]);
        let mut log = vec![0u8; MIB as usize];
        let e = build_entry(&guid, 3, (MIB - 4096) as u32, &[(2 * MIB, page(4))], &[], 0, 5 * MIB);
        assert_eq!(e.len(), 8192);
        log[MIB as usize - 4096..].copy_from_slice(&e[..4096]);
        log[..4096].copy_from_slice(&e[4096..]);
        let (_tmp, f) = log_file(&log, 4 * MIB);
        let r = replay(&f, &LogLocation { offset: 0, length: MIB, guid }).unwrap();
        assert_eq!(r.entries, 1);
        // LastFileOffset extends the file.
        assert_eq!(r.file_len, 5 * MIB);
    }

    #[test]
    fn head_whose_tail_is_not_in_its_sequence_is_ignored_and_truncation_refused() {
        let guid = Guid([5; 16]);
        let mut log = vec![0u8; MIB as usize];
        let e = build_entry(&guid, 3, 0x10000, &[(2 * MIB, page(4))], &[], 0, 0);
        log[..e.len()].copy_from_slice(&e);
        let (_tmp, f) = log_file(&log, 4 * MIB);
        let r = replay(&f, &LogLocation { offset: 0, length: MIB, guid }).unwrap();
        assert_eq!(r.entries, 0);
        assert!(r.overlay.is_empty());

        let e = build_entry(&guid, 3, 0, &[(2 * MIB, page(4))], &[], 8 * MIB, 0);
        log[..e.len()].copy_from_slice(&e);
        let (_tmp, f) = log_file(&log, 4 * MIB);
        let err = replay(&f, &LogLocation { offset: 0, length: MIB, guid }).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::CorruptImage);
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn hostile_overlapping_entries_hit_the_scan_budget() {
        let guid = Guid([5; 16]);
        let mut log = vec![0u8; MIB as usize];
        // Every sector claims to start a 1 MiB entry with the right GUID and a wrong checksum.
        for s in 0..256usize {
            let h = &mut log[s * 4096..s * 4096 + 64];
            h[0..4].copy_from_slice(ENTRY_SIGNATURE);
            h[8..12].copy_from_slice(&(MIB as u32).to_le_bytes());
            h[16..24].copy_from_slice(&1u64.to_le_bytes());
            h[32..48].copy_from_slice(&guid.0);
        }
        let (_tmp, f) = log_file(&log, 4 * MIB);
        let err = replay(&f, &LogLocation { offset: 0, length: MIB, guid }).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::CorruptImage);
    }
}
