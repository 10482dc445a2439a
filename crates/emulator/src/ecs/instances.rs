//! A few seeded instances: DescribeInstances, StopInstance, StartInstance and ReplaceSystemDisk.
//! DescribeInstances, StopInstance and StartInstance take `DryRun=true` (400 `DryRunOperation` after the checks,
//! nothing changed). ReplaceSystemDisk accepts Available and Deprecated images (ECS documents that deprecated images
//! still serve it) and refuses any other status.

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
