//! MD5s of a file's parts, computed ahead of the senders, many parts at a time.
//!
//! S3 parts carry their MD5 as Content-MD5 (with `--checksum md5`, and beside the flexible checksum until the
//! store shows that it echoes those), and their ETag is compared with it. One MD5 stream is a chain of dependent blocks
//! that no SIMD unit can widen, and hashing part after part that way was most of an upload's CPU time (72%), taken
//! from a server that often shares the machine. Independent parts can share SIMD lanes: a thread reads [`LANES`]
//! parts in lock-step through a small scratch area (`LANES` x [`PIECE`]) and hashes them together, several times
//! faster per byte. The senders then stream each part from the file again, from the page cache, since the
//! hasher stays at most two groups ahead of them. A part whose
//! bytes change between the two reads fails the store's Content-MD5 check, or else the check of the part's ETag
//! against its MD5: it is never stored silently.

use crate::checksum::{self, Algorithm};
use crate::crc64::Crc64;
use crate::upload::{RangeSums, UploadError};
use imgport_wire::hex;
use md5_many::{Md5Many, Md5State};
use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Parts hashed together: the widest SIMD unit (AVX-512) holds 16 MD5 lanes.
pub(crate) const LANES: usize = 16;
/// Bytes read from each part of a group before the group is hashed; the scratch area stays in the cache.
const PIECE: usize = 256 << 10;

/// One part to hash: its number, offset and length in the file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartSpan {
    pub number: u32,
    pub offset: u64,
    pub len: u64,
}

type Digest = Result<RangeSums, String>;

/// The digests of the parts still to be sent, each handed out once.
pub(crate) struct PartDigests {
    pending: HashMap<u32, oneshot::Receiver<Digest>>,
    /// One message per part handed to a sender: how far ahead of the senders the hasher is.
    taken: mpsc::Sender<()>,
    /// Set to have the hasher stop before its next group (the parts it hashed keep their sums).
    stop: Arc<AtomicBool>,
}

impl PartDigests {
    /// Starts hashing `parts` (in the order they will be sent) on a thread of its own: MD5, CRC-64 and, with
    /// `flexible`, that checksum, in one read. The first group holds `first_wave` parts (the senders'
    /// concurrency), so the first sends wait for no more than they need.
    pub(crate) fn start(file: Arc<File>, parts: Vec<PartSpan>, first_wave: usize, flexible: Option<Algorithm>) -> Self {
        let mut pending = HashMap::with_capacity(parts.len());
        let mut senders = Vec::with_capacity(parts.len());
        for p in &parts {
            let (tx, rx) = oneshot::channel();
            pending.insert(p.number, rx);
            senders.push(tx);
        }
        let (taken, taken_rx) = mpsc::channel();
        let first = first_wave.clamp(1, LANES);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || hash_groups(&file, &parts, first, flexible, senders, &taken_rx, &stopped));
        PartDigests { pending, taken, stop }
    }

    /// Has the hasher stop before its next group: the parts it has not reached get an error from [`Self::take`].
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The checksums of part `n`, once the hasher has them.
    pub(crate) fn take(&mut self, n: u32) -> impl std::future::Future<Output = Result<RangeSums, UploadError>> {
        let rx = self.pending.remove(&n);
        let _ = self.taken.send(());
        async move {
            let Some(rx) = rx else { return Err(UploadError::Io(format!("part {n} was not hashed"))) };
            match rx.await {
                Ok(Ok(sums)) => Ok(sums),
                Ok(Err(e)) => Err(UploadError::Io(e)),
                Err(_) => Err(UploadError::Io(format!("the hasher stopped before part {n}"))),
            }
        }
    }
}

/// Hashes `parts` in groups (the first of `first` parts, then of [`LANES`]), sending each digest as its group
/// completes. Before group `g` it waits until the senders have taken a part of group `g - 1`, so the file is read
/// at most two groups ahead of them. It stops before its next group once the upload is dropped.
fn hash_groups(
    file: &File,
    parts: &[PartSpan],
    first: usize,
    flexible: Option<Algorithm>,
    senders: Vec<oneshot::Sender<Digest>>,
    taken: &mpsc::Receiver<()>,
    stop: &AtomicBool,
) {
    let engine = Md5Many::new();
    let mut scratch = vec![0u8; LANES * PIECE];
    let mut taken_count = 0usize;
    let mut senders = senders.into_iter();
    let (head, rest) = parts.split_at(first.min(parts.len()));
    let groups = std::iter::once(head).chain(rest.chunks(LANES)).filter(|g| !g.is_empty());
    // Where the current and the previous group start in `parts`.
    let (mut start, mut previous_start) = (0usize, 0usize);
    for (g, group) in groups.enumerate() {
        // Count the parts taken so far; stop once the upload is gone (finished with an error, or cancelled).
        loop {
            match taken.try_recv() {
                Ok(()) => taken_count += 1,
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        while g >= 2 && taken_count <= previous_start {
            if taken.recv().is_err() {
                return;
            }
            taken_count += 1;
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let result = hash_group(file, &engine, group, flexible, &mut scratch);
        let failed = result.is_err();
        match result {
            Ok(sums) => sums.into_iter().zip(senders.by_ref()).for_each(|(s, tx)| drop(tx.send(Ok(s)))),
            Err(e) => senders.by_ref().take(group.len()).for_each(|tx| drop(tx.send(Err(e.clone())))),
        }
        if failed {
            return;
        }
        (previous_start, start) = (start, start + group.len());
    }
}

fn hash_group(
    file: &File,
    engine: &Md5Many,
    group: &[PartSpan],
    flexible: Option<Algorithm>,
    scratch: &mut [u8],
) -> Result<Vec<RangeSums>, String> {
    let mut states = vec![Md5State::new(); group.len()];
    // The CRCs take each piece while it is still in the cache from its read.
    let mut crcs = vec![(Crc64::new(), flexible.map(checksum::Running::new)); group.len()];
    let longest = group.iter().map(|p| p.len).max().unwrap_or(0);
    let mut at = 0u64;
    while at < longest {
        let mut lens = [0usize; LANES];
        for ((p, piece), len) in group.iter().zip(scratch.chunks_mut(PIECE)).zip(lens.iter_mut()) {
            *len = p.len.saturating_sub(at).min(PIECE as u64) as usize;
            crate::body::read_at(file, &mut piece[..*len], p.offset + at)
                .map_err(|e| format!("reading the source for part {} at {}: {e}", p.number, p.offset + at))?;
        }
        let inputs: Vec<&[u8]> = scratch.chunks(PIECE).zip(&lens[..group.len()]).map(|(c, &l)| &c[..l]).collect();
        for (input, (crc, flex)) in inputs.iter().zip(crcs.iter_mut()) {
            crc.update(input);
            if let Some(f) = flex.as_mut() {
                f.update(input);
            }
        }
        engine.update_many(&mut states, &inputs);
        at += PIECE as u64;
    }
    Ok(states
        .iter()
        .zip(crcs)
        .map(|(md5, (crc, flex))| RangeSums {
            crc64: Some(crc.finish()),
            flexible: flexible.zip(flex).map(|(algorithm, f)| checksum::Value { algorithm, value: f.finish() }),
            md5_hex: hex(&md5.finalize()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest as _, Md5};
    use std::io::Write;

    fn reference(data: &[u8]) -> String {
        Md5::digest(data).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Part layouts a real upload produces (equal parts, a short last part, resumed gaps, more parts than lanes),
    /// hashed here and by the RustCrypto MD5, one part at a time.
    #[tokio::test]
    async fn digests_match_one_part_at_a_time() {
        let mut data = vec![0u8; 3 * 1024 * 1024 + 12345];
        let mut x: u64 = 0x243F_6A88_85A3_08D3;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(&data).expect("write");
        let file = Arc::new(f.reopen().expect("reopen"));
        for part_size in [1u64, 63, 64, 65, 1000, 64 << 10, 300_001, 1 << 20, data.len() as u64] {
            let n = (data.len() as u64).div_ceil(part_size);
            // Every third part is already stored (resume); the rest are hashed, in more than one group when many.
            let spans: Vec<PartSpan> = (1..=n.min(40) as u32)
                .filter(|k| k % 3 != 0)
                .map(|k| {
                    let offset = (k as u64 - 1) * part_size;
                    PartSpan { number: k, offset, len: (data.len() as u64 - offset).min(part_size) }
                })
                .collect();
            let flexible = Some(Algorithm::Crc64nvme).filter(|_| part_size % 2 == 0);
            let mut digests = PartDigests::start(file.clone(), spans.clone(), 8, flexible);
            for s in &spans {
                let got = digests.take(s.number).await.expect("digest");
                let bytes = &data[s.offset as usize..(s.offset + s.len) as usize];
                assert_eq!(got.md5_hex, reference(bytes), "part {} of {part_size} bytes", s.number);
                assert_eq!(got.crc64, Some(crate::crc64::checksum(bytes)));
                let want = flexible.map(|algorithm| checksum::Value { algorithm, value: algorithm.checksum(bytes) });
                assert_eq!(got.flexible, want);
            }
        }
    }

    #[tokio::test]
    async fn a_short_file_is_an_error_for_its_parts() {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(&[7u8; 1000]).expect("write");
        let file = Arc::new(f.reopen().expect("reopen"));
        let spans = vec![PartSpan { number: 1, offset: 0, len: 600 }, PartSpan { number: 2, offset: 600, len: 600 }];
        let mut digests = PartDigests::start(file, spans, 8, None);
        let a = digests.take(1).await;
        let b = digests.take(2).await;
        let err = b.as_ref().err().or(a.as_ref().err()).map(ToString::to_string).unwrap_or_default();
        assert!(err.contains("part 2 at 600"), "{err}");
        assert!(a.is_err() && b.is_err(), "a group fails as a whole: {a:?} {b:?}");
    }
}
