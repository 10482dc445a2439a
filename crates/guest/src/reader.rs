//! Byte-range views of a virtual disk (a partition, or the whole disk) with a small block cache, and a shared
//! counter of the bytes actually requested from the disk image, so callers can prove they read little.

use imgport_disk::{DiskImage, Error, Result};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Cache block size: small enough that scattered metadata reads stay cheap, large enough to batch neighbours.
pub const CACHE_BLOCK: u64 = 16 * 1024;
/// Cache blocks kept per view (4 MiB).
const CACHE_BLOCKS: usize = 256;
/// Bytes and calls one view may serve, cache hits included: a filesystem crate looping on a corrupt structure (a
/// cyclic FAT chain of deleted entries, say) runs into these instead of spinning forever. Inspection needs a few
/// thousand reads.
pub const READ_BUDGET: u64 = 4 << 30;
pub const CALL_BUDGET: u64 = 1 << 22;

/// A virtual disk shared by every view, with the count of bytes read from it.
#[derive(Clone)]
pub struct Disk {
    image: Arc<dyn DiskImage>,
    bytes_read: Arc<AtomicU64>,
}

impl Disk {
    pub fn new(image: Arc<dyn DiskImage>) -> Self {
        Disk { image, bytes_read: Arc::new(AtomicU64::new(0)) }
    }

    pub fn size(&self) -> u64 {
        self.image.virtual_size()
    }

    /// Bytes requested from the disk image so far, over every view.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// Uncached read of `buf.len()` bytes at an absolute disk offset; fails past the end of the disk.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.size()) {
            return Err(Error::corrupt(format!(
                "read of {} bytes at disk offset {offset:#x} goes past the end of the disk ({} bytes)",
                buf.len(),
                self.size()
            ))
            .at(offset));
        }
        self.bytes_read.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.image.read_at(buf, offset)
    }

    /// A view of `[start, start + len)`, clipped to the disk; `clipped` tells whether it had to be.
    pub fn view(&self, start: u64, len: u64) -> Region {
        let size = self.size();
        let start_c = start.min(size);
        let len_c = len.min(size - start_c);
        Region {
            disk: self.clone(),
            start: start_c,
            len: len_c,
            declared_len: len,
            cache: HashMap::new(),
            tick: 0,
            pos: 0,
            handed_out: 0,
            calls: 0,
        }
    }
}

/// A byte range of the disk read through a small LRU block cache. Offsets given to its methods are relative to
/// the start of the range.
pub struct Region {
    disk: Disk,
    start: u64,
    len: u64,
    /// Length the partition table claims; larger than `len` when the range runs past the end of the disk.
    declared_len: u64,
    cache: HashMap<u64, (u64, Box<[u8]>)>,
    tick: u64,
    /// Stream position for the `std::io` adapters.
    pos: u64,
    /// Bytes returned by `read_at` so far, counted against [`READ_BUDGET`].
    handed_out: u64,
    /// `read_at` calls so far, counted against [`CALL_BUDGET`].
    calls: u64,
}

impl Clone for Region {
    fn clone(&self) -> Self {
        let mut r = self.disk.view(self.start, self.declared_len);
        r.len = self.len;
        r
    }
}

impl Region {
    /// Absolute disk offset of the start of the range.
    pub fn start(&self) -> u64 {
        self.start
    }
    /// Readable length (clipped to the disk).
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// True when the declared range ran past the end of the disk.
    pub fn truncated(&self) -> bool {
        self.declared_len > self.len
    }
    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    /// Fill `buf` from `offset` (relative); fails when the range ends first.
    pub fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(Error::corrupt(format!(
                "read of {} bytes at offset {offset:#x} of the range at disk offset {:#x} goes past its end ({} bytes{})",
                buf.len(),
                self.start,
                self.len,
                if self.truncated() { ", the disk ends inside it" } else { "" }
            ))
            .at(self.start.saturating_add(offset)));
        }
        self.handed_out += buf.len() as u64;
        self.calls += 1;
        if self.handed_out > READ_BUDGET || self.calls > CALL_BUDGET {
            return Err(Error::corrupt(format!(
                "more than {READ_BUDGET} bytes or {CALL_BUDGET} reads from the range at disk offset {:#x}: the \
                 structure being read loops",
                self.start
            )));
        }
        // Large reads (file contents) bypass the cache so they neither pollute it nor get read twice.
        if buf.len() as u64 >= 4 * CACHE_BLOCK {
            return self.disk.read_at(buf, self.start + offset);
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let block = pos / CACHE_BLOCK;
            let within = (pos % CACHE_BLOCK) as usize;
            let data = self.block(block)?;
            let n = (data.len().saturating_sub(within)).min(buf.len() - done);
            if n == 0 {
                return Err(Error::corrupt(format!("short read in range at disk offset {:#x}", self.start)));
            }
            buf[done..done + n].copy_from_slice(&data[within..within + n]);
            done += n;
        }
        Ok(())
    }

    /// Read `len` bytes at `offset` into a new vector (callers cap `len`).
    pub fn read_vec(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.read_at(&mut v, offset)?;
        Ok(v)
    }

    fn block(&mut self, block: u64) -> Result<&[u8]> {
        self.tick += 1;
        let tick = self.tick;
        if !self.cache.contains_key(&block) {
            if self.cache.len() >= CACHE_BLOCKS {
                if let Some(oldest) = self.cache.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| *k) {
                    self.cache.remove(&oldest);
                }
            }
            let off = block * CACHE_BLOCK;
            let n = CACHE_BLOCK.min(self.len - off) as usize;
            let mut data = vec![0u8; n].into_boxed_slice();
            self.disk.read_at(&mut data, self.start + off)?;
            self.cache.insert(block, (tick, data));
        }
        match self.cache.get_mut(&block) {
            Some(entry) => {
                entry.0 = tick;
                Ok(&entry.1)
            }
            None => Err(Error::corrupt("block cache lost an entry")),
        }
    }
}

fn io_err(e: Error) -> io::Error {
    io::Error::other(e.to_string())
}

impl io::Read for Region {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.len.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        let pos = self.pos;
        self.read_at(&mut buf[..n], pos).map_err(io_err)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl io::Seek for Region {
    fn seek(&mut self, from: io::SeekFrom) -> io::Result<u64> {
        let new = match from {
            io::SeekFrom::Start(p) => Some(p),
            io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the range")),
        }
    }
}

/// Filesystem crates that insist on `Write` get this: every write is refused, so the image is never changed.
impl io::Write for Region {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(io::ErrorKind::PermissionDenied, "guest filesystems are opened read-only"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use imgport_disk::{CheckReport, Extent, ImageDetails};

    /// An in-memory disk for unit tests.
    pub struct MemDisk(pub Vec<u8>);

    impl DiskImage for MemDisk {
        fn virtual_size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
            let o = offset as usize;
            buf.copy_from_slice(&self.0[o..o + buf.len()]);
            Ok(())
        }
        fn map(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
            Ok(vec![Extent::data(offset, length, None)])
        }
        fn details(&self) -> ImageDetails {
            ImageDetails::new(imgport_disk::Format::Raw)
        }
        fn check(&self) -> Result<CheckReport> {
            Ok(CheckReport::default())
        }
    }

    pub fn mem_disk(bytes: Vec<u8>) -> Disk {
        Disk::new(Arc::new(MemDisk(bytes)))
    }

    #[test]
    fn region_reads_across_cache_blocks_and_refuses_past_end() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let disk = mem_disk(data.clone());
        let mut r = disk.view(1000, 150_000);
        let mut buf = vec![0u8; 40_000];
        r.read_at(&mut buf, CACHE_BLOCK - 7).unwrap();
        let s = 1000 + CACHE_BLOCK as usize - 7;
        assert_eq!(buf, data[s..s + 40_000]);
        assert!(r.read_at(&mut [0u8; 10], 149_995).is_err());
        let clipped = disk.view(190_000, 50_000);
        assert!(clipped.truncated());
        assert_eq!(clipped.len(), 10_000);
        // Small reads in one block cost one block; repeated ones hit the cache.
        let mut r = disk.view(0, 100_000);
        let before = disk.bytes_read();
        r.read_at(&mut [0u8; 16], 3).unwrap();
        r.read_at(&mut [0u8; 16], 40).unwrap();
        assert_eq!(disk.bytes_read() - before, CACHE_BLOCK);
    }
}
