//! A few seeded instances: DescribeInstances, StopInstance, StartInstance and ReplaceSystemDisk.
//!
//! Each served region gets two instances on first start: `seed-instance-1` Running and
//! `seed-instance-2` Stopped, both `ecs.g7.large` with a 40 GiB system disk and a public Ubuntu image. No call
//! creates or deletes instances.
//!
//! | operation | parameters | checks and answers |
//! |---|---|---|
//! | DescribeInstances | RegionId, InstanceIds, Status, ImageId, PageNumber, PageSize, DryRun | `RegionId` is served (400 `InvalidRegionId.NotFound`); `PageNumber` at least 1, `PageSize` 1-100 (default 10; 400 `InvalidParameter.PageNumber` / `InvalidParameter.PageSize`); `InstanceIds`, when given, is a JSON array of ids (400 `InvalidParameter.InstanceIds` otherwise); `DryRun=true` then answers 400 `DryRunOperation`; answers the region's instances matching every filter given (`InstanceIds`, exact `Status`, exact `ImageId`), in seed order, a page at a time, with `TotalCount` |
//! | StopInstance | InstanceId, DryRun | the instance exists in any region (404 `InvalidInstanceId.NotFound`) and is Running (403 `IncorrectInstanceStatus`); `DryRun=true` then answers 400 `DryRunOperation`; otherwise the instance is Stopped at once |
//! | StartInstance | InstanceId, DryRun | as StopInstance, from Stopped to Running |
//! | ReplaceSystemDisk | InstanceId, ImageId, SystemDisk.Size | the instance exists (404 `InvalidInstanceId.NotFound`) and is Stopped (403 `IncorrectInstanceStatus`); the image is in the instance's region and is the caller's own, a public or marketplace image, or another account's image shared with the caller (404 `InvalidImageId.NotFound`); the image is Available or Deprecated (ECS documents that deprecated images still serve it; any other status is 403 `InvalidImageId.NotFound`, "The specified image is not Available."); `SystemDisk.Size`, when given, is a whole number of GiB from the image's first disk size to 2048 (400 `InvalidSystemDiskSize.LessThanImageSize` below the image, 400 `InvalidSystemDiskSize.ValueNotSupported` for anything else); without it the disk keeps its size, grown to the image's if smaller; answers a new `DiskId`, and the instance shows the new `ImageId` at once |
//!
//! **Differs.** Everything takes effect at once: there are no Stopping, Starting or Pending states, and
//! ReplaceSystemDisk leaves the instance Stopped without a disk-replacing interval. Instances carry fixed
//! attributes (2 vCPUs, 8192 MiB, zone `REGION-b`, `linux`, PostPaid) and no network, disks list, tags or
//! descriptions; DescribeInstances reads no other filter (`InstanceName`, `VpcId`, `Tag.N`, `ZoneId`, ... are
//! ignored) and pages with `PageNumber` only (no `NextToken`). StopInstance, StartInstance and ReplaceSystemDisk
//! read no `RegionId` (an instance is found by id in any region), and StopInstance ignores `ForceStop` and
//! `StoppedMode`. ReplaceSystemDisk documents no `DryRun` and ignores it; it reads neither `Password`,
//! `KeyPairName`, `ClientToken`, `Platform`, `Architecture` nor `SystemDisk.Encrypted`, does not check the image
//! against the instance type (architecture, boot mode) and takes no minimum disk size beyond the image's own
//! (an image without disks needs 1 GiB).

use super::{dry_run, err, no_image, paging, region, Instance};
use crate::rpc::{Params, RpcContext, RpcError, RpcResult};
use crate::services::{iso, new_id, Inner};
use serde_json::{json, Value};

/// The instances seeded in each region on first start: one running, one stopped.
pub(super) fn seed(region: &str, now: i64) -> Vec<Instance> {
    [(1, "Running"), (2, "Stopped")]
        .into_iter()
        .map(|(n, status)| Instance {
            id: new_id("i-"),
            region: region.to_string(),
            name: format!("seed-instance-{n}"),
            status: status.into(),
            image_id: "ubuntu_22_04_x64_20G_alibase_20240101.vhd".into(),
            instance_type: "ecs.g7.large".into(),
            system_disk_id: new_id("d-"),
            system_disk_gib: 40,
            created: now,
        })
        .collect()
}

fn instance_json(n: &Instance) -> Value {
    json!({
        "InstanceId": n.id, "InstanceName": n.name, "HostName": n.name, "Status": n.status, "ImageId": n.image_id,
        "RegionId": n.region, "ZoneId": format!("{}-b", n.region), "InstanceType": n.instance_type,
        "OSType": "linux", "CreationTime": iso(n.created), "InstanceChargeType": "PostPaid",
        "Cpu": 2, "Memory": 8192, "Description": "",
    })
}

fn no_instance(id: &str) -> RpcError {
    err(404, "InvalidInstanceId.NotFound", format!("The specified InstanceId {id} does not exist."))
}

pub(super) fn describe_instances(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let (page, size) = paging(params, 100)?;
    let ids: Option<Vec<String>> = match params.get("InstanceIds").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(
            serde_json::from_str(v)
                .map_err(|_| RpcError::invalid_parameter("InstanceIds", "InstanceIds must be a JSON array of ids."))?,
        ),
    };
    let status = params.get("Status").filter(|v| !v.is_empty());
    let image = params.get("ImageId").filter(|v| !v.is_empty());
    dry_run(params)?;
    let db = inner.db();
    let found: Vec<&Instance> = db
        .instances
        .iter()
        .filter(|n| n.region == region)
        .filter(|n| ids.as_ref().is_none_or(|ids| ids.contains(&n.id)))
        .filter(|n| status.is_none_or(|s| s == n.status) && image.is_none_or(|i| i == n.image_id))
        .collect();
    let total = found.len();
    let list: Vec<Value> =
        found.into_iter().skip(((page - 1) * size) as usize).take(size as usize).map(instance_json).collect();
    Ok(json!({"PageNumber": page, "PageSize": size, "TotalCount": total, "Instances": {"Instance": list}}))
}

/// StopInstance / StartInstance, which take effect at once.
pub(super) fn set_instance_status(
    inner: &Inner,
    _ctx: &RpcContext,
    params: &Params,
    from: &str,
    to: &str,
) -> RpcResult {
    let id = params.require("InstanceId")?;
    let mut db = inner.db();
    let n = db.instances.iter_mut().find(|n| n.id == id).ok_or_else(|| no_instance(id))?;
    if n.status != from {
        return Err(err(
            403,
            "IncorrectInstanceStatus",
            "The current status of the resource does not support this operation.",
        ));
    }
    dry_run(params)?;
    n.status = to.to_string();
    db.save()?;
    Ok(json!({}))
}

pub(super) fn replace_system_disk(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let id = params.require("InstanceId")?;
    let image_id = params.require("ImageId")?;
    let mut db = inner.db();
    let n = db.instances.iter().find(|n| n.id == id).cloned().ok_or_else(|| no_instance(id))?;
    if n.status != "Stopped" {
        return Err(err(
            403,
            "IncorrectInstanceStatus",
            "The current status of the resource does not support this operation.",
        ));
    }
    let image = db
        .images
        .iter()
        .filter(|i| i.owner_alias != "others" || i.shared_with.contains(&ctx.state.account_id))
        .find(|i| i.id == image_id && i.region == n.region)
        .ok_or_else(|| no_image(image_id))?;
    if !["Available", "Deprecated"].contains(&image.status.as_str()) {
        return Err(err(403, "InvalidImageId.NotFound", "The specified image is not Available."));
    }
    let need = image.disks.first().map_or(1, |d| d.size_gib);
    let size = match params.get("SystemDisk.Size").filter(|v| !v.is_empty()) {
        None => n.system_disk_gib.max(need),
        Some(v) => v.parse::<u64>().ok().filter(|s| *s >= need && *s <= 2048).ok_or_else(|| {
            if v.parse::<u64>().is_ok_and(|s| s < need) {
                err(
                    400,
                    "InvalidSystemDiskSize.LessThanImageSize",
                    "The specified parameter SystemDisk.Size is less than the image size.",
                )
            } else {
                err(
                    400,
                    "InvalidSystemDiskSize.ValueNotSupported",
                    "The specified parameter SystemDisk.Size is invalid.",
                )
            }
        })?,
    };
    let disk_id = new_id("d-");
    if let Some(m) = db.instances.iter_mut().find(|m| m.id == id) {
        m.image_id = image_id.to_string();
        m.system_disk_id = disk_id.clone();
        m.system_disk_gib = size;
    }
    db.save()?;
    Ok(json!({"DiskId": disk_id}))
}
