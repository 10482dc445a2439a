//! Content digests of pipeline sources, remembered by file identity, so that an up-to-date rerun of a pipeline
//! over a large image does not read it whole again: the digest is reused while the size, modification time,
//! status change time, inode and a CRC-64 of samples at the start, middle and end (the identity the upload's resume
//! state trusts, [`imgport_storage::state::SourceId`], and the ctime) of the image file and of each of its other
//! files (VMDK extents, backing files) are unchanged.

use imgport_storage::state::{self, SourceId};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize)]
struct Entry {
    /// The image file's identity, then its other files' (VMDK extents, backing files).
    files: Vec<Identity>,
    digest: String,
}

/// A file's identity: [`SourceId`] and its status change time (which `touch -r` and `cp -p` do not put back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    source: SourceId,
    ctime_ns: i128,
}

fn identity(path: &Path) -> Option<Identity> {
    use std::os::unix::fs::MetadataExt;
    let mut f = std::fs::File::open(path).ok()?;
    let meta = f.metadata().ok()?;
    let source = state::source_id(&path.to_string_lossy(), &mut f).ok()?;
    Some(Identity { source, ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128 })
}

/// The identities of `path` and of `others` (the image's other files); `None` when one cannot be read.
fn identities(path: &Path, others: &[PathBuf]) -> Option<Vec<Identity>> {
    std::iter::once(path).chain(others.iter().map(PathBuf::as_path)).map(identity).collect()
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

    /// The digest of `path` (whose other files, extents or backing files, are `others`): the remembered one when
    /// every file is the one it was computed for, else `compute`'s, remembered (a failure to remember only costs
    /// the next run a read). Answers whether it was remembered.
    pub fn get_or_compute<E>(
        &self,
        path: &Path,
        others: &[PathBuf],
        compute: impl FnOnce() -> Result<String, E>,
    ) -> Result<(String, bool), E> {
        let before = identities(path, others);
        let file = self.file(path);
        if let Some(ids) = &before {
            let known = std::fs::read(&file).ok().and_then(|d| serde_json::from_slice::<Entry>(&d).ok());
            let hex = |d: &str| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit());
            if let Some(e) = known.filter(|e| e.files == *ids && hex(&e.digest)) {
                return Ok((e.digest, true));
            }
        }
        let digest = compute()?;
        // Taken again after the read: files that changed meanwhile are not remembered under either identity.
        if let (Some(before), Some(after)) = (before, identities(path, others)) {
            if before == after {
                let entry = Entry { files: after, digest: digest.clone() };
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
        assert_eq!(cache.get_or_compute(&f, &[], || ok("a")), Ok(("a".repeat(64), false)));
        assert_eq!(cache.get_or_compute(&f, &[], || ok("b")), Ok(("a".repeat(64), true)));
        // Same size, a byte changed in a sampled place, the modification time put back: computed again.
        let mtime = std::fs::metadata(&f).and_then(|m| m.modified()).expect("mtime");
        let mut data = vec![1u8; 300_000];
        data[150_000] = 2;
        std::fs::write(&f, data).expect("write");
        std::fs::File::options().write(true).open(&f).and_then(|h| h.set_modified(mtime)).expect("mtime");
        assert_eq!(cache.get_or_compute(&f, &[], || ok("c")), Ok(("c".repeat(64), false)));
        assert_eq!(cache.get_or_compute(&f, &[], || Err::<String, _>("unreadable")), Ok(("c".repeat(64), true)));
    }
}
