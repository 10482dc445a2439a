//! VHD (qemu's `vpc`) in and out, checked against qemu-img, plus hand-corrupted images.

use crate::common::*;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sha256_file(path: &Path) -> String {
    require("sha256sum");
    let out = std::process::Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// Run imgport and assert it did not panic (exit 101); returns (exit code, stdout + stderr).
fn imgport_status(args: &[&str]) -> (i32, String) {
    let out = run_imgport(args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let code = out.status.code().unwrap_or(-1);
    assert_ne!(code, 101, "imgport {args:?} panicked:\n{text}");
    (code, text)
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    std::fs::File::open(path).unwrap().read_exact_at(&mut buf, offset).unwrap();
    buf
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn be_u32(path: &Path, offset: u64) -> u32 {
    u32::from_be_bytes(read_at(path, offset, 4).try_into().unwrap())
}

fn be_u64(path: &Path, offset: u64) -> u64 {
    u64::from_be_bytes(read_at(path, offset, 8).try_into().unwrap())
}

/// Recompute the one's-complement checksum of the structure of `len` bytes at `at` (footer: 512 bytes,
/// checksum at 64; dynamic header: 1024 bytes, checksum at 36).
fn refresh_checksum(path: &Path, at: u64, len: usize, checksum_at: usize) {
    let mut b = read_at(path, at, len);
    b[checksum_at..checksum_at + 4].fill(0);
    let sum = !b.iter().fold(0u32, |a, &x| a.wrapping_add(x as u32));
    patch(path, at + checksum_at as u64, &sum.to_be_bytes());
}

fn refresh_footer(path: &Path, at: u64) {
    refresh_checksum(path, at, 512, 64);
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Footer CHS geometry (cylinders, heads, sectors per track) of the footer at EOF.
fn footer_chs(path: &Path) -> (u16, u8, u8) {
    let b = read_at(path, file_len(path) - 512, 512);
    (u16::from_be_bytes([b[56], b[57]]), b[58], b[59])
}

/// The BAT (offset, entries) of a dynamic VHD made by qemu or imgport (header at 512).
fn bat(path: &Path) -> (u64, Vec<u32>) {
    let table = be_u64(path, 512 + 16);
    let n = be_u32(path, 512 + 28) as usize;
    let raw = read_at(path, table, n * 4);
    (table, raw.chunks(4).map(|c| u32::from_be_bytes(c.try_into().unwrap())).collect())
}

/// Read a file's 4 KiB granules that hold non-zero data.
fn nonzero_granules(path: &Path) -> Vec<u64> {
    let data = std::fs::read(path).unwrap();
    data.chunks(4096).enumerate().filter(|(_, c)| c.iter().any(|&b| b != 0)).map(|(i, _)| i as u64 * 4096).collect()
}

struct Fixture {
    path: PathBuf,
    dynamic: bool,
    force_size: bool,
}

/// Sources: not a MiB multiple and not CHS-exact; CHS-exact (302x4x17) but not a MiB multiple; not even
/// a sector multiple.
const SOURCE_SIZES: [u64; 3] = [21 * MIB + 5 * 512, 10_514_432, 3 * MIB + 1000];

fn make_fixtures(dir: &Path, src: &Path, tag: &str) -> Vec<Fixture> {
    let mut v = Vec::new();
    for dynamic in [false, true] {
        for force_size in [false, true] {
            let sub = if dynamic { "dynamic" } else { "fixed" };
            let path = p(dir, &format!("{tag}-{sub}-{force_size}.vhd"));
            let opts = format!("subformat={sub}{}", if force_size { ",force_size=on" } else { "" });
            qemu_convert(src, &path, "vpc", &opts, &[]);
            v.push(Fixture { path, dynamic, force_size });
        }
    }
    v
}

#[test]
fn reads_qemu_fixed_and_dynamic_fixtures_bit_exactly() {
    let dir = tempdir();
    for (n, &size) in SOURCE_SIZES.iter().enumerate() {
        let src = p(dir.path(), &format!("src{n}.raw"));
        make_source_raw(&src, size, 10 + n as u64);
        for fx in make_fixtures(dir.path(), &src, &format!("s{n}")) {
            let what = format!("{} (source {size})", fx.path.display());
            // qemu's reading of the fixture is the reference (it rounds sizes up to a CHS geometry
            // unless force_size).
            let reference = p(dir.path(), "reference.raw");
            let _ = std::fs::remove_file(&reference);
            qemu_img(&["convert", "-f", "vpc", "-O", "raw", s(&fx.path), s(&reference)]);
            let qinfo = qemu_info(&fx.path, "vpc");
            let vsize = qinfo["virtual-size"].as_u64().unwrap();
            if fx.force_size {
                assert_eq!(vsize, size.next_multiple_of(512), "{what}");
            }
            // The source is a prefix of the disk; the rest is zeros.
            let (code, text) = qemu_img_status(&["compare", "-f", "raw", "-F", "vpc", s(&src), s(&fx.path)]);
            assert_eq!(code, 0, "{what}: {text}");

            // Detected without -f (fixed VHDs by their footer at the end).
            let out = p(dir.path(), "out.raw");
            let _ = std::fs::remove_file(&out);
            imgport_ok(&["convert", "-O", "raw", s(&fx.path), s(&out)]);
            assert_qemu_identical(&fx.path, "vpc", &out, "raw");

            let d = imgport_json(&["digest", "--plain", "--json", s(&fx.path)]);
            assert_eq!(d["digest"], sha256_file(&reference), "{what}");

            let info = imgport_json(&["info", "--json", s(&fx.path)]);
            assert_eq!(info["format"], "vhd", "{what}");
            assert_eq!(info["qemu_format"], qinfo["format"], "{what}");
            assert_eq!(info["virtual_size"], vsize, "{what}");
            assert_eq!(info["cluster_size"], qinfo["cluster-size"], "{what}");
            if fx.dynamic {
                assert_eq!(info["cluster_size"], 2 * MIB, "{what}");
            } else {
                assert!(info.get("cluster_size").is_none(), "{what}: qemu reports no cluster size for fixed");
            }
            assert_eq!(info["subformat"], if fx.dynamic { "dynamic" } else { "fixed" }, "{what}");
            let vhd = &info["vhd"];
            assert_eq!(vhd["creator_app"], if fx.force_size { "qem2" } else { "qemu" }, "{what}");
            assert_eq!(vhd["size_source"], if fx.force_size { "current_size" } else { "chs" }, "{what}");
            assert_eq!(vhd["creator_host_os"], "Wi2k", "{what}");
            if fx.force_size {
                assert_eq!(footer_chs(&fx.path), (65535, 16, 255), "{what}");
            }

            // Every non-zero granule of the disk lies in a Data extent.
            let map = imgport_json(&["map", "--json", s(&fx.path)]);
            let data: Vec<(u64, u64)> = map
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["kind"] == "data")
                .map(|e| (e["offset"].as_u64().unwrap(), e["length"].as_u64().unwrap()))
                .collect();
            for g in nonzero_granules(&reference) {
                assert!(data.iter().any(|&(o, l)| o <= g && g < o + l), "{what}: data at {g} not mapped as data");
            }
            let (code, text) = imgport_status(&["check", s(&fx.path)]);
            assert_eq!(code, 0, "{what}: {text}");
        }
    }
}

#[test]
fn dynamic_map_matches_qemu_allocation() {
    let dir = tempdir();
    let src = p(dir.path(), "src.raw");
    make_source_raw(&src, 23 * MIB, 21);
    let vhd = p(dir.path(), "d.vhd");
    qemu_convert(&src, &vhd, "vpc", "subformat=dynamic,force_size=on", &[]);
    let q: serde_json::Value =
        serde_json::from_str(&qemu_img(&["map", "--output=json", "-f", "vpc", s(&vhd)])).unwrap();
    let ours = imgport_json(&["map", "--json", s(&vhd)]);
    let q_data: Vec<(u64, u64, u64)> = q
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"] == true)
        .map(|e| (e["start"].as_u64().unwrap(), e["length"].as_u64().unwrap(), e["offset"].as_u64().unwrap()))
        .collect();
    let our_data: Vec<(u64, u64, u64)> = ours
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "data")
        .map(|e| (e["offset"].as_u64().unwrap(), e["length"].as_u64().unwrap(), e["host_offset"].as_u64().unwrap()))
        .collect();
    assert!(!q_data.is_empty());
    assert_eq!(our_data, q_data);
}

/// Write `src` as VHD with imgport and check it with qemu-img; returns the output path.
fn write_and_verify(dir: &Path, src: &Path, sub: &str, extra: &str) -> PathBuf {
    let out = p(dir, &format!("out-{sub}{}.vhd", extra.replace([',', '='], "-")));
    let opts = format!("subformat={sub}{extra}");
    imgport_ok(&["convert", "-O", "vhd", "-o", &opts, s(src), s(&out)]);
    let size = file_len(src);
    let padded = size.next_multiple_of(MIB);
    let qinfo = qemu_info(&out, "vpc");
    assert_eq!(qinfo["virtual-size"], padded, "{}", out.display());
    // qemu-img compare -f raw -F vpc: the padding reads as zeros, so identical (with a size warning).
    let (code, text) = qemu_img_status(&["compare", "-f", "raw", "-F", "vpc", s(src), s(&out)]);
    assert_eq!(code, 0, "{}: {text}", out.display());
    // qemu has no check for vpc (63 = not supported): imgport's own must be clean.
    let (code, _) = qemu_img_status(&["check", "-f", "vpc", s(&out)]);
    assert_eq!(code, 63);
    let (code, text) = imgport_status(&["check", s(&out)]);
    assert_eq!(code, 0, "{}: {text}", out.display());
    // imgport reads its own output (detected without -f) as qemu does.
    let back = p(dir, &format!("back-{sub}.raw"));
    let _ = std::fs::remove_file(&back);
    imgport_ok(&["convert", "-O", "raw", s(&out), s(&back)]);
    assert_qemu_identical(&out, "vpc", &back, "raw");
    let info = imgport_json(&["info", "--json", s(&out)]);
    assert_eq!(info["virtual_size"], padded);
    assert_eq!(info["vhd"]["creator_app"], "impt");
    assert_eq!(info["vhd"]["current_size"], padded);
    assert_eq!(info["vhd"]["original_size"], padded);
    out
}

#[test]
fn writer_fixed_and_dynamic_accepted_by_qemu() {
    let dir = tempdir();
    // Not a MiB multiple (padded to 22 MiB, not CHS-exact): maximum geometry.
    let src = p(dir.path(), "src.raw");
    make_source_raw(&src, 21 * MIB + 12345, 31);
    let fixed = write_and_verify(dir.path(), &src, "fixed", "");
    assert_eq!(file_len(&fixed), 22 * MIB + 512);
    assert_eq!(footer_chs(&fixed), (65535, 16, 255));
    assert_eq!(be_u64(&fixed, 22 * MIB + 16), u64::MAX, "fixed data offset");
    // Zero runs of the source are holes in the fixed output.
    let actual = imgport_json(&["info", "--json", s(&fixed)])["actual_size"].as_u64().unwrap();
    assert!(actual < 22 * MIB, "fixed output is not sparse ({actual} bytes allocated)");

    let dynamic = write_and_verify(dir.path(), &src, "dynamic", "");
    assert_eq!(footer_chs(&dynamic), (65535, 16, 255));
    assert_eq!(read_at(&dynamic, 0, 512), read_at(&dynamic, file_len(&dynamic) - 512, 512));
    let (_, entries) = bat(&dynamic);
    assert_eq!(entries.len(), 11, "BAT sized exactly to the disk");
    assert_eq!(imgport_json(&["info", "--json", s(&dynamic)])["cluster_size"], 2 * MIB);
    assert_eq!(qemu_info(&dynamic, "vpc")["cluster-size"], 2 * MIB);

    let small_blocks = write_and_verify(dir.path(), &src, "dynamic", ",block_size=512k");
    assert_eq!(bat(&small_blocks).1.len(), 44);
    assert_eq!(qemu_info(&small_blocks, "vpc")["cluster-size"], 512 << 10);
}

#[test]
fn writer_keeps_chs_exact_sizes_and_round_trips_digest() {
    let dir = tempdir();
    // 17 MiB is exactly 512 x 4 x 17 sectors.
    let src = p(dir.path(), "src.raw");
    make_source_raw(&src, 17 * MIB, 32);
    let digest = imgport_json(&["digest", "--json", s(&src)])["digest"].clone();
    for sub in ["fixed", "dynamic"] {
        let out = write_and_verify(dir.path(), &src, sub, "");
        assert_eq!(footer_chs(&out), (512, 4, 17), "{sub}");
        assert_eq!(imgport_json(&["info", "--json", s(&out)])["vhd"]["size_source"], "chs");
        assert_eq!(imgport_json(&["digest", "--json", s(&out)])["digest"], digest, "{sub}");
        let back = p(dir.path(), &format!("rt-{sub}.raw"));
        imgport_ok(&["convert", "-O", "raw", s(&out), s(&back)]);
        assert_eq!(imgport_json(&["digest", "--json", s(&back)])["digest"], digest, "{sub}");
        assert_qemu_identical(&src, "raw", &back, "raw");
    }
    // A zero source: a dynamic VHD with no block allocated.
    let zero = p(dir.path(), "zero.raw");
    std::fs::File::create(&zero).unwrap().set_len(5 * MIB).unwrap();
    let out = p(dir.path(), "zero.vhd");
    imgport_ok(&["convert", "-O", "vhd", s(&zero), s(&out)]);
    assert!(bat(&out).1.iter().all(|&e| e == 0xFFFF_FFFF));
    assert_eq!(file_len(&out), 1536 + 512 + 512);
    assert_qemu_identical(&zero, "raw", &out, "vpc");
}

#[test]
fn writer_rejects_options_that_do_not_apply() {
    let dir = tempdir();
    let src = p(dir.path(), "src.raw");
    make_source_raw(&src, MIB, 33);
    for opts in ["subformat=streamOptimized", "cluster_size=64k", "subformat=fixed,block_size=2M", "block_size=3M"] {
        let out = p(dir.path(), "x.vhd");
        let (code, text) = imgport_status(&["convert", "-O", "vhd", "-o", opts, s(&src), s(&out)]);
        assert_eq!(code, 1, "{opts}: {text}");
        assert!(!out.exists());
    }
}

// ---- hand-corrupted images ----

fn dynamic_fixture(dir: &Path, name: &str) -> PathBuf {
    let src = p(dir, &format!("{name}.raw"));
    make_source_raw(&src, 12 * MIB, 41);
    let vhd = p(dir, &format!("{name}.vhd"));
    qemu_convert(&src, &vhd, "vpc", "subformat=dynamic,force_size=on", &[]);
    vhd
}

fn fixed_fixture(dir: &Path, name: &str) -> PathBuf {
    let src = p(dir, &format!("{name}.raw"));
    make_source_raw(&src, 4 * MIB, 42);
    let vhd = p(dir, &format!("{name}.vhd"));
    qemu_convert(&src, &vhd, "vpc", "subformat=fixed,force_size=on", &[]);
    vhd
}

fn convert_fails(img: &Path, dir: &Path, expect: &str) {
    let out = p(dir, "fail.raw");
    let (code, text) = imgport_status(&["convert", "-O", "raw", s(img), s(&out)]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(expect), "expected '{expect}' in: {text}");
    assert!(!out.exists());
}

#[test]
fn bad_footer_checksum_is_refused_unless_ignored() {
    let dir = tempdir();
    let vhd = fixed_fixture(dir.path(), "f");
    let tail = file_len(&vhd) - 512;
    patch(&vhd, tail + 24, &[0x12, 0x34]); // timestamp, checksum not updated
    let (code, text) = imgport_status(&["info", s(&vhd)]);
    assert_eq!(code, 1);
    assert!(
        text.contains("footer checksum mismatch") && text.contains("stored") && text.contains("computed"),
        "{text}"
    );
    assert!(text.contains("--ignore-checksums"), "{text}");
    // qemu refuses it too.
    assert_ne!(qemu_img_status(&["info", "-f", "vpc", s(&vhd)]).0, 0);
    let (code, text) = imgport_status(&["check", s(&vhd)]);
    assert_eq!(code, 2, "{text}");
    // Accepted when asked, reported as a warning; the data is intact.
    let (code, text) = imgport_status(&["check", "--ignore-checksums", s(&vhd)]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Warning") && text.contains("checksum"), "{text}");
    let out = p(dir.path(), "out.raw");
    imgport_ok(&["convert", "--ignore-checksums", "-O", "raw", s(&vhd), s(&out)]);
    assert_qemu_identical(&p(dir.path(), "f.raw"), "raw", &out, "raw");
}

#[test]
fn dynamic_footer_copies_fall_back_and_disagree() {
    let dir = tempdir();
    let vhd = dynamic_fixture(dir.path(), "d");
    let reference = p(dir.path(), "d.raw");
    let tail = file_len(&vhd) - 512;

    // EOF footer damaged, copy at 0 good: use the copy, with a warning.
    let orig_tail = read_at(&vhd, tail, 512);
    patch(&vhd, tail + 100, &[1]);
    let (code, text) = imgport_status(&["check", s(&vhd)]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("using the copy at offset 0"), "{text}");
    let out = p(dir.path(), "a.raw");
    imgport_ok(&["convert", "-O", "raw", s(&vhd), s(&out)]);
    assert_qemu_identical(&reference, "raw", &out, "raw");
    // Both damaged: refused.
    patch(&vhd, 100, &[1]);
    convert_fails(&vhd, dir.path(), "checksum mismatch");
    patch(&vhd, 100, &[0]);
    patch(&vhd, tail, &orig_tail);

    // Copy at 0 differing only in its timestamp: a warning.
    patch(&vhd, 24, &[0xAA]);
    refresh_footer(&vhd, 0);
    let (code, text) = imgport_status(&["check", s(&vhd)]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("differs from the footer at the end"), "{text}");

    // Copy at 0 claiming another size: a corruption; imgport reads the size from the EOF footer (qemu from
    // the copy).
    patch(&vhd, 48, &(8 * MIB).to_be_bytes());
    refresh_footer(&vhd, 0);
    let (code, text) = imgport_status(&["check", "--json", s(&vhd)]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("current size"), "{text}");
    assert_eq!(imgport_json(&["info", "--json", s(&vhd)])["virtual_size"], 12 * MIB);
    assert_eq!(qemu_info(&vhd, "vpc")["virtual-size"], 8 * MIB);
    let out = p(dir.path(), "b.raw");
    imgport_ok(&["convert", "-O", "raw", s(&vhd), s(&out)]);
    assert_qemu_identical(&reference, "raw", &out, "raw");
}

#[test]
fn bad_dynamic_header_checksum_is_refused_unless_ignored() {
    let dir = tempdir();
    let vhd = dynamic_fixture(dir.path(), "d");
    patch(&vhd, 512 + 900, &[7]); // reserved area of the dynamic header
    let (code, text) = imgport_status(&["info", s(&vhd)]);
    assert_eq!(code, 1);
    assert!(text.contains("dynamic disk header checksum mismatch"), "{text}");
    assert_eq!(imgport_status(&["check", s(&vhd)]).0, 2);
    let out = p(dir.path(), "out.raw");
    imgport_ok(&["convert", "--ignore-checksums", "-O", "raw", s(&vhd), s(&out)]);
    assert_qemu_identical(&p(dir.path(), "d.raw"), "raw", &out, "raw");
}

#[test]
fn bat_entries_past_eof_or_overlapping_are_corrupt() {
    let dir = tempdir();
    let vhd = dynamic_fixture(dir.path(), "d");
    let (table, entries) = bat(&vhd);
    let allocated: Vec<usize> = (0..entries.len()).filter(|&i| entries[i] != 0xFFFF_FFFF).collect();
    assert!(allocated.len() >= 2, "fixture needs two allocated blocks");
    let (a, b) = (allocated[0], allocated[1]);

    // Past EOF: opens (info works), check exits 2, reads of the block fail clearly.
    patch(&vhd, table + a as u64 * 4, &0x0100_0000u32.to_be_bytes());
    assert_eq!(imgport_status(&["info", s(&vhd)]).0, 0);
    let (code, text) = imgport_status(&["check", s(&vhd)]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains(&format!("BAT entry {a}")) && text.contains("past the end of the file"), "{text}");
    convert_fails(&vhd, dir.path(), "past the end of the file");
    // qemu refuses to open it at all.
    assert_ne!(qemu_img_status(&["info", "-f", "vpc", s(&vhd)]).0, 0);

    // Two entries naming the same block.
    patch(&vhd, table + a as u64 * 4, &entries[b].to_be_bytes());
    let (code, text) = imgport_status(&["check", s(&vhd)]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("overlaps another block"), "{text}");
    convert_fails(&vhd, dir.path(), "overlaps another block");

    // A block over the dynamic header.
    patch(&vhd, table + a as u64 * 4, &1u32.to_be_bytes());
    let (code, text) = imgport_status(&["check", s(&vhd)]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("overlaps the footer copy") || text.contains("overlaps the dynamic disk header"), "{text}");

    // Restored: clean again.
    patch(&vhd, table + a as u64 * 4, &entries[a].to_be_bytes());
    assert_eq!(imgport_status(&["check", s(&vhd)]).0, 0);

    // A BAT too short for the disk.
    patch(&vhd, 512 + 28, &2u32.to_be_bytes());
    refresh_checksum(&vhd, 512, 1024, 36);
    let (code, text) = imgport_status(&["info", s(&vhd)]);
    assert_eq!(code, 1);
    assert!(text.contains("BAT too small"), "{text}");
    assert_eq!(imgport_status(&["check", s(&vhd)]).0, 2);

    // A BAT longer than the file.
    patch(&vhd, 512 + 28, &0x4000_0000u32.to_be_bytes());
    refresh_checksum(&vhd, 512, 1024, 36);
    let (code, text) = imgport_status(&["check", s(&vhd)]);
    assert_eq!(code, 2);
    assert!(text.contains("extends past the end of the file"), "{text}");
}

#[test]
fn truncated_images_are_reported() {
    let dir = tempdir();
    let vhd = dynamic_fixture(dir.path(), "d");
    let (_, entries) = bat(&vhd);
    let last = entries.iter().filter(|&&e| e != 0xFFFF_FFFF).max().copied().unwrap() as u64 * 512;
    // Cut in the middle of the last block: the EOF footer is gone (the copy at 0 is used) and the block
    // is past the end.
    std::fs::OpenOptions::new().write(true).open(&vhd).unwrap().set_len(last + 512 + 4096).unwrap();
    let (code, text) = imgport_status(&["check", s(&vhd)]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("past the end of the file"), "{text}");
    convert_fails(&vhd, dir.path(), "past the end of the file");

    // Shorter than the BAT.
    std::fs::OpenOptions::new().write(true).open(&vhd).unwrap().set_len(1600).unwrap();
    let (code, text) = imgport_status(&["check", s(&vhd)]);
    assert_eq!(code, 2, "{text}");
    convert_fails(&vhd, dir.path(), "past the end of the file");

    // Too small for a footer at all.
    std::fs::OpenOptions::new().write(true).open(&vhd).unwrap().set_len(300).unwrap();
    let (code, text) = imgport_status(&["info", "-f", "vhd", s(&vhd)]);
    assert_eq!(code, 1);
    assert!(text.contains("too small"), "{text}");
}

#[test]
fn differencing_and_unknown_disk_types_are_refused() {
    let dir = tempdir();
    let vhd = dynamic_fixture(dir.path(), "d");
    let tail = file_len(&vhd) - 512;
    for at in [0, tail] {
        patch(&vhd, at + 60, &4u32.to_be_bytes());
        refresh_footer(&vhd, at);
    }
    let name: Vec<u8> = "parent-disk.vhd".encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
    patch(&vhd, 512 + 64, &name);
    refresh_checksum(&vhd, 512, 1024, 36);
    let (code, text) = imgport_status(&["info", s(&vhd)]);
    assert_eq!(code, 1);
    assert!(text.contains("differencing VHD") && text.contains("\"parent-disk.vhd\""), "{text}");
    assert!(text.contains("not supported"), "{text}");
    let (code, _) = imgport_status(&["check", s(&vhd)]);
    assert_eq!(code, 1, "a refused feature is not a corruption");
    convert_fails(&vhd, dir.path(), "differencing VHD");

    for at in [0, tail] {
        patch(&vhd, at + 60, &7u32.to_be_bytes());
        refresh_footer(&vhd, at);
    }
    let (code, text) = imgport_status(&["info", s(&vhd)]);
    assert_eq!(code, 1);
    assert!(text.contains("unknown VHD disk type 7"), "{text}");
}

#[test]
fn fixed_disk_larger_than_its_data_reads_like_qemu() {
    // A fixed footer claiming more than the file holds: qemu reads the footer bytes and zeros past the end;
    // imgport reads the same and its check reports the mismatch.
    let dir = tempdir();
    let vhd = fixed_fixture(dir.path(), "f");
    let tail = file_len(&vhd) - 512;
    patch(&vhd, tail + 48, &(4 * MIB + 8192).to_be_bytes());
    refresh_footer(&vhd, tail);
    assert_eq!(qemu_info(&vhd, "vpc")["virtual-size"], 4 * MIB + 8192);
    let out = p(dir.path(), "out.raw");
    imgport_ok(&["convert", "-O", "raw", s(&vhd), s(&out)]);
    assert_qemu_identical(&vhd, "vpc", &out, "raw");
    let (code, text) = imgport_status(&["check", s(&vhd)]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("bytes of data but the disk is"), "{text}");
}

#[test]
fn large_sizes_are_read_and_reported() {
    // A dynamic VHD above qemu's 2040 GiB limit (only its BAT is stored): imgport opens it, check warns.
    let dir = tempdir();
    let src = p(dir.path(), "big.raw");
    std::fs::File::create(&src).unwrap().set_len(2100 << 30).unwrap();
    let out = p(dir.path(), "big.vhd");
    imgport_ok(&["convert", "-O", "vhd", s(&src), s(&out)]);
    assert_ne!(qemu_img_status(&["info", "-f", "vpc", s(&out)]).0, 0);
    let info = imgport_json(&["info", "--json", s(&out)]);
    assert_eq!(info["virtual_size"], 2100u64 << 30);
    let (code, text) = imgport_status(&["check", s(&out)]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("2040 GiB"), "{text}");
}

#[test]
fn sector_bitmaps_are_ignored_like_qemu() {
    // qemu reads an allocated block whole whatever its sector bitmap says; so does imgport.
    let dir = tempdir();
    let vhd = dynamic_fixture(dir.path(), "d");
    let (_, entries) = bat(&vhd);
    for &e in entries.iter().filter(|&&e| e != 0xFFFF_FFFF) {
        patch(&vhd, e as u64 * 512, &[0u8; 512]);
    }
    let out = p(dir.path(), "out.raw");
    imgport_ok(&["convert", "-O", "raw", s(&vhd), s(&out)]);
    assert_qemu_identical(&vhd, "vpc", &out, "raw");
    assert_qemu_identical(&p(dir.path(), "d.raw"), "raw", &out, "raw");
    assert_eq!(imgport_status(&["check", s(&vhd)]).0, 0);
}
