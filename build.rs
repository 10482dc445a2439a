//! Sets `IMGPORT_VERSION` for `imgport --version`: the package version, followed by the git revision
//! (`0.1.0 (abc123def456)`, `-dirty` when the work tree has changes) when built from a checkout of this
//! repository. Outside a checkout, or without git, it is the package version alone: the build never fails for it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let version = env_or_empty("CARGO_PKG_VERSION");
    let manifest_dir = PathBuf::from(env_or_empty("CARGO_MANIFEST_DIR"));
    let long = match git_revision(&manifest_dir) {
        Some(rev) => format!("{version} ({rev})"),
        None => version,
    };
    println!("cargo:rustc-env=IMGPORT_VERSION={long}");
    println!("cargo:rerun-if-changed=build.rs");
}

fn env_or_empty(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// Runs git in `dir` and returns its trimmed standard output, or None if git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn git_revision(manifest_dir: &Path) -> Option<String> {
    // Only this repository's own checkout counts: a packaged source unpacked inside some other repository
    // (a vendor folder, a home directory under git) must not borrow that repository's revision.
    let top = git(manifest_dir, &["rev-parse", "--show-toplevel"])?;
    if !same_dir(Path::new(&top), manifest_dir) {
        return None;
    }
    watch_git_state(manifest_dir);
    let rev = git(manifest_dir, &["rev-parse", "--short=12", "HEAD"])?;
    let dirty = git(manifest_dir, &["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{rev}-dirty") } else { rev })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Rebuilds the stamp when HEAD moves (a commit, a checkout) or the index changes. In a worktree `.git` is a
/// file and HEAD lives in the worktree's own git folder while branch refs live in the common one, so both are
/// asked of git rather than assumed.
fn watch_git_state(manifest_dir: &Path) {
    let resolve = |p: String| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            manifest_dir.join(p)
        }
    };
    let Some(git_dir) = git(manifest_dir, &["rev-parse", "--git-dir"]).map(resolve) else { return };
    let common_dir = git(manifest_dir, &["rev-parse", "--git-common-dir"]).map(resolve).unwrap_or(git_dir.clone());
    let mut watched = vec![git_dir.join("HEAD"), git_dir.join("index"), common_dir.join("packed-refs")];
    if let Some(head_ref) = git(manifest_dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common_dir.join(head_ref));
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
