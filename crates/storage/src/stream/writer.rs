//! The producer's end of a streamed upload: cuts the stream into parts, holds back the header's parts, fills
//! holes with zeros, and blocks while the uploader has every buffer in flight.

use crate::upload::{Shared, UploadError, MAX_PARTS};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

pub(super) enum Job {
    Part {
        number: u32,
        data: Bytes,
        _permit: Option<OwnedSemaphorePermit>,
    },
    /// The end: the held-back parts (the last one possibly short) and the stream's length.
    Finish {
        total: u64,
        held: Vec<(u32, Bytes)>,
    },
}

/// The producer's end: takes the stream's bytes and hands full parts to the uploader. Used from a blocking
/// thread (it blocks while the uploader is busy).
pub struct StreamWriter {
    shared: Arc<Shared>,
    handle: tokio::runtime::Handle,
    tx: mpsc::Sender<Job>,
    buffers: Arc<Semaphore>,
    part_size: u64,
    began: bool,
    header_len: u64,
    /// Parts `1..=held_parts` cover the header region and stay here until the end.
    held_parts: u32,
    held: BTreeMap<u32, Vec<u8>>,
    /// The body part being filled: its number, buffer (filled up to its length) and memory permit.
    current: Option<(u32, Vec<u8>, OwnedSemaphorePermit)>,
    /// The first part not yet handed over.
    next_part: u32,
    body_pos: u64,
    zeros: Option<Bytes>,
}

fn stream_err(m: String) -> UploadError {
    UploadError::Source(m)
}

impl StreamWriter {
    /// `buffers` bounds the body parts in memory; must be called on a Tokio runtime.
    pub(super) fn new(shared: Arc<Shared>, tx: mpsc::Sender<Job>, buffers: Arc<Semaphore>, part_size: u64) -> Self {
        StreamWriter {
            shared,
            handle: tokio::runtime::Handle::current(),
            tx,
            buffers,
            part_size,
            began: false,
            header_len: 0,
            held_parts: 0,
            held: BTreeMap::new(),
            current: None,
            next_part: 1,
            body_pos: 0,
            zeros: None,
        }
    }

    pub fn part_size(&self) -> u64 {
        self.part_size
    }

    /// Declares the header region, written last. Called once, before any write.
    pub fn begin(&mut self, header_len: u64) -> Result<(), UploadError> {
        if self.began {
            return Err(stream_err("the stream was begun twice".into()));
        }
        self.began = true;
        self.header_len = header_len;
        self.held_parts = u32::try_from(header_len.div_ceil(self.part_size))
            .ok()
            .filter(|&n| u64::from(n) <= MAX_PARTS)
            .ok_or_else(|| stream_err(format!("a header region of {header_len} bytes is too large")))?;
        self.next_part = self.held_parts + 1;
        self.body_pos = header_len;
        Ok(())
    }

    /// Writes `data` at `offset`: inside the header region anywhere, after it only at increasing offsets.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), UploadError> {
        if !self.began {
            return Err(stream_err(format!("write at offset {offset} before the stream was begun")));
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| stream_err(format!("write at offset {offset} overflows")))?;
        if offset < self.header_len && end > self.header_len {
            return Err(stream_err(format!(
                "write at offset {offset} ({} bytes) crosses the end of the header region at {}",
                data.len(),
                self.header_len
            )));
        }
        if offset >= self.header_len {
            if offset < self.body_pos {
                return Err(stream_err(format!("the stream went backwards: offset {offset} after {}", self.body_pos)));
            }
            self.body_pos = end;
        }
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let number = self.part_number(pos)?;
            let in_part = (pos % self.part_size) as usize;
            let n = (self.part_size as usize - in_part).min(rest.len());
            if number <= self.held_parts {
                let buf = self.held.entry(number).or_insert_with(|| vec![0; self.part_size as usize]);
                buf[in_part..in_part + n].copy_from_slice(&rest[..n]);
            } else {
                self.body_piece(number, in_part, &rest[..n])?;
            }
            pos += n as u64;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// The stream is complete and `total` bytes long: hands over the rest and the held-back parts.
    pub fn finish(&mut self, total: u64) -> Result<(), UploadError> {
        if !self.began {
            self.begin(0)?;
        }
        if total < self.body_pos {
            return Err(stream_err(format!("stream length {total} is below the last write's end {}", self.body_pos)));
        }
        let last = if total == 0 { 0 } else { self.part_number(total - 1)? };
        let part_size = self.part_size;
        let len_of = |n: u32| (total - u64::from(n - 1) * part_size).min(part_size) as usize;
        let mut held: Vec<(u32, Bytes)> = Vec::new();
        // An object of one part is sent with one PutObject, so its only part is held back too.
        let hold_all = last <= 1;
        if let Some((n, mut buf, permit)) = self.current.take() {
            buf.resize(len_of(n), 0);
            if hold_all {
                held.push((n, Bytes::from(buf)));
            } else {
                self.send(Job::Part { number: n, data: Bytes::from(buf), _permit: Some(permit) })?;
            }
        }
        while self.next_part <= last {
            let n = self.next_part;
            self.next_part += 1;
            let data = self.zeros().slice(..len_of(n));
            if hold_all {
                held.push((n, data));
            } else {
                let permit = self.permit()?;
                self.send(Job::Part { number: n, data, _permit: Some(permit) })?;
            }
        }
        for n in 1..=self.held_parts.min(last) {
            let mut buf = self.held.remove(&n).unwrap_or_default();
            buf.resize(len_of(n), 0);
            held.push((n, Bytes::from(buf)));
        }
        held.sort_by_key(|(n, _)| *n);
        self.send(Job::Finish { total, held })
    }

    fn part_number(&self, offset: u64) -> Result<u32, UploadError> {
        let n = offset / self.part_size + 1;
        if n > MAX_PARTS {
            return Err(UploadError::Config(format!(
                "the output reaches offset {offset}: more than {MAX_PARTS} parts of {} bytes; choose a larger --part-size",
                self.part_size
            )));
        }
        Ok(n as u32)
    }

    /// Body bytes for part `number` at `in_part`: parts the writer has moved past are handed over (those it
    /// skipped entirely as zeros).
    fn body_piece(&mut self, number: u32, in_part: usize, data: &[u8]) -> Result<(), UploadError> {
        if self.current.as_ref().is_some_and(|(n, _, _)| *n < number) {
            if let Some((n, mut buf, permit)) = self.current.take() {
                buf.resize(self.part_size as usize, 0);
                self.send(Job::Part { number: n, data: Bytes::from(buf), _permit: Some(permit) })?;
            }
        }
        while self.current.is_none() && self.next_part < number {
            let n = self.next_part;
            self.next_part += 1;
            let (data, permit) = (self.zeros(), self.permit()?);
            self.send(Job::Part { number: n, data, _permit: Some(permit) })?;
        }
        if self.current.is_none() {
            let permit = self.permit()?;
            self.current = Some((number, self.shared.take_buffer(), permit));
            self.next_part = number + 1;
        }
        if let Some((_, buf, _)) = self.current.as_mut() {
            if buf.len() < in_part {
                buf.resize(in_part, 0);
            }
            buf.extend_from_slice(data);
        }
        Ok(())
    }

    /// One part of zeros, shared by every all-zero part. Allocated zeroed and only ever read, its pages stay
    /// the kernel's shared zero page: it costs address space, not memory.
    fn zeros(&mut self) -> Bytes {
        self.zeros.get_or_insert_with(|| Bytes::from(vec![0u8; self.part_size as usize])).clone()
    }

    /// Waits until fewer than `concurrency + 1` body parts are in memory.
    fn permit(&self) -> Result<OwnedSemaphorePermit, UploadError> {
        self.handle.block_on(self.buffers.clone().acquire_owned()).map_err(|_| stream_err("the upload stopped".into()))
    }

    fn send(&self, job: Job) -> Result<(), UploadError> {
        self.tx.blocking_send(job).map_err(|_| stream_err("the upload stopped".into()))
    }
}
