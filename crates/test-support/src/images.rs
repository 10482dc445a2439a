//! Deterministic source disks and the qemu-img fixtures made from them, in fresh temporary folders.

use crate::peers::qemu_convert;
use crate::rng::Rng;
use std::path::{Path, PathBuf};

/// A fresh temporary folder for a test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("imgport-test-").tempdir().expect("tempdir")
}

/// Write a sparse raw disk of `size` bytes: pseudo-random data pieces scattered over holes, plus pieces of
/// written zeros (allocated on the host but all zero), at unaligned offsets too. Deterministic for a seed.
pub fn make_source_raw(path: &Path, size: u64, seed: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).expect("create source");
    f.set_len(size).expect("set_len");
    let mut rng = Rng::new(seed);
    let pieces = 4 + (size >> 20).min(60);
    for i in 0..pieces {
        let len = 1 + rng.below((size / 16).clamp(1, 3 << 20));
        let off = rng.below(size.saturating_sub(len).max(1));
        let len = len.min(size - off);
        let mut buf = vec![0u8; len as usize];
        if i % 4 != 3 {
            rng.fill(&mut buf);
        }
        f.write_all_at(&buf, off).expect("write source");
    }
    // Data in the very first and very last sectors: the edges are where size bugs show.
    let mut edge = vec![0u8; 512.min(size as usize)];
    rng.fill(&mut edge);
    f.write_all_at(&edge, 0).expect("write source");
    f.write_all_at(&edge, size - edge.len() as u64).expect("write source");
}

/// A fixture image made by qemu-img from a raw source.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// e.g. "qcow2-v2", "vpc-fixed".
    pub name: String,
    pub path: PathBuf,
    /// qemu-img's format name for `-f`.
    pub qemu_format: &'static str,
}

/// The (qemu format, `-o` options, extra convert flags, name) variants built by [`format_fixtures`].
pub const FIXTURE_VARIANTS: &[(&str, &str, &[&str], &str)] = &[
    ("raw", "", &[], "raw"),
    ("qcow2", "compat=0.10", &[], "qcow2-v2"),
    ("qcow2", "compat=1.1,cluster_size=4096", &[], "qcow2-v3-4k"),
    ("qcow2", "compat=1.1,extended_l2=on,cluster_size=128k", &[], "qcow2-extl2"),
    ("qcow2", "compression_type=zstd", &["-c"], "qcow2-zstd"),
    ("qcow2", "compression_type=zlib", &["-c"], "qcow2-zlib"),
    ("vpc", "subformat=fixed,force_size=on", &[], "vpc-fixed"),
    ("vpc", "subformat=dynamic,force_size=on", &[], "vpc-dynamic"),
    // Without force_size qemu rounds the size up to a CHS geometry: same content, longer disk.
    ("vpc", "subformat=dynamic", &[], "vpc-dynamic-chs"),
    ("vhdx", "block_size=1M", &[], "vhdx-1m"),
    ("vmdk", "subformat=monolithicSparse", &[], "vmdk-sparse"),
    ("vmdk", "subformat=streamOptimized", &[], "vmdk-stream"),
    ("vmdk", "subformat=monolithicFlat", &[], "vmdk-flat"),
];

/// Build one fixture per [`FIXTURE_VARIANTS`] entry from a deterministic source of `size` bytes.
/// Returns the raw source path and the fixtures.
pub fn format_fixtures(dir: &Path, size: u64, seed: u64) -> (PathBuf, Vec<Fixture>) {
    let src = dir.join("source.raw");
    make_source_raw(&src, size, seed);
    let mut out = Vec::new();
    for (fmt, opts, extra, name) in FIXTURE_VARIANTS {
        let path = dir.join(format!("{name}.img"));
        qemu_convert(&src, &path, fmt, opts, extra);
        out.push(Fixture { name: name.to_string(), path, qemu_format: fmt });
    }
    (src, out)
}
