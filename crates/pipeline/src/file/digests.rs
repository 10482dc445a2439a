//! Content digests of pipeline sources, remembered by file identity, so that an up-to-date rerun of a pipeline
//! over a large image does not read it whole again: the digest is reused while the file's size, modification
//! time, inode and a CRC-64 of samples at its start, middle and end (the identity the upload's resume state
//! trusts, [`imgport_storage::state::SourceId`]) are unchanged.

use imgport_storage::state::{self, SourceId};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize)]
struct Entry {
    source: SourceId,
    digest: String,
}

/// Remembered digests, one small JSON file per source path in `dir`.
pub struct Digests {
    pub dir: PathBuf,
}

impl Digests {
    fn file(&self, path: &Path) -> PathBuf {
        use sha2::Digest as _;
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let h = sha2::Sha256::digest(abs.to_string_lossy().as_bytes());
        let hex: String = h.iter().take(12).map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.json"))
    }

    /// The digest of `path`: the remembered one when the file is the one it was computed for, else `compute`'s,
    /// remembered (a failure to remember only costs the next run a read). Answers whether it was remembered.
    pub fn get_or_compute<E>(
        &self,
        path: &Path,
        compute: impl FnOnce() -> Result<String, E>,
    ) -> Result<(String, bool), E> {
        let id = std::fs::File::open(path).and_then(|mut f| state::source_id(&path.to_string_lossy(), &mut f)).ok();
        let file = self.file(path);
        if let Some(id) = &id {
            let known = std::fs::read(&file).ok().and_then(|d| serde_json::from_slice::<Entry>(&d).ok());
            if let Some(e) = known.filter(|e| e.source == *id && e.digest.len() == 64) {
                return Ok((e.digest, true));
            }
        }
        let digest = compute()?;
        // Taken again after the read: a file that changed meanwhile is not remembered under either identity.
        let after = std::fs::File::open(path).and_then(|mut f| state::source_id(&path.to_string_lossy(), &mut f)).ok();
        if let (Some(before), Some(after)) = (id, after) {
            if before == after {
                let entry = Entry { source: after, digest: digest.clone() };
                if let (Ok(data), Ok(())) = (serde_json::to_vec(&entry), state::private_dir(&self.dir)) {
                    let _ = super::manifest::write_atomic(&file, &data);
                }
            }
        }
        Ok((digest, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_until_the_file_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Digests { dir: dir.path().join("digests") };
        let f = dir.path().join("disk.raw");
        std::fs::write(&f, vec![1u8; 300_000]).expect("write");
        let ok = |d: &str| Ok::<_, ()>(d.repeat(64));
        assert_eq!(cache.get_or_compute(&f, || ok("a")), Ok(("a".repeat(64), false)));
        assert_eq!(cache.get_or_compute(&f, || ok("b")), Ok(("a".repeat(64), true)));
        // Same size, a byte changed in a sampled place, the modification time put back: computed again.
        let mtime = std::fs::metadata(&f).and_then(|m| m.modified()).expect("mtime");
        let mut data = vec![1u8; 300_000];
        data[150_000] = 2;
        std::fs::write(&f, data).expect("write");
        std::fs::File::options().write(true).open(&f).and_then(|h| h.set_modified(mtime)).expect("mtime");
        assert_eq!(cache.get_or_compute(&f, || ok("c")), Ok(("c".repeat(64), false)));
        assert_eq!(cache.get_or_compute(&f, || Err::<String, _>("unreadable")), Ok(("c".repeat(64), true)));
    }
}
