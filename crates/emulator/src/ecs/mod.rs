//! ECS images behind the RPC gateway, one module per resource: [`images`] (the catalogue, attributes, delete),
//! [`import`] (ImportImage and the rules it judges an upload by), [`copy`] (CopyImage, CancelCopyImage),
//! [`create`] (CreateImage), [`snapshots`] (DescribeSnapshots, DeleteSnapshot), [`sharing`], [`tags`] (images and
//! snapshots), [`tasks`] (the background work and the task calls) and [`instances`]; [`records`] holds what the
//! state file keeps.
//!
//! **DryRun.** Every implemented operation whose API documents `DryRun` honours it: ImportImage, CopyImage,
//! CreateImage, DescribeImages, DescribeSnapshots, DeleteImage, ModifyImageAttribute, ModifyImageSharePermission,
//! DescribeInstances, StopInstance and StartInstance. The request is checked exactly as without `DryRun` (a bad
//! parameter, a missing image or a refused state answers its own error), then answers HTTP 400 `DryRunOperation`
//! ("Request validation has been passed with DryRun flag set.") and nothing is created, changed or deleted. The
//! other operations (DescribeTasks, DescribeTaskAttribute, CancelTask, CancelCopyImage, DeleteSnapshot,
//! DescribeImageSharePermission, the tag calls, ReplaceSystemDisk, DescribeRegions) document no `DryRun` and
//! ignore it.
//!
//! **Snapshots** ([`snapshots`]): every disk of an import, copy or CreateImage gets a snapshot when the image
//! becomes Available (a copy its own, in the destination region); DeleteImage leaves them, DeleteSnapshot refuses
//! one an image still uses (403 `SnapshotCreatedImage`). CreateImage ([`create`]) makes an image from an instance,
//! a snapshot or disk mappings through the same background work as an import, without a task.
//!
//! **Copies are not tasks** ([`copy`]): CopyImage answers only `ImageId`; the copy shows on the destination image
//! (Waiting, Creating with `Progress`, Available or CreateFailed) and is cancelled with CancelCopyImage; DescribeTasks
//! lists imports only and CancelTask answers `InvalidTaskId.NotFound` for a copy. A copy into the source's own
//! region is 403 `IncorrectDestinationRegion`; a second copy of an image into a region while one is in flight is
//! 400 `OperationDenied.ImageCopyConflict`; `Encrypted`/`KMSKeyId` are checked and recorded on the copy's disks.
//!
//! **Image status** ([`images`]): ModifyImageAttribute moves only Available <-> Deprecated (403
//! `ImageStatus.NotAvailable` / `ImageStatus.NotDeprecated` otherwise, 403 `ImageUseShared` for a shared image,
//! 403 `InvalidStatus.ImageIsCreating` while importing or copying); ReplaceSystemDisk accepts Deprecated images.
//!
//! **Listing and time** ([`images`]): DescribeImages takes `Status=ALL`, returns matches ordered by `ImageId` (the
//! API documents no order), and `CreationTime` can be set per request with a `creation_time` fault rule.
//!
//! **Families and filters** ([`images`]): DescribeImageFromFamily answers the newest Available own image of a family
//! (ties on `CreationTime` go to the later request) or an empty `Image`; ModifyImageAttribute validates
//! `ImageFamily`; DescribeImages filters on `Usage`, `ImageOwnerId`, `IsPublic`, `ShowExpired` and `Filter.N`
//! creation times and reports the detected disk `Format`.
//!
//! **Errors and idempotency.** An absent required parameter answers 400 `MissingParameter` with a message naming
//! it ("An input parameter \"ImageId\" that is mandatory for processing the request is not supplied.", as ECS's
//! error tables write it); RAM answers the same. ImportImage, CopyImage and CreateImage, the
//! implemented operations that take `ClientToken` (at most 64 ASCII characters, else 400
//! `InvalidClientToken.Malformed`, ImportImage's documented code), record the token with a digest of the request's own parameters (everything but
//! the signature's, `ClientToken` and `DryRun`): the same token with the same parameters answers the first
//! request's image again, with other parameters 400 `IdempotentParameterMismatch` and nothing changes. The real
//! service forgets tokens after some time; the emulator keeps them as long as the image exists.
//!
//! **Bounds.** What a client can make the emulator keep is bounded. ImportImage and CopyImage (in the destination
//! region) refuse a new image at `CloudSettings::image_quota` custom images in the region, whatever their status
//! (in-flight, CreateFailed and Deprecated ones count): 403 `QuotaExceed.Image` (ECS lists the code for ImportImage
//! without its HTTP status; 403 is the emulator's choice, as ECS answers its other quota codes). At
//! `CloudSettings::max_in_flight` imports and copies Waiting or Creating in the region they answer 400 `Throttling`
//! (the real service queues them; the emulator, which works on each with its own thread, refuses instead, and the
//! SDKs retry `Throttling` as they would against the real service). Both checks come before `DryRun`. Finished
//! tasks beyond `CloudSettings::task_history` are forgotten, oldest first ([`tasks`]). Image descriptions are 2-256
//! characters (ImportImage, CreateImage and ModifyImageAttribute's `Description`, CopyImage's
//! `DestinationDescription`), names 2-128, tags as TagResources documents; every other free-text value is bounded
//! by the RPC body (at most 64 KiB) and the image quota.
//!
//! **Idempotency under concurrency.** ImportImage, CopyImage and CreateImage look the `ClientToken` up again under the lock that
//! records the new image (`by_client_token_in`): concurrent requests with one token make one image and all
//! answer it. An import's token is found through its task, so once the task is forgotten (`task_history`) the
//! token is too, as the real service forgets tokens after a while.
//!
//! **Time** ([`tasks`]): an import takes `import_seconds`, a copy `copy_seconds` (unset: `import_seconds`) from
//! Waiting to Available; a `stall` fault rule holds an import or copy in Creating (Progress below 100) for its
//! `seconds`, or while the rule stays configured, so that client timeouts can be tested; a `task_finishes_early`
//! rule makes an import's task report Finished while its image stays Creating for a few seconds more.

pub mod copy;
pub mod create;
pub mod images;
pub mod import;
pub mod instances;
pub mod records;
pub mod sharing;
pub mod snapshots;
pub mod tags;
pub mod tasks;

pub(crate) use records::{Detection, DiskMapping, Image, Instance, Snapshot, Task};
pub(crate) use tasks::resume;

use crate::rpc::{Params, RpcContext, RpcError, RpcResult};
use crate::services::{Db, Inner};
use serde_json::json;
use std::sync::Arc;

const GIB: u64 = 1 << 30;
/// Image statuses of an import or copy still under way.
const IN_FLIGHT: [&str; 2] = ["Waiting", "Creating"];
/// Every image status DescribeImages knows (what `Status=ALL` asks for).
const ALL_STATUSES: [&str; 6] = ["Creating", "Waiting", "Available", "UnAvailable", "CreateFailed", "Deprecated"];

fn err(status: u16, code: &str, message: impl Into<String>) -> RpcError {
    RpcError::new(status, code, message)
}

fn no_image(id: &str) -> RpcError {
    err(404, "InvalidImageId.NotFound", format!("The specified ImageId {id} does not exist."))
}

pub(crate) fn handle(inner: &Arc<Inner>, ctx: &RpcContext, action: &str, params: &Params) -> RpcResult {
    match action {
        "DescribeRegions" => Ok(json!({"Regions": {"Region": ctx.state.regions.iter().map(|r| json!({
            "RegionId": r, "LocalName": r, "RegionEndpoint": ctx.host, "Status": "available"})).collect::<Vec<_>>()}})),
        "ImportImage" => import::import_image(inner, ctx, params),
        "DescribeImages" => images::describe_images(inner, ctx, params),
        "DescribeImageFromFamily" => images::describe_image_from_family(inner, ctx, params),
        "DescribeTasks" => tasks::describe_tasks(inner, ctx, params),
        "DescribeTaskAttribute" => tasks::describe_task_attribute(inner, ctx, params),
        "CancelTask" => tasks::cancel_task(inner, ctx, params),
        "DeleteImage" => images::delete_image(inner, ctx, params),
        "CopyImage" => copy::copy_image(inner, ctx, params),
        "CancelCopyImage" => copy::cancel_copy_image(inner, ctx, params),
        "CreateImage" => create::create_image(inner, ctx, params),
        "DescribeSnapshots" => snapshots::describe_snapshots(inner, ctx, params),
        "DeleteSnapshot" => snapshots::delete_snapshot(inner, ctx, params),
        "ModifyImageSharePermission" => sharing::modify_share(inner, ctx, params),
        "DescribeImageSharePermission" => sharing::describe_share(inner, ctx, params),
        "ModifyImageAttribute" => images::modify_attribute(inner, ctx, params),
        "TagResources" => tags::tag_resources(inner, ctx, params, true),
        "UntagResources" => tags::tag_resources(inner, ctx, params, false),
        "ListTagResources" => tags::list_tag_resources(inner, ctx, params),
        "DescribeInstances" => instances::describe_instances(inner, ctx, params),
        "StopInstance" => instances::set_instance_status(inner, ctx, params, "Running", "Stopped"),
        "StartInstance" => instances::set_instance_status(inner, ctx, params, "Stopped", "Running"),
        "ReplaceSystemDisk" => instances::replace_system_disk(inner, ctx, params),
        _ => Err(RpcError::action_not_found()),
    }
}

fn region(ctx: &RpcContext, params: &Params, name: &str) -> Result<String, RpcError> {
    // Documented as 400 for most Images and Tasks operations (ImportImage, CancelTask, ModifyImageSharePermission).
    region_with_status(ctx, params, name, 400)
}

/// The served region named by `name`, or `InvalidRegionId.NotFound` with the HTTP status the operation documents.
fn region_with_status(ctx: &RpcContext, params: &Params, name: &str, status: u16) -> Result<String, RpcError> {
    let r = params.require(name)?;
    if !ctx.state.serves_region(r) {
        return Err(err(status, "InvalidRegionId.NotFound", format!("The specified {name} {r} does not exist.")));
    }
    Ok(r.to_string())
}

/// What image names and families share: 2-128 characters, starting with a letter, not with `aliyun` or `acs:` (any
/// case: Alibaba Cloud's own).
fn valid_label(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    (2..=128).contains(&s.chars().count())
        && s.chars().next().is_some_and(|c| c.is_alphabetic())
        && !lower.starts_with("aliyun")
        && !lower.starts_with("acs:")
}

/// An image name as ImportImage, CopyImage, CreateImage and ModifyImageAttribute document it: [`valid_label`],
/// not starting with `http://` or `https://`, of letters, digits and `-_.:,()[]` and spaces.
fn valid_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    valid_label(name)
        && !lower.starts_with("http://")
        && !lower.starts_with("https://")
        && name.chars().all(|c| c.is_alphanumeric() || "-_.:,()[] ".contains(c))
}

/// An image family name as ImportImage and ModifyImageAttribute document it: [`valid_label`], of letters, digits,
/// `.`, `:`, `_` and `-`, and containing no `http://` or `https://` anywhere (the docs word the URL rule
/// differently for names, which may not start with one).
fn valid_family(family: &str) -> bool {
    let lower = family.to_ascii_lowercase();
    valid_label(family)
        && !lower.contains("http://")
        && !lower.contains("https://")
        && family.chars().all(|c| c.is_alphanumeric() || ".:_-".contains(c))
}

/// 400 `InvalidImageName.Duplicated` when an own image in `region` already has `name` (in any status).
fn name_free(db: &Db, region: &str, name: &str) -> Result<(), RpcError> {
    if db.images.iter().any(|i| i.region == region && i.owner_alias == "self" && i.name == name) {
        return Err(err(400, "InvalidImageName.Duplicated", format!("The specified ImageName {name} already exists.")));
    }
    Ok(())
}

/// The image description parameter `key`, checked as the image operations document it: 2-256 characters, not
/// starting with `http://` or `https://` (400 `InvalidDescription.Malformed`); `None` when absent or empty.
fn description_param(params: &Params, key: &str) -> Result<Option<String>, RpcError> {
    match params.get(key).filter(|d| !d.is_empty()) {
        None => Ok(None),
        Some(d)
            if (2..=256).contains(&d.chars().count()) && !d.starts_with("http://") && !d.starts_with("https://") =>
        {
            Ok(Some(d.to_string()))
        }
        Some(_) => Err(err(400, "InvalidDescription.Malformed", format!("The specified {key} is wrongly formed."))),
    }
}

/// The boot modes ECS knows (ImportImage, CreateImage, ModifyImageAttribute).
const BOOT_MODES: [&str; 3] = ["BIOS", "UEFI", "UEFI-Preferred"];

/// The `ImageFamily` parameter, checked: `None` when absent or empty, 400 `InvalidImageFamily.Malformed` (the code
/// the emulator chose: the references name none) when it breaks [`valid_family`]'s rules.
fn family_param(params: &Params) -> Result<Option<String>, RpcError> {
    match params.get("ImageFamily").filter(|f| !f.is_empty()) {
        None => Ok(None),
        Some(f) if valid_family(f) => Ok(Some(f.to_string())),
        Some(_) => Err(err(400, "InvalidImageFamily.Malformed", "The specified ImageFamily is wrongly formed.")),
    }
}

/// The image an earlier request with this ClientToken created, for idempotent retries: an import (found through
/// its task), a copy (an image with `copied_from`; copies have no task) or a CreateImage (neither).
fn by_client_token(inner: &Inner, params: &Params, action: &str) -> Result<Option<Image>, RpcError> {
    by_client_token_in(&inner.db(), params, action)
}

/// [`by_client_token`] under a lock the caller holds: ImportImage, CopyImage and CreateImage look the token up again under the
/// lock that records the new image, so that concurrent requests with one token make one image.
fn by_client_token_in(db: &Db, params: &Params, action: &str) -> Result<Option<Image>, RpcError> {
    let Some(token) = params.get("ClientToken").filter(|t| !t.is_empty()) else { return Ok(None) };
    if token.len() > 64 || !token.is_ascii() {
        return Err(err(400, "InvalidClientToken.Malformed", "The specified parameter clientToken is not valid."));
    }
    let found = db.images.iter().find(|i| {
        i.client_token.as_deref() == Some(token)
            && match action {
                "CopyImage" => i.copied_from.is_some(),
                "CreateImage" => i.copied_from.is_none() && i.task_id.is_none() && i.owner_alias == "self",
                _ => i.task_id.as_ref().is_some_and(|t| db.tasks.iter().any(|k| &k.id == t && k.action == action)),
            }
    });
    if let Some(i) = found {
        if i.client_params.as_deref().is_some_and(|d| d != request_digest(params)) {
            return Err(err(
                400,
                "IdempotentParameterMismatch",
                "Request uses a client token in a previous request but is not identical to that request.",
            ));
        }
    }
    Ok(found.cloned())
}

/// Room for one more custom image in `region` (ImportImage, or CopyImage's destination): 403 `QuotaExceed.Image`
/// at `image_quota` custom images in any status, 400 `Throttling` at `max_in_flight` imports and copies still
/// Waiting or Creating there (the real service queues those; the emulator refuses, so that its threads stay
/// bounded, and the SDKs retry a `Throttling` answer as they would on the real service).
fn check_room(inner: &Inner, db: &Db, region: &str) -> Result<(), RpcError> {
    let own = || db.images.iter().filter(|i| i.region == region && i.owner_alias == "self");
    if own().count() >= inner.settings.image_quota {
        return Err(err(
            403,
            "QuotaExceed.Image",
            format!("The quota of custom images ({}) in region {region} is exceeded.", inner.settings.image_quota),
        ));
    }
    if own().filter(|i| IN_FLIGHT.contains(&i.status.as_str())).count() >= inner.settings.max_in_flight {
        return Err(err(
            400,
            "Throttling",
            "Request was denied due to request throttling (too many imports and copies in flight in this region).",
        ));
    }
    Ok(())
}

/// A digest of a request's own parameters (sorted; the signature's, the token's and DryRun left out), recorded
/// with a ClientToken: a later request with the same token and another digest is refused with
/// `IdempotentParameterMismatch`.
fn request_digest(params: &Params) -> String {
    const COMMON: &[&str] = &[
        "Action",
        "Version",
        "Format",
        "AccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "SignatureType",
        "Timestamp",
        "SecurityToken",
        "ClientToken",
        "DryRun",
    ];
    let mut own: Vec<(&str, &str)> =
        params.0.iter().filter(|(k, _)| !COMMON.contains(&k.as_str())).map(|(k, v)| (k.as_str(), v.as_str())).collect();
    own.sort_unstable();
    let mut text = String::new();
    for (k, v) in own {
        text.push_str(&format!("{}:{k}={}:{v}\n", k.len(), v.len()));
    }
    imgport_auth::sign::sha256_hex(text.as_bytes())
}

/// `DryRun=true`: called once a request has passed every check and before it changes anything, it answers 400
/// `DryRunOperation` as ECS does.
fn dry_run(params: &Params) -> Result<(), RpcError> {
    if params.get("DryRun").is_some_and(|d| d.eq_ignore_ascii_case("true")) {
        return Err(err(400, "DryRunOperation", "Request validation has been passed with DryRun flag set."));
    }
    Ok(())
}

fn list_param(params: &Params, name: &str) -> Option<Vec<String>> {
    params
        .get(name)
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

fn paging(params: &Params, max: u64) -> Result<(u64, u64), RpcError> {
    let num = |name: &str, default: u64, hi: u64| -> Result<u64, RpcError> {
        match params.get(name).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=hi).contains(n))
                .ok_or_else(|| RpcError::invalid_parameter(name, format!("The specified {name} is not valid."))),
        }
    };
    Ok((num("PageNumber", 1, u32::MAX as u64)?, num("PageSize", 10, max)?))
}

fn tag_filters(params: &Params) -> Vec<(String, Option<String>)> {
    params
        .indexed("Tag")
        .into_values()
        .filter_map(|t| {
            let k = t.get("Key").filter(|k| !k.is_empty())?.clone();
            Some((k, t.get("Value").filter(|v| !v.is_empty()).cloned()))
        })
        .collect()
}

fn own_image<'a>(db: &'a mut Db, region: &str, id: &str) -> Result<&'a mut Image, RpcError> {
    db.images
        .iter_mut()
        .find(|i| i.id == id && i.region == region && i.owner_alias == "self")
        .ok_or_else(|| no_image(id))
}
