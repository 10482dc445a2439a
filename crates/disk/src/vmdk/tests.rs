//! Unit tests: writer output read back, hand-made hostile images, descriptor edge cases.

use super::header::*;
use crate::error::ErrorKind;
use crate::image::{DiskImage, ExtentKind};
use crate::open::{open, OpenOptions};
use crate::probe::Format;
use crate::sink::VecSink;
use crate::write::{write_image, Control, WriteOptions};
use std::path::{Path, PathBuf};

use crate::mem::MemImage as Mem;

fn pattern(size: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; size];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    // Data in some 64 KiB blocks, zeros in others; compressible and random pieces.
    for (i, block) in v.chunks_mut(65536).enumerate() {
        match i % 5 {
            0 | 3 => {
                for b in block.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
            }
            1 => block.iter_mut().enumerate().for_each(|(j, b)| *b = (j / 100) as u8),
            _ => {}
        }
    }
    if let Some(last) = v.last_mut() {
        *last = 0x5a;
    }
    v
}

fn write_vmdk(data: &[u8]) -> Vec<u8> {
    let mut sink = VecSink::default();
    write_image(&Mem(data.to_vec()), &WriteOptions::new(Format::Vmdk), &mut sink, &Control::new()).unwrap();
    sink.data
}

fn save(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn read_all(img: &dyn DiskImage) -> Vec<u8> {
    let mut buf = vec![0u8; img.virtual_size() as usize];
    img.read_at(&mut buf, 0).unwrap();
    buf
}

fn open_err(path: &Path) -> crate::Error {
    match open(path, &OpenOptions::default()) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e,
    }
}

#[test]
fn writer_output_reads_back_with_the_stream_layout() {
    let dir = tempfile::tempdir().unwrap();
    let size = 33 * 1024 * 1024 + 3 * 512;
    let data = pattern(size, 1);
    let bytes = write_vmdk(&data);
    let path = save(dir.path(), "w.vmdk", &bytes);
    let img = open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(img.virtual_size(), size as u64);
    assert_eq!(read_all(img.as_ref()), data);
    // Unaligned reads across grains and grain tables.
    let mut buf = vec![0u8; 200_000];
    img.read_at(&mut buf, 32 * 1024 * 1024 - 70_000).unwrap();
    assert_eq!(buf[..], data[32 * 1024 * 1024 - 70_000..][..200_000]);
    assert!(img.check().unwrap().is_clean(), "{:?}", img.check().unwrap());
    let d = img.details();
    assert_eq!(d.subformat.as_deref(), Some("streamOptimized"));
    assert_eq!(d.cluster_size, Some(65536));
    let info = d.vmdk().unwrap().clone();
    assert!(info.compressed);
    assert_eq!(info.adapter_type.as_deref(), Some("lsilogic"));
    // Zero blocks were left out; the map says so.
    let map = img.map(0, size as u64).unwrap();
    assert!(map.iter().any(|e| e.kind() == ExtentKind::Unallocated));
    assert!(map.iter().filter(|e| e.kind() == ExtentKind::Data).all(|e| e.is_compressed()));

    // Layout: GD_AT_END header, footer marker + footer + end-of-stream marker at the end.
    let mut h = [0u8; 512];
    h.copy_from_slice(&bytes[..512]);
    let header = SparseHeader::parse(&h);
    assert_eq!(header.gd_offset, GD_AT_END);
    assert_eq!(header.flags, FLAG_NL_DETECT | FLAG_COMPRESSED | FLAG_MARKERS);
    assert_eq!(header.version, 3);
    assert_eq!(header.overhead, 128);
    let n = bytes.len();
    assert_eq!(n % 512, 0);
    assert_eq!(Marker::parse(&bytes[n - 1536..n - 1520]), Marker { value: 1, size: 0, kind: MARKER_FOOTER });
    assert_eq!(&bytes[n - 1024..n - 1020], b"KDMV");
    assert!(bytes[n - 512..].iter().all(|&b| b == 0));
    h.copy_from_slice(&bytes[n - 1024..n - 512]);
    let footer = SparseHeader::parse(&h);
    let gd = footer.gd_offset as usize * 512;
    assert_eq!(Marker::parse(&bytes[gd - 512..gd - 496]).kind, MARKER_GD);
    assert_eq!(SparseHeader { gd_offset: GD_AT_END, ..footer }, header);
}

#[test]
fn writer_rejects_options_that_do_not_apply() {
    let e = write_image(&Mem(Vec::new()), &WriteOptions::new(Format::Vmdk), &mut VecSink::default(), &Control::new());
    assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidArgument);
    let src = Mem(vec![0; 4096]);
    for (k, v) in [("subformat", "dynamic"), ("cluster_size", "1M"), ("block_size", "2M")] {
        let mut o = WriteOptions::new(Format::Vmdk);
        o.set(k, v).unwrap();
        let e = write_image(&src, &o, &mut VecSink::default(), &Control::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{k}={v}: {e}");
    }
}

#[test]
fn empty_and_tiny_disks() {
    let dir = tempfile::tempdir().unwrap();
    for size in [512usize, 4096, 65536 + 512] {
        let data = pattern(size, 3);
        let path = save(dir.path(), &format!("t{size}.vmdk"), &write_vmdk(&data));
        let img = open(&path, &OpenOptions::default()).unwrap();
        assert_eq!(read_all(img.as_ref()), data);
        assert!(img.check().unwrap().is_clean());
    }
    // All zeros: no grain, no grain table, still a valid image.
    let path = save(dir.path(), "zeros.vmdk", &write_vmdk(&vec![0u8; 3 << 20]));
    let img = open(&path, &OpenOptions::default()).unwrap();
    assert!(read_all(img.as_ref()).iter().all(|&b| b == 0));
    assert!(img.map(0, 3 << 20).unwrap().iter().all(|e| e.kind() == ExtentKind::Unallocated));
}

#[test]
fn truncated_stream_without_footer_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = write_vmdk(&pattern(2 << 20, 4));
    for cut in [512, 1536, bytes.len() / 2] {
        let path = save(dir.path(), "cut.vmdk", &bytes[..bytes.len() - cut]);
        let e = open_err(&path);
        assert_eq!(e.kind(), ErrorKind::CorruptImage, "{e}");
        assert!(e.message().contains("no valid footer"), "{e}");
    }
}

/// A hand-made monolithicSparse header with the given capacity and grain directory offset.
fn kdmv(capacity: u64, gd_offset: u64, file_len: usize) -> Vec<u8> {
    let h = SparseHeader {
        version: 1,
        flags: FLAG_NL_DETECT,
        capacity,
        grain_sectors: 128,
        desc_offset: 0,
        desc_size: 0,
        gtes_per_gt: 512,
        rgd_offset: 0,
        gd_offset,
        overhead: 1,
        unclean_shutdown: false,
        nl_check: NL_CHECK,
        compress_algorithm: 0,
    };
    let mut b = vec![0u8; file_len];
    b[..512].copy_from_slice(&h.to_bytes());
    b
}

#[test]
fn huge_capacity_is_refused_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    for capacity in [u64::MAX, 1 << 54, 1 << 40] {
        let path = save(dir.path(), "huge.vmdk", &kdmv(capacity, 1, 4096));
        let e = open_err(&path);
        assert!(matches!(e.kind(), ErrorKind::CorruptImage | ErrorKind::UnsupportedFeature | ErrorKind::InvalidFormat));
        assert!(e.to_string().contains("grain directory") || e.to_string().contains("capacity"), "{e}");
    }
}

#[test]
fn hostile_grain_table_entries() {
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB disk: 16 grains in one grain table at sector 2; GD at sector 1.
    let mut b = kdmv(2048, 1, 4 * 512 + 65536);
    b[512..516].copy_from_slice(&2u32.to_le_bytes());
    let gte = |b: &mut Vec<u8>, i: usize, v: u32| b[1024 + i * 4..1024 + i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    gte(&mut b, 0, 4); // grain 0 at sector 4: fine
    b[4 * 512..4 * 512 + 4].copy_from_slice(b"data");
    gte(&mut b, 1, 1); // zeroed grain
    gte(&mut b, 2, 0x00ff_ffff); // past EOF
    gte(&mut b, 3, 2); // on top of the grain table
    let path = save(dir.path(), "gte.vmdk", &b);
    let img = open(&path, &OpenOptions::default()).unwrap();
    let mut buf = vec![0u8; 65536 * 2];
    img.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..4], b"data");
    assert!(buf[65536..].iter().all(|&x| x == 0));
    let e = img.read_at(&mut buf, 2 * 65536).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CorruptImage, "{e}");
    let r = img.check().unwrap();
    assert_eq!(r.exit_code(), 2);
    let text = format!("{:?}", r.corruptions);
    assert!(text.contains("past the end"), "{text}");
    assert!(text.contains("overlaps"), "{text}");
    assert!(r.warnings.iter().any(|w| w.message.contains("zeroed-grain flag")));
    // The grain directory pointing past EOF.
    let mut b2 = b.clone();
    b2[512..516].copy_from_slice(&0x0fff_0000u32.to_le_bytes());
    let path = save(dir.path(), "gd.vmdk", &b2);
    let img = open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(img.read_at(&mut buf, 0).unwrap_err().kind(), ErrorKind::CorruptImage);
    assert_eq!(img.check().unwrap().exit_code(), 2);
}

#[test]
fn bad_header_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    type Patch = fn(&mut Vec<u8>);
    let cases: Vec<(&str, Patch)> = vec![
        ("version", |b| b[4] = 9),
        ("grain", |b| b[20..28].copy_from_slice(&0u64.to_le_bytes())),
        ("grain", |b| b[20..28].copy_from_slice(&(1u64 << 40).to_le_bytes())),
        ("entries", |b| b[44..48].copy_from_slice(&100_000u32.to_le_bytes())),
        ("newline", |b| b[75] = b'\n'),
        ("compression", |b| b[77] = 7),
        ("truncated", |b| b[64..72].copy_from_slice(&1000u64.to_le_bytes())),
    ];
    for (what, f) in cases {
        let mut b = kdmv(2048, 1, 4096);
        f(&mut b);
        let path = save(dir.path(), "bad.vmdk", &b);
        let e = open_err(&path);
        assert_ne!(e.kind(), ErrorKind::Io, "{what}: {e}");
    }
}

#[test]
fn compressed_grain_corruption_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(1 << 20, 5);
    let mut bytes = write_vmdk(&data);
    // First grain record starts right after the 64 KiB overhead: break its LBA and its deflate stream.
    bytes[65536] ^= 0x80;
    bytes[65536 + 40] ^= 0xff;
    let path = save(dir.path(), "bad.vmdk", &bytes);
    let img = open(&path, &OpenOptions::default()).unwrap();
    let mut buf = vec![0u8; 65536];
    assert_eq!(img.read_at(&mut buf, 0).unwrap_err().kind(), ErrorKind::CorruptImage);
    let r = img.check().unwrap();
    assert!(r.corruptions.iter().any(|f| f.message.contains("marker says sector")), "{r:?}");
    // An impossible compressed size.
    let mut bytes = write_vmdk(&data);
    bytes[65536 + 8..65536 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    let path = save(dir.path(), "size.vmdk", &bytes);
    let img = open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(img.read_at(&mut buf, 0).unwrap_err().kind(), ErrorKind::CorruptImage);
    assert_eq!(img.check().unwrap().exit_code(), 2);
}

fn descriptor(create_type: &str, extra: &str, extents: &str) -> String {
    format!(
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"{create_type}\"\n{extra}\n\
         # Extent description\n{extents}\n#DDB\nddb.adapterType = \"lsilogic\"\n"
    )
}

#[test]
fn descriptor_files_flat_zero_and_sparse_extents() {
    let dir = tempfile::tempdir().unwrap();
    let flat = pattern(1 << 20, 6);
    save(dir.path(), "a.bin", &flat);
    save(dir.path(), "s.vmdk", &write_vmdk(&pattern(65536 * 3, 7)));
    let text = descriptor(
        "monolithicFlat",
        "",
        "RW 1024 FLAT \"a.bin\" 1024\nRDONLY 16 ZERO\nRW 384 SPARSE \"s.vmdk\"\nRW 8 VMFS \"a.bin\"",
    );
    let path = save(dir.path(), "d.vmdk", text.as_bytes());
    let img = open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(img.virtual_size(), (1024 + 16 + 384 + 8) * 512);
    let all = read_all(img.as_ref());
    assert_eq!(all[..512 * 1024], flat[512 * 1024..]);
    assert!(all[512 * 1024..512 * 1040].iter().all(|&b| b == 0));
    assert_eq!(all[512 * 1040..512 * 1424], pattern(65536 * 3, 7)[..]);
    assert_eq!(all[512 * 1424..], flat[..4096]);
    let map = img.map(0, img.virtual_size()).unwrap();
    assert!(map.iter().any(|e| e.kind() == ExtentKind::Zero));
    let d = img.details();
    assert_eq!(d.cluster_size, None, "flat extents: no cluster size, like qemu");
    let info = d.vmdk().unwrap().clone();
    assert_eq!(info.extents.len(), 4);
    assert_eq!(info.extents[0].offset, Some(1024));
    assert_eq!(info.cid, Some(0x12345678));
    assert!(img.check().unwrap().is_clean(), "{:?}", img.check().unwrap());
}

#[test]
fn descriptor_refusals() {
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), "a.bin", &[1u8; 4096]);
    let cases = [
        // (descriptor, expected kind, words in the message)
        (descriptor("monolithicFlat", "", "RW 8 FLAT \"self.vmdk\" 0"), ErrorKind::CorruptImage, "itself"),
        (descriptor("monolithicFlat", "", "RW 8 FLAT \"./self.vmdk\" 0"), ErrorKind::CorruptImage, "itself"),
        (
            descriptor("monolithicFlat", "parentFileNameHint=\"base.vmdk\"", "RW 8 FLAT \"a.bin\" 0"),
            ErrorKind::UnsupportedFeature,
            "differencing",
        ),
        (
            descriptor("monolithicFlat", "", "RW 8 FLAT \"a.bin\" 0")
                .replace("parentCID=ffffffff", "parentCID=1234abcd"),
            ErrorKind::UnsupportedFeature,
            "differencing",
        ),
        (descriptor("monolithicFlat", "", "NOACCESS 8 FLAT \"a.bin\" 0"), ErrorKind::UnsupportedFeature, "NOACCESS"),
        (descriptor("fullDevice", "", "RW 8 FLAT \"/dev/sda\" 0"), ErrorKind::UnsupportedFeature, "device"),
        (descriptor("monolithicFlat", "", "RW 8 VMFSRDM \"a.bin\""), ErrorKind::UnsupportedFeature, "raw host"),
        (descriptor("monolithicFlat", "", "RW 8 SESPARSE \"a.bin\""), ErrorKind::UnsupportedFeature, "seSparse"),
        (descriptor("monolithicFlat", "", "RW 8 FLAT \"missing.bin\" 0"), ErrorKind::CorruptImage, "missing"),
        (descriptor("monolithicFlat", "", "RW 8 SPARSE \"a.bin\""), ErrorKind::InvalidFormat, "not a sparse"),
        (descriptor("monolithicFlat", "", ""), ErrorKind::InvalidFormat, "no extents"),
        (
            descriptor("monolithicFlat", "", "RW 36028797018963968 FLAT \"a.bin\" 0"),
            ErrorKind::InvalidFormat,
            "impossible",
        ),
        (
            descriptor("monolithicFlat", "", &"RW 72057594037927 ZERO\n".repeat(1100)),
            ErrorKind::InvalidFormat,
            "impossible",
        ),
        ("# Disk DescriptorFile\nRW 8 FLAT \"a.bin\" 0\n".to_string(), ErrorKind::InvalidFormat, "createType"),
    ];
    for (text, kind, words) in cases {
        let path = save(dir.path(), "self.vmdk", text.as_bytes());
        let e = match open(&path, &OpenOptions { format: Some(Format::Vmdk), ..OpenOptions::default() }) {
            Ok(_) => panic!("opened:\n{text}"),
            Err(e) => e,
        };
        assert_eq!(e.kind(), kind, "{e}\n{text}");
        assert!(e.to_string().contains(words), "{e}\n{text}");
    }
}

#[test]
fn short_flat_file_reads_as_corrupt_and_check_says_so() {
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), "a.bin", &[7u8; 4096]);
    let path = save(dir.path(), "d.vmdk", descriptor("monolithicFlat", "", "RW 16 FLAT \"a.bin\" 0").as_bytes());
    let img = open(&path, &OpenOptions::default()).unwrap();
    let mut buf = vec![0u8; 4096];
    img.read_at(&mut buf, 0).unwrap();
    assert_eq!(img.read_at(&mut buf, 4096).unwrap_err().kind(), ErrorKind::CorruptImage);
    assert_eq!(img.check().unwrap().exit_code(), 2);
    // The map still covers the missing tail as data, so a conversion fails instead of inventing zeros.
    let map = img.map(0, 8192).unwrap();
    assert_eq!(map.last().map(|e| (e.end(), e.kind())), Some((8192, ExtentKind::Data)));
}

#[test]
fn absolute_extent_paths_are_allowed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let a = save(dir.path(), "a.bin", &[3u8; 4096]);
    let text = descriptor("monolithicFlat", "", &format!("RW 8 FLAT \"{}\" 0", a.display()));
    let path = save(dir.path(), "d.vmdk", text.as_bytes());
    let img = open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(read_all(img.as_ref()), vec![3u8; 4096]);
    let r = img.check().unwrap();
    assert!(r.is_clean());
    assert!(r.warnings.iter().any(|w| w.message.contains("absolute path")));
}

#[test]
fn embedded_descriptor_with_parent_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = write_vmdk(&pattern(1 << 20, 8));
    let text = String::from_utf8_lossy(&bytes[512..4096]).into_owned();
    let changed = text.replacen("parentCID=ffffffff", "parentCID=0badcafe", 1);
    bytes[512..4096].copy_from_slice(changed.as_bytes());
    let path = save(dir.path(), "child.vmdk", &bytes);
    let e = open_err(&path);
    assert_eq!(e.kind(), ErrorKind::UnsupportedFeature);
    assert!(e.to_string().contains("0badcafe"), "{e}");
}

/// An ESX vmfsSparse (COWD) extent: 4096-entry grain tables, 1 KiB grains here.
fn cowd(capacity: u32, grains: &[(u32, u8)]) -> Vec<u8> {
    let grain_sectors = 2u32;
    let gd_entries = capacity.div_ceil(4096 * grain_sectors);
    let mut b = vec![0u8; 512];
    b[..4].copy_from_slice(b"COWD");
    for (at, v) in [(4, 1u32), (8, 3), (12, capacity), (16, grain_sectors), (20, 4), (24, gd_entries)] {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    b.resize(4 * 512, 0);
    // GD at sector 4, one GT at sector 8 (16 KiB), grains after it.
    b.resize(8 * 512, 0);
    b[4 * 512..4 * 512 + 4].copy_from_slice(&8u32.to_le_bytes());
    b.resize(8 * 512 + 4096 * 4, 0);
    for &(g, fill) in grains {
        let sector = (b.len() / 512) as u32;
        let e = 8 * 512 + g as usize * 4;
        b[e..e + 4].copy_from_slice(&sector.to_le_bytes());
        b.extend(std::iter::repeat_n(fill, 1024));
    }
    b
}

#[test]
fn cowd_vmfs_sparse_extent() {
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), "x-delta.vmdk", &cowd(64, &[(0, 0x11), (5, 0x55), (31, 0xff)]));
    let path = save(dir.path(), "x.vmdk", descriptor("vmfsSparse", "", "RW 64 VMFSSPARSE \"x-delta.vmdk\"").as_bytes());
    let img = open(&path, &OpenOptions::default()).unwrap();
    let all = read_all(img.as_ref());
    assert_eq!(all.len(), 64 * 512);
    assert!(all[..1024].iter().all(|&b| b == 0x11));
    assert!(all[1024..5 * 1024].iter().all(|&b| b == 0));
    assert!(all[5 * 1024..6 * 1024].iter().all(|&b| b == 0x55));
    assert!(all[31 * 1024..].iter().all(|&b| b == 0xff));
    assert!(img.check().unwrap().is_clean());
}

#[test]
fn thousands_of_extent_files_stay_open() {
    let dir = tempfile::tempdir().unwrap();
    let flat = pattern(4096, 9);
    save(dir.path(), "a.bin", &flat);
    let lines = (0..3000).map(|i| format!("RW 1 FLAT \"a.bin\" {}", i % 8)).collect::<Vec<_>>().join("\n");
    let path = save(dir.path(), "many.vmdk", descriptor("twoGbMaxExtentFlat", "", &lines).as_bytes());
    // Start from the common default soft limit, so the raise is exercised wherever the test runs.
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let low = libc::rlimit { rlim_cur: lim.rlim_cur.min(1024), rlim_max: lim.rlim_max };
        libc::setrlimit(libc::RLIMIT_NOFILE, &low);
    }
    let img = open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(img.virtual_size(), 3000 * 512);
    let all = read_all(img.as_ref());
    for i in 0..3000 {
        let at = (i % 8) * 512;
        assert_eq!(all[i * 512..(i + 1) * 512], flat[at..at + 512]);
    }
    drop(img);
    // SAFETY: as above.
    unsafe {
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}
