//! QCOW2 in and out, checked against qemu-img and qemu-io.

use crate::common::*;
use serde_json::Value;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------------------------
// Helpers

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Run qemu-io on a qcow2 image with the given commands; insists on success.
fn qemu_io(img: &Path, cmds: &[&str]) {
    require("qemu-io");
    let mut c = Command::new("qemu-io");
    c.args(["-f", "qcow2"]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = c.arg(img).output().expect("cannot run qemu-io");
    assert!(out.status.success(), "qemu-io {cmds:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("failed"), "qemu-io {cmds:?}: {text}");
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset).unwrap();
    buf
}
fn be64(path: &Path, offset: u64) -> u64 {
    u64::from_be_bytes(read_at(path, offset, 8).try_into().unwrap())
}
fn be32(path: &Path, offset: u64) -> u32 {
    u32::from_be_bytes(read_at(path, offset, 4).try_into().unwrap())
}
fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

/// Offsets read from a qcow2 header.
struct Layout {
    cluster_size: u64,
    l1: u64,
    refcount_table: u64,
}

fn layout(img: &Path) -> Layout {
    Layout { cluster_size: 1 << be32(img, 20), l1: be64(img, 40), refcount_table: be64(img, 48) }
}

/// L2 table offset of L1 entry `i`.
fn l2_of(img: &Path, i: u64) -> u64 {
    be64(img, layout(img).l1 + 8 * i) & 0x00ff_ffff_ffff_fe00
}

fn sha256_of(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(std::fs::read(path).unwrap());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Exit code and parsed JSON of `imgport check --json`.
fn imgport_check(img: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["check", "--json"];
    args.extend_from_slice(extra);
    args.push(s(img));
    let out = run_imgport(&args);
    let code = out.status.code().unwrap_or(-1);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (code, v)
}

fn messages(report: &Value, key: &str) -> String {
    report[key]
        .as_array()
        .map(|a| a.iter().map(|f| format!("{} {}\n", f["structure"], f["message"])).collect())
        .unwrap_or_default()
}

/// Every non-zero sector of the raw source lies inside a Data extent of `img`'s map.
fn assert_map_covers_data(src: &Path, img: &Path, extra: &[&str]) {
    let mut args = vec!["map", "--json"];
    args.extend_from_slice(extra);
    args.push(s(img));
    let map = imgport_json(&args);
    let data: Vec<(u64, u64)> = map
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "data")
        .map(|e| (e["offset"].as_u64().unwrap(), e["offset"].as_u64().unwrap() + e["length"].as_u64().unwrap()))
        .collect();
    let bytes = std::fs::read(src).unwrap();
    let mut it = data.iter().peekable();
    for (i, sector) in bytes.chunks(512).enumerate() {
        if sector.iter().all(|&b| b == 0) {
            continue;
        }
        let off = i as u64 * 512;
        while it.peek().is_some_and(|(_, end)| *end <= off) {
            it.next();
        }
        let covered = it.peek().is_some_and(|(start, end)| *start <= off && off + sector.len() as u64 <= *end);
        assert!(covered, "{}: source data at {off:#x} is not inside a Data extent of the map", img.display());
    }
}

/// `imgport info --json` agrees with `qemu-img info` on size, format and cluster size.
fn assert_info_matches_qemu(img: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["info", "--json"];
    args.extend_from_slice(extra);
    args.push(s(img));
    let ours = imgport_json(&args);
    let theirs = qemu_info(img, "qcow2");
    assert_eq!(ours["virtual_size"], theirs["virtual-size"], "{}", img.display());
    assert_eq!(ours["qemu_format"], theirs["format"]);
    assert_eq!(ours["cluster_size"], theirs["cluster-size"]);
    let spec = &theirs["format-specific"]["data"];
    let q = &ours["qcow2"];
    assert_eq!(q["compat"], spec["compat"]);
    // qemu leaves out what v2 images cannot have.
    for (ours, theirs) in [
        ("compression_type", "compression-type"),
        ("lazy_refcounts", "lazy-refcounts"),
        ("refcount_bits", "refcount-bits"),
        ("corrupt", "corrupt"),
        ("extended_l2", "extended-l2"),
    ] {
        if !spec[theirs].is_null() {
            assert_eq!(q[ours], spec[theirs], "{ours} of {}", img.display());
        }
    }
    ours
}

/// imgport reads `img` exactly like the raw source: convert, plain digest, map.
fn assert_reads_as(dir: &Path, src: &Path, img: &Path, extra: &[&str]) {
    let out = dir.join(format!("{}.out.raw", img.file_name().unwrap().to_string_lossy()));
    let mut args = vec!["convert", "--force", "-O", "raw"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[s(img), s(&out)]);
    imgport_ok(&args);
    assert_qemu_identical(src, "raw", &out, "raw");
    let mut args = vec!["digest", "--plain", "--json"];
    args.extend_from_slice(extra);
    args.push(s(img));
    assert_eq!(imgport_json(&args)["digest"], sha256_of(src), "digest of {}", img.display());
}

fn assert_both_checks_clean(img: &Path) {
    let (code, report) = imgport_check(img, &[]);
    assert_eq!(code, 0, "imgport check {}: {report}", img.display());
    let (qcode, text) = qemu_img_status(&["check", "-f", "qcow2", s(img)]);
    assert_eq!(qcode, 0, "qemu-img check {}: {text}", img.display());
}

/// Source raw + qemu-made qcow2 fixture.
fn fixture(dir: &Path, name: &str, size: u64, seed: u64, opts: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let src = p(dir, &format!("{name}.raw"));
    make_source_raw(&src, size, seed);
    let img = p(dir, &format!("{name}.qcow2"));
    qemu_convert(&src, &img, "qcow2", opts, extra);
    (src, img)
}

fn reader_case(name: &str, size: u64, seed: u64, opts: &str, extra: &[&str]) -> Value {
    let dir = tempdir();
    let (src, img) = fixture(dir.path(), name, size, seed, opts, extra);
    assert_reads_as(dir.path(), &src, &img, &[]);
    assert_map_covers_data(&src, &img, &[]);
    let info = assert_info_matches_qemu(&img, &[]);
    assert_both_checks_clean(&img);
    info
}

// ---------------------------------------------------------------------------------------------------------
// Reader: fixtures made by qemu-img

#[test]
fn reads_compat_0_10() {
    let info = reader_case("v2", 9 * MIB + 3 * 512, 11, "compat=0.10", &[]);
    assert_eq!(info["qcow2"]["version"], 2);
}

#[test]
fn reads_compat_1_1() {
    let info = reader_case("v3", 13 * MIB + 4096 + 512, 12, "compat=1.1", &[]);
    assert_eq!(info["qcow2"]["version"], 3);
}

#[test]
fn reads_512_byte_clusters() {
    reader_case("c512", 3 * MIB + 1536, 13, "cluster_size=512", &[]);
}

#[test]
fn reads_2_mib_clusters() {
    reader_case("c2m", 21 * MIB + 512, 14, "cluster_size=2M", &[]);
}

#[test]
fn reads_zlib_compressed() {
    let info = reader_case("zlib", 9 * MIB + 7 * 512, 15, "", &["-c"]);
    assert_eq!(info["qcow2"]["compression_type"], "zlib");
}

#[test]
fn reads_zstd_compressed() {
    let info = reader_case("zstd", 11 * MIB + 512, 16, "compression_type=zstd", &["-c"]);
    assert_eq!(info["qcow2"]["compression_type"], "zstd");
}

#[test]
fn reads_compressed_with_small_and_large_clusters() {
    reader_case("zstd512", 2 * MIB + 512, 17, "compression_type=zstd,cluster_size=512", &["-c"]);
    reader_case("zlib2m", 9 * MIB + 512, 18, "cluster_size=2M", &["-c"]);
}

#[test]
fn compressed_map_is_marked_compressed() {
    let dir = tempdir();
    let src = p(dir.path(), "src.raw");
    // Compressible data: a repeating text.
    let text: Vec<u8> = b"imgport qcow2 compressed cluster ".iter().copied().cycle().take(3 * MIB as usize).collect();
    std::fs::write(&src, &text).unwrap();
    let img = p(dir.path(), "c.qcow2");
    qemu_convert(&src, &img, "qcow2", "compression_type=zstd", &["-c"]);
    let map = imgport_json(&["map", "--json", s(&img)]);
    assert!(map.as_array().unwrap().iter().all(|e| e["compressed"] == true), "{map}");
    assert_reads_as(dir.path(), &src, &img, &[]);
}

#[test]
fn reads_extended_l2() {
    let info = reader_case("extl2", 9 * MIB + 512, 19, "extended_l2=on,cluster_size=128k", &[]);
    assert_eq!(info["qcow2"]["extended_l2"], true);
}

#[test]
fn reads_lazy_refcounts() {
    let info = reader_case("lazy", 7 * MIB + 512, 20, "lazy_refcounts=on", &[]);
    assert_eq!(info["qcow2"]["lazy_refcounts"], true);
}

/// Compare imgport's raw output of a qcow2 with qemu-img's.
fn assert_same_as_qemu(dir: &Path, img: &Path, extra: &[&str]) {
    let theirs = p(dir, "qemu.raw");
    let _ = std::fs::remove_file(&theirs);
    qemu_img(&["convert", "-f", "qcow2", "-O", "raw", s(img), s(&theirs)]);
    assert_reads_as(dir, &theirs, img, extra);
}

#[test]
fn zero_clusters_plain_and_allocated() {
    let dir = tempdir();
    let (_, img) = fixture(dir.path(), "z", 5 * MIB + 512, 21, "", &[]);
    // Zero a cluster holding data, keeping its allocation (ZERO_ALLOC), unmap another (ZERO_PLAIN), zero
    // a never-allocated range, and write data after a zero range.
    qemu_io(&img, &["write -z 0 64k", "write -z -u 1M 128k", "write -z 3M 64k", "write -P 0x5a 3211264 4k"]);
    assert_same_as_qemu(dir.path(), &img, &[]);
    let map = imgport_json(&["map", "--json", s(&img)]);
    let zero_at = |off: u64| {
        map.as_array().unwrap().iter().any(|e| {
            e["kind"] == "zero"
                && e["offset"].as_u64().unwrap() <= off
                && off < e["offset"].as_u64().unwrap() + e["length"].as_u64().unwrap()
        })
    };
    assert!(zero_at(0) && zero_at(MIB) && zero_at(3 * MIB), "{map}");
    assert_both_checks_clean(&img);
}

#[test]
fn extended_l2_partial_subclusters() {
    let dir = tempdir();
    let d = dir.path();
    // Small writes into an empty image: subclusters of 2 KiB are allocated one by one.
    let img = p(d, "sub.qcow2");
    qemu_img(&["create", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=64k", s(&img), "6M"]);
    qemu_io(
        &img,
        &[
            "write -P 0x11 4M 4k",
            "write -P 0x12 4206592 2k",
            "write -P 0x13 0 64k",
            "write -z 0 2k",
            "write -z 131072 8k",
            "write -P 0x14 1M 64k",
            "write -z -u 1M 64k",
        ],
    );
    assert_same_as_qemu(d, &img, &[]);
    let map = imgport_json(&["map", "--json", s(&img)]);
    let find = |off: u64| {
        map.as_array()
            .unwrap()
            .iter()
            .find(|e| {
                e["offset"].as_u64().unwrap() <= off
                    && off < e["offset"].as_u64().unwrap() + e["length"].as_u64().unwrap()
            })
            .unwrap()
            .clone()
    };
    // 4 KiB written in a fresh 64 KiB cluster: two subclusters of data, then unallocated ones.
    assert_eq!(find(4 * MIB)["kind"], "data");
    assert_eq!(find(4 * MIB)["length"], 4096);
    assert_eq!(find(4 * MIB + 8192)["kind"], "unallocated");
    assert_eq!(find(4 * MIB + 12 * 1024)["kind"], "data");
    assert_eq!(find(4 * MIB + 12 * 1024)["length"], 2048);
    assert_eq!(find(0)["kind"], "zero");
    assert_eq!(find(0)["length"], 2048);
    assert_eq!(find(2048)["kind"], "data");
    assert_eq!(find(131072)["kind"], "zero");
    assert_eq!(find(131072)["length"], 8192);
    assert_eq!(find(MIB)["kind"], "zero");
    assert_both_checks_clean(&img);

    // The same writes over an image converted from a source.
    let (_, img) = fixture(d, "mixed", 6 * MIB + 512, 22, "extended_l2=on,cluster_size=64k", &[]);
    qemu_io(&img, &["write -P 0x11 4M 4k", "write -z 0 2k", "write -z 131072 8k", "write -z -u 1M 64k"]);
    assert_same_as_qemu(d, &img, &[]);
    assert_both_checks_clean(&img);
}

#[test]
fn internal_snapshots_and_bitmaps_check_clean() {
    let dir = tempdir();
    let (_, img) = fixture(dir.path(), "snap", 5 * MIB, 23, "", &[]);
    qemu_img(&["snapshot", "-c", "one", s(&img)]);
    qemu_io(&img, &["write -P 0x22 0 100k"]);
    qemu_img(&["snapshot", "-c", "two", s(&img)]);
    qemu_img(&["bitmap", "--add", s(&img), "b0"]);
    qemu_io(&img, &["write -P 0x23 3M 100k"]);
    assert_same_as_qemu(dir.path(), &img, &[]);
    assert_both_checks_clean(&img);
    // A snapshot taken last leaves the snapshot table at the very end of the file, without its padding.
    qemu_img(&["snapshot", "-c", "three", s(&img)]);
    assert_both_checks_clean(&img);
    assert_eq!(imgport_json(&["info", "--json", s(&img)])["qcow2"]["snapshots"], 3);
    // Our own output takes snapshots and writes from qemu too.
    let (src, ours) = (p(dir.path(), "snap.raw"), p(dir.path(), "ours.qcow2"));
    imgport_ok(&["convert", "-O", "qcow2", s(&src), s(&ours)]);
    qemu_io(&ours, &["write -P 0x24 3M 200k", "write -z 0 64k"]);
    qemu_img(&["snapshot", "-c", "one", s(&ours)]);
    qemu_img(&["bitmap", "--add", s(&ours), "b1"]);
    assert_both_checks_clean(&ours);
}

#[test]
fn check_and_read_agree_with_qemu_after_qemu_operations() {
    let dir = tempdir();
    let d = dir.path();
    let mut images: Vec<PathBuf> = Vec::new();
    let mut fresh = |name: &str, opts: &str| {
        let (_, img) = fixture(d, name, 3 * MIB + 512, 34, opts, &[]);
        images.push(img.clone());
        img
    };
    let img = fresh("resized", "");
    qemu_img(&["resize", s(&img), "+300M"]);
    qemu_io(&img, &["write -P 1 200M 1M"]);
    for bits in ["1", "64"] {
        let img = fresh(&format!("refcount{bits}"), "");
        qemu_img(&["amend", "-o", &format!("refcount_bits={bits}"), s(&img)]);
    }
    let img = fresh("downgraded", "");
    qemu_img(&["amend", "-o", "compat=0.10", s(&img)]);
    let img = fresh("discarded", "cluster_size=4k,refcount_bits=2");
    qemu_io(&img, &["discard 0 1M", "write -P 3 2M 64k"]);
    let img = fresh("reverted", "");
    qemu_img(&["snapshot", "-c", "a", s(&img)]);
    qemu_io(&img, &["write -P 2 0 1M"]);
    qemu_img(&["snapshot", "-a", "a", s(&img)]);
    qemu_img(&["snapshot", "-d", "a", s(&img)]);
    for (name, opts) in [("meta", "preallocation=metadata"), ("full", "preallocation=full,cluster_size=4k")] {
        let img = p(d, &format!("{name}.qcow2"));
        qemu_img(&["create", "-f", "qcow2", "-o", opts, s(&img), "5M"]);
        qemu_io(&img, &["write -P 4 1M 100k"]);
        images.push(img);
    }
    let base = p(d, "base.qcow2");
    let top = p(d, "top.qcow2");
    qemu_img(&["create", "-f", "qcow2", s(&base), "10M"]);
    qemu_io(&base, &["write -P 8 0 5M"]);
    qemu_img(&["create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", s(&top)]);
    qemu_io(&top, &["write -P 9 1M 1M"]);
    qemu_img(&["commit", s(&top)]);
    images.push(base);
    for img in &images {
        assert_both_checks_clean(img);
        assert_same_as_qemu(d, img, &[]);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Backing files

#[test]
fn backing_chain_refused_by_default_and_followed_on_request() {
    let dir = tempdir();
    let d = dir.path();
    fixture(d, "base", 6 * MIB + 512, 24, "", &[]);
    let mid = p(d, "mid.qcow2");
    let top = p(d, "top.qcow2");
    // A relative backing name, resolved against the overlay's folder; the top is larger than the chain.
    qemu_img(&["create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", s(&mid)]);
    qemu_io(&mid, &["write -P 0x31 10k 70k", "write -z 2M 64k"]);
    qemu_img(&["create", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", s(&top), "9M"]);
    qemu_io(&top, &["write -P 0x32 1M 4k", "write -P 0x33 8M 8k"]);

    let r = run_imgport(&["convert", "-O", "raw", s(&top), s(&p(d, "x.raw"))]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("mid.qcow2") && err.contains("--follow-backing"), "{err}");
    assert!(!p(d, "x.raw").exists());

    assert_same_as_qemu(d, &top, &["--follow-backing"]);
    let info = imgport_json(&["info", "--json", "--follow-backing", s(&top)]);
    assert_eq!(info["backing_file"], "mid.qcow2");
    assert_eq!(info["qcow2"]["backing_format"], "qcow2");
    assert_eq!(info["virtual_size"], 9 * MIB);
    // The map merges the chain: base data shows as data (without host offsets into another file).
    let map = imgport_json(&["map", "--json", "--follow-backing", s(&top)]);
    let ext = map.as_array().unwrap().iter().find(|e| e["offset"] == 0).unwrap().clone();
    assert_eq!(ext["kind"], "data");
    assert!(ext.get("host_offset").is_none(), "{ext}");
    let (code, report) = imgport_check(&top, &["--follow-backing"]);
    assert_eq!(code, 0, "{report}");
    // Run from another folder: the relative name is still resolved next to the image.
    let out = imgport().current_dir("/").args(["digest", "--plain", "--follow-backing", s(&top)]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn raw_backing_file() {
    let dir = tempdir();
    let d = dir.path();
    let base = p(d, "base.raw");
    make_source_raw(&base, 3 * MIB, 25);
    let top = p(d, "top.qcow2");
    qemu_img(&["create", "-f", "qcow2", "-b", s(&base), "-F", "raw", s(&top)]);
    qemu_io(&top, &["write -P 0x41 100k 3k"]);
    assert_same_as_qemu(d, &top, &["--follow-backing"]);
}

#[test]
fn backing_loop_is_refused() {
    let dir = tempdir();
    let d = dir.path();
    let a = p(d, "a.qcow2");
    let b = p(d, "b.qcow2");
    qemu_img(&["create", "-f", "qcow2", s(&a), "1M"]);
    qemu_img(&["create", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", s(&b)]);
    qemu_img(&["rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", s(&a)]);
    let r = run_imgport(&["convert", "--follow-backing", "-O", "raw", s(&a), s(&p(d, "x.raw"))]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("loops"), "{err}");
    // A self-reference too.
    qemu_img(&["rebase", "-u", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", s(&a)]);
    let r = run_imgport(&["info", "--follow-backing", s(&a)]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("loops"));
}

// ---------------------------------------------------------------------------------------------------------
// Flags, refusals, damage

#[test]
fn dirty_bit_is_a_warning_and_stale_lazy_refcounts_too() {
    let dir = tempdir();
    let (src, img) = fixture(dir.path(), "dirty", 4 * MIB, 26, "lazy_refcounts=on", &[]);
    patch(&img, 79, &[1]);
    let info = imgport_json(&["info", "--json", s(&img)]);
    assert_eq!(info["qcow2"]["dirty"], true);
    assert_eq!(qemu_info(&img, "qcow2")["dirty-flag"], true);
    let (code, report) = imgport_check(&img, &[]);
    assert_eq!(code, 0, "{report}");
    assert!(messages(&report, "warnings").contains("dirty"), "{report}");
    assert_reads_as(dir.path(), &src, &img, &[]);

    // A real crash with lazy refcounts: qemu-io aborts after writing, refcounts were never updated.
    let (_, crashed) = fixture(dir.path(), "crashed", 4 * MIB, 27, "lazy_refcounts=on", &[]);
    let _ = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x11 2M 300k", "-c", "abort"])
        .arg(&crashed)
        .output();
    let (qcode, _) = qemu_img_status(&["check", "-f", "qcow2", s(&crashed)]);
    assert_eq!(qcode, 2, "qemu reports the stale refcounts as errors");
    let (code, report) = imgport_check(&crashed, &[]);
    assert_eq!(code, 0, "{report}");
    assert!(messages(&report, "warnings").contains("refcount=0 reference=1"), "{report}");
    assert_same_as_qemu(dir.path(), &crashed, &[]);
}

#[test]
fn corrupt_bit_is_reported_but_still_readable() {
    let dir = tempdir();
    let (src, img) = fixture(dir.path(), "corrupt", 4 * MIB + 512, 28, "", &[]);
    patch(&img, 79, &[2]);
    let info = imgport_json(&["info", "--json", s(&img)]);
    assert_eq!(info["qcow2"]["corrupt"], true);
    assert_eq!(qemu_info(&img, "qcow2")["format-specific"]["data"]["corrupt"], true);
    assert_reads_as(dir.path(), &src, &img, &[]);
    let (code, report) = imgport_check(&img, &[]);
    assert_eq!(code, 2, "{report}");
    assert!(messages(&report, "corruptions").contains("corrupt bit"), "{report}");
    // qemu-img lets it through.
    assert_eq!(qemu_img_status(&["check", "-f", "qcow2", s(&img)]).0, 0);
}

fn assert_refused(img: &Path, needle: &str) {
    let r = run_imgport(&["info", s(img)]);
    assert_eq!(r.status.code(), Some(1), "{}", img.display());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn refusals_name_the_reason() {
    let dir = tempdir();
    let d = dir.path();
    let (_, good) = fixture(d, "good", 2 * MIB, 29, "", &[]);
    let copy = |name: &str| {
        let path = p(d, name);
        std::fs::copy(&good, &path).unwrap();
        path
    };

    let enc = copy("enc.qcow2");
    patch(&enc, 32, &2u32.to_be_bytes());
    assert_refused(&enc, "encrypted qcow2 image (LUKS)");

    let unknown = copy("unknown.qcow2");
    patch(&unknown, 72, &(1u64 << 10).to_be_bytes());
    assert_refused(&unknown, "unknown incompatible feature bit 10");

    let big = copy("bigcluster.qcow2");
    patch(&big, 20, &22u32.to_be_bytes());
    assert_refused(&big, "cluster size 2^22");
    let small = copy("smallcluster.qcow2");
    patch(&small, 20, &8u32.to_be_bytes());
    assert_refused(&small, "cluster_bits 8");

    let l1 = copy("l1.qcow2");
    patch(&l1, 36, &0x0100_0000u32.to_be_bytes());
    assert_refused(&l1, "L1 table of 16777216 entries is absurdly large");

    let v4 = copy("v4.qcow2");
    patch(&v4, 4, &4u32.to_be_bytes());
    assert_refused(&v4, "qcow2 version 4");

    // An image qemu made with an external data file.
    let data_file = p(d, "ext.data");
    let ext = p(d, "ext.qcow2");
    qemu_img(&["create", "-f", "qcow2", "-o", &format!("data_file={}", s(&data_file)), s(&ext), "1M"]);
    assert_refused(&ext, "external data file");
    assert_eq!(imgport_check(&ext, &[]).0, 1);

    // A real encrypted image.
    let aes = p(d, "luks.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "--object",
        "secret,id=sec0,data=123456",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
        s(&aes),
        "1M",
    ]);
    assert_refused(&aes, "encrypted qcow2 image (LUKS)");
}

#[test]
fn l2_entry_into_refcount_block_is_caught_where_qemu_convert_is_not() {
    let dir = tempdir();
    let d = dir.path();
    let (_, img) = fixture(d, "into", 3 * MIB, 30, "", &[]);
    let lay = layout(&img);
    let refblock = be64(&img, lay.refcount_table);
    let l2 = l2_of(&img, 0);
    // Guest cluster 0 holds data (the source always has data in its first sector).
    assert_ne!(be64(&img, l2), 0);
    patch(&img, l2, &(refblock | 1 << 63).to_be_bytes());
    let (qcode, _) = qemu_img_status(&["check", "-f", "qcow2", s(&img)]);
    assert_eq!(qcode, 2);
    let (ccode, _) = qemu_img_status(&["convert", "-f", "qcow2", "-O", "raw", s(&img), s(&p(d, "q.raw"))]);
    assert_eq!(ccode, 0, "qemu-img convert copies the refcount block as guest data");
    let (code, report) = imgport_check(&img, &[]);
    assert_eq!(code, 2, "{report}");
    assert!(messages(&report, "corruptions").contains("points into the refcount block"), "{report}");
}

#[test]
fn damaged_tables_are_corruptions_not_panics() {
    let dir = tempdir();
    let d = dir.path();
    let (_, good) = fixture(d, "good", 3 * MIB + 512, 31, "", &[]);
    let lay = layout(&good);
    let len = std::fs::metadata(&good).unwrap().len();
    let l2 = l2_of(&good, 0);
    let copy = |name: &str| {
        let path = p(d, name);
        std::fs::copy(&good, &path).unwrap();
        path
    };
    // (name, damage, expected message, whether reading fails too)
    type Case<'a> = (&'a str, Box<dyn Fn(&Path) + 'a>, &'a str, bool);
    let cases: Vec<Case> = vec![
        // L1 entry pointing past the end of the file: reading fails, the check says why.
        (
            "l1_past_eof",
            Box::new(|p: &Path| patch(p, lay.l1, &((len + 0x100000) | 1 << 63).to_be_bytes())),
            "past the end",
            true,
        ),
        // L2 table overlapping the refcount table.
        (
            "l2_on_reftable",
            Box::new(|p: &Path| patch(p, lay.l1, &(lay.refcount_table | 1 << 63).to_be_bytes())),
            "overlaps",
            false,
        ),
        // Misaligned data cluster.
        (
            "misaligned",
            Box::new(|p: &Path| {
                let e = be64(p, l2);
                patch(p, l2, &(e + 512).to_be_bytes())
            }),
            "not cluster aligned",
            true,
        ),
        // Data cluster past the end of the file.
        (
            "data_past_eof",
            Box::new(|p: &Path| patch(p, l2, &((len + 0x200000) | 1 << 63).to_be_bytes())),
            "past the end",
            true,
        ),
        // Two guest clusters sharing one host cluster.
        (
            "shared",
            Box::new(|p: &Path| {
                let e = be64(p, l2);
                patch(p, l2 + 8 * 20, &e.to_be_bytes())
            }),
            "refcount=1 reference=2",
            false,
        ),
        // The refcount of a data cluster dropped to zero.
        (
            "refcount_zero",
            Box::new(|p: &Path| {
                let refblock = be64(p, lay.refcount_table);
                let host = be64(p, l2) & 0x00ff_ffff_ffff_fe00;
                patch(p, refblock + 2 * (host / lay.cluster_size), &[0, 0])
            }),
            "refcount=0 reference=1",
            false,
        ),
        // L2 entry with reserved bits.
        (
            "reserved",
            Box::new(|p: &Path| {
                let e = be64(p, l2);
                patch(p, l2, &(e | 1 << 57).to_be_bytes())
            }),
            "reserved bits",
            false,
        ),
    ];
    for (name, damage, needle, read_fails) in cases {
        let img = copy(&format!("{name}.qcow2"));
        damage(&img);
        let (code, report) = imgport_check(&img, &[]);
        assert_eq!(code, 2, "{name}: {report}");
        let all = format!("{}{}", messages(&report, "corruptions"), messages(&report, "leaks"));
        assert!(all.contains(needle), "{name}: expected '{needle}' in {report}");
        let (qcode, qtext) = qemu_img_status(&["check", "-f", "qcow2", s(&img)]);
        assert_eq!(qcode, 2, "{name}: qemu-img check agrees: {qtext}");
        let r = run_imgport(&["convert", "-O", "raw", s(&img), s(&p(d, &format!("{name}.raw")))]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!err.contains("panicked"), "{name}: {err}");
        if read_fails {
            assert_eq!(r.status.code(), Some(1), "{name}: convert should fail: {err}");
        }
    }
}

#[test]
fn leaked_cluster_exits_3_like_qemu() {
    let dir = tempdir();
    let (_, img) = fixture(dir.path(), "leak", 2 * MIB, 32, "", &[]);
    let lay = layout(&img);
    let refblock = be64(&img, lay.refcount_table);
    let len = std::fs::metadata(&img).unwrap().len();
    // Grow the file by one cluster and give it a refcount without any user.
    std::fs::OpenOptions::new().write(true).open(&img).unwrap().set_len(len + lay.cluster_size).unwrap();
    patch(&img, refblock + 2 * (len / lay.cluster_size), &[0, 1]);
    assert_eq!(qemu_img_status(&["check", "-f", "qcow2", s(&img)]).0, 3);
    let (code, report) = imgport_check(&img, &[]);
    assert_eq!(code, 3, "{report}");
    assert!(messages(&report, "leaks").contains("refcount=1 reference=0"), "{report}");
}

#[test]
fn truncated_files() {
    let dir = tempdir();
    let d = dir.path();
    let (_, good) = fixture(d, "trunc", 5 * MIB, 33, "", &[]);
    let len = std::fs::metadata(&good).unwrap().len();
    let lay = layout(&good);
    for (name, keep) in
        [("half", len / 2 / lay.cluster_size * lay.cluster_size), ("header", 50), ("tables", lay.l1 + 8)]
    {
        let img = p(d, &format!("{name}.qcow2"));
        std::fs::copy(&good, &img).unwrap();
        std::fs::OpenOptions::new().write(true).open(&img).unwrap().set_len(keep).unwrap();
        let r = run_imgport(&["convert", "-O", "raw", s(&img), s(&p(d, &format!("{name}.raw")))]);
        assert_eq!(r.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains("truncated") || err.contains("past the end"), "{name}: {err}");
        let (code, report) = imgport_check(&img, &[]);
        assert_eq!(code, 2, "{name}: {report}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Writer

fn writer_case(name: &str, size: u64, seed: u64, options: &[&str], expect_cluster: u64, expect_compression: &str) {
    let dir = tempdir();
    let d = dir.path();
    let src = p(d, "src.raw");
    make_source_raw(&src, size, seed);
    let out = p(d, &format!("{name}.qcow2"));
    let mut args = vec!["convert", "-O", "qcow2"];
    args.extend_from_slice(options);
    args.extend_from_slice(&[s(&src), s(&out)]);
    imgport_ok(&args);
    assert_qemu_identical(&src, "raw", &out, "qcow2");
    let (code, text) = qemu_img_status(&["check", "-f", "qcow2", s(&out)]);
    assert_eq!(code, 0, "qemu-img check {name}: {text}");
    assert!(text.contains("No errors were found"), "{text}");
    let info = qemu_info(&out, "qcow2");
    assert_eq!(info["virtual-size"], size);
    assert_eq!(info["cluster-size"], expect_cluster);
    assert_eq!(info["format-specific"]["data"]["compat"], "1.1");
    assert_eq!(info["format-specific"]["data"]["compression-type"], expect_compression);
    assert_eq!(info["format-specific"]["data"]["refcount-bits"], 16);
    // imgport reads its own output back, and the round trip keeps the digest.
    assert_reads_as(d, &src, &out, &[]);
    let (code, report) = imgport_check(&out, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        imgport_json(&["digest", "--json", s(&src)])["digest"],
        imgport_json(&["digest", "--json", s(&out)])["digest"]
    );
    // Zero runs of the source (several clusters long with small clusters) became unallocated clusters.
    if expect_cluster <= 65536 {
        let map = imgport_json(&["map", "--json", s(&out)]);
        assert!(map.as_array().unwrap().iter().any(|e| e["kind"] == "unallocated"), "{map}");
    }
}

#[test]
fn writes_plain() {
    writer_case("plain", 17 * MIB + 3 * 512, 40, &[], 65536, "zlib");
}

#[test]
fn writes_512_byte_clusters() {
    writer_case("c512", 3 * MIB + 512, 41, &["-o", "cluster_size=512"], 512, "zlib");
}

#[test]
fn writes_512_byte_clusters_with_a_multi_cluster_refcount_table() {
    // 10 MiB of data in 512-byte clusters: 80 refcount blocks, a refcount table of two clusters.
    let dir = tempdir();
    let src = p(dir.path(), "full.raw");
    let mut data = vec![0u8; 10 << 20];
    Rng::new(49).fill(&mut data);
    std::fs::write(&src, &data).unwrap();
    let out = p(dir.path(), "full.qcow2");
    imgport_ok(&["convert", "-O", "qcow2", "-o", "cluster_size=512", s(&src), s(&out)]);
    assert!(be32(&out, 56) >= 2, "refcount table clusters: {}", be32(&out, 56));
    assert_qemu_identical(&src, "raw", &out, "qcow2");
    assert_both_checks_clean(&out);
}

#[test]
fn writes_2_mib_clusters() {
    writer_case("c2m", 23 * MIB + 512, 42, &["-o", "cluster_size=2M"], 2 * MIB, "zlib");
}

#[test]
fn writes_zstd_compressed() {
    writer_case("zstd", 11 * MIB + 4096, 43, &["--compress", "zstd"], 65536, "zstd");
}

#[test]
fn writes_zlib_compressed() {
    writer_case("zlib", 9 * MIB + 512, 44, &["--compress", "zlib"], 65536, "zlib");
}

#[test]
fn writes_compressed_small_and_large_clusters() {
    writer_case("zstd512", 2 * MIB + 512, 45, &["--compress", "zstd", "-o", "cluster_size=512"], 512, "zstd");
    writer_case("zlib2m", 9 * MIB + 512, 46, &["--compress", "zlib", "-o", "cluster_size=2M"], 2 * MIB, "zlib");
}

#[test]
fn compressed_output_packs_clusters_and_shrinks() {
    let dir = tempdir();
    let d = dir.path();
    let src = p(d, "text.raw");
    let text: Vec<u8> =
        b"a line of very compressible text, again and again\n".iter().copied().cycle().take(8 << 20).collect();
    std::fs::write(&src, &text).unwrap();
    for kind in ["zstd", "zlib"] {
        let out = p(d, &format!("{kind}.qcow2"));
        imgport_ok(&["convert", "-O", "qcow2", "--compress", kind, s(&src), s(&out)]);
        assert!(std::fs::metadata(&out).unwrap().len() < 1 << 20, "{kind} output did not shrink");
        assert_qemu_identical(&src, "raw", &out, "qcow2");
        let (code, text) = qemu_img_status(&["check", "-f", "qcow2", s(&out)]);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("100.00% compressed clusters"), "{text}");
        assert_eq!(imgport_check(&out, &[]).0, 0);
    }
}

#[test]
fn writes_from_qcow2_and_tiny_or_empty_disks() {
    let dir = tempdir();
    let d = dir.path();
    // qcow2 (compressed, zero clusters) -> qcow2.
    let (src, img) = fixture(d, "in", 4 * MIB + 512, 47, "compression_type=zstd", &["-c"]);
    qemu_io(&img, &["write -z 1M 64k"]);
    let out = p(d, "out.qcow2");
    imgport_ok(&["convert", "-O", "qcow2", s(&img), s(&out)]);
    assert_qemu_identical(&img, "qcow2", &out, "qcow2");
    assert_eq!(qemu_img_status(&["check", "-f", "qcow2", s(&out)]).0, 0);
    let _ = src;
    // Smaller than one cluster, and all zeros.
    for (name, size, data) in [("tiny", 1000u64, true), ("empty", 5 * MIB + 512, false), ("zero", 0, false)] {
        let raw = p(d, &format!("{name}.raw"));
        std::fs::write(&raw, vec![if data { 0x42u8 } else { 0 }; size as usize]).unwrap();
        let out = p(d, &format!("{name}.qcow2"));
        imgport_ok(&["convert", "-O", "qcow2", s(&raw), s(&out)]);
        assert_qemu_identical(&raw, "raw", &out, "qcow2");
        // Like qemu-img, the virtual size is rounded up to whole sectors.
        assert_eq!(qemu_info(&out, "qcow2")["virtual-size"], size.div_ceil(512) * 512);
        let (code, text) = qemu_img_status(&["check", "-f", "qcow2", s(&out)]);
        assert_eq!(code, 0, "{name}: {text}");
        assert_eq!(imgport_check(&out, &[]).0, 0, "{name}");
    }
}

#[test]
fn writer_rejects_options_that_do_not_apply() {
    let dir = tempdir();
    let d = dir.path();
    let src = p(d, "src.raw");
    make_source_raw(&src, MIB, 48);
    for (opts, needle) in [
        ("cluster_size=1000", "power of two"),
        ("cluster_size=4M", "512 bytes to 2 MiB"),
        ("subformat=fixed", "subformat"),
        ("block_size=2M", "block_size"),
    ] {
        let r = run_imgport(&["convert", "-O", "qcow2", "-o", opts, s(&src), s(&p(d, "x.qcow2"))]);
        assert_eq!(r.status.code(), Some(1), "{opts}");
        assert!(String::from_utf8_lossy(&r.stderr).contains(needle), "{opts}: {}", String::from_utf8_lossy(&r.stderr));
    }
}
