//! Structural check of a VMDK: every grain table and grain inside its file, no two structures sharing
//! bytes, streamOptimized grain markers agreeing with the grain tables, the redundant grain directory
//! agreeing with the primary one, flat extent files as long as the descriptor says.
//!
//! Like `qemu-img check`, it looks at metadata only (markers included) and never inflates grains.

use super::header::{Marker, GD_AT_END, KNOWN_FLAGS, MARKER_GD, MARKER_GT, SECTOR};
use super::sparse::{classify, read_table, Grain, SparseExtent, SparseFormat};
use super::{Body, VmdkImage};
use crate::error::Result;
use crate::image::{CheckReport, Finding};

/// Findings kept per category; the rest are counted in one summary line.
const MAX_FINDINGS: usize = 100;
/// Grains whose byte ranges are collected for the overlap check (32 bytes each: 64 MiB, 96 MiB while the list
/// grows). Grains shared by several table entries (a hostile image maps a whole disk to one grain) are found
/// among them; past the limit the check says it did not look at every grain.
const MAX_GRAINS_FOR_OVERLAP: usize = 2 << 20;

struct Report {
    r: CheckReport,
    dropped_corruptions: usize,
    dropped_warnings: usize,
}

impl Report {
    fn corruption(&mut self, structure: impl Into<String>, offset: Option<u64>, message: impl Into<String>) {
        if self.r.corruptions.len() < MAX_FINDINGS {
            self.r.corruptions.push(Finding::new(structure, offset, message));
        } else {
            self.dropped_corruptions += 1;
        }
    }
    fn warning(&mut self, structure: impl Into<String>, offset: Option<u64>, message: impl Into<String>) {
        if self.r.warnings.len() < MAX_FINDINGS {
            self.r.warnings.push(Finding::new(structure, offset, message));
        } else {
            self.dropped_warnings += 1;
        }
    }
    fn finish(mut self) -> CheckReport {
        if self.dropped_corruptions > 0 {
            let n = self.dropped_corruptions;
            self.r.corruptions.push(Finding::new("image", None, format!("{n} more errors not listed")));
        }
        if self.dropped_warnings > 0 {
            let n = self.dropped_warnings;
            self.r.warnings.push(Finding::new("image", None, format!("{n} more warnings not listed")));
        }
        self.r
    }
}

pub(super) fn check(img: &VmdkImage) -> Result<CheckReport> {
    let mut rep = Report { r: img.open_report.clone(), dropped_corruptions: 0, dropped_warnings: 0 };
    let several = img.parts.len() > 1;
    for (i, part) in img.parts.iter().enumerate() {
        let prefix = if several {
            let file = part.line.as_ref().and_then(|l| l.file.as_deref()).unwrap_or("");
            format!("extent {} ({file}): ", i + 1)
        } else {
            String::new()
        };
        match &part.body {
            Body::Zero => {}
            Body::Flat(f) => {
                let needed = f.offset + part.len;
                if needed > f.file_len {
                    rep.corruption(
                        format!("{prefix}flat extent"),
                        Some(f.file_len),
                        format!(
                            "{} is {} bytes long, the descriptor needs {needed}: its end is missing",
                            f.path.display(),
                            f.file_len
                        ),
                    );
                }
            }
            Body::Sparse(s) => check_sparse(s, &prefix, &mut rep)?,
        }
    }
    Ok(rep.finish())
}

/// A byte range of the extent file and what occupies it.
struct Used {
    start: u64,
    end: u64,
    what: What,
}

#[derive(Clone, Copy)]
enum What {
    Header,
    Descriptor,
    Footer,
    Directory,
    RedundantDirectory,
    Table(usize),
    RedundantTable(usize),
    Grain(u64),
}

impl std::fmt::Display for What {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            What::Header => f.write_str("header"),
            What::Descriptor => f.write_str("embedded descriptor"),
            What::Footer => f.write_str("footer"),
            What::Directory => f.write_str("grain directory"),
            What::RedundantDirectory => f.write_str("redundant grain directory"),
            What::Table(i) => write!(f, "grain table {i}"),
            What::RedundantTable(i) => write!(f, "redundant grain table {i}"),
            What::Grain(g) => write!(f, "grain {g}"),
        }
    }
}

fn check_sparse(s: &SparseExtent, prefix: &str, rep: &mut Report) -> Result<()> {
    let file_len = s.file.len();
    let mut used = vec![Used { start: 0, end: SECTOR, what: What::Header }];
    let mut gd_at_end = false;
    if let SparseFormat::Kdmv { primary, header, footer_offset } = &s.format {
        if header.flags & !KNOWN_FLAGS != 0 {
            rep.warning(
                format!("{prefix}header"),
                Some(8),
                format!("unknown flags {:#x}", header.flags & !KNOWN_FLAGS),
            );
        }
        if header.unclean_shutdown {
            rep.warning(format!("{prefix}header"), Some(72), "the image was not closed cleanly (uncleanShutdown set)");
        }
        if header.desc_offset != 0 && header.desc_size != 0 {
            let start = header.desc_offset.saturating_mul(SECTOR);
            used.push(Used {
                start,
                end: start.saturating_add(header.desc_size.saturating_mul(SECTOR)),
                what: What::Descriptor,
            });
        }
        if let Some(at) = footer_offset {
            gd_at_end = primary.gd_offset == GD_AT_END && s.markers;
            used.push(Used { start: at - SECTOR, end: at + 2 * SECTOR, what: What::Footer });
            let mut same = header.clone();
            same.gd_offset = primary.gd_offset;
            if same != *primary {
                rep.warning(
                    format!("{prefix}footer"),
                    Some(*at),
                    "the footer's header copy differs from the header in more than the grain directory offset",
                );
            }
        }
    }
    let gd_end = s.gd_offset + s.gd.len() as u64 * 4;
    used.push(Used { start: s.gd_offset, end: gd_end, what: What::Directory });
    if gd_at_end && s.gd_offset >= SECTOR {
        expect_marker(s, s.gd_offset - SECTOR, MARKER_GD, &format!("{prefix}grain directory"), rep)?;
    }

    let zero_flag = s.zero_grain_flag();
    let grains_total = s.size.div_ceil(s.grain_bytes);
    let per_gt = s.gtes_per_gt as u64;
    let gt_bytes = s.gt_bytes();
    let mut grains = 0usize;
    let mut too_many_grains = false;
    let mut zero_without_flag = 0u64;

    for (i, &sector) in s.gd.iter().enumerate() {
        if sector == 0 {
            continue;
        }
        let at = sector as u64 * SECTOR;
        if at + gt_bytes > file_len {
            rep.corruption(
                format!("{prefix}grain directory entry {i}"),
                Some(s.gd_offset + i as u64 * 4),
                format!("grain table at {at:#x} extends past the end of the file ({file_len} bytes)"),
            );
            continue;
        }
        used.push(Used { start: at, end: at + gt_bytes, what: What::Table(i) });
        if gd_at_end {
            expect_marker(s, at - SECTOR, MARKER_GT, &format!("{prefix}grain table {i}"), rep)?;
        }
        let table = read_table(&s.file, at, per_gt, "grain table")?;
        for (j, &gte) in table.iter().enumerate() {
            let g = i as u64 * per_gt + j as u64;
            if g >= grains_total {
                break;
            }
            let entry_at = Some(at + j as u64 * 4);
            let host = match classify(gte) {
                Grain::Unallocated => continue,
                Grain::Zero => {
                    if !zero_flag {
                        zero_without_flag += 1;
                    }
                    continue;
                }
                Grain::Stored(h) => h,
            };
            let end = if s.compressed {
                if host >= file_len {
                    rep.corruption(
                        format!("{prefix}grain table {i} entry {j}"),
                        entry_at,
                        format!("grain {g} at {host:#x} is past the end of the file ({file_len} bytes)"),
                    );
                    continue;
                }
                if s.markers {
                    let m = s.marker_at(host)?;
                    if m.size == 0 || m.size as u64 > 2 * s.grain_bytes {
                        rep.corruption(
                            format!("{prefix}grain marker of grain {g}"),
                            Some(host),
                            format!("impossible compressed size {}", m.size),
                        );
                        continue;
                    }
                    if m.value != s.grain_lba(g) {
                        rep.corruption(
                            format!("{prefix}grain marker of grain {g}"),
                            Some(host),
                            format!("marker says sector {}, the grain table says sector {}", m.value, s.grain_lba(g)),
                        );
                    }
                    host + 12 + m.size as u64
                } else {
                    host + 1
                }
            } else {
                host + s.grain_bytes
            };
            if end > file_len {
                rep.corruption(
                    format!("{prefix}grain table {i} entry {j}"),
                    entry_at,
                    format!("grain {g} at {host:#x} extends past the end of the file ({file_len} bytes)"),
                );
                continue;
            }
            if grains < MAX_GRAINS_FOR_OVERLAP {
                used.push(Used { start: host, end, what: What::Grain(g) });
                grains += 1;
            } else {
                too_many_grains = true;
            }
        }
    }
    if zero_without_flag > 0 {
        rep.warning(
            format!("{prefix}grain tables"),
            None,
            format!("{zero_without_flag} entries are 1 (zeroed grain) but the header lacks the zeroed-grain flag"),
        );
    }
    check_redundant(s, prefix, &mut used, rep)?;

    if too_many_grains {
        rep.warning(format!("{prefix}grains"), None, "too many grains: overlaps between grains were not all checked");
    }
    report_overlaps(&mut used, prefix, rep);
    Ok(())
}

/// A metadata marker of type `kind` should sit in the sector before a streamOptimized GT or GD.
fn expect_marker(s: &SparseExtent, at: u64, kind: u32, what: &str, rep: &mut Report) -> Result<()> {
    let m: Marker = s.marker_at(at)?;
    if m.size != 0 || m.kind != kind {
        rep.warning(what, Some(at), "not preceded by its stream marker");
    }
    Ok(())
}

/// Compare the redundant grain directory and tables with the primary ones.
fn check_redundant(s: &SparseExtent, prefix: &str, used: &mut Vec<Used>, rep: &mut Report) -> Result<()> {
    let Some(rgd_offset) = s.rgd_offset() else {
        return Ok(());
    };
    let rgd = match read_table(&s.file, rgd_offset, s.gd.len() as u64, "redundant grain directory") {
        Ok(t) => t,
        Err(e) => {
            rep.corruption(format!("{prefix}redundant grain directory"), Some(rgd_offset), e.message().to_string());
            return Ok(());
        }
    };
    used.push(Used { start: rgd_offset, end: rgd_offset + rgd.len() as u64 * 4, what: What::RedundantDirectory });
    let gt_bytes = s.gt_bytes();
    let mut differing = 0usize;
    for (i, (&primary, &redundant)) in s.gd.iter().zip(rgd.iter()).enumerate() {
        if redundant == 0 {
            if primary != 0 {
                differing += 1;
            }
            continue;
        }
        let at = redundant as u64 * SECTOR;
        if at + gt_bytes > s.file.len() {
            rep.corruption(
                format!("{prefix}redundant grain directory entry {i}"),
                Some(rgd_offset + i as u64 * 4),
                format!("redundant grain table at {at:#x} extends past the end of the file"),
            );
            continue;
        }
        used.push(Used { start: at, end: at + gt_bytes, what: What::RedundantTable(i) });
        let pa = primary as u64 * SECTOR;
        if primary == 0 || pa + gt_bytes > s.file.len() {
            differing += 1;
            continue;
        }
        let r = read_table(&s.file, at, s.gtes_per_gt as u64, "redundant grain table")?;
        let p = read_table(&s.file, pa, s.gtes_per_gt as u64, "grain table")?;
        if r != p {
            differing += 1;
        }
    }
    if differing > 0 {
        rep.warning(
            format!("{prefix}redundant grain directory"),
            Some(rgd_offset),
            format!("{differing} grain tables differ from their redundant copies (the primary ones are used)"),
        );
    }
    Ok(())
}

fn report_overlaps(used: &mut [Used], prefix: &str, rep: &mut Report) {
    used.sort_unstable_by_key(|u| (u.start, u.end));
    let mut reach: Option<(u64, What)> = None;
    for u in used.iter() {
        if u.start == u.end {
            continue;
        }
        if let Some((end, what)) = reach {
            if u.start < end {
                rep.corruption(
                    format!("{prefix}{}", u.what),
                    Some(u.start),
                    format!("overlaps the {what} (which extends to {end:#x})"),
                );
            }
        }
        if reach.is_none_or(|(end, _)| u.end > end) {
            reach = Some((u.end, u.what));
        }
    }
}
