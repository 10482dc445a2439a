//! TagResources, UntagResources and ListTagResources for images and snapshots (`ResourceType` `image` or
//! `snapshot`, any case; any other type is 400 `InvalidParameter.ResourceType`), and the `Tag.N` checks that
//! ImportImage, CopyImage and CreateImage share ([`request_tags`]).
//!
//! | operation | parameters | checks and answers |
//! |---|---|---|
//! | TagResources | RegionId, ResourceType (image, snapshot), ResourceId.N, Tag.N.Key, Tag.N.Value | 1-20 tags per call (400 `InvalidParameter.Tag`); a key is 1-128 characters, a value 0-128, neither starts with `acs:` or `aliyun` nor contains `http://` or `https://` (400 `InvalidTagKey.Malformed` / `InvalidTagValue.Malformed`); a key given twice in one call is 400 `TagKey.Duplication`; a resource holds at most 20 tags (400 `InvalidTagCount`, nothing changed); every resource is the caller's in the region (404 `InvalidImageId.NotFound` / `InvalidSnapshotId.NotFound`; the docs name no code per type, these are the emulator's) |
//! | UntagResources | RegionId, ResourceType, ResourceId.N, TagKey.N, All | removes the keys (or all tags with All=true) |
//! | ListTagResources | RegionId, ResourceType, ResourceId.N, Tag.N.Key/Value, TagFilter.N.TagKey, TagFilter.N.TagValues.N, NextToken | one row per (resource, tag) of the caller's resources of that type (`ALIYUN::ECS::IMAGE` / `ALIYUN::ECS::SNAPSHOT`), ordered by id then key; `Tag.N` keeps resources having that key (and value when given); `TagFilter.N` keeps resources having the key with one of the values (any value when TagValues is empty); pages of `CloudSettings::tag_page_size` rows (50 by default, as documented) with a `NextToken` while more remain; a NextToken this emulator did not issue is 400 `InvalidParameter.NextToken` (the docs do not name the code) |
//!
//! **Tags given when a resource is created** (`Tag.N.Key` / `Tag.N.Value` of ImportImage, CopyImage and
//! CreateImage) are checked by the same key and value rules before anything is created: at most 20 tags, a
//! `Tag.N.Value` without its `Tag.N.Key` is a malformed key (the older lower-case `Tag.N.key` / `Tag.N.value`
//! that CreateImage still documents are read too). ImportImage and CopyImage answer a repeated key
//! with 400 `TagKey.Duplication` and more than 20 tags with 400 `InvalidTagCount` (their error tables name no
//! codes; these are TagResources' and DescribeImages'); CreateImage answers with its documented 400
//! `Duplicate.TagKey` and 403 `QuotaExceed.Tags`.

use super::{err, no_image, region, tag_filters};
use crate::rpc::{Params, RpcContext, RpcError, RpcResult};
use crate::services::{Db, Inner};
use serde_json::json;
use std::collections::BTreeMap;

/// The resource types the tag calls know.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Snapshot,
}

impl Kind {
    fn listed(self) -> &'static str {
        match self {
            Kind::Image => "ALIYUN::ECS::IMAGE",
            Kind::Snapshot => "ALIYUN::ECS::SNAPSHOT",
        }
    }
}

/// How a creating operation answers bad `Tag.N`: the code for a repeated key and (status, code) for more than 20.
pub(super) struct TagCodes {
    pub duplicate: &'static str,
    pub too_many: (u16, &'static str),
}

/// ImportImage's and CopyImage's answers (see the module docs).
pub(super) const CREATE_CODES: TagCodes =
    TagCodes { duplicate: "TagKey.Duplication", too_many: (400, "InvalidTagCount") };

/// The `Tag.N` of a request that creates a resource, checked (see the module docs).
pub(super) fn request_tags(params: &Params, codes: &TagCodes) -> Result<BTreeMap<String, String>, RpcError> {
    let given = params.indexed("Tag");
    if given.len() > 20 || given.keys().any(|n| *n == 0 || *n > 20) {
        return Err(err(codes.too_many.0, codes.too_many.1, "At most 20 tags can be given."));
    }
    let mut tags = Vec::new();
    for t in given.values() {
        // CreateImage also documents the older lower-case `Tag.N.key` / `Tag.N.value`.
        let field = |name: &str| t.get(name).or_else(|| t.get(&name.to_ascii_lowercase()));
        match field("Key").filter(|k| !k.is_empty()) {
            Some(k) => tags.push((k.clone(), field("Value").cloned())),
            None => return Err(err(400, "InvalidTagKey.Malformed", "The specified Tag.n.Key is not valid.")),
        }
    }
    check_tags(&tags).map_err(
        |e| {
            if e.code == "TagKey.Duplication" {
                err(400, codes.duplicate, e.message)
            } else {
                e
            }
        },
    )?;
    Ok(tags.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect())
}

/// The tags of the caller's resource `id` of `kind` in `region`, or its type's not-found error.
fn tags_of<'a>(
    db: &'a mut Db,
    kind: Kind,
    region: &str,
    id: &str,
) -> Result<&'a mut BTreeMap<String, String>, RpcError> {
    match kind {
        Kind::Image => db
            .images
            .iter_mut()
            .find(|i| i.id == id && i.region == region && i.owner_alias == "self")
            .map(|i| &mut i.tags)
            .ok_or_else(|| no_image(id)),
        Kind::Snapshot => db
            .snapshots
            .iter_mut()
            .find(|s| s.id == id && s.region == region)
            .map(|s| &mut s.tags)
            .ok_or_else(|| super::snapshots::no_snapshot(id)),
    }
}

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

fn resource_kind(params: &Params) -> Result<Kind, RpcError> {
    let t = params.require("ResourceType")?;
    if t.eq_ignore_ascii_case("image") {
        Ok(Kind::Image)
    } else if t.eq_ignore_ascii_case("snapshot") {
        Ok(Kind::Snapshot)
    } else {
        Err(RpcError::invalid_parameter("ResourceType", format!("The resource type {t} is not emulated.")))
    }
}

pub(super) fn tag_resources(inner: &Inner, ctx: &RpcContext, params: &Params, add: bool) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let kind = resource_kind(params)?;
    let ids: Vec<String> = params.list("ResourceId");
    if ids.is_empty() {
        return Err(RpcError::missing_parameter("ResourceId.1"));
    }
    let tags = tag_filters(params);
    let keys: Vec<String> = params.list("TagKey");
    if add && (tags.is_empty() || tags.len() > 20) {
        return Err(RpcError::invalid_parameter("Tag", "Between 1 and 20 tags per call."));
    }
    if add {
        check_tags(&tags)?;
    }
    let all = params.get("All").is_some_and(|a| a.eq_ignore_ascii_case("true"));
    let mut db = inner.db();
    for id in &ids {
        let have = tags_of(&mut db, kind, &region, id)?;
        let new = tags.iter().filter(|(k, _)| !have.contains_key(k)).count();
        if add && have.len() + new > 20 {
            return Err(err(400, "InvalidTagCount", "A resource holds at most 20 tags."));
        }
    }
    for id in &ids {
        let have = tags_of(&mut db, kind, &region, id)?;
        if add {
            for (k, v) in &tags {
                have.insert(k.clone(), v.clone().unwrap_or_default());
            }
        } else if all {
            have.clear();
        } else {
            for k in &keys {
                have.remove(k);
            }
        }
    }
    db.save()?;
    Ok(json!({}))
}

pub(super) fn list_tag_resources(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let kind = resource_kind(params)?;
    let ids: Vec<String> = params.list("ResourceId");
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
    let mut resources: Vec<(&String, &BTreeMap<String, String>)> = match kind {
        Kind::Image => db
            .images
            .iter()
            .filter(|i| i.region == region && i.owner_alias == "self")
            .map(|i| (&i.id, &i.tags))
            .collect(),
        Kind::Snapshot => db.snapshots.iter().filter(|s| s.region == region).map(|s| (&s.id, &s.tags)).collect(),
    };
    resources.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    for (id, have) in resources {
        if !filters.iter().all(|(k, vs)| have.get(k).is_some_and(|h| vs.is_empty() || vs.contains(h))) {
            continue;
        }
        if !ids.is_empty() && !ids.contains(id) {
            continue;
        }
        if !tags.iter().all(|(k, v)| have.get(k).is_some_and(|h| v.as_ref().is_none_or(|v| v == h))) {
            continue;
        }
        for (k, v) in have {
            out.push(json!({"ResourceType": kind.listed(), "ResourceId": id, "TagKey": k, "TagValue": v}));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn request_tags_are_checked_before_use() {
        let ok = request_tags(&params(&[("Tag.1.Key", "a"), ("Tag.1.Value", "1"), ("Tag.2.Key", "b")]), &CREATE_CODES);
        assert_eq!(ok.ok(), Some([("a".to_string(), "1".to_string()), ("b".into(), String::new())].into()));
        let lower = request_tags(&params(&[("Tag.1.key", "a"), ("Tag.1.value", "1")]), &CREATE_CODES);
        assert_eq!(lower.ok().and_then(|t| t.get("a").cloned()).as_deref(), Some("1"));
        let code =
            |p: &[(&str, &str)], codes: &TagCodes| request_tags(&params(p), codes).err().map(|e| (e.status, e.code));
        let dup: &[(&str, &str)] = &[("Tag.1.Key", "k"), ("Tag.2.Key", "k")];
        assert_eq!(code(dup, &CREATE_CODES), Some((400, "TagKey.Duplication".into())));
        let create = TagCodes { duplicate: "Duplicate.TagKey", too_many: (403, "QuotaExceed.Tags") };
        assert_eq!(code(dup, &create), Some((400, "Duplicate.TagKey".into())));
        let keys: Vec<(String, String)> = (1..=21).map(|n| (format!("Tag.{n}.Key"), format!("k{n}"))).collect();
        let many: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(code(&many, &create), Some((403, "QuotaExceed.Tags".into())));
        assert_eq!(code(&many, &CREATE_CODES), Some((400, "InvalidTagCount".into())));
        assert_eq!(code(&[("Tag.1.Value", "v")], &CREATE_CODES), Some((400, "InvalidTagKey.Malformed".into())));
        assert_eq!(code(&[("Tag.1.Key", "acs:x")], &CREATE_CODES), Some((400, "InvalidTagKey.Malformed".into())));
        assert_eq!(
            code(&[("Tag.1.Key", "k"), ("Tag.1.Value", "https://x")], &CREATE_CODES),
            Some((400, "InvalidTagValue.Malformed".into()))
        );
    }
}
