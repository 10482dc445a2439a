//! Hostile input, in process: thousands of corrupted variants of every fixture (truncations, bit flips,
//! extreme values in headers and tables) go through open, map, read, check and digest. None may panic, hang,
//! or allocate more than a bounded amount of memory; every failure must be an error naming the file.

use imgport_disk::{open, Control, OpenOptions};
use imgport_test_support::images::{format_fixtures, tempdir};
use imgport_test_support::Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts live heap bytes and the peak, so a variant that allocates far more than it should is caught even
/// when the kernel would have let it overcommit.
struct CountingAlloc;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Heap the engine may use for one variant on top of what the test itself holds.
const MEMORY_BOUND: usize = 256 << 20;
/// Most bytes of virtual disk read per variant (a corrupted table may declare a huge disk full of data).
const READ_BUDGET: u64 = 16 << 20;
const TIME_BOUND: Duration = Duration::from_secs(20);

enum Mutation {
    Truncate(u64),
    FlipBit(u64, u8),
    Put(u64, &'static [u8]),
}

const EXTREMES: &[&[u8]] = &[
    &[0xff; 8],
    &[0x00; 8],
    &[0x7f, 0xff, 0xff, 0xff],
    &[0x80, 0, 0, 0, 0, 0, 0, 0],
    &[0, 0, 0, 0, 0x10, 0, 0, 0],
    &[0xff, 0xff, 0xff, 0xfe],
    &[0, 0, 0, 1],
];

fn mutations(len: u64, seed: u64, count: usize) -> Vec<Mutation> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    // Truncations: structure boundaries near the start, then spread over the file.
    for cut in [0u64, 1, 4, 8, 72, 100, 511, 512, 1024, 4096, 65536, 65536 + 512, 196608, 1 << 20] {
        if cut < len {
            out.push(Mutation::Truncate(cut));
        }
    }
    for i in 1..16u64 {
        out.push(Mutation::Truncate(len * i / 16));
    }
    out.push(Mutation::Truncate(len.saturating_sub(1)));
    out.push(Mutation::Truncate(len.saturating_sub(512)));
    // Metadata lives mostly in the first 256 KiB (headers, tables) and the last KiB (footers).
    while out.len() < count {
        let region = rng.below(10);
        let pos = match region {
            0..=5 => rng.below(len.min(4096)),
            6..=7 => rng.below(len.min(512 << 10)),
            8 => len.saturating_sub(1 + rng.below(len.min(1024))),
            _ => rng.below(len),
        };
        if rng.below(2) == 0 {
            out.push(Mutation::FlipBit(pos, rng.below(8) as u8));
        } else {
            out.push(Mutation::Put(pos / 4 * 4, EXTREMES[rng.below(EXTREMES.len() as u64) as usize]));
        }
    }
    out
}

fn apply(original: &[u8], m: &Mutation) -> Vec<u8> {
    let mut v = original.to_vec();
    match *m {
        Mutation::Truncate(n) => v.truncate(n as usize),
        Mutation::FlipBit(pos, bit) => {
            if let Some(b) = v.get_mut(pos as usize) {
                *b ^= 1 << bit;
            }
        }
        Mutation::Put(pos, bytes) => {
            for (i, b) in bytes.iter().enumerate() {
                if let Some(x) = v.get_mut(pos as usize + i) {
                    *x = *b;
                }
            }
        }
    }
    v
}

/// Everything a command would do with an image; errors are fine, panics are not.
fn exercise(path: &Path) {
    let Ok(img) = open(path, &OpenOptions::default()) else { return };
    let _ = img.details();
    let _ = img.check();
    let size = img.virtual_size();
    let Ok(map) = img.map(0, size) else { return };
    let mut budget = READ_BUDGET;
    let mut buf = vec![0u8; 1 << 20];
    for e in map.iter().filter(|e| !e.kind().reads_as_zero()) {
        let mut off = e.offset;
        while off < e.end() && budget > 0 {
            let n = (e.end() - off).min(buf.len() as u64).min(budget);
            if img.read_at(&mut buf[..n as usize], off).is_err() {
                break;
            }
            off += n;
            budget -= n;
        }
    }
    // A read past the end must be refused, not panic.
    assert!(img.read_at(&mut buf[..1], size).is_err(), "read past the virtual size succeeded");
    if size <= 256 << 20 {
        let _ = imgport_disk::digest(img.as_ref(), &Control::new());
    }
    let _ = imgport_disk::compare(img.as_ref(), img.as_ref(), false, &Control::new());
}

#[test]
fn corrupted_fixtures_never_panic_hang_or_balloon() {
    let dir = tempdir();
    let (_src, fixtures) = format_fixtures(dir.path(), (2 << 20) + 12345, 77);
    let per_fixture: usize = std::env::var("IMGPORT_MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let mut failures = Vec::<String>::new();
    let mut total = 0;
    for (fi, fx) in fixtures.iter().enumerate() {
        let original = std::fs::read(&fx.path).unwrap();
        let muts = mutations(original.len() as u64, 1000 + fi as u64, per_fixture);
        total += muts.len();
        let variant_dir = dir.path().join(format!("v-{}", fx.name));
        std::fs::create_dir_all(&variant_dir).unwrap();
        // A multi-file image (monolithicFlat) needs its extent next to the corrupted descriptor.
        for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{}-", fx.name)) {
                std::fs::copy(entry.path(), variant_dir.join(&name)).unwrap();
            }
        }
        let target = variant_dir.join(fx.path.file_name().unwrap());
        for (mi, m) in muts.iter().enumerate() {
            let bytes = apply(&original, m);
            std::fs::write(&target, &bytes).unwrap();
            let base = LIVE.load(Ordering::Relaxed);
            PEAK.store(base, Ordering::Relaxed);
            let start = Instant::now();
            let outcome = std::panic::catch_unwind(|| exercise(&target));
            let elapsed = start.elapsed();
            let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
            let what = match m {
                Mutation::Truncate(n) => format!("truncated to {n}"),
                Mutation::FlipBit(p, b) => format!("bit {b} of byte {p} flipped"),
                Mutation::Put(p, v) => format!("{v:02x?} written at {p}"),
            };
            if outcome.is_err() {
                failures.push(format!("{} variant {mi} ({what}): panicked", fx.name));
            }
            if elapsed > TIME_BOUND {
                failures.push(format!("{} variant {mi} ({what}): took {elapsed:?}", fx.name));
            }
            if peak > MEMORY_BOUND {
                failures.push(format!("{} variant {mi} ({what}): peak heap {} MiB", fx.name, peak >> 20));
            }
        }
    }
    assert!(total >= 1000, "too few variants: {total}");
    assert!(failures.is_empty(), "{} of {total} variants failed:\n{}", failures.len(), failures.join("\n"));
}
