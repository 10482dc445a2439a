//! Writer -> reader round trips and hand-damaged images, in memory.

use super::format::*;
use super::log::tests::build_entry;
use super::reader::VhdxImage;
use super::writer::{write_layout, Layout};
use crate::error::{ErrorKind, Result};
use crate::file::ImageFile;
use crate::image::{check_bounds, CheckReport, DiskImage, Extent, ExtentKind, ImageDetails};
use crate::probe::Format;
use crate::sink::VecSink;
use crate::write::{Control, Subformat, WriteOptions};

/// A sparse in-memory disk: data pieces at offsets, zeros elsewhere.
struct Sparse {
    size: u64,
    pieces: Vec<(u64, Vec<u8>)>,
}

impl DiskImage for Sparse {
    fn virtual_size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_bounds(self.size, offset, buf.len())?;
        buf.fill(0);
        let end = offset + buf.len() as u64;
        for (at, data) in &self.pieces {
            let (a, b) = ((*at).max(offset), (at + data.len() as u64).min(end));
            if a < b {
                buf[(a - offset) as usize..(b - offset) as usize]
                    .copy_from_slice(&data[(a - at) as usize..(b - at) as usize]);
            }
        }
        Ok(())
    }
    fn map(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        let end = (offset + length).min(self.size);
        let mut list = crate::image::ExtentList::new();
        let mut pos = offset;
        for (at, data) in &self.pieces {
            let (a, b) = ((*at).max(pos), (at + data.len() as u64).min(end));
            if a < b {
                list.push(Extent::unallocated(pos, a - pos));
                list.push(Extent::data(a, b - a, None));
                pos = b;
            }
        }
        list.push(Extent::unallocated(pos, end - pos));
        Ok(list.into_vec())
    }
    fn details(&self) -> ImageDetails {
        ImageDetails::new(Format::Raw)
    }
    fn check(&self) -> Result<CheckReport> {
        Ok(CheckReport::default())
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect()
}

fn to_file(bytes: &[u8]) -> (tempfile::NamedTempFile, ImageFile) {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), bytes).unwrap();
    let f = ImageFile::open(tmp.path()).unwrap();
    (tmp, f)
}

fn write_vec(src: &dyn DiskImage, layout: &Layout) -> Vec<u8> {
    let mut sink = VecSink::default();
    write_layout(src, layout, &mut sink, &Control::new()).unwrap();
    sink.data
}

fn open_bytes(bytes: &[u8]) -> Result<(tempfile::NamedTempFile, VhdxImage)> {
    let (tmp, f) = to_file(bytes);
    VhdxImage::open(f, false).map(|img| (tmp, img))
}

fn assert_same(a: &dyn DiskImage, b: &dyn DiskImage) {
    assert_eq!(a.virtual_size(), b.virtual_size());
    let size = a.virtual_size();
    let mut pos = 0;
    while pos < size {
        let n = (8 << 20).min(size - pos) as usize;
        let (mut x, mut y) = (vec![0u8; n], vec![0u8; n]);
        a.read_at(&mut x, pos).unwrap();
        b.read_at(&mut y, pos).unwrap();
        assert!(x == y, "contents differ in [{pos}, {})", pos + n as u64);
        pos += n as u64;
    }
}

#[test]
fn dynamic_round_trip_stores_only_blocks_with_data() {
    let src = Sparse {
        size: 10 * MIB + 3 * 512,
        pieces: vec![(100, pattern(5000, 1)), (3 * MIB - 10, pattern(20, 2)), (10 * MIB + 1000, pattern(536, 3))],
    };
    let layout = Layout::new(src.size, MIB, 512, false);
    let bytes = write_vec(&src, &layout);
    // Blocks 0, 2, 3 and 10 hold data: four blocks after the header region.
    assert_eq!(bytes.len() as u64, layout.data_start + 4 * MIB);
    let (_tmp, img) = open_bytes(&bytes).unwrap();
    assert_same(&src, &img);
    assert_eq!(img.info.block_states.fully_present, 4);
    assert_eq!(img.info.block_states.not_present, 7);
    assert!(img.check().unwrap().is_clean());
    assert!(img.check().unwrap().warnings.is_empty(), "{:?}", img.check().unwrap().warnings);
    let d = img.details();
    assert_eq!((d.subformat.as_deref(), d.cluster_size), (Some("dynamic"), Some(MIB)));
    let info = d.vhdx().unwrap().clone();
    assert_eq!((info.logical_sector_size, info.physical_sector_size, info.log_state.as_str()), (512, 4096, "empty"));
    assert!(info.creator.starts_with("imgport v"));
    assert_eq!((info.current_header, info.header_sequence), (2, 2));
    let map = img.map(0, img.virtual_size()).unwrap();
    assert_eq!(map[0], Extent::data(0, MIB, Some(layout.data_start)));
    assert_eq!(map[1].kind(), ExtentKind::Unallocated);
    assert_eq!(map.iter().map(|e| e.length).sum::<u64>(), img.virtual_size());
}

#[test]
fn sector_bitmap_entries_interleave_for_both_sector_sizes() {
    // 512-byte sectors, 1 MiB blocks: a sector bitmap entry after 4096 blocks (4 GiB).
    // 4096-byte sectors: after 32768 blocks (32 GiB).
    for (lss, size) in [(512u64, 5u64 << 30), (4096, 34 << 30)] {
        let far = size - 3 * MIB - 4096;
        let src = Sparse { size, pieces: vec![(0, pattern(4096, 7)), (far, pattern(2 * MIB as usize, 8))] };
        let layout = Layout::new(size, MIB, lss, false);
        assert_eq!(layout.bat_entries, size / MIB + 1);
        let bytes = write_vec(&src, &layout);
        let (_tmp, img) = open_bytes(&bytes).unwrap();
        assert_eq!(img.info.logical_sector_size as u64, lss);
        assert_eq!(img.chunk_ratio, 8 * MIB * lss / MIB);
        let mut buf = vec![0u8; 2 * MIB as usize];
        img.read_at(&mut buf, far).unwrap();
        assert_eq!(buf, pattern(2 * MIB as usize, 8));
        let mut head = vec![0u8; 4096];
        img.read_at(&mut head, 0).unwrap();
        assert_eq!(head, pattern(4096, 7));
        assert!(img.check().unwrap().is_clean());
        assert_eq!(img.info.block_states.fully_present, 4);
    }
}

#[test]
fn fixed_round_trip() {
    let src = Sparse { size: 3 * MIB + 512, pieces: vec![(MIB + 7, pattern(70000, 4))] };
    let layout = Layout::new(src.size, MIB, 512, true);
    let bytes = write_vec(&src, &layout);
    assert_eq!(bytes.len() as u64, layout.data_start + 4 * MIB);
    let (_tmp, img) = open_bytes(&bytes).unwrap();
    assert_same(&src, &img);
    assert_eq!(img.details().subformat.as_deref(), Some("fixed"));
    assert_eq!(img.info.block_states.fully_present, 4);
    assert!(img.check().unwrap().is_clean());
}

#[test]
fn writer_options() {
    let src = Sparse { size: MIB, pieces: vec![] };
    let mut sink = VecSink::default();
    let mut opts = WriteOptions::new(Format::Vhdx);
    opts.block_size = Some(3 * MIB);
    let err = super::write(&src, &opts, &mut sink, &Control::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    opts.block_size = None;
    opts.subformat = Some(Subformat::StreamOptimized);
    assert!(super::write(&src, &opts, &mut sink, &Control::new()).is_err());
    opts.subformat = None;
    opts.cluster_size = Some(65536);
    assert!(super::write(&src, &opts, &mut sink, &Control::new()).unwrap_err().to_string().contains("block_size"));
    // Defaults: 32 MiB blocks, sizes rounded up to whole sectors, an empty disk still opens.
    let odd = Sparse { size: 1000, pieces: vec![(0, pattern(1000, 5))] };
    let mut sink = VecSink::default();
    super::write(&odd, &WriteOptions::new(Format::Vhdx), &mut sink, &Control::new()).unwrap();
    let (_tmp, img) = open_bytes(&sink.data).unwrap();
    assert_eq!((img.virtual_size(), img.block_size), (1024, 32 * MIB));
    let mut buf = vec![0u8; 1024];
    img.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..1000], &pattern(1000, 5)[..]);
    assert!(buf[1000..].iter().all(|&b| b == 0));
    let empty = Sparse { size: 0, pieces: vec![] };
    let bytes = write_vec(&empty, &Layout::new(0, MIB, 512, false));
    let (_tmp, img) = open_bytes(&bytes).unwrap();
    assert_eq!(img.virtual_size(), 0);
    assert!(img.check().unwrap().is_clean());
}

/// A small image to damage: 4 MiB, 1 MiB blocks, blocks 0 and 2 stored.
fn sample() -> (Sparse, Layout, Vec<u8>) {
    let src = Sparse { size: 4 * MIB, pieces: vec![(0, pattern(MIB as usize, 1)), (2 * MIB, pattern(8192, 2))] };
    let layout = Layout::new(src.size, MIB, 512, false);
    let bytes = write_vec(&src, &layout);
    (src, layout, bytes)
}

fn set_bat(bytes: &mut [u8], idx: u64, entry: u64) {
    let at = (3 * MIB + idx * 8) as usize;
    bytes[at..at + 8].copy_from_slice(&entry.to_le_bytes());
}

fn expect_err(bytes: &[u8], kind: ErrorKind, text: &str) {
    match open_bytes(bytes) {
        Ok(_) => panic!("opened an image that should be refused ({text})"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{e}");
            assert!(e.to_string().contains(text), "'{e}' does not mention '{text}'");
        }
    }
}

#[test]
fn damaged_headers_and_region_tables() {
    let (src, _, bytes) = sample();
    // One bad header: a warning, the other is used.
    let mut b = bytes.clone();
    b[HEADER_OFFSETS[1] as usize + 100] ^= 1;
    let (_tmp, img) = open_bytes(&b).unwrap();
    assert_eq!(img.info.current_header, 1);
    let r = img.check().unwrap();
    assert!(r.is_clean() && r.warnings.iter().any(|w| w.structure == "header 2"), "{r:?}");
    // Both bad: refused, unless checksums are ignored (then check reports it).
    b[HEADER_OFFSETS[0] as usize + 100] ^= 1;
    expect_err(&b, ErrorKind::CorruptImage, "no valid header");
    let (_tmp, f) = to_file(&b);
    let img = VhdxImage::open(f, true).unwrap();
    assert_same(&src, &img);
    assert_eq!(img.check().unwrap().exit_code(), 2);
    // Region tables: one bad is a warning, both bad is corruption.
    let mut b = bytes.clone();
    b[REGION_TABLE_OFFSETS[0] as usize + 200] ^= 1;
    let (_tmp, img) = open_bytes(&b).unwrap();
    assert!(img.check().unwrap().warnings.iter().any(|w| w.structure == "region table 1"));
    b[REGION_TABLE_OFFSETS[1] as usize + 200] ^= 1;
    expect_err(&b, ErrorKind::CorruptImage, "no valid region table");
    // Same sequence number, different contents.
    let mut b = bytes.clone();
    let h2 = HEADER_OFFSETS[1] as usize;
    b[h2 + 8..h2 + 16].copy_from_slice(&1u64.to_le_bytes());
    b[h2 + 40] ^= 1;
    seal(&mut b[h2..h2 + HEADER_SIZE], 4);
    expect_err(&b, ErrorKind::CorruptImage, "same sequence number");
    // Not a VHDX at all.
    let mut b = bytes.clone();
    b[0] = b'x';
    expect_err(&b, ErrorKind::InvalidFormat, "vhdxfile");
}

/// Rewrite the region table (both copies) with `f` applied to its regions.
fn edit_regions(bytes: &mut [u8], f: impl Fn(&mut Vec<Region>)) {
    let RegionTableCopy::Valid(mut regions) =
        RegionTableCopy::parse(&bytes[REGION_TABLE_OFFSETS[0] as usize..][..REGION_TABLE_SIZE])
    else {
        panic!("sample region table is invalid")
    };
    f(&mut regions);
    let t = encode_region_table(&regions);
    for off in REGION_TABLE_OFFSETS {
        bytes[off as usize..off as usize + REGION_TABLE_SIZE].copy_from_slice(&t);
    }
}

#[test]
fn refused_regions_and_metadata() {
    let (_, _, bytes) = sample();
    let mut b = bytes.clone();
    edit_regions(&mut b, |r| {
        r.push(Region { guid: Guid([9; 16]), file_offset: 5 * MIB, length: MIB as u32, required: true })
    });
    expect_err(&b, ErrorKind::UnsupportedFeature, "marked required");
    let mut b = bytes.clone();
    edit_regions(&mut b, |r| {
        r.push(Region { guid: Guid([9; 16]), file_offset: 5 * MIB, length: MIB as u32, required: false })
    });
    assert!(open_bytes(&b).is_ok());
    let mut b = bytes.clone();
    edit_regions(&mut b, |r| r[1].file_offset = MIB);
    expect_err(&b, ErrorKind::CorruptImage, "overlaps the log");
    let mut b = bytes.clone();
    edit_regions(&mut b, |r| r.truncate(1));
    expect_err(&b, ErrorKind::CorruptImage, "no metadata region");
    let mut b = bytes.clone();
    edit_regions(&mut b, |r| r[0].length = 4096 * 8 - 8);
    let mut b2 = b.clone();
    assert!(open_bytes(&b).is_ok());
    edit_regions(&mut b2, |r| r[0].length = 8);
    expect_err(&b2, ErrorKind::CorruptImage, "too small");

    // Metadata: HasParent, an unknown required item, a bad block size, 4096 logical sectors kept consistent.
    let params = (2 * MIB + 64 * KIB) as usize;
    let mut b = bytes.clone();
    b[params + 4] |= PARAM_HAS_PARENT as u8;
    expect_err(&b, ErrorKind::UnsupportedFeature, "differencing");
    let mut b = bytes.clone();
    b[2 * MIB as usize + 32..][..16].copy_from_slice(&[7; 16]);
    expect_err(&b, ErrorKind::UnsupportedFeature, "marked required");
    let mut b = bytes.clone();
    b[params..params + 4].copy_from_slice(&(3 * MIB as u32).to_le_bytes());
    expect_err(&b, ErrorKind::CorruptImage, "block size");
    let mut b = bytes.clone();
    b[2 * MIB as usize + 32 + 20..][..4].copy_from_slice(&(2 * MIB as u32).to_le_bytes());
    expect_err(&b, ErrorKind::CorruptImage, "does not fit");
    let mut b = bytes.clone();
    b[params + 32..params + 36].copy_from_slice(&1024u32.to_le_bytes());
    expect_err(&b, ErrorKind::CorruptImage, "logical sector size");
    let mut b = bytes.clone();
    b[params + 8..params + 16].copy_from_slice(&(100u64 << 40).to_le_bytes());
    expect_err(&b, ErrorKind::UnsupportedFeature, "64 TiB");
    // A huge but legal size needs a BAT the region cannot hold.
    let mut b = bytes.clone();
    b[params + 8..params + 16].copy_from_slice(&(60u64 << 40).to_le_bytes());
    expect_err(&b, ErrorKind::CorruptImage, "too small");
    let mut b = bytes;
    b[2 * MIB as usize + 10] = 0xff;
    b[2 * MIB as usize + 11] = 0xff;
    expect_err(&b, ErrorKind::CorruptImage, "metadata table");
}

#[test]
fn bad_bat_entries_fail_reads_and_show_in_check() {
    let (src, layout, bytes) = sample();
    let data = layout.data_start;
    // Block 1 points past the end of the file.
    let mut b = bytes.clone();
    set_bat(&mut b, 1, (64 * MIB) | PAYLOAD_FULLY_PRESENT);
    let (_tmp, img) = open_bytes(&b).unwrap();
    let mut buf = vec![0u8; 4096];
    let err = img.read_at(&mut buf, MIB).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CorruptImage);
    assert!(err.to_string().contains("past the end of the file"), "{err}");
    img.read_at(&mut buf, 0).unwrap();
    let r = img.check().unwrap();
    assert_eq!(r.exit_code(), 2);
    assert!(r.corruptions[0].message.contains("past the end"), "{r:?}");
    // Block 1 shares block 0's space; block 3 points into the BAT.
    let mut b = bytes.clone();
    set_bat(&mut b, 1, data | PAYLOAD_FULLY_PRESENT);
    set_bat(&mut b, 3, (3 * MIB) | PAYLOAD_FULLY_PRESENT);
    let (_tmp, img) = open_bytes(&b).unwrap();
    let r = img.check().unwrap();
    assert!(r.corruptions.iter().any(|f| f.message.contains("overlaps that of block 0")), "{r:?}");
    assert!(r.corruptions.iter().any(|f| f.message.contains("overlaps the BAT region")), "{r:?}");
    assert!(img.read_at(&mut buf, 3 * MIB).is_err());
    // Offset 0 (the header section), PARTIALLY_PRESENT and state 4.
    for (entry, text) in [
        (PAYLOAD_FULLY_PRESENT, "header section"),
        (PAYLOAD_PARTIALLY_PRESENT, "differencing"),
        (4, "invalid block state 4"),
    ] {
        let mut b = bytes.clone();
        set_bat(&mut b, 1, entry);
        let (_tmp, img) = open_bytes(&b).unwrap();
        let err = img.read_at(&mut buf, MIB + 4096).unwrap_err();
        assert!(err.to_string().contains(text), "{err}");
        assert_eq!(img.check().unwrap().exit_code(), 2);
        assert_eq!(img.map(0, 4 * MIB).unwrap().iter().map(|e| e.length).sum::<u64>(), 4 * MIB);
    }
    // ZERO, UNMAPPED and the v0.95 UNMAPPED read as zeros and map as zero.
    let mut b = bytes.clone();
    set_bat(&mut b, 0, data | PAYLOAD_ZERO);
    set_bat(&mut b, 2, PAYLOAD_UNMAPPED_V095);
    let (_tmp, img) = open_bytes(&b).unwrap();
    let mut all = vec![1u8; 4 * MIB as usize];
    img.read_at(&mut all, 0).unwrap();
    assert!(all.iter().all(|&x| x == 0));
    assert_eq!(img.map(0, 4 * MIB).unwrap()[0], Extent::zero(0, MIB));
    let r = img.check().unwrap();
    assert!(r.is_clean() && r.warnings.len() == 1, "{r:?}");
    // Truncated inside the last stored block.
    let (_tmp, img) = open_bytes(&bytes[..bytes.len() - 4096]).unwrap();
    assert_eq!(img.check().unwrap().exit_code(), 2);
    assert!(img.read_at(&mut buf, 2 * MIB).unwrap_err().to_string().contains("truncated"));
    // Truncated inside the BAT or the header section: refused.
    expect_err(&bytes[..(3 * MIB + 8) as usize], ErrorKind::CorruptImage, "truncated");
    expect_err(&bytes[..100_000], ErrorKind::CorruptImage, "truncated");
    let (_tmp, img) = open_bytes(&bytes).unwrap();
    assert_same(&src, &img);
}

/// Set the current header's log GUID (both copies, checksums resealed).
fn set_log_guid(bytes: &mut [u8], guid: &Guid) {
    for off in HEADER_OFFSETS {
        let h = &mut bytes[off as usize..off as usize + HEADER_SIZE];
        h[48..64].copy_from_slice(&guid.0);
        seal(h, 4);
    }
}

#[test]
fn dirty_log_is_replayed_in_memory() {
    let (src, layout, mut bytes) = sample();
    let guid = Guid([0x42; 16]);
    let data = layout.data_start;
    // The log moves block 0 to where block 2's data is and drops block 2 (first entry), then also stores
    // block 1 past the end of the file and zeros the first page of block 0's new place (second entry).
    let mut bat_page = bytes[3 * MIB as usize..3 * MIB as usize + 4096].to_vec();
    bat_page[0..8].copy_from_slice(&((data + MIB) | PAYLOAD_FULLY_PRESENT).to_le_bytes());
    bat_page[16..24].copy_from_slice(&0u64.to_le_bytes());
    let new_block1 = pattern(4096, 9);
    let e1 = build_entry(&guid, 5, 0, &[(3 * MIB, bat_page)], &[], bytes.len() as u64, bytes.len() as u64);
    // Second entry: block 1 gets a page written past the end of the file, which the replay extends.
    let mut bat_page2 = bytes[3 * MIB as usize..3 * MIB as usize + 4096].to_vec();
    bat_page2[0..8].copy_from_slice(&((data + MIB) | PAYLOAD_FULLY_PRESENT).to_le_bytes());
    bat_page2[8..16].copy_from_slice(&((data + 2 * MIB) | PAYLOAD_FULLY_PRESENT).to_le_bytes());
    bat_page2[16..24].copy_from_slice(&0u64.to_le_bytes());
    let e2 = build_entry(
        &guid,
        6,
        0,
        &[(3 * MIB, bat_page2), (data + 2 * MIB + 8192, new_block1.clone())],
        &[(data + MIB, 4096)],
        bytes.len() as u64,
        data + 3 * MIB,
    );
    let log = MIB as usize;
    bytes[log..log + e1.len()].copy_from_slice(&e1);
    bytes[log + e1.len()..log + e1.len() + e2.len()].copy_from_slice(&e2);
    set_log_guid(&mut bytes, &guid);
    let (tmp, img) = open_bytes(&bytes).unwrap();
    assert_eq!(img.info.log_state, "replayed 2 entries");
    // Block 0 now reads what was block 2; block 1 is zeros but one page; block 2 is gone.
    let mut got = vec![0u8; 4 * MIB as usize];
    img.read_at(&mut got, 0).unwrap();
    let mut want = vec![0u8; 4 * MIB as usize];
    src.read_at(&mut want[..MIB as usize], 2 * MIB).unwrap();
    want[..4096].fill(0);
    want[MIB as usize + 8192..MIB as usize + 12288].copy_from_slice(&new_block1);
    assert!(got == want);
    let kinds: Vec<_> = img.map(0, 4 * MIB).unwrap().iter().map(|e| (e.kind(), e.length, e.host_offset())).collect();
    // Both blocks have pages rewritten by the log, so neither has a single host offset.
    assert_eq!(kinds, [(ExtentKind::Data, 2 * MIB, None), (ExtentKind::Unallocated, 2 * MIB, None)]);
    let r = img.check().unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert!(r.warnings.iter().any(|w| w.message.contains("2 entries replayed")), "{r:?}");
    // The input file is untouched.
    assert_eq!(std::fs::read(tmp.path()).unwrap(), bytes);

    // A log GUID with no matching entries: nothing replayed, a warning.
    let (_, _, mut plain) = sample();
    set_log_guid(&mut plain, &guid);
    let (_tmp, img) = open_bytes(&plain).unwrap();
    assert_eq!(img.info.log_state, "log GUID set, no complete sequence to replay");
    assert_same(&src, &img);
}

#[test]
fn refused_sizes_say_why() {
    let (_, _, bytes) = sample();
    // A log that needs replaying but is larger than imgport replays in memory.
    let mut b = bytes.clone();
    for off in HEADER_OFFSETS {
        let h = &mut b[off as usize..off as usize + HEADER_SIZE];
        h[48..64].copy_from_slice(&[1; 16]);
        h[68..72].copy_from_slice(&(64 * MIB as u32).to_le_bytes());
        seal(h, 4);
    }
    expect_err(&b, ErrorKind::UnsupportedFeature, "replays in memory");
    // An unknown log version.
    let mut b = bytes.clone();
    for off in HEADER_OFFSETS {
        let h = &mut b[off as usize..off as usize + HEADER_SIZE];
        h[64] = 1;
        seal(h, 4);
    }
    expect_err(&b, ErrorKind::UnsupportedFeature, "log version 1");
    // A BAT of 10 M entries (10 TiB in 1 MiB blocks), in a region large enough to hold it: not loaded.
    let mut b = bytes;
    edit_regions(&mut b, |r| r[0].length = 128 * MIB as u32);
    let params = (2 * MIB + 64 * KIB) as usize;
    b[params + 8..params + 16].copy_from_slice(&(10u64 << 40).to_le_bytes());
    expect_err(&b, ErrorKind::UnsupportedFeature, "BAT of");
}
