//! TagResources, UntagResources and ListTagResources for images (the only resource type emulated; the emulator has
//! no snapshot resources, so `ResourceType=snapshot` is refused like any other type).
//!
//! | operation | parameters | checks and answers |
//! |---|---|---|
//! | TagResources | RegionId, ResourceType (image), ResourceId.N, Tag.N.Key, Tag.N.Value | 1-20 tags per call (400 `InvalidParameter.Tag`); a key is 1-128 characters, a value 0-128, neither starts with `acs:` or `aliyun` nor contains `http://` or `https://` (400 `InvalidTagKey.Malformed` / `InvalidTagValue.Malformed`); a key given twice in one call is 400 `TagKey.Duplication`; an image holds at most 20 tags (400 `InvalidTagCount`, nothing changed); every image is the caller's in the region (404 `InvalidImageId.NotFound`) |
//! | UntagResources | RegionId, ResourceType, ResourceId.N, TagKey.N, All | removes the keys (or all tags with All=true) |
//! | ListTagResources | RegionId, ResourceType, ResourceId.N, Tag.N.Key/Value, TagFilter.N.TagKey, TagFilter.N.TagValues.N, NextToken | one row per (image, tag) of the caller's images, ordered by ImageId then key; `Tag.N` keeps images having that key (and value when given); `TagFilter.N` keeps images having the key with one of the values (any value when TagValues is empty); pages of `CloudSettings::tag_page_size` rows (50 by default, as documented) with a `NextToken` while more remain; a NextToken this emulator did not issue is 400 `InvalidParameter.NextToken` (the docs do not name the code) |

use super::{err, own_image, region, tag_filters};
use crate::rpc::{Params, RpcContext, RpcError, RpcResult};
use crate::services::Inner;
use serde_json::json;

/// Keys and values as TagResources documents them (see the module docs).
pub(super) fn check_tags(tags: &[(String, Option<String>)]) -> Result<(), RpcError> {
    let reserved = |s: &str| {
        let l = s.to_ascii_lowercase();
        l.starts_with("acs:") || l.starts_with("aliyun") || l.contains("http://") || l.contains("https://")
    };
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in tags {
        if k.chars().count() > 128 || reserved(k) {
            return Err(err(400, "InvalidTagKey.Malformed", "The specified Tag.n.Key is not valid."));
        }
        if v.as_deref().is_some_and(|v| v.chars().count() > 128 || reserved(v)) {
            return Err(err(400, "InvalidTagValue.Malformed", "The specified Tag.n.Value is not valid."));
        }
        if !seen.insert(k.as_str()) {
            return Err(err(400, "TagKey.Duplication", "The specified tag key already exists."));
        }
    }
    Ok(())
}

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
    if add {
        check_tags(&tags)?;
    }
    let all = params.get("All").is_some_and(|a| a.eq_ignore_ascii_case("true"));
    let mut db = inner.db();
    for id in &ids {
        let i = own_image(&mut db, &region, id)?;
        let new = tags.iter().filter(|(k, _)| !i.tags.contains_key(k)).count();
        if add && i.tags.len() + new > 20 {
            return Err(err(400, "InvalidTagCount", "An image holds at most 20 tags."));
        }
    }
    for id in &ids {
        let i = own_image(&mut db, &region, id)?;
        if add {
            for (k, v) in &tags {
                i.tags.insert(k.clone(), v.clone().unwrap_or_default());
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
    let filters: Vec<(String, Vec<String>)> = params
        .indexed("TagFilter")
        .into_values()
        .filter_map(|f| {
            let k = f.get("TagKey").filter(|k| !k.is_empty())?.clone();
            let values = f.iter().filter(|(n, v)| n.starts_with("TagValues.") && !v.is_empty()).map(|(_, v)| v.clone());
            Some((k, values.collect()))
        })
        .collect();
    let start = match params.get("NextToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .strip_prefix("tags-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| RpcError::invalid_parameter("NextToken", "The specified NextToken is not valid."))?,
    };
    let page = inner.settings.tag_page_size.max(1);
    let db = inner.db();
    let mut images: Vec<_> = db.images.iter().filter(|i| i.region == region && i.owner_alias == "self").collect();
    images.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out = Vec::new();
    for i in images {
        if !filters.iter().all(|(k, vs)| i.tags.get(k).is_some_and(|have| vs.is_empty() || vs.contains(have))) {
            continue;
        }
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
    if start > out.len() {
        return Err(RpcError::invalid_parameter("NextToken", "The specified NextToken is not valid."));
    }
    let end = start.saturating_add(page).min(out.len());
    let next = if end < out.len() { format!("tags-{end}") } else { String::new() };
    let rows: Vec<_> = out.drain(start..end).collect();
    Ok(json!({"NextToken": next, "TagResources": {"TagResource": rows}}))
}
