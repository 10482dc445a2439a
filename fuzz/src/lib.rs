//! Shared harness for the fuzz targets: put the input in an in-memory file and run everything a command
//! would do with it. Errors are expected; panics, hangs and huge allocations are the bugs being hunted.

use imgport_disk::{open, Control, Format, OpenOptions};
use std::path::PathBuf;

/// The input as a file: one per fuzzing process, rewritten for each input, on tmpfs where there is one. (A memfd
/// reached through /proc/self/fd cannot be used: opening an image canonicalizes its path, for loop detection and
/// extent confinement, and a memfd's link names no real path, so every input would fail to open.)
struct InputFile {
    path: PathBuf,
}

impl InputFile {
    fn new(data: &[u8]) -> Option<InputFile> {
        let dir =
            if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let path = dir.join(format!("imgport-fuzz-{}", std::process::id()));
        std::fs::write(&path, data).ok()?;
        Some(InputFile { path })
    }
    fn path(&self) -> PathBuf {
        self.path.clone()
    }
}

/// Open `data` as `format` (or probed) and exercise map, reads, check and digest within small budgets.
pub fn exercise(data: &[u8], format: Option<Format>) {
    let Some(mem) = InputFile::new(data) else { return };
    let options = OpenOptions { format, ..OpenOptions::default() };
    let Ok(img) = open(&mem.path(), &options) else { return };
    let _ = img.details();
    let _ = img.check();
    let size = img.virtual_size();
    let Ok(map) = img.map(0, size) else { return };
    let mut budget: u64 = 4 << 20;
    let mut buf = vec![0u8; 64 << 10];
    for e in map.iter().filter(|e| !e.kind().reads_as_zero()) {
        let n = (e.length.min(buf.len() as u64)).min(budget);
        if n == 0 {
            break;
        }
        let _ = img.read_at(&mut buf[..n as usize], e.offset);
        budget -= n;
    }
    if size <= 64 << 20 {
        let _ = imgport_disk::digest(img.as_ref(), &Control::new());
    }
}

pub mod guest;
