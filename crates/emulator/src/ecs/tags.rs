//! TagResources, UntagResources and ListTagResources for images (the only resource type emulated).

use super::{err, own_image, region, tag_filters};
use crate::rpc::{Params, RpcContext, RpcError, RpcResult};
use crate::services::Inner;
use serde_json::json;

fn check_image_type(params: &Params) -> Result<(), RpcError> {
    let t = params.require("ResourceType")?;
    if !t.eq_ignore_ascii_case("image") {
        return Err(RpcError::invalid_parameter("ResourceType", format!("The resource type {t} is not emulated.")));
    }
    Ok(())
}

pub(super) fn tag_resources(inner: &Inner, ctx: &RpcContext, params: &Params, add: bool) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    check_image_type(params)?;
    let ids: Vec<String> = params.indexed("ResourceId").into_values().filter_map(|m| m.get("").cloned()).collect();
    if ids.is_empty() {
        return Err(RpcError::missing_parameter("ResourceId.1"));
    }
    let tags = tag_filters(params);
    let keys: Vec<String> = params.indexed("TagKey").into_values().filter_map(|m| m.get("").cloned()).collect();
    if add && (tags.is_empty() || tags.len() > 20) {
        return Err(RpcError::invalid_parameter("Tag", "Between 1 and 20 tags per call."));
    }
    let all = params.get("All").is_some_and(|a| a.eq_ignore_ascii_case("true"));
    let mut db = inner.db();
    for id in &ids {
        own_image(&mut db, &region, id)?;
    }
    for id in &ids {
        let i = own_image(&mut db, &region, id)?;
        if add {
            for (k, v) in &tags {
                i.tags.insert(k.clone(), v.clone().unwrap_or_default());
            }
            if i.tags.len() > 20 {
                return Err(err(400, "InvalidTagCount", "An image holds at most 20 tags."));
            }
        } else if all {
            i.tags.clear();
        } else {
            for k in &keys {
                i.tags.remove(k);
            }
        }
    }
    db.save()?;
    Ok(json!({}))
}

pub(super) fn list_tag_resources(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    check_image_type(params)?;
    let ids: Vec<String> = params.indexed("ResourceId").into_values().filter_map(|m| m.get("").cloned()).collect();
    let tags = tag_filters(params);
    let db = inner.db();
    let mut out = Vec::new();
    for i in db.images.iter().filter(|i| i.region == region && i.owner_alias == "self") {
        if !ids.is_empty() && !ids.contains(&i.id) {
            continue;
        }
        if !tags.iter().all(|(k, v)| i.tags.get(k).is_some_and(|have| v.as_ref().is_none_or(|v| v == have))) {
            continue;
        }
        for (k, v) in &i.tags {
            out.push(json!({"ResourceType": "ALIYUN::ECS::IMAGE", "ResourceId": i.id, "TagKey": k, "TagValue": v}));
        }
    }
    Ok(json!({"NextToken": "", "TagResources": {"TagResource": out}}))
}
