//! Shared harness for the fuzz targets: put the input in an in-memory file and run everything a command
//! would do with it. Errors are expected; panics, hangs and huge allocations are the bugs being hunted.

use imgport_disk::{open, Control, Format, OpenOptions};
use std::ffi::CString;
use std::path::PathBuf;

/// An anonymous in-memory file holding `data`, reachable by path through /proc/self/fd.
struct MemFile {
    fd: libc::c_int,
}

impl MemFile {
    fn new(data: &[u8]) -> Option<MemFile> {
        let name = CString::new("imgport-fuzz").ok()?;
        // SAFETY: plain syscalls on a descriptor we own; the buffer outlives the write.
        unsafe {
            let fd = libc::memfd_create(name.as_ptr(), 0);
            if fd < 0 {
                return None;
            }
            let mut written = 0;
            while written < data.len() {
                let n = libc::write(fd, data[written..].as_ptr().cast(), data.len() - written);
                if n <= 0 {
                    libc::close(fd);
                    return None;
                }
                written += n as usize;
            }
            Some(MemFile { fd })
        }
    }
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd))
    }
}

impl Drop for MemFile {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor we own.
        unsafe { libc::close(self.fd) };
    }
}

/// Open `data` as `format` (or probed) and exercise map, reads, check and digest within small budgets.
pub fn exercise(data: &[u8], format: Option<Format>) {
    let Some(mem) = MemFile::new(data) else { return };
    let options = OpenOptions { format, ..OpenOptions::default() };
    let Ok(img) = open(&mem.path(), &options) else { return };
    let _ = img.details();
    let _ = img.check();
    let size = img.virtual_size();
    let Ok(map) = img.map(0, size) else { return };
    let mut budget: u64 = 4 << 20;
    let mut buf = vec![0u8; 64 << 10];
    for e in map.iter().filter(|e| !e.kind.reads_as_zero()) {
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
