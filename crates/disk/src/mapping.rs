//! Read-only memory mappings of input files, so converters can hand data straight from the page cache to
//! the output without first copying it into a buffer (the copy that bounds conversion speed).
//!
//! A mapped file that another process truncates while imgport reads it raises SIGBUS, as with any program
//! that maps its input; inputs are never modified by imgport itself.

use std::fs::File;
use std::os::unix::io::AsRawFd;

/// Linux 5.14+: fault the range in now (elsewhere WILLNEED is the fallback).
const MADV_POPULATE_READ: libc::c_int = 22;

/// A private, read-only mapping of a whole file.
#[derive(Debug)]
pub struct Mapping {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the mapping is read-only and never remapped; sharing immutable bytes between threads is sound.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Map `len` bytes of `file`, or None where the file cannot be mapped (pipes, some filesystems).
    pub fn new(file: &File, len: u64) -> Option<Mapping> {
        let len = usize::try_from(len).ok().filter(|&l| l > 0)?;
        // SAFETY: a fresh read-only private mapping of a descriptor we own; checked for MAP_FAILED.
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: advice on the mapping just created.
        unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
        Some(Mapping { ptr: ptr as *const u8, len })
    }

    /// The bytes at `[offset, offset + len)`, or None when the range is outside the mapping.
    pub fn slice(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: within the mapping, which lives as long as &self and is never written.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.add(start), len) })
    }

    /// Ask the kernel to fault the range in now, so the thread that reads it does not stall page by page.
    pub fn prefetch(&self, offset: u64, len: usize) {
        let Some(slice) = self.slice(offset, len) else { return };
        let page = 4096usize;
        let start = (slice.as_ptr() as usize) & !(page - 1);
        let end = slice.as_ptr() as usize + slice.len();
        let ptr = start as *mut libc::c_void;
        // SAFETY: advice on pages inside our mapping (start is rounded down to its page, still mapped).
        unsafe {
            if libc::madvise(ptr, end - start, MADV_POPULATE_READ) != 0 {
                libc::madvise(ptr, end - start, libc::MADV_WILLNEED);
            }
        }
    }
}

/// Drops the whole pages of `slice` (bytes of a [`Mapping`]) from this process's mapping once they are consumed,
/// so a sequential pass over a large file does not accumulate it in the process's resident set: the pages stay in
/// the page cache, and a later access faults them in again with the same bytes (the mapping is private, read-only
/// and never written, so nothing is lost).
pub fn release(slice: &[u8]) {
    let page = 4096usize;
    let start = (slice.as_ptr() as usize).div_ceil(page) * page;
    let end = (slice.as_ptr() as usize + slice.len()) / page * page;
    if end > start {
        // SAFETY: advice on whole pages inside a live read-only mapping; MADV_DONTNEED on clean private pages
        // only drops them from the page tables.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what mmap returned.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}
