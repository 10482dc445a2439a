//! CreateImage: a custom image from an instance's system disk or from snapshots, made in the background like an
//! import (Waiting, Creating with rising `Progress`, then Available; a `create_failed` fault makes it CreateFailed
//! and a `stall` fault holds it in Creating, see [`super::tasks`]). It takes `import_seconds`.
//!
//! As documented, CreateImage answers only `ImageId`: it is not a task (DescribeTasks does not list it, CancelTask
//! does not know it), and an image still being created cannot be deleted (403 `ImageIsCreating`).
//!
//! **Sources**, in the documented order of precedence `InstanceId` > `DiskDeviceMapping` > `SnapshotId` (the first
//! given is used, the others are ignored):
//!
//! - `InstanceId`: the instance's system disk. The image has one disk of the instance's system disk size; its
//!   OS, platform, architecture and boot mode come from the image the instance runs (overridden by `Platform`,
//!   `Architecture` and `BootMode` when given). When the image is Available the disk's snapshot is recorded with
//!   `SourceDiskId` the instance's system disk (the real service snapshots every disk of the instance; the
//!   emulator's instances have a system disk only).
//! - `DiskDeviceMapping.N` (`SnapshotId`, `Size` GiB, `Device`, `DiskType` system/data; N from 1 to 17): exactly
//!   one system disk, which needs a snapshot; data disks may omit `SnapshotId` (an empty disk of `Size`, default
//!   20 GiB). `DiskType` defaults to the snapshot's source disk type (`data` without a snapshot). `Device` is
//!   `/dev/xvda`...`/dev/xvdz` or `/dev/vda`...`/dev/vdz` (default: the system disk `/dev/xvda`, data disks the next
//!   free `/dev/xvdb`...). The image uses the snapshots named: no new snapshot is made for them.
//! - `SnapshotId`: a system disk snapshot; the image has that one disk and uses the snapshot.
//!
//! | check, in order | answer |
//! |---|---|
//! | `RegionId` served | 400 `MissingParameter` / `InvalidRegionId.NotFound` |
//! | a `ClientToken` seen before with the same parameters answers that image's `ImageId` again | 400 `IdempotentParameterMismatch` when the parameters differ, 400 `InvalidClientToken.Malformed` |
//! | one of `InstanceId`, `DiskDeviceMapping.N`, `SnapshotId` | 400 `MissingParameter` |
//! | `ImageName` (rules of ImportImage), `Description` (at most 256 characters, not a URL) | 400 `InvalidImageName.Malformed`, `InvalidDescription.Malformed` |
//! | `Platform` one of ImportImage's documented values; `Architecture` i386, x86_64 or arm64; `BootMode` BIOS, UEFI or UEFI-Preferred | 400 `InvalidPlatform.Malformed`, `InvalidArchitecture.Malformed`, `InvalidBootMode.Malformed` (ImportImage's code; CreateImage documents none) |
//! | `ImageFamily` (see [`super::images`]) | 400 `InvalidImageFamily.Malformed` |
//! | `Tag.N` (see [`super::tags`]) | 400 `InvalidTagKey.Malformed`, `InvalidTagValue.Malformed`, `Duplicate.TagKey`; 403 `QuotaExceed.Tags` (documented) |
//! | the instance exists in the region | 404 `InvalidInstanceId.NotFound` |
//! | the instance is Running or Stopped | 400 `IncorrectInstanceStatus` |
//! | each snapshot is the account's in the region | 404 `InvalidSnapshotId.NotFound` |
//! | each snapshot is accomplished | 403 `InvalidSnapshotId.NotReady` |
//! | `SnapshotId` alone names a system disk snapshot | 403 `OperationDenied` ("The specified snapshot is not from system disk.") |
//! | `DiskType` system or data; `Size` a whole number of GiB, at least the snapshot's size, at most 32768 (20-32768 without a snapshot) | 400 `InvalidDiskType.ValueNotSupported`, `InvalidSize.ValueNotSupported` |
//! | `Device` well formed and not used twice | 400 `InvalidDevice.Malformed`, `InvalidDevice.InUse` |
//! | exactly one system disk, with a snapshot | 400 `OperationDenied` ("does not contain system disk snapshot" / "contains two or more system disk snapshots") |
//! | the name is not another own image's in the region | 400 `InvalidImageName.Duplicated` |
//! | the region holds fewer than `image_quota` custom images and `max_in_flight` in flight (see [`super`]) | 403 `QuotaExceed.Image` / 400 `Throttling` |
//! | `DryRun=true` | 400 `DryRunOperation`, nothing created |
//!
//! The `ClientToken` is looked up again under the lock that records the image, so concurrent requests with one
//! token make one image.
//!
//! **Differs:** the real service checks the instance's locks, disk categories, other quotas and account balance;
//! the emulator has none of them. `DetectionStrategy`, `Features`, `SecureBootOptions`, `ImageVersion` and
//! `ResourceGroupId` are accepted and ignored. A default name is `create-` and 8 random characters (the real
//! service leaves it empty).

use super::import::PLATFORMS;
use super::tags::{request_tags, TagCodes};
use super::tasks::spawn_worker;
use super::{
    by_client_token_in, check_room, description_param, dry_run, err, family_param, name_free, region, request_digest,
    valid_name, DiskMapping, Image, BOOT_MODES,
};
use crate::rpc::{Params, RpcContext, RpcError, RpcResult};
use crate::services::{new_id, Inner};
use serde_json::json;
use std::sync::Arc;

/// CreateImage's documented answers for bad `Tag.N`.
const TAG_CODES: TagCodes = TagCodes { duplicate: "Duplicate.TagKey", too_many: (403, "QuotaExceed.Tags") };
/// The largest cloud disk, GiB.
const MAX_DISK_GIB: u64 = 32768;

/// One disk of the image being made: its mapping and whether it is the system disk.
struct Planned {
    system: bool,
    disk: DiskMapping,
}

fn pick(params: &Params, name: &str, allowed: &[&str]) -> Result<Option<String>, RpcError> {
    match params.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => allowed.iter().find(|a| a.eq_ignore_ascii_case(v)).map(|a| Some(a.to_string())).ok_or_else(|| {
            err(400, &format!("Invalid{name}.Malformed"), format!("The specified {name} is wrongly formed."))
        }),
    }
}

/// `/dev/xvda`...`/dev/xvdz` or `/dev/vda`...`/dev/vdz`.
fn valid_device(d: &str) -> bool {
    let letter = d.strip_prefix("/dev/xvd").or_else(|| d.strip_prefix("/dev/vd"));
    letter.is_some_and(|l| l.len() == 1 && l.bytes().all(|b| b.is_ascii_lowercase()))
}

pub(super) fn create_image(inner: &Arc<Inner>, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let instance_id = params.get("InstanceId").filter(|v| !v.is_empty());
    let mappings = params.indexed("DiskDeviceMapping");
    let snapshot_id = params.get("SnapshotId").filter(|v| !v.is_empty());
    if instance_id.is_none() && mappings.is_empty() && snapshot_id.is_none() {
        return Err(RpcError::missing_parameter("SnapshotId or InstanceId or DiskDeviceMapping"));
    }
    let name = match params.get("ImageName").filter(|n| !n.is_empty()) {
        Some(n) if !valid_name(n) => {
            return Err(err(400, "InvalidImageName.Malformed", "The specified Image name is wrongly formed."))
        }
        Some(n) => n.to_string(),
        None => format!("create-{}", crate::util::random_alnum(8).to_ascii_lowercase()),
    };
    let description = description_param(params, "Description")?.unwrap_or_default();
    let platform = pick(params, "Platform", PLATFORMS)?;
    let architecture = pick(params, "Architecture", &["i386", "x86_64", "arm64"])?;
    let boot_mode = pick(params, "BootMode", &BOOT_MODES)?;
    let family = family_param(params)?;
    let tags = request_tags(params, &TAG_CODES)?;

    let mut db = inner.db();
    // Again under the lock that records the image, so that concurrent requests with one token make one image.
    if let Some(i) = by_client_token_in(&db, params, "CreateImage")? {
        return Ok(json!({"ImageId": i.id}));
    }
    // The image the disks come from, for the OS fields an instance's image carries.
    let mut base: Option<Image> = None;
    let mut planned: Vec<Planned> = Vec::new();
    let snapshot = |db: &crate::services::Db, id: &str| {
        let s = db
            .snapshots
            .iter()
            .find(|s| s.id == id && s.region == region)
            .cloned()
            .ok_or_else(|| super::snapshots::no_snapshot(id))?;
        if s.status != "accomplished" {
            return Err(err(
                403,
                "InvalidSnapshotId.NotReady",
                "The current status of the DiskDeviceMapping.n.SnapshotId or SnapshotId does not support this operation.",
            ));
        }
        Ok(s)
    };
    if let Some(id) = instance_id {
        let n = db.instances.iter().find(|n| n.id == id && n.region == region).cloned().ok_or_else(|| {
            err(404, "InvalidInstanceId.NotFound", format!("The specified InstanceId {id} does not exist."))
        })?;
        if !["Running", "Stopped"].contains(&n.status.as_str()) {
            return Err(err(
                400,
                "IncorrectInstanceStatus",
                "The current status of the instance does not support this operation.",
            ));
        }
        base = db.images.iter().find(|i| i.id == n.image_id && i.region == region).cloned();
        planned.push(Planned {
            system: true,
            disk: DiskMapping {
                device: "/dev/xvda".into(),
                size_gib: n.system_disk_gib,
                source_disk_id: n.system_disk_id.clone(),
                ..Default::default()
            },
        });
    } else if !mappings.is_empty() {
        if mappings.len() > 17 || mappings.keys().any(|n| *n == 0 || *n > 17) {
            return Err(RpcError::invalid_parameter("DiskDeviceMapping", "At most 17 disk device mappings (1..17)."));
        }
        for (n, m) in &mappings {
            let field = |f: &str| m.get(f).map(String::as_str).filter(|v| !v.is_empty());
            let snap = field("SnapshotId").map(|id| snapshot(&db, id)).transpose()?;
            let system = match field("DiskType") {
                None => snap.as_ref().is_some_and(|s| s.source_disk_type == "system"),
                Some(t) if t.eq_ignore_ascii_case("system") => true,
                Some(t) if t.eq_ignore_ascii_case("data") => false,
                Some(t) => {
                    return Err(err(
                        400,
                        "InvalidDiskType.ValueNotSupported",
                        format!("The specified disk type {t} is not supported."),
                    ))
                }
            };
            let least = snap.as_ref().map_or(20, |s| s.size_gib.max(1));
            let size = match field("Size") {
                None => least,
                Some(v) => v.parse::<u64>().ok().filter(|s| (least..=MAX_DISK_GIB).contains(s)).ok_or_else(|| {
                    err(
                        400,
                        "InvalidSize.ValueNotSupported",
                        format!("The specified parameter DiskDeviceMapping.{n}.Size beyond the permitted range."),
                    )
                })?,
            };
            let device = match field("Device") {
                None => String::new(),
                Some(d) if valid_device(d) => d.to_string(),
                Some(_) => {
                    return Err(err(
                        400,
                        "InvalidDevice.Malformed",
                        format!("The specified parameter DiskDeviceMapping.{n}.Device is not valid."),
                    ))
                }
            };
            if !device.is_empty() && planned.iter().any(|p| p.disk.device == device) {
                return Err(err(
                    400,
                    "InvalidDevice.InUse",
                    format!("The specified parameter DiskDeviceMapping.{n}.Device has been occupied."),
                ));
            }
            planned.push(Planned {
                system,
                disk: DiskMapping {
                    device,
                    size_gib: size,
                    snapshot_id: snap.as_ref().map(|s| s.id.clone()).unwrap_or_default(),
                    ..Default::default()
                },
            });
        }
        let systems: Vec<&Planned> = planned.iter().filter(|p| p.system).collect();
        if systems.len() > 1 {
            return Err(err(
                400,
                "OperationDenied",
                "The specified parameter DiskDeviceMapping.n.SnapshotId contains two or more system disk snapshots.",
            ));
        }
        if systems.first().is_none_or(|p| p.disk.snapshot_id.is_empty()) {
            return Err(err(
                400,
                "OperationDenied",
                "The specified parameter DiskDeviceMapping.n.SnapshotId does not contain system disk snapshot.",
            ));
        }
        // The system disk first, then the data disks in request order.
        planned.sort_by_key(|p| !p.system);
    } else if let Some(id) = snapshot_id {
        let s = snapshot(&db, id)?;
        if s.source_disk_type != "system" {
            return Err(err(403, "OperationDenied", "The specified snapshot is not from system disk."));
        }
        planned.push(Planned {
            system: true,
            disk: DiskMapping {
                device: "/dev/xvda".into(),
                size_gib: s.size_gib,
                snapshot_id: s.id.clone(),
                ..Default::default()
            },
        });
    }
    // Default devices: the system disk /dev/xvda (unless taken), data disks the next free letters.
    let mut used: Vec<String> = planned.iter().map(|p| p.disk.device.clone()).filter(|d| !d.is_empty()).collect();
    for p in planned.iter_mut().filter(|p| p.disk.device.is_empty()) {
        let wanted =
            if p.system && !used.iter().any(|d| d == "/dev/xvda") { Some("/dev/xvda".to_string()) } else { None };
        let next =
            wanted.or_else(|| (b'b'..=b'z').map(|c| format!("/dev/xvd{}", c as char)).find(|d| !used.contains(d)));
        let Some(d) = next else {
            return Err(err(400, "InvalidDevice.InUse", "No free device name is left for DiskDeviceMapping.n."));
        };
        used.push(d.clone());
        p.disk.device = d;
    }
    name_free(&db, &region, &name)?;
    check_room(inner, &db, &region)?;
    dry_run(params)?;
    let base = base.unwrap_or_default();
    let architecture = architecture.or_else(|| Some(base.architecture.clone()).filter(|a| !a.is_empty()));
    let architecture = architecture.unwrap_or_else(|| "x86_64".into());
    let platform = platform.or_else(|| Some(base.platform.clone()).filter(|p| !p.is_empty()));
    let platform = platform.unwrap_or_else(|| "Others Linux".into());
    let os_type = if platform.starts_with("Windows") { "windows" } else { "linux" };
    let boot_mode = boot_mode.or_else(|| Some(base.boot_mode.clone()).filter(|b| !b.is_empty())).unwrap_or_else(|| {
        if architecture == "arm64" {
            "UEFI".into()
        } else {
            "BIOS".into()
        }
    });
    let image_id = new_id("m-");
    db.images.push(Image {
        id: image_id.clone(),
        region,
        name,
        description: description.to_string(),
        status: "Waiting".into(),
        owner_alias: "self".into(),
        owner_id: ctx.state.account_id.clone(),
        os_type: os_type.into(),
        os_name: platform.clone(),
        platform,
        architecture,
        boot_mode,
        license_type: "Auto".into(),
        family: family.unwrap_or_default(),
        created: ctx.created,
        disks: planned.into_iter().map(|p| p.disk).collect(),
        tags,
        forced_failure: ctx.create_failed.clone(),
        stall: ctx.stall,
        client_token: params.get("ClientToken").filter(|t| !t.is_empty()).map(str::to_string),
        client_params: Some(request_digest(params)),
        ..Default::default()
    });
    db.save()?;
    drop(db);
    spawn_worker(inner.clone(), image_id.clone());
    Ok(json!({"ImageId": image_id}))
}

#[cfg(test)]
mod tests {
    use super::valid_device;

    #[test]
    fn devices_are_xvd_or_vd_and_one_letter() {
        for ok in ["/dev/xvda", "/dev/xvdz", "/dev/vda", "/dev/vdq"] {
            assert!(valid_device(ok), "{ok}");
        }
        for bad in ["/dev/sda", "/dev/xvd", "/dev/xvdaa", "/dev/xvdA", "xvda", "/dev/vd1", ""] {
            assert!(!valid_device(bad), "{bad}");
        }
    }
}
