//! Comparing the virtual contents of two images, reading only where either holds data.

use crate::error::Result;
use crate::extents::union;
use crate::image::DiskImage;
use crate::scan::{data_ranges, is_zero, scan_ranges, Granules};
use crate::write::Control;

/// Outcome of a comparison.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Comparison {
    Identical,
    /// Contents differ; `offset` is the first differing byte of the virtual disk.
    Differ {
        offset: u64,
    },
    /// Virtual sizes differ (and a size mismatch was not allowed).
    SizeMismatch {
        size_a: u64,
        size_b: u64,
    },
}

/// Compare `a` and `b`. With `allow_size_mismatch`, the common prefix is compared and the longer image's
/// tail must read as zeros.
pub fn compare(a: &dyn DiskImage, b: &dyn DiskImage, allow_size_mismatch: bool, ctl: &Control) -> Result<Comparison> {
    let (size_a, size_b) = (a.virtual_size(), b.virtual_size());
    if size_a != size_b && !allow_size_mismatch {
        return Ok(Comparison::SizeMismatch { size_a, size_b });
    }
    let common = size_a.min(size_b);
    let g = Granules::new(4096);
    let common_ranges = union(data_ranges(a, g, ctl), data_ranges(b, g, ctl))
        .take_while(move |r| r.as_ref().map_or(true, |r| r.0 < common))
        .map(move |r| r.map(|(s, e)| (s, e.min(common))));
    let mut first_diff: Option<u64> = None;
    let mut other = Vec::new();
    let outcome = scan_ranges(a, common_ranges, ctl, &mut |offset, buf| {
        other.resize(buf.len(), 0);
        b.read_at(&mut other, offset)?;
        if buf != other.as_slice() {
            let i = buf.iter().zip(other.iter()).position(|(x, y)| x != y).unwrap_or(0);
            first_diff = Some(offset + i as u64);
            return Err(crate::Error::interrupted());
        }
        Ok(())
    });
    if let Some(offset) = first_diff {
        return Ok(Comparison::Differ { offset });
    }
    outcome?;
    // The longer image's tail must be zeros.
    let longer: &dyn DiskImage = if size_a > size_b { a } else { b };
    let tail_ranges = data_ranges(longer, g, ctl)
        .filter(move |r| r.as_ref().map_or(true, |r| r.1 > common))
        .map(move |r| r.map(|(s, e)| (s.max(common), e)));
    let outcome = scan_ranges(longer, tail_ranges, ctl, &mut |offset, buf| {
        if !is_zero(buf) {
            let i = buf.iter().position(|&x| x != 0).unwrap_or(0);
            first_diff = Some(offset + i as u64);
            return Err(crate::Error::interrupted());
        }
        Ok(())
    });
    if let Some(offset) = first_diff {
        return Ok(Comparison::Differ { offset });
    }
    outcome?;
    Ok(Comparison::Identical)
}
