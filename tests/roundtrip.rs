//! Every reader against every writer: each qemu-made fixture is converted by imgport into every output format;
//! qemu-img must read each output identically to the source, and `imgport digest` must survive every hop.

use crate::common::*;

/// (imgport -O, -o options, qemu format to read the output back, file suffix)
const OUTPUTS: &[(&str, &str, &str, &str)] = &[
    ("raw", "", "raw", "raw"),
    ("qcow2", "", "qcow2", "qcow2"),
    ("vhd", "subformat=fixed", "vpc", "fixed.vhd"),
    ("vhd", "subformat=dynamic", "vpc", "dynamic.vhd"),
    ("vhdx", "", "vhdx", "vhdx"),
    ("vmdk", "subformat=streamOptimized", "vmdk", "vmdk"),
];

fn digest(path: &std::path::Path) -> String {
    imgport_json(&["digest", "--json", path.to_str().unwrap()])["digest"].as_str().unwrap().to_string()
}

fn virtual_size(path: &std::path::Path) -> u64 {
    imgport_json(&["info", "--json", path.to_str().unwrap()])["virtual_size"].as_u64().unwrap()
}

/// A fixture whose container rounded the size up (VHD by CHS geometry) holds the source then zeros.
fn assert_same_content_longer(src: &std::path::Path, fixture: &std::path::Path) {
    assert!(virtual_size(fixture) > virtual_size(src), "{} is shorter than its source", fixture.display());
    let args = ["compare", "--allow-size-mismatch", src.to_str().unwrap(), fixture.to_str().unwrap()];
    assert_eq!(run_imgport(&args).status.code(), Some(0), "{} differs from its source", fixture.display());
}

#[test]
fn every_reader_to_every_writer_preserves_content() {
    let dir = tempdir();
    // A MiB multiple, so VHD output (padded to whole MiB) keeps the same virtual size.
    let size = 6 << 20;
    let (src, fixtures) = format_fixtures(dir.path(), size, 11);
    let expected = digest(&src);
    for fx in &fixtures {
        if virtual_size(&fx.path) != size {
            assert_same_content_longer(&src, &fx.path);
            continue;
        }
        assert_eq!(digest(&fx.path), expected, "digest of the {} fixture differs from the source", fx.name);
        for (fmt, opts, qemu_fmt, suffix) in OUTPUTS {
            let out = dir.path().join(format!("{}-to.{suffix}", fx.name));
            let mut args = vec!["convert", "-O", fmt];
            if !opts.is_empty() {
                args.extend(["-o", opts]);
            }
            args.extend([fx.path.to_str().unwrap(), out.to_str().unwrap()]);
            imgport_ok(&args);
            assert_qemu_identical(&src, "raw", &out, qemu_fmt);
            assert_eq!(digest(&out), expected, "{} -> {fmt} {opts} changed the digest", fx.name);
            std::fs::remove_file(&out).unwrap();
        }
    }
}

#[test]
fn digest_is_container_independent_and_differs_on_content() {
    let dir = tempdir();
    let (src, fixtures) = format_fixtures(dir.path(), (5 << 20) + 1536, 12);
    let d = digest(&src);
    for fx in &fixtures {
        if virtual_size(&fx.path) != (5 << 20) + 1536 {
            assert_same_content_longer(&src, &fx.path);
            continue;
        }
        assert_eq!(digest(&fx.path), d, "{}", fx.name);
    }
    // One changed byte changes the digest.
    let other = dir.path().join("other.raw");
    std::fs::copy(&src, &other).unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&other).unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, 4242).unwrap();
        f.write_all_at(&[b[0].wrapping_add(1)], 4242).unwrap();
    }
    assert_ne!(digest(&other), d);
}

#[test]
fn info_agrees_with_qemu_img_for_every_fixture() {
    let dir = tempdir();
    let (_src, fixtures) = format_fixtures(dir.path(), (3 << 20) + 512 * 3, 13);
    for fx in &fixtures {
        let ours = imgport_json(&["info", "--json", fx.path.to_str().unwrap()]);
        let theirs = qemu_info(&fx.path, fx.qemu_format);
        assert_eq!(ours["virtual_size"], theirs["virtual-size"], "{}: virtual size", fx.name);
        assert_eq!(ours["qemu_format"], theirs["format"], "{}: format", fx.name);
        if let Some(c) = theirs.get("cluster-size") {
            assert_eq!(&ours["cluster_size"], c, "{}: cluster size", fx.name);
        }
    }
}

/// Converters take data straight from `data_file()` at the extents' host offsets: those bytes must be the
/// virtual disk's bytes, for every reader and for imgport's own outputs too.
#[test]
fn host_offsets_point_at_the_virtual_data() {
    use imgport_disk::{open, Mapping, OpenOptions};
    use std::os::unix::fs::FileExt;
    let dir = tempdir();
    let (_src, mut fixtures) = format_fixtures(dir.path(), (7 << 20) + 4096 * 5, 21);
    for (fmt, opts, qemu_fmt, suffix) in OUTPUTS {
        let out = dir.path().join(format!("own.{suffix}"));
        let mut args = vec!["convert", "-O", fmt];
        if !opts.is_empty() {
            args.extend(["-o", opts]);
        }
        args.extend([fixtures[0].path.to_str().unwrap(), out.to_str().unwrap()]);
        imgport_ok(&args);
        fixtures.push(Fixture { name: format!("imgport-{suffix}"), path: out, qemu_format: qemu_fmt });
    }
    let mut checked = 0;
    for fx in &fixtures {
        let img = open(&fx.path, &OpenOptions::default()).unwrap();
        let Some(file) = img.data_file() else { continue };
        let host = std::fs::File::open(file.path()).unwrap();
        for e in img.map(0, img.virtual_size()).unwrap() {
            let Mapping::Data { host_offset: Some(h) } = e.mapping else { continue };
            // Sample the start, the end and one 4 KiB window in the middle of each extent.
            for off in [0, e.length.saturating_sub(4096), e.length / 2 / 4096 * 4096] {
                let len = 4096.min(e.length - off) as usize;
                let mut virt = vec![0u8; len];
                img.read_at(&mut virt, e.offset + off).unwrap();
                let mut stored = vec![0u8; len];
                host.read_exact_at(&mut stored, h + off).unwrap();
                assert!(virt == stored, "{}: extent at {:#x} (host {h:#x}) +{off:#x} differs", fx.name, e.offset);
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "only {checked} windows checked");
}
