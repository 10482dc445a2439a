//! Request and response bodies, streamed: files are served and received in bounded chunks, so memory stays flat
//! whatever the object size.

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use md5::{Digest, Md5};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The response body type of every handler.
pub type Body = BoxBody<Bytes, io::Error>;

const CHUNK: usize = 1024 * 1024;

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Streams a byte range that spans a list of open files (an object's segments).
pub struct FileBody {
    /// (file positioned at its first byte to send, bytes to send from it)
    files: VecDeque<(tokio::fs::File, u64)>,
    remaining: u64,
    buf: Vec<u8>,
}

impl FileBody {
    /// Serves `len` bytes from `offset` of the concatenation of `files` (each with its size).
    pub fn new(files: Vec<(std::fs::File, u64)>, offset: u64, len: u64) -> io::Result<FileBody> {
        use std::io::{Seek, SeekFrom};
        let mut out = VecDeque::new();
        let (mut skip, mut left) = (offset, len);
        for (mut f, size) in files {
            if left == 0 {
                break;
            }
            if skip >= size {
                skip -= size;
                continue;
            }
            f.seek(SeekFrom::Start(skip))?;
            let take = (size - skip).min(left);
            out.push_back((tokio::fs::File::from_std(f), take));
            left -= take;
            skip = 0;
        }
        Ok(FileBody { files: out, remaining: len - left, buf: vec![0; CHUNK] })
    }
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            let Some((file, left)) = this.files.front_mut() else { return Poll::Ready(None) };
            if *left == 0 {
                this.files.pop_front();
                continue;
            }
            let want = (*left).min(this.buf.len() as u64) as usize;
            let mut rb = ReadBuf::new(&mut this.buf[..want]);
            ready!(Pin::new(file).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                return Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::UnexpectedEof, "object file ended early"))));
            }
            *left -= n as u64;
            this.remaining -= n as u64;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(&this.buf[..n])))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Passes a body through until `limit` bytes, then fails: hyper then closes the connection mid-body, which is
/// what a client sees when a connection drops.
pub struct DropAfter {
    inner: Body,
    left: u64,
    exact: Option<u64>,
}

impl DropAfter {
    pub fn wrap(inner: Body, limit: u64) -> Body {
        let exact = inner.size_hint().exact();
        BoxBody::new(DropAfter { inner, left: limit, exact })
    }
}

impl HttpBody for DropAfter {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.left == 0 {
            return Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "injected drop"))));
        }
        match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    if data.len() as u64 > self.left {
                        data.truncate(self.left as usize);
                    }
                    self.left -= data.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => Poll::Ready(other),
        }
    }

    fn size_hint(&self) -> SizeHint {
        // Keep announcing the full length so the client expects bytes that never come.
        match self.exact {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// How receiving a request body ended badly.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The client went away or sent a broken body.
    #[error("reading the request body: {0}")]
    Client(String),
    /// An injected drop: close the connection without answering.
    #[error("injected connection drop")]
    Dropped,
    /// The body is larger than the operation accepts.
    #[error("the request body is too large")]
    TooLarge,
    /// No bytes arrived for the idle timeout.
    #[error("the request body stalled")]
    Stalled,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Streams a request body into a new file at `path`, computing its size, MD5 and CRC-64 on the way.
/// On any failure the file is removed.
pub async fn receive_to_file(
    body: hyper::body::Incoming,
    path: &Path,
    drop_after: Option<u64>,
    max: u64,
    idle: Duration,
) -> Result<crate::oss::store::Received, RecvError> {
    let result = receive_inner(body, path, drop_after, max, idle).await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    result
}

/// The next frame of a body, or `Stalled` when none comes within `idle`.
async fn next_frame(
    body: &mut hyper::body::Incoming,
    idle: Duration,
) -> Result<Option<Result<Frame<Bytes>, hyper::Error>>, RecvError> {
    tokio::time::timeout(idle, body.frame()).await.map_err(|_| RecvError::Stalled)
}

async fn receive_inner(
    mut body: hyper::body::Incoming,
    path: &Path,
    drop_after: Option<u64>,
    max: u64,
    idle: Duration,
) -> Result<crate::oss::store::Received, RecvError> {
    if body.size_hint().lower() > max {
        return Err(RecvError::TooLarge);
    }
    let mut file = crate::util::create_private_file_async(path).await?;
    let mut md5 = Md5::new();
    let mut crc = crate::crc64::Crc64::new();
    let mut size = 0u64;
    // Frames are often small (16 KiB): gather them so each trip to the blocking file writer moves a chunk.
    let mut pending: Vec<u8> = Vec::with_capacity(CHUNK);
    while let Some(frame) = next_frame(&mut body, idle).await? {
        let frame = frame.map_err(|e| RecvError::Client(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        size += data.len() as u64;
        if drop_after.is_some_and(|n| size > n) {
            return Err(RecvError::Dropped);
        }
        if size > max {
            return Err(RecvError::TooLarge);
        }
        md5.update(&data);
        crc.update(&data);
        pending.extend_from_slice(&data);
        if pending.len() >= CHUNK {
            file.write_all(&pending).await?;
            pending.clear();
        }
    }
    file.write_all(&pending).await?;
    // No fsync: the emulator promises survival of its own restart or crash (the page cache outlives the
    // process), not of a power cut, and an fsync per part would slow every upload test.
    file.flush().await?;
    Ok(crate::oss::store::Received { path: path.to_path_buf(), size, md5: md5.finalize().into(), crc64: crc.finish() })
}

/// Reads a small request body into memory (XML and form bodies), refusing more than `max` bytes: at once when
/// the announced length is larger.
pub async fn receive_small(
    mut body: hyper::body::Incoming,
    drop_after: Option<u64>,
    max: usize,
    idle: Duration,
) -> Result<Bytes, RecvError> {
    if body.size_hint().lower() > max as u64 {
        return Err(RecvError::TooLarge);
    }
    // A small body must arrive within one idle period in all: a byte every 59 s would otherwise hold the
    // connection's slot (and, for RPC, part of the unchecked-body budget) for ever.
    let read = async {
        let mut out = Vec::new();
        while let Some(frame) = next_frame(&mut body, idle).await? {
            let frame = frame.map_err(|e| RecvError::Client(e.to_string()))?;
            let Ok(data) = frame.into_data() else { continue };
            if drop_after.is_some_and(|n| (out.len() + data.len()) as u64 > n) {
                return Err(RecvError::Dropped);
            }
            if out.len() + data.len() > max {
                return Err(RecvError::TooLarge);
            }
            out.extend_from_slice(&data);
        }
        Ok(Bytes::from(out))
    };
    tokio::time::timeout(idle, read).await.map_err(|_| RecvError::Stalled)?
}

/// Reads and discards up to `max` bytes of a body (so the connection can be reused after an early answer);
/// false when the body is longer, stalls or breaks. Nothing is kept in memory.
pub async fn drain(mut body: hyper::body::Incoming, max: u64, idle: Duration) -> bool {
    if body.size_hint().lower() > max {
        return false;
    }
    let mut seen = 0u64;
    // As in `receive_small`: the whole body within one idle period, or the connection is closed.
    let read = async {
        loop {
            match next_frame(&mut body, idle).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        seen += data.len() as u64;
                        if seen > max {
                            return false;
                        }
                    }
                }
                Ok(None) => return true,
                _ => return false,
            }
        }
    };
    tokio::time::timeout(idle, read).await.unwrap_or(false)
}

/// A connection's socket with a bound on how long a write may wait for the client to read: a client that stops
/// reading a response is disconnected after the idle timeout instead of holding the connection forever.
pub struct WriteTimeout<T> {
    inner: T,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteTimeout<T> {
    pub fn new(inner: T, limit: Duration) -> Self {
        WriteTimeout { inner, limit, stalled: None }
    }

    fn watch<R>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteTimeout<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A shared allowance of memory for request bodies read before their signature is checked.
pub struct UnverifiedBudget {
    used: AtomicUsize,
    limit: usize,
}

impl Default for UnverifiedBudget {
    /// 16 MiB: 256 RPC bodies of the largest size at once.
    fn default() -> Self {
        UnverifiedBudget { used: AtomicUsize::new(0), limit: 16 << 20 }
    }
}

/// Bytes taken from an [`UnverifiedBudget`], given back when dropped.
pub struct Reservation<'a> {
    budget: &'a UnverifiedBudget,
    bytes: usize,
}

impl UnverifiedBudget {
    /// Reserves `bytes`, or None when the budget is spent.
    pub fn reserve(&self, bytes: usize) -> Option<Reservation<'_>> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.checked_add(bytes).filter(|n| *n <= self.limit)?;
            match self.used.compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(Reservation { budget: self, bytes }),
                Err(now) => used = now,
            }
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}
