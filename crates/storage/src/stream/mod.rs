//! Upload of a sequential stream of bytes as it is produced (the disk engine's writers make one), with no
//! temporary file.
//!
//! The stream's contract is the disk engine's `Sink`: a header region `[0, header_len)` declared first and
//! written last, the body at strictly increasing offsets, bytes never written read as zeros. The parts that
//! cover the header region are held back until [`StreamWriter::finish`]; every other part is sent as soon as
//! the writer has moved past it, through the file uploader's machinery (retries, checks, adaptive concurrency,
//! the buffer pool). The producer blocks while `concurrency + 1` body parts are in memory.
//!
//! This crate does not depend on imgport-disk: imgport-pipeline adapts `Sink` onto [`StreamWriter`], which
//! keeps the store clients free of the disk engine and lets any producer of such a stream use it.
//!
//! Resume: the state is that of a file upload plus the stream's parameters. On restart with the same source
//! (unchanged) and parameters, the stream is produced again; each part whose size and checksum (CRC-64, MD5)
//! match a part the store already holds is not sent again. The producer must therefore write the same bytes
//! every time (the disk engine does with a `Stamp`).

use crate::events::{completed, emit, part_stored, EventFn, Progress, RestartReason, UploadEvent};
use crate::state::{self, PartRecord, SourceId, UploadState};
use crate::upload::{
    auto_part_size, bucket_of, check_part_size, check_unchanged, complete_verified, io_err, listed_matches, lock_state,
    md5_hex, put_whole, send_part, PartData, PartTarget, RangeSums, Shared, Summary, UploadError, UploadOptions,
};
use crate::{crc64, ObjectStore, RetryClass};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

mod writer;

use writer::Job;
pub use writer::StreamWriter;

/// What the stream is made from, besides the source file (`UploadOptions::source`).
pub struct StreamParams {
    /// What turns the source into the stream (output format and options): part of the resume state.
    pub params: String,
    /// An upper bound of the stream's length: the automatic part size is chosen from it.
    pub len_bound: u64,
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
    /// `md5` is empty where the store is checked by CRC-64 alone (OSS): the CRC must then be known and match.
    fn matches(&self, size: u64, crc: u64, md5: &str) -> bool {
        let crc_ok = self.crc64.is_none_or(|c| c == crc);
        let md5_ok = md5.is_empty() || self.md5_hex.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(md5));
        let known = self.crc64.is_some() || !md5.is_empty() && self.md5_hex.is_some();
        self.size == size && crc_ok && md5_ok && known
    }
}

/// Uploads the stream `produce` writes to `opts.key`. `produce` runs on a blocking thread with the source's
/// identity (to derive anything that must be the same on every run) and the writer. `events` receives what
/// happens (progress, restarts, completion).
pub async fn upload_stream<P, E>(
    store: Arc<dyn ObjectStore>,
    opts: &UploadOptions,
    stream: &StreamParams,
    events: Option<EventFn>,
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
    // Held until this returns (or is dropped on Ctrl-C): a second run of the same upload stops here.
    let _lock = lock_state(opts, &id.path)?;
    let state_path: Option<PathBuf> =
        opts.state_dir.as_ref().map(|d| state::file_for(d, &id.path, &opts.endpoint_id, bucket_of(opts), &opts.key));
    let old = state_path.as_deref().and_then(state::load);
    let same = |s: &UploadState| opts.resume && s.source == id && s.stream.as_deref() == Some(stream.params.as_str());
    let part_size = match opts.part_size.or(old.as_ref().filter(|s| same(s)).map(|s| s.part_size)) {
        Some(p) => p,
        None => auto_part_size(stream.len_bound).max(opts.min_part_size),
    };
    check_part_size(part_size, u64::MAX, opts)?;
    let shared = Shared::new(store.clone(), opts);

    // Keep an interrupted upload of the same stream; abort any other upload the state names.
    let mut resumed: Option<(UploadState, BTreeMap<u32, StoredPart>)> = None;
    if let (Some(old), Some(p)) = (old, &state_path) {
        if same(&old) && old.part_size == part_size {
            match shared.retry("ListParts", || store.list_parts(&opts.key, &old.upload_id)).await {
                Ok(listed) => {
                    let stored = stored_parts(&old, listed, store.etag_is_md5());
                    resumed = Some((old, stored));
                }
                // The store lost the upload (or refuses its id): start a new one.
                Err(e) if e.retry_class() == RetryClass::RestartUpload || e.code() == Some("AccessDenied") => {
                    let _ = store.abort_multipart(&opts.key, &old.upload_id).await;
                    state::remove(p);
                }
                Err(error) => return Err(UploadError::Store { context: format!("ListParts {}", opts.url), error }),
            }
        } else {
            if old.source != id {
                let reason = RestartReason::SourceChanged { path: id.path.clone() };
                emit(&events, UploadEvent::Restarted { reason });
            } else if opts.resume && old.stream.is_some() && old.stream.as_deref() != Some(stream.params.as_str()) {
                emit(&events, UploadEvent::Restarted { reason: RestartReason::StreamChanged });
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
    let writer = StreamWriter::new(shared.clone(), tx, buffers.clone(), part_size);
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
        events: events.clone(),
    };
    if let Some((st, stored)) = resumed {
        run.resumed_parts = stored.len() as u64;
        run.st = Some(st);
        run.stored = stored;
    }
    let was_resumed = run.st.is_some();
    if let Some(st) = &run.st {
        emit(&events, UploadEvent::Started { upload_id: st.upload_id.clone(), resumed_parts: run.resumed_parts });
    }
    let mut summary = match run.dispatch(rx, &mut producer).await {
        Ok(s) => s,
        // The store lost the upload mid-way: the stream cannot be produced again in this run, so the resume
        // state is forgotten and a rerun starts a new upload (instead of failing on the lost one every time).
        Err(e) if e.upload_gone(was_resumed) => {
            let upload_id = run.st.as_ref().map(|s| s.upload_id.clone()).unwrap_or_default();
            let _ = store.abort_multipart(&opts.key, &upload_id).await;
            if let Some(p) = &run.state_path {
                state::remove(p);
            }
            return Err(e.vanished(&upload_id));
        }
        Err(e) => return Err(e),
    };
    match producer.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(UploadError::Source(e)),
        Err(e) => return Err(UploadError::Source(format!("the producer failed: {e}"))),
    }
    summary.finish(&shared, part_size, started);
    emit(&events, completed(&summary));
    Ok(summary)
}

/// The parts listed by the store that can be recognised: with the checksums recorded when they were sent,
/// else those the listing gives (CRC-64 on OSS, an MD5 ETag). Parts without any checksum are sent again.
fn stored_parts(st: &UploadState, listed: Vec<crate::PartInfo>, etag_is_md5: bool) -> BTreeMap<u32, StoredPart> {
    let mut out = BTreeMap::new();
    for p in listed {
        let recorded = st.parts.get(&p.number).filter(|r| listed_matches(&p, r));
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
    events: Option<EventFn>,
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

    /// `total` is 0: a stream's length is known only at its end.
    fn report(&self, in_flight: usize) {
        emit(&self.events, UploadEvent::Progress(Progress { total: 0, done: self.done_bytes, in_flight }));
    }

    async fn upload_id(&mut self) -> Result<String, UploadError> {
        if let Some(st) = &self.st {
            return Ok(st.upload_id.clone());
        }
        let (store, opts) = (self.shared.store.clone(), self.opts);
        let upload_id = self
            .shared
            .retry("InitiateMultipartUpload", || store.initiate_multipart(&opts.key, &opts.put, None))
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
            // Content-MD5: a resumed stream recognises the parts the store holds by their MD5.
            checksum: None,
        });
        self.save()?;
        emit(&self.events, UploadEvent::Started { upload_id: upload_id.clone(), resumed_parts: 0 });
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
                // OSS parts are checked by CRC-64 alone: MD5 would cost more CPU than the send itself.
                let md5 = if send_md5 { md5_hex(&data) } else { String::new() };
                (data, crc, md5)
            })
            .await
            .map_err(|e| UploadError::Io(format!("checksum task: {e}")))?;
            let size = data.len() as u64;
            if let Some(s) = stored.filter(|s| s.matches(size, crc, &md5)) {
                shared.give_back(data);
                return Ok((number, PartRecord { size, crc64: crc, md5_hex: md5, etag: s.etag, checksum: None }, true));
            }
            let target = PartTarget { key: &key, upload_id: &upload_id, url: &url, send_md5, flexible: None };
            let sums = RangeSums { md5_hex: md5, ..Default::default() };
            let rec = send_part(&shared, &target, number, offset, PartData::Memory { data, crc }, sums).await?;
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
        emit(&self.events, part_stored(n, &rec, !skipped));
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
        // A copy: the upload stays named in `self.st` should completing it fail.
        let Some(mut st) = self.st.clone() else {
            return Err(UploadError::Io("no multipart upload was started".into()));
        };
        // Parts a longer stream of an earlier run left behind are not part of this object.
        st.parts.retain(|n, _| *n <= last);
        if let Some(missing) = (1..=last).find(|n| !st.parts.contains_key(n)) {
            return Err(UploadError::Io(format!("part {missing} of {last} was never produced")));
        }
        check_unchanged(&self.id)?;
        let done = complete_verified(&self.shared, self.opts, &st, total).await?;
        if let Some(p) = &self.state_path {
            state::remove(p);
        }
        let mut s = Summary {
            bytes: total,
            parts: u64::from(last),
            crc64: done.crc64.map(|c| c.to_string()),
            etag: done.etag,
            resumed_parts: self.resumed_parts,
            skipped_parts: self.skipped,
            sent_parts: self.sent,
            upload_id: Some(st.upload_id),
            ..Default::default()
        };
        s.checked_by(self.opts, done.flexible);
        Ok(s)
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
        let (crc, md5_hex) = (crc64::checksum(&data), md5_hex(&data));
        let sums = RangeSums { md5_hex, ..Default::default() };
        let mut s = put_whole(&self.shared, self.opts, PartData::Memory { data, crc }, sums).await?;
        if let Some(p) = &self.state_path {
            state::remove(p);
        }
        s.bytes = total;
        Ok(s)
    }
}
