//! Walking the allocated data of a source in order, skipping holes and zero runs.
//!
//! Writers call [`scan_data`] with the granularity of their output (4 KiB for raw, the cluster size for
//! qcow2...). Only ranges the extent map says hold data are read, by several reader threads with ordered
//! delivery, so I/O and decompression of the source overlap the writer's work. The readers also find each
//! chunk's non-zero runs, so the writer's thread, which every output byte passes through, only writes.

use crate::error::{Error, Result};
use crate::extents::DataRanges;
use crate::image::{DiskImage, Mapping};
use crate::write::Control;
use std::sync::mpsc;

/// How much of the source one read covers.
const CHUNK: u64 = 8 << 20;
/// Reader threads.
const READERS: usize = 2;
/// Chunks each reader may have waiting for the writer.
const DEPTH: usize = 2;

/// Output granularity: zero detection and run boundaries are aligned to it.
#[derive(Debug, Clone, Copy)]
pub struct Granules {
    size: u64,
}

impl Granules {
    pub fn new(size: u64) -> Self {
        assert!(size.is_power_of_two() && size <= CHUNK, "granule size must be a power of two <= 8 MiB");
        Granules { size }
    }
    pub fn size(self) -> u64 {
        self.size
    }
}

/// Ordered `[start, end)` ranges to read, produced as they are read (see [`crate::extents::DataRanges`]), so a
/// map of millions of extents is never held whole.
pub trait RangeStream: Iterator<Item = Result<(u64, u64)>> + Send {}
impl<T: Iterator<Item = Result<(u64, u64)>> + Send> RangeStream for T {}

/// The ranges [`scan_data`] reads: those the map says hold data, widened to whole granules and merged.
pub fn data_ranges<'a>(src: &'a dyn DiskImage, granules: Granules, ctl: &'a Control) -> DataRanges<'a> {
    DataRanges::new(src, granules.size, ctl)
}

/// Call `f(offset, data)` for every run of non-zero granules of `src`, in increasing offset order.
/// Runs are aligned to the granule size (the last may end at the virtual size) and never longer than 8 MiB.
pub fn scan_data(
    src: &dyn DiskImage,
    granules: Granules,
    ctl: &Control,
    f: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let ranges = data_ranges(src, granules, ctl);
    // The reader threads find the runs, so the calling thread (the writer) only writes.
    scan_chunks(src, ranges, ctl, Some(granules), &mut |offset, buf, runs| {
        runs.iter().try_for_each(|&(a, b)| f(offset + a as u64, &buf[a..b]))
    })
}

/// A chunk of source data: read into a buffer, or borrowed from the source file's mapping.
enum Chunk<'a> {
    Owned(Vec<u8>),
    Mapped(&'a [u8]),
}

impl Chunk<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Mapped(s) => s,
        }
    }
}

/// `[start, end)` straight from the source file's mapping, when it is stored there uncompressed in one piece.
/// Saves the copy into a buffer; the pages are faulted in here, on the reader thread.
fn mapped_chunk(src: &dyn DiskImage, start: u64, end: u64) -> Option<&[u8]> {
    let mapping = src.data_file()?.mapping()?;
    let extents = src.map(start, end - start).ok()?;
    let [e] = extents.as_slice() else { return None };
    let Mapping::Data { host_offset: Some(host) } = e.mapping else { return None };
    if e.offset != start || e.end() != end {
        return None;
    }
    let len = usize::try_from(end - start).ok()?;
    let slice = mapping.slice(host, len)?;
    mapping.prefetch(host, len);
    crate::file::count_read(len as u64);
    Some(slice)
}

/// Read the given ranges in chunks of up to 8 MiB, in order, calling `f(offset, data)` for each chunk.
pub fn scan_ranges(
    src: &dyn DiskImage,
    ranges: impl RangeStream,
    ctl: &Control,
    f: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    scan_chunks(src, ranges, ctl, None, &mut |offset, buf, _| f(offset, buf))
}

/// Non-zero runs of a chunk, `[start, end)` in bytes from its start.
type Runs = Vec<(usize, usize)>;
/// What [`scan_chunks`] calls for each chunk: its offset, its bytes and its non-zero runs.
type ChunkFn<'f> = dyn FnMut(u64, &[u8], &Runs) -> Result<()> + 'f;

/// A chunk to read, or the error that ended the ranges.
type Planned = Result<(u64, u64)>;
/// A chunk read, with its non-zero runs.
type Read<'a> = Result<(u64, Chunk<'a>, Runs)>;

/// [`scan_ranges`], with each chunk's non-zero runs of `granules` found on the reader thread that read it.
///
/// A planner thread walks the ranges (mapping the source as it goes) and deals the chunks out to the readers in
/// turn; the calling thread takes the chunks back in the same turn, so they arrive in order. Every queue is
/// bounded, so memory does not depend on how many ranges the source maps to.
fn scan_chunks(
    src: &dyn DiskImage,
    ranges: impl RangeStream,
    ctl: &Control,
    granules: Option<Granules>,
    f: &mut ChunkFn,
) -> Result<()> {
    let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>();
    let recycle_rx = std::sync::Mutex::new(recycle_rx);
    std::thread::scope(|scope| {
        let runs_of = |chunk: &Chunk| -> Result<Runs> {
            let mut runs = Vec::new();
            if let Some(g) = granules {
                for_each_nonzero_run(chunk.bytes(), g.size as usize, |a, b| {
                    runs.push((a, b));
                    Ok(())
                })?;
            }
            Ok(runs)
        };
        let mut plans = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..READERS {
            let (plan_tx, plan_rx) = mpsc::sync_channel::<Planned>(DEPTH);
            let (tx, rx) = mpsc::sync_channel::<Read>(DEPTH);
            plans.push(plan_tx);
            receivers.push(rx);
            let recycle_rx = &recycle_rx;
            scope.spawn(move || {
                for planned in plan_rx {
                    let (start, end) = match planned {
                        Ok(chunk) => chunk,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    if ctl.is_cancelled() {
                        let _ = tx.send(Err(Error::interrupted()));
                        return;
                    }
                    if let Some(slice) = mapped_chunk(src, start, end) {
                        let chunk = Chunk::Mapped(slice);
                        let r = runs_of(&chunk).map(|runs| (start, chunk, runs));
                        if tx.send(r).is_err() {
                            return;
                        }
                        continue;
                    }
                    let reused = recycle_rx.lock().ok().and_then(|rx| rx.try_recv().ok());
                    let mut buf = reused.unwrap_or_default();
                    buf.resize((end - start) as usize, 0);
                    let r = src.read_at(&mut buf, start).and_then(|()| {
                        let chunk = Chunk::Owned(buf);
                        runs_of(&chunk).map(|runs| (start, chunk, runs))
                    });
                    let failed = r.is_err();
                    if tx.send(r).is_err() || failed {
                        return;
                    }
                }
            });
        }
        scope.spawn(move || {
            let mut turn = 0usize;
            for range in ranges {
                let chunks: Box<dyn Iterator<Item = Planned>> = match range {
                    Ok((s, e)) => Box::new((s..e).step_by(CHUNK as usize).map(move |o| Ok((o, (o + CHUNK).min(e))))),
                    Err(e) => Box::new(std::iter::once(Err(e))),
                };
                for chunk in chunks {
                    let stop = chunk.is_err() || ctl.is_cancelled();
                    // A reader gone means the scan stopped: nothing more to plan.
                    if plans[turn % READERS].send(chunk).is_err() || stop {
                        return;
                    }
                    turn += 1;
                }
            }
        });
        let result = (|| {
            for turn in 0.. {
                // The reader whose turn it is has finished its chunks: the planner dealt no more.
                let Ok(msg) = receivers[turn % READERS].recv() else { break };
                let (offset, chunk, runs) = msg?;
                let data = chunk.bytes();
                f(offset, data, &runs)?;
                ctl.report(offset + data.len() as u64);
                ctl.check()?;
                match chunk {
                    Chunk::Owned(buf) => {
                        let _ = recycle_tx.send(buf);
                    }
                    // Read once: out of the resident set, or a pass over a large file would hold all of it.
                    Chunk::Mapped(slice) => crate::mapping::release(slice),
                }
            }
            // A cancelled planner ends the chunks early: that is an interruption, not the end of the data.
            ctl.check()
        })();
        // Dropping the receivers unblocks readers still sending, and through them the planner.
        drop(receivers);
        result
    })
}

/// Call `f(start, end)` for each maximal run of granules in `buf` that are not all zero.
pub fn for_each_nonzero_run(buf: &[u8], granule: usize, mut f: impl FnMut(usize, usize) -> Result<()>) -> Result<()> {
    let mut run_start: Option<usize> = None;
    let mut pos = 0;
    while pos < buf.len() {
        let end = (pos + granule).min(buf.len());
        let zero = is_zero(&buf[pos..end]);
        match (zero, run_start) {
            (false, None) => run_start = Some(pos),
            (true, Some(s)) => {
                f(s, pos)?;
                run_start = None;
            }
            _ => {}
        }
        pos = end;
    }
    if let Some(s) = run_start {
        f(s, buf.len())?;
    }
    Ok(())
}

/// True when every byte is zero. Compares 16 bytes at a time.
pub fn is_zero(buf: &[u8]) -> bool {
    let (body, tail) = buf.as_chunks::<16>();
    body.iter().all(|c| u128::from_ne_bytes(*c) == 0) && tail.iter().all(|&b| b == 0)
}
