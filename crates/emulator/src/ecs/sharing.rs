//! ModifyImageSharePermission and DescribeImageSharePermission: the accounts a custom image is shared with.
//!
//! | operation | parameters | checks and answers |
//! |---|---|---|
//! | ModifyImageSharePermission | RegionId, ImageId, AddAccount.N, RemoveAccount.N, DryRun | `RegionId` is served (400 `InvalidRegionId.NotFound`); only the first 10 non-empty `AddAccount.N` and the first 10 `RemoveAccount.N` are read (the docs: beyond 10 per call only the first 10 are processed), and each must be all ASCII digits (404 `InvalidAccount.NotFound`); the image is the caller's in the region (404 `InvalidImageId.NotFound`) and Available (400 `IncorrectImageStatus`: a Deprecated, in-flight or failed image cannot be shared, as documented); the caller's own account in `AddAccount.N` is 404 `InvalidAccount.Forbbiden` (spelled as Alibaba spells it); the accounts shared with after the change (removals first, then additions) number at most 50 (403 `QuotaExceed.ShareImageUser`); `DryRun=true` then answers 400 `DryRunOperation`; otherwise removes, then adds, and answers an empty result |
//! | DescribeImageSharePermission | RegionId, ImageId, PageNumber, PageSize | `RegionId` is served (400 `InvalidRegionId.NotFound`); `PageNumber` at least 1 and `PageSize` 1-100 (default 10; 400 `InvalidParameter.PageNumber` / `InvalidParameter.PageSize`); the image is the caller's in the region, in any status (404 `InvalidImageId.NotFound`); answers `Accounts.Account` (`AliyunId`, `SharedTime`) ordered by account id, a page at a time, with `TotalCount`, and an empty `ShareGroups` |
//!
//! **Differs.** The emulator has one account, so a shared-with account is any string of digits: whether it exists
//! is not checked, and sharing changes nothing another account could see (a shared image only counts for
//! ReplaceSystemDisk's lookup of images shared *with* the emulator's account, see [`super::instances`]).
//! `IsPublic` and `LaunchPermission` are not read: an image cannot be published, and `ShareGroups` is always empty.
//! `SharedTime` is the image's `CreationTime`, not the time it was shared. Removing an account that the image is not
//! shared with, or adding one twice, is not an error. No other restriction is applied (none on encrypted images
//! or on images made from marketplace images, for example).

use super::{dry_run, err, own_image, paging, region};
use crate::rpc::{Params, RpcContext, RpcResult};
use crate::services::{iso, Inner};
use serde_json::{json, Value};

/// A custom image can be shared with at most this many accounts.
const MAX_SHARED_ACCOUNTS: usize = 50;

pub(super) fn modify_share(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let id = params.require("ImageId")?;
    let add: Vec<String> = params.list("AddAccount");
    let remove: Vec<String> = params.list("RemoveAccount");
    // Documented: beyond 10 accounts per call, only the first 10 are processed.
    let (add, remove) = (&add[..add.len().min(10)], &remove[..remove.len().min(10)]);
    if add.iter().chain(remove).any(|a| a.is_empty() || !a.chars().all(|c| c.is_ascii_digit())) {
        return Err(err(
            404,
            "InvalidAccount.NotFound",
            "The specified parameter AddAccount.n or RemoveAccount.n does not exist.",
        ));
    }
    let mut db = inner.db();
    let i = own_image(&mut db, &region, id)?;
    if i.status != "Available" {
        return Err(err(400, "IncorrectImageStatus", "The image is not available."));
    }
    if add.contains(&ctx.state.account_id) {
        // Spelled as Alibaba spells it.
        return Err(err(404, "InvalidAccount.Forbbiden", "The specified account does not yourself."));
    }
    let after =
        i.shared_with.iter().filter(|a| !remove.contains(a)).chain(add).collect::<std::collections::BTreeSet<_>>();
    if after.len() > MAX_SHARED_ACCOUNTS {
        return Err(err(403, "QuotaExceed.ShareImageUser", "The shared image user quota exceeds."));
    }
    dry_run(params)?;
    for a in remove {
        i.shared_with.remove(a);
    }
    i.shared_with.extend(add.iter().cloned());
    db.save()?;
    Ok(json!({}))
}

pub(super) fn describe_share(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let id = params.require("ImageId")?;
    let (page, size) = paging(params, 100)?;
    let mut db = inner.db();
    let i = own_image(&mut db, &region, id)?;
    let accounts: Vec<Value> = i
        .shared_with
        .iter()
        .skip(((page - 1) * size) as usize)
        .take(size as usize)
        .map(|a| json!({"AliyunId": a, "SharedTime": iso(i.created)}))
        .collect();
    Ok(json!({
        "ImageId": i.id, "RegionId": region, "PageNumber": page, "PageSize": size, "TotalCount": i.shared_with.len(),
        "ShareGroups": {"ShareGroup": []}, "Accounts": {"Account": accounts},
    }))
}
