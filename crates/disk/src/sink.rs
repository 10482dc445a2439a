//! Where writers put their output.
//!
//! Every writer lays out its output from the source's extent map as one stream: the format's header region
//! (whose contents depend on which clusters turn out to hold data) is declared first with [`Sink::begin`],
//! the body follows in strictly increasing offsets, and the header region is written last. A local file
//! writes it in place; an uploader holds back only the first part. Bytes never written read as zeros, so a
//! file sink leaves holes there.

use crate::error::{Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

pub trait Sink {
    /// Declare the length of the header region, written last. Called once, before any `write_at`.
    fn begin(&mut self, header_len: u64) -> Result<()>;
    /// Write `data` at `offset`. Outside the header region, offsets only increase.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()>;
    /// The output is complete and `total_len` bytes long.
    fn finish(&mut self, total_len: u64) -> Result<()>;
}

/// Writes into a local file, leaving holes where nothing is written.
///
/// With `sync` (the default) the data is durable before `finish` returns, so a rename afterwards never exposes
/// a file whose blocks are still in flight. Writeback of the body is started as it is written
/// (`sync_file_range`), so the final fsync waits only for the tail instead of the whole image.
pub struct FileSink {
    file: File,
    path: PathBuf,
    pub sync: bool,
    /// Bytes written since writeback was last started, and the span they cover.
    pending_bytes: u64,
    pending_from: u64,
    pending_to: u64,
    written: u64,
}

/// Start writeback after this many bytes of body.
const WRITEBACK_CHUNK: u64 = 32 << 20;

impl FileSink {
    pub fn new(file: File, path: PathBuf) -> Self {
        FileSink { file, path, sync: true, pending_bytes: 0, pending_from: 0, pending_to: 0, written: 0 }
    }

    /// Bytes written so far (holes not counted).
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Once enough bytes are pending, ask the kernel to start writing them (without waiting). Body writes
    /// only move forward, so the pending range is one span (holes inside it cost nothing).
    fn start_writeback(&mut self, offset: u64, len: u64) {
        if !self.sync {
            return;
        }
        if self.pending_bytes == 0 || offset < self.pending_from {
            self.pending_from = offset;
        }
        self.pending_bytes += len;
        self.pending_to = self.pending_to.max(offset + len);
        if self.pending_bytes >= WRITEBACK_CHUNK {
            use std::os::unix::io::AsRawFd;
            let span = self.pending_to.saturating_sub(self.pending_from);
            if let (Ok(from), Ok(n)) = (libc::off64_t::try_from(self.pending_from), libc::off64_t::try_from(span)) {
                // SAFETY: a hint on our own descriptor; failure only loses the overlap, fdatasync still runs.
                unsafe { libc::sync_file_range(self.file.as_raw_fd(), from, n, libc::SYNC_FILE_RANGE_WRITE) };
            }
            self.pending_bytes = 0;
            self.pending_to = 0;
        }
    }
}

impl Sink for FileSink {
    fn begin(&mut self, _header_len: u64) -> Result<()> {
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.file
            .write_all_at(data, offset)
            .map_err(|e| Error::io("cannot write", e).in_file(&self.path).at(offset))?;
        self.written += data.len() as u64;
        self.start_writeback(offset, data.len() as u64);
        Ok(())
    }
    fn finish(&mut self, total_len: u64) -> Result<()> {
        self.file.set_len(total_len).map_err(|e| Error::io("cannot set length", e).in_file(&self.path))?;
        if self.sync {
            self.file.sync_data().map_err(|e| Error::io("cannot sync", e).in_file(&self.path))?;
        }
        Ok(())
    }
}

/// Collects the output in memory (tests, small images).
#[derive(Debug, Default)]
pub struct VecSink {
    pub data: Vec<u8>,
    header_len: u64,
    body_pos: u64,
}

impl Sink for VecSink {
    fn begin(&mut self, header_len: u64) -> Result<()> {
        self.header_len = header_len;
        self.body_pos = header_len;
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let end = offset as usize + data.len();
        if offset >= self.header_len {
            if offset < self.body_pos {
                return Err(Error::invalid_argument(format!(
                    "writer went backwards: {offset} after {}",
                    self.body_pos
                )));
            }
            self.body_pos = end as u64;
        } else if end as u64 > self.header_len {
            return Err(Error::invalid_argument("header write crosses into the body"));
        }
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
    fn finish(&mut self, total_len: u64) -> Result<()> {
        self.data.resize(total_len as usize, 0);
        Ok(())
    }
}
