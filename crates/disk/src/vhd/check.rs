//! Structural check of an opened VHD.
//!
//! qemu-img has no check for vpc (it exits 63), so this is imgport's own: the findings noted at open
//! (checksums, footer copies), then the layout — fixed data area against the virtual size, dynamic header
//! and BAT placement, and every BAT entry's block (past the end of the file, overlapping metadata or
//! another block).

use super::footer::{DYN_HEADER_SIZE, FOOTER_SIZE, QEMU_MAX_SIZE};
use super::reader::{BlockTrouble, Dynamic, Layout, VhdImage};
use crate::image::{CheckReport, Finding};

/// Individual BAT findings listed before the rest are summarised in one line.
const MAX_LISTED: usize = 100;

pub(crate) fn check(img: &VhdImage) -> CheckReport {
    let mut r = img.open_findings.clone();
    let f = &img.footer;
    let len = img.file.len();
    if f.format_version != 0x0001_0000 {
        r.warnings.push(Finding::new(
            "footer",
            Some(img.footer_offset + 12),
            format!("file format version {:#010x} (expected 0x00010000)", f.format_version),
        ));
    }
    if f.saved_state != 0 {
        r.warnings.push(Finding::new(
            "footer",
            Some(img.footer_offset + 84),
            "saved-state flag set: the disk belongs to a suspended virtual machine",
        ));
    }
    if img.virtual_size > QEMU_MAX_SIZE {
        r.warnings.push(Finding::new(
            "footer",
            Some(img.footer_offset + 48),
            format!("virtual size {} is above 2040 GiB: qemu refuses to open it", img.virtual_size),
        ));
    }
    match &img.layout {
        Layout::Fixed => check_fixed(img, len, &mut r),
        Layout::Dynamic(d) => check_dynamic(img, d, len, &mut r),
    }
    r
}

fn check_fixed(img: &VhdImage, len: u64, r: &mut CheckReport) {
    if img.footer.data_offset != u64::MAX && img.footer.data_offset != 0xFFFF_FFFF {
        r.warnings.push(Finding::new(
            "footer",
            Some(img.footer_offset + 16),
            format!("fixed disk with data offset {:#x} (expected all ones)", img.footer.data_offset),
        ));
    }
    let data_len = len - FOOTER_SIZE;
    if data_len < img.virtual_size {
        r.corruptions.push(Finding::new(
            "data",
            Some(data_len),
            format!(
                "the file holds {data_len} bytes of data but the disk is {} bytes: its end reads as the footer \
                 and zeros",
                img.virtual_size
            ),
        ));
    } else if data_len > img.virtual_size {
        r.warnings.push(Finding::new(
            "data",
            Some(img.virtual_size),
            format!(
                "{} bytes of data past the {}-byte disk ({} size) are not visible",
                data_len - img.virtual_size,
                img.virtual_size,
                img.size_source.as_str()
            ),
        ));
    }
}

fn check_dynamic(img: &VhdImage, d: &Dynamic, len: u64, r: &mut CheckReport) {
    if !d.header_offset.is_multiple_of(512) {
        r.warnings.push(Finding::new(
            "dynamic disk header",
            Some(d.header_offset),
            "dynamic disk header is not sector aligned",
        ));
    }
    if d.header.header_version != 0x0001_0000 {
        r.warnings.push(Finding::new(
            "dynamic disk header",
            Some(d.header_offset + 24),
            format!("header version {:#010x} (expected 0x00010000)", d.header.header_version),
        ));
    }
    let header_end = d.header_offset.saturating_add(DYN_HEADER_SIZE);
    if header_end > len - FOOTER_SIZE && img.footer_offset != 0 {
        r.corruptions.push(Finding::new(
            "dynamic disk header",
            Some(d.header_offset),
            "the dynamic disk header overlaps the footer at the end of the file",
        ));
    }
    if d.header_offset < FOOTER_SIZE {
        r.corruptions.push(Finding::new(
            "dynamic disk header",
            Some(d.header_offset),
            "the dynamic disk header overlaps the footer copy at offset 0",
        ));
    }
    let bat = d.metadata.iter().find(|m| m.2 == "BAT").copied().unwrap_or((0, 0, "BAT"));
    if !bat.0.is_multiple_of(512) {
        r.warnings.push(Finding::new("BAT", Some(bat.0), "the BAT is not sector aligned"));
    }
    if bat.0 < header_end && d.header_offset < bat.1 {
        r.corruptions.push(Finding::new("BAT", Some(bat.0), "the BAT overlaps the dynamic disk header"));
    }
    if bat.0 < FOOTER_SIZE || (img.footer_offset != 0 && bat.1 > len - FOOTER_SIZE) {
        r.corruptions.push(Finding::new("BAT", Some(bat.0), "the BAT overlaps a footer"));
    }
    let mut listed = 0usize;
    let mut unlisted = [0usize; 4];
    for index in 0..d.bat.len() {
        let trouble = d.trouble(index);
        if trouble == BlockTrouble::None {
            continue;
        }
        if listed < MAX_LISTED {
            if let Some(msg) = d.describe_trouble(index, len) {
                r.corruptions.push(Finding::new(format!("BAT entry {index}"), Some(d.entry_offset(index)), msg));
                listed += 1;
            }
        } else {
            unlisted[trouble as usize] += 1;
        }
    }
    let more: usize = unlisted.iter().sum();
    if more > 0 {
        r.corruptions.push(Finding::new(
            "BAT",
            Some(bat.0),
            format!(
                "{more} more bad BAT entries ({} past the end of the file, {} overlapping metadata, {} overlapping \
                 another block)",
                unlisted[BlockTrouble::PastEof as usize],
                unlisted[BlockTrouble::OverlapsMetadata as usize],
                unlisted[BlockTrouble::OverlapsBlock as usize]
            ),
        ));
    }
}
