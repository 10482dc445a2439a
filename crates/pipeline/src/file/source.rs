//! Resolving a pipeline's source to one image file: the path itself, the newest match of a glob, or the file of a
//! Packer manifest's last run.

use super::check::Source;
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

/// The disk image of the manifest's last run, of build `build` when given, chosen by the same rules as
/// `imgport import --packer-manifest` ([`crate::packer`]); relative file names are looked for from the current
/// folder, then from the manifest's.
fn packer(path: &Path, build: Option<&str>) -> Result<Resolved, String> {
    let manifest = crate::packer::read(path).map_err(|e| format!("source packer_manifest: {e}"))?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let source = manifest.source(build, None, &cwd).map_err(|e| format!("source packer_manifest: {e}"))?;
    Ok(Resolved { path: source.image, build: Some(source.build) })
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
