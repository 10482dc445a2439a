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
    /// Which files a VMDK descriptor may name as its extents.
    pub extent_files: ExtentFiles,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            format: None,
            follow_backing: false,
            max_backing_depth: 16,
            ignore_checksums: false,
            extent_files: ExtentFiles::InFolder,
        }
    }
}

/// Which files a VMDK descriptor may name as extents. A descriptor is text from the image's author: an extent
/// line like `RW 2 FLAT "/etc/shadow" 0` would otherwise make the disk's contents a copy of any host file the
/// user can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExtentFiles {
    /// None: only single-file images are accepted (an uploaded object). A descriptor naming an extent file is
    /// refused before its name is looked up, so the refusal says nothing about the host's files.
    Refuse,
    /// Regular files that resolve, symlinks included, inside the descriptor's own folder (the default).
    #[default]
    InFolder,
    /// Any regular file the user can read (`--allow-external-extents`: the user vouches for the image).
    Anywhere,
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
    // The image the user named may be a block device (/dev/sdb, an LVM volume); a file another image names
    // (backing file) must be a regular file.
    let top_level = chain.is_empty();
    chain.push(canonical);
    let file = if top_level { ImageFile::open(path)? } else { ImageFile::open_referenced(path)? };
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
