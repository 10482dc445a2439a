//! Structural check of an opened VHDX.
//!
//! What opening already refused (overlapping regions, unknown required items, a BAT too small) never gets
//! here; what it tolerated (one bad header or region table copy, a log that needed replaying) comes back as
//! notes. The check then walks the BAT: every FULLY_PRESENT block must lie past the header section, inside the
//! file, clear of the log, BAT and metadata, and clear of every other block; states must be valid for a disk
//! without parent. Like qemu, only the part of the last block that holds virtual disk data must be in the file.

use super::format::*;
use super::reader::{Note, VhdxImage};
use crate::image::{CheckReport, Finding};

impl VhdxImage {
    pub(super) fn check_report(&self) -> CheckReport {
        let mut report = CheckReport::default();
        for note in &self.notes {
            match note {
                Note::Warning(f) => report.warnings.push(f.clone()),
                Note::Corruption(f) => report.corruptions.push(f.clone()),
            }
        }
        let file_len = self.store.len();
        for a in self.areas.iter().skip(1) {
            if a.end > file_len {
                report.warnings.push(Finding::new(
                    a.name.clone(),
                    Some(a.start),
                    format!("reaches {:#x}, past the end of the file ({file_len} bytes)", a.end),
                ));
            }
        }

        // (start, end, block) of every stored block, to find blocks sharing file space.
        let mut used: Vec<(u64, u64, u64)> = Vec::new();
        for block in 0..self.payload_blocks() {
            let (entry, at) = self.entry(block);
            let structure = || format!("BAT entry of block {block}");
            let mut corrupt = |msg: String| report.corruptions.push(Finding::new(structure(), Some(at), msg));
            match entry & BAT_STATE_MASK {
                PAYLOAD_NOT_PRESENT | PAYLOAD_UNDEFINED | PAYLOAD_ZERO | PAYLOAD_UNMAPPED => {}
                PAYLOAD_UNMAPPED_V095 => report.warnings.push(Finding::new(
                    structure(),
                    Some(at),
                    "state 5 (UNMAPPED in the v0.95 draft, reserved in v1.0) is read as zeros",
                )),
                PAYLOAD_FULLY_PRESENT => {
                    let host = entry & BAT_OFFSET_MASK;
                    let len = self.block_len(block);
                    let end = host.saturating_add(len);
                    if host < HEADER_SECTION_END {
                        corrupt(format!("payload offset {host:#x} lies in the header section"));
                    } else if host >= file_len {
                        corrupt(format!(
                            "payload offset {host:#x} is past the end of the file ({file_len} bytes): truncated image?"
                        ));
                    } else if end > file_len {
                        corrupt(format!(
                            "payload at {host:#x} ends at {end:#x}, past the end of the file ({file_len} bytes): \
                             truncated image?"
                        ));
                    }
                    if let Some(a) = self.areas.iter().skip(1).find(|a| a.overlaps(host, end)) {
                        corrupt(format!("payload at {host:#x} overlaps the {}", a.name));
                    }
                    if entry & BAT_RESERVED_MASK != 0 {
                        report.warnings.push(Finding::new(
                            structure(),
                            Some(at),
                            format!(
                                "reserved bits set ({:#x}); the offset field counts whole MiB",
                                entry & BAT_RESERVED_MASK
                            ),
                        ));
                    }
                    used.push((host, end, block));
                }
                PAYLOAD_PARTIALLY_PRESENT => corrupt(
                    "state PARTIALLY_PRESENT is only valid in a differencing disk; reading this block fails".into(),
                ),
                s => corrupt(format!("invalid block state {s}")),
            }
        }

        // Sector bitmap entries follow every chunk_ratio payload entries; a disk without parent never uses them.
        let ratio = self.chunk_ratio;
        let mut idx = ratio;
        while idx < self.bat.len() as u64 {
            let entry = self.bat[idx as usize];
            let at = self.bat_offset + idx * 8;
            let state = entry & BAT_STATE_MASK;
            if state != PAYLOAD_NOT_PRESENT {
                let what = if state == SB_PRESENT { "is allocated" } else { "has an invalid state" };
                report.warnings.push(Finding::new(
                    format!("BAT sector bitmap entry {}", idx / (ratio + 1)),
                    Some(at),
                    format!("{what} ({state}) in a disk without parent; it is ignored"),
                ));
            }
            idx += ratio + 1;
        }

        used.sort_unstable();
        for pair in used.windows(2) {
            let ((_, a_end, a), (b_start, _, b)) = (pair[0], pair[1]);
            if b_start < a_end {
                let (_, at) = self.entry(b);
                report.corruptions.push(Finding::new(
                    format!("BAT entry of block {b}"),
                    Some(at),
                    format!("payload at {b_start:#x} overlaps that of block {a}"),
                ));
            }
        }
        report
    }
}
