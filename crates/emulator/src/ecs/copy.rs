//! CopyImage and CancelCopyImage: a custom image copied into another served region, queued one copy at a time per
//! destination region.
//!
//! As in ECS, a copy is not a task: CopyImage answers only the new `ImageId`, DescribeTasks never lists copies and
//! CancelTask does not know them (`InvalidTaskId.NotFound`). The copy is tracked on the destination image, which
//! goes Waiting (queued behind other copies into its region), Creating (`Progress` rising), then Available, or
//! CreateFailed (a `create_failed` fault, or the source image deleted during the copy). CancelCopyImage takes the
//! destination `RegionId` and the copy's `ImageId` and deletes the unfinished copy.
//!
//! | operation | checks, in order | answer |
//! |---|---|---|
//! | CopyImage | `RegionId` and `DestinationRegionId` are served | 400 `InvalidRegionId.NotFound` / `DestinationRegion.NotFound` |
//! | | `DestinationRegionId` is not `RegionId` | 403 `IncorrectDestinationRegion` |
//! | | `Encrypted` is a boolean; `KMSKeyId` only with `Encrypted=true` | 400 `InvalidParameter.Encrypted` (the emulator's code) / `InvalidParameter.EncryptedIllegal` |
//! | | `Tag.N` (see [`super::tags`]) | 400 `InvalidTagKey.Malformed`, `InvalidTagValue.Malformed`, `TagKey.Duplication`, `InvalidTagCount` |
//! | | the source is an own image in `RegionId`, and Available (not Deprecated, not in flight, not failed) | 404 `InvalidImageId.NotFound`, 403 `InvalidImageId.NotSupported`, 400 `IncorrectImageStatus` |
//! | | a source with encrypted snapshots is copied with `Encrypted=true` | 403 `OperationDeined.EncryptedSnapshot` (spelled as documented) |
//! | | no copy of the same image into the same destination is still Waiting or Creating | 400 `OperationDenied.ImageCopyConflict` |
//! | | a `ClientToken` seen before (looked up under the lock that records the copy): the same parameters answer the earlier copy's `ImageId` | 400 `IdempotentParameterMismatch` when the parameters differ |
//! | | `DestinationImageName` is well formed and unused in the destination | 400 `InvalidImageName.Malformed` / `.Duplicated` |
//! | | the destination holds fewer than `image_quota` custom images and `max_in_flight` imports and copies in flight (see [`super`]) | 403 `QuotaExceed.Image` / 400 `Throttling` |
//! | | `DryRun=true` | 400 `DryRunOperation`, nothing created |
//! | CancelCopyImage | `RegionId` is served; `ImageId` is an own image there | 404 `InvalidRegionId.NotFound`, 404 `InvalidImageId.NotFound` |
//! | | the image was made by CopyImage | 400 `ImageCreatedNotFromCopy` |
//! | | the copy is still Waiting or Creating | 400 `IncorrectImageStatus` ("The image copy has completed." once Available or Deprecated, "The Image copy has been failed." once CreateFailed) |
//!
//! The copy keeps the source's `ImageFamily` (CopyImage documents no `DestinationImageFamily`), so it becomes its
//! family's DescribeImageFromFamily answer in the destination region once Available. A copy takes `copy_seconds`
//! (unset: `import_seconds`); a `stall` fault on CopyImage holds it in Creating (see [`super::tasks`]). A cancelled
//! copy's image is removed at once; the source is unchanged.
//!
//! **Queue.** Copies into one destination region run one at a time (older docs: "A region can have only one
//! ongoing image copy task at a time"; newer ones allow five): a second copy into the region stays Waiting, with
//! Progress 0%, until the first is done. **Encryption.** `Encrypted=true` (optionally with `KMSKeyId`, recorded
//! as given: the emulator has no KMS, so any key id is accepted and 404 `InvalidParameter.KMSKeyId.NotFound` never
//! answers) marks each disk of the copy encrypted: DescribeImages shows `DiskDeviceMappings.Encrypted` true and
//! the copy's snapshots show `Encrypted` and `KMSKeyId`. **Snapshots.** The copy shows no `SnapshotId` until it is
//! Available; then each disk has a new snapshot in the destination region whose `SourceSnapshotId` is the source
//! image's. **Concurrency** is the documented `OperationDenied.ImageCopyConflict` ("The same image cannot be
//! copied concurrently"); the emulator applies it per destination region, so the same image can be copied into two
//! other regions at once. The source of a copy in flight cannot be deleted without `Force=true` (see
//! [`super::images`]).
//! Deleting a copy in flight with DeleteImage
//! is refused with 403 `OperationDenied.ImageCopying`.

use super::tasks::spawn_worker;
use super::{
    by_client_token_in, check_room, description_param, dry_run, err, name_free, no_image, own_image, region,
    region_with_status, request_digest, valid_name, IN_FLIGHT,
};
use crate::rpc::{Params, RpcContext, RpcError, RpcResult};
use crate::services::{new_id, Inner};
use serde_json::json;
use std::sync::Arc;

pub(super) fn copy_image(inner: &Arc<Inner>, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let id = params.require("ImageId")?;
    let dest = region_of(ctx, params)?;
    if dest == region {
        return Err(err(403, "IncorrectDestinationRegion", "The destination region is not equal the target region."));
    }
    let encrypted = match params.get("Encrypted").filter(|v| !v.is_empty()) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(RpcError::invalid_parameter("Encrypted", "The specified Encrypted is not a boolean.")),
    };
    let kms_key = params.get("KMSKeyId").filter(|v| !v.is_empty()).map(str::to_string);
    if kms_key.is_some() && !encrypted {
        return Err(err(
            400,
            "InvalidParameter.EncryptedIllegal",
            "The specified parameter Encrypted must be true when kmsKeyId is not empty.",
        ));
    }
    let tags = super::tags::request_tags(params, &super::tags::CREATE_CODES)?;
    let description = description_param(params, "DestinationDescription")?;
    let mut db = inner.db();
    // Under the lock that records the copy, so that concurrent requests with one token make one copy.
    if let Some(i) = by_client_token_in(&db, params, "CopyImage")? {
        return Ok(json!({"ImageId": i.id}));
    }
    let src = db.images.iter().find(|i| i.id == id && i.region == region).cloned().ok_or_else(|| no_image(id))?;
    if src.owner_alias != "self" {
        return Err(err(403, "InvalidImageId.NotSupported", "Only custom images can be copied."));
    }
    // Documented: Deprecated images cannot be copied.
    if src.status != "Available" {
        return Err(err(400, "IncorrectImageStatus", "The image not available."));
    }
    if src.disks.iter().any(|d| d.encrypted) && !encrypted {
        return Err(err(
            403,
            "OperationDeined.EncryptedSnapshot",
            "The image contains encrypted snapshots, which do not support copying to non-encrypted ones.",
        ));
    }
    // Documented: the same image cannot be copied concurrently (to the same region: the emulator's reading).
    if db
        .images
        .iter()
        .any(|i| i.copied_from.as_deref() == Some(id) && i.region == dest && IN_FLIGHT.contains(&i.status.as_str()))
    {
        return Err(err(
            400,
            "OperationDenied.ImageCopyConflict",
            "The same image cannot be copied concurrently. Please wait until the last copy is completed before performing the next operation.",
        ));
    }
    let name = match params.get("DestinationImageName").filter(|n| !n.is_empty()) {
        Some(n) if !valid_name(n) => {
            return Err(err(400, "InvalidImageName.Malformed", "The specified DestinationImageName is wrongly formed."))
        }
        Some(n) => n.to_string(),
        None => src.name.clone(),
    };
    name_free(&db, &dest, &name)?;
    check_room(inner, &db, &dest)?;
    dry_run(params)?;
    let image_id = new_id("m-");
    let mut copy = src.clone();
    copy.client_token = params.get("ClientToken").filter(|t| !t.is_empty()).map(str::to_string);
    copy.client_params = Some(request_digest(params));
    copy.id = image_id.clone();
    copy.region = dest;
    copy.name = name;
    if let Some(d) = description {
        copy.description = d;
    }
    copy.status = "Waiting".into();
    copy.progress = 0;
    copy.created = ctx.created;
    copy.shared_with.clear();
    copy.copied_from = Some(src.id.clone());
    copy.task_id = None;
    copy.failure = None;
    copy.forced_failure = ctx.create_failed.clone();
    copy.stall = ctx.stall;
    copy.tags.extend(tags);
    // The copy gets its own snapshots when it is Available; each disk remembers the one it is copied from.
    for d in &mut copy.disks {
        d.source_snapshot_id = std::mem::take(&mut d.snapshot_id);
        d.source_region_id = region.clone();
        d.source_disk_id.clear();
        d.encrypted = encrypted;
        d.kms_key_id = kms_key.clone().unwrap_or_default();
    }
    db.images.push(copy);
    db.save()?;
    drop(db);
    spawn_worker(inner.clone(), image_id.clone());
    Ok(json!({"ImageId": image_id}))
}

pub(super) fn cancel_copy_image(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    // CancelCopyImage documents 404 for an unknown region.
    let region = region_with_status(ctx, params, "RegionId", 404)?;
    let id = params.require("ImageId")?;
    let mut db = inner.db();
    let i = own_image(&mut db, &region, id)?;
    if i.copied_from.is_none() {
        return Err(err(
            400,
            "ImageCreatedNotFromCopy",
            "The specified image is not the target image of a copy action.",
        ));
    }
    match i.status.as_str() {
        s if IN_FLIGHT.contains(&s) => {}
        "CreateFailed" => return Err(err(400, "IncorrectImageStatus", "The Image copy has been failed.")),
        _ => return Err(err(400, "IncorrectImageStatus", "The image copy has completed.")),
    }
    // Documented: the copy in the destination region is deleted, the source stays as it was.
    db.images.retain(|i| !(i.id == id && i.region == region));
    db.save()?;
    Ok(json!({}))
}

fn region_of(ctx: &RpcContext, params: &Params) -> Result<String, RpcError> {
    let r = params.require("DestinationRegionId")?;
    if !ctx.state.serves_region(r) {
        return Err(err(400, "DestinationRegion.NotFound", format!("The destination region {r} not found.")));
    }
    Ok(r.to_string())
}
