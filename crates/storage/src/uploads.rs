//! Bookkeeping of interrupted uploads (`uploads list|abort|gc`): what the store and the local resume state
//! know, aborting uploads, forgetting stale state. Each returns data; the caller prints it.

use crate::destination::Destination;
use crate::settings::{connect, StoreSettings};
use crate::state::{self, UploadState};
use crate::{Client, ObjectStore, StorageError};
use imgport_auth::Env;
use std::path::{Path, PathBuf};

/// An interrupted multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListedUpload {
    pub key: String,
    pub upload_id: String,
    /// ISO 8601.
    pub initiated: String,
    /// `store` when the store listed it, `local` when only the resume state knows it (a store that cannot list).
    pub source: &'static str,
    /// How its parts are checked (`crc64nvme`, `crc32c`, `md5`, `crc64`), where a local resume state names it.
    pub checksum: Option<&'static str>,
}

fn local_states(state_dir: Option<&Path>) -> Vec<(PathBuf, UploadState)> {
    state_dir.map(state::list).unwrap_or_default()
}

/// Whether the resume state `s` is of an upload to `client`'s endpoint and `dest`'s bucket.
fn same_bucket(s: &UploadState, client: &Client, dest: &Destination) -> bool {
    s.endpoint == client.config().endpoint.url() && s.bucket == dest.bucket
}

/// The interrupted uploads under `dest`'s key prefix: from the store where it can list them, else from the
/// resume states in `state_dir`.
pub async fn list(client: &Client, dest: &Destination, state_dir: Option<&Path>) -> Result<Vec<ListedUpload>, String> {
    let locals: Vec<UploadState> = local_states(state_dir)
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| same_bucket(s, client, dest) && s.key.starts_with(&dest.key))
        .collect();
    let checksum_of =
        |key: &str, id: &str| locals.iter().find(|s| s.key == key && s.upload_id == id).map(UploadState::checksum_kind);
    match client.list_multipart_uploads(&dest.key).await {
        Ok(ups) => Ok(ups
            .into_iter()
            .map(|u| ListedUpload {
                checksum: checksum_of(&u.key, &u.upload_id),
                key: u.key,
                upload_id: u.upload_id,
                initiated: u.initiated,
                source: "store",
            })
            .collect()),
        Err(StorageError::Unsupported(_)) => Ok(locals
            .iter()
            .map(|s| ListedUpload {
                key: s.key.clone(),
                upload_id: s.upload_id.clone(),
                initiated: imgport_auth::time::UtcTime::from_unix(s.created).iso8601(),
                source: "local",
                checksum: Some(s.checksum_kind()),
            })
            .collect()),
        Err(e) => Err(e.to_string()),
    }
}

/// One upload `abort` dealt with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Aborted {
    pub upload_id: String,
    /// The store did not know it any more (NoSuchUpload): nothing was left to abort.
    pub already_gone: bool,
}

/// `abort` stopped at `error`, after dealing with `done`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbortFailed {
    pub done: Vec<Aborted>,
    pub error: String,
}

impl From<String> for AbortFailed {
    fn from(error: String) -> Self {
        AbortFailed { done: Vec::new(), error }
    }
}

/// Aborts the interrupted uploads of `dest`'s object (all of them, or `upload_id`) and forgets their resume
/// state. `url` is the destination as the user wrote it, for messages. Refused while an upload of the object
/// is running (it holds its state's lock).
pub async fn abort(
    client: &Client,
    dest: &Destination,
    url: &str,
    upload_id: Option<&str>,
    state_dir: Option<&Path>,
) -> Result<Vec<Aborted>, AbortFailed> {
    let mut ids: Vec<String> = match upload_id {
        Some(id) => vec![id.to_string()],
        None => match client.list_multipart_uploads(&dest.key).await {
            Ok(ups) => ups.into_iter().filter(|u| u.key == dest.key).map(|u| u.upload_id).collect(),
            Err(StorageError::Unsupported(_)) => Vec::new(),
            Err(e) => return Err(e.to_string().into()),
        },
    };
    let locals: Vec<_> = local_states(state_dir)
        .into_iter()
        .filter(|(_, s)| same_bucket(s, client, dest) && s.key == dest.key)
        .filter(|(_, s)| upload_id.is_none_or(|id| id == s.upload_id))
        .collect();
    for (_, s) in &locals {
        if !ids.contains(&s.upload_id) {
            ids.push(s.upload_id.clone());
        }
    }
    // An upload still running holds its state's lock: aborting under it would fail that run late. The locks
    // taken here are held until the states are forgotten.
    let mut _held = Vec::new();
    for (p, _) in &locals {
        match state::lock(p) {
            Ok(lock) => _held.push(lock),
            Err(state::LockError::Busy { pid, .. }) => {
                let who = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
                return Err(format!(
                    "an upload to {url} is running{who}: stop it first (Ctrl-C leaves it resumable), then abort"
                )
                .into());
            }
            Err(state::LockError::Io(e)) => {
                return Err(format!("cannot lock the resume state {}: {e}", p.display()).into())
            }
        }
    }
    let mut done = Vec::new();
    for id in &ids {
        match client.abort_multipart(&dest.key, id).await {
            Ok(()) => done.push(Aborted { upload_id: id.clone(), already_gone: false }),
            Err(e) if e.code() == Some("NoSuchUpload") => {
                done.push(Aborted { upload_id: id.clone(), already_gone: true })
            }
            Err(e) => return Err(AbortFailed { done, error: format!("aborting {id}: {e}") }),
        }
    }
    for (p, _) in locals {
        state::remove(&p);
    }
    Ok(done)
}

/// What `gc` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// The URLs of the uploads whose resume state was forgotten.
    pub forgotten: Vec<String>,
    /// About the stores asked (plain http to another host).
    pub warnings: Vec<String>,
}

/// Forgets the resume states in `state_dir` whose upload the store no longer has. States whose store cannot be
/// reached or asked are kept.
pub async fn gc(state_dir: Option<&Path>, env: &Env) -> GcReport {
    let mut report = GcReport::default();
    for (p, s) in local_states(state_dir) {
        let Some((scheme, _)) = s.url.split_once("://") else { continue };
        let Ok(dest) = Destination::parse(&format!("{scheme}://{}/{}", s.bucket, s.key), false) else { continue };
        let settings = StoreSettings { endpoint: Some(s.endpoint.clone()), region: None, oss_v1: false };
        let Ok(connection) = connect(&dest, &settings, env) else { continue };
        report.warnings.extend(connection.warnings);
        if let Err(e) = connection.client.list_parts(&s.key, &s.upload_id).await {
            if e.code() == Some("NoSuchUpload") {
                state::remove(&p);
                report.forgotten.push(s.url.clone());
            }
        }
    }
    report
}
