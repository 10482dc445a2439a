//! VMDK in and out, checked against qemu-img: every subformat qemu writes is read identically, imgport's
//! streamOptimized output is accepted by qemu-img (compare, check, info), hostile images are refused cleanly.

use crate::common::*;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const SUBFORMATS: [&str; 5] =
    ["monolithicSparse", "streamOptimized", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"];

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sha256_of(path: &Path) -> String {
    require("sha256sum");
    let out = std::process::Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// Every 4 KiB block of `src` holding a non-zero byte lies inside a data extent of `image`'s map.
fn assert_map_covers_data(image: &Path, src: &Path) {
    let map = imgport_json(&["map", "--json", s(image)]);
    let data: Vec<(u64, u64)> = map
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "data")
        .map(|e| (e["offset"].as_u64().unwrap(), e["offset"].as_u64().unwrap() + e["length"].as_u64().unwrap()))
        .collect();
    let bytes = std::fs::read(src).unwrap();
    for (i, block) in bytes.chunks(4096).enumerate() {
        if block.iter().all(|&b| b == 0) {
            continue;
        }
        let (start, end) = (i as u64 * 4096, i as u64 * 4096 + block.len() as u64);
        assert!(
            data.iter().any(|&(a, b)| a <= start && end <= b),
            "{}: data at {start:#x} is not covered by a data extent of the map",
            image.display()
        );
    }
}

/// `imgport info --json` agrees with `qemu-img info` on what both report.
fn assert_info_matches_qemu(image: &Path) -> serde_json::Value {
    let ours = imgport_json(&["info", "--json", s(image)]);
    let qemu = qemu_info(image, "vmdk");
    assert_eq!(ours["virtual_size"], qemu["virtual-size"], "{}", image.display());
    assert_eq!(ours["qemu_format"], qemu["format"]);
    assert_eq!(ours["cluster_size"], qemu["cluster-size"], "cluster size of {}", image.display());
    let q = &qemu["format-specific"]["data"];
    assert_eq!(ours["vmdk"]["create_type"], q["create-type"]);
    assert_eq!(ours["subformat"], q["create-type"]);
    assert_eq!(ours["vmdk"]["cid"], q["cid"]);
    assert_eq!(ours["vmdk"]["parent_cid"], q["parent-cid"]);
    assert_eq!(ours["vmdk"]["extents"].as_array().unwrap().len(), q["extents"].as_array().unwrap().len());
    // Sizes cover every file of the image (descriptor and extents), as qemu-img's do.
    assert_eq!(ours["actual_size"], qemu["actual-size"], "actual size of {}", image.display());
    let files: u64 = qemu["children"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["info"]["format"] == "file")
        // qemu rounds each file's length up to a sector; compare with the exact lengths of the files it names.
        .map(|c| std::fs::metadata(c["info"]["filename"].as_str().unwrap()).unwrap().len())
        .sum();
    assert_eq!(ours["file_size"], files, "file size of {}", image.display());
    ours
}

fn check_exit(image: &Path) -> (i32, String) {
    let out = run_imgport(&["check", s(image)]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn qemu_subformats_read_identically() {
    let dir = tempdir();
    let src = p(dir.path(), "src.raw");
    // Not a multiple of the grain or of a MiB (VMDK sizes are whole sectors).
    let size = 23 * 1024 * 1024 + 3 * 65536 + 5 * 512;
    make_source_raw(&src, size, 11);
    let src_sha = sha256_of(&src);
    for sub in SUBFORMATS {
        let img = p(dir.path(), &format!("{sub}.vmdk"));
        qemu_convert(&src, &img, "vmdk", &format!("subformat={sub}"), &[]);
        let out = p(dir.path(), &format!("{sub}.raw"));
        imgport_ok(&["convert", "-O", "raw", s(&img), s(&out)]);
        assert_qemu_identical(&src, "raw", &out, "raw");
        let d = imgport_json(&["digest", "--plain", "--json", s(&img)]);
        assert_eq!(d["digest"], src_sha, "{sub}");
        assert_map_covers_data(&img, &src);
        let info = assert_info_matches_qemu(&img);
        assert_eq!(info["subformat"], sub);
        assert_eq!(info["vmdk"]["compressed"], sub == "streamOptimized");
        let (code, text) = check_exit(&img);
        assert_eq!(code, 0, "{sub}: {text}");
        // imgport re-encodes it as streamOptimized: qemu agrees it is the same disk.
        let again = p(dir.path(), &format!("{sub}-again.vmdk"));
        imgport_ok(&["convert", "-O", "vmdk", s(&img), s(&again)]);
        assert_qemu_identical(&img, "vmdk", &again, "vmdk");
    }
}

/// A sparse raw disk just over 2 GiB with data on both sides of the 2 GiB extent boundary: the fixtures
/// stay small on disk because holes cost nothing.
fn make_big_sparse_source(path: &Path) -> u64 {
    let size = (2u64 << 30) + 3 * 1024 * 1024 + 7 * 512;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    let mut rng = Rng::new(99);
    for (off, len) in [(0u64, 70_000u64), (1 << 30, 65536 * 3), ((2 << 30) - 100_000, 300_000), (size - 4096, 4096)] {
        let mut buf = vec![0u8; len as usize];
        rng.fill(&mut buf);
        f.write_all_at(&buf, off).unwrap();
    }
    size
}

#[test]
fn two_gb_max_extent_over_two_extents() {
    let dir = tempdir();
    let src = p(dir.path(), "big.raw");
    let size = make_big_sparse_source(&src);
    for sub in ["twoGbMaxExtentSparse", "twoGbMaxExtentFlat"] {
        let img = p(dir.path(), &format!("{sub}.vmdk"));
        qemu_convert(&src, &img, "vmdk", &format!("subformat={sub}"), &[]);
        let info = assert_info_matches_qemu(&img);
        assert_eq!(info["virtual_size"], size);
        assert_eq!(info["vmdk"]["extents"].as_array().unwrap().len(), 2);
        let out = p(dir.path(), &format!("{sub}.raw"));
        imgport_ok(&["convert", "-O", "raw", s(&img), s(&out)]);
        assert_qemu_identical(&src, "raw", &out, "raw");
        assert_eq!(check_exit(&img).0, 0);
        std::fs::remove_file(&out).unwrap();
    }
    // And imgport writes it back as one streamOptimized extent.
    let vmdk = p(dir.path(), "big-stream.vmdk");
    imgport_ok(&["convert", "-O", "vmdk", s(&src), s(&vmdk)]);
    assert_qemu_identical(&src, "raw", &vmdk, "vmdk");
    let (code, text) = qemu_img_status(&["check", "-f", "vmdk", s(&vmdk)]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn writer_output_is_accepted_by_qemu() {
    let dir = tempdir();
    for (i, size) in [37 * 1024 * 1024 + 4096 * 3 + 512, 65536 * 7 + 1024, 512, 40 << 20].into_iter().enumerate() {
        let src = p(dir.path(), &format!("src{i}.raw"));
        make_source_raw(&src, size, 20 + i as u64);
        let out = p(dir.path(), &format!("out{i}.vmdk"));
        if i % 2 == 0 {
            imgport_ok(&["convert", "-O", "vmdk", s(&src), s(&out)]);
        } else {
            imgport_ok(&["convert", "-O", "vmdk", "-o", "subformat=streamOptimized", s(&src), s(&out)]);
        }
        assert_qemu_identical(&src, "raw", &out, "vmdk");
        let (code, text) = qemu_img_status(&["check", "-f", "vmdk", s(&out)]);
        assert_eq!(code, 0, "qemu-img check: {text}");
        let q = qemu_info(&out, "vmdk");
        assert_eq!(q["virtual-size"], size);
        assert_eq!(q["cluster-size"], 65536);
        assert_eq!(q["format-specific"]["data"]["create-type"], "streamOptimized");
        assert_eq!(q["format-specific"]["data"]["extents"][0]["compressed"], true);
        assert_info_matches_qemu(&out);
        assert_eq!(check_exit(&out).0, 0);
        // Round trip through imgport alone.
        let back = p(dir.path(), &format!("back{i}.raw"));
        imgport_ok(&["convert", "-O", "raw", s(&out), s(&back)]);
        assert_qemu_identical(&src, "raw", &back, "raw");
        let a = imgport_json(&["digest", "--json", s(&src)]);
        let b = imgport_json(&["digest", "--json", s(&out)]);
        assert_eq!(a["digest"], b["digest"]);
        // Exactly the grains holding a non-zero byte were stored.
        let bytes = std::fs::read(&src).unwrap();
        let expected: u64 =
            bytes.chunks(65536).filter(|g| g.iter().any(|&b| b != 0)).map(|g| g.len().div_ceil(512) as u64 * 512).sum();
        let out_alloc = imgport_json(&["info", "--json", s(&out)])["allocated_bytes"].as_u64().unwrap();
        assert_eq!(out_alloc, expected);
    }
}

#[test]
fn writer_rounds_sizes_up_to_a_sector_and_refuses_foreign_options() {
    let dir = tempdir();
    let src = p(dir.path(), "odd.raw");
    make_source_raw(&src, 3 * 1024 * 1024 + 1000, 31);
    let out = p(dir.path(), "odd.vmdk");
    imgport_ok(&["convert", "-O", "vmdk", s(&src), s(&out)]);
    let q = qemu_info(&out, "vmdk");
    assert_eq!(q["virtual-size"], 3 * 1024 * 1024 + 1024);
    // Same bytes, followed by zeros up to the sector.
    let back = p(dir.path(), "odd-back.raw");
    qemu_img(&["convert", "-f", "vmdk", "-O", "raw", s(&out), s(&back)]);
    let (a, b) = (std::fs::read(&src).unwrap(), std::fs::read(&back).unwrap());
    assert_eq!(&b[..a.len()], &a[..]);
    assert!(b[a.len()..].iter().all(|&x| x == 0));

    for opt in ["subformat=dynamic", "cluster_size=2M", "block_size=1M"] {
        let r = run_imgport(&["convert", "-O", "vmdk", "-o", opt, s(&src), s(&p(dir.path(), "x.vmdk"))]);
        assert_eq!(r.status.code(), Some(1), "{opt}");
        assert!(!String::from_utf8_lossy(&r.stderr).is_empty());
    }
    let r = run_imgport(&["convert", "-O", "vmdk", "--compress", "zstd", s(&src), s(&p(dir.path(), "x.vmdk"))]);
    assert_eq!(r.status.code(), Some(1));
}

/// Flip bytes of a file in place.
fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn read_u64(path: &Path, offset: u64) -> u64 {
    let f = std::fs::File::open(path).unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, offset).unwrap();
    u64::from_le_bytes(b)
}

/// Fixture + a copy to damage.
fn fixture(dir: &Path, sub: &str, seed: u64) -> (PathBuf, PathBuf) {
    let src = p(dir, &format!("{sub}-src.raw"));
    make_source_raw(&src, 6 * 1024 * 1024, seed);
    let img = p(dir, &format!("{sub}.vmdk"));
    qemu_convert(&src, &img, "vmdk", &format!("subformat={sub}"), &[]);
    (src, img)
}

#[test]
fn damaged_sparse_images_fail_check_and_never_panic() {
    let dir = tempdir();
    let (_, img) = fixture(dir.path(), "monolithicSparse", 40);
    let gd = read_u64(&img, 56) * 512;
    let len = std::fs::metadata(&img).unwrap().len();

    // Grain directory entry pointing past EOF.
    let bad = p(dir.path(), "gd.vmdk");
    std::fs::copy(&img, &bad).unwrap();
    patch(&bad, gd, &0x0fff_ffffu32.to_le_bytes());
    let (code, text) = check_exit(&bad);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("past the end"), "{text}");
    let r = run_imgport(&["convert", "-O", "raw", s(&bad), s(&p(dir.path(), "gd.raw"))]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("grain table"));

    // A grain table entry pointing past EOF, then one pointing into the grain directory.
    let gt = {
        let f = std::fs::File::open(&img).unwrap();
        let mut b = [0u8; 4];
        f.read_exact_at(&mut b, gd).unwrap();
        u32::from_le_bytes(b) as u64 * 512
    };
    for (name, value) in [("gte-eof.vmdk", (len / 512 + 1000) as u32), ("gte-meta.vmdk", (gd / 512) as u32)] {
        let bad = p(dir.path(), name);
        std::fs::copy(&img, &bad).unwrap();
        patch(&bad, gt + 4 * 5, &value.to_le_bytes());
        let (code, text) = check_exit(&bad);
        assert_eq!(code, 2, "{name}: {text}");
    }

    // Huge capacity in the header: a clear error, no huge allocation.
    let bad = p(dir.path(), "huge.vmdk");
    std::fs::copy(&img, &bad).unwrap();
    patch(&bad, 12, &(1u64 << 50).to_le_bytes());
    let r = run_imgport(&["info", s(&bad)]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("grain directory"), "{err}");
    assert!(!err.contains("panicked"));

    // Truncated: tables survive, grains are gone.
    let bad = p(dir.path(), "short.vmdk");
    std::fs::copy(&img, &bad).unwrap();
    std::fs::OpenOptions::new().write(true).open(&bad).unwrap().set_len(len / 2).unwrap();
    assert_eq!(check_exit(&bad).0, 2);
}

#[test]
fn damaged_stream_optimized_images() {
    let dir = tempdir();
    let src = p(dir.path(), "src.raw");
    make_source_raw(&src, 5 * 1024 * 1024, 41);
    let ours = p(dir.path(), "ours.vmdk");
    imgport_ok(&["convert", "-O", "vmdk", s(&src), s(&ours)]);
    let len = std::fs::metadata(&ours).unwrap().len();

    // Cut before the footer: the grain directory is lost, the error says why.
    let cut = p(dir.path(), "cut.vmdk");
    std::fs::copy(&ours, &cut).unwrap();
    std::fs::OpenOptions::new().write(true).open(&cut).unwrap().set_len(len - 4096).unwrap();
    let r = run_imgport(&["info", s(&cut)]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("no valid footer") && err.contains("truncated"), "{err}");
    let (code, text) = check_exit(&cut);
    assert_eq!(code, 2, "{text}");

    // A grain marker whose sector disagrees with the grain table.
    let lba = p(dir.path(), "lba.vmdk");
    std::fs::copy(&ours, &lba).unwrap();
    patch(&lba, 65536, &[0xee, 0xee]);
    let (code, text) = check_exit(&lba);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("marker says sector"), "{text}");

    // A damaged deflate stream: reading fails with the grain named, no panic.
    let z = p(dir.path(), "zlib.vmdk");
    std::fs::copy(&ours, &z).unwrap();
    patch(&z, 65536 + 14, &[0xff; 64]);
    let r = run_imgport(&["convert", "-O", "raw", s(&z), s(&p(dir.path(), "z.raw"))]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("compressed grain"), "{err}");

    // qemu's own streamOptimized layout (grain directory up front, no footer), truncated.
    let (_, q) = fixture(dir.path(), "streamOptimized", 42);
    let qlen = std::fs::metadata(&q).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&q).unwrap().set_len(qlen / 2).unwrap();
    assert_eq!(check_exit(&q).0, 2);
}

#[test]
fn descriptor_hazards_are_refused_with_clear_errors() {
    let dir = tempdir();
    let (_, img) = fixture(dir.path(), "twoGbMaxExtentSparse", 43);
    let desc = std::fs::read_to_string(&img).unwrap();
    let extent = desc.lines().find(|l| l.starts_with("RW ")).unwrap().to_string();

    // Missing extent file.
    let moved = p(dir.path(), "elsewhere.vmdk");
    let extent_file = p(dir.path(), "twoGbMaxExtentSparse-s001.vmdk");
    std::fs::rename(&extent_file, &moved).unwrap();
    let r = run_imgport(&["info", s(&img)]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("is missing"));
    assert_eq!(check_exit(&img).0, 2);
    std::fs::rename(&moved, &extent_file).unwrap();

    let cases = [
        ("loop.vmdk", desc.replace(&extent, "RW 12288 FLAT \"loop.vmdk\" 0"), "names the descriptor itself"),
        (
            "parent.vmdk",
            desc.replace("parentCID=ffffffff", "parentCID=0000abcd\nparentFileNameHint=\"base.vmdk\""),
            "differencing",
        ),
        ("many.vmdk", desc.replace(&extent, &"RW 8 ZERO\n".repeat(5000)), "more than 4096 extents"),
        ("rdm.vmdk", desc.replace(&extent, "RW 8 VMFSRDM \"/dev/sda\""), "raw host device"),
    ];
    for (name, text, words) in cases {
        let path = p(dir.path(), name);
        std::fs::write(&path, text).unwrap();
        let r = run_imgport(&["info", s(&path)]);
        assert_eq!(r.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains(words), "{name}: {err}");
        assert!(!err.contains("panicked"));
    }

    // The descriptor and the sparse extent's header disagree on the size: the header wins (as in qemu),
    // the check reports it.
    let sectors: u64 = extent.split_whitespace().nth(1).unwrap().parse().unwrap();
    let wrong = p(dir.path(), "wrong-size.vmdk");
    std::fs::write(&wrong, desc.replace(&extent, &extent.replace(&sectors.to_string(), &(sectors + 8).to_string())))
        .unwrap();
    let info = imgport_json(&["info", "--json", s(&wrong)]);
    assert_eq!(info["virtual_size"], sectors * 512);
    let (code, text) = check_exit(&wrong);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("the header wins"), "{text}");

    // A real differencing disk made by qemu-img.
    let child = p(dir.path(), "child.vmdk");
    qemu_img(&["create", "-q", "-f", "vmdk", "-b", s(&img), "-F", "vmdk", s(&child)]);
    let r = run_imgport(&["convert", "-O", "raw", s(&child), s(&p(dir.path(), "child.raw"))]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("differencing VMDK") && err.contains("twoGbMaxExtentSparse.vmdk"), "{err}");
    assert_eq!(check_exit(&child).0, 1, "cannot check what cannot be opened");
}

/// An ESX vmfsSparse (COWD) redo-log extent without parent, behind a vmfsSparse descriptor: read the same
/// as qemu reads it.
#[test]
fn cowd_vmfs_sparse_matches_qemu() {
    let dir = tempdir();
    let sectors = 200u32; // 100 grains of 1 KiB (2 sectors), one 4096-entry grain table.
    let mut b = vec![0u8; 512];
    b[..4].copy_from_slice(b"COWD");
    for (at, v) in [(4usize, 1u32), (8, 3), (12, sectors), (16, 2), (20, 1), (24, 1)] {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    // GD at sector 1 -> GT at sector 2 (32 sectors), grains from sector 34.
    b.resize(1024 + 4096 * 4, 0);
    b[512..516].copy_from_slice(&2u32.to_le_bytes());
    let mut rng = Rng::new(5);
    for g in [0u32, 7, 8, 50, 99] {
        let sector = (b.len() / 512) as u32;
        b[1024 + g as usize * 4..1024 + g as usize * 4 + 4].copy_from_slice(&sector.to_le_bytes());
        let mut grain = vec![0u8; 1024];
        rng.fill(&mut grain);
        b.extend_from_slice(&grain);
    }
    std::fs::write(p(dir.path(), "disk-delta.vmdk"), &b).unwrap();
    let desc = p(dir.path(), "disk.vmdk");
    std::fs::write(
        &desc,
        format!(
            // No blank line right before the extent line: qemu 10 parses such a line twice (its sscanf
            // skips the newline of the blank line), doubling the extent.
            "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"vmfsSparse\"\n\n\
             # Extent description\nRW {sectors} VMFSSPARSE \"disk-delta.vmdk\"\n\nddb.adapterType = \"lsilogic\"\n"
        ),
    )
    .unwrap();
    let ours = p(dir.path(), "ours.raw");
    imgport_ok(&["convert", "-O", "raw", s(&desc), s(&ours)]);
    let theirs = p(dir.path(), "theirs.raw");
    qemu_img(&["convert", "-f", "vmdk", "-O", "raw", s(&desc), s(&theirs)]);
    assert!(std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap(), "imgport and qemu read different data");
    assert_info_matches_qemu(&desc);
    assert_eq!(check_exit(&desc).0, 0);
}
