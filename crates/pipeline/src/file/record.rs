//! Run records: what a pipeline's last run did, so that a finished run with unchanged content reruns as a no-op
//! and a failed one reruns (the import resumes its upload and reuses what exists, so rerunning is the resume).
//! Kept behind [`RunStore`] so that a store in the bucket can stand beside the local one ([`LocalRuns`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Failed,
    Finished,
}

/// One step of a run: the import's steps, then `retain` and `manifest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: String,
    pub seconds: f64,
    pub detail: String,
}

/// A pipeline's last run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub pipeline: String,
    /// SHA-256 of the pipeline file's text the run used.
    pub file_hash: String,
    pub run_uuid: String,
    pub status: RunStatus,
    pub source: String,
    /// The source's content digest.
    pub digest: String,
    pub image_name: String,
    /// Unix seconds.
    pub started: i64,
    pub ended: Option<i64>,
    pub steps: Vec<StepRecord>,
    /// Image ids per region.
    pub images: BTreeMap<String, String>,
    pub error: Option<String>,
    pub exit_code: Option<u8>,
    /// The build command's run (`source.command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<super::build::BuildRecord>,
}

impl RunRecord {
    /// The run is done for this content and this file: a rerun has nothing to do.
    pub fn done_for(&self, digest: &str, file_hash: &str) -> bool {
        self.status == RunStatus::Finished && self.digest == digest && self.file_hash == file_hash
    }
}

/// Where run records live.
pub trait RunStore {
    fn load(&self, key: &str) -> Result<Option<RunRecord>, String>;
    fn save(&self, key: &str, record: &RunRecord) -> Result<(), String>;
    /// Where a key is kept, for messages.
    fn location(&self, key: &str) -> String;
}

/// The key of a pipeline's records: its name and a hash of the file's absolute path, cloud and region, so two
/// files of one name, or one file run against two clouds, keep separate records.
pub fn key(name: &str, file: &Path, cloud: &str, region: &str) -> String {
    use sha2::Digest as _;
    let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let mut h = sha2::Sha256::new();
    h.update(abs.to_string_lossy().as_bytes());
    h.update(b"\n");
    h.update(cloud.as_bytes());
    h.update(b"\n");
    h.update(region.as_bytes());
    let hex: String = h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{name}-{hex}")
}

/// A new run id in the UUID shape (random: the time, the process and `seed` hashed).
pub fn new_run_id(seed: &Path) -> String {
    use sha2::Digest as _;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut h = sha2::Sha256::new();
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(seed.to_string_lossy().as_bytes());
    let x: String = h.finalize().iter().take(16).map(|v| format!("{v:02x}")).collect();
    format!("{}-{}-4{}-a{}-{}", &x[..8], &x[8..12], &x[13..16], &x[17..20], &x[20..32])
}

/// Records as JSON files in a folder (`$XDG_STATE_HOME/imgport/pipelines` by default).
pub struct LocalRuns {
    pub dir: PathBuf,
}

impl LocalRuns {
    /// `$XDG_STATE_HOME/imgport/pipelines`, else `~/.local/state/imgport/pipelines`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(s) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(s).join("imgport/pipelines"));
        }
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".local/state/imgport/pipelines"))
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }
}

impl RunStore for LocalRuns {
    fn load(&self, key: &str) -> Result<Option<RunRecord>, String> {
        let path = self.path(key);
        match std::fs::read(&path) {
            Ok(d) => serde_json::from_slice(&d).map(Some).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    fn save(&self, key: &str, record: &RunRecord) -> Result<(), String> {
        let path = self.path(key);
        let data = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
        super::manifest::write_atomic(&path, &data).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn location(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }
}
