//! VMDK (VMware "Virtual Disk Format 5.0"): reader, streamOptimized writer and structural check.
//!
//! A VMDK is a list of extents concatenated into one virtual disk. The list comes from a text descriptor,
//! either a file of its own naming extent files next to it (monolithicFlat, twoGbMaxExtentSparse/Flat,
//! vmfs) or embedded in a single sparse extent (monolithicSparse, streamOptimized). Extents are FLAT
//! (raw bytes at an offset of a file), SPARSE (grain directory and tables, see [`sparse`]) or ZERO.
//!
//! Differencing disks (a descriptor naming a parent) are refused: reading one alone would silently return
//! zeros wherever the parent holds the data. Extents that map host devices (vmfsRaw, RDM) are refused too.

mod check;
mod descriptor;
/// The text descriptor: its extent lines name the files a VMDK is made of.
pub use descriptor::{Descriptor, ExtentLine};
mod header;
mod sparse;
mod writer;

use crate::error::{Error, Result};
use crate::file::ImageFile;
use crate::image::{check_bounds, CheckReport, DiskImage, Extent, ExtentList, Finding, ImageDetails};
use crate::open::{ExtentFiles, OpenCtx};
use crate::probe::Format;
use crate::sink::Sink;
use crate::write::{Control, WriteOptions};
use descriptor::{Access, MAX_DESCRIPTOR_LEN};
use header::{CowdHeader, SparseHeader, COWD_MAGIC, KDMV_MAGIC, SECTOR};
use serde::Serialize;
use sparse::SparseExtent;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest virtual disk accepted (64 PiB): keeps every offset computation far from overflowing.
const MAX_VIRTUAL_SIZE: u64 = 1 << 56;

/// VMDK-specific facts shown by `imgport info`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VmdkInfo {
    /// The descriptor's createType (monolithicSparse, streamOptimized, monolithicFlat, twoGbMaxExtentSparse...).
    pub create_type: String,
    /// Content ID from the descriptor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_cid: Option<u32>,
    /// `ddb.adapterType` (ide, lsilogic, buslogic, legacyESX, pvscsi).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter_type: Option<String>,
    /// `ddb.virtualHWVersion`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hw_version: Option<String>,
    /// Sparse extents store deflate-compressed grains (streamOptimized).
    pub compressed: bool,
    /// Grain size in bytes of the sparse extents (the first one's, when they differ).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grain_size: Option<u64>,
    pub extents: Vec<VmdkExtentInfo>,
}

/// One extent as the descriptor lists it.
#[derive(Debug, Clone, Serialize)]
pub struct VmdkExtentInfo {
    /// RW, RDONLY or NOACCESS.
    pub access: String,
    pub sectors: u64,
    /// FLAT, SPARSE, ZERO, VMFS, VMFSSPARSE...
    pub extent_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Start of a flat extent in its file, in sectors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

impl VmdkExtentInfo {
    fn from_line(l: &ExtentLine) -> Self {
        let flat = matches!(l.kind.as_str(), "FLAT" | "VMFS");
        VmdkExtentInfo {
            access: l.access.as_str().to_string(),
            sectors: l.sectors,
            extent_type: l.kind.clone(),
            file: l.file.clone(),
            offset: flat.then_some(l.offset),
        }
    }
}

/// A flat extent: `len` bytes at `offset` of another file, read through a raw image (so its holes are
/// found with SEEK_DATA and never read).
struct FlatExtent {
    raw: Box<dyn DiskImage>,
    path: PathBuf,
    offset: u64,
    file_len: u64,
}

enum Body {
    Flat(FlatExtent),
    Sparse(Box<SparseExtent>),
    Zero,
}

/// One extent placed in the virtual disk.
struct Part {
    start: u64,
    len: u64,
    body: Body,
    /// The descriptor's extent line (None for a sparse file without descriptor).
    line: Option<ExtentLine>,
}

pub struct VmdkImage {
    parts: Vec<Part>,
    size: u64,
    details: ImageDetails,
    /// Problems noticed while opening, reported by `check`.
    open_report: CheckReport,
}

pub(crate) fn open(file: ImageFile, ctx: &mut OpenCtx) -> Result<Box<dyn DiskImage>> {
    let mut head = [0u8; 512];
    file.read_zero_padded(&mut head, 0, "header")?;
    if head.starts_with(KDMV_MAGIC) || head.starts_with(COWD_MAGIC) {
        if file.len() < 512 {
            return Err(file.corrupt(0, "sparse extent header is truncated"));
        }
        if head.starts_with(COWD_MAGIC) {
            let mut sparse = SparseExtent::open_cowd(file, CowdHeader::parse(&head))?;
            sparse.report_host_offsets = true;
            return Ok(Box::new(VmdkImage::single(sparse, "vmfsSparse".into(), None)));
        }
        let header = SparseHeader::parse(&head);
        if header.capacity == 0 && header.desc_offset != 0 {
            // A sparse header holding only a descriptor: qemu treats the descriptor as a descriptor file.
            let text = read_embedded_descriptor(&file, &header)?;
            return Ok(Box::new(open_descriptor(file.path(), &text, ctx)?));
        }
        return Ok(Box::new(open_monolithic(file, header)?));
    }
    if file.len() > MAX_DESCRIPTOR_LEN as u64 {
        return Err(file.invalid(0, "not a VMDK: no sparse extent header, and too large for a descriptor"));
    }
    let mut text = vec![0u8; file.len() as usize];
    file.read_exact_at(&mut text, 0, "descriptor")?;
    Ok(Box::new(open_descriptor(file.path(), &text, ctx)?))
}

pub(crate) fn write(src: &dyn DiskImage, opts: &WriteOptions, sink: &mut dyn Sink, ctl: &Control) -> Result<()> {
    writer::write(src, opts, sink, ctl)
}

fn read_embedded_descriptor(file: &ImageFile, h: &SparseHeader) -> Result<Vec<u8>> {
    let offset = h.desc_offset.checked_mul(SECTOR).filter(|&o| o < file.len()).ok_or_else(|| {
        file.corrupt(28, format!("embedded descriptor at sector {} is past the end of the file", h.desc_offset))
    })?;
    let len = h.desc_size.saturating_mul(SECTOR).min(MAX_DESCRIPTOR_LEN as u64).min(file.len() - offset);
    let mut text = vec![0u8; len as usize];
    file.read_exact_at(&mut text, offset, "embedded descriptor")?;
    Ok(text)
}

/// Refuse a differencing disk: its unallocated grains belong to a parent we do not read.
fn refuse_parent(d: &Descriptor, path: &Path) -> Result<()> {
    if !d.has_parent() {
        return Ok(());
    }
    let parent = match (&d.parent_file_name_hint, d.parent_cid) {
        (Some(hint), _) => format!("parent \"{hint}\""),
        (None, Some(cid)) => format!("parentCID {cid:08x}"),
        (None, None) => "a parent".to_string(),
    };
    Err(Error::unsupported(format!(
        "differencing VMDK (snapshot of {parent}) is not supported: it only holds the changes made on top of \
         its parent; consolidate the snapshot chain first"
    ))
    .in_file(path))
}

fn open_monolithic(file: ImageFile, header: SparseHeader) -> Result<VmdkImage> {
    let path = file.path().to_path_buf();
    let desc = if header.desc_offset != 0 && header.desc_size != 0 {
        let d = Descriptor::parse(&read_embedded_descriptor(&file, &header)?).map_err(|e| e.in_file(&path))?;
        refuse_parent(&d, &path)?;
        Some(d)
    } else {
        None
    };
    let mut sparse = SparseExtent::open_kdmv(file, header)?;
    sparse.report_host_offsets = true;
    let create_type = desc.as_ref().and_then(|d| d.create_type.clone()).unwrap_or_else(|| {
        // What qemu reports when there is no descriptor to say.
        if sparse.compressed { "streamOptimized" } else { "monolithicSparse" }.to_string()
    });
    Ok(VmdkImage::single(sparse, create_type, desc))
}

fn open_descriptor(desc_path: &Path, text: &[u8], ctx: &mut OpenCtx) -> Result<VmdkImage> {
    let in_file = |e: Error| e.in_file(desc_path);
    let d = Descriptor::parse(text).map_err(in_file)?;
    let create_type = d.create_type.clone().ok_or_else(|| {
        Error::invalid_format("not a VMDK descriptor: no createType (and no sparse extent header)").in_file(desc_path)
    })?;
    refuse_parent(&d, desc_path)?;
    match create_type.as_str() {
        "fullDevice" | "partitionedDevice" | "vmfsRaw" | "vmfsRawDeviceMap" | "vmfsPassthroughRawDeviceMap" => {
            return Err(in_file(Error::unsupported(format!(
                "VMDK createType \"{create_type}\" maps a host device or raw LUN: not supported"
            ))))
        }
        "seSparse" | "vsanSparse" => {
            return Err(in_file(Error::unsupported(format!("VMDK createType \"{create_type}\" is not supported"))))
        }
        _ => {}
    }
    if d.extents.is_empty() {
        return Err(in_file(Error::invalid_format("VMDK descriptor lists no extents")));
    }
    let dir = match desc_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if d.extents.len() > MAX_EXTENTS {
        return Err(in_file(Error::unsupported(format!(
            "VMDK descriptor lists {} extents, more than the {MAX_EXTENTS} supported",
            d.extents.len()
        ))));
    }
    ensure_open_file_budget(d.extents.iter().filter(|l| l.file.is_some()).count());
    let mut files = ExtentFileOpener::new(dir, ctx);
    let mut directories = 0u64;
    let mut report = CheckReport::default();
    let mut parts = Vec::new();
    let mut size = 0u64;
    for (i, line) in d.extents.iter().enumerate() {
        let what = format!("extent {} ({} {})", i + 1, line.kind, line.file.as_deref().unwrap_or(""));
        if line.access == Access::Inaccessible {
            return Err(in_file(Error::unsupported(format!("{what} is NOACCESS: its data cannot be read"))));
        }
        let declared =
            line.sectors.checked_mul(SECTOR).filter(|&b| b <= MAX_VIRTUAL_SIZE).ok_or_else(|| {
                in_file(Error::invalid_format(format!("{what}: {} sectors is impossible", line.sectors)))
            })?;
        if declared == 0 {
            continue;
        }
        let (body, len) = match line.kind.as_str() {
            "ZERO" => (Body::Zero, declared),
            "FLAT" | "VMFS" => {
                let file = files.flat(line, &what, &mut report).map_err(in_file)?;
                let offset = line.offset.checked_mul(SECTOR).filter(|&o| o <= MAX_VIRTUAL_SIZE).ok_or_else(|| {
                    in_file(Error::invalid_format(format!("{what}: offset of {} sectors is impossible", line.offset)))
                })?;
                let (path, file_len) = (file.path().to_path_buf(), file.len());
                let raw = crate::raw::open_shared(file)?;
                (Body::Flat(FlatExtent { raw, path, offset, file_len }), declared)
            }
            "SPARSE" | "VMFSSPARSE" => {
                let file = files.sparse(line, &what, &mut report).map_err(in_file)?;
                // Each directory is capped on its own; many extents must not add up to gigabytes either, so
                // an extent whose directory would pass the total is refused before it is read.
                let too_many = || {
                    in_file(Error::unsupported(format!(
                        "{what}: the sparse extents' grain directories add up to more than {} MiB",
                        MAX_DIRECTORY_BYTES >> 20
                    )))
                };
                let sparse =
                    open_sparse_extent(file, &what, MAX_DIRECTORY_BYTES - directories)?.ok_or_else(too_many)?;
                directories = directories.saturating_add(sparse.directory_bytes());
                if directories > MAX_DIRECTORY_BYTES {
                    return Err(too_many());
                }
                if sparse.size != declared {
                    report.corruptions.push(Finding::new(
                        what.clone(),
                        None,
                        format!(
                            "the descriptor says {} sectors, the extent's header says {}; the header wins",
                            line.sectors,
                            sparse.size / SECTOR
                        ),
                    ));
                }
                let len = sparse.size;
                (Body::Sparse(Box::new(sparse)), len)
            }
            "SESPARSE" => {
                return Err(in_file(Error::unsupported(format!("{what}: seSparse extents are not supported"))))
            }
            "VMFSRDM" | "VMFSRAW" | "VMFSPASSTHROUGHRAW" => {
                return Err(in_file(Error::unsupported(format!("{what} maps a raw host device: not supported"))))
            }
            other => {
                return Err(in_file(Error::unsupported(format!("{what}: extent type \"{other}\" is not supported"))))
            }
        };
        let start = size;
        size = size
            .checked_add(len)
            .filter(|&s| s <= MAX_VIRTUAL_SIZE)
            .ok_or_else(|| in_file(Error::invalid_format("the extents add up to an impossible disk size")))?;
        parts.push(Part { start, len, body, line: Some(line.clone()) });
    }
    // The sparse extents share one grain-table cache budget.
    let sparse_parts = parts.iter().filter(|p| matches!(p.body, Body::Sparse(_))).count();
    if sparse_parts > 1 {
        for p in &mut parts {
            if let Body::Sparse(s) = &mut p.body {
                s.limit_cache(sparse::GT_CACHE_BYTES / sparse_parts);
            }
        }
    }
    let details = details_for(&create_type, Some(&d), &parts);
    Ok(VmdkImage { parts, size, details, open_report: report })
}

/// Each extent keeps its file open, and a descriptor may name thousands (an 8 TiB twoGbMaxExtent disk has
/// 4096 files), more than the usual soft limit of 1024 open files: raise the soft limit toward the hard
/// one when needed. If that fails, opening an extent reports the error.
fn ensure_open_file_budget(files: usize) {
    if files < 256 {
        return;
    }
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write a valid local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        let want = (files as libc::rlim_t).saturating_add(256).min(lim.rlim_max);
        if lim.rlim_cur < want {
            lim.rlim_cur = want;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Most extents a descriptor may list: a 32 TiB twoGbMaxExtent disk. Each extent keeps a little state, and
/// an image's author chooses how many there are.
const MAX_EXTENTS: usize = 16384;

/// Most grain-directory bytes a descriptor's sparse extents may hold in memory together (each one is capped at
/// 64 MiB by itself, enough for a 32 TiB extent of 4 KiB grains).
const MAX_DIRECTORY_BYTES: u64 = 96 << 20;

/// Opens the files a descriptor names, each once: a descriptor may list one file many times (flat extents at
/// several offsets of one file), and opening and mapping it per line would make a few-KiB descriptor cost
/// memory per line. Files are told apart by device and inode, so hard links to one file are one file too.
struct ExtentFileOpener<'a> {
    /// The descriptor's folder, as named (extent names resolve against it).
    dir: PathBuf,
    policy: ExtentFiles,
    /// The images opened so far in this chain (the descriptor itself among them).
    chain: &'a [PathBuf],
    flat: HashMap<(u64, u64), Arc<ImageFile>>,
    sparse: HashSet<(u64, u64)>,
}

/// A file's identity: device and inode.
fn identity(file: &ImageFile) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.file().metadata().map_err(|e| Error::io("cannot stat", e).in_file(file.path()))?;
    Ok((meta.dev(), meta.ino()))
}

impl<'a> ExtentFileOpener<'a> {
    fn new(dir: PathBuf, ctx: &'a OpenCtx) -> Self {
        let policy = ctx.options.extent_files;
        ExtentFileOpener { dir, policy, chain: &ctx.chain, flat: HashMap::new(), sparse: HashSet::new() }
    }

    /// The file of a FLAT extent, shared with other extents naming the same file.
    fn flat(&mut self, line: &ExtentLine, what: &str, report: &mut CheckReport) -> Result<Arc<ImageFile>> {
        let file = ImageFile::open_referenced(&self.resolve(line, what, report)?)?;
        let id = identity(&file)?;
        if self.sparse.contains(&id) {
            return Err(Error::corrupt(format!("{what} names a file already used as a sparse extent")));
        }
        Ok(self.flat.entry(id).or_insert_with(|| Arc::new(file)).clone())
    }

    /// The file of a SPARSE extent: one extent per file.
    fn sparse(&mut self, line: &ExtentLine, what: &str, report: &mut CheckReport) -> Result<ImageFile> {
        let file = ImageFile::open_referenced(&self.resolve(line, what, report)?)?;
        let id = identity(&file)?;
        if self.flat.contains_key(&id) || !self.sparse.insert(id) {
            return Err(Error::corrupt(format!("{what} names a sparse extent file that another extent already uses")));
        }
        Ok(file)
    }

    /// Where an extent's file is, once the policy allows it. Relative names resolve against the descriptor's
    /// folder; absolute names are allowed as in qemu (and reported by the check) when the policy lets them.
    fn resolve(&self, line: &ExtentLine, what: &str, report: &mut CheckReport) -> Result<PathBuf> {
        if self.policy == ExtentFiles::Refuse {
            // Decided on the descriptor alone: the name is never looked up on the host.
            return Err(Error::unsupported(format!(
                "{what}: this VMDK is a descriptor naming extent files, and only a single-file image is accepted \
                 here (upload a monolithicSparse or streamOptimized VMDK, or convert the image first)"
            )));
        }
        let name = line.file.as_deref().unwrap_or("");
        let named = Path::new(name);
        let path = if named.is_absolute() {
            report.warnings.push(Finding::new(
                what,
                None,
                format!("names an absolute path ({name}): the image reads a file outside its own folder"),
            ));
            named.to_path_buf()
        } else {
            self.dir.join(named)
        };
        let canonical = path.canonicalize().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::corrupt(format!("{what}: extent file '{}' is missing", path.display()))
            } else {
                Error::io(format!("{what}: cannot open extent file '{}'", path.display()), e)
            }
        })?;
        if self.policy == ExtentFiles::InFolder {
            let folder = self
                .dir
                .canonicalize()
                .map_err(|e| Error::io(format!("cannot resolve the descriptor's folder {}", self.dir.display()), e))?;
            // Siblings only, as VMware writes them, and no hidden files: an image downloaded into a home folder or
            // a CI workspace must not reach `.ssh/id_rsa`, `.aws/credentials` or `.env` beside it.
            let hidden = canonical.file_name().is_some_and(|n| n.as_encoded_bytes().starts_with(b"."));
            if canonical.parent() != Some(folder.as_path()) || hidden {
                return Err(Error::unsupported(format!(
                    "{what}: extent file '{name}' resolves to {}, which is not a visible file in the descriptor's \
                     folder {}: refused, as an image could otherwise read any host file (allow it only for an \
                     image you trust: --allow-external-extents)",
                    canonical.display(),
                    folder.display()
                )));
            }
        }
        if self.chain.contains(&canonical) {
            return Err(Error::corrupt(format!(
                "{what} names the descriptor itself: refusing a self-referencing image"
            )));
        }
        Ok(canonical)
    }
}

/// Open the file of a SPARSE or VMFSSPARSE extent; None when its grain directory would be larger than
/// `directory_budget` bytes (told from the header, before the directory is read).
fn open_sparse_extent(file: ImageFile, what: &str, directory_budget: u64) -> Result<Option<SparseExtent>> {
    let mut head = [0u8; 512];
    file.read_zero_padded(&mut head, 0, "sparse extent header")?;
    if file.len() < 512 {
        return Err(file.corrupt(0, format!("{what}: sparse extent header is truncated")));
    }
    if head.starts_with(COWD_MAGIC) {
        return SparseExtent::open_cowd(file, CowdHeader::parse(&head)).map(Some);
    }
    if !head.starts_with(KDMV_MAGIC) {
        return Err(file.invalid(0, format!("{what}: not a sparse extent (no KDMV or COWD magic)")));
    }
    let header = SparseHeader::parse(&head);
    if header.capacity == 0 && header.desc_offset != 0 {
        return Err(
            file.unsupported(format!("{what}: the extent is itself a descriptor; nested descriptors are refused"))
        );
    }
    let coverage = u64::from(header.gtes_per_gt).saturating_mul(header.grain_sectors);
    if coverage > 0 && header.capacity.div_ceil(coverage).saturating_mul(4) > directory_budget {
        return Ok(None);
    }
    SparseExtent::open_kdmv(file, header).map(Some)
}

fn details_for(create_type: &str, d: Option<&Descriptor>, parts: &[Part]) -> ImageDetails {
    let sparse: Vec<&SparseExtent> = parts
        .iter()
        .filter_map(|p| match &p.body {
            Body::Sparse(s) => Some(s.as_ref()),
            _ => None,
        })
        .collect();
    // qemu reports a cluster size only when every (non-ZERO) extent is sparse with the same grain size and
    // compression; flat extents have none.
    let uniform = parts.iter().all(|p| !matches!(p.body, Body::Flat(_)))
        && sparse.windows(2).all(|w| w[0].grain_bytes == w[1].grain_bytes && w[0].compressed == w[1].compressed);
    let cluster_size = sparse.first().filter(|_| uniform).map(|s| s.grain_bytes);
    let extents = match d {
        Some(d) if !d.extents.is_empty() => d.extents.iter().map(VmdkExtentInfo::from_line).collect(),
        _ => parts
            .iter()
            .filter_map(|p| match &p.body {
                Body::Sparse(s) => Some(VmdkExtentInfo {
                    access: "RW".into(),
                    sectors: s.size / SECTOR,
                    extent_type: "SPARSE".into(),
                    file: s.file.path().file_name().map(|n| n.to_string_lossy().into_owned()),
                    offset: None,
                }),
                _ => None,
            })
            .collect(),
    };
    let info = VmdkInfo {
        create_type: create_type.to_string(),
        cid: d.and_then(|d| d.cid),
        parent_cid: d.and_then(|d| d.parent_cid),
        adapter_type: d.and_then(|d| d.ddb("adapterType")).map(str::to_string),
        hw_version: d.and_then(|d| d.ddb("virtualHWVersion")).map(str::to_string),
        compressed: sparse.iter().any(|s| s.compressed),
        grain_size: sparse.first().map(|s| s.grain_bytes),
        extents,
    };
    let mut details = ImageDetails::new(Format::Vmdk);
    details.subformat = Some(create_type.to_string());
    details.cluster_size = cluster_size;
    details.specific = Some(crate::FormatInfo::Vmdk(info));
    details
}

impl VmdkImage {
    /// An image made of one sparse extent (monolithicSparse, streamOptimized, a lone extent file).
    fn single(sparse: SparseExtent, create_type: String, desc: Option<Descriptor>) -> VmdkImage {
        let size = sparse.size;
        let parts = vec![Part { start: 0, len: size, body: Body::Sparse(Box::new(sparse)), line: None }];
        let details = details_for(&create_type, desc.as_ref(), &parts);
        VmdkImage { parts, size, details, open_report: CheckReport::default() }
    }

    /// Index of the part holding virtual offset `offset` (< size).
    fn part_index(&self, offset: u64) -> usize {
        self.parts.partition_point(|p| p.start + p.len <= offset)
    }

    /// Call `f(part, offset_in_part, range_in_request)` for each part overlapping `[offset, offset + len)`.
    fn for_each_part(
        &self,
        offset: u64,
        len: u64,
        mut f: impl FnMut(&Part, u64, std::ops::Range<usize>) -> Result<()>,
    ) -> Result<()> {
        let end = offset + len;
        let mut pos = offset;
        let mut i = self.part_index(offset);
        while pos < end {
            let Some(part) = self.parts.get(i) else {
                return Err(Error::invalid_argument(format!("offset {pos} is beyond the last extent")));
            };
            let n = (part.start + part.len).min(end) - pos;
            let at = (pos - offset) as usize;
            f(part, pos - part.start, at..at + n as usize)?;
            pos += n;
            i += 1;
        }
        Ok(())
    }
}

impl FlatExtent {
    fn check_in_file(&self, offset: u64, len: u64) -> Result<()> {
        let end = self.offset + offset + len;
        if end > self.file_len {
            return Err(Error::corrupt(format!(
                "flat extent file is shorter ({} bytes) than the descriptor says (at least {end} bytes)",
                self.file_len
            ))
            .in_file(&self.path)
            .at(self.file_len));
        }
        Ok(())
    }
}

impl DiskImage for VmdkImage {
    fn extra_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = Vec::new();
        for p in &self.parts {
            let path = match &p.body {
                Body::Flat(f) => f.path.clone(),
                Body::Sparse(s) if p.line.is_some() => s.file.path().to_path_buf(),
                _ => continue,
            };
            // twoGbMaxExtent images list many extents, some in one file; count each file once.
            if !files.contains(&path) {
                files.push(path);
            }
        }
        files
    }

    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn map_granularity(&self) -> u64 {
        // A grain of the sparse extents; flat extents start at any sector of their file.
        let unit = |p: &Part| match &p.body {
            Body::Sparse(s) => s.grain_bytes,
            Body::Flat(_) => SECTOR,
            Body::Zero => u64::MAX,
        };
        // A disk of ZERO extents only maps to one extent per part: any window will do.
        self.parts.iter().map(unit).min().filter(|&g| g != u64::MAX).unwrap_or(1 << 30)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_bounds(self.size, offset, buf.len())?;
        self.for_each_part(offset, buf.len() as u64, |part, rel, range| {
            let out = &mut buf[range];
            match &part.body {
                Body::Zero => {
                    out.fill(0);
                    Ok(())
                }
                Body::Flat(f) => {
                    f.check_in_file(rel, out.len() as u64)?;
                    f.raw.read_at(out, f.offset + rel)
                }
                Body::Sparse(s) => s.read(out, rel),
            }
        })
    }

    fn map(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
        let end = offset.saturating_add(length).min(self.size);
        let mut list = ExtentList::new();
        if offset >= end {
            return Ok(list.into_vec());
        }
        self.for_each_part(offset, end - offset, |part, rel, range| {
            let n = range.len() as u64;
            let base = part.start;
            match &part.body {
                Body::Zero => list.push(Extent::zero(base + rel, n)),
                Body::Sparse(s) => s.map(rel, n, base, &mut list)?,
                Body::Flat(f) => {
                    let (s, e) = (f.offset + rel, f.offset + rel + n);
                    let avail = e.min(f.file_len);
                    if s < avail {
                        for x in f.raw.map(s, avail - s)? {
                            // Host offsets are in another file than the one opened: not reported.
                            list.push(Extent { offset: x.offset - f.offset + base, ..x.without_host_offset() });
                        }
                    }
                    // Past the end of the file: data the descriptor promises; reading it reports the damage.
                    let from = avail.max(s);
                    if from < e {
                        list.push(Extent::data(from - f.offset + base, e - from, None));
                    }
                }
            }
            Ok(())
        })?;
        Ok(list.into_vec())
    }

    fn details(&self) -> ImageDetails {
        self.details.clone()
    }

    fn check(&self) -> Result<CheckReport> {
        check::check(self)
    }
}

#[cfg(test)]
mod tests;
