//! The test peers (scripts/install-peers.sh installs them): qemu-img, the official Alibaba Cloud Python SDKs and
//! s3s-fs. Tests never skip: a missing peer fails the test with what to install.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Fail loudly when a test peer is missing: tests never skip silently.
pub fn require(tool: &str) {
    let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().map(|o| o.status.success());
    assert!(
        matches!(found, Ok(true)),
        "test peer '{tool}' is not installed: run scripts/test.sh (it installs the peers)"
    );
}

/// Run qemu-img and insist on success; returns stdout.
pub fn qemu_img(args: &[&str]) -> String {
    require("qemu-img");
    let out = Command::new("qemu-img").args(args).output().expect("cannot run qemu-img");
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run qemu-img and return its exit code and combined output.
pub fn qemu_img_status(args: &[&str]) -> (i32, String) {
    require("qemu-img");
    let out = Command::new("qemu-img").args(args).output().expect("cannot run qemu-img");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// `qemu-img compare` of two images with explicit formats, plus equal virtual sizes (qemu-img only warns
/// on a size mismatch, and its `-s` also fails on differing allocation); panics on any difference.
pub fn assert_qemu_identical(a: &Path, fmt_a: &str, b: &Path, fmt_b: &str) {
    let (size_a, size_b) = (qemu_info(a, fmt_a)["virtual-size"].clone(), qemu_info(b, fmt_b)["virtual-size"].clone());
    assert_eq!(size_a, size_b, "virtual sizes differ: {} ({fmt_a}) vs {} ({fmt_b})", a.display(), b.display());
    let (code, text) =
        qemu_img_status(&["compare", "-f", fmt_a, "-F", fmt_b, a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code, 0, "qemu-img compare {} ({fmt_a}) vs {} ({fmt_b}): {text}", a.display(), b.display());
}

/// `qemu-img info --output=json` parsed.
pub fn qemu_info(path: &Path, fmt: &str) -> serde_json::Value {
    let out = qemu_img(&["info", "--output=json", "-f", fmt, path.to_str().unwrap()]);
    serde_json::from_str(&out).expect("qemu-img info printed invalid JSON")
}

/// Convert `src` (raw) to a fixture with qemu-img: `qemu-img convert -f raw -O fmt -o opts src dst`.
pub fn qemu_convert(src: &Path, dst: &Path, fmt: &str, opts: &str, extra: &[&str]) {
    let mut args = vec!["convert", "-f", "raw", "-O", fmt];
    if !opts.is_empty() {
        args.push("-o");
        args.push(opts);
    }
    args.extend_from_slice(extra);
    args.push(src.to_str().unwrap());
    args.push(dst.to_str().unwrap());
    qemu_img(&args);
}

/// Whether python3 imports every module of `modules` (a comma-separated import list, e.g. "oss2, requests").
pub fn python_has(modules: &str) -> bool {
    Command::new("python3").args(["-c", &format!("import {modules}")]).output().is_ok_and(|o| o.status.success())
}

/// Fail unless python3 imports `modules` (see [`python_has`]).
pub fn require_python(modules: &str) {
    assert!(python_has(modules), "python3 with {modules} is missing: run scripts/install-peers.sh");
}

/// Where scripts/install-peers.sh puts the peers it builds: `$IMGPORT_PEERS_DIR`, else `~/.cache/imgport-peers`.
pub fn peers_dir() -> Option<PathBuf> {
    std::env::var_os("IMGPORT_PEERS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/imgport-peers")))
}

/// The s3s-fs binary in [`peers_dir`], when it is there.
pub fn s3s_fs() -> Option<PathBuf> {
    let bin = peers_dir()?.join("bin/s3s-fs");
    bin.exists().then_some(bin)
}
