//! Identifiers, randomness, and files only their owner can read.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes from the kernel's generator; falls back to a clock-seeded mix where /dev/urandom cannot be read
/// (identifiers stay unique within a run either way).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut out)).is_ok() {
        return out;
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
        ^ COUNTER.fetch_add(0x9E37_79B9, Ordering::Relaxed);
    for chunk in out.chunks_mut(8) {
        let v = splitmix64(&mut state).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    out
}

/// SplitMix64: a small, well-distributed generator for seeded, reproducible decisions.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A random string over `[A-Za-z0-9]`.
pub fn random_alnum(n: usize) -> String {
    random_bytes(n).iter().map(|b| ALNUM[*b as usize % ALNUM.len()] as char).collect()
}

/// Uppercase hex of random bytes.
pub fn random_hex(bytes: usize) -> String {
    imgport_wire::hex_upper(&random_bytes(bytes))
}

/// A request id in the form OSS uses (24 uppercase hex digits).
pub fn oss_request_id() -> String {
    random_hex(12)
}

/// A request id in the form the RPC gateway uses (an uppercase UUID).
pub fn rpc_request_id() -> String {
    let h = random_hex(16);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Creates `path` and any missing parents as folders only the owner can enter (0700, set at creation).
pub fn create_private_dir_all(path: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(path)
}

fn private_options() -> std::fs::OpenOptions {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts
}

/// Creates (or truncates) a file only the owner can read (0600; an existing file is narrowed to that too).
pub fn create_private_file(path: &Path) -> io::Result<std::fs::File> {
    let f = private_options().open(path)?;
    narrow(&f)?;
    Ok(f)
}

/// [`create_private_file`] for async code.
pub async fn create_private_file_async(path: &Path) -> io::Result<tokio::fs::File> {
    let path = path.to_path_buf();
    let f = tokio::task::spawn_blocking(move || create_private_file(&path)).await.map_err(io::Error::other)??;
    Ok(tokio::fs::File::from_std(f))
}

/// Writes `data` to a file only the owner can read.
pub fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    create_private_file(path)?.write_all(data)
}

#[cfg(unix)]
fn narrow(f: &std::fs::File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = f.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn narrow(_: &std::fs::File) -> io::Result<()> {
    Ok(())
}

/// Takes group and other permissions away from `root` and everything under it (left by older versions or a
/// permissive umask). Symbolic links are neither followed nor changed.
pub fn tighten_tree(root: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut pending = vec![root.to_path_buf()];
        while let Some(p) = pending.pop() {
            let meta = std::fs::symlink_metadata(&p)?;
            if meta.file_type().is_symlink() {
                continue;
            }
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o700))?;
            }
            if meta.is_dir() {
                for e in std::fs::read_dir(&p)? {
                    pending.push(e?.path());
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = root;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(oss_request_id().len(), 24);
        let r = rpc_request_id();
        assert_eq!(r.len(), 36);
        assert_eq!(r.matches('-').count(), 4);
        assert!(random_alnum(20).bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(random_hex(8), random_hex(8));
    }
}
