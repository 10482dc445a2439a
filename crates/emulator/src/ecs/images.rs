//! The image catalogue: DescribeImages over seeded public, marketplace and shared images plus the account's own,
//! ModifyImageAttribute and DeleteImage.

use super::{err, list_param, own_image, paging, region, tag_filters, valid_name, DiskMapping, Image, IN_FLIGHT};
use crate::rpc::{Params, RpcContext, RpcError, RpcResult};
use crate::services::{iso, Inner};
use serde_json::{json, Value};

const OTHER_ACCOUNT: &str = "9876543210987654";

/// The seeded catalogue: public images, marketplace images and one image another account shares with us.
pub(super) fn seed(region: &str, now: i64, account: &str) -> Vec<Image> {
    let mk = |id: &str, name: &str, alias: &str, os: &str, platform: &str, arch: &str, family: &str| Image {
        id: id.to_string(),
        region: region.to_string(),
        name: name.to_string(),
        description: format!("{platform} {arch}"),
        status: "Available".into(),
        progress: 100,
        owner_alias: alias.to_string(),
        owner_id: if alias == "others" { OTHER_ACCOUNT.to_string() } else { String::new() },
        os_type: os.to_string(),
        os_name: name.to_string(),
        platform: platform.to_string(),
        architecture: arch.to_string(),
        boot_mode: if arch == "arm64" { "UEFI".into() } else { "BIOS".into() },
        license_type: "Auto".into(),
        family: family.to_string(),
        created: now - 86_400 * 30,
        disks: vec![DiskMapping {
            device: "/dev/xvda".into(),
            size_gib: 20,
            snapshot_id: format!("s-seed{}", &id[id.len().saturating_sub(12)..]),
            ..Default::default()
        }],
        shared_with: if alias == "others" { [account.to_string()].into() } else { Default::default() },
        ..Default::default()
    };
    vec![
        mk(
            "ubuntu_22_04_x64_20G_alibase_20240101.vhd",
            "ubuntu_22_04_x64_20G_alibase_20240101.vhd",
            "system",
            "linux",
            "Ubuntu",
            "x86_64",
            "acs:ubuntu_22_04_x64",
        ),
        mk(
            "ubuntu_22_04_arm64_20G_alibase_20240101.vhd",
            "ubuntu_22_04_arm64_20G_alibase_20240101.vhd",
            "system",
            "linux",
            "Ubuntu",
            "arm64",
            "acs:ubuntu_22_04_arm64",
        ),
        mk(
            "aliyun_3_x64_20G_alibase_20240101.vhd",
            "aliyun_3_x64_20G_alibase_20240101.vhd",
            "system",
            "linux",
            "Aliyun",
            "x86_64",
            "acs:alibaba_cloud_linux_3",
        ),
        mk(
            "centos_7_9_x64_20G_alibase_20240101.vhd",
            "centos_7_9_x64_20G_alibase_20240101.vhd",
            "system",
            "linux",
            "CentOS",
            "x86_64",
            "acs:centos_7_9_x64",
        ),
        mk(
            "win2022_21H2_x64_dtc_en-us_40G_alibase_20240101.vhd",
            "win2022_21H2_x64_dtc_en-us_40G_alibase_20240101.vhd",
            "system",
            "windows",
            "Windows Server 2022",
            "x86_64",
            "acs:windows_server_2022",
        ),
        mk("m-market0wordpress00001", "WordPress on Ubuntu 22.04", "marketplace", "linux", "Ubuntu", "x86_64", ""),
        mk("m-market0lamp000000002", "LAMP stack on CentOS 7", "marketplace", "linux", "CentOS", "x86_64", ""),
        mk(
            "m-shared0partner000001",
            "partner-hardened-debian-12",
            "others",
            "linux",
            "Debian",
            "x86_64",
            "partner-debian",
        ),
    ]
}

pub(super) fn image_json(i: &Image, account: &str) -> Value {
    let disks: Vec<Value> = i
        .disks
        .iter()
        .enumerate()
        .map(|(n, d)| {
            json!({
                "Device": d.device, "Size": d.size_gib.to_string(), "SnapshotId": d.snapshot_id,
                "Type": if n == 0 { "system" } else { "data" }, "Format": d.format,
                "ImportOSSBucket": d.bucket, "ImportOSSObject": d.object,
                "Progress": format!("{}%", i.progress), "RemainTime": 0,
            })
        })
        .collect();
    let tags: Vec<Value> = i.tags.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect();
    json!({
        "ImageId": i.id, "ImageName": i.name, "Description": i.description, "ImageOwnerAlias": i.owner_alias,
        "ImageOwnerId": if i.owner_alias == "self" { account.parse::<i64>().unwrap_or(0) }
            else { i.owner_id.parse::<i64>().unwrap_or(0) },
        "Status": i.status, "Progress": format!("{}%", i.progress), "OSType": i.os_type, "OSName": i.os_name,
        "OSNameEn": i.os_name, "Platform": i.platform, "Architecture": i.architecture, "BootMode": i.boot_mode,
        "LicenseType": i.license_type, "ImageFamily": i.family,
        "Size": i.disks.first().map_or(0, |d| d.size_gib), "CreationTime": iso(i.created),
        "IsSelfShared": if i.shared_with.is_empty() { "False" } else { "True" },
        "IsCopied": i.copied_from.is_some(), "IsPublic": i.owner_alias == "system", "IsSubscribed": false,
        "IsSupportIoOptimized": true, "IsSupportCloudinit": true, "Usage": "none",
        "ImageVersion": "", "ProductCode": if i.owner_alias == "marketplace" { "cmjj000001" } else { "" },
        "ResourceGroupId": "",
        "DiskDeviceMappings": {"DiskDeviceMapping": disks}, "Tags": {"Tag": tags},
        "DetectionOptions": match &i.detection {
            None if i.detection_requested => json!({"Status": "Processing", "Items": {"Item": []}}),
            None => json!({}),
            Some(items) => json!({"Status": "Finished", "Items": {"Item": items.iter().map(|(name, value, level)| json!({
                "Name": name, "Value": value, "RiskLevel": level, "RiskCode": name})).collect::<Vec<_>>()}}),
        },
    })
}

pub(super) fn describe_images(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let (page, size) = paging(params, 100)?;
    let statuses = list_param(params, "Status").unwrap_or_else(|| vec!["Available".into()]);
    let aliases = match params.get("ImageOwnerAlias").filter(|a| !a.is_empty()) {
        None => vec!["system", "self", "others"],
        Some(a @ ("system" | "self" | "others" | "marketplace")) => vec![a],
        Some(_) => {
            return Err(RpcError::invalid_parameter("ImageOwnerAlias", "The specified ImageOwnerAlias is not valid."))
        }
    };
    let ids = list_param(params, "ImageId");
    let name = params.get("ImageName").filter(|v| !v.is_empty()).map(str::to_ascii_lowercase);
    let eq = |field: &str, value: &str| {
        params.get(field).filter(|v| !v.is_empty()).is_none_or(|v| v.eq_ignore_ascii_case(value))
    };
    let tags = tag_filters(params);
    let db = inner.db();
    let found: Vec<&Image> = db
        .images
        .iter()
        .filter(|i| i.region == region)
        .filter(|i| i.owner_alias != "others" || i.shared_with.contains(&ctx.state.account_id))
        .filter(|i| aliases.contains(&i.owner_alias.as_str()))
        .filter(|i| statuses.iter().any(|s| s.eq_ignore_ascii_case(&i.status)))
        .filter(|i| ids.as_ref().is_none_or(|ids| ids.contains(&i.id)))
        .filter(|i| name.as_ref().is_none_or(|n| i.name.to_ascii_lowercase().contains(n)))
        .filter(|i| {
            params
                .get("SnapshotId")
                .filter(|v| !v.is_empty())
                .is_none_or(|s| i.disks.iter().any(|d| d.snapshot_id == s))
        })
        .filter(|i| eq("OSType", &i.os_type) && eq("Architecture", &i.architecture) && eq("ImageFamily", &i.family))
        .filter(|i| tags.iter().all(|(k, v)| i.tags.get(k).is_some_and(|have| v.as_ref().is_none_or(|v| v == have))))
        .collect();
    let total = found.len();
    let list: Vec<Value> = found
        .into_iter()
        .skip(((page - 1) * size) as usize)
        .take(size as usize)
        .map(|i| image_json(i, &ctx.state.account_id))
        .collect();
    Ok(
        json!({"RegionId": region, "PageNumber": page, "PageSize": size, "TotalCount": total, "Images": {"Image": list}}),
    )
}

pub(super) fn modify_attribute(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let id = params.require("ImageId")?;
    let mut db = inner.db();
    let new_name = params.get("ImageName").filter(|n| !n.is_empty()).map(str::to_string);
    if let Some(n) = &new_name {
        if !valid_name(n) {
            return Err(err(400, "InvalidImageName.Malformed", "The specified ImageName is wrongly formed."));
        }
        if db.images.iter().any(|i| i.region == region && i.owner_alias == "self" && &i.name == n && i.id != id) {
            return Err(err(
                400,
                "InvalidImageName.Duplicated",
                format!("The specified ImageName {n} already exists."),
            ));
        }
    }
    let i = own_image(&mut db, &region, id)?;
    if let Some(n) = new_name {
        i.name = n;
    }
    if let Some(d) = params.get("Description") {
        i.description = d.to_string();
    }
    if let Some(f) = params.get("ImageFamily") {
        i.family = f.to_string();
    }
    if let Some(b) = params.get("BootMode").filter(|b| !b.is_empty()) {
        if !["BIOS", "UEFI", "UEFI-Preferred"].contains(&b) {
            return Err(RpcError::invalid_parameter("BootMode", "The specified BootMode is not valid."));
        }
        i.boot_mode = b.to_string();
    }
    if let Some(s) = params.get("Status").filter(|s| !s.is_empty()) {
        if !["Available", "Deprecated"].contains(&s) {
            return Err(RpcError::invalid_parameter("Status", "The specified Status is not valid."));
        }
        i.status = s.to_string();
    }
    db.save()?;
    Ok(json!({}))
}

pub(super) fn delete_image(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let id = params.require("ImageId")?;
    let force = params.get("Force").is_some_and(|f| f.eq_ignore_ascii_case("true"));
    let mut db = inner.db();
    // Documented: "If the specified custom image does not exist, the request is ignored."
    if !db.images.iter().any(|i| i.id == id && i.region == region) {
        return Ok(json!({}));
    }
    let i = own_image(&mut db, &region, id)?;
    if IN_FLIGHT.contains(&i.status.as_str()) {
        return Err(err(403, "ImageIsImporting", "The specified Image is importing."));
    }
    let used = db.instances.iter().any(|n| n.image_id == id);
    let i = own_image(&mut db, &region, id)?;
    if used && !force {
        return Err(err(403, "ImageUsingByInstance", "The specified image has been used to create instances."));
    }
    if !i.shared_with.is_empty() && !force {
        return Err(err(403, "ImageUseShared", "The specified image has been shared to others."));
    }
    db.images.retain(|i| i.id != id);
    db.save()?;
    Ok(json!({}))
}
