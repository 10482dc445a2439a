//! Opening an image: probe (or take the caller's format), then hand the file to the format's reader.

use crate::error::{Error, Result};
use crate::file::ImageFile;
use crate::image::DiskImage;
use crate::probe::{detect, Format};
use std::path::{Path, PathBuf};

/// How to open an image.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Skip probing and open as this format.
    pub format: Option<Format>,
    /// Follow qcow2 backing files (off by default: a backing file names an arbitrary host path).
    pub follow_backing: bool,
    /// Longest backing chain followed.
    pub max_backing_depth: usize,
    /// Proceed past bad VHD/VHDX checksums (reported as warnings) instead of refusing the image.
    pub ignore_checksums: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { format: None, follow_backing: false, max_backing_depth: 16, ignore_checksums: false }
    }
}

/// State carried while opening a chain of images (qcow2 backing files, VMDK extents).
#[derive(Debug)]
pub struct OpenCtx<'a> {
    pub options: &'a OpenOptions,
    /// Canonical paths of the images opened so far in this chain, to detect loops.
    pub chain: Vec<PathBuf>,
}

impl OpenCtx<'_> {
    /// Open a file referenced by another image (a backing file), enforcing loop detection and depth.
    pub fn open_referenced(&mut self, path: &Path, format: Option<Format>) -> Result<Box<dyn DiskImage>> {
        open_in_chain(path, format, self.options, &mut self.chain)
    }
}

/// Open an image read-only.
pub fn open(path: &Path, options: &OpenOptions) -> Result<Box<dyn DiskImage>> {
    open_in_chain(path, options.format, options, &mut Vec::new())
}

fn open_in_chain(
    path: &Path,
    format: Option<Format>,
    options: &OpenOptions,
    chain: &mut Vec<PathBuf>,
) -> Result<Box<dyn DiskImage>> {
    let canonical = path.canonicalize().map_err(|e| Error::io("cannot open", e).in_file(path))?;
    if chain.contains(&canonical) {
        return Err(Error::corrupt("backing chain loops back to an image already in the chain").in_file(path));
    }
    if chain.len() > options.max_backing_depth {
        return Err(Error::unsupported(format!("backing chain is deeper than {} images", options.max_backing_depth))
            .in_file(path));
    }
    chain.push(canonical);
    let file = ImageFile::open(path)?;
    let format = match format {
        Some(f) => f,
        None => detect(&file)?,
    };
    let mut ctx = OpenCtx { options, chain: chain.clone() };
    let image = match format {
        Format::Raw => crate::raw::open(file),
        Format::Qcow2 => crate::qcow2::open(file, &mut ctx),
        Format::Vhd => crate::vhd::open(file, &mut ctx),
        Format::Vhdx => crate::vhdx::open(file, &mut ctx),
        Format::Vmdk => crate::vmdk::open(file, &mut ctx),
    };
    image.map_err(|e| e.in_file(path))
}
