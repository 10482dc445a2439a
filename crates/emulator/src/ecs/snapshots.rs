//! Snapshots as resources: DescribeSnapshots and DeleteSnapshot over the snapshots the account's images are made of.
//!
//! **Where snapshots come from.** When an ImportImage, CopyImage or CreateImage (from an instance) becomes
//! Available, each of the image's disks gets a snapshot of its own (`s-...`, status `accomplished`, in the image's
//! region, `SourceDiskSize` the disk's size, `SourceDiskType` system for the first disk and data for the others).
//! A copy's snapshots are new ids in the destination region that name the source image's snapshots
//! (`SourceSnapshotId`, `SourceRegionId`) and carry the copy's `Encrypted` / `KMSKeyId`. CreateImage from an
//! instance snapshots the instance's system disk (`SourceDiskId` is the disk's id); CreateImage from snapshots
//! makes no new snapshot: the image uses the ones it named. The images that use a snapshot are the images whose
//! `DiskDeviceMappings` name it, whatever their status. **Differs:** the real service shows a snapshot
//! `progressing` while the image is being made; here a snapshot appears, accomplished, when the image becomes
//! Available (a failed or cancelled import or copy leaves none). Snapshots of images in a state file written before
//! snapshots were records are recorded when the emulator starts.
//!
//! **DescribeSnapshots** (`RegionId` required, 400 `InvalidRegionId.NotFound`):
//!
//! | parameter | meaning | bad value |
//! |---|---|---|
//! | `SnapshotIds` | a JSON array of at most 100 ids, as documented | 403 `InvalidSnapshotIds.Malformed` (not a JSON array of strings, or more than 100) |
//! | `SnapshotName` | exact name (snapshots made with images have an empty name) | |
//! | `Status` | progressing, accomplished, failed or all (the default) | 404 `InvalidStatus.NotFound` |
//! | `SnapshotType` | auto, user or all (the default); these snapshots are all `user` | 404 `InvalidSnapshotType.NotFound` |
//! | `Usage` | image (an image uses it), disk, image_disk, none; the emulator has no disks made from snapshots, so disk and image_disk match nothing | 404 `InvalidUsage` |
//! | `SourceDiskType` | System or Data, any case | 404 `InvalidSourceDiskType` |
//! | `InstanceId`, `DiskId` | the snapshots of the instance's current system disk / of that disk | |
//! | `Encrypted` | true: encrypted snapshots only | 400 `InvalidParameter.Encrypted` (the emulator's code) |
//! | `Tag.N.Key` / `Tag.N.Value` | snapshots carrying each tag (any value when Value is empty) | 400 `InvalidTagCount` (more than 20), 400 `InvalidTag.Mismatch` (a value without its key) |
//! | `PageNumber` / `PageSize` | pages (PageSize 1-100, default 10) | 400 `InvalidParameter.PageNumber` / `.PageSize` |
//! | `NextToken` / `MaxResults` | token paging instead (MaxResults 1-100, default 10), used when either is given: `NextToken` in the answer while more remain, empty on the last page | 400 `InvalidParameter.NextToken` (a token the emulator did not issue), `InvalidParameter.MaxResults` |
//! | `DryRun` | 400 `DryRunOperation` once the parameters pass | |
//!
//! Results are ordered by `SnapshotId` (no order is documented). Each snapshot carries the SDK's fields:
//! SnapshotId, SnapshotName, Description, Status, Progress, RegionId, CreationTime, LastModifiedTime, SourceDiskId,
//! SourceDiskSize, SourceDiskType, SourceStorageType (disk), Usage, Encrypted, KMSKeyId, Category (standard),
//! SnapshotType (user), Available, InstantAccess (false), RemainTime (0), SourceSnapshotId, SourceRegionId, Tags.
//! **Not emulated:** `Filter.N` creation times, `SnapshotLinkId`, `Category`, `KMSKeyId` and `ResourceGroupId`
//! filters are ignored.
//!
//! **DeleteSnapshot** (`SnapshotId` required, 400 `MissingParameter`; `Force`; the API takes no `RegionId` and
//! no `DryRun`): an unknown id is ignored (documented); a snapshot that an image uses is refused with 403
//! `SnapshotCreatedImage` whatever `Force` says (documented: `Force` only concerns snapshots used to create
//! disks, which the emulator does not have). DeleteImage leaves the image's snapshots in place (documented); once
//! no image uses a snapshot any more, DeleteSnapshot removes it.

use super::{dry_run, err, paging, region, Db, DiskMapping, Image, Snapshot};
use crate::rpc::{Params, RpcContext, RpcError, RpcResult};
use crate::services::{iso, new_id, Inner};
use serde_json::{json, Value};

pub(super) fn no_snapshot(id: &str) -> RpcError {
    err(404, "InvalidSnapshotId.NotFound", format!("The specified SnapshotId {id} does not exist."))
}

/// Whether an image of the account uses the snapshot.
pub(super) fn used_by_image(db: &Db, id: &str) -> bool {
    db.images.iter().any(|i| i.owner_alias == "self" && i.disks.iter().any(|d| d.snapshot_id == id))
}

fn usage(db: &Db, s: &Snapshot) -> &'static str {
    if used_by_image(db, &s.id) {
        "image"
    } else {
        "none"
    }
}

/// Gives each disk of a just finished image its own snapshot id (kept when it already names one, as CreateImage
/// from snapshots does).
pub(super) fn assign_ids(disks: &mut [DiskMapping]) {
    for d in disks.iter_mut().filter(|d| d.snapshot_id.is_empty()) {
        d.snapshot_id = new_id("s-");
    }
}

/// Records the snapshots of an Available image that are not records yet (see the module docs).
pub(super) fn record(db: &mut Db, image: &Image, now: i64) {
    if image.owner_alias != "self" {
        return;
    }
    for (n, d) in image.disks.iter().enumerate() {
        if d.snapshot_id.is_empty() || db.snapshots.iter().any(|s| s.id == d.snapshot_id) {
            continue;
        }
        db.snapshots.push(Snapshot {
            id: d.snapshot_id.clone(),
            region: image.region.clone(),
            status: "accomplished".into(),
            size_gib: d.size_gib,
            source_disk_id: if d.source_disk_id.is_empty() { new_id("d-") } else { d.source_disk_id.clone() },
            source_disk_type: if n == 0 { "system" } else { "data" }.into(),
            created: now,
            encrypted: d.encrypted,
            kms_key_id: d.kms_key_id.clone(),
            source_snapshot_id: d.source_snapshot_id.clone(),
            source_region_id: d.source_region_id.clone(),
            ..Default::default()
        });
    }
}

/// At start: records the snapshots of Available own images written before snapshots were records.
pub(crate) fn migrate(db: &mut Db) -> bool {
    let images: Vec<Image> = db
        .images
        .iter()
        .filter(|i| i.owner_alias == "self" && ["Available", "Deprecated"].contains(&i.status.as_str()))
        .filter(|i| i.disks.iter().any(|d| !d.snapshot_id.is_empty()))
        .cloned()
        .collect();
    let before = db.snapshots.len();
    for i in &images {
        record(db, i, i.created);
    }
    db.snapshots.len() != before
}

fn snapshot_json(db: &Db, s: &Snapshot) -> Value {
    let tags: Vec<Value> = s.tags.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect();
    json!({
        "SnapshotId": s.id, "SnapshotName": s.name, "Description": s.description, "Status": s.status,
        "Progress": if s.status == "accomplished" { "100%" } else { "0%" }, "RegionId": s.region,
        "CreationTime": iso(s.created), "LastModifiedTime": iso(s.created), "SourceDiskId": s.source_disk_id,
        "SourceDiskSize": s.size_gib.to_string(), "SourceDiskType": s.source_disk_type, "SourceStorageType": "disk",
        "Usage": usage(db, s), "Encrypted": s.encrypted, "KMSKeyId": s.kms_key_id, "Category": "standard",
        "SnapshotType": "user", "Available": s.status == "accomplished", "InstantAccess": false, "RemainTime": 0,
        "SourceSnapshotId": s.source_snapshot_id, "SourceRegionId": s.source_region_id, "ProductCode": "",
        "SnapshotSN": "", "ResourceGroupId": "", "Tags": {"Tag": tags},
    })
}

/// A parameter from a fixed list of values (compared without case): `None` when absent, empty or `all_value`.
fn choice(
    params: &Params,
    name: &str,
    allowed: &[&str],
    all_value: Option<&str>,
    bad: impl FnOnce(&str) -> RpcError,
) -> Result<Option<String>, RpcError> {
    match params.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if all_value.is_some_and(|a| a.eq_ignore_ascii_case(v)) => Ok(None),
        Some(v) => match allowed.iter().find(|a| a.eq_ignore_ascii_case(v)) {
            Some(a) => Ok(Some(a.to_string())),
            None => Err(bad(v)),
        },
    }
}

pub(super) fn describe_snapshots(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let ids: Option<Vec<String>> = match params.get("SnapshotIds").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => {
            let bad = || {
                err(
                    403,
                    "InvalidSnapshotIds.Malformed",
                    "The specified SnapshotIds is not a JSON array of at most 100 snapshot ids.",
                )
            };
            let ids: Vec<String> = serde_json::from_str(v).map_err(|_| bad())?;
            if ids.len() > 100 {
                return Err(bad());
            }
            Some(ids)
        }
    };
    let status = choice(params, "Status", &["progressing", "accomplished", "failed"], Some("all"), |v| {
        err(404, "InvalidStatus.NotFound", format!("The specified Status {v} is not found."))
    })?;
    let snapshot_type = choice(params, "SnapshotType", &["auto", "user"], Some("all"), |v| {
        err(404, "InvalidSnapshotType.NotFound", format!("The specified SnapshotType {v} is not found."))
    })?;
    let usage_filter = choice(params, "Usage", &["image", "disk", "image_disk", "none"], None, |v| {
        err(404, "InvalidUsage", format!("The specified Usage {v} is not valid."))
    })?;
    let disk_type = choice(params, "SourceDiskType", &["system", "data"], None, |v| {
        err(404, "InvalidSourceDiskType", format!("The specified SourceDiskType {v} is not valid."))
    })?;
    let encrypted = match params.get("Encrypted").filter(|v| !v.is_empty()) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(RpcError::invalid_parameter("Encrypted", "The specified Encrypted is not a boolean.")),
    };
    let tag_params = params.indexed("Tag");
    if tag_params.len() > 20 {
        return Err(err(400, "InvalidTagCount", "The specified tags are beyond the permitted range."));
    }
    let mut tags = Vec::new();
    for t in tag_params.values() {
        match t.get("Key").filter(|k| !k.is_empty()) {
            Some(k) => tags.push((k.clone(), t.get("Value").filter(|v| !v.is_empty()).cloned())),
            None if t.get("Value").is_some_and(|v| !v.is_empty()) => {
                return Err(err(400, "InvalidTag.Mismatch", "The specified Tag.n.Key and Tag.n.Value are not match."))
            }
            None => {}
        }
    }
    let name = params.get("SnapshotName").filter(|v| !v.is_empty());
    let disk = params.get("DiskId").filter(|v| !v.is_empty());
    let instance = params.get("InstanceId").filter(|v| !v.is_empty());
    // Token paging when NextToken or MaxResults is given, page numbers otherwise.
    let token_mode = params.get("NextToken").is_some_and(|v| !v.is_empty())
        || params.get("MaxResults").is_some_and(|v| !v.is_empty());
    let (page, size) = paging(params, 100)?;
    let max_results = match params.get("MaxResults").filter(|v| !v.is_empty()) {
        None => 10,
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| {
            RpcError::invalid_parameter("MaxResults", "The specified parameter MaxResults is not valid.")
        })?,
    };
    let start = match params.get("NextToken").filter(|v| !v.is_empty()) {
        None => 0,
        Some(t) => t
            .strip_prefix("snapshots-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| RpcError::invalid_parameter("NextToken", "The specified NextToken is not valid."))?,
    };
    dry_run(params)?;
    let db = inner.db();
    let instance_disk = instance
        .map(|i| db.instances.iter().find(|n| n.id == i && n.region == region).map(|n| n.system_disk_id.clone()));
    let mut found: Vec<&Snapshot> = db
        .snapshots
        .iter()
        .filter(|s| s.region == region)
        .filter(|s| ids.as_ref().is_none_or(|ids| ids.contains(&s.id)))
        .filter(|s| name.is_none_or(|n| n == s.name))
        .filter(|s| status.as_ref().is_none_or(|st| st == &s.status))
        .filter(|_| snapshot_type.as_ref().is_none_or(|t| t == "user"))
        .filter(|s| usage_filter.as_ref().is_none_or(|u| u == usage(&db, s)))
        .filter(|s| disk_type.as_ref().is_none_or(|t| t == &s.source_disk_type))
        .filter(|s| !encrypted || s.encrypted)
        .filter(|s| disk.is_none_or(|d| d == s.source_disk_id))
        .filter(|s| instance_disk.as_ref().is_none_or(|d| d.as_deref() == Some(s.source_disk_id.as_str())))
        .filter(|s| tags.iter().all(|(k, v)| s.tags.get(k).is_some_and(|have| v.as_ref().is_none_or(|v| v == have))))
        .collect();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    let total = found.len();
    let (skip, take) = if token_mode { (start, max_results) } else { (((page - 1) * size) as usize, size as usize) };
    if token_mode && start > total {
        return Err(RpcError::invalid_parameter("NextToken", "The specified NextToken is not valid."));
    }
    let end = skip.saturating_add(take).min(total);
    let next = if token_mode && end < total { format!("snapshots-{end}") } else { String::new() };
    let list: Vec<Value> = found.iter().skip(skip).take(take).map(|s| snapshot_json(&db, s)).collect();
    Ok(json!({
        "PageNumber": if token_mode { 1 } else { page }, "PageSize": if token_mode { max_results as u64 } else { size },
        "TotalCount": total, "NextToken": next, "Snapshots": {"Snapshot": list},
    }))
}

pub(super) fn delete_snapshot(inner: &Inner, _ctx: &RpcContext, params: &Params) -> RpcResult {
    let id = params.require("SnapshotId")?;
    // `Force` is read for the record: it concerns snapshots used by disks, which the emulator does not have.
    let _force = params.get("Force").is_some_and(|f| f.eq_ignore_ascii_case("true"));
    let mut db = inner.db();
    // Documented: "If the snapshot does not exist, the request is ignored."
    if !db.snapshots.iter().any(|s| s.id == id) {
        return Ok(json!({}));
    }
    if used_by_image(&db, id) {
        return Err(err(403, "SnapshotCreatedImage", "The snapshot has been used to create user defined image(s)."));
    }
    db.snapshots.retain(|s| s.id != id);
    db.save()?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, alias: &str, status: &str, snaps: &[&str]) -> Image {
        Image {
            id: id.into(),
            region: "cn-hangzhou".into(),
            owner_alias: alias.into(),
            status: status.into(),
            created: 1_700_000_000,
            disks: snaps
                .iter()
                .map(|s| DiskMapping { snapshot_id: s.to_string(), size_gib: 3, ..Default::default() })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn finished_own_images_get_their_snapshots_once() {
        let mut db = Db::default();
        db.images.push(image("m-own", "self", "Available", &["s-sys", "s-data"]));
        db.images.push(image("m-old", "self", "Deprecated", &["s-old"]));
        db.images.push(image("m-busy", "self", "Creating", &[""]));
        db.images.push(image("ubuntu", "system", "Available", &["s-seed"]));
        assert!(migrate(&mut db));
        let got: Vec<(&str, &str, u64)> =
            db.snapshots.iter().map(|s| (s.id.as_str(), s.source_disk_type.as_str(), s.size_gib)).collect();
        assert_eq!(got, [("s-sys", "system", 3), ("s-data", "data", 3), ("s-old", "system", 3)]);
        assert!(db.snapshots.iter().all(|s| s.status == "accomplished" && s.source_disk_id.starts_with("d-")));
        assert!(!migrate(&mut db), "a second start records nothing new");
        assert!(used_by_image(&db, "s-data") && !used_by_image(&db, "s-seed"));
        db.images.retain(|i| i.id != "m-own");
        assert!(!used_by_image(&db, "s-data"), "a deleted image no longer uses its snapshots");
    }

    #[test]
    fn assign_ids_keeps_named_snapshots() {
        let mut disks =
            vec![DiskMapping { snapshot_id: "s-given".into(), ..Default::default() }, DiskMapping::default()];
        assign_ids(&mut disks);
        assert_eq!(disks[0].snapshot_id, "s-given");
        assert!(disks[1].snapshot_id.starts_with("s-") && disks[1].snapshot_id != "s-given");
    }
}
