//! What a PUT sends: bytes already in memory, or a range of a file read as it goes out.
//!
//! A file upload used to read each part into a buffer before sending it, so memory grew with part size times
//! concurrency (over 500 MiB for 64 MiB parts, 8 at a time). A [`FileRange`] body is read in small pieces while
//! the connection takes them, off the async threads, and checksummed on the way: what a retry needs is the file,
//! not a copy of it.

use crate::crc64::Crc64;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::fs::File;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Bytes read from the file at a time: small enough that eight connections hold a few tens of MiB, large enough
/// that the reads and their hand-offs cost little (256 KiB pieces took half again the client CPU of 1 MiB ones
/// against the local cloud, which then fell to 83% of its ceiling).
const PIECE: u64 = 1 << 20;

/// A request body.
#[derive(Clone)]
pub enum Body {
    Bytes(Bytes),
    File(FileRange),
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::File(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::Bytes(b)
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::Bytes(v.into())
    }
}

impl From<&'static [u8]> for Body {
    fn from(v: &'static [u8]) -> Self {
        Body::Bytes(Bytes::from_static(v))
    }
}

/// `len` bytes of `file` from `offset`, and the CRC-64 (ECMA) of what was read of them when sent. Each attempt to
/// send it takes a [`FileRange::fresh`] copy, whose checksum covers that attempt's bytes alone.
#[derive(Clone)]
pub struct FileRange {
    file: Arc<File>,
    offset: u64,
    len: u64,
    sent: Arc<Mutex<Sent>>,
}

#[derive(Clone, Default)]
struct Sent {
    bytes: u64,
    crc: Crc64,
}

impl FileRange {
    pub fn new(file: Arc<File>, offset: u64, len: u64) -> Self {
        FileRange { file, offset, len, sent: Arc::default() }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn file(&self) -> &Arc<File> {
        &self.file
    }

    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The same range with its own, empty record of what was sent.
    pub fn fresh(&self) -> Self {
        FileRange::new(self.file.clone(), self.offset, self.len)
    }

    /// The CRC-64 of the bytes sent, once all of them were read; `None` before.
    pub fn sent_crc64(&self) -> Option<u64> {
        let s = self.sent.lock().ok()?;
        (s.bytes == self.len).then(|| s.crc.finish())
    }

    pub(crate) fn into_http_body(self) -> FileBody {
        FileBody { range: self, done: 0, reading: None }
    }
}

type Piece = std::io::Result<Vec<u8>>;

/// A [`FileRange`] as an HTTP body: each piece is read by a blocking task while the one before is being sent.
pub(crate) struct FileBody {
    range: FileRange,
    done: u64,
    reading: Option<tokio::task::JoinHandle<Piece>>,
}

/// Fills `buf` from `file` at `at`, or fails (a short file is an error).
pub(crate) fn read_at(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    return std::os::unix::fs::FileExt::read_exact_at(file, buf, at);
    #[cfg(not(unix))]
    {
        let mut done = 0;
        while done < buf.len() {
            match std::os::windows::fs::FileExt::seek_read(file, &mut buf[done..], at + done as u64)? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => done += n,
            }
        }
        Ok(())
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.done >= this.range.len {
            return Poll::Ready(None);
        }
        let reading = this.reading.get_or_insert_with(|| {
            let file = this.range.file.clone();
            let at = this.range.offset + this.done;
            let n = (this.range.len - this.done).min(PIECE) as usize;
            tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; n];
                read_at(&file, &mut buf, at).map(|()| buf)
            })
        });
        let piece = match Pin::new(reading).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        this.reading = None;
        let at = this.range.offset + this.done;
        let buf = match piece {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                return Poll::Ready(Some(Err(std::io::Error::new(e.kind(), format!("reading at {at}: {e}")))))
            }
            Err(e) => return Poll::Ready(Some(Err(std::io::Error::other(format!("reader task: {e}"))))),
        };
        this.done += buf.len() as u64;
        if let Ok(mut s) = this.range.sent.lock() {
            s.crc.update(&buf);
            s.bytes += buf.len() as u64;
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.done >= self.range.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.range.len - self.done)
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        if let Some(r) = self.reading.take() {
            r.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Write;

    #[test]
    fn a_file_range_streams_in_pieces_and_records_its_checksum() {
        let mut f = tempfile::tempfile().expect("temp file");
        let data: Vec<u8> = (0..(PIECE as usize * 3 + 1000)).map(|i| (i * 7 + i / 251) as u8).collect();
        f.write_all(&data).expect("write");
        let range = FileRange::new(Arc::new(f), 100, data.len() as u64 - 200);
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let sent = range.fresh();
        let got = rt.block_on(sent.clone().into_http_body().collect()).expect("collect").to_bytes();
        assert_eq!(&got[..], &data[100..data.len() - 100]);
        let mut crc = Crc64::new();
        crc.update(&got);
        assert_eq!(sent.sent_crc64(), Some(crc.finish()));
        // The original range's record is untouched; a range past the file's end is an error, not short data.
        assert_eq!(range.sent_crc64(), None);
        let past = FileRange::new(range.file.clone(), data.len() as u64 - 10, 20);
        let err = rt.block_on(past.clone().into_http_body().collect()).map(|_| ()).expect_err("a read past the end");
        assert!(err.to_string().contains("reading at"), "{err}");
        assert_eq!(past.sent_crc64(), None);
    }
}
