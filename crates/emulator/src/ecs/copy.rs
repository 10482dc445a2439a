//! CopyImage: a custom image copied into another served region, queued one copy at a time per region.

use super::tasks::queue_task;
use super::{by_client_token, dry_run, err, no_image, region, valid_name, Task};
use crate::rpc::{Params, RpcContext, RpcError, RpcResult};
use crate::services::{new_id, Inner};
use serde_json::json;
use std::sync::Arc;

pub(super) fn copy_image(inner: &Arc<Inner>, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let id = params.require("ImageId")?;
    let dest = region_of(ctx, params)?;
    if let Some(i) = by_client_token(inner, params, "CopyImage")? {
        return Ok(json!({"ImageId": i.id}));
    }
    let mut db = inner.db();
    let src = db.images.iter().find(|i| i.id == id && i.region == region).cloned().ok_or_else(|| no_image(id))?;
    if src.owner_alias != "self" {
        return Err(err(403, "InvalidImageId.NotSupported", "Only custom images can be copied."));
    }
    if src.status != "Available" {
        return Err(err(400, "IncorrectImageStatus", "The image not available."));
    }
    let name = match params.get("DestinationImageName").filter(|n| !n.is_empty()) {
        Some(n) if !valid_name(n) => {
            return Err(err(400, "InvalidImageName.Malformed", "The specified DestinationImageName is wrongly formed."))
        }
        Some(n) => n.to_string(),
        None => src.name.clone(),
    };
    if db.images.iter().any(|i| i.region == dest && i.owner_alias == "self" && i.name == name) {
        return Err(err(400, "InvalidImageName.Duplicated", format!("The specified ImageName {name} already exists.")));
    }
    dry_run(params)?;
    let image_id = new_id("m-");
    let task_id = new_id("t-");
    let mut copy = src.clone();
    copy.client_token = params.get("ClientToken").filter(|t| !t.is_empty()).map(str::to_string);
    copy.id = image_id.clone();
    copy.region = dest.clone();
    copy.name = name;
    if let Some(d) = params.get("DestinationDescription").filter(|d| !d.is_empty()) {
        copy.description = d.to_string();
    }
    copy.status = "Waiting".into();
    copy.progress = 0;
    copy.created = ctx.now;
    copy.shared_with.clear();
    copy.copied_from = Some(src.id.clone());
    copy.task_id = Some(task_id.clone());
    copy.forced_failure = ctx.create_failed.clone();
    for (_, t) in params.indexed("Tag") {
        if let Some(k) = t.get("Key").filter(|k| !k.is_empty()) {
            copy.tags.insert(k.clone(), t.get("Value").cloned().unwrap_or_default());
        }
    }
    db.images.push(copy);
    queue_task(inner, db, ctx, Task { id: task_id, region: dest, ..Default::default() }, "CopyImage", &image_id)?;
    Ok(json!({"ImageId": image_id}))
}

fn region_of(ctx: &RpcContext, params: &Params) -> Result<String, RpcError> {
    let r = params.require("DestinationRegionId")?;
    if !ctx.state.serves_region(r) {
        return Err(err(400, "DestinationRegion.NotFound", format!("The destination region {r} not found.")));
    }
    Ok(r.to_string())
}
