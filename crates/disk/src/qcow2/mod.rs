//! QCOW2: reader (v2 and v3: compressed, zero and extended-L2 clusters, backing chains on request),
//! writer (v3, optionally compressed with zlib or zstd) and structural check (refcount rebuild).
//!
//! - `header`: header fields, extensions, refusals (encryption, external data file, unknown features).
//! - `entries`: L1/L2/refcount entry bit layouts and the compressed cluster descriptor.
//! - `reader`: L1 at open, cached L2 tables, coalesced reads, extent map.
//! - `compress`: one cluster at a time, zlib (raw deflate) or zstd.
//! - `check`: what `qemu-img check` checks, plus what qemu's reader lets through.
//! - `writer`: the one-pass sequential writer.

mod check;
mod compress;
mod entries;
mod header;
mod reader;
#[cfg(test)]
mod tests;
mod writer;

use crate::error::{Error, Result};
use crate::file::ImageFile;
use crate::image::{check_bounds, CheckReport, DiskImage, Extent, ImageDetails};
use crate::open::OpenCtx;
use crate::probe::Format;
use crate::sink::Sink;
use crate::write::{Control, WriteOptions};
use header::Header;
use reader::{Backing, Qcow2Image};
use serde::Serialize;
use std::path::Path;

/// QCOW2-specific facts shown by `imgport info`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Qcow2Info {
    /// Header version: 2 or 3.
    pub version: u32,
    /// qemu's name for the version: "0.10" (v2) or "1.1" (v3).
    pub compat: String,
    /// "zlib" or "zstd".
    pub compression_type: String,
    pub lazy_refcounts: bool,
    pub refcount_bits: u32,
    /// 128-bit L2 entries with 32 subclusters per cluster.
    pub extended_l2: bool,
    /// The image was not closed cleanly (refcounts may be stale).
    pub dirty: bool,
    /// qemu marked the metadata as damaged.
    pub corrupt: bool,
    /// Always false for an image that opened: encrypted images are refused.
    pub encrypted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_format: Option<String>,
    /// Internal snapshots (their data is not read; only the active layer is).
    pub snapshots: u32,
}

impl Qcow2Info {
    fn from_header(h: &Header) -> Self {
        Qcow2Info {
            version: h.version,
            compat: h.compat().to_string(),
            compression_type: h.compression.name().to_string(),
            lazy_refcounts: h.lazy_refcounts(),
            refcount_bits: h.refcount_bits(),
            extended_l2: h.extended_l2(),
            dirty: h.dirty(),
            corrupt: h.corrupt(),
            encrypted: h.crypt_method != 0,
            backing_file: h.backing_file.clone(),
            backing_format: h.backing_format.clone(),
            snapshots: h.nb_snapshots,
        }
    }
}

pub(crate) fn open(file: ImageFile, ctx: &mut OpenCtx) -> Result<Box<dyn DiskImage>> {
    let header = header::parse(&file)?;
    let backing = match &header.backing_file {
        Some(name) => Some(open_backing(&file, &header, name, ctx)?),
        None => None,
    };
    Ok(Box::new(Qcow2Image::new(file, header, backing)?))
}

/// Open the backing file named in the header, only when the caller asked for backing files to be followed.
fn open_backing(file: &ImageFile, header: &Header, name: &str, ctx: &mut OpenCtx) -> Result<Backing> {
    let described = match &header.backing_format {
        Some(f) => format!("'{name}' (format {f})"),
        None => format!("'{name}'"),
    };
    if !ctx.options.follow_backing {
        return Err(file.unsupported(format!(
            "image has a backing file {described}; backing files are not followed by default because they name \
             arbitrary host paths: pass --follow-backing to read the image through its backing chain"
        )));
    }
    if name.starts_with("json:") || name.contains("://") {
        return Err(file.unsupported(format!("backing file {described} is not a plain file name")));
    }
    let format = match &header.backing_format {
        Some(f) => Some(
            f.parse::<Format>()
                .map_err(|_| file.unsupported(format!("backing file {described} has an unsupported format")))?,
        ),
        None => None,
    };
    let path = Path::new(name);
    let resolved =
        if path.is_absolute() { path.to_path_buf() } else { file.path().parent().unwrap_or(Path::new("")).join(path) };
    let image = ctx
        .open_referenced(&resolved, format)
        .map_err(|e| Error::new(e.kind(), format!("backing file {described}: {e}")).in_file(file.path()))?;
    let mut files = vec![resolved];
    files.extend(image.extra_files());
    files.extend(image.backing_files());
    Ok(Backing { image, files })
}

impl DiskImage for Qcow2Image {
    fn backing_files(&self) -> Vec<std::path::PathBuf> {
        self.backing.as_ref().map(|b| b.files.clone()).unwrap_or_default()
    }

    fn data_file(&self) -> Option<&ImageFile> {
        // Backing-file data is mapped without host offsets, so every host offset points into this file.
        Some(&self.file)
    }

    fn virtual_size(&self) -> u64 {
        self.header.size
    }

    fn map_granularity(&self) -> u64 {
        // A cluster, or a subcluster with extended L2 entries; the backing file maps what this one does not.
        let own = if self.header.extended_l2() { self.cluster_size() / 32 } else { self.cluster_size() };
        self.backing.as_ref().map_or(own, |b| own.min(b.image.map_granularity()))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_bounds(self.header.size, offset, buf.len())?;
        self.read(buf, offset)
    }

    fn map(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        self.extents(offset, length)
    }

    fn details(&self) -> ImageDetails {
        let mut d = ImageDetails::new(Format::Qcow2);
        d.cluster_size = Some(self.cluster_size());
        d.backing_file = self.header.backing_file.clone();
        d.specific = Some(crate::FormatInfo::Qcow2(Qcow2Info::from_header(&self.header)));
        d
    }

    fn check(&self) -> Result<CheckReport> {
        check::check(self)
    }
}

pub(crate) fn write(src: &dyn DiskImage, opts: &WriteOptions, sink: &mut dyn Sink, ctl: &Control) -> Result<()> {
    writer::write(src, opts, sink, ctl)
}
