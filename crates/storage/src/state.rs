//! Resume state: one JSON file per (source, endpoint, bucket, key), replaced atomically after every part, and
//! a lock file beside it held by the process uploading (one upload of a source to a destination at a time).
//!
//! The state names the bucket, key and upload id (enough to add parts to someone else's upload with the right
//! credentials): folders are created 0700 and files 0600, and a folder others can read is tightened on use.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const VERSION: u32 = 1;

/// What identifies the source file's content without reading all of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceId {
    pub path: String,
    pub size: u64,
    pub mtime_ns: i128,
    pub inode: u64,
    /// CRC-64 of up to 64 KiB at the start, middle and end: catches rewrites that keep size and mtime.
    pub sample_crc64: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub size: u64,
    pub crc64: u64,
    /// Empty where it was not computed (OSS, and S3 parts whose flexible checksum the store confirmed).
    pub md5_hex: String,
    pub etag: String,
    /// The part's flexible checksum, in the upload's algorithm ([`UploadState::checksum`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    pub version: u32,
    pub source: SourceId,
    pub endpoint: String,
    pub bucket: String,
    pub key: String,
    pub url: String,
    pub upload_id: String,
    pub part_size: u64,
    pub created: i64,
    pub parts: BTreeMap<u32, PartRecord>,
    /// For a streamed source: what turned the source into the stream (output format and options). A file
    /// upload and streams made with other parameters never resume each other's uploads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// The flexible checksum the upload announced (S3); none: Content-MD5 (S3) or CRC-64 (OSS), as before
    /// there was a choice, so older states load as what they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<crate::checksum::Algorithm>,
}

impl UploadState {
    /// How the upload's parts are checked, as `uploads list` shows it: `crc64nvme`, `crc32c`, `md5` or `crc64`.
    pub fn checksum_kind(&self) -> &'static str {
        crate::checksum::kind(self.checksum, self.url.starts_with("s3://"))
    }
}

/// `$XDG_STATE_HOME/imgport/uploads`, else `~/.local/state/imgport/uploads`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("imgport/uploads"));
    }
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".local/state/imgport/uploads"))
}

/// The file name for an upload: a hash of what identifies it (the path, not the content, so a changed source
/// finds its old state and can abort the stale upload).
pub fn file_for(dir: &Path, source_path: &str, endpoint: &str, bucket: &str, key: &str) -> PathBuf {
    let id = format!("{source_path}\n{endpoint}\n{bucket}\n{key}");
    dir.join(format!("{:016x}.json", crate::crc64::checksum(id.as_bytes())))
}

pub fn load(path: &Path) -> Option<UploadState> {
    let data = std::fs::read(path).ok()?;
    serde_json::from_slice::<UploadState>(&data).ok().filter(|s| s.version == VERSION)
}

/// Creates `dir` and its missing parents 0700; an existing `dir` that others can enter is tightened to 0700.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let meta = std::fs::metadata(dir)?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// Opens `path` for writing, created 0600 (and made 0600 if it exists with more).
fn private_file(path: &Path, truncate: bool) -> io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true).create(true).truncate(truncate);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        o.mode(0o600);
        let f = o.open(path)?;
        if f.metadata()?.permissions().mode() & 0o077 != 0 {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(f)
    }
    #[cfg(not(unix))]
    o.open(path)
}

/// Writes to a temporary file (0600), syncs, renames over the old state.
pub fn save(path: &Path, state: &UploadState) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let data = serde_json::to_vec(state).map_err(io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = private_file(&tmp, true)?;
        f.write_all(&data)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)
}

/// The lock on one resume state, held for a whole run; the lock file holds the holder's process id. Dropping it
/// removes the lock file (while still locked, so no other process can take a lock on a file about to vanish).
#[derive(Debug)]
pub struct StateLock {
    file: std::fs::File,
    path: PathBuf,
}

impl StateLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// Why a resume state could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it: its process id when it had written it.
    Busy {
        pid: Option<u32>,
        path: PathBuf,
    },
    Io(io::Error),
}

/// The lock file beside a state file.
pub fn lock_file_for(state_path: &Path) -> PathBuf {
    state_path.with_extension("lock")
}

/// Takes the advisory lock (`flock`) of the resume state `state_path` without waiting; tightens its folder.
pub fn lock(state_path: &Path) -> Result<StateLock, LockError> {
    if let Some(dir) = state_path.parent() {
        private_dir(dir).map_err(LockError::Io)?;
    }
    let path = lock_file_for(state_path);
    // A holder finishing removes its lock file: a lock taken on a file no longer at `path` is taken again.
    for _ in 0..16 {
        let mut file = private_file(&path, false).map_err(LockError::Io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Busy { pid: text.trim().parse().ok(), path });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
        }
        if !same_file(&file, &path) {
            continue;
        }
        file.set_len(0).map_err(LockError::Io)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes()).map_err(LockError::Io)?;
        return Ok(StateLock { file, path });
    }
    Err(LockError::Io(io::Error::other(format!("{}: the lock file keeps being replaced", path.display()))))
}

fn same_file(file: &std::fs::File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// Every readable state file in `dir` with its path.
pub fn list(dir: &Path) -> Vec<(PathBuf, UploadState)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                if let Some(s) = load(&p) {
                    out.push((p, s));
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Identity of an open file.
pub fn source_id(path: &str, file: &mut std::fs::File) -> io::Result<SourceId> {
    let meta = file.metadata()?;
    let size = meta.len();
    #[cfg(unix)]
    let (mtime_ns, inode) = {
        use std::os::unix::fs::MetadataExt;
        (meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128, meta.ino())
    };
    #[cfg(not(unix))]
    let (mtime_ns, inode) = (
        meta.modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128),
        0,
    );
    const SAMPLE: u64 = 64 * 1024;
    let mut crc_input = Vec::new();
    for off in [0, size / 2, size.saturating_sub(SAMPLE)] {
        file.seek(SeekFrom::Start(off))?;
        let mut buf = Vec::new();
        Read::by_ref(file).take(SAMPLE).read_to_end(&mut buf)?;
        crc_input.extend_from_slice(&buf);
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(SourceId { path: path.to_string(), size, mtime_ns, inode, sample_crc64: crate::crc64::checksum(&crc_input) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state of an upload of `source` to oss://b/k at http://e holding `parts`.
    fn state_of(source: SourceId, parts: BTreeMap<u32, PartRecord>) -> UploadState {
        UploadState {
            version: VERSION,
            source,
            endpoint: "http://e".into(),
            bucket: "b".into(),
            key: "k".into(),
            url: "oss://b/k".into(),
            upload_id: "U".into(),
            part_size: 1 << 20,
            created: 0,
            parts,
            stream: None,
            checksum: None,
        }
    }

    #[test]
    fn save_load_and_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::write(&src, vec![5u8; 200_000]).expect("write");
        let mut f = std::fs::File::open(&src).expect("open");
        let id = source_id("src", &mut f).expect("id");
        let parts = BTreeMap::from([(
            1,
            PartRecord { size: 1, crc64: 2, md5_hex: "m".into(), etag: "e".into(), checksum: None },
        )]);
        let st = state_of(id.clone(), parts);
        let p = file_for(dir.path(), "src", "http://e", "b", "k");
        save(&p, &st).expect("save");
        assert_eq!(load(&p), Some(st));
        assert_eq!(list(dir.path()).len(), 1);
        // Same size, different middle: the sample differs.
        let mut data = vec![5u8; 200_000];
        data[100_000] = 6;
        std::fs::write(&src, data).expect("rewrite");
        let mut f = std::fs::File::open(&src).expect("open");
        assert_ne!(source_id("src", &mut f).expect("id").sample_crc64, id.sample_crc64);
    }

    /// A state written before there was a checksum choice loads as what it was: Content-MD5 on S3, CRC-64 on OSS.
    #[test]
    fn states_without_a_checksum_load_as_before() {
        let source = SourceId { path: "src".into(), size: 1, mtime_ns: 0, inode: 0, sample_crc64: 0 };
        let part = PartRecord { size: 1, crc64: 2, md5_hex: "m".into(), etag: "e".into(), checksum: None };
        let mut st = state_of(source, BTreeMap::from([(1, part)]));
        let old = serde_json::to_string(&st).expect("json");
        assert!(!old.contains("checksum"), "{old}");
        let back: UploadState = serde_json::from_str(&old).expect("load");
        assert_eq!((back.checksum_kind(), back.parts[&1].checksum), ("crc64", None));
        st.url = "s3://b/k".into();
        assert_eq!(st.checksum_kind(), "md5");
        st.checksum = Some(crate::checksum::Algorithm::Crc64nvme);
        st.parts.get_mut(&1).expect("part").checksum = Some(7);
        let new = serde_json::to_string(&st).expect("json");
        assert!(new.contains(r#""checksum":"crc64nvme""#) && new.contains(r#""checksum":7"#), "{new}");
        assert_eq!(serde_json::from_str::<UploadState>(&new).expect("load").checksum_kind(), "crc64nvme");
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn state_is_private_and_locked() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("imgport/uploads");
        let p = file_for(&dir, "src", "http://e", "b", "k");
        let held = lock(&p).expect("lock");
        assert_eq!((mode(&root.path().join("imgport")), mode(&dir), mode(held.path())), (0o700, 0o700, 0o600));
        match lock(&p) {
            Err(LockError::Busy { pid, path }) => {
                assert_eq!((pid, path.as_path()), (Some(std::process::id()), held.path()));
            }
            other => panic!("a second lock was not refused: {other:?}"),
        }
        let source = SourceId { path: "src".into(), size: 0, mtime_ns: 0, inode: 0, sample_crc64: 0 };
        let st = state_of(source, BTreeMap::new());
        save(&p, &st).expect("save");
        assert_eq!(mode(&p), 0o600);
        drop(held);
        assert!(!lock_file_for(&p).exists(), "the lock file outlived its lock");
        // A folder and a state file others can read are tightened when they are next used.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let again = lock(&p).expect("lock again");
        save(&p, &st).expect("save");
        assert_eq!((mode(&dir), mode(&p)), (0o700, 0o600));
        drop(again);
    }
}
