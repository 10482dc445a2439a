//! Where a logical volume's bytes are: its segments from the volume group metadata (lvm2's `lib/format_text`
//! `segment` sections), checked against the physical volumes' extents, and the translation of an offset in the LV
//! to a physical volume and an offset in it. Linear and striped segments are read; thin, RAID, mirror, cache and
//! snapshot segments are recognised and reported, since their data is not laid out extent for extent.

use crate::error::{Error, Result};

/// Structure name the errors carry.
const LAYOUT: &str = "lvm logical volume layout";
/// More segments or stripes than this is not a volume group lvm2 would write.
const MAX_SEGMENTS: usize = 65_536;
const MAX_STRIPES: usize = 128;
const SECTOR: u64 = 512;

/// A physical volume as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvExtents {
    /// The metadata key (`pv0`).
    pub key: String,
    /// Where its first extent starts, in bytes from the start of the PV.
    pub pe_start: u64,
    pub pe_count: u64,
}

/// One segment of a logical volume, in extents of the volume group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub start_extent: u64,
    pub extent_count: u64,
    /// Bytes per stripe chunk; the whole segment for one stripe.
    pub stripe_size: u64,
    /// (index into the PV list, first extent on that PV) per stripe.
    pub stripes: Vec<(usize, u64)>,
}

/// A logical volume's layout, or why it cannot be read extent for extent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    Mapped {
        size: u64,
        segments: Vec<Segment>,
    },
    /// The segment type (thin, raid1, cache, snapshot, ...) and what that means for reading it.
    Unsupported {
        kind: String,
        why: String,
    },
}

/// Where a byte of an LV is: the PV (index), the offset in the PV, and how many bytes from there are contiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub pv: usize,
    pub offset: u64,
    pub len: u64,
}

/// A segment as written in the metadata text, before it is checked.
#[derive(Debug, Clone, Default)]
pub struct RawSegment {
    pub start_extent: Option<i64>,
    pub extent_count: Option<i64>,
    pub kind: Option<String>,
    pub stripe_count: Option<i64>,
    /// In sectors.
    pub stripe_size: Option<i64>,
    /// (PV key, first extent).
    pub stripes: Vec<(String, i64)>,
}

/// What a segment type means when it is not striped.
fn unsupported(kind: &str) -> String {
    match kind {
        "thin" | "thin-pool" => "a thin volume: its blocks are mapped by the pool's metadata, not read yet".into(),
        k if k.starts_with("raid") || k == "mirror" => {
            format!("a {k} volume: its images are separate sub-volumes, not read yet")
        }
        "cache" | "cache-pool" | "writecache" => "a cached volume: not read yet".into(),
        "snapshot" => "a snapshot: its exception store is not read".into(),
        "vdo" | "vdo-pool" => "a VDO volume: its data is deduplicated and compressed, not read".into(),
        "crypt" | "integrity" => format!("a {kind} volume: not read"),
        k => format!("segment type {k:?} is not known"),
    }
}

/// Checks `raw` segments of LV `name` against the volume group's `extent_size` (bytes) and its PVs.
pub fn layout(name: &str, extent_size: u64, pvs: &[PvExtents], raw: &[RawSegment]) -> Result<Layout> {
    let bad = |m: String| Err(Error::corrupt(LAYOUT, format!("logical volume {name}: {m}")));
    if extent_size == 0 || !extent_size.is_multiple_of(SECTOR) {
        return bad(format!("extent size {extent_size} is not a whole number of sectors"));
    }
    if raw.is_empty() {
        return bad("no segments".into());
    }
    if raw.len() > MAX_SEGMENTS {
        return Err(Error::limit(LAYOUT, format!("logical volume {name}: {} segments", raw.len())));
    }
    let mut segments = Vec::with_capacity(raw.len());
    let mut next = 0u64;
    for (n, r) in raw.iter().enumerate() {
        let kind = r.kind.as_deref().unwrap_or("");
        if kind != "striped" {
            return Ok(Layout::Unsupported { kind: kind.to_string(), why: unsupported(kind) });
        }
        let n = n + 1;
        let (Some(start), Some(count)) = (r.start_extent, r.extent_count) else {
            return bad(format!("segment {n} has no start_extent or extent_count"));
        };
        let (Ok(start), Ok(count)) = (u64::try_from(start), u64::try_from(count)) else {
            return bad(format!("segment {n} has a negative extent"));
        };
        if start != next || count == 0 {
            return bad(format!("segment {n} starts at extent {start}, not {next}, or is empty"));
        }
        next = start.checked_add(count).ok_or_else(|| Error::corrupt(LAYOUT, format!("{name}: extents overflow")))?;
        let stripe_count = usize::try_from(r.stripe_count.unwrap_or(1)).unwrap_or(0);
        if stripe_count == 0 || stripe_count > MAX_STRIPES || stripe_count != r.stripes.len() {
            return bad(format!("segment {n} has {} stripes listed for stripe_count {stripe_count}", r.stripes.len()));
        }
        if !count.is_multiple_of(stripe_count as u64) {
            return bad(format!("segment {n}: {count} extents do not divide into {stripe_count} stripes"));
        }
        let per_stripe = count / stripe_count as u64;
        let stripe_size = match stripe_count {
            1 => per_stripe.saturating_mul(extent_size),
            _ => {
                let sectors = r.stripe_size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
                let bytes = sectors.saturating_mul(SECTOR);
                // lvm2 takes powers of two from 4 KiB up to the extent size.
                if !bytes.is_power_of_two() || bytes < 4096 || bytes > extent_size || !extent_size.is_multiple_of(bytes)
                {
                    return bad(format!("segment {n}: stripe size of {sectors} sectors"));
                }
                bytes
            }
        };
        let mut stripes = Vec::with_capacity(stripe_count);
        for (key, first) in &r.stripes {
            let Some(pv) = pvs.iter().position(|p| &p.key == key) else {
                return bad(format!("segment {n} names {key:?}, not a physical volume of the group"));
            };
            let Ok(first) = u64::try_from(*first) else { return bad(format!("segment {n}: negative extent on {key}")) };
            let end_byte = first
                .checked_add(per_stripe)
                .and_then(|e| e.checked_mul(extent_size))
                .and_then(|e| e.checked_add(pvs[pv].pe_start));
            if end_byte.is_none() || first.saturating_add(per_stripe) > pvs[pv].pe_count {
                return bad(format!(
                    "segment {n}: extents {first}..{} lie past the {} extents of {key}",
                    first.saturating_add(per_stripe),
                    pvs[pv].pe_count
                ));
            }
            stripes.push((pv, first));
        }
        segments.push(Segment { start_extent: start, extent_count: count, stripe_size, stripes });
    }
    let size =
        next.checked_mul(extent_size).ok_or_else(|| Error::corrupt(LAYOUT, format!("{name}: size overflows")))?;
    Ok(Layout::Mapped { size, segments })
}

/// Where byte `offset` of a mapped LV is (`None` past its end).
pub fn locate(extent_size: u64, pvs: &[PvExtents], segments: &[Segment], offset: u64) -> Option<Location> {
    let extent = offset / extent_size;
    let i = segments.partition_point(|s| s.start_extent + s.extent_count <= extent);
    let s = segments.get(i)?;
    let within = offset - s.start_extent * extent_size;
    let chunk = within / s.stripe_size;
    let stripes = s.stripes.len() as u64;
    let (stripe, row) = (chunk % stripes, chunk / stripes);
    let (pv, first) = s.stripes[stripe as usize];
    let into = within % s.stripe_size;
    let offset = pvs[pv].pe_start + first * extent_size + row * s.stripe_size + into;
    Some(Location { pv, offset, len: s.stripe_size - into })
}

/// Where a physical volume's bytes are: its disk and the range of it the PV takes.
#[derive(Clone)]
pub struct PvSource {
    pub disk: crate::reader::Disk,
    pub start: u64,
    pub len: u64,
}

/// A mapped logical volume read as a disk image: every read translated to the physical volumes it lies on, so the
/// filesystem readers work inside an LV as on a partition. A PV that is not there (a data disk not given) fails
/// the reads that need it, naming the PV.
pub struct LvImage {
    name: String,
    size: u64,
    extent_size: u64,
    pvs: Vec<PvExtents>,
    segments: Vec<Segment>,
    /// Per PV of `pvs`: where it is, when it was found.
    sources: Vec<Option<PvSource>>,
}

impl LvImage {
    /// `sources` in the order of `pvs`.
    pub fn new(
        name: &str,
        extent_size: u64,
        pvs: Vec<PvExtents>,
        layout: &Layout,
        sources: Vec<Option<PvSource>>,
    ) -> Option<LvImage> {
        match layout {
            Layout::Mapped { size, segments } => Some(LvImage {
                name: name.to_string(),
                size: *size,
                extent_size,
                pvs,
                segments: segments.clone(),
                sources,
            }),
            Layout::Unsupported { .. } => None,
        }
    }
}

impl imgport_disk::DiskImage for LvImage {
    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> imgport_disk::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let Some(loc) = locate(self.extent_size, &self.pvs, &self.segments, at) else {
                return Err(imgport_disk::Error::corrupt(format!(
                    "logical volume {}: read at {at:#x} past its end ({} bytes)",
                    self.name, self.size
                )));
            };
            let key = &self.pvs[loc.pv].key;
            let Some(src) = self.sources.get(loc.pv).and_then(Option::as_ref) else {
                return Err(imgport_disk::Error::unsupported(format!(
                    "logical volume {}: its physical volume {key} is on a disk that was not given (--data-disk)",
                    self.name
                )));
            };
            let n = (buf.len() - done).min(usize::try_from(loc.len).unwrap_or(usize::MAX));
            if loc.offset.checked_add(n as u64).is_none_or(|end| end > src.len) {
                return Err(imgport_disk::Error::corrupt(format!(
                    "logical volume {}: extent at byte {} of {key} lies past the end of that volume ({} bytes)",
                    self.name, loc.offset, src.len
                )));
            }
            src.disk.read_at(&mut buf[done..done + n], src.start + loc.offset)?;
            done += n;
        }
        Ok(())
    }

    fn map(&self, offset: u64, length: u64) -> imgport_disk::Result<Vec<imgport_disk::Extent>> {
        Ok(vec![imgport_disk::Extent::data(offset, length, None)])
    }

    fn details(&self) -> imgport_disk::ImageDetails {
        let mut d = imgport_disk::ImageDetails::new(imgport_disk::Format::Raw);
        d.subformat = Some("lvm logical volume".into());
        d
    }

    fn check(&self) -> imgport_disk::Result<imgport_disk::CheckReport> {
        Ok(imgport_disk::CheckReport::default())
    }
}

/// A volume with no bytes: what an LV that cannot be read is backed by, so it can still be listed.
pub struct EmptyImage;

impl imgport_disk::DiskImage for EmptyImage {
    fn virtual_size(&self) -> u64 {
        0
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> imgport_disk::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        Err(imgport_disk::Error::corrupt(format!("read at {offset:#x} of a logical volume that is not read")))
    }
    fn map(&self, _offset: u64, _length: u64) -> imgport_disk::Result<Vec<imgport_disk::Extent>> {
        Ok(Vec::new())
    }
    fn details(&self) -> imgport_disk::ImageDetails {
        imgport_disk::ImageDetails::new(imgport_disk::Format::Raw)
    }
    fn check(&self) -> imgport_disk::Result<imgport_disk::CheckReport> {
        Ok(imgport_disk::CheckReport::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXTENT: u64 = 4 << 20;

    fn pvs() -> Vec<PvExtents> {
        vec![
            PvExtents { key: "pv0".into(), pe_start: 1 << 20, pe_count: 100 },
            PvExtents { key: "pv1".into(), pe_start: 1 << 20, pe_count: 50 },
        ]
    }

    fn seg(start: i64, count: i64, stripes: &[(&str, i64)], size: i64) -> RawSegment {
        RawSegment {
            start_extent: Some(start),
            extent_count: Some(count),
            kind: Some("striped".into()),
            stripe_count: Some(stripes.len() as i64),
            stripe_size: Some(size),
            stripes: stripes.iter().map(|(k, e)| (k.to_string(), *e)).collect(),
        }
    }

    #[test]
    fn linear_segments_across_two_pvs() {
        let raw = [seg(0, 10, &[("pv0", 5)], 0), seg(10, 4, &[("pv1", 0)], 0)];
        let Layout::Mapped { size, segments } = layout("root", EXTENT, &pvs(), &raw).expect("layout") else {
            panic!("mapped")
        };
        assert_eq!(size, 14 * EXTENT);
        let at = |o| locate(EXTENT, &pvs(), &segments, o).expect("inside");
        assert_eq!(at(0), Location { pv: 0, offset: (1 << 20) + 5 * EXTENT, len: 10 * EXTENT });
        assert_eq!(at(10 * EXTENT + 7), Location { pv: 1, offset: (1 << 20) + 7, len: 4 * EXTENT - 7 });
        assert_eq!(locate(EXTENT, &pvs(), &segments, 14 * EXTENT), None);
    }

    #[test]
    fn striped_chunks_alternate_between_pvs() {
        // 64 KiB stripes (128 sectors) over two PVs.
        let raw = [seg(0, 4, &[("pv0", 0), ("pv1", 2)], 128)];
        let Layout::Mapped { segments, .. } = layout("data", EXTENT, &pvs(), &raw).expect("layout") else {
            panic!("mapped")
        };
        let at = |o| locate(EXTENT, &pvs(), &segments, o).expect("inside");
        let k = 64 << 10;
        assert_eq!(at(0), Location { pv: 0, offset: 1 << 20, len: k });
        assert_eq!(at(k), Location { pv: 1, offset: (1 << 20) + 2 * EXTENT, len: k });
        assert_eq!(at(2 * k + 1), Location { pv: 0, offset: (1 << 20) + k + 1, len: k - 1 });
        assert_eq!(at(3 * k), Location { pv: 1, offset: (1 << 20) + 2 * EXTENT + k, len: k });
    }

    #[test]
    fn hostile_layouts_are_errors_and_other_types_are_reported() {
        let p = pvs();
        for (why, raw) in [
            ("gap", vec![seg(0, 2, &[("pv0", 0)], 0), seg(3, 2, &[("pv0", 2)], 0)]),
            ("past the PV", vec![seg(0, 60, &[("pv1", 0)], 0)]),
            ("unknown PV", vec![seg(0, 1, &[("pv9", 0)], 0)]),
            ("negative", vec![seg(0, 1, &[("pv0", -1)], 0)]),
            ("stripe size", vec![seg(0, 2, &[("pv0", 0), ("pv1", 0)], 3)]),
            ("uneven", vec![seg(0, 3, &[("pv0", 0), ("pv1", 0)], 128)]),
            ("overflow", vec![seg(0, i64::MAX, &[("pv0", 0)], 0)]),
            ("empty", vec![]),
        ] {
            assert!(layout("lv", EXTENT, &p, &raw).is_err(), "{why}");
        }
        let mut thin = seg(0, 1, &[], 0);
        thin.kind = Some("thin".into());
        match layout("lv", EXTENT, &p, &[thin]).expect("a report") {
            Layout::Unsupported { kind, why } => assert!(kind == "thin" && why.contains("pool"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(layout("lv", 1000, &p, &[seg(0, 1, &[("pv0", 0)], 0)]).is_err(), "extent size not in sectors");
    }
}

#[cfg(test)]
mod image_tests {
    use super::*;
    use imgport_disk::DiskImage;

    #[test]
    fn an_lv_striped_over_two_disks_reads_back_its_bytes() {
        const EXTENT: u64 = 64 << 10;
        const CHUNK: u64 = 4 << 10;
        // Two "disks", each a PV starting at 1 MiB with its extents from 8 KiB into the PV.
        let mut a = vec![0u8; 2 << 20];
        let mut b = vec![0u8; 2 << 20];
        let pvs = vec![
            PvExtents { key: "pv0".into(), pe_start: 8 << 10, pe_count: 8 },
            PvExtents { key: "pv1".into(), pe_start: 8 << 10, pe_count: 8 },
        ];
        // The LV's bytes: 4 extents striped in 4 KiB chunks, pv0 from its extent 1, pv1 from its extent 0.
        let lv: Vec<u8> = (0..4 * EXTENT).map(|i| (i / 512 % 251) as u8).collect();
        for (c, chunk) in lv.chunks(CHUNK as usize).enumerate() {
            let (row, stripe) = (c as u64 / 2, c % 2);
            let (disk, first) = if stripe == 0 { (&mut a, 1) } else { (&mut b, 0) };
            let at = ((1 << 20) + (8 << 10) + first * EXTENT + row * CHUNK) as usize;
            disk[at..at + chunk.len()].copy_from_slice(chunk);
        }
        let raw = [RawSegment {
            start_extent: Some(0),
            extent_count: Some(4),
            kind: Some("striped".into()),
            stripe_count: Some(2),
            stripe_size: Some((CHUNK / 512) as i64),
            stripes: vec![("pv0".into(), 1), ("pv1".into(), 0)],
        }];
        let layout = layout("data", EXTENT, &pvs, &raw).expect("layout");
        let source = |bytes: Vec<u8>| {
            Some(PvSource { disk: crate::reader::tests::mem_disk(bytes), start: 1 << 20, len: 1 << 20 })
        };
        let img = LvImage::new("data", EXTENT, pvs.clone(), &layout, vec![source(a), source(b)]).expect("mapped");
        let mut got = vec![0u8; lv.len()];
        img.read_at(&mut got, 0).expect("read");
        assert!(got == lv, "the LV reads back");
        let mut part = vec![0u8; 10_000];
        img.read_at(&mut part, 3 * CHUNK + 123).expect("read");
        assert!(part[..] == lv[(3 * CHUNK + 123) as usize..][..10_000]);
        // Without the second disk: a clear error naming the PV.
        let missing = LvImage::new("data", EXTENT, pvs, &layout, vec![None, None]).expect("mapped");
        let e = missing.read_at(&mut part, 0).expect_err("no PV");
        assert!(e.to_string().contains("pv0") && e.to_string().contains("--data-disk"), "{e}");
    }
}
