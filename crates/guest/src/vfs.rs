//! The guest's view of its files: filesystems mounted at their mount points, symlinks resolved the way the guest
//! kernel would (absolute targets from the guest root), with a cap on links followed and on path length.

use crate::fs::{components, DirEntry, FileType, FsError, FsResult, GuestFs, Metadata};

/// Symlinks followed while resolving one path (Linux's limit).
pub const MAX_SYMLINKS: usize = 40;
const MAX_PATH: usize = 4096;

struct Mount {
    /// "/" or "/boot" etc., without a trailing slash except for the root.
    point: String,
    fs: Box<dyn GuestFs>,
}

pub struct Vfs {
    /// Longest mount point first, so the first prefix match is the right one.
    mounts: Vec<Mount>,
}

fn join(parts: &[String]) -> String {
    if parts.is_empty() {
        "/".to_string()
    } else {
        format!("/{}", parts.join("/"))
    }
}

impl Vfs {
    pub fn new(root: Box<dyn GuestFs>) -> Self {
        Vfs { mounts: vec![Mount { point: "/".into(), fs: root }] }
    }

    /// Free bytes of the root filesystem from its allocation map, where it has no free counter (see
    /// [`GuestFs::free_bytes`]).
    pub fn root_free_bytes(&mut self) -> Option<FsResult<u64>> {
        self.mounts.iter_mut().find(|m| m.point == "/").and_then(|m| m.fs.free_bytes())
    }

    /// Mount `fs` at `point` (an absolute path); a later mount at the same point replaces nothing.
    pub fn mount(&mut self, point: &str, fs: Box<dyn GuestFs>) {
        let parts: Vec<String> = components(point).map(str::to_string).collect();
        let point = join(&parts);
        if self.mounts.iter().any(|m| m.point == point) {
            return;
        }
        self.mounts.push(Mount { point, fs });
        self.mounts.sort_by_key(|m| std::cmp::Reverse(m.point.len()));
    }

    pub fn mount_points(&self) -> Vec<String> {
        self.mounts.iter().map(|m| m.point.clone()).collect()
    }

    /// The filesystem holding a symlink-free absolute path, and the path inside it.
    fn locate(&mut self, path: &str) -> FsResult<(&mut dyn GuestFs, String)> {
        for m in self.mounts.iter_mut() {
            let rest = if m.point == "/" {
                Some(path)
            } else {
                path.strip_prefix(m.point.as_str()).filter(|r| r.is_empty() || r.starts_with('/'))
            };
            if let Some(rest) = rest {
                let inner = if rest.is_empty() { "/".to_string() } else { rest.to_string() };
                return Ok((m.fs.as_mut(), inner));
            }
        }
        Err(FsError::NotFound)
    }

    fn lstat_canonical(&mut self, path: &str) -> FsResult<Metadata> {
        let (fs, inner) = self.locate(path)?;
        fs.lstat(&inner)
    }

    /// Resolve every symlink in `path` (the final one too when `follow_final`), returning a symlink-free path.
    pub fn resolve(&mut self, path: &str, follow_final: bool) -> FsResult<String> {
        let mut pending: Vec<String> = components(path).rev().map(str::to_string).collect();
        let mut done: Vec<String> = Vec::new();
        let mut links = 0usize;
        while let Some(c) = pending.pop() {
            if c == ".." {
                done.pop();
                continue;
            }
            done.push(c);
            let here = join(&done);
            if here.len() > MAX_PATH {
                return Err(FsError::Corrupt(format!("path longer than {MAX_PATH} bytes while resolving {path}")));
            }
            let is_final = pending.is_empty();
            let meta = match self.lstat_canonical(&here) {
                Ok(m) => m,
                Err(FsError::NotFound) if is_final => return Ok(here),
                Err(e) => return Err(e),
            };
            match meta.file_type {
                FileType::Symlink if !is_final || follow_final => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(FsError::Corrupt(format!("more than {MAX_SYMLINKS} symlinks resolving {path}")));
                    }
                    let target = {
                        let (fs, inner) = self.locate(&here)?;
                        fs.read_link(&inner)?
                    };
                    done.pop();
                    if target.starts_with('/') {
                        done.clear();
                    }
                    pending.extend(components(&target).rev().map(str::to_string));
                    if pending.len() > MAX_PATH {
                        return Err(FsError::Corrupt(format!("symlink target too long resolving {path}")));
                    }
                }
                FileType::Dir | FileType::Symlink => {}
                _ if !is_final => return Err(FsError::NotADirectory),
                _ => {}
            }
        }
        Ok(join(&done))
    }

    /// Metadata of the file `path` names, following symlinks.
    pub fn stat(&mut self, path: &str) -> FsResult<Metadata> {
        let p = self.resolve(path, true)?;
        self.lstat_canonical(&p)
    }

    /// Metadata of `path` itself (a final symlink is not followed).
    pub fn lstat(&mut self, path: &str) -> FsResult<Metadata> {
        let p = self.resolve(path, false)?;
        self.lstat_canonical(&p)
    }

    pub fn read_link(&mut self, path: &str) -> FsResult<String> {
        let p = self.resolve(path, false)?;
        let (fs, inner) = self.locate(&p)?;
        fs.read_link(&inner)
    }

    pub fn read_dir(&mut self, path: &str) -> FsResult<Vec<DirEntry>> {
        let p = self.resolve(path, true)?;
        let (fs, inner) = self.locate(&p)?;
        fs.read_dir(&inner)
    }

    /// The first `max` bytes of the file `path` names (following symlinks).
    pub fn read_file(&mut self, path: &str, max: usize) -> FsResult<Vec<u8>> {
        let p = self.resolve(path, true)?;
        let (fs, inner) = self.locate(&p)?;
        fs.read_file(&inner, max)
    }

    /// A sequential reader of the file `path` names (following symlinks), for files too large to hold.
    pub fn open_reader(&mut self, path: &str) -> FsResult<Box<dyn std::io::Read + '_>> {
        let p = self.resolve(path, true)?;
        let (fs, inner) = self.locate(&p)?;
        fs.open_reader(&inner)
    }

    /// Up to `buf.len()` bytes of the file `path` names from `offset` (following symlinks); 0 at its end.
    pub fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        let p = self.resolve(path, true)?;
        let (fs, inner) = self.locate(&p)?;
        fs.read_at(&inner, offset, buf)
    }

    /// Inode flags (`FS_*_FL`) of the file `path` names, following symlinks; `None` where unknown.
    pub fn inode_flags(&mut self, path: &str) -> FsResult<Option<u32>> {
        let p = self.resolve(path, true)?;
        let (fs, inner) = self.locate(&p)?;
        fs.inode_flags(&inner)
    }

    /// A text file, lossily decoded, when it exists and is a regular file.
    pub fn read_text(&mut self, path: &str, max: usize) -> Option<String> {
        self.read_file(path, max).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    pub fn exists(&mut self, path: &str) -> bool {
        self.lstat(path).is_ok()
    }

    pub fn is_dir(&mut self, path: &str) -> bool {
        self.stat(path).is_ok_and(|m| m.file_type == FileType::Dir)
    }

    pub fn is_file(&mut self, path: &str) -> bool {
        self.stat(path).is_ok_and(|m| m.file_type == FileType::File)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::probe::FsKind;
    use std::collections::BTreeMap;

    /// An in-memory filesystem: path -> (type, contents or link target).
    pub struct MemFs(pub BTreeMap<String, (FileType, Vec<u8>)>);

    impl MemFs {
        pub fn new(entries: &[(&str, FileType, &[u8])]) -> Self {
            let mut m = BTreeMap::new();
            m.insert("/".to_string(), (FileType::Dir, Vec::new()));
            for (p, t, d) in entries {
                m.insert(p.to_string(), (*t, d.to_vec()));
            }
            MemFs(m)
        }
    }

    impl GuestFs for MemFs {
        fn kind(&self) -> FsKind {
            FsKind::Ext4
        }
        fn lstat(&mut self, path: &str) -> FsResult<Metadata> {
            let (t, d) = self.0.get(path).ok_or(FsError::NotFound)?;
            Ok(Metadata { file_type: *t, size: d.len() as u64, mode: 0 })
        }
        fn read_link(&mut self, path: &str) -> FsResult<String> {
            match self.0.get(path) {
                Some((FileType::Symlink, d)) => Ok(String::from_utf8_lossy(d).into_owned()),
                Some(_) => Err(FsError::NotAFile),
                None => Err(FsError::NotFound),
            }
        }
        fn read_dir(&mut self, path: &str) -> FsResult<Vec<DirEntry>> {
            let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
            Ok(self
                .0
                .iter()
                .filter_map(|(k, (t, _))| {
                    let rest = k.strip_prefix(&prefix)?;
                    (!rest.is_empty() && !rest.contains('/'))
                        .then(|| DirEntry { name: rest.to_string(), file_type: *t })
                })
                .collect())
        }
        fn read_file(&mut self, path: &str, max: usize) -> FsResult<Vec<u8>> {
            match self.0.get(path) {
                Some((FileType::File, d)) => Ok(d[..d.len().min(max)].to_vec()),
                Some(_) => Err(FsError::NotAFile),
                None => Err(FsError::NotFound),
            }
        }
    }

    #[test]
    fn follows_relative_absolute_and_usrmerge_links() {
        use FileType::*;
        let fs = MemFs::new(&[
            ("/usr", Dir, b""),
            ("/usr/bin", Dir, b""),
            ("/usr/bin/dash", File, b"ELF"),
            ("/usr/bin/sh", Symlink, b"dash"),
            ("/bin", Symlink, b"usr/bin"),
            ("/etc", Dir, b""),
            ("/etc/alt", Symlink, b"/bin/sh"),
            ("/loop", Symlink, b"/loop"),
        ]);
        let mut v = Vfs::new(Box::new(fs));
        assert_eq!(v.read_file("/bin/sh", 10).unwrap(), b"ELF");
        assert_eq!(v.resolve("/etc/alt", true).unwrap(), "/usr/bin/dash");
        assert_eq!(v.resolve("/etc/../bin/./sh", false).unwrap(), "/usr/bin/sh");
        assert!(matches!(v.stat("/loop"), Err(FsError::Corrupt(_))));
        assert!(v.lstat("/loop").is_ok());
        assert!(matches!(v.stat("/usr/bin/dash/x"), Err(FsError::NotADirectory)));
    }

    #[test]
    fn mounts_take_the_longest_prefix() {
        use FileType::*;
        let root = MemFs::new(&[("/boot", Dir, b""), ("/boot/x", File, b"root")]);
        let boot = MemFs::new(&[("/x", File, b"boot"), ("/vmlinuz", Symlink, b"/boot/x")]);
        let mut v = Vfs::new(Box::new(root));
        v.mount("/boot/", Box::new(boot));
        assert_eq!(v.read_file("/boot/x", 10).unwrap(), b"boot");
        assert_eq!(v.read_file("/boot/vmlinuz", 10).unwrap(), b"boot");
        assert_eq!(v.read_dir("/boot").unwrap().len(), 2);
    }
}
