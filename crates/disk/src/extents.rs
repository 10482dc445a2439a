//! Walking an image's extent map in bounded memory.
//!
//! An image's author decides how many extents it has: a 1 MiB qcow2 whose L1 entries all point at one L2 table
//! describes millions of clusters, each its own extent. [`DiskImage::map`] returns a list, so nothing maps the
//! whole disk in one call: [`Extents`] maps it window by window (each window small enough that its list is
//! bounded whatever the image says) and merges neighbours across windows, so callers see exactly the extents
//! one whole-disk `map` would return, one at a time. [`DataRanges`] turns that walk into the ranges converters
//! read.

use crate::error::{Error, Result};
use crate::image::{DiskImage, Extent, ExtentKind};
use crate::write::Control;

/// Most extents one window may hold: the window is this many of the image's smallest mapping units.
const EXTENTS_PER_WINDOW: u64 = 1 << 16;

/// The extents of `[start, end)` of an image, in order, merged as [`crate::image::ExtentList`] merges them.
pub struct Extents<'a> {
    src: &'a dyn DiskImage,
    pos: u64,
    end: u64,
    window: u64,
    batch: std::vec::IntoIter<Extent>,
    pending: Option<Extent>,
    failed: bool,
    /// Checked before each window: a walk over a huge sparse disk takes a while and must stop on Ctrl-C.
    ctl: Option<&'a Control>,
}

impl<'a> Extents<'a> {
    pub fn new(src: &'a dyn DiskImage, start: u64, end: u64) -> Self {
        let end = end.min(src.virtual_size());
        let window = src.map_granularity().clamp(512, 1 << 30).saturating_mul(EXTENTS_PER_WINDOW);
        let batch = Vec::new().into_iter();
        Extents { src, pos: start.min(end), end, window, batch, pending: None, failed: false, ctl: None }
    }

    /// Stop with [`Error::interrupted`] once `ctl` is cancelled.
    pub fn until_cancelled(mut self, ctl: &'a Control) -> Self {
        self.ctl = Some(ctl);
        self
    }

    /// The whole virtual disk.
    pub fn all(src: &'a dyn DiskImage) -> Self {
        Self::new(src, 0, src.virtual_size())
    }

    /// The next extent as mapped, before merging: from the current window, mapping the next one when it is used up.
    fn next_raw(&mut self) -> Option<Result<Extent>> {
        loop {
            if let Some(e) = self.batch.next() {
                return Some(Ok(e));
            }
            if self.pos >= self.end || self.failed {
                return None;
            }
            if self.ctl.is_some_and(Control::is_cancelled) {
                self.failed = true;
                return Some(Err(Error::interrupted()));
            }
            let len = self.window.min(self.end - self.pos);
            match self.src.map(self.pos, len) {
                Ok(list) => self.batch = list.into_iter(),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
            self.pos += len;
        }
    }
}

impl Iterator for Extents<'_> {
    type Item = Result<Extent>;

    fn next(&mut self) -> Option<Result<Extent>> {
        loop {
            match self.next_raw() {
                Some(Ok(e)) if e.length == 0 => continue,
                Some(Ok(e)) => match self.pending.as_mut() {
                    Some(p) if p.continued_by(&e) => p.length += e.length,
                    _ => {
                        if let Some(done) = self.pending.replace(e) {
                            return Some(Ok(done));
                        }
                    }
                },
                Some(Err(e)) => return Some(Err(e)),
                None => return self.pending.take().map(Ok),
            }
        }
    }
}

/// Bytes of the virtual disk backed by stored data, counted without holding the map.
pub fn allocated_bytes(src: &dyn DiskImage) -> Result<u64> {
    let mut total = 0u64;
    for e in Extents::all(src) {
        let e = e?;
        if e.kind() == ExtentKind::Data {
            total += e.length;
        }
    }
    Ok(total)
}

/// The ranges of the virtual disk that hold data according to the map, widened to whole granules of `granule`
/// bytes and merged, in order: what converters read. Streams, like [`Extents`].
pub struct DataRanges<'a> {
    extents: Extents<'a>,
    granule: u64,
    size: u64,
    pending: Option<(u64, u64)>,
}

impl<'a> DataRanges<'a> {
    /// The data ranges of `src`; the walk stops with [`Error::interrupted`] once `ctl` is cancelled.
    pub fn new(src: &'a dyn DiskImage, granule: u64, ctl: &'a Control) -> Self {
        let extents = Extents::all(src).until_cancelled(ctl);
        DataRanges { extents, granule, size: src.virtual_size(), pending: None }
    }
}

impl Iterator for DataRanges<'_> {
    type Item = Result<(u64, u64)>;

    fn next(&mut self) -> Option<Result<(u64, u64)>> {
        let g = self.granule;
        loop {
            let e = match self.extents.next() {
                Some(Ok(e)) => e,
                Some(Err(e)) => return Some(Err(e)),
                None => return self.pending.take().map(Ok),
            };
            if e.kind() != ExtentKind::Data {
                continue;
            }
            let start = e.offset / g * g;
            let end = e.end().div_ceil(g).saturating_mul(g).min(self.size);
            match self.pending.as_mut() {
                Some(last) if last.1 >= start => last.1 = last.1.max(end),
                _ => {
                    if let Some(done) = self.pending.replace((start, end)) {
                        return Some(Ok(done));
                    }
                }
            }
        }
    }
}

/// The union of two ordered range streams, merged where they touch or overlap.
pub fn union<'a>(
    a: impl Iterator<Item = Result<(u64, u64)>> + Send + 'a,
    b: impl Iterator<Item = Result<(u64, u64)>> + Send + 'a,
) -> impl Iterator<Item = Result<(u64, u64)>> + Send + 'a {
    let mut a = a.peekable();
    let mut b = b.peekable();
    let mut pending: Option<(u64, u64)> = None;
    std::iter::from_fn(move || loop {
        // Take the stream whose next range starts first (errors first, so they surface at once).
        let take_a = match (a.peek(), b.peek()) {
            (Some(Err(_)), _) => true,
            (_, Some(Err(_))) => false,
            (Some(Ok(x)), Some(Ok(y))) => x.0 <= y.0,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return pending.take().map(Ok),
        };
        let next = if take_a { a.next() } else { b.next() };
        let (s, e) = match next {
            Some(Ok(r)) => r,
            Some(Err(err)) => return Some(Err(err)),
            None => continue,
        };
        match pending.as_mut() {
            Some(last) if last.1 >= s => last.1 = last.1.max(e),
            _ => {
                if let Some(done) = pending.replace((s, e)) {
                    return Some(Ok(done));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ExtentList;
    use crate::mem::MemImage;

    /// An image whose map is a fixed list, mapped one window at a time as the real readers are.
    struct Listed {
        size: u64,
        extents: Vec<Extent>,
    }

    impl DiskImage for Listed {
        fn virtual_size(&self) -> u64 {
            self.size
        }
        fn read_at(&self, buf: &mut [u8], _offset: u64) -> Result<()> {
            buf.fill(0);
            Ok(())
        }
        fn map(&self, offset: u64, length: u64) -> Result<Vec<Extent>> {
            let end = offset + length;
            let mut list = ExtentList::new();
            for e in &self.extents {
                let (s, t) = (e.offset.max(offset), e.end().min(end));
                if s < t {
                    list.push(e.slice(s, t));
                }
            }
            Ok(list.into_vec())
        }
        fn details(&self) -> crate::ImageDetails {
            crate::ImageDetails::new(crate::Format::Raw)
        }
        fn check(&self) -> Result<crate::CheckReport> {
            Ok(Default::default())
        }
    }

    #[test]
    fn windows_merge_back_into_the_whole_map() {
        let w = 512 * EXTENTS_PER_WINDOW;
        // A data extent spanning three windows with contiguous host offsets, then one cluster at a repeated host
        // offset on each side of a window boundary (never merged), then a hole to the end.
        let extents = vec![
            Extent::data(0, 3 * w - 512, Some(4096)),
            Extent::data(3 * w - 512, 512, Some(0)),
            Extent::data(3 * w, 512, Some(0)),
            Extent::unallocated(3 * w + 512, w),
        ];
        let size = 4 * w + 512;
        let img = Listed { size, extents: extents.clone() };
        let walked: Vec<Extent> = Extents::all(&img).collect::<Result<_>>().unwrap();
        assert_eq!(walked, extents);
        assert_eq!(allocated_bytes(&img).unwrap(), 3 * w + 512);
        let ranges: Vec<(u64, u64)> = DataRanges::new(&img, 4096, &Control::new()).collect::<Result<_>>().unwrap();
        assert_eq!(ranges, vec![(0, 3 * w + 4096)]);
    }

    #[test]
    fn union_merges_ordered_streams() {
        let a = vec![Ok((0, 10)), Ok((20, 30)), Ok((50, 60))];
        let b = vec![Ok((5, 12)), Ok((30, 40)), Ok((70, 80))];
        let u: Vec<(u64, u64)> = union(a.into_iter(), b.into_iter()).collect::<Result<_>>().unwrap();
        assert_eq!(u, vec![(0, 12), (20, 40), (50, 60), (70, 80)]);
        let img = MemImage(vec![1u8; 8192]);
        assert_eq!(DataRanges::new(&img, 4096, &Control::new()).count(), 1);
        // A cancelled walk stops with an interruption, not a short list.
        let ctl = Control::new();
        ctl.cancel_flag().store(true, std::sync::atomic::Ordering::Relaxed);
        let first = DataRanges::new(&img, 4096, &ctl).next();
        assert!(matches!(first, Some(Err(e)) if e.kind() == crate::ErrorKind::Interrupted));
    }
}
