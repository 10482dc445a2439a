//! Upload of a sequential stream of bytes as it is produced (the disk engine's writers make one), with no
//! temporary file.
//!
//! The stream's contract is the disk engine's `Sink`: a header region `[0, header_len)` declared first and
//! written last, the body at strictly increasing offsets, bytes never written read as zeros. The parts that
//! cover the header region are held back until [`StreamWriter::finish`]; every other part is sent as soon as
//! the writer has moved past it, through the file uploader's machinery (retries, checks, adaptive concurrency,
//! the buffer pool). The producer blocks while `concurrency + 1` body parts are in memory.
//!
//! This crate does not depend on imgport-disk: the binary adapts `Sink` onto [`StreamWriter`] (a few lines),
//! which keeps the store clients free of the disk engine and lets any producer of such a stream use it.
//!
//! Resume: the state is that of a file upload plus the stream's parameters. On restart with the same source
//! (unchanged) and parameters, the stream is produced again; each part whose size and checksum (CRC-64, MD5)
//! match a part the store already holds is not sent again. The producer must therefore write the same bytes
//! every time (the disk engine does with a `Stamp`).

use crate::state::{self, PartRecord, SourceId, UploadState};
use crate::upload::{
    auto_part_size, bucket_of, check_part_size, complete_verified, io_err, md5_hex, put_whole, send_part, PartTarget,
    ProgressFn, Shared, Summary, UploadError, UploadOptions, MAX_PARTS,
};
use crate::{crc64, ObjectStore, RetryClass};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

const MIB: u64 = 1 << 20;

/// What the stream is made from, besides the source file (`UploadOptions::source`).
pub struct StreamParams {
    /// What turns the source into the stream (output format and options): part of the resume state.
    pub params: String,
    /// An upper bound of the stream's length: the automatic part size is chosen from it.
    pub len_bound: u64,
}

enum Job {
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

struct CloseOnDrop(Arc<Semaphore>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A part the store already holds, and how to recognise it.
#[derive(Debug, Clone)]
struct StoredPart {
    size: u64,
    crc64: Option<u64>,
    md5_hex: Option<String>,
    etag: String,
}

impl StoredPart {
    fn matches(&self, size: u64, crc: u64, md5: &str) -> bool {
        let crc_ok = self.crc64.is_none_or(|c| c == crc);
        let md5_ok = self.md5_hex.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(md5));
        self.size == size && crc_ok && md5_ok && (self.crc64.is_some() || self.md5_hex.is_some())
    }
}

/// Uploads the stream `produce` writes to `opts.key`. `produce` runs on a blocking thread with the source's
/// identity (to derive anything that must be the same on every run) and the writer.
pub async fn upload_stream<P, E>(
    store: Arc<dyn ObjectStore>,
    correct_clock: Option<Arc<dyn Fn(i64) + Send + Sync>>,
    opts: &UploadOptions,
    stream: &StreamParams,
    progress: Option<ProgressFn>,
    produce: P,
) -> Result<Summary, UploadError>
where
    P: FnOnce(&SourceId, &mut StreamWriter) -> Result<(), E> + Send + 'static,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let source_name = opts.source.to_string_lossy().to_string();
    let abs = std::fs::canonicalize(&opts.source).map_err(|e| io_err(&source_name, e))?;
    let mut file = std::fs::File::open(&abs).map_err(|e| io_err(&source_name, e))?;
    let id = state::source_id(&abs.to_string_lossy(), &mut file).map_err(|e| io_err(&source_name, e))?;
    drop(file);
    let state_path: Option<PathBuf> =
        opts.state_dir.as_ref().map(|d| state::file_for(d, &id.path, &opts.endpoint_id, bucket_of(opts), &opts.key));
    let old = state_path.as_deref().and_then(state::load);
    let same = |s: &UploadState| opts.resume && s.source == id && s.stream.as_deref() == Some(stream.params.as_str());
    let part_size = match opts.part_size.or(old.as_ref().filter(|s| same(s)).map(|s| s.part_size)) {
        Some(p) => p,
        None => auto_part_size(stream.len_bound).max(opts.min_part_size),
    };
    check_part_size(part_size, u64::MAX, opts)?;
    let shared = Shared::new(store.clone(), correct_clock, opts);

    // Keep an interrupted upload of the same stream; abort any other upload the state names.
    let mut resumed: Option<(UploadState, BTreeMap<u32, StoredPart>)> = None;
    if let (Some(old), Some(p)) = (old, &state_path) {
        if same(&old) && old.part_size == part_size {
            match shared.retry("ListParts", || store.list_parts(&opts.key, &old.upload_id)).await {
                Ok(listed) => {
                    let stored = stored_parts(&old, listed, store.etag_is_md5());
                    resumed = Some((old, stored));
                }
                Err(e) if e.retry_class() == RetryClass::RestartUpload => state::remove(p),
                Err(error) => return Err(UploadError::Store { context: format!("ListParts {}", opts.url), error }),
            }
        } else {
            if old.source != id {
                eprintln!("imgport: {} changed since the interrupted upload; starting over", id.path);
            }
            let _ = store.abort_multipart(&opts.key, &old.upload_id).await;
            state::remove(p);
        }
    }

    let concurrency = opts.concurrency.max(1);
    let buffers = Arc::new(Semaphore::new(concurrency + 1));
    // However this ends (an error, or the caller dropping this future on Ctrl-C), a producer waiting for a
    // buffer wakes up and stops with an error instead of waiting for ever.
    let _close = CloseOnDrop(buffers.clone());
    let (tx, rx) = mpsc::channel(concurrency + 1);
    let writer = StreamWriter {
        shared: shared.clone(),
        handle: tokio::runtime::Handle::current(),
        tx,
        buffers: buffers.clone(),
        part_size,
        began: false,
        header_len: 0,
        held_parts: 0,
        held: BTreeMap::new(),
        current: None,
        next_part: 1,
        body_pos: 0,
        zeros: None,
    };
    let producer_id = id.clone();
    let mut producer = tokio::task::spawn_blocking(move || {
        let mut w = writer;
        produce(&producer_id, &mut w).map_err(|e| e.to_string())
    });
    let mut run = Run {
        shared: shared.clone(),
        opts,
        id,
        params: stream.params.clone(),
        part_size,
        state_path,
        st: None,
        stored: BTreeMap::new(),
        resumed_parts: 0,
        skipped: 0,
        sent: 0,
        done_bytes: 0,
        progress,
    };
    if let Some((st, stored)) = resumed {
        run.resumed_parts = stored.len() as u64;
        run.st = Some(st);
        run.stored = stored;
    }
    let mut summary = run.dispatch(rx, &mut producer).await?;
    match producer.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(UploadError::Source(e)),
        Err(e) => return Err(UploadError::Source(format!("the producer failed: {e}"))),
    }
    summary.part_size = part_size;
    summary.retries = shared.retries.load(Ordering::Relaxed);
    summary.seconds = started.elapsed().as_secs_f64();
    summary.mib_per_s = if summary.seconds > 0.0 { summary.bytes as f64 / MIB as f64 / summary.seconds } else { 0.0 };
    Ok(summary)
}

/// The parts listed by the store that can be recognised: with the checksums recorded when they were sent,
/// else those the listing gives (CRC-64 on OSS, an MD5 ETag). Parts without any checksum are sent again.
fn stored_parts(st: &UploadState, listed: Vec<crate::PartInfo>, etag_is_md5: bool) -> BTreeMap<u32, StoredPart> {
    let mut out = BTreeMap::new();
    for p in listed {
        let recorded = st.parts.get(&p.number).filter(|r| {
            r.size == p.size
                && (p.etag.is_empty() || p.etag.eq_ignore_ascii_case(&r.etag))
                && p.crc64.is_none_or(|c| c == r.crc64)
        });
        let part = match recorded {
            Some(r) => StoredPart {
                size: r.size,
                crc64: Some(r.crc64),
                md5_hex: Some(r.md5_hex.clone()),
                etag: r.etag.clone(),
            },
            None => {
                let md5 = (etag_is_md5 && p.etag.len() == 32 && p.etag.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| p.etag.to_ascii_lowercase());
                StoredPart { size: p.size, crc64: p.crc64, md5_hex: md5, etag: p.etag.clone() }
            }
        };
        if !part.etag.is_empty() && (part.crc64.is_some() || part.md5_hex.is_some()) {
            out.insert(p.number, part);
        }
    }
    out
}

/// The uploader's side of one streamed upload.
struct Run<'a> {
    shared: Arc<Shared>,
    opts: &'a UploadOptions,
    id: SourceId,
    params: String,
    part_size: u64,
    state_path: Option<PathBuf>,
    /// The multipart upload, once started (or resumed).
    st: Option<UploadState>,
    stored: BTreeMap<u32, StoredPart>,
    resumed_parts: u64,
    skipped: u64,
    sent: u64,
    done_bytes: u64,
    progress: Option<ProgressFn>,
}

type PartResult = Result<(u32, PartRecord, bool), UploadError>;

impl Run<'_> {
    fn save(&self) -> Result<(), UploadError> {
        match (&self.state_path, &self.st) {
            (Some(p), Some(st)) => {
                state::save(p, st).map_err(|e| io_err(&format!("saving resume state {}", p.display()), e))
            }
            _ => Ok(()),
        }
    }

    fn report(&self, in_flight: usize) {
        if let Some(p) = &self.progress {
            p(crate::upload::Progress { total: 0, done: self.done_bytes, in_flight });
        }
    }

    async fn upload_id(&mut self) -> Result<String, UploadError> {
        if let Some(st) = &self.st {
            return Ok(st.upload_id.clone());
        }
        let (store, opts) = (self.shared.store.clone(), self.opts);
        let upload_id = self
            .shared
            .retry("InitiateMultipartUpload", || store.initiate_multipart(&opts.key, &opts.put))
            .await
            .map_err(|error| UploadError::Store { context: format!("InitiateMultipartUpload {}", opts.url), error })?;
        self.st = Some(UploadState {
            version: state::VERSION,
            source: self.id.clone(),
            endpoint: opts.endpoint_id.clone(),
            bucket: bucket_of(opts).to_string(),
            key: opts.key.clone(),
            url: opts.url.clone(),
            upload_id: upload_id.clone(),
            part_size: self.part_size,
            created: imgport_auth::time::now(),
            parts: BTreeMap::new(),
            stream: Some(self.params.clone()),
        });
        self.save()?;
        Ok(upload_id)
    }

    /// Checksums part `n` off the async threads; skips it if the store holds the same bytes, else sends it.
    async fn spawn_part(
        &mut self,
        set: &mut tokio::task::JoinSet<PartResult>,
        number: u32,
        data: Bytes,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<(), UploadError> {
        let upload_id = self.upload_id().await?;
        let (shared, key, url) = (self.shared.clone(), self.opts.key.clone(), self.opts.url.clone());
        let stored = self.stored.get(&number).cloned();
        let offset = u64::from(number - 1) * self.part_size;
        let send_md5 = self.opts.send_md5;
        set.spawn(async move {
            let _permit = permit;
            let (data, crc, md5) = tokio::task::spawn_blocking(move || {
                let crc = crc64::checksum(&data);
                let md5 = md5_hex(&data);
                (data, crc, md5)
            })
            .await
            .map_err(|e| UploadError::Io(format!("checksum task: {e}")))?;
            let size = data.len() as u64;
            if let Some(s) = stored.filter(|s| s.matches(size, crc, &md5)) {
                shared.give_back(data);
                return Ok((number, PartRecord { size, crc64: crc, md5_hex: md5, etag: s.etag }, true));
            }
            let target = PartTarget { key: &key, upload_id: &upload_id, url: &url, send_md5 };
            let rec = send_part(&shared, &target, number, offset, data, crc, md5).await?;
            Ok((number, rec, false))
        });
        Ok(())
    }

    fn record(&mut self, joined: Result<PartResult, tokio::task::JoinError>) -> Result<(), UploadError> {
        let (n, rec, skipped) = joined.map_err(|e| UploadError::Io(format!("part task: {e}")))??;
        if skipped {
            self.skipped += 1;
        } else {
            self.sent += 1;
        }
        self.done_bytes += rec.size;
        if let Some(st) = self.st.as_mut() {
            st.parts.insert(n, rec);
        }
        self.save()
    }

    /// Sends parts as the producer hands them over, then the held-back ones, then completes.
    async fn dispatch(
        &mut self,
        mut rx: mpsc::Receiver<Job>,
        producer: &mut tokio::task::JoinHandle<Result<(), String>>,
    ) -> Result<Summary, UploadError> {
        let mut set: tokio::task::JoinSet<PartResult> = tokio::task::JoinSet::new();
        let (total, held) = loop {
            tokio::select! {
                job = rx.recv(), if set.len() < self.shared.limiter.limit() => match job {
                    Some(Job::Part { number, data, _permit }) => self.spawn_part(&mut set, number, data, _permit).await?,
                    Some(Job::Finish { total, held }) => break (total, held),
                    None => {
                        // The producer stopped without finishing: its error says why. The parts already handed
                        // over are finished first, so a rerun need not send them again.
                        while let Some(joined) = set.join_next().await {
                            self.record(joined)?;
                        }
                        return Err(match producer.await {
                            Ok(Err(e)) => UploadError::Source(e),
                            Ok(Ok(())) => UploadError::Source("the stream ended without being finished".into()),
                            Err(e) => UploadError::Source(format!("the producer failed: {e}")),
                        });
                    }
                },
                Some(joined) = set.join_next(), if !set.is_empty() => {
                    self.record(joined)?;
                    self.report(set.len());
                }
            }
        };
        let last = total.div_ceil(self.part_size) as u32;
        if last <= 1 {
            while let Some(joined) = set.join_next().await {
                self.record(joined)?;
            }
            return self.single_put(total, held).await;
        }
        for (number, data) in held {
            while set.len() >= self.shared.limiter.limit() {
                if let Some(joined) = set.join_next().await {
                    self.record(joined)?;
                }
            }
            self.spawn_part(&mut set, number, data, None).await?;
        }
        while let Some(joined) = set.join_next().await {
            self.record(joined)?;
            self.report(set.len());
        }
        let Some(mut st) = self.st.take() else {
            return Err(UploadError::Io("no multipart upload was started".into()));
        };
        // Parts a longer stream of an earlier run left behind are not part of this object.
        st.parts.retain(|n, _| *n <= last);
        if let Some(missing) = (1..=last).find(|n| !st.parts.contains_key(n)) {
            return Err(UploadError::Io(format!("part {missing} of {last} was never produced")));
        }
        let (etag, combined) = complete_verified(&self.shared, self.opts, &st, total).await?;
        if let Some(p) = &self.state_path {
            state::remove(p);
        }
        Ok(Summary {
            bytes: total,
            parts: u64::from(last),
            crc64: combined.map(|c| c.to_string()),
            etag,
            resumed_parts: self.resumed_parts,
            skipped_parts: self.skipped,
            sent_parts: self.sent,
            upload_id: Some(st.upload_id),
            ..Default::default()
        })
    }

    /// An object of at most one part: one PutObject (an interrupted multipart upload of it is aborted).
    async fn single_put(&mut self, total: u64, held: Vec<(u32, Bytes)>) -> Result<Summary, UploadError> {
        let data = held.into_iter().next().map(|(_, d)| d).unwrap_or_default();
        if data.len() as u64 != total {
            return Err(UploadError::Io(format!("the stream is {total} bytes but its only part {}", data.len())));
        }
        if let Some(st) = self.st.take() {
            let _ = self.shared.store.abort_multipart(&self.opts.key, &st.upload_id).await;
        }
        let (crc, md5) = (crc64::checksum(&data), md5_hex(&data));
        let mut s = put_whole(&self.shared, self.opts, data, crc, md5).await?;
        if let Some(p) = &self.state_path {
            state::remove(p);
        }
        s.bytes = total;
        Ok(s)
    }
}
