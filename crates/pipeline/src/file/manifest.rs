//! Manifests in Packer's shape (`packer-manifest.json`): read as a pipeline source, and written by a pipeline run,
//! a build appended per run as Packer's `manifest` post-processor does, so tools that read Packer manifests read
//! ours. Packer's `custom_data` is a map of strings; imgport's details go in it as strings too (structured ones as
//! JSON text), so that a reader with Packer's own types parses it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(default)]
    pub builds: Vec<Build>,
    #[serde(default)]
    pub last_run_uuid: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Build {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub builder_type: String,
    /// Unix seconds.
    #[serde(default)]
    pub build_time: i64,
    #[serde(default)]
    pub files: Vec<BuildFile>,
    /// `region:image-id`, several joined by `,` (sorted).
    #[serde(default)]
    pub artifact_id: String,
    #[serde(default)]
    pub packer_run_uuid: String,
    #[serde(default)]
    pub custom_data: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildFile {
    pub name: String,
    #[serde(default)]
    pub size: u64,
}

impl Manifest {
    /// The manifest at `path`; `None` when there is no file.
    pub fn read(path: &Path) -> Result<Option<Manifest>, String> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        serde_json::from_slice(&data).map(Some).map_err(|e| format!("{}: not a Packer manifest: {e}", path.display()))
    }

    /// Appends `build` to the manifest at `path` (created when missing) and makes its run the last; written to a
    /// temporary file and renamed over the old one.
    pub fn append(path: &Path, build: Build) -> Result<Manifest, String> {
        let mut m = Manifest::read(path)?.unwrap_or_default();
        m.last_run_uuid = build.packer_run_uuid.clone();
        m.builds.push(build);
        let data = serde_json::to_vec_pretty(&m).map_err(|e| e.to_string())?;
        write_atomic(path, &data).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(m)
    }
}

/// The artifact id of images per region: `region:image-id`, sorted, joined by `,`.
pub fn artifact_id(images: &BTreeMap<String, String>) -> String {
    let mut v: Vec<String> = images.iter().map(|(r, i)| format!("{r}:{i}")).collect();
    v.sort();
    v.join(",")
}

/// Writes through a temporary file in the same folder, synced, renamed into place.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
