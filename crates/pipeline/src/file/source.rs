//! Resolving a pipeline's source to one image file: the path itself, the newest match of a glob, or the file of a
//! Packer manifest's last run.

use super::check::Source;
use super::manifest::Manifest;
use std::path::{Path, PathBuf};

/// The image a run takes, and the Packer build it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub path: PathBuf,
    pub build: Option<String>,
}

/// Finds the source's file; the error says what was looked for and where.
pub fn resolve(source: &Source) -> Result<Resolved, String> {
    match source {
        Source::Path(p) => {
            if !p.is_file() {
                return Err(format!("source {}: no such file", p.display()));
            }
            Ok(Resolved { path: p.clone(), build: None })
        }
        Source::Glob { dir, pattern } => {
            let entries = std::fs::read_dir(dir).map_err(|e| format!("source glob: {}: {e}", dir.display()))?;
            let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Ok(meta) = e.metadata() else { continue };
                if !meta.is_file() || !matches(pattern.as_bytes(), name.as_bytes()) {
                    continue;
                }
                let when = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                let path = e.path();
                // Newest first; for equal times the greater name.
                if best.as_ref().is_none_or(|(t, p)| (when, &path) > (*t, p)) {
                    best = Some((when, path));
                }
            }
            match best {
                Some((_, path)) => Ok(Resolved { path, build: None }),
                None => Err(format!("source glob: no file in {} matches {pattern}", dir.display())),
            }
        }
        Source::Packer { manifest, build } => packer(manifest, build.as_deref()),
    }
}

/// The file of the manifest's last run (`builds[]` whose `packer_run_uuid` is `last_run_uuid`), of build `build`
/// when given; relative file names are taken from the manifest's folder, as Packer writes them from its own.
fn packer(path: &Path, build: Option<&str>) -> Result<Resolved, String> {
    let m = Manifest::read(path)?.ok_or_else(|| format!("source packer_manifest {}: no such file", path.display()))?;
    let last: Vec<_> = m.builds.iter().filter(|b| b.packer_run_uuid == m.last_run_uuid).collect();
    if last.is_empty() {
        return Err(format!("{}: no build of the last run ({})", path.display(), m.last_run_uuid));
    }
    let chosen: Vec<_> = match build {
        Some(name) => last.iter().filter(|b| b.name == name).collect(),
        None => last.iter().collect(),
    };
    let names = || last.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ");
    let b = match chosen.as_slice() {
        [one] => one,
        [] => {
            return Err(format!(
                "{}: the last run has no build {:?} (it has {})",
                path.display(),
                build.unwrap_or(""),
                names()
            ))
        }
        _ => {
            return Err(format!("{}: the last run has several builds ({}): set source.build", path.display(), names()))
        }
    };
    let file = match b.files.as_slice() {
        [one] => &one.name,
        [] => return Err(format!("{}: build {} lists no files", path.display(), b.name)),
        many => {
            // A build with a disk and side files (checksums, logs): the one disk image among them.
            let disks: Vec<_> = many
                .iter()
                .filter(|f| [".qcow2", ".raw", ".img", ".vhd", ".vhdx", ".vmdk"].iter().any(|x| f.name.ends_with(x)))
                .collect();
            match disks.as_slice() {
                [one] => &one.name,
                _ => {
                    return Err(format!(
                        "{}: build {} lists {} files and not one disk image among them",
                        path.display(),
                        b.name,
                        many.len()
                    ))
                }
            }
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let full = dir.join(file);
    if !full.is_file() {
        return Err(format!("{}: build {}'s file {} does not exist", path.display(), b.name, full.display()));
    }
    Ok(Resolved { path: full, build: Some(b.name.clone()) })
}

/// Shell-style matching of one name: `*` any run, `?` one character.
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n, mut star, mut mark) = (0, 0, None, 0);
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = n;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            n = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn glob_matching() {
        assert!(matches(b"*.qcow2", b"debian-2026.qcow2"));
        assert!(matches(b"img-??.raw", b"img-01.raw"));
        assert!(!matches(b"img-??.raw", b"img-1.raw"));
        assert!(!matches(b"*.qcow2", b"debian.qcow2.part"));
        assert!(matches(b"*", b"x"));
    }
}
