//! `imgport convert` as a command: options, refusal to overwrite, and Ctrl-C, SIGTERM or SIGHUP leaving nothing
//! behind.

use crate::common::*;
use std::time::{Duration, Instant};

/// A source that takes a while to compress: 1 GiB virtual holding 384 MiB of compressible (but not trivially
/// compressible) data.
fn slow_source(path: &std::path::Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(1 << 30).unwrap();
    let mut rng = Rng::new(5);
    let mut words = vec![0u8; 4096];
    rng.fill(&mut words);
    let mut chunk = vec![0u8; 8 << 20];
    for i in 0..48u64 {
        for piece in chunk.chunks_mut(64) {
            let w = (rng.below(4096 - 64)) as usize;
            piece.copy_from_slice(&words[w..w + 64]);
        }
        f.write_all_at(&chunk, i * (16 << 20)).unwrap();
    }
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("imgport-tmp") || n.starts_with("out"))
        .collect()
}

/// Interrupts a conversion under way with `signal`: the exit code is `code` (128 + the signal) and neither the
/// output nor its temporary file is left behind.
fn interrupted_convert_leaves_nothing(signal: libc::c_int, code: i32) {
    let dir = tempdir();
    let src = dir.path().join("src.raw");
    slow_source(&src);
    let out = dir.path().join("out.qcow2");
    let mut child = imgport()
        .args(["convert", "-O", "qcow2", "--compress", "zlib", src.to_str().unwrap(), out.to_str().unwrap()])
        .spawn()
        .unwrap();
    // Wait until the temporary output exists (the conversion is under way), then interrupt.
    let start = Instant::now();
    while std::fs::read_dir(dir.path()).unwrap().flatten().all(|e| !e.file_name().to_string_lossy().contains("tmp")) {
        assert!(start.elapsed() < Duration::from_secs(20), "conversion never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(code), "convert interrupted by signal {signal}: {status}");
    assert!(!out.exists(), "a half-written output was left under the final name");
    assert!(leftovers(dir.path()).is_empty(), "left behind: {:?}", leftovers(dir.path()));
}

#[test]
fn ctrl_c_leaves_no_output_and_no_temporary_file() {
    interrupted_convert_leaves_nothing(libc::SIGINT, 130);
}

/// CI cancellation, systemd and Kubernetes stop processes with SIGTERM; a closed terminal sends SIGHUP.
#[test]
fn sigterm_and_sighup_leave_no_output_and_no_temporary_file() {
    interrupted_convert_leaves_nothing(libc::SIGTERM, 143);
    interrupted_convert_leaves_nothing(libc::SIGHUP, 129);
}

#[test]
fn errors_leave_no_output() {
    let dir = tempdir();
    let out = dir.path().join("out.raw");
    // Unreadable input: a qcow2 header that claims an impossible cluster size.
    let bad = dir.path().join("bad.qcow2");
    let mut header = vec![0u8; 4096];
    header[..4].copy_from_slice(b"QFI\xfb");
    header[7] = 3;
    header[23] = 40; // cluster_bits
    std::fs::write(&bad, &header).unwrap();
    let r = run_imgport(&["convert", "-O", "raw", bad.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.starts_with("imgport: error: ") && err.contains("bad.qcow2"), "{err}");
    assert!(leftovers(dir.path()).is_empty(), "left behind: {:?}", leftovers(dir.path()));
}

#[test]
fn bad_options_are_refused_before_anything_is_written() {
    let dir = tempdir();
    let src = dir.path().join("src.raw");
    make_source_raw(&src, 1 << 20, 1);
    let out = dir.path().join("out.img");
    for args in [
        vec!["convert", "-O", "raw", "--compress", "zstd"],
        vec!["convert", "-O", "qcow2", "-o", "nonsense=1"],
        vec!["convert", "-O", "qcow2", "-o", "cluster_size"],
        vec!["convert", "-O", "vhd", "-o", "subformat=streamOptimized"],
    ] {
        let mut args = args.clone();
        args.extend([src.to_str().unwrap(), out.to_str().unwrap()]);
        let r = run_imgport(&args);
        assert_eq!(r.status.code(), Some(1), "{args:?}");
        assert!(String::from_utf8_lossy(&r.stderr).starts_with("imgport: error: "), "{args:?}");
        assert!(leftovers(dir.path()).is_empty(), "{args:?} left {:?}", leftovers(dir.path()));
    }
}

#[test]
fn format_override_reads_a_fixed_vhd_as_raw_bytes() {
    // -f overrides detection: a fixed VHD read as raw includes its footer, as qemu reads it without -f vpc.
    let dir = tempdir();
    let src = dir.path().join("src.raw");
    make_source_raw(&src, 2 << 20, 2);
    let vhd = dir.path().join("d.vhd");
    qemu_convert(&src, &vhd, "vpc", "subformat=fixed,force_size=on", &[]);
    let detected = imgport_json(&["info", "--json", vhd.to_str().unwrap()]);
    assert_eq!(detected["format"], "vhd");
    assert_eq!(detected["virtual_size"], 2 << 20);
    let forced = imgport_json(&["info", "--json", "-f", "raw", vhd.to_str().unwrap()]);
    assert_eq!(forced["format"], "raw");
    assert_eq!(forced["virtual_size"], (2 << 20) + 512);
}

#[test]
fn conversions_read_the_allocated_data_and_little_else() {
    let dir = tempdir();
    let (_src, fixtures) = format_fixtures(dir.path(), 24 << 20, 31);
    for fx in &fixtures {
        let info = imgport_json(&["info", "--json", fx.path.to_str().unwrap()]);
        let allocated = info["allocated_bytes"].as_u64().unwrap();
        let out = dir.path().join(format!("{}.out", fx.name));
        let summary =
            imgport_json(&["convert", "--json", "-O", "raw", fx.path.to_str().unwrap(), out.to_str().unwrap()]);
        let read = summary["bytes_read"].as_u64().unwrap();
        // Compressed formats read less than they map as allocated; metadata costs at most a couple of MiB here.
        assert!(read <= allocated + (2 << 20), "{}: read {read} bytes for {allocated} allocated", fx.name);
        assert!(summary["bytes_written"].as_u64().unwrap() <= 24 << 20, "{}", fx.name);
        assert_eq!(summary["virtual_size"], info["virtual_size"], "{}", fx.name);
    }
}

#[test]
fn size_options_take_every_unit_spelling() {
    // `-o cluster_size=` in KiB, K, k or bytes: the cluster size qemu-img makes from its own spelling, and the
    // same content.
    let dir = tempdir();
    let src = dir.path().join("src.raw");
    make_source_raw(&src, 4 << 20, 41);
    for (ours, theirs) in [("64KiB", "64k"), ("128KiB", "128k"), ("256K", "256k"), ("32768", "32k")] {
        let qemu_out = dir.path().join(format!("qemu-{theirs}.qcow2"));
        qemu_convert(&src, &qemu_out, "qcow2", &format!("cluster_size={theirs}"), &[]);
        let out = dir.path().join(format!("ours-{ours}.qcow2"));
        let option = format!("cluster_size={ours}");
        imgport_ok(&["convert", "-O", "qcow2", "-o", &option, src.to_str().unwrap(), out.to_str().unwrap()]);
        let (mine, qemu) = (qemu_info(&out, "qcow2"), qemu_info(&qemu_out, "qcow2"));
        assert_eq!(mine["cluster-size"], qemu["cluster-size"], "{ours} vs qemu-img's {theirs}");
        assert_qemu_identical(&out, "qcow2", &src, "raw");
    }
}
