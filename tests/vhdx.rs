//! VHDX in and out, checked against qemu-img and qemu-io.
//!
//! Fixtures come from `qemu-img convert -O vhdx` at test time. Images qemu cannot make (4096-byte logical
//! sectors, a log that needs replaying, damaged structures) are made by patching qemu's output here, with
//! the checksums recomputed, so each stays consistent apart from the one thing under test.

use crate::common::*;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---- reading and patching VHDX structures from the test side ----

/// CRC-32C (Castagnoli), bitwise: the structures patched here are small.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

fn read_at(path: &Path, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    std::fs::File::open(path).unwrap().read_exact_at(&mut b, off).unwrap();
    b
}

fn write_at(path: &Path, off: u64, data: &[u8]) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(data, off).unwrap();
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Recompute the checksum (at +4) of the `len`-byte structure at `off`.
fn reseal(path: &Path, off: u64, len: usize) {
    let mut b = read_at(path, off, len);
    b[4..8].fill(0);
    let crc = crc32c(&b);
    write_at(path, off + 4, &crc.to_le_bytes());
}

const BAT_REGION: [u8; 16] =
    [0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08];
const METADATA_REGION: [u8; 16] =
    [0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e];
const FILE_PARAMETERS: [u8; 16] =
    [0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b];
const LOGICAL_SECTOR_SIZE: [u8; 16] =
    [0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47, 0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f];

/// Where things are in a VHDX, read from its headers and first region table.
struct Layout {
    log_offset: u64,
    log_length: u64,
    bat: u64,
    metadata: u64,
}

fn layout(path: &Path) -> Layout {
    let h1 = read_at(path, 64 << 10, 4096);
    let h2 = read_at(path, 128 << 10, 4096);
    // The current header is the one with the larger sequence number.
    let h = if u64_at(&h2, 8) > u64_at(&h1, 8) { h2 } else { h1 };
    let rt = read_at(path, 192 << 10, 64 << 10);
    let region = |guid: &[u8; 16]| {
        (0..u32_at(&rt, 8) as usize)
            .map(|i| &rt[16 + 32 * i..48 + 32 * i])
            .find(|e| &e[..16] == guid)
            .map(|e| u64_at(e, 16))
            .expect("region present")
    };
    Layout {
        log_offset: u64_at(&h, 72),
        log_length: u32_at(&h, 68) as u64,
        bat: region(&BAT_REGION),
        metadata: region(&METADATA_REGION),
    }
}

/// File offset of a metadata item.
fn metadata_item(path: &Path, item: &[u8; 16]) -> u64 {
    let l = layout(path);
    let t = read_at(path, l.metadata, 64 << 10);
    let n = u16::from_le_bytes([t[10], t[11]]) as usize;
    (0..n)
        .map(|i| &t[32 + 32 * i..64 + 32 * i])
        .find(|e| &e[..16] == item)
        .map(|e| l.metadata + u32_at(e, 16) as u64)
        .expect("metadata item present")
}

fn bat_entry(path: &Path, idx: u64) -> u64 {
    u64_at(&read_at(path, layout(path).bat + idx * 8, 8), 0)
}

fn set_bat_entry(path: &Path, idx: u64, entry: u64) {
    write_at(path, layout(path).bat + idx * 8, &entry.to_le_bytes());
}

/// Set the log GUID in both headers (checksums recomputed).
fn set_log_guid(path: &Path, guid: &[u8; 16]) {
    for off in [64u64 << 10, 128 << 10] {
        write_at(path, off + 48, guid);
        reseal(path, off, 4096);
    }
}

/// A log entry (MS-VHDX 2.3.1): header, data and zero descriptors, data sectors, CRC-32C over it all.
fn log_entry(
    guid: &[u8; 16],
    seq: u64,
    tail: u32,
    pages: &[(u64, Vec<u8>)],
    zeros: &[(u64, u64)],
    file_len: u64,
) -> Vec<u8> {
    let count = pages.len() + zeros.len();
    let desc_sectors = (64 + 32 * count).div_ceil(4096);
    let mut e = vec![0u8; (desc_sectors + pages.len()) * 4096];
    let len = e.len() as u32;
    e[0..4].copy_from_slice(b"loge");
    e[8..12].copy_from_slice(&len.to_le_bytes());
    e[12..16].copy_from_slice(&tail.to_le_bytes());
    e[16..24].copy_from_slice(&seq.to_le_bytes());
    e[24..28].copy_from_slice(&(count as u32).to_le_bytes());
    e[32..48].copy_from_slice(guid);
    e[48..56].copy_from_slice(&file_len.to_le_bytes());
    e[56..64].copy_from_slice(&file_len.to_le_bytes());
    for (k, (off, page)) in pages.iter().enumerate() {
        let d = 64 + 32 * k;
        e[d..d + 4].copy_from_slice(b"desc");
        e[d + 4..d + 8].copy_from_slice(&page[4092..]);
        e[d + 8..d + 16].copy_from_slice(&page[..8]);
        e[d + 16..d + 24].copy_from_slice(&off.to_le_bytes());
        e[d + 24..d + 32].copy_from_slice(&seq.to_le_bytes());
        let s = (desc_sectors + k) * 4096;
        e[s..s + 4].copy_from_slice(b"data");
        e[s + 4..s + 8].copy_from_slice(&((seq >> 32) as u32).to_le_bytes());
        e[s + 8..s + 4092].copy_from_slice(&page[8..4092]);
        e[s + 4092..s + 4096].copy_from_slice(&(seq as u32).to_le_bytes());
    }
    for (k, (off, len)) in zeros.iter().enumerate() {
        let d = 64 + 32 * (pages.len() + k);
        e[d..d + 4].copy_from_slice(b"zero");
        e[d + 8..d + 16].copy_from_slice(&len.to_le_bytes());
        e[d + 16..d + 24].copy_from_slice(&off.to_le_bytes());
        e[d + 24..d + 32].copy_from_slice(&seq.to_le_bytes());
    }
    let crc = crc32c(&e);
    e[4..8].copy_from_slice(&crc.to_le_bytes());
    e
}

// ---- generic assertions ----

fn sha256_of(path: &Path) -> String {
    require("sha256sum");
    let out = std::process::Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// imgport reads `image` exactly as the raw `source`: convert, plain digest, map and info.
fn assert_reads_like(image: &Path, source: &Path, dir: &Path) {
    let out = dir.join(format!("{}.raw", image.file_name().unwrap().to_string_lossy()));
    imgport_ok(&["convert", "--force", "-O", "raw", s(image), s(&out)]);
    assert_qemu_identical(source, "raw", &out, "raw");
    let d = imgport_json(&["digest", "--plain", "--json", s(image)]);
    assert_eq!(d["digest"], sha256_of(source), "digest of {}", image.display());
    assert_map_covers_data(image, source);
}

/// Every non-zero 4 KiB of the source lies in a Data extent of imgport's map of the image. Only the source's
/// own data extents (SEEK_DATA, through imgport's raw reader) are read, so huge sparse sources are cheap.
fn assert_map_covers_data(image: &Path, source: &Path) {
    let extents = |args: &[&str]| -> Vec<(u64, u64)> {
        imgport_json(args)
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "data")
            .map(|e| (e["offset"].as_u64().unwrap(), e["offset"].as_u64().unwrap() + e["length"].as_u64().unwrap()))
            .collect()
    };
    let data = extents(&["map", "--json", s(image)]);
    let f = std::fs::File::open(source).unwrap();
    let mut buf = vec![0u8; 4096];
    for (start, end) in extents(&["map", "--json", "-f", "raw", s(source)]) {
        let mut off = start / 4096 * 4096;
        while off < end {
            let n = (end - off).min(4096) as usize;
            f.read_exact_at(&mut buf[..n], off).unwrap();
            if buf[..n].iter().any(|&b| b != 0) {
                assert!(
                    data.iter().any(|&(a, b)| a <= off && off + n as u64 <= b),
                    "{}: data at {off:#x} is not in a Data extent",
                    image.display()
                );
            }
            off += n as u64;
        }
    }
}

/// imgport info agrees with qemu-img info on size, format and cluster size.
fn assert_info_matches_qemu(image: &Path) -> serde_json::Value {
    let ours = imgport_json(&["info", "--json", s(image)]);
    let theirs = qemu_info(image, "vhdx");
    assert_eq!(ours["virtual_size"], theirs["virtual-size"]);
    assert_eq!(ours["qemu_format"], theirs["format"]);
    assert_eq!(ours["cluster_size"], theirs["cluster-size"], "qemu reports the block size as cluster size");
    ours
}

fn check_code(image: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["check"];
    args.extend_from_slice(extra);
    args.push(s(image));
    let out = run_imgport(&args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Run imgport expecting failure; returns (exit code, stderr).
fn imgport_fails(args: &[&str]) -> (i32, String) {
    let out = run_imgport(args);
    assert!(!out.status.success(), "imgport {args:?} should have failed");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

// ---- reader ----

#[test]
fn reader_matches_qemu_for_each_variant() {
    let dir = tempdir();
    let variants: [(&str, u64); 5] = [
        ("block_size=1M", 37 * MIB + 3 * 4096 + 512),
        ("block_size=32M", 33 * MIB + 512),
        ("block_size=1M,subformat=fixed", 9 * MIB + 4096),
        ("block_size=2M,subformat=fixed,block_state_zero=off", 5 * MIB + 1536),
        ("block_size=8M,block_state_zero=off", 21 * MIB),
    ];
    for (i, (opts, size)) in variants.iter().enumerate() {
        let src = p(dir.path(), &format!("src{i}.raw"));
        make_source_raw(&src, *size, 100 + i as u64);
        let img = p(dir.path(), &format!("img{i}.vhdx"));
        qemu_convert(&src, &img, "vhdx", opts, &[]);
        assert_reads_like(&img, &src, dir.path());
        let info = assert_info_matches_qemu(&img);
        let fixed = opts.contains("fixed");
        assert_eq!(info["subformat"], if fixed { "fixed" } else { "dynamic" }, "{opts}");
        assert_eq!(info["vhdx"]["leave_block_allocated"], fixed);
        assert_eq!(info["vhdx"]["logical_sector_size"], 512);
        assert_eq!(info["vhdx"]["log_state"], "empty");
        assert!(info["vhdx"]["creator"].as_str().unwrap().starts_with("QEMU"), "{info}");
        let (code, text) = check_code(&img, &[]);
        assert_eq!(code, 0, "{opts}: {text}");
        assert!(!text.contains("Warning"), "{opts}: {text}");
    }
}

#[test]
fn zero_state_blocks_read_as_zeros_and_map_as_zero() {
    require("qemu-io");
    let dir = tempdir();
    let img = p(dir.path(), "z.vhdx");
    // qemu creates dynamic images with every block in the (non-standard) ZERO state.
    qemu_img(&["create", "-q", "-f", "vhdx", "-o", "block_size=1M", s(&img), "6M"]);
    let out = std::process::Command::new("qemu-io")
        .args(["-f", "vhdx", "-c", "write -P 0x5a 1M 8k", "-c", "write -z 3M 1M", "-c", "write -P 7 5M 512", s(&img)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = p(dir.path(), "expected.raw");
    qemu_img(&["convert", "-f", "vhdx", "-O", "raw", s(&img), s(&expected)]);
    assert_reads_like(&img, &expected, dir.path());
    let info = imgport_json(&["info", "--json", s(&img)]);
    let states = &info["vhdx"]["block_states"];
    assert!(states["zero"].as_u64().unwrap() >= 3, "{states}");
    assert!(states["fully_present"].as_u64().unwrap() >= 2, "{states}");
    let map = imgport_json(&["map", "--json", s(&img)]);
    assert_eq!(map[0]["kind"], "zero", "{map}");
    assert_eq!(map[0]["length"], MIB);
    assert_eq!(map[1]["kind"], "data");
    assert!(map[1]["host_offset"].as_u64().unwrap().is_multiple_of(MIB));
}

#[test]
fn four_kib_logical_sectors() {
    // qemu creates only 512-byte logical sectors and refuses to open anything else, so the 4096-byte image is
    // qemu's 512 one with the logical sector size changed: with fewer blocks than either chunk ratio the BAT
    // layout is the same, so the contents must be too.
    let dir = tempdir();
    let src = p(dir.path(), "src.raw");
    make_source_raw(&src, 12 * MIB + 8192, 7);
    let img = p(dir.path(), "4k.vhdx");
    qemu_convert(&src, &img, "vhdx", "block_size=1M", &[]);
    write_at(&img, metadata_item(&img, &LOGICAL_SECTOR_SIZE), &4096u32.to_le_bytes());
    let (code, text) = qemu_img_status(&["info", "-f", "vhdx", s(&img)]);
    assert_ne!(code, 0, "qemu now opens 4096-byte logical sectors: {text}");
    assert_reads_like(&img, &src, dir.path());
    let info = imgport_json(&["info", "--json", s(&img)]);
    assert_eq!(info["vhdx"]["logical_sector_size"], 4096);
    assert_eq!(info["vhdx"]["chunk_ratio"], 32768);
    assert_eq!(check_code(&img, &[]).0, 0);
}

#[test]
fn sector_bitmap_entries_past_4_gib() {
    // 512-byte sectors and 1 MiB blocks put a sector bitmap entry after every 4096 payload entries.
    let dir = tempdir();
    let src = p(dir.path(), "big.raw");
    let f = std::fs::File::create(&src).unwrap();
    f.set_len(4096 * MIB + 6 * MIB).unwrap();
    let mut rng = Rng::new(42);
    for (off, len) in [(0u64, 4096usize), (4095 * MIB + 12345, 3 * MIB as usize), (4102 * MIB - 512, 512)] {
        let mut b = vec![0u8; len];
        rng.fill(&mut b);
        f.write_all_at(&b, off).unwrap();
    }
    drop(f);
    let img = p(dir.path(), "big.vhdx");
    qemu_convert(&src, &img, "vhdx", "block_size=1M", &[]);
    // raw vs raw: qemu-img compare skips holes on both sides.
    let out = p(dir.path(), "big.out.raw");
    imgport_ok(&["convert", "-O", "raw", s(&img), s(&out)]);
    assert_qemu_identical(&src, "raw", &out, "raw");
    assert_map_covers_data(&img, &src);
    // imgport's own output with the same geometry, read back by qemu.
    let mine = p(dir.path(), "mine.vhdx");
    imgport_ok(&["convert", "-O", "vhdx", "-o", "block_size=1M", s(&src), s(&mine)]);
    assert_eq!(qemu_img_status(&["check", "-f", "vhdx", s(&mine)]).0, 0);
    assert_eq!(qemu_info(&mine, "vhdx")["virtual-size"], 4102 * MIB);
    // qemu has no block status for vhdx, so a whole compare would read 4 GiB: compare the windows with data
    // (qemu's raw driver can read a window of any image).
    for (start, len) in [(0, MIB), (4094 * MIB, 8 * MIB)] {
        let window = p(dir.path(), "window.raw");
        let _ = std::fs::remove_file(&window);
        let opts = format!(
            "driver=raw,offset={start},size={len},file.driver=vhdx,file.file.driver=file,file.file.filename={}",
            s(&mine)
        );
        qemu_img(&["convert", "--image-opts", &opts, "-O", "raw", s(&window)]);
        assert!(std::fs::read(&window).unwrap() == read_at(&src, start, len as usize), "window at {start:#x}");
    }
    // Blocks 4095..4098 sit on both sides of the sector bitmap entry (BAT index 4096).
    assert_eq!(bat_entry(&mine, 4096), 0, "sector bitmap entries stay NOT_PRESENT");
    assert_eq!(bat_entry(&mine, 4097) & 7, 6, "block 4096 is stored");
}

/// A qemu image with a log that must be replayed: two entries, the first moving block 0 to block 2's data
/// and block 2 to block 0's (a BAT page rewritten), the second zeroing a page of stored data.
fn make_dirty_log_image(dir: &Path) -> (PathBuf, PathBuf) {
    let src = p(dir, "src.raw");
    make_source_raw(&src, 8 * MIB, 11);
    let img = p(dir, "dirty.vhdx");
    qemu_convert(&src, &img, "vhdx", "block_size=1M,block_state_zero=off", &[]);
    let l = layout(&img);
    let file_len = std::fs::metadata(&img).unwrap().len();
    let mut page = read_at(&img, l.bat, 4096);
    let (b0, b2) = (u64_at(&page, 0), u64_at(&page, 16));
    assert!(b0 & 7 == 6 && b2 & 7 == 6, "blocks 0 and 2 are stored: {b0:#x} {b2:#x}");
    page[0..8].copy_from_slice(&b2.to_le_bytes());
    page[16..24].copy_from_slice(&b0.to_le_bytes());
    let guid = [0x3c; 16];
    let e1 = log_entry(&guid, 7, 0, &[(l.bat, page)], &[], file_len);
    let b2_data = b2 & !0xfffff;
    let e2 = log_entry(&guid, 8, 0, &[], &[(b2_data + 8192, 4096)], file_len);
    assert!(l.log_length >= (e1.len() + e2.len()) as u64);
    let mut log = e1.clone();
    log.extend_from_slice(&e2);
    log.resize(l.log_length as usize, 0);
    write_at(&img, l.log_offset, &log);
    set_log_guid(&img, &guid);
    (src, img)
}

#[test]
fn dirty_log_is_replayed_in_memory_without_touching_the_input() {
    let dir = tempdir();
    let (src, img) = make_dirty_log_image(dir.path());
    let before = std::fs::read(&img).unwrap();
    let mtime = std::fs::metadata(&img).unwrap().modified().unwrap();

    // qemu will not open it read-only: the log must be replayed first.
    let (code, text) = qemu_img_status(&["info", "-f", "vhdx", s(&img)]);
    assert_ne!(code, 0);
    assert!(text.contains("log that needs to be replayed"), "{text}");

    let ours = p(dir.path(), "ours.raw");
    imgport_ok(&["convert", "-O", "raw", s(&img), s(&ours)]);
    let info = imgport_json(&["info", "--json", s(&img)]);
    assert_eq!(info["vhdx"]["log_state"], "replayed 2 entries");
    let (code, text) = check_code(&img, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("needs replaying"), "{text}");
    imgport_ok(&["map", s(&img)]);
    imgport_ok(&["digest", s(&img)]);

    // The input is byte for byte and time for time what it was.
    assert!(std::fs::read(&img).unwrap() == before, "imgport modified its input");
    assert_eq!(std::fs::metadata(&img).unwrap().modified().unwrap(), mtime);

    // qemu replays the log on a copy (read-write open); both must then read the same disk.
    let copy = p(dir.path(), "copy.vhdx");
    std::fs::copy(&img, &copy).unwrap();
    let (code, text) = qemu_img_status(&["check", "-r", "all", "-f", "vhdx", s(&copy)]);
    assert_eq!(code, 0, "{text}");
    assert_qemu_identical(&ours, "raw", &copy, "vhdx");
    assert_eq!(imgport_json(&["info", "--json", s(&copy)])["vhdx"]["log_state"], "empty");
    // And the replay changed something: blocks 0 and 2 swapped, one page zeroed.
    let (a, b) = (std::fs::read(&src).unwrap(), std::fs::read(&ours).unwrap());
    let m = MIB as usize;
    assert_eq!(&b[..8192], &a[2 * m..2 * m + 8192]);
    assert!(b[8192..12288].iter().all(|&x| x == 0));
    assert_eq!(&b[12288..m], &a[2 * m + 12288..3 * m]);
    assert_eq!(&b[2 * m..3 * m], &a[..m]);
    assert_eq!(&b[m..2 * m], &a[m..2 * m]);
}

#[test]
fn dirty_log_left_by_qemu_itself() {
    // qemu journals each BAT update: it writes a log entry, sets the log GUID, applies the entry, then clears
    // the GUID. Undoing the last two steps gives the image qemu leaves when it dies between them.
    require("qemu-io");
    let dir = tempdir();
    let img = p(dir.path(), "crashed.vhdx");
    qemu_img(&["create", "-q", "-f", "vhdx", "-o", "block_size=1M,block_state_zero=off", s(&img), "8M"]);
    let out = std::process::Command::new("qemu-io")
        .args(["-f", "vhdx", "-c", "write -P 0x11 2M 64k", s(&img)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = p(dir.path(), "expected.raw");
    qemu_img(&["convert", "-f", "vhdx", "-O", "raw", s(&img), s(&expected)]);
    let l = layout(&img);
    let entry = read_at(&img, l.log_offset, 64);
    assert_eq!(&entry[..4], b"loge", "qemu left its last log entry at the start of the log");
    let guid: [u8; 16] = entry[32..48].try_into().unwrap();
    assert_eq!(bat_entry(&img, 2) & 7, 6);
    set_bat_entry(&img, 2, 0);
    set_log_guid(&img, &guid);
    assert_ne!(qemu_img_status(&["info", "-f", "vhdx", s(&img)]).0, 0, "qemu sees a log to replay");

    assert_reads_like(&img, &expected, dir.path());
    assert_eq!(imgport_json(&["info", "--json", s(&img)])["vhdx"]["log_state"], "replayed 1 entries");
    let copy = p(dir.path(), "copy.vhdx");
    std::fs::copy(&img, &copy).unwrap();
    assert_eq!(qemu_img_status(&["check", "-r", "all", "-f", "vhdx", s(&copy)]).0, 0);
    assert_qemu_identical(&expected, "raw", &copy, "vhdx");
}

// ---- writer ----

#[test]
fn writer_output_is_valid_for_qemu() {
    let dir = tempdir();
    let variants: [(&str, u64, u64); 4] = [
        ("", 40 * MIB + 3 * 4096, 32 * MIB),
        ("block_size=1M", 37 * MIB + 512, MIB),
        ("subformat=fixed,block_size=4M", 9 * MIB + 4096, 4 * MIB),
        ("subformat=dynamic,block_size=256M", 3 * MIB, 256 * MIB),
    ];
    for (i, (opts, size, block)) in variants.iter().enumerate() {
        let src = p(dir.path(), &format!("src{i}.raw"));
        make_source_raw(&src, *size, 200 + i as u64);
        let out = p(dir.path(), &format!("out{i}.vhdx"));
        let mut args = vec!["convert", "-O", "vhdx"];
        if !opts.is_empty() {
            args.extend_from_slice(&["-o", opts]);
        }
        args.extend_from_slice(&[s(&src), s(&out)]);
        imgport_ok(&args);
        assert_qemu_identical(&src, "raw", &out, "vhdx");
        let (code, text) = qemu_img_status(&["check", "-f", "vhdx", s(&out)]);
        assert_eq!(code, 0, "{opts}: {text}");
        let q = qemu_info(&out, "vhdx");
        assert_eq!(q["virtual-size"], *size);
        assert_eq!(q["cluster-size"], *block);
        // imgport reads its own output back, and the round trip keeps the digest.
        assert_reads_like(&out, &src, dir.path());
        assert_eq!(
            imgport_json(&["digest", "--json", s(&out)])["digest"],
            imgport_json(&["digest", "--json", s(&src)])["digest"]
        );
        let info = imgport_json(&["info", "--json", s(&out)]);
        assert_eq!(info["subformat"], if opts.contains("fixed") { "fixed" } else { "dynamic" });
        assert_eq!(info["vhdx"]["physical_sector_size"], 4096);
        assert_eq!(check_code(&out, &[]).0, 0);
        // Fixed: every block stored; dynamic: only blocks with data, so the file is at most header + data blocks.
        let file_len = std::fs::metadata(&out).unwrap().len();
        let blocks = size.div_ceil(*block);
        let fp = info["vhdx"]["block_states"]["fully_present"].as_u64().unwrap();
        if opts.contains("fixed") {
            assert_eq!(fp, blocks);
        } else {
            assert!(fp <= blocks);
        }
        assert_eq!(file_len % MIB, 0);
        let ratio = (1u64 << 23) * 512 / block;
        let bat_len = ((blocks + (blocks - 1) / ratio) * 8).div_ceil(MIB) * MIB;
        assert_eq!(file_len, layout(&out).bat + bat_len + fp * block, "{opts}: header region then stored blocks");
    }
}

#[test]
fn writer_pads_odd_sizes_and_skips_zero_blocks() {
    let dir = tempdir();
    let src = p(dir.path(), "odd.raw");
    make_source_raw(&src, 5 * MIB + 1000, 9);
    let out = p(dir.path(), "odd.vhdx");
    imgport_ok(&["convert", "-O", "vhdx", "-o", "block_size=1M", s(&src), s(&out)]);
    assert_eq!(qemu_info(&out, "vhdx")["virtual-size"], 5 * MIB + 1024);
    // qemu-img compare only warns about the size; the padding must read as zeros.
    let (code, text) = qemu_img_status(&["compare", "-f", "raw", "-F", "vhdx", s(&src), s(&out)]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(qemu_img_status(&["check", "-f", "vhdx", s(&out)]).0, 0);

    // A disk of zeros stores no block at all; written zeros in the source are not stored either.
    let zeros = p(dir.path(), "zeros.raw");
    std::fs::write(&zeros, vec![0u8; 3 * MIB as usize]).unwrap();
    let zout = p(dir.path(), "zeros.vhdx");
    imgport_ok(&["convert", "-O", "vhdx", "-o", "block_size=1M", s(&zeros), s(&zout)]);
    let info = imgport_json(&["info", "--json", s(&zout)]);
    assert_eq!(info["vhdx"]["block_states"]["not_present"], 3);
    assert_eq!(info["allocated_bytes"], 0);
    assert_qemu_identical(&zeros, "raw", &zout, "vhdx");

    // vhdx -> vhdx keeps the contents.
    let again = p(dir.path(), "again.vhdx");
    imgport_ok(&["convert", "-O", "vhdx", s(&out), s(&again)]);
    let (code, text) = qemu_img_status(&["compare", "-f", "vhdx", "-F", "vhdx", s(&out), s(&again)]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn writer_rejects_options_that_do_not_apply() {
    let dir = tempdir();
    let src = p(dir.path(), "s.raw");
    make_source_raw(&src, MIB, 1);
    let out = p(dir.path(), "o.vhdx");
    for (opt, text) in [
        ("cluster_size=64k", "cluster_size does not apply"),
        ("subformat=streamOptimized", "does not apply to vhdx"),
        ("block_size=3M", "power of two"),
        ("block_size=512M", "power of two"),
    ] {
        let (code, err) = imgport_fails(&["convert", "-O", "vhdx", "-o", opt, s(&src), s(&out)]);
        assert_eq!(code, 1);
        assert!(err.contains(text), "{opt}: {err}");
        assert!(!out.exists());
    }
}

// ---- damaged and refused images ----

/// A qemu image to damage: 6 MiB in 1 MiB blocks, all blocks stored.
fn damaged_base(dir: &Path, name: &str) -> PathBuf {
    let src = p(dir, "base.raw");
    if !src.exists() {
        let mut b = vec![0u8; 6 * MIB as usize];
        Rng::new(5).fill(&mut b);
        std::fs::write(&src, b).unwrap();
    }
    let img = p(dir, name);
    qemu_convert(&src, &img, "vhdx", "block_size=1M", &[]);
    img
}

#[test]
fn bad_header_and_region_table_checksums() {
    let dir = tempdir();
    // One header copy damaged: a warning, the image still reads.
    let img = damaged_base(dir.path(), "h1.vhdx");
    write_at(&img, (64 << 10) + 200, b"x");
    let (code, text) = check_code(&img, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Warning: header 1"), "{text}");
    imgport_ok(&["convert", "-O", "raw", s(&img), s(&p(dir.path(), "h1.raw"))]);

    // Both damaged: corrupt, refused with a hint; --ignore-checksums reads it and check still says corrupt.
    write_at(&img, (128 << 10) + 200, b"x");
    let (code, text) = check_code(&img, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("no valid header"), "{text}");
    let out = p(dir.path(), "h2.raw");
    let (code, err) = imgport_fails(&["convert", "-O", "raw", s(&img), s(&out)]);
    assert_eq!(code, 1);
    assert!(err.contains("no valid header") && err.contains("--ignore-checksums"), "{err}");
    imgport_ok(&["convert", "--ignore-checksums", "-O", "raw", s(&img), s(&out)]);
    assert_qemu_identical(&p(dir.path(), "base.raw"), "raw", &out, "raw");
    assert_eq!(check_code(&img, &["--ignore-checksums"]).0, 2);

    // Region tables: one bad copy is a warning, both bad is corruption.
    let img = damaged_base(dir.path(), "rt.vhdx");
    write_at(&img, (192 << 10) + 1000, b"x");
    let (code, text) = check_code(&img, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Warning: region table 1"), "{text}");
    write_at(&img, (256 << 10) + 1000, b"x");
    let (code, text) = check_code(&img, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("no valid region table"), "{text}");
}

#[test]
fn bad_bat_entries() {
    let dir = tempdir();
    // Block 3 points 1 GiB past the end of the file.
    let img = damaged_base(dir.path(), "eof.vhdx");
    set_bat_entry(&img, 3, (1 << 30) | 6);
    let (code, text) = check_code(&img, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("BAT entry of block 3") && text.contains("past the end of the file"), "{text}");
    assert_eq!(qemu_img_status(&["check", "-f", "vhdx", s(&img)]).0, 2, "qemu agrees");
    let (code, err) = imgport_fails(&["convert", "-O", "raw", s(&img), s(&p(dir.path(), "eof.raw"))]);
    assert_eq!(code, 1);
    assert!(err.contains("past the end of the file"), "{err}");
    imgport_ok(&["info", s(&img)]);

    // Block 1 reuses block 0's data: overlap.
    let img = damaged_base(dir.path(), "overlap.vhdx");
    set_bat_entry(&img, 1, bat_entry(&img, 0));
    let (code, text) = check_code(&img, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("overlaps that of block"), "{text}");

    // Block 2 points into the metadata region.
    let img = damaged_base(dir.path(), "meta.vhdx");
    set_bat_entry(&img, 2, layout(&img).metadata | 6);
    let (code, text) = check_code(&img, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("overlaps the metadata region"), "{text}");

    // PARTIALLY_PRESENT outside a differencing disk: qemu fails the read (EIO), so does imgport, clearly.
    let img = damaged_base(dir.path(), "partial.vhdx");
    set_bat_entry(&img, 4, bat_entry(&img, 4) | 7);
    let (code, text) = check_code(&img, &[]);
    assert_eq!(code, 2, "{text}");
    let (code, err) = imgport_fails(&["convert", "-O", "raw", s(&img), s(&p(dir.path(), "partial.raw"))]);
    assert_eq!(code, 1);
    assert!(err.contains("PARTIALLY_PRESENT"), "{err}");
    let (code, _) = qemu_img_status(&["convert", "-f", "vhdx", "-O", "raw", s(&img), s(&p(dir.path(), "q.raw"))]);
    assert_ne!(code, 0, "qemu reads PARTIALLY_PRESENT blocks now");

    // Truncated in the middle of the data: check reports it, convert refuses, nothing panics.
    let img = damaged_base(dir.path(), "trunc.vhdx");
    let len = std::fs::metadata(&img).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&img).unwrap().set_len(len - 3 * MIB).unwrap();
    let (code, text) = check_code(&img, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("truncated"), "{text}");
    let (code, err) = imgport_fails(&["convert", "-O", "raw", s(&img), s(&p(dir.path(), "trunc.raw"))]);
    assert_eq!(code, 1);
    assert!(err.contains("truncated"), "{err}");
    // Truncated inside the header section.
    std::fs::OpenOptions::new().write(true).open(&img).unwrap().set_len(100_000).unwrap();
    assert_eq!(check_code(&img, &[]).0, 2);
    std::fs::OpenOptions::new().write(true).open(&img).unwrap().set_len(8).unwrap();
    assert_eq!(check_code(&img, &[]).0, 2);
}

#[test]
fn refused_features_say_why() {
    let dir = tempdir();
    // Differencing: HasParent set in the file parameters.
    let img = damaged_base(dir.path(), "diff.vhdx");
    let params = metadata_item(&img, &FILE_PARAMETERS);
    let flags = u32_at(&read_at(&img, params + 4, 4), 0) | 2;
    write_at(&img, params + 4, &flags.to_le_bytes());
    let (code, err) = imgport_fails(&["info", s(&img)]);
    assert_eq!(code, 1);
    assert!(err.contains("differencing VHDX") && err.contains("parent"), "{err}");
    assert_eq!(check_code(&img, &[]).0, 1, "an unsupported image cannot be checked");

    // An unknown region marked required.
    let img = damaged_base(dir.path(), "region.vhdx");
    for off in [192u64 << 10, 256 << 10] {
        let count = u32_at(&read_at(&img, off + 8, 4), 0);
        let e = off + 16 + 32 * count as u64;
        let mut entry = [0u8; 32];
        entry[..16].copy_from_slice(&[0xab; 16]);
        entry[16..24].copy_from_slice(&(200 * MIB).to_le_bytes());
        entry[24..28].copy_from_slice(&(MIB as u32).to_le_bytes());
        entry[28] = 1;
        write_at(&img, e, &entry);
        write_at(&img, off + 8, &(count + 1).to_le_bytes());
        reseal(&img, off, 64 << 10);
    }
    let (code, err) = imgport_fails(&["info", s(&img)]);
    assert_eq!(code, 1);
    assert!(err.contains("marked required"), "{err}");

    // An unknown metadata item marked required.
    let img = damaged_base(dir.path(), "meta.vhdx");
    let l = layout(&img);
    let t = read_at(&img, l.metadata, 64 << 10);
    let n = u16::from_le_bytes([t[10], t[11]]) as u64;
    let mut entry = [0u8; 32];
    entry[..16].copy_from_slice(&[0xcd; 16]);
    entry[16..20].copy_from_slice(&(65536u32 + 4096).to_le_bytes());
    entry[20..24].copy_from_slice(&8u32.to_le_bytes());
    entry[24] = 4;
    write_at(&img, l.metadata + 32 + 32 * n, &entry);
    write_at(&img, l.metadata + 10, &(n as u16 + 1).to_le_bytes());
    let (code, err) = imgport_fails(&["info", s(&img)]);
    assert_eq!(code, 1);
    assert!(err.contains("metadata item") && err.contains("marked required"), "{err}");
}
