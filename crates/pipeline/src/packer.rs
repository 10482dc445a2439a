//! Packer manifests (`packer-manifest.json`, written by Packer's `manifest` post-processor) as an import source,
//! and the import recorded back into them.
//!
//! Packer's `shell-local` post-processor passes no artifact paths to the command it runs, so imgport reads the
//! manifest that the `manifest` post-processor wrote just before it in the same sequence. The shape:
//! `{"builds": [{"name", "builder_type", "build_time", "files": [{"name", "size"}], "artifact_id",
//! "packer_run_uuid", "custom_data": {string: string}}], "last_run_uuid"}`; the manifest appends an entry per build
//! and run, so the current run's builds are those whose `packer_run_uuid` is the run's (`last_run_uuid`, or
//! `PACKER_RUN_UUID` inside Packer).
//!
//! Rules chosen here (docs in examples/packer/README.md):
//! - **Build**: the one named (`--build`, which defaults to `PACKER_BUILD_NAME` inside Packer), else the run's only
//!   build with files; several builds without a name is an error listing them.
//! - **Files**: Packer writes the paths its builder was given, relative to the folder Packer ran in (shell-local
//!   runs there too), not to the manifest's: a relative name is taken from the current folder, and only when no
//!   file is there, from the manifest's folder (a manifest kept beside its artifacts and read from elsewhere). A
//!   listed file found in neither is an error.
//! - **System disk**: the build must hold exactly one disk image: a file whose content is qcow2, VHD, VHDX or VMDK,
//!   or a raw disk (an MBR or GPT signature, or a `.raw`/`.img` name); the extent files a listed VMDK descriptor
//!   names belong to that descriptor. Other files (`.vmx`, `.ovf`, checksums) are skipped. No disk image, or
//!   several (imgport cannot tell which one boots), is an error naming them.
//! - **Record**: after the import, an entry is added for the build in the same run, as Packer's own manifest
//!   post-processor would write it after an import post-processor: `files` empty, `artifact_id` =
//!   `"region:image-id"` (copies joined by `,`, sorted), the imgport details in `custom_data` as strings (Packer
//!   parses `custom_data` as a map of strings: anything else breaks its next write). A rerun replaces its own
//!   entry. The file is replaced atomically (temporary file, rename) while imgport holds `<manifest>.lock`, created
//!   exclusively: the lock Packer's manifest post-processor takes too (1.6.6 included; it waits about half a
//!   second for it, imgport holds it for milliseconds).

use crate::import::ImportOutcome;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a manifest could not give an image, or take the import's record.
#[derive(Debug, thiserror::Error)]
pub enum PackerError {
    #[error("cannot read the Packer manifest {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a Packer manifest: {why}")]
    Invalid { path: PathBuf, why: String },
    #[error("the Packer manifest {path} lists no builds")]
    NoBuilds { path: PathBuf },
    #[error(
        "the Packer manifest {path} has no last_run_uuid: it does not say which run is the last (write it with \
         Packer's manifest post-processor)"
    )]
    NoLastRun { path: PathBuf },
    #[error(
        "the Packer manifest {path} has no build of run {run}{hint} (its runs: {runs}); put the manifest \
         post-processor before shell-local in the same post-processor sequence"
    )]
    NoBuildInRun { path: PathBuf, run: String, hint: &'static str, runs: String },
    #[error("the Packer manifest {path} has no build named {name:?} in run {run} (builds in that run: {available})")]
    NoSuchBuild { path: PathBuf, name: String, run: String, available: String },
    #[error(
        "the Packer manifest {path} holds several builds in run {run} ({names}): name one with --build (inside \
         Packer, PACKER_BUILD_NAME names it)"
    )]
    SeveralBuilds { path: PathBuf, run: String, names: String },
    #[error("build {build:?} in {path} lists {file:?}, which does not exist (looked at {tried})")]
    MissingFile { path: PathBuf, build: String, file: String, tried: String },
    #[error("cannot read {file} (build {build:?}): {why}")]
    Unreadable { file: PathBuf, build: String, why: String },
    #[error("build {build:?} in {path} lists no disk image (its files: {files})")]
    NoDiskImage { path: PathBuf, build: String, files: String },
    #[error(
        "build {build:?} in {path} lists several disk images ({images}): imgport cannot tell which one is the system \
         disk; import by path instead: imgport import SYSTEM-DISK --data-disk OTHER ..."
    )]
    SeveralDiskImages { path: PathBuf, build: String, images: String },
    #[error("cannot record the import in the Packer manifest {path}: {why}")]
    Write { path: PathBuf, why: String },
}

/// One `builds[]` entry, as far as imgport reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub name: String,
    pub builder_type: String,
    /// `files[].name`, in order (`files: null` reads as none).
    pub files: Vec<String>,
    pub packer_run_uuid: Option<String>,
    pub artifact_id: Option<String>,
    /// Entries imgport itself added (`custom_data.imgport_image_id`): records, not sources.
    pub imgport_record: bool,
}

/// A parsed manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    pub builds: Vec<Build>,
    pub last_run_uuid: Option<String>,
}

/// What the manifest gives to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub build: String,
    pub builder_type: String,
    pub run_uuid: String,
    /// The system disk, resolved (see the module docs).
    pub image: PathBuf,
    /// The build's other files, not disk images.
    pub skipped: Vec<PathBuf>,
}

/// Read and parse a manifest.
pub fn read(path: &Path) -> Result<Manifest, PackerError> {
    let text = std::fs::read(path).map_err(|source| PackerError::Read { path: path.to_path_buf(), source })?;
    parse(path, &text)
}

fn invalid(path: &Path, why: impl Into<String>) -> PackerError {
    PackerError::Invalid { path: path.to_path_buf(), why: why.into() }
}

/// Parse manifest bytes (`path` names it in errors).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Manifest, PackerError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| invalid(path, format!("not JSON ({e})")))?;
    let top = doc.as_object().ok_or_else(|| invalid(path, "not a JSON object"))?;
    let builds = match top.get("builds") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().enumerate().map(|(i, b)| build(path, i, b)).collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid(path, "\"builds\" is not a list")),
    };
    let last_run_uuid = match top.get("last_run_uuid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid(path, "\"last_run_uuid\" is not a string")),
    };
    Ok(Manifest { path: path.to_path_buf(), builds, last_run_uuid })
}

fn build(path: &Path, i: usize, v: &Value) -> Result<Build, PackerError> {
    let o = v.as_object().ok_or_else(|| invalid(path, format!("builds[{i}] is not an object")))?;
    let string = |key: &str| -> Result<Option<String>, PackerError> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(path, format!("builds[{i}].{key} is not a string"))),
        }
    };
    let name =
        string("name")?.filter(|s| !s.is_empty()).ok_or_else(|| invalid(path, format!("builds[{i}] has no name")))?;
    let files = match o.get("files") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(files)) => files
            .iter()
            .enumerate()
            .map(|(j, f)| match f.get("name") {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                _ => Err(invalid(path, format!("builds[{i}].files[{j}] has no name"))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid(path, format!("builds[{i}].files is not a list"))),
    };
    let imgport_record = o.get("custom_data").and_then(|c| c.get(RECORD_KEY)).is_some();
    Ok(Build {
        name,
        builder_type: string("builder_type")?.unwrap_or_default(),
        files,
        packer_run_uuid: string("packer_run_uuid")?,
        artifact_id: string("artifact_id")?,
        imgport_record,
    })
}

/// The `custom_data` key that marks imgport's own entries.
const RECORD_KEY: &str = "imgport_image_id";

impl Manifest {
    /// The run to read: `run` when given (`PACKER_RUN_UUID` inside Packer), else `last_run_uuid`.
    fn run(&self, run: Option<&str>) -> Result<String, PackerError> {
        if self.builds.is_empty() {
            return Err(PackerError::NoBuilds { path: self.path.clone() });
        }
        match run.filter(|r| !r.is_empty()) {
            Some(r) => Ok(r.to_string()),
            None => self.last_run_uuid.clone().ok_or_else(|| PackerError::NoLastRun { path: self.path.clone() }),
        }
    }

    /// The build to import from: see the module docs. `cwd` is the folder relative names are taken from first.
    pub fn source(&self, build: Option<&str>, run: Option<&str>, cwd: &Path) -> Result<Source, PackerError> {
        let from_env = run.is_some_and(|r| !r.is_empty());
        let run = self.run(run)?;
        let in_run: Vec<&Build> = self
            .builds
            .iter()
            .filter(|b| b.packer_run_uuid.as_deref() == Some(run.as_str()) && !b.imgport_record)
            .collect();
        if in_run.is_empty() {
            let mut runs: Vec<&str> = Vec::new();
            for r in self.builds.iter().filter_map(|b| b.packer_run_uuid.as_deref()) {
                if !runs.contains(&r) {
                    runs.push(r);
                }
            }
            return Err(PackerError::NoBuildInRun {
                path: self.path.clone(),
                run,
                hint: if from_env { " (PACKER_RUN_UUID)" } else { " (last_run_uuid)" },
                runs: if runs.is_empty() { "none".into() } else { runs.join(", ") },
            });
        }
        let names = |bs: &[&Build]| {
            let mut n: Vec<&str> = Vec::new();
            for b in bs {
                if !n.contains(&b.name.as_str()) {
                    n.push(&b.name);
                }
            }
            n.join(", ")
        };
        let chosen: Vec<&Build> = match build.filter(|b| !b.is_empty()) {
            Some(name) => {
                let named: Vec<&Build> = in_run.iter().copied().filter(|b| b.name == name).collect();
                if named.is_empty() {
                    return Err(PackerError::NoSuchBuild {
                        path: self.path.clone(),
                        name: name.to_string(),
                        run,
                        available: names(&in_run),
                    });
                }
                named
            }
            None => in_run.iter().copied().filter(|b| !b.files.is_empty()).collect(),
        };
        // The manifest post-processor run twice in one sequence writes the same build twice: the last one counts.
        let mut distinct: Vec<&str> = chosen.iter().map(|b| b.name.as_str()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let b = match (distinct.len(), chosen.last()) {
            (1, Some(b)) => *b,
            (0, _) | (_, None) => {
                return Err(PackerError::NoDiskImage {
                    path: self.path.clone(),
                    build: names(&in_run),
                    files: "none".into(),
                })
            }
            _ => return Err(PackerError::SeveralBuilds { path: self.path.clone(), run, names: distinct.join(", ") }),
        };
        let manifest_dir = self.path.parent().unwrap_or(Path::new(""));
        let mut files = Vec::new();
        for f in &b.files {
            files.push(resolve(f, cwd, manifest_dir).ok_or_else(|| PackerError::MissingFile {
                path: self.path.clone(),
                build: b.name.clone(),
                file: f.clone(),
                tried: tried(f, cwd, manifest_dir),
            })?);
        }
        let (images, skipped) = disk_images(&b.name, &files)?;
        match images.as_slice() {
            [one] => Ok(Source {
                build: b.name.clone(),
                builder_type: b.builder_type.clone(),
                run_uuid: run,
                image: one.clone(),
                skipped,
            }),
            [] => Err(PackerError::NoDiskImage {
                path: self.path.clone(),
                build: b.name.clone(),
                files: if b.files.is_empty() { "none".into() } else { b.files.join(", ") },
            }),
            several => Err(PackerError::SeveralDiskImages {
                path: self.path.clone(),
                build: b.name.clone(),
                images: several.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
            }),
        }
    }
}

/// A listed file: absolute as it is; relative from `cwd`, else from the manifest's folder.
fn resolve(name: &str, cwd: &Path, manifest_dir: &Path) -> Option<PathBuf> {
    let p = Path::new(name);
    if p.is_absolute() {
        return p.exists().then(|| p.to_path_buf());
    }
    [cwd.join(p), manifest_dir.join(p)].into_iter().find(|c| c.exists())
}

fn tried(name: &str, cwd: &Path, manifest_dir: &Path) -> String {
    let p = Path::new(name);
    if p.is_absolute() {
        return name.to_string();
    }
    format!("{} and {}", cwd.join(p).display(), manifest_dir.join(p).display())
}

/// Split the build's files into disk images and the rest (see the module docs).
fn disk_images(build: &str, files: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<PathBuf>), PackerError> {
    use imgport_disk::file::ImageFile;
    use imgport_disk::Format;
    let unreadable =
        |file: &Path, why: String| PackerError::Unreadable { file: file.to_path_buf(), build: build.into(), why };
    let mut disks: Vec<PathBuf> = Vec::new();
    let mut others = Vec::new();
    let mut extents: Vec<PathBuf> = Vec::new();
    for f in files {
        if f.is_dir() {
            others.push(f.clone());
            continue;
        }
        let file = ImageFile::open(f).map_err(|e| unreadable(f, e.to_string()))?;
        let format = imgport_disk::probe::detect(&file).map_err(|e| unreadable(f, e.to_string()))?;
        let disk = match format {
            Format::Raw => {
                let mut head = [0u8; 1024];
                file.read_zero_padded(&mut head, 0, "first sectors").map_err(|e| unreadable(f, e.to_string()))?;
                let named = f
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e.eq_ignore_ascii_case("raw") || e.eq_ignore_ascii_case("img"));
                named || head[510..512] == [0x55, 0xaa] || &head[512..520] == b"EFI PART"
            }
            Format::Vmdk => {
                // A text descriptor: its extents are part of it, not disks of their own.
                if file.len() < 64 * 1024 {
                    let mut text = vec![0u8; file.len() as usize];
                    file.read_exact_at(&mut text, 0, "descriptor").map_err(|e| unreadable(f, e.to_string()))?;
                    if let Ok(d) = imgport_disk::vmdk::Descriptor::parse(&text) {
                        let dir = f.parent().unwrap_or(Path::new(""));
                        extents.extend(d.extents.iter().filter_map(|e| e.file.as_ref()).map(|n| dir.join(n)));
                    }
                }
                true
            }
            Format::Qcow2 | Format::Vhd | Format::Vhdx => true,
        };
        if disk {
            disks.push(f.clone());
        } else {
            others.push(f.clone());
        }
    }
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    let (parts, disks): (Vec<PathBuf>, Vec<PathBuf>) =
        disks.into_iter().partition(|d| extents.iter().any(|e| same(d, e)));
    others.extend(parts);
    Ok((disks, others))
}

/// `"region:image-id"` for the image and each copy that succeeded, sorted and joined by `,` (the shape the
/// alicloud and amazon Packer plugins write).
pub fn artifact_id(o: &ImportOutcome) -> String {
    let mut images = BTreeMap::from([(o.region.clone(), o.image_id.clone())]);
    images.extend(o.copies.iter().filter(|c| c.error.is_none()).map(|c| (c.region.clone(), c.image_id.clone())));
    crate::file::manifest::artifact_id(&images)
}

/// The `custom_data` of the record: strings only (Packer reads it as a map of strings).
fn custom_data(source: &Source, o: &ImportOutcome) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(RECORD_KEY.to_string(), o.image_id.clone());
    m.insert("imgport_region".into(), o.region.clone());
    m.insert("imgport_name".into(), o.name.clone());
    m.insert("imgport_status".into(), o.status.clone());
    m.insert("imgport_reused".into(), o.reused.to_string());
    m.insert("imgport_digest".into(), o.digest.clone());
    m.insert("imgport_source".into(), source.image.display().to_string());
    m.insert("imgport_object".into(), format!("oss://{}/{}", o.bucket, o.key));
    let copies: Vec<String> = o
        .copies
        .iter()
        .map(|c| match &c.error {
            None => format!("{}:{}", c.region, c.image_id),
            Some(_) => format!("{}:failed", c.region),
        })
        .collect();
    if !copies.is_empty() {
        m.insert("imgport_copies".into(), copies.join(","));
    }
    if !o.shared_with.is_empty() {
        m.insert("imgport_shared_with".into(), o.shared_with.join(","));
    }
    m
}

/// Add the import's record to the manifest (see the module docs); `build_time` in Unix seconds. Written by the
/// pipeline manifests' one writer ([`crate::file::manifest::write_build`]), under Packer's lock.
pub fn record(path: &Path, source: &Source, o: &ImportOutcome, build_time: u64) -> Result<(), PackerError> {
    let build = crate::file::manifest::Build {
        name: source.build.clone(),
        builder_type: source.builder_type.clone(),
        build_time: i64::try_from(build_time).unwrap_or(i64::MAX),
        files: Vec::new(),
        artifact_id: artifact_id(o),
        packer_run_uuid: source.run_uuid.clone(),
        custom_data: Some(custom_data(source, o)),
    };
    let ours = |b: &Value| {
        b.get("name").and_then(Value::as_str) == Some(source.build.as_str())
            && b.get("packer_run_uuid").and_then(Value::as_str) == Some(source.run_uuid.as_str())
            && b.get("custom_data").and_then(|c| c.get(RECORD_KEY)).is_some()
    };
    if !path.is_file() {
        return Err(PackerError::Write { path: path.to_path_buf(), why: "no such file".into() });
    }
    crate::file::manifest::write_build(path, &build, ours, false).map(|_| ()).map_err(|why| {
        // The message names the path already.
        let why = why.strip_prefix(&format!("{}: ", path.display())).map_or(why.clone(), str::to_string);
        PackerError::Write { path: path.to_path_buf(), why }
    })
}
