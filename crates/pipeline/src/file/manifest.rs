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

    /// Appends `build` to the manifest at `path` (created when missing) and makes its run the last (see
    /// [`write_build`]); answers the number of builds it then holds.
    pub fn append(path: &Path, build: Build) -> Result<usize, String> {
        write_build(path, &build, |_| false, true)
    }
}

/// Writes `build` into the manifest at `path` (created when missing) while holding `<manifest>.lock` (created
/// exclusively: the lock Packer's manifest post-processor takes too), replacing the entry `same` picks or else
/// appending it, and with `last_run` setting `last_run_uuid` to its run. Fields imgport does not know are kept, the
/// file's permissions too; the new text goes to a temporary file, synced and renamed over the old one. Answers the
/// number of builds.
pub fn write_build(
    path: &Path,
    build: &Build,
    same: impl Fn(&serde_json::Value) -> bool,
    last_run: bool,
) -> Result<usize, String> {
    use serde_json::Value;
    let err = |why: String| format!("{}: {why}", path.display());
    let _lock = Lock::take(path, std::time::Duration::from_secs(30)).map_err(err)?;
    let mut doc = match std::fs::read(path) {
        Ok(d) => serde_json::from_slice::<Value>(&d).map_err(|e| err(format!("not a Packer manifest: {e}")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({"builds": [], "last_run_uuid": ""}),
        Err(e) => return Err(err(e.to_string())),
    };
    let top = doc.as_object_mut().ok_or_else(|| err("not a Packer manifest: not an object".into()))?;
    if last_run {
        top.insert("last_run_uuid".into(), build.packer_run_uuid.clone().into());
    }
    let entry = serde_json::to_value(build).map_err(|e| err(e.to_string()))?;
    let builds = top
        .entry("builds")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| err("not a Packer manifest: builds is not a list".into()))?;
    match builds.iter().position(same) {
        Some(i) => builds[i] = entry,
        None => builds.push(entry),
    }
    let count = builds.len();
    let data = serde_json::to_vec_pretty(&doc).map_err(|e| err(e.to_string()))?;
    write_atomic(path, &data).map_err(|e| err(e.to_string()))?;
    Ok(count)
}

/// `<manifest>.lock`, created exclusively; removed on drop.
struct Lock(std::path::PathBuf);

impl Lock {
    fn take(manifest: &Path, wait: std::time::Duration) -> Result<Lock, String> {
        let mut name = manifest.as_os_str().to_owned();
        name.push(".lock");
        let path = std::path::PathBuf::from(name);
        let start = std::time::Instant::now();
        loop {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => return Ok(Lock(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && start.elapsed() < wait => {
                    std::thread::sleep(std::time::Duration::from_millis(100))
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(format!(
                        "{} has existed for {} s: another writer holds it, or one crashed (then remove it)",
                        path.display(),
                        wait.as_secs()
                    ))
                }
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The artifact id of images per region: `region:image-id`, sorted, joined by `,`.
pub fn artifact_id(images: &BTreeMap<String, String>) -> String {
    let mut v: Vec<String> = images.iter().map(|(r, i)| format!("{r}:{i}")).collect();
    v.sort();
    v.join(",")
}

/// Writes through a temporary file in the same folder, synced, renamed into place; an existing file's permissions
/// are kept (the temporary file is created 0600).
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
