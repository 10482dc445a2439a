//! Resumable, verified multipart upload of a file: parts streamed from the file in small pieces (memory does not
//! grow with part size or concurrency), adaptive concurrency, retries with backoff.

use crate::checksum::{self, Algorithm, Choice};
use crate::digests::{PartDigests, PartSpan};
use crate::error::{ErrorKind, RetryClass, StorageError};
use crate::state::{self, PartRecord, UploadState};
use crate::{crc64, Body, CompletedPart, FileRange, ObjectStore, PartCheck, PutOptions};
use bytes::Bytes;
use imgport_net::retry::{Hooks, RetryClass as NetClass, RetryPolicy};
use imgport_wire::{hex, hex_decode};
use md5_many::Md5State;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
pub const MAX_PARTS: u64 = 10_000;

/// Automatic part size: at least 64 MiB, large enough that the count stays near 9,000, whole MiB.
pub fn auto_part_size(size: u64) -> u64 {
    let p = (64 * MIB).max(size.div_ceil(9000));
    p.div_ceil(MIB) * MIB
}

/// Automatic part size of a file sent `concurrency` parts at a time: [`auto_part_size`], except that a file of
/// more than one such part is cut into at least four parts per connection (parts of 8 MiB at least). With one
/// part per connection (a 512 MiB file in 64 MiB parts, 8 at a time) the first send waits until all of them are
/// hashed (S3's Content-MD5): about a second before the first byte. Smaller parts start sending after a fraction
/// of the file. Large files keep 64 MiB parts. (Memory does not depend on it: parts are streamed from the file.)
pub fn auto_part_size_for(size: u64, concurrency: usize) -> u64 {
    let base = auto_part_size(size);
    if size <= base {
        return base;
    }
    let spread = size.div_ceil(4 * concurrency.max(1) as u64).div_ceil(MIB) * MIB;
    spread.clamp(8 * MIB, base)
}

pub struct UploadOptions {
    pub source: PathBuf,
    pub key: String,
    /// Identifies the store in the resume state (endpoint URL).
    pub endpoint_id: String,
    /// `oss://bucket/key`, for messages.
    pub url: String,
    pub part_size: Option<u64>,
    /// The store's smallest part (OSS 100 KiB, S3 5 MiB).
    pub min_part_size: u64,
    pub concurrency: usize,
    pub resume: bool,
    pub state_dir: Option<PathBuf>,
    pub put: PutOptions,
    /// Bytes per second over all parts.
    pub rate_limit: Option<u64>,
    pub max_attempts: u32,
    /// S3: parts are checked by MD5 (Content-MD5, or their ETag where the store does not confirm a flexible
    /// checksum). OSS has CRC-64 and skips the extra hashing.
    pub send_md5: bool,
    /// S3's part checksum (`--checksum`); OSS ignores it.
    pub checksum: Choice,
}

impl UploadOptions {
    /// The flexible checksum a new upload announces: S3's choice, or none (Content-MD5, OSS).
    pub(crate) fn flexible(&self) -> Option<Algorithm> {
        match (self.send_md5, self.checksum) {
            (false, _) | (true, Choice::Md5) => None,
            (true, Choice::Auto) => Some(Algorithm::Crc64nvme),
            (true, Choice::Flexible(a)) => Some(a),
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub bytes: u64,
    pub parts: u64,
    pub part_size: u64,
    pub seconds: f64,
    pub mib_per_s: f64,
    pub crc64: Option<String>,
    /// How the store checked the parts: `crc64nvme`, `crc32c` (flexible checksums), `md5` (S3's Content-MD5)
    /// or `crc64` (OSS).
    pub checksum_algorithm: String,
    /// The object's flexible checksum (base64, as S3 shows it), when the upload used one.
    pub checksum: Option<String>,
    /// The store echoed the flexible checksum: it checked it. Otherwise parts were checked by their ETag (MD5).
    pub checksum_confirmed: bool,
    pub etag: String,
    pub retries: u64,
    /// Parts an interrupted upload had stored that were found intact (size and checksum).
    pub resumed_parts: u64,
    /// Parts not sent by this run because the store already held them.
    pub skipped_parts: u64,
    /// Parts sent by this run.
    pub sent_parts: u64,
    pub upload_id: Option<String>,
}

impl Summary {
    /// Fills in what every upload reports the same way, once `bytes` is known.
    pub(crate) fn finish(&mut self, shared: &Shared, part_size: u64, started: Instant) {
        self.part_size = part_size;
        self.retries = shared.retries.load(Ordering::Relaxed);
        self.seconds = started.elapsed().as_secs_f64();
        self.mib_per_s = if self.seconds > 0.0 { self.bytes as f64 / MIB as f64 / self.seconds } else { 0.0 };
        self.checksum_confirmed = shared.confirmed.load(Ordering::Relaxed);
    }

    /// Records how the object was checked: `flexible` and the object's value, else MD5 (S3) or CRC-64 (OSS).
    pub(crate) fn checked_by(&mut self, opts: &UploadOptions, flexible: Option<checksum::Value>) {
        self.checksum_algorithm = checksum::kind(flexible.map(|v| v.algorithm), opts.send_md5).to_string();
        self.checksum = flexible.map(|v| v.algorithm.encode(v.value));
    }
}

/// Whether a part the store lists is the one recorded when it was sent: the same size, and the same ETag and
/// CRC-64 where the listing has them (s3s-fs lists parts without ETags; the recorded ETag was checked against
/// the part's MD5 when it was sent, and Complete checks it again).
pub(crate) fn listed_matches(listed: &crate::PartInfo, recorded: &PartRecord) -> bool {
    listed.size == recorded.size
        && (listed.etag.is_empty() || listed.etag.eq_ignore_ascii_case(&recorded.etag))
        && listed.crc64.is_none_or(|c| c == recorded.crc64)
}

pub use crate::events::Progress;
use crate::events::{completed, emit, part_stored, EventFn, RestartReason, UploadEvent};

#[derive(Debug)]
pub enum UploadError {
    Io(String),
    Store {
        context: String,
        error: StorageError,
    },
    /// The store refused the flexible checksum `algorithm` a request carried, as a store older than them does.
    ChecksumRefused {
        context: String,
        error: Box<StorageError>,
        algorithm: Algorithm,
    },
    /// A check after the upload failed: the stored object is not what was sent.
    Verify(String),
    Config(String),
    /// The producer of a streamed source failed.
    Source(String),
    /// Another process is uploading the same source to the same destination: it holds the resume state's lock.
    Busy {
        url: String,
        pid: Option<u32>,
        lock: PathBuf,
    },
    /// The store no longer knows the upload the resume state names (aborted elsewhere, expired by a lifecycle
    /// rule, or refused with AccessDenied after an earlier run recorded its parts), even after starting over.
    Vanished {
        context: String,
        error: Box<StorageError>,
        upload_id: String,
    },
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadError::Io(m) => write!(f, "{m}"),
            UploadError::Store { context, error } => write!(f, "{context}: {error}"),
            UploadError::ChecksumRefused { context, error, .. } => write!(f, "{context}: {error}"),
            UploadError::Verify(m) => write!(f, "verification failed: {m}"),
            UploadError::Config(m) => write!(f, "{m}"),
            UploadError::Source(m) => write!(f, "{m}"),
            UploadError::Busy { url, pid, lock } => {
                let who = pid.map_or("another imgport process".to_string(), |p| format!("another imgport (pid {p})"));
                write!(
                    f,
                    "{who} is uploading this source to {url} (it holds {}); wait for it to finish, or stop it and run \
                     this again to resume",
                    lock.display()
                )
            }
            UploadError::Vanished { context, error, upload_id } => {
                write!(f, "{context}: {error} (the store no longer accepts upload id {upload_id})")
            }
        }
    }
}

impl std::error::Error for UploadError {}

impl UploadError {
    /// Whether the store refused a flexible checksum it does not support.
    pub fn refuses_checksum(&self) -> bool {
        matches!(self, UploadError::ChecksumRefused { .. })
    }

    /// What went wrong, for callers that act on it (exit codes) without reading the message.
    pub fn kind(&self) -> ErrorKind {
        match self {
            UploadError::Io(_) => ErrorKind::Io,
            UploadError::Store { error, .. } => error.kind(),
            UploadError::ChecksumRefused { error, .. } => error.kind(),
            UploadError::Verify(_) => ErrorKind::Corrupt,
            UploadError::Config(_) => ErrorKind::InvalidArgument,
            UploadError::Source(_) => ErrorKind::Source,
            UploadError::Busy { .. } => ErrorKind::Busy,
            UploadError::Vanished { .. } => ErrorKind::UploadGone,
        }
    }

    /// Whether the store has lost the upload: NoSuchUpload from any call, or AccessDenied on an upload an earlier
    /// run started (the store forgot the id and refuses it rather than saying so). Starting over can help.
    pub(crate) fn upload_gone(&self, resumed: bool) -> bool {
        match self {
            UploadError::Store { error, .. } => {
                error.retry_class() == RetryClass::RestartUpload || resumed && error.code() == Some("AccessDenied")
            }
            UploadError::Vanished { .. } => true,
            _ => false,
        }
    }

    /// A lost upload's error, with the upload id for the user's abort command.
    pub(crate) fn vanished(self, upload_id: &str) -> UploadError {
        match self {
            UploadError::Store { context, error } => {
                UploadError::Vanished { context, error: Box::new(error), upload_id: upload_id.to_string() }
            }
            e => e,
        }
    }
}

/// Locks the resume state of `opts`'s upload of the source `id` for this run (nothing without a state folder).
pub(crate) fn lock_state(opts: &UploadOptions, source_path: &str) -> Result<Option<state::StateLock>, UploadError> {
    let Some(dir) = &opts.state_dir else { return Ok(None) };
    let path = state::file_for(dir, source_path, &opts.endpoint_id, bucket_of(opts), &opts.key);
    match state::lock(&path) {
        Ok(l) => Ok(Some(l)),
        Err(state::LockError::Busy { pid, path }) => Err(UploadError::Busy { url: opts.url.clone(), pid, lock: path }),
        Err(state::LockError::Io(e)) => Err(io_err(&format!("locking resume state {}", path.display()), e)),
    }
}

/// Concurrency that halves on throttling and grows back by one after a run of successes.
pub(crate) struct Limiter {
    max: usize,
    current: AtomicUsize,
    successes: AtomicUsize,
}

impl Limiter {
    fn throttled(&self) {
        let c = self.current.load(Ordering::Relaxed);
        self.current.store((c / 2).max(1), Ordering::Relaxed);
        self.successes.store(0, Ordering::Relaxed);
    }

    fn succeeded(&self) {
        let s = self.successes.fetch_add(1, Ordering::Relaxed) + 1;
        let c = self.current.load(Ordering::Relaxed);
        if c < self.max && s >= 2 * c {
            self.current.store(c + 1, Ordering::Relaxed);
            self.successes.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }
}

/// A shared budget of bytes per second.
struct RateLimit {
    rate: u64,
    next: tokio::sync::Mutex<Instant>,
}

impl RateLimit {
    async fn take(&self, bytes: u64) {
        let wait_until = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
            start
        };
        tokio::time::sleep_until(wait_until.into()).await;
    }
}

/// What every part of one upload shares: the store, retry policy, concurrency, rate and buffer pool. Used by the
/// file uploader here and the stream uploader (`stream/`).
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) retries: AtomicU64,
    pub(crate) limiter: Limiter,
    rate: Option<RateLimit>,
    policy: RetryPolicy,
    pool: Mutex<Vec<Vec<u8>>>,
    /// The store echoed a flexible checksum: it checks them, and parts need no MD5 for their ETag.
    pub(crate) confirmed: AtomicBool,
}

/// Waits of a part's retries: from up to 400 ms after the first failure, doubling, to at most 20 s.
fn retry_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy { base_delay: Duration::from_millis(400), ..RetryPolicy::default() }
        .with_max_attempts(max_attempts.max(1))
}

impl Shared {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, opts: &UploadOptions) -> Arc<Shared> {
        let concurrency = opts.concurrency.max(1);
        Arc::new(Shared {
            store,
            retries: AtomicU64::new(0),
            limiter: Limiter {
                max: concurrency,
                current: AtomicUsize::new(concurrency),
                successes: AtomicUsize::new(0),
            },
            rate: opts.rate_limit.filter(|r| *r > 0).map(|rate| RateLimit { rate, next: Instant::now().into() }),
            policy: retry_policy(opts.max_attempts),
            pool: Mutex::new(Vec::new()),
            confirmed: AtomicBool::new(false),
        })
    }

    /// Runs `op` until it succeeds, fails for good (a lost upload included), or the attempts run out.
    /// Throttling lowers concurrency; a skewed clock is corrected from the server's time.
    pub(crate) async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, StorageError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StorageError>>,
    {
        let on_retry = |err: &StorageError, class: NetClass| {
            self.retries.fetch_add(1, Ordering::Relaxed);
            match class {
                NetClass::ClockSkew => {
                    if let StorageError::Service { server_time: Some(t), .. } = err {
                        self.store.correct_clock(*t);
                    }
                }
                NetClass::Throttle => self.limiter.throttled(),
                _ => {}
            }
        };
        let hooks = Hooks { clock: None, on_retry: Some(Box::new(on_retry)) };
        self.policy.run_with(what, hooks, |_| op()).await
    }

    /// An empty pooled buffer (its capacity kept from earlier parts).
    pub(crate) fn take_buffer(&self) -> Vec<u8> {
        let mut b = self.pool.lock().ok().and_then(|mut p| p.pop()).unwrap_or_default();
        b.clear();
        b
    }

    pub(crate) fn give_back(&self, data: Bytes) {
        if let Ok(m) = data.try_into_mut() {
            if let Ok(mut p) = self.pool.lock() {
                p.push(m.into());
            }
        }
    }
}

/// The error of a request that carried the `flexible` checksum headers: a refusal of them is told apart.
pub(crate) fn store_error(context: String, error: StorageError, flexible: Option<Algorithm>) -> UploadError {
    match flexible {
        Some(algorithm) if error.refuses_checksum() => {
            UploadError::ChecksumRefused { context, error: Box::new(error), algorithm }
        }
        _ => UploadError::Store { context, error },
    }
}

pub(crate) fn io_err(what: &str, e: std::io::Error) -> UploadError {
    UploadError::Io(format!("{what}: {e}"))
}

/// A source written to while it is read would be stored as a mix of old and new bytes, each part with a correct
/// checksum of what was read: its identity is taken again before the parts are joined, and after a failed part.
pub(crate) fn check_unchanged(id: &state::SourceId) -> Result<(), UploadError> {
    match std::fs::File::open(&id.path).and_then(|mut f| state::source_id(&id.path, &mut f)) {
        Ok(now) if now == *id => Ok(()),
        Ok(_) => Err(UploadError::Source(format!(
            "{} changed while it was being uploaded (its size, modification time or content is not what it was at \
             the start); the upload was not completed, and a rerun starts over with the new contents",
            id.path
        ))),
        Err(e) => Err(io_err(&format!("checking {} again before completing the upload", id.path), e)),
    }
}

pub(crate) fn md5_hex(data: &[u8]) -> String {
    hex(&md5_many::md5(data))
}

/// The Content-MD5 header of an MD5 in hex; none for an empty (not computed) one.
fn content_md5(md5_hex: &str) -> Option<String> {
    use base64::Engine;
    let md5 = hex_decode(md5_hex).filter(|b| b.len() == 16)?;
    Some(base64::engine::general_purpose::STANDARD.encode(md5))
}

/// Bytes read and hashed at a time (fits in a core's L2 cache).
const READ_PIECE: usize = 256 << 10;

/// The checksums of what a PUT sends, taken before it is sent (headers need them first).
#[derive(Debug, Default)]
pub(crate) struct RangeSums {
    /// CRC-64/XZ of the bytes hashed, when the body is read again to be sent: the two must agree.
    pub crc64: Option<u64>,
    pub flexible: Option<checksum::Value>,
    /// Hex, or empty when not computed.
    pub md5_hex: String,
}

/// The checksums of `len` bytes of `file` at `offset` (the flexible one and MD5 when asked for), read in small
/// pieces off the async threads.
async fn range_sums(
    file: &Arc<std::fs::File>,
    offset: u64,
    len: u64,
    flexible: Option<Algorithm>,
    md5: bool,
) -> Result<RangeSums, UploadError> {
    let file = file.clone();
    tokio::task::spawn_blocking(move || {
        let mut crc = crc64::Crc64::new();
        let mut flex = flexible.map(checksum::Running::new);
        let mut h = md5.then(Md5State::new);
        let mut buf = vec![0u8; READ_PIECE];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(READ_PIECE as u64) as usize;
            crate::body::read_at(&file, &mut buf[..n], offset + done)?;
            crc.update(&buf[..n]);
            if let Some(f) = flex.as_mut() {
                f.update(&buf[..n]);
            }
            if let Some(h) = h.as_mut() {
                h.update(&buf[..n]);
            }
            done += n as u64;
        }
        Ok::<_, std::io::Error>(RangeSums {
            crc64: Some(crc.finish()),
            flexible: flexible.zip(flex).map(|(algorithm, f)| checksum::Value { algorithm, value: f.finish() }),
            md5_hex: h.map(|h| hex(&h.finalize())).unwrap_or_default(),
        })
    })
    .await
    .map_err(|e| UploadError::Io(format!("reader task: {e}")))?
    .map_err(|e| io_err(&format!("reading the source at {offset}"), e))
}

/// What a part (or a single PUT) sends.
pub(crate) enum PartData {
    /// Bytes in memory with their CRC-64: a streamed conversion's output, which cannot be read again.
    Memory { data: Bytes, crc: u64 },
    /// A range of the source file, read as it is sent (each attempt anew) and checksummed on the way.
    File(FileRange),
}

impl PartData {
    fn len(&self) -> u64 {
        match self {
            PartData::Memory { data, .. } => data.len() as u64,
            PartData::File(r) => r.len(),
        }
    }

    /// The body of one attempt, and the range whose checksum it records.
    fn attempt(&self) -> (Body, Option<FileRange>) {
        match self {
            PartData::Memory { data, .. } => (Body::Bytes(data.clone()), None),
            PartData::File(r) => {
                let fresh = r.fresh();
                (Body::File(fresh.clone()), Some(fresh))
            }
        }
    }

    /// The part's flexible checksum, and for a file the CRC-64 of the bytes it was taken from.
    async fn flexible(&self, algorithm: Algorithm) -> Result<(checksum::Value, Option<u64>), UploadError> {
        match self {
            PartData::Memory { data, .. } => Ok((checksum::Value { algorithm, value: algorithm.checksum(data) }, None)),
            PartData::File(r) => {
                let sums = range_sums(r.file(), r.offset(), r.len(), Some(algorithm), false).await?;
                let value = sums.flexible.ok_or_else(|| UploadError::Io("no checksum was taken".into()))?;
                Ok((value, sums.crc64))
            }
        }
    }

    /// The CRC-64 of what an attempt sent; an error when it is not what `read_before` (the CRC-64 of the bytes
    /// the checksums in the headers were taken from) says.
    fn sent_crc(&self, sent: Option<&FileRange>, read_before: Option<u64>) -> Result<u64, StorageError> {
        let crc = self.sent_crc_only(sent)?;
        match read_before {
            Some(before) if before != crc => Err(StorageError::SourceChanged(
                "the source's bytes changed between their checksum and their sending".into(),
            )),
            _ => Ok(crc),
        }
    }

    fn sent_crc_only(&self, sent: Option<&FileRange>) -> Result<u64, StorageError> {
        match (self, sent) {
            (PartData::Memory { crc, .. }, _) => Ok(*crc),
            (PartData::File(_), Some(r)) => r
                .sent_crc64()
                .ok_or_else(|| StorageError::Protocol("the store answered before the whole body was sent".into())),
            (PartData::File(_), None) => Err(StorageError::Protocol("no record of the bytes sent".into())),
        }
    }
}

/// Uploads `opts.source` to `opts.key`; `events` receives what happens (progress, restarts, completion). After a
/// skewed-clock answer the store signs with the server's time ([`ObjectStore::correct_clock`]).
pub async fn upload(
    store: Arc<dyn ObjectStore>,
    opts: &UploadOptions,
    events: Option<EventFn>,
) -> Result<Summary, UploadError> {
    let started = Instant::now();
    let source_name = opts.source.to_string_lossy().to_string();
    let abs = std::fs::canonicalize(&opts.source).map_err(|e| io_err(&source_name, e))?;
    let mut file = std::fs::File::open(&abs).map_err(|e| io_err(&source_name, e))?;
    let id = state::source_id(&abs.to_string_lossy(), &mut file).map_err(|e| io_err(&source_name, e))?;
    // Held until this returns (or is dropped on Ctrl-C): a second run of the same upload stops here.
    let _lock = lock_state(opts, &id.path)?;
    let size = id.size;
    // An interrupted upload of this source keeps its part size unless another is asked for, and with
    // `--checksum auto` its checksum (Content-MD5 where the store refused flexible checksums).
    let saved = opts
        .state_dir
        .as_ref()
        .filter(|_| opts.resume)
        .and_then(|d| state::load(&state::file_for(d, &id.path, &opts.endpoint_id, bucket_of(opts), &opts.key)))
        .filter(|s| s.source == id && s.stream.is_none());
    let mut flexible = match (&saved, opts.checksum) {
        (Some(s), Choice::Auto) if opts.send_md5 => s.checksum,
        _ => opts.flexible(),
    };
    let part_size = match opts.part_size.or(saved.map(|s| s.part_size)) {
        Some(p) => p,
        None => auto_part_size_for(size, opts.concurrency).max(opts.min_part_size),
    };
    check_part_size(part_size, size, opts)?;
    let shared = Shared::new(store.clone(), opts);
    let file = Arc::new(file);

    let mut summary = if size < part_size || size == 0 {
        match single_put(&shared, &file, size, opts, flexible).await {
            Err(e) if opts.checksum == Choice::Auto && e.refuses_checksum() => {
                emit(&events, checksum_refused(&e));
                shared.confirmed.store(false, Ordering::Relaxed);
                single_put(&shared, &file, size, opts, None).await?
            }
            r => r.map_err(explain_refusal)?,
        }
    } else {
        let parts = size.div_ceil(part_size);
        if parts > MAX_PARTS {
            return Err(UploadError::Config(format!(
                "{parts} parts of {part_size} bytes: more than {MAX_PARTS}; choose a larger --part-size"
            )));
        }
        // A vanished upload (aborted elsewhere, expired by a lifecycle rule) is started over once: its resume
        // state is forgotten and a new upload started.
        let mut restarted = false;
        loop {
            // The upload being added to, and whether an earlier run started it.
            let mut current: Option<(String, bool)> = None;
            let plan = Plan { part_size, flexible };
            let run = multipart(&shared, &file, &id, plan, opts, events.clone(), &mut current).await;
            let error = match run {
                Ok(s) => break s,
                Err(e) => e,
            };
            // A store older than flexible checksums: start again with Content-MD5 (the upload was announced
            // with the checksum, so its parts cannot change kind).
            if error.refuses_checksum() {
                if opts.checksum != Choice::Auto {
                    return Err(explain_refusal(error));
                }
                emit(&events, checksum_refused(&error));
                shared.confirmed.store(false, Ordering::Relaxed);
                forget_upload(store.as_ref(), opts, &id, current.map(|(upload_id, _)| upload_id)).await;
                flexible = None;
                continue;
            }
            let Some((upload_id, _)) = current.filter(|(_, resumed)| error.upload_gone(*resumed)) else {
                return Err(error);
            };
            if restarted {
                return Err(error.vanished(&upload_id));
            }
            restarted = true;
            emit(
                &events,
                UploadEvent::Restarted { reason: RestartReason::UploadLost { upload_id: upload_id.clone() } },
            );
            forget_upload(store.as_ref(), opts, &id, Some(upload_id)).await;
        }
    };
    summary.bytes = size;
    summary.finish(&shared, part_size, started);
    emit(&events, completed(&summary));
    Ok(summary)
}

/// Aborts `upload_id` (best effort: the store may have lost it already) and forgets its resume state, before the
/// upload starts over.
async fn forget_upload(store: &dyn ObjectStore, opts: &UploadOptions, id: &state::SourceId, upload_id: Option<String>) {
    if let Some(upload_id) = upload_id {
        let _ = store.abort_multipart(&opts.key, &upload_id).await;
    }
    if let Some(dir) = &opts.state_dir {
        state::remove(&state::file_for(dir, &id.path, &opts.endpoint_id, bucket_of(opts), &opts.key));
    }
}

/// The event of a store refusing a flexible checksum ([`UploadError::ChecksumRefused`]).
fn checksum_refused(error: &UploadError) -> UploadEvent {
    let algorithm = match error {
        UploadError::ChecksumRefused { algorithm, .. } => algorithm.name(),
        _ => "",
    };
    let reason = RestartReason::ChecksumRefused { algorithm: algorithm.to_string(), error: error.to_string() };
    UploadEvent::Restarted { reason }
}

/// A refusal of the flexible checksum the user asked for, with what to do about it.
fn explain_refusal(error: UploadError) -> UploadError {
    match &error {
        UploadError::ChecksumRefused { algorithm, .. } => UploadError::Config(format!(
            "{error}\nthe store does not take {} checksums: use --checksum md5 (or auto, which falls back to it)",
            algorithm.name()
        )),
        _ => error,
    }
}

pub(crate) fn check_part_size(part_size: u64, size: u64, opts: &UploadOptions) -> Result<(), UploadError> {
    if part_size < opts.min_part_size && size > part_size {
        return Err(UploadError::Config(format!(
            "part size {part_size} is below this store's minimum of {}",
            opts.min_part_size
        )));
    }
    if part_size > 5 << 30 {
        return Err(UploadError::Config(format!("part size {part_size} is above the 5 GiB maximum")));
    }
    Ok(())
}

pub(crate) fn bucket_of(opts: &UploadOptions) -> &str {
    opts.url.split_once("://").map_or("", |(_, r)| r.split('/').next().unwrap_or(""))
}

async fn single_put(
    shared: &Arc<Shared>,
    file: &Arc<std::fs::File>,
    size: u64,
    opts: &UploadOptions,
    flexible: Option<Algorithm>,
) -> Result<Summary, UploadError> {
    // S3 checks the body against its flexible checksum or Content-MD5, which are needed before it is sent (the
    // MD5 also checks the ETag where the store does not echo the checksum); OSS checks the CRC-64 taken while
    // sending.
    let sums = if opts.send_md5 { range_sums(file, 0, size, flexible, true).await? } else { RangeSums::default() };
    put_whole(shared, opts, PartData::File(FileRange::new(file.clone(), 0, size)), sums).await
}

/// One PutObject of the whole object, checked like a part, then a HEAD.
pub(crate) async fn put_whole(
    shared: &Arc<Shared>,
    opts: &UploadOptions,
    data: PartData,
    sums: RangeSums,
) -> Result<Summary, UploadError> {
    let size = data.len();
    let md5 = sums.md5_hex;
    let mut put = opts.put.clone();
    put.checksum = sums.flexible;
    if opts.send_md5 {
        // Checked by the stores that ignore flexible checksums.
        put.content_md5 = content_md5(&md5);
    }
    let sent_md5 = put.content_md5.is_some();
    let store = &shared.store;
    let res = shared
        .retry("PutObject", || async {
            if let Some(r) = &shared.rate {
                r.take(size).await;
            }
            let (body, sent) = data.attempt();
            let r = store.put_object(&opts.key, body, &put).await?;
            let crc = data.sent_crc(sent.as_ref(), sums.crc64)?;
            if check_part(shared, &r, crc, &md5, sums.flexible, sent_md5)? == Checked::NotYet {
                return Err(StorageError::Protocol("the answer confirms no checksum of the object".into()));
            }
            Ok((r, crc))
        })
        .await
        .map_err(|e| store_error(format!("PutObject {}", opts.url), e, sums.flexible.map(|v| v.algorithm)))?;
    let (res, crc) = res;
    verify_head(shared, opts, size, Some(crc)).await?;
    let mut s =
        Summary { parts: 1, sent_parts: 1, crc64: Some(format!("{crc}")), etag: res.etag, ..Default::default() };
    s.checked_by(opts, sums.flexible);
    Ok(s)
}

/// What checked a part the store took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    /// Its answer carried the part's CRC-64 (OSS), its flexible checksum or its MD5 as ETag, or the store
    /// verified the Content-MD5 sent with it.
    Yes,
    /// Nothing yet: a flexible checksum sent without Content-MD5, neither echoed nor compared with the ETag.
    NotYet,
}

/// A part (or object) answer must carry the checksums of what was sent: the CRC-64 (OSS), the flexible checksum
/// where the store echoes it (noted in `shared`: later parts need no MD5 then), and an ETag that is the MD5
/// where it is one. `md5` is empty where it was not computed; `sent_md5`: it went as Content-MD5.
fn check_part(
    shared: &Shared,
    r: &crate::PutResult,
    crc: u64,
    md5: &str,
    flexible: Option<checksum::Value>,
    sent_md5: bool,
) -> Result<Checked, StorageError> {
    let store = shared.store.as_ref();
    let mut echoed = false;
    if let (Some(sent), Some(got)) = (flexible, r.checksum) {
        if got != sent.value {
            let (name, got, sent) =
                (sent.algorithm.name(), sent.algorithm.encode(got), sent.algorithm.encode(sent.value));
            return Err(StorageError::Protocol(format!("server {name} {got} differs from the sent data's {sent}")));
        }
        echoed = true;
    }
    let mut crc_checked = false;
    if let Some(got) = r.crc64 {
        if got != crc {
            return Err(StorageError::Protocol(format!("server CRC-64 {got} differs from the sent data's {crc}")));
        }
        crc_checked = true;
    } else if store.has_crc64() {
        return Err(StorageError::Protocol("no x-oss-hash-crc64ecma in the answer".into()));
    }
    // An echoed checksum is the store's word: the ETag need not be an MD5 then (SSE-KMS).
    let mut etag_checked = false;
    if !echoed && !md5.is_empty() && etag_is_md5(store, &r.etag) {
        let etag = r.etag.to_ascii_lowercase();
        if etag != md5 {
            return Err(StorageError::Protocol(format!("ETag {etag} is not the MD5 of the sent data ({md5})")));
        }
        etag_checked = true;
    }
    if echoed {
        shared.confirmed.store(true, Ordering::Relaxed);
    }
    let checked = echoed || crc_checked || etag_checked || sent_md5;
    Ok(if checked { Checked::Yes } else { Checked::NotYet })
}

/// Whether `etag` is a store's MD5 of the body (32 hex digits, from a store whose ETags are MD5s).
fn etag_is_md5(store: &dyn ObjectStore, etag: &str) -> bool {
    store.etag_is_md5() && etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn verify_head(
    shared: &Arc<Shared>,
    opts: &UploadOptions,
    size: u64,
    crc: Option<u64>,
) -> Result<(), UploadError> {
    let meta = shared
        .retry("HeadObject", || shared.store.head_object(&opts.key))
        .await
        .map_err(|error| UploadError::Store { context: format!("HeadObject {}", opts.url), error })?;
    if meta.len != size {
        return Err(UploadError::Verify(format!("{} holds {} bytes, the source {size}", opts.url, meta.len)));
    }
    if let (Some(want), Some(got)) = (crc, meta.crc64) {
        if want != got {
            return Err(UploadError::Verify(format!("{}: CRC-64 {got}, the source's {want}", opts.url)));
        }
    }
    Ok(())
}

/// How a multipart upload is cut and checked.
#[derive(Clone, Copy)]
struct Plan {
    part_size: u64,
    /// The flexible checksum of every part (S3), or none (Content-MD5, OSS).
    flexible: Option<Algorithm>,
}

async fn multipart(
    shared: &Arc<Shared>,
    file: &Arc<std::fs::File>,
    id: &state::SourceId,
    plan: Plan,
    opts: &UploadOptions,
    events: Option<EventFn>,
    current: &mut Option<(String, bool)>,
) -> Result<Summary, UploadError> {
    let Plan { part_size, flexible } = plan;
    let size = id.size;
    let nparts = size.div_ceil(part_size) as u32;
    let part_len = |n: u32| -> u64 { (size - (n as u64 - 1) * part_size).min(part_size) };
    let store = shared.store.clone();
    let bucket = bucket_of(opts).to_string();
    let state_path =
        opts.state_dir.as_ref().map(|d| state::file_for(d, &id.path, &opts.endpoint_id, &bucket, &opts.key));
    let ctx = |what: &str| format!("{what} {}", opts.url);

    // Resume when the same source (unchanged) was being sent to the same place with the same part size.
    let mut st: Option<UploadState> = None;
    if let Some(p) = &state_path {
        if let Some(old) = state::load(p) {
            let same = old.source == *id && old.part_size == part_size && old.checksum == flexible;
            if opts.resume && same && old.stream.is_none() {
                st = Some(old);
            } else {
                // The old upload cannot be continued: do not leave its parts behind.
                if old.source != *id {
                    let reason = RestartReason::SourceChanged { path: id.path.clone() };
                    emit(&events, UploadEvent::Restarted { reason });
                } else if opts.resume && old.stream.is_none() && old.checksum != flexible {
                    let from = old.checksum_kind().to_string();
                    let to = checksum::kind(flexible, opts.send_md5).to_string();
                    emit(&events, UploadEvent::Restarted { reason: RestartReason::ChecksumChanged { from, to } });
                }
                let _ = store.abort_multipart(&opts.key, &old.upload_id).await;
                state::remove(p);
            }
        }
    }
    let mut resumed = 0u64;
    if let Some(s) = st.as_mut().filter(|s| s.stream.is_none()) {
        *current = Some((s.upload_id.clone(), true));
        let listed = shared
            .retry("ListParts", || store.list_parts(&opts.key, &s.upload_id))
            .await
            .map_err(|error| UploadError::Store { context: ctx("ListParts"), error })?;
        let listed: BTreeMap<u32, crate::PartInfo> = listed.into_iter().map(|p| (p.number, p)).collect();
        // A part recorded without the upload's flexible checksum could not be named at Complete: sent again.
        let flexible = s.checksum.is_some();
        s.parts.retain(|n, rec| {
            let Some(p) = listed.get(n) else { return false };
            *n <= nparts && rec.size == part_len(*n) && listed_matches(p, rec) && rec.checksum.is_some() == flexible
        });
        resumed = s.parts.len() as u64;
    }
    let mut st = match st {
        Some(s) => s,
        None => {
            let upload_id = shared
                .retry("InitiateMultipartUpload", || store.initiate_multipart(&opts.key, &opts.put, flexible))
                .await
                .map_err(|error| store_error(ctx("InitiateMultipartUpload"), error, flexible))?;
            UploadState {
                version: state::VERSION,
                source: id.clone(),
                endpoint: opts.endpoint_id.clone(),
                bucket: bucket.clone(),
                key: opts.key.clone(),
                url: opts.url.clone(),
                upload_id,
                part_size,
                created: imgport_auth::time::now(),
                parts: BTreeMap::new(),
                stream: None,
                checksum: flexible,
            }
        }
    };
    if current.is_none() {
        *current = Some((st.upload_id.clone(), false));
    }
    let save = |st: &UploadState| -> Result<(), UploadError> {
        match &state_path {
            Some(p) => state::save(p, st).map_err(|e| io_err(&format!("saving resume state {}", p.display()), e)),
            None => Ok(()),
        }
    };
    save(&st)?;

    let upload_id = st.upload_id.clone();
    let mut done_bytes: u64 = st.parts.values().map(|p| p.size).sum();
    let todo: Vec<u32> = (1..=nparts).filter(|n| !st.parts.contains_key(n)).collect();
    emit(&events, UploadEvent::Started { upload_id: upload_id.clone(), resumed_parts: resumed });
    let report = |done: u64, in_flight: usize| {
        emit(&events, UploadEvent::Progress(Progress { total: size, done, in_flight }));
    };
    report(done_bytes, 0);

    // S3 parts need their MD5 before they are sent (Content-MD5), and their flexible checksum, until the store
    // shows that it echoes those: hashed ahead, many parts at a time, in one read. OSS parts are checked by
    // CRC-64 alone: MD5 would cost more CPU than the send itself.
    let mut digests = opts.send_md5.then(|| {
        let spans = todo.iter().map(|&n| PartSpan { number: n, offset: (n as u64 - 1) * part_size, len: part_len(n) });
        PartDigests::start(file.clone(), spans.collect(), opts.concurrency, flexible)
    });
    let mut set: tokio::task::JoinSet<Result<(u32, PartRecord), UploadError>> = tokio::task::JoinSet::new();
    let mut next = todo.into_iter().peekable();
    loop {
        while set.len() < shared.limiter.limit() && next.peek().is_some() {
            let Some(n) = next.next() else { break };
            let (shared, file, key, upload_id, url) =
                (shared.clone(), file.clone(), opts.key.clone(), upload_id.clone(), opts.url.clone());
            let len = part_len(n);
            let md5 = opts.send_md5;
            if let Some(d) = digests.as_ref().filter(|_| flexible.is_some() && shared.confirmed.load(Ordering::Relaxed))
            {
                // The store echoes the parts' checksums: the hasher stops before its next group (the parts it
                // hashed keep their sums; a part the store does not echo after all gets its MD5 taken on its own).
                d.stop();
            }
            let digest = digests.as_mut().map(|d| d.take(n));
            set.spawn(async move {
                let offset = (n as u64 - 1) * part_size;
                let sums = match digest {
                    Some(d) => match d.await {
                        Ok(sums) => sums,
                        // Stopped early because the store echoes checksums: see `d.stop()` above.
                        Err(_) if flexible.is_some() && shared.confirmed.load(Ordering::Relaxed) => {
                            RangeSums::default()
                        }
                        Err(e) => return Err(e),
                    },
                    None => RangeSums::default(),
                };
                let target = PartTarget { key: &key, upload_id: &upload_id, url: &url, send_md5: md5, flexible };
                let data = PartData::File(FileRange::new(file, offset, len));
                let rec = send_part(&shared, &target, n, offset, data, sums).await?;
                Ok((n, rec))
            });
            report(done_bytes, set.len());
        }
        let Some(joined) = set.join_next().await else { break };
        let (n, rec) = match joined.map_err(|e| UploadError::Io(format!("part task: {e}")))? {
            Ok(r) => r,
            // A part that fails its checksum because the file changed under it: say so.
            Err(e) => return Err(check_unchanged(id).err().unwrap_or(e)),
        };
        done_bytes += rec.size;
        emit(&events, part_stored(n, &rec, true));
        st.parts.insert(n, rec);
        save(&st)?;
        report(done_bytes, set.len());
    }

    check_unchanged(id)?;
    let done = complete_verified(shared, opts, &st, size).await?;
    if let Some(p) = &state_path {
        state::remove(p);
    }
    let mut s = Summary {
        parts: nparts as u64,
        crc64: done.crc64.map(|c| c.to_string()),
        etag: done.etag,
        resumed_parts: resumed,
        skipped_parts: resumed,
        sent_parts: nparts as u64 - resumed,
        upload_id: Some(upload_id),
        ..Default::default()
    };
    s.checked_by(opts, done.flexible);
    Ok(s)
}

/// Where a part goes.
pub(crate) struct PartTarget<'a> {
    pub key: &'a str,
    pub upload_id: &'a str,
    pub url: &'a str,
    /// Send Content-MD5 (S3) where no flexible checksum is sent.
    pub send_md5: bool,
    /// The flexible checksum each part carries (S3), as the upload announced.
    pub flexible: Option<Algorithm>,
}

/// Uploads part `n` (at `offset` of the object) with retries, checks the answer's checksums, lets concurrency
/// grow back and returns the buffer to the pool.
pub(crate) async fn send_part(
    shared: &Arc<Shared>,
    to: &PartTarget<'_>,
    n: u32,
    offset: u64,
    data: PartData,
    sums: RangeSums,
) -> Result<PartRecord, UploadError> {
    let len = data.len();
    let RangeSums { crc64, flexible, md5_hex } = sums;
    // The flexible checksum from the hasher, or taken now (a part the hasher did not reach).
    let (flexible, read_before) = match (to.flexible, flexible) {
        (Some(_), Some(v)) => (Some(v), crc64),
        (Some(alg), None) => {
            let (v, crc) = data.flexible(alg).await?;
            (Some(v), crc)
        }
        // The hasher's CRC-64 still tells whether the bytes sent are those it hashed.
        (None, _) => (None, crc64),
    };
    // Content-MD5 whenever the MD5 is known (S3): stores that ignore flexible checksums still check the part.
    let content_md5 = if to.send_md5 { content_md5(&md5_hex) } else { None };
    let check = PartCheck { content_md5, checksum: flexible };
    let sent_md5 = check.content_md5.is_some();
    let context = || format!("UploadPart {n} ({len} bytes at {offset}) of {}, upload id {}", to.url, to.upload_id);
    let store = shared.store.clone();
    let r = shared
        .retry("UploadPart", || async {
            if let Some(r) = &shared.rate {
                r.take(len).await;
            }
            let (body, sent) = data.attempt();
            let r = store.upload_part(to.key, to.upload_id, n, body, check.clone()).await?;
            let crc = data.sent_crc(sent.as_ref(), read_before)?;
            let checked = check_part(shared, &r, crc, &md5_hex, flexible, sent_md5)?;
            Ok((r, crc, checked))
        })
        .await
        .map_err(|error| store_error(context(), error, to.flexible))?;
    let (r, crc, checked) = r;
    let mut md5_hex = md5_hex;
    if checked == Checked::NotYet {
        // The store did not echo this part's checksum (though it echoed another's) and its MD5 was not taken:
        // take it now and compare it with the ETag, or refuse a part nothing checked.
        md5_hex = check_etag_later(shared, &data, &r.etag).await.map_err(|e| match e {
            UploadError::Verify(m) => UploadError::Verify(format!("{}: {m}", context())),
            e => e,
        })?;
    }
    shared.limiter.succeeded();
    if let PartData::Memory { data, .. } = data {
        shared.give_back(data);
    }
    Ok(PartRecord { size: len, crc64: crc, md5_hex, etag: r.etag, checksum: flexible.map(|v| v.value) })
}

/// The MD5 of a part its store took with nothing checked ([`Checked::NotYet`]), compared with the part's ETag.
async fn check_etag_later(shared: &Shared, data: &PartData, etag: &str) -> Result<String, UploadError> {
    if !etag_is_md5(shared.store.as_ref(), etag) {
        return Err(UploadError::Verify(format!(
            "the store neither echoed the part's checksum nor answered its MD5 as ETag ({etag}): nothing checked \
             what it stored; use --checksum md5"
        )));
    }
    let md5 = match data {
        PartData::Memory { data, .. } => md5_hex(data),
        PartData::File(r) => range_sums(r.file(), r.offset(), r.len(), None, true).await?.md5_hex,
    };
    if !etag.eq_ignore_ascii_case(&md5) {
        return Err(UploadError::Verify(format!("ETag {etag} is not the MD5 of the sent data ({md5})")));
    }
    Ok(md5)
}

/// A completed and checked object.
pub(crate) struct Completed {
    pub etag: String,
    /// The CRC-64 combined from the parts'.
    pub crc64: Option<u64>,
    /// The object's flexible checksum, combined from the parts'.
    pub flexible: Option<checksum::Value>,
}

/// The object's flexible checksum, combined from those of `st.parts` (all of its parts, in order).
fn whole_checksum(st: &UploadState) -> Result<Option<checksum::Value>, UploadError> {
    let Some(algorithm) = st.checksum else { return Ok(None) };
    let mut value: Option<u64> = None;
    for (n, p) in &st.parts {
        let Some(c) = p.checksum else {
            return Err(UploadError::Io(format!("the resume state holds no {} of part {n}", algorithm.name())));
        };
        value = Some(value.map_or(c, |v| algorithm.combine(v, c, p.size)));
    }
    Ok(Some(checksum::Value { algorithm, value: value.unwrap_or_else(|| algorithm.checksum(b"")) }))
}

/// Completes the upload of `st.parts` (all of the object's parts), then checks the object: combined CRC (OSS),
/// flexible checksum where the store echoes it, or multipart ETag (S3), and the length.
pub(crate) async fn complete_verified(
    shared: &Arc<Shared>,
    opts: &UploadOptions,
    st: &UploadState,
    size: u64,
) -> Result<Completed, UploadError> {
    let store = shared.store.clone();
    let upload_id = st.upload_id.clone();
    let ctx = |what: &str| format!("{what} {}", opts.url);
    let list: Vec<CompletedPart> = st
        .parts
        .iter()
        .map(|(n, p)| CompletedPart { number: *n, etag: p.etag.clone(), checksum: p.checksum })
        .collect();
    let whole = whole_checksum(st)?;
    let combined = st.parts.values().fold(None, |acc: Option<u64>, p| {
        Some(match acc {
            None => p.crc64,
            Some(a) => crc64::combine(a, p.crc64, p.size),
        })
    });
    let mut attempts_done = 0;
    let res = shared
        .retry("CompleteMultipartUpload", || {
            attempts_done += 1;
            let (store, key, id, list) = (&store, &opts.key, &upload_id, &list);
            let first = attempts_done == 1;
            async move {
                match store.complete_multipart(key, id, list, whole).await {
                    // A retry after a lost answer: the first attempt may have completed it.
                    Err(e) if !first && e.retry_class() == RetryClass::RestartUpload => {
                        let m = store.head_object(key).await?;
                        Ok(crate::PutResult { etag: m.etag, crc64: m.crc64, checksum: None })
                    }
                    r => r,
                }
            }
        })
        .await
        .map_err(|error| store_error(ctx("CompleteMultipartUpload"), error, st.checksum))?;
    if let (Some(want), Some(got)) = (combined, res.crc64) {
        if want != got {
            return Err(UploadError::Verify(format!("object CRC-64 {got}, combined part CRC-64 {want}")));
        }
    } else if store.has_crc64() {
        return Err(UploadError::Verify("no CRC-64 in the CompleteMultipartUpload answer".into()));
    }
    if let (Some(want), Some(got)) = (whole, res.checksum) {
        if want.value != got {
            let (name, got, want) =
                (want.algorithm.name(), want.algorithm.encode(got), want.algorithm.encode(want.value));
            return Err(UploadError::Verify(format!("object {name} {got}, combined from the parts' {want}")));
        }
        shared.confirmed.store(true, Ordering::Relaxed);
    }
    // Parts sent after the store began echoing their checksums have no MD5, so no multipart ETag to compare
    // with: each was checked by its echo, and a store that echoes checks the whole object's FULL_OBJECT
    // checksum sent with Complete (S3 refuses a mismatch).
    if let Some(want) = multipart_etag(&st.parts) {
        let got = res.etag.to_ascii_lowercase();
        if got.contains('-') && got != want {
            return Err(UploadError::Verify(format!("multipart ETag {got}, expected {want}")));
        }
    }
    verify_head(shared, opts, size, combined).await?;
    Ok(Completed { etag: res.etag, crc64: combined, flexible: whole })
}

/// `hex(md5(md5(part 1) ++ md5(part 2) ...))-N`, the ETag S3 and OSS give multipart objects; `None` when a part's
/// MD5 was not computed (OSS, checked by CRC-64 instead).
fn multipart_etag(parts: &BTreeMap<u32, PartRecord>) -> Option<String> {
    let mut h = Md5State::new();
    for p in parts.values() {
        h.update(&hex_decode(&p.md5_hex).filter(|b| b.len() == 16)?);
    }
    Some(format!("{}-{}", hex(&h.finalize()), parts.len()))
}

/// Where the resume state of an upload lives (for messages and `uploads` commands).
pub fn state_file(dir: &Path, source: &Path, endpoint: &str, bucket: &str, key: &str) -> Option<PathBuf> {
    let abs = std::fs::canonicalize(source).ok()?;
    Some(state::file_for(dir, &abs.to_string_lossy(), endpoint, bucket, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes() {
        assert_eq!(auto_part_size(0), 64 * MIB);
        assert_eq!(auto_part_size(10 << 30), 64 * MIB);
        let big = 1u64 << 40;
        let p = auto_part_size(big);
        assert_eq!(p % MIB, 0);
        assert!(big.div_ceil(p) <= 9000);
        // Files: one PUT up to 64 MiB, then at least four parts per connection, of 8 to 64 MiB.
        assert_eq!(auto_part_size_for(0, 8), 64 * MIB);
        assert_eq!(auto_part_size_for(64 * MIB, 8), 64 * MIB);
        assert_eq!(auto_part_size_for(64 * MIB + 1, 8), 8 * MIB);
        assert_eq!(auto_part_size_for(512 * MIB, 8), 16 * MIB);
        assert_eq!(auto_part_size_for(512 * MIB, 1), 64 * MIB);
        assert_eq!(auto_part_size_for(2 << 30, 8), 64 * MIB);
        assert_eq!(auto_part_size_for(big, 8), p);
    }

    #[test]
    fn upload_errors_have_kinds() {
        let busy = UploadError::Busy { url: "oss://b/k".into(), pid: None, lock: PathBuf::from("l") };
        assert_eq!(busy.kind(), ErrorKind::Busy);
        assert_eq!(UploadError::Config("x".into()).kind(), ErrorKind::InvalidArgument);
        assert_eq!(UploadError::Verify("x".into()).kind(), ErrorKind::Corrupt);
        let denied = crate::error::from_response(403, "<Error><Code>AccessDenied</Code></Error>", None, None);
        let store = UploadError::Store { context: "UploadPart 1".into(), error: denied };
        assert_eq!(store.kind(), ErrorKind::AccessDenied);
        assert_eq!(store.vanished("u1").kind(), ErrorKind::UploadGone);
    }

    #[test]
    fn limiter_halves_and_grows() {
        let l = Limiter { max: 8, current: AtomicUsize::new(8), successes: AtomicUsize::new(0) };
        l.throttled();
        assert_eq!(l.limit(), 4);
        l.throttled();
        l.throttled();
        l.throttled();
        assert_eq!(l.limit(), 1);
        for _ in 0..2 {
            l.succeeded();
        }
        assert_eq!(l.limit(), 2);
    }
}
