//! Reading an uploaded object with the disk engine: what the import rules judge it by.

use super::detection;
use super::partitions::{self, Table};
use crate::ecs::Detection;
use crate::state::EmulatorState;
use imgport_disk::{DiskImage, Format};

/// What the disk engine makes of an uploaded object.
pub(super) struct Probe {
    pub format: Format,
    /// A fixed VHD (raw data followed by a 512-byte footer).
    pub fixed_vhd: bool,
    /// A dynamic VHD's header `MaxTableEntries` x `BlockSize`: the most its block table can address.
    pub vhd_table_bytes: Option<u64>,
    pub virtual_size: u64,
    /// The object's size in bytes.
    pub object_size: u64,
    /// Sector 0, when the disk has one.
    pub first_sector: Option<[u8; 512]>,
    pub table: Option<Table>,
    /// DetectionStrategy=Standard's problems, when asked for.
    pub detection: Option<Detection>,
}

/// What the client is told when the disk engine cannot open an object: the bucket and object, the kind of problem
/// and what to do, never a host path (the engine's errors name the files it opened: here a `/proc/self/fd` link
/// or a temporary file, and whatever files the image itself names).
fn open_failure(bucket: &str, key: &str, e: &imgport_disk::Error) -> String {
    use imgport_disk::ErrorKind as K;
    let object = format!("oss://{bucket}/{key}");
    match e.kind() {
        K::UnsupportedFeature if e.message().contains("extent file") => format!(
            "{object} is a VMDK descriptor that names extent files; an uploaded image must be one file (a \
             monolithicSparse or streamOptimized VMDK, or another format)"
        ),
        K::UnsupportedFeature => format!("{object} uses an image feature that cannot be imported"),
        K::InvalidFormat => format!("{object} is not a disk image in a supported format"),
        K::CorruptImage => format!("{object} is a damaged image"),
        _ => format!("{object} cannot be read"),
    }
}

fn facts(image: &dyn DiskImage, object_size: u64, detect: bool) -> Probe {
    let details = image.details();
    let first_sector = partitions::first_sector(image);
    let table = first_sector.as_ref().and_then(|s| partitions::read_table(image, s));
    let detection = detect.then(|| detection::run(image, first_sector.as_ref(), table.as_ref()));
    Probe {
        format: details.format,
        fixed_vhd: details.vhd().is_some_and(|v| v.disk_type == "fixed"),
        vhd_table_bytes: details
            .vhd()
            .and_then(|v| Some(u64::from(v.max_table_entries?).saturating_mul(v.block_size?))),
        virtual_size: image.virtual_size(),
        object_size,
        first_sector,
        table,
        detection,
    }
}

/// How much of a multipart object the request-time probe copies from its start and from its end: every format's
/// header, footer and first tables (a dynamic VHD's BAT, a VHDX's region table, a VMDK's grain directory for the
/// disks imports take) sit there; what lies between reads as zeros.
const REQUEST_HEAD: u64 = 8 << 20;
const REQUEST_TAIL: u64 = 1 << 20;

/// How much of the object a probe reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Extent {
    /// All of it (the import task).
    Whole,
    /// Its header and footer only (the ImportImage request, which must answer at once whatever the size).
    HeadAndTail,
}

/// Reads the object with the disk engine. The engine opens paths: a single-segment object is read through its
/// open file descriptor (no copy). A multipart object is joined into a temporary file first, in the task; for the
/// request (`Extent::HeadAndTail`) only its first 8 MiB and last 1 MiB are copied into a sparse file of the
/// object's size, so ImportImage answers in milliseconds for a 4 GiB or a 2 TiB object alike. The object is one
/// file: a VMDK descriptor naming extent files is refused without looking the names up, and no error text names
/// a host path.
/// Why a probe failed.
#[derive(Debug)]
pub(super) enum ProbeError {
    /// The object could not be read (an I/O failure, or its stored segments do not make it up): not the upload's
    /// fault. ImportImage answers 500 `InternalError`; the task reports `InvalidImageFormat.Malformed`.
    Unreadable(String),
    /// The disk engine read it and refused it (not a disk image, damaged, an unsupported feature).
    Disk(String),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Unreadable(m) | ProbeError::Disk(m) => f.write_str(m),
        }
    }
}

pub(super) fn probe(
    state: &EmulatorState,
    bucket: &str,
    key: &str,
    extent: Extent,
    detect: bool,
) -> Result<Probe, ProbeError> {
    let unreadable = || ProbeError::Unreadable(format!("oss://{bucket}/{key} cannot be read"));
    let data = state.store.open_object(bucket, key).map_err(|_| unreadable())?;
    let (meta, files) = data.into_files();
    // The recorded segment sizes must make up the object: a shorter file would read as zeros past its end.
    if files.iter().map(|(_, len)| *len).sum::<u64>() != meta.size {
        return Err(unreadable());
    }
    // And each segment's file must still hold its recorded length (a truncated or replaced file cannot be read).
    if files.iter().any(|(f, len)| f.metadata().map_or(true, |m| !m.is_file() || m.len() < *len)) {
        return Err(unreadable());
    }
    let mut _tmp = None;
    let path = if files.len() == 1 && std::path::Path::new("/proc/self/fd").is_dir() {
        use std::os::fd::AsRawFd;
        std::path::PathBuf::from(format!("/proc/self/fd/{}", files[0].0.as_raw_fd()))
    } else {
        // Removed when this returns, by any way, a panic in the engine included.
        let tmp = RemoveOnDrop(state.store.tmp_path());
        let copied = crate::util::create_private_file(&tmp.0).and_then(|mut out| match extent {
            Extent::Whole => files
                .iter()
                .try_for_each(|(f, len)| std::io::copy(&mut std::io::Read::take(f, *len), &mut out).map(drop)),
            Extent::HeadAndTail => copy_head_and_tail(&files, meta.size, &out),
        });
        if copied.is_err() {
            return Err(unreadable());
        }
        let p = tmp.0.clone();
        _tmp = Some(tmp);
        p
    };
    let options = imgport_disk::OpenOptions { extent_files: imgport_disk::ExtentFiles::Refuse, ..Default::default() };
    imgport_disk::open(&path, &options).map(|image| facts(image.as_ref(), meta.size, detect)).map_err(|e| {
        match e.kind() {
            imgport_disk::ErrorKind::Io => ProbeError::Unreadable(open_failure(bucket, key, &e)),
            _ => ProbeError::Disk(open_failure(bucket, key, &e)),
        }
    })
}

/// A temporary file removed when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Makes `out` a sparse file of `size` bytes holding the object's first [`REQUEST_HEAD`] and last
/// [`REQUEST_TAIL`] bytes, read from the segments in place.
fn copy_head_and_tail(files: &[(std::fs::File, u64)], size: u64, out: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    out.set_len(size)?;
    let head = 0..REQUEST_HEAD.min(size);
    let tail = size.saturating_sub(REQUEST_TAIL).max(head.end)..size;
    let mut start = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for (file, len) in files.iter() {
        let segment = start..start + *len;
        for want in [&head, &tail] {
            let (from, to) = (want.start.max(segment.start), want.end.min(segment.end));
            let mut at = from;
            while at < to {
                let n = ((to - at) as usize).min(buf.len());
                file.read_exact_at(&mut buf[..n], at - segment.start)?;
                out.write_all_at(&buf[..n], at)?;
                at += n as u64;
            }
        }
        start = segment.end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Segments of `sizes` bytes holding the object's bytes `i as u8` at offset `i` (modulo 251, so no segment
    /// boundary lines up with the pattern).
    fn segments(dir: &std::path::Path, sizes: &[u64]) -> Vec<(std::fs::File, u64)> {
        let mut at = 0u64;
        sizes
            .iter()
            .enumerate()
            .map(|(n, &len)| {
                let data: Vec<u8> = (at..at + len).map(|i| (i % 251) as u8).collect();
                let path = dir.join(format!("seg{n}"));
                std::fs::write(&path, &data).expect("write segment");
                at += len;
                (std::fs::File::open(&path).expect("open segment"), len)
            })
            .collect()
    }

    fn check_copy(sizes: &[u64]) {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = segments(dir.path(), sizes);
        let size: u64 = sizes.iter().sum();
        let out = std::fs::File::create(dir.path().join("out")).expect("out");
        copy_head_and_tail(&files, size, &out).expect("copy");
        let got = std::fs::read(dir.path().join("out")).expect("read out");
        assert_eq!(got.len() as u64, size);
        let kept = |i: u64| i < REQUEST_HEAD || i >= size.saturating_sub(REQUEST_TAIL);
        for (i, b) in got.iter().enumerate() {
            let i = i as u64;
            let want = if kept(i) { (i % 251) as u8 } else { 0 };
            assert_eq!(*b, want, "byte {i} of a {size}-byte object in segments {sizes:?}");
        }
    }

    #[test]
    fn head_and_tail_are_copied_across_segment_boundaries() {
        // Segments crossing the 8 MiB head and the last-1 MiB tail, and a gap between them.
        check_copy(&[3 << 20, 6 << 20, 5 << 20, (1 << 20) + 7, 300_000]);
    }

    #[test]
    fn an_object_shorter_than_head_and_tail_is_copied_whole() {
        check_copy(&[5 << 20, 4 << 20]);
        check_copy(&[1000, 1, 0, 512]);
    }
}
