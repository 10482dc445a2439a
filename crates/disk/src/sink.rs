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
pub struct FileSink {
    file: File,
    path: PathBuf,
    /// fsync at finish (what qemu-img does when it closes its output).
    pub sync: bool,
}

impl FileSink {
    pub fn new(file: File, path: PathBuf) -> Self {
        FileSink { file, path, sync: true }
    }
}

impl Sink for FileSink {
    fn begin(&mut self, _header_len: u64) -> Result<()> {
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.file.write_all_at(data, offset).map_err(|e| Error::io("cannot write", e).in_file(&self.path).at(offset))
    }
    fn finish(&mut self, total_len: u64) -> Result<()> {
        self.file.set_len(total_len).map_err(|e| Error::io("cannot set length", e).in_file(&self.path))?;
        if self.sync {
            self.file.sync_all().map_err(|e| Error::io("cannot sync", e).in_file(&self.path))?;
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
