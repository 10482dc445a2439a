//! Unit tests: header parsing edge cases, and writer -> reader -> check round trips in memory.

use super::entries::{classify, Cluster, L1E_OFFSET_MASK};
use super::header::{self, serialize, CompressionType, NewHeader};
use crate::error::{ErrorKind, Result};
use crate::file::ImageFile;
use crate::image::{DiskImage, ExtentKind};
use crate::open::{open, OpenOptions};
use crate::probe::Format;
use crate::sink::VecSink;
use crate::write::{write_image, Compression, Control, WriteOptions};
use std::path::{Path, PathBuf};

use crate::mem::MemImage;

/// A disk with incompressible data, compressible text, zeros and holes, at unaligned places.
fn sample_disk(size: usize) -> Vec<u8> {
    let mut d = vec![0u8; size];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = |buf: &mut [u8]| {
        for b in buf {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    };
    noise(&mut d[..70_000.min(size)]);
    if size > 400_000 {
        for (i, b) in d[200_000..400_000].iter_mut().enumerate() {
            *b = b"compressible text "[i % 18];
        }
    }
    if size > 1_100_000 {
        noise(&mut d[1_000_003..1_100_000]);
    }
    let tail = size.saturating_sub(700);
    noise(&mut d[tail..]);
    d
}

fn temp_path(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new().prefix("imgport-qcow2-").tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

fn write_qcow2(data: &[u8], cluster_size: Option<u64>, compression: Option<Compression>) -> Vec<u8> {
    let mut opts = WriteOptions::new(Format::Qcow2);
    opts.cluster_size = cluster_size;
    opts.compression = compression;
    let mut sink = VecSink::default();
    write_image(&MemImage(data.to_vec()), &opts, &mut sink, &Control::new()).unwrap();
    sink.data
}

fn open_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<Box<dyn DiskImage>>) {
    let (dir, path) = temp_path("t.qcow2");
    std::fs::write(&path, bytes).unwrap();
    let img = open(&path, &OpenOptions::default());
    (dir, img)
}

fn read_all(img: &dyn DiskImage) -> Vec<u8> {
    let mut out = vec![0u8; img.virtual_size() as usize];
    // Odd-sized reads exercise partial clusters and the compressed-cluster cache.
    for (i, chunk) in out.chunks_mut(100_000).enumerate() {
        img.read_at(chunk, i as u64 * 100_000).unwrap();
    }
    out
}

#[test]
fn writer_output_reads_back_and_checks_clean() {
    let data = sample_disk(3 * 1024 * 1024 + 512);
    for cs in [512u64, 4096, 65536, 2 << 20] {
        for compression in [None, Some(Compression::Zlib), Some(Compression::Zstd)] {
            let bytes = write_qcow2(&data, Some(cs), compression);
            let (_dir, img) = open_bytes(&bytes);
            let img = img.unwrap();
            assert!(read_all(img.as_ref()) == data, "cs {cs} {compression:?}");
            let report = img.check().unwrap();
            assert!(report.is_clean() && report.warnings.is_empty(), "cs {cs} {compression:?}: {report:?}");
            let map = img.map(0, img.virtual_size()).unwrap();
            // Holes of the source stay unallocated (with small clusters).
            if cs <= 65536 {
                assert!(map.iter().any(|e| e.kind() == ExtentKind::Unallocated), "cs {cs}");
            }
            assert_eq!(map.iter().any(|e| e.is_compressed()), compression.is_some(), "cs {cs} {compression:?}");
            let info = img.details().qcow2().unwrap().clone();
            assert_eq!(info.compat, "1.1");
            let kind = if compression == Some(Compression::Zstd) { "zstd" } else { "zlib" };
            assert_eq!(info.compression_type, kind);
        }
    }
}

#[test]
fn compressed_data_ending_before_its_last_sector_reads_zero_padded() {
    // Compressible everywhere, so the last thing in the file is a compressed cluster.
    let data: Vec<u8> =
        (0..600_000u32).map(|i| b"sector padding test "[(i % 20) as usize] ^ (i / 7000) as u8).collect();
    let bytes = write_qcow2(&data, Some(65536), Some(Compression::Zlib));
    let (_dir, img) = open_bytes(&bytes);
    let img = img.unwrap();
    // Find the compressed cluster stored last in the file and where its deflate stream really ends.
    let cs = 65536u64;
    let l1_offset = u64::from_be_bytes(bytes[40..48].try_into().unwrap());
    let l2 =
        u64::from_be_bytes(bytes[l1_offset as usize..l1_offset as usize + 8].try_into().unwrap()) & L1E_OFFSET_MASK;
    let mut last = (0u64, 0u64);
    for i in 0..(600_000u64.div_ceil(cs)) {
        let at = (l2 + i * 8) as usize;
        let entry = u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
        if let Cluster::Compressed { offset, size } = classify(entry, false, 16) {
            if offset > last.0 {
                last = (offset, size);
            }
        }
    }
    assert!(last.0 > 0, "no compressed cluster");
    let mut d = flate2::Decompress::new(false);
    let mut out = vec![0u8; cs as usize];
    let input = &bytes[last.0 as usize..(last.0 + last.1).min(bytes.len() as u64) as usize];
    d.decompress(input, &mut out, flate2::FlushDecompress::Finish).unwrap();
    let end = last.0 + d.total_in();
    assert!(end <= bytes.len() as u64 && end < last.0 + last.1);
    drop(img);
    let (_dir2, cut) = open_bytes(&bytes[..end as usize]);
    let cut = cut.unwrap();
    let back = read_all(cut.as_ref());
    let first_diff = back.iter().zip(&data).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "end {end} last {last:?} len {}", bytes.len());
}

#[test]
fn virtual_size_is_rounded_up_to_whole_sectors() {
    let data = sample_disk(5000);
    let bytes = write_qcow2(&data, None, None);
    let (_dir, img) = open_bytes(&bytes);
    let img = img.unwrap();
    assert_eq!(img.virtual_size(), 5120);
    let back = read_all(img.as_ref());
    assert!(back[..5000] == data[..]);
    assert!(back[5000..].iter().all(|&b| b == 0));
}

#[test]
fn empty_and_zero_sized_disks() {
    for size in [0usize, 512, 3 << 20] {
        let bytes = write_qcow2(&vec![0u8; size], None, None);
        let (_dir, img) = open_bytes(&bytes);
        let img = img.unwrap();
        assert_eq!(img.virtual_size(), size as u64);
        assert!(img.map(0, size as u64).unwrap().iter().all(|e| e.kind() == ExtentKind::Unallocated));
        assert!(img.check().unwrap().is_clean());
    }
}

/// A valid header cluster for tests that then break one field.
fn base_header(cluster_bits: u32, size: u64) -> Vec<u8> {
    let cs = 1u64 << cluster_bits;
    let mut b = serialize(&NewHeader {
        cluster_bits,
        size,
        l1_size: size.div_ceil(cs * (cs / 8)) as u32,
        l1_table_offset: cs,
        refcount_table_offset: 2 * cs,
        refcount_table_clusters: 1,
        compression: CompressionType::Zlib,
    });
    b.resize(4 * cs as usize, 0);
    b
}

fn parse_bytes(bytes: &[u8]) -> Result<header::Header> {
    let (_dir, path) = temp_path("h.qcow2");
    std::fs::write(&path, bytes).unwrap();
    let file = ImageFile::open(Path::new(&path)).unwrap();
    header::parse(&file)
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn parse_err(bytes: &[u8]) -> (ErrorKind, String) {
    let e = parse_bytes(bytes).expect_err("header should be refused");
    (e.kind(), e.to_string())
}

#[test]
fn header_round_trip_and_feature_names() {
    let h = parse_bytes(&base_header(16, 10 << 20)).unwrap();
    assert_eq!((h.version, h.cluster_bits, h.size, h.header_length), (3, 16, 10 << 20, 112));
    assert_eq!(h.compression, CompressionType::Zlib);
    // The feature table the writer adds names bits for tools that do not know them.
    let mut b = base_header(16, 1 << 20);
    put64(&mut b, 72, 1 << 4 | 1 << 2);
    // Bit 2 (external data file) is refused by name... after unknown bits, which come first.
    assert!(parse_err(&b).1.contains("external data file"));
    // An unknown bit is named from the table when the table has a name for it (512-byte clusters: the
    // table still fits in the header cluster).
    let mut b = base_header(9, 1 << 20);
    put64(&mut b, 72, 1 << 9 | 1 << 10);
    b[112 + 8 + 4 * 48 + 1] = 9; // rename the "extended L2 entries" entry to bit 9
    let msg = parse_err(&b).1;
    assert!(msg.contains("bit 9 ('extended L2 entries'), bit 10"), "{msg}");
}

#[test]
fn header_refusals() {
    type Case = (Box<dyn Fn(&mut Vec<u8>)>, ErrorKind, &'static str);
    let cases: Vec<Case> = vec![
        (Box::new(|b| b[0] = b'X'), ErrorKind::InvalidFormat, "bad magic"),
        (Box::new(|b| put32(b, 4, 1)), ErrorKind::UnsupportedFeature, "version 1"),
        (Box::new(|b| put32(b, 20, 8)), ErrorKind::InvalidFormat, "cluster_bits 8"),
        (Box::new(|b| put32(b, 20, 22)), ErrorKind::UnsupportedFeature, "2^22"),
        (Box::new(|b| put32(b, 100, 96)), ErrorKind::InvalidFormat, "shorter than 104"),
        (Box::new(|b| put32(b, 96, 7)), ErrorKind::InvalidFormat, "refcount_order 7"),
        (Box::new(|b| put32(b, 32, 1)), ErrorKind::UnsupportedFeature, "(AES)"),
        (Box::new(|b| put64(b, 72, 1 << 3)), ErrorKind::InvalidFormat, "compression type bit is set"),
        (Box::new(|b| b[104] = 1), ErrorKind::InvalidFormat, "zstd but the compression type bit"),
        (
            Box::new(|b| {
                b[104] = 2;
                put64(b, 72, 1 << 3)
            }),
            ErrorKind::UnsupportedFeature,
            "compression type 2",
        ),
        (Box::new(|b| put64(b, 72, 1 << 63 | 1 << 5)), ErrorKind::UnsupportedFeature, "bit 5, bit 63"),
        (Box::new(|b| put32(b, 36, 0)), ErrorKind::CorruptImage, "too small for the virtual size"),
        (Box::new(|b| put32(b, 36, 5_000_000)), ErrorKind::CorruptImage, "absurdly large"),
        (Box::new(|b| put64(b, 40, 65536 + 8)), ErrorKind::CorruptImage, "L1 table offset"),
        (Box::new(|b| put32(b, 56, 1000)), ErrorKind::CorruptImage, "refcount table of 1000 clusters"),
        (Box::new(|b| put64(b, 48, 100)), ErrorKind::CorruptImage, "refcount table offset"),
        (Box::new(|b| put32(b, 60, 70_000)), ErrorKind::CorruptImage, "snapshots"),
        (
            Box::new(|b| {
                put64(b, 8, 4000);
                put32(b, 16, 2000)
            }),
            ErrorKind::InvalidFormat,
            "too long",
        ),
        (
            Box::new(|b| {
                put32(b, 112, 0xe279_2aca);
                put32(b, 116, 100_000)
            }),
            ErrorKind::InvalidFormat,
            "runs past the header area",
        ),
        (
            Box::new(|b| {
                put32(b, 112, 0xe279_2aca);
                put32(b, 116, 20)
            }),
            ErrorKind::InvalidFormat,
            "backing format name",
        ),
        (Box::new(|b| b.truncate(60)), ErrorKind::CorruptImage, "truncated"),
    ];
    for (i, (damage, kind, needle)) in cases.into_iter().enumerate() {
        let mut b = base_header(16, 10 << 20);
        damage(&mut b);
        let (k, msg) = parse_err(&b);
        assert_eq!(k, kind, "case {i}: {msg}");
        assert!(msg.contains(needle), "case {i}: expected '{needle}' in '{msg}'");
    }
    // Extended L2 entries need 16 KiB clusters.
    let mut b = base_header(12, 1 << 20);
    put64(&mut b, 72, 1 << 4);
    assert!(parse_err(&b).1.contains("16 KiB"));
}

#[test]
fn version_2_ignores_v3_fields() {
    let mut b = base_header(16, 1 << 20);
    put32(&mut b, 4, 2);
    // Whatever follows byte 72 is a header extension area in v2: end marker right away.
    b[72..200].fill(0);
    let h = parse_bytes(&b).unwrap();
    assert_eq!((h.version, h.incompatible, h.refcount_order, h.header_length), (2, 0, 4, 72));
    assert_eq!(h.compat(), "0.10");
}

#[test]
fn backing_file_name_and_format_are_read_and_refused_by_default() {
    let mut b = base_header(16, 1 << 20);
    put32(&mut b, 112, 0xe279_2aca);
    put32(&mut b, 116, 5);
    b[120..125].copy_from_slice(b"qcow2");
    b[128..136].fill(0);
    put64(&mut b, 8, 1000);
    put32(&mut b, 16, 9);
    b[1000..1009].copy_from_slice(b"base.img\n");
    let h = parse_bytes(&b).unwrap();
    assert_eq!(h.backing_file.as_deref(), Some("base.img\n"));
    assert_eq!(h.backing_format.as_deref(), Some("qcow2"));
    let (_dir, img) = open_bytes(&b);
    let e = img.err().expect("backing file refused");
    assert_eq!(e.kind(), ErrorKind::UnsupportedFeature);
    assert!(e.to_string().contains("--follow-backing"), "{e}");
}

#[test]
fn check_reports_metadata_overlap_without_panicking_on_garbage_tables() {
    let data = sample_disk(2 << 20);
    let bytes = write_qcow2(&data, None, None);
    // Point the first L2 entry at the header cluster, then fill an L2 table with garbage.
    let l1 = u64::from_be_bytes(bytes[40..48].try_into().unwrap()) as usize;
    let l2 = (u64::from_be_bytes(bytes[l1..l1 + 8].try_into().unwrap()) & L1E_OFFSET_MASK) as usize;
    let mut bad = bytes.clone();
    bad[l2..l2 + 8].copy_from_slice(&(1u64 << 63).to_be_bytes()); // offset 0 with copied: unallocated
    bad[l2 + 8..l2 + 16].copy_from_slice(&((1u64 << 63) | 0x10000).to_be_bytes()); // inside the header region
    let (_dir, img) = open_bytes(&bad);
    let report = img.unwrap().check().unwrap();
    assert_eq!(report.exit_code(), 2, "{report:?}");
    let mut garbage = bytes.clone();
    let mut x = 7u64;
    for b in &mut garbage[l2..l2 + 65536] {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *b = (x >> 33) as u8;
    }
    let (_dir, img) = open_bytes(&garbage);
    let img = img.unwrap();
    assert_eq!(img.check().unwrap().exit_code(), 2);
    // Reading fails cleanly or returns something; it never panics.
    let mut buf = vec![0u8; 1 << 20];
    let _ = img.read_at(&mut buf, 0);
    let _ = img.map(0, img.virtual_size());
}

#[test]
fn check_counts_an_l2_table_shared_by_every_l1_entry_quickly() {
    // 64 MiB with 512-byte clusters: 2048 L1 entries, each L2 table covering 32 KiB.
    let mut data = vec![0u8; 64 << 20];
    data[..4096].fill(0x5a);
    let mut bytes = write_qcow2(&data, Some(512), None);
    let l1 = u64::from_be_bytes(bytes[40..48].try_into().unwrap()) as usize;
    let l1_size = u32::from_be_bytes(bytes[36..40].try_into().unwrap()) as usize;
    assert_eq!(l1_size, 2048);
    let first = bytes[l1..l1 + 8].to_vec();
    for i in 1..l1_size {
        bytes[l1 + i * 8..l1 + i * 8 + 8].copy_from_slice(&first);
    }
    let (_dir, img) = open_bytes(&bytes);
    let img = img.unwrap();
    let started = std::time::Instant::now();
    let report = img.check().unwrap();
    assert!(started.elapsed().as_secs() < 10);
    assert_eq!(report.exit_code(), 2);
    assert!(report.corruptions.iter().any(|f| f.message.contains("reference=2048")), "{report:?}");
    // Every guest range reads the same 32 KiB.
    let mut a = vec![0u8; 32768];
    let mut b = vec![0u8; 32768];
    img.read_at(&mut a, 0).unwrap();
    img.read_at(&mut b, 63 << 20).unwrap();
    assert!(a == b);
}

#[test]
fn random_damage_never_panics() {
    let data = sample_disk(1 << 20);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for (cs, compression) in [(512u64, None), (65536, Some(Compression::Zstd)), (4096, Some(Compression::Zlib))] {
        let good = write_qcow2(&data, Some(cs), compression);
        let (_dir, path) = temp_path("fuzz.qcow2");
        // Metadata lives in the first clusters: damage there, a few bytes at a time.
        let metadata = (good.len() as u64).min(cs * 8 + 4096);
        for _ in 0..150 {
            let mut bytes = good.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % metadata) as usize;
                bytes[at] = match next() % 3 {
                    0 => next() as u8,
                    1 => 0xff,
                    _ => bytes[at] ^ (1 << (next() % 8)),
                };
            }
            std::fs::write(&path, &bytes).unwrap();
            let Ok(img) = open(&path, &OpenOptions::default()) else { continue };
            let _ = img.map(0, img.virtual_size());
            let _ = img.details();
            let _ = img.check();
            let mut buf = vec![0u8; 300_000.min(img.virtual_size() as usize)];
            let _ = img.read_at(&mut buf, 0);
        }
    }
}
