//! ModifyImageSharePermission and DescribeImageSharePermission: the accounts a custom image is shared with.
//! Only an Available image can be shared (a Deprecated one answers `IncorrectImageStatus`, as documented);
//! `DryRun=true` answers 400 `DryRunOperation` after every check and shares nothing.

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
