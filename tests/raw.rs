//! RAW in and out, digest and compare, checked against qemu-img.

use crate::common::*;

#[test]
fn raw_round_trip_is_identical_and_sparse() {
    let dir = tempdir();
    let src = p(dir.path(), "src.raw");
    make_source_raw(&src, 37 * 1024 * 1024 + 4096 * 3 + 512, 1);
    let out = p(dir.path(), "out.raw");
    imgport_ok(&["convert", "-O", "raw", src.to_str().unwrap(), out.to_str().unwrap()]);
    assert_qemu_identical(&src, "raw", &out, "raw");
    let info = imgport_json(&["info", "--json", out.to_str().unwrap()]);
    assert_eq!(info["virtual_size"], 37 * 1024 * 1024 + 4096 * 3 + 512);
    // Written zeros in the source became holes in the output.
    let src_info = imgport_json(&["info", "--json", src.to_str().unwrap()]);
    assert!(info["actual_size"].as_u64().unwrap() < src_info["actual_size"].as_u64().unwrap());
}

#[test]
fn plain_digest_matches_sha256sum_of_qemu_raw_output() {
    require("sha256sum");
    let dir = tempdir();
    let src = p(dir.path(), "src.raw");
    make_source_raw(&src, 9 * 1024 * 1024 + 1000, 2);
    let out = std::process::Command::new("sha256sum").arg(&src).output().unwrap();
    let expected = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string();
    let d = imgport_json(&["digest", "--plain", "--json", src.to_str().unwrap()]);
    assert_eq!(d["digest"], expected);
    assert_eq!(d["algorithm"], "sha256");
}

#[test]
fn compare_reports_first_difference_and_size_mismatch() {
    let dir = tempdir();
    let a = p(dir.path(), "a.raw");
    let b = p(dir.path(), "b.raw");
    make_source_raw(&a, 4 << 20, 3);
    std::fs::copy(&a, &b).unwrap();
    assert_eq!(run_imgport(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]).status.code(), Some(0));
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&b).unwrap();
        let mut byte = [0u8; 1];
        f.read_exact_at(&mut byte, 3_000_001).unwrap();
        f.write_all_at(&[byte[0] ^ 0x55], 3_000_001).unwrap();
    }
    let out = run_imgport(&["compare", "--json", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["offset"], 3_000_001);
    // A longer image whose tail is zero: different by default, identical when allowed.
    std::fs::copy(&a, &b).unwrap();
    std::fs::OpenOptions::new().write(true).open(&b).unwrap().set_len((4 << 20) + 8192).unwrap();
    assert_eq!(run_imgport(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]).status.code(), Some(1));
    let allowed = run_imgport(&["compare", "--allow-size-mismatch", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(allowed.status.code(), Some(0));
    assert_eq!(run_imgport(&["compare", a.to_str().unwrap(), "/nonexistent"]).status.code(), Some(2));
}

#[test]
fn convert_refuses_to_overwrite_without_force() {
    let dir = tempdir();
    let src = p(dir.path(), "src.raw");
    make_source_raw(&src, 1 << 20, 4);
    let out = p(dir.path(), "out.raw");
    std::fs::write(&out, b"keep me").unwrap();
    let r = run_imgport(&["convert", "-O", "raw", src.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--force"));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    imgport_ok(&["convert", "--force", "-O", "raw", src.to_str().unwrap(), out.to_str().unwrap()]);
    assert_qemu_identical(&src, "raw", &out, "raw");
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("imgport-tmp"))
        .collect();
    assert!(leftovers.is_empty());
}
