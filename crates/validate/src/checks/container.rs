//! The image file itself: its container format and state, the virtual size, a VHD's footer.

use super::{human, CheckId, Subject, GIB, MIB};
use crate::finding::{Finding, Severity};
use crate::params::size_gib;
use crate::profile::{Profile, Target};

fn convert_fix(profile: &Profile) -> String {
    match profile.target {
        Target::Gce => "convert to raw and pack it as GCE expects: imgport convert -O raw IMAGE disk.raw && \
                        tar --format=oldgnu -Sczf image.tar.gz disk.raw"
            .into(),
        _ => format!("convert it: imgport convert {} IMAGE OUTPUT", profile.convert_hint),
    }
}

pub(super) fn container(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::Container;
    let d = s.details;
    let sub = d.subformat.as_deref();
    let shown = match sub {
        Some(sf) => format!("{} ({sf})", d.format),
        None => d.format.to_string(),
    };
    let mut out = Vec::new();
    match profile.containers.iter().find(|c| c.format == d.format) {
        None => {
            let accepted: Vec<String> = profile
                .containers
                .iter()
                .map(|c| match c.subformats {
                    Some(sfs) => format!("{} {}", c.format, sfs.join("/")),
                    None => c.format.to_string(),
                })
                .collect();
            out.push(
                Finding::fail(
                    ID,
                    sev,
                    format!("{} does not import {shown} images (accepts {})", profile.service, accepted.join(", ")),
                    convert_fix(profile),
                )
                .value(shown.clone()),
            );
        }
        Some(rule) => {
            if let Some(sfs) = rule.subformats {
                if !sub.is_some_and(|sf| sfs.contains(&sf)) {
                    out.push(
                        Finding::fail(
                            ID,
                            sev,
                            format!("{} needs {} {}, not {shown}", profile.service, d.format, sfs.join(" or ")),
                            convert_fix(profile),
                        )
                        .value(shown.clone()),
                    );
                }
            }
            if let Some((csev, why)) = rule.caveat {
                out.push(Finding::fail(ID, csev, why, convert_fix(profile)).value(shown.clone()));
            }
        }
    }
    if let Some(b) = &d.backing_file {
        out.push(
            Finding::fail(
                ID,
                Severity::Error,
                format!("the image has a backing file ({b}): only this layer would be uploaded"),
                "flatten it: imgport convert --follow-backing -O qcow2 IMAGE flat.qcow2 (or qemu-img convert)",
            )
            .value(b.clone()),
        );
    }
    if let Some(q) = d.qcow2() {
        if q.corrupt {
            out.push(
                Finding::fail(
                    ID,
                    Severity::Error,
                    "qcow2 header carries the corrupt flag: qemu found its metadata damaged",
                    "repair or recreate the image: qemu-img check -r all IMAGE, then convert it",
                )
                .offset(0),
            );
        }
        if q.dirty {
            out.push(
                Finding::fail(
                    ID,
                    Severity::Warning,
                    "qcow2 was not closed cleanly (dirty flag): its refcounts may be stale",
                    "shut the VM down cleanly, or run qemu-img check -r all IMAGE before uploading",
                )
                .offset(0),
            );
        }
        if q.snapshots > 0 {
            out.push(
                Finding::fail(
                    ID,
                    Severity::Info,
                    format!("{} internal snapshot(s) are ignored: only the active layer is imported", q.snapshots),
                    "nothing to do unless a snapshot is the state to import: qemu-img snapshot -a NAME IMAGE first",
                )
                .value(q.snapshots.to_string()),
            );
        }
    }
    if d.vhd().is_some_and(|v| v.saved_state) {
        out.push(Finding::fail(
            ID,
            Severity::Warning,
            "the VHD was saved with a suspended VM (saved-state flag): the disk may be inconsistent",
            "start and shut down the VM cleanly in its hypervisor, then export the disk again",
        ));
    }
    if let Some(x) = d.vhdx() {
        if x.log_state != "empty" {
            out.push(
                Finding::fail(
                    ID,
                    Severity::Warning,
                    format!("the VHDX log was not empty ({}): the disk was not closed cleanly", x.log_state),
                    "open and close the disk in Hyper-V (or mount and unmount it) so the log is applied",
                )
                .value(x.log_state.clone()),
            );
        }
    }
    if out.is_empty() {
        out.push(Finding::pass(ID, format!("{shown} is accepted by {}", profile.service)).value(shown));
    }
    out
}

pub(super) fn size(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::Size;
    let v = s.inspection.virtual_size;
    let gib = size_gib(v);
    let shown = format!("{} (rounded up: {gib} GiB)", human(v));
    let Some((min, max)) = profile.size_limit else {
        return vec![
            Finding::pass(ID, format!("virtual size {shown}: {} sets no limit", profile.service)).value(v.to_string())
        ];
    };
    let range = format!("{}-{} GiB", min / GIB, max / GIB);
    // Compared in GiB: the size rounded up, as DiskImageSize is given.
    let (min_gib, max_gib) = (min.div_ceil(GIB), max / GIB);
    if gib < min_gib || gib > max_gib {
        let fix = if gib < min_gib {
            format!("grow the virtual disk to at least {} GiB: qemu-img resize IMAGE {}G", min / GIB, min / GIB)
        } else {
            format!(
                "shrink the filesystems and partitions so the disk fits in {} GiB, then qemu-img resize --shrink",
                max / GIB
            )
        };
        return vec![Finding::fail(
            ID,
            sev,
            format!("virtual size {shown} is outside {range} for {}", profile.service),
            fix,
        )
        .value(v.to_string())];
    }
    let mut msg = format!("virtual size {shown} is within {range}");
    if let Some((lo, hi, note)) = profile.size_note {
        if gib < lo.div_ceil(GIB) || gib > hi / GIB {
            msg.push_str(&format!(" (note: {note})"));
        }
    }
    vec![Finding::pass(ID, msg).value(v.to_string())]
}

pub(super) fn vhd_alignment(profile: &Profile, s: &Subject, sev: Severity) -> Vec<Finding> {
    const ID: CheckId = CheckId::VhdAlignment;
    let Some(vhd) = s.details.vhd() else {
        return vec![Finding::pass(ID, format!("not a VHD container ({})", s.details.format))];
    };
    let fix = "rewrite it with a whole-MiB size and an exact footer: imgport convert -O vhd -o subformat=fixed IMAGE \
               fixed.vhd (pads the size up to whole MiB)";
    let mut out = Vec::new();
    let chs = u64::from(vhd.cylinders) * u64::from(vhd.heads) * u64::from(vhd.sectors_per_track) * 512;
    let chs_max = 65535u64 * 16 * 255 * 512;
    if profile.vhd_exact_size && chs != vhd.current_size && chs != chs_max {
        out.push(
            Finding::fail(
                ID,
                sev,
                format!(
                    "the footer's current size ({}) and its CHS geometry {}x{}x{} ({chs} bytes) disagree: readers see \
                     different disk sizes",
                    vhd.current_size, vhd.cylinders, vhd.heads, vhd.sectors_per_track
                ),
                fix,
            )
            .offset(vhd.footer_offset)
            .value(vhd.current_size.to_string()),
        );
    }
    if profile.vhd_whole_mib && !vhd.current_size.is_multiple_of(MIB) {
        out.push(
            Finding::fail(
                ID,
                sev,
                format!(
                    "virtual size {} is not a whole number of MiB ({} MiB + {} bytes)",
                    vhd.current_size,
                    vhd.current_size / MIB,
                    vhd.current_size % MIB
                ),
                fix,
            )
            .offset(vhd.footer_offset)
            .value(vhd.current_size.to_string()),
        );
    }
    if profile.vhd_exact_size && vhd.disk_type == "fixed" {
        if let Some(len) = s.file_size {
            if len != vhd.current_size.saturating_add(512) {
                out.push(
                    Finding::fail(
                        ID,
                        sev,
                        format!(
                            "fixed VHD file is {len} bytes but its footer declares {} bytes of data (+512 footer)",
                            vhd.current_size
                        ),
                        fix,
                    )
                    .value(len.to_string()),
                );
            }
        }
    }
    if out.is_empty() {
        out.push(
            Finding::pass(
                ID,
                format!("{} VHD of {} bytes: size matches its footer and geometry", vhd.disk_type, vhd.current_size),
            )
            .value(vhd.current_size.to_string()),
        );
    }
    out
}
