//! The image catalogue: DescribeImages over seeded public, marketplace and shared images plus the account's own,
//! ModifyImageAttribute and DeleteImage.
//!
//! **DescribeImages.** `Status` is a comma list (default `Available`); `ALL` asks for every status (Creating,
//! Waiting, Available, UnAvailable, CreateFailed, Deprecated) and, as documented, cannot be combined with other
//! values (400 `InvalidParameter.Status`, a code the emulator chose: the reference names none). `DryRun=true` answers 400
//! `DryRunOperation` once the parameters pass. **Order:** ECS documents no order for DescribeImages (no sort
//! parameter; "do not rely on the order of results"), so the emulator returns matches sorted by `ImageId`. Image ids
//! are random, so this order has nothing to do with `CreationTime`: a client that takes "the first N" as "the
//! newest N" fails against the emulator instead of passing by luck, and the order is still stable from one page to
//! the next. Clients must sort by `CreationTime` themselves, and must expect equal times. `CreationTime` comes from
//! the server's clock at the request, unless a `creation_time` fault rule (`at` or `offset_seconds`) hit the
//! ImportImage or CopyImage that created the image: that is how tests create images with equal and out-of-order
//! creation times.
//!
//! **ModifyImageAttribute** (own images only, 404 `InvalidImageId.NotFound` otherwise) checks everything before it
//! changes anything, then answers `DryRunOperation` under `DryRun=true`:
//!
//! | check | answer |
//! |---|---|
//! | the image is not being imported or copied (Waiting, Creating) | 403 `InvalidStatus.ImageIsCreating` |
//! | `ImageName` is well formed and not another own image's name in the region | 400 `InvalidImageName.Malformed` / `.Duplicated` |
//! | `Description` is at most 256 characters and not a URL | 400 `InvalidDescription.Malformed` |
//! | `BootMode` is BIOS, UEFI or UEFI-Preferred | 400 `InvalidParameter.BootMode` |
//! | `Status` is Available or Deprecated | 400 `InvalidParameter.Status` |
//! | `Status=Deprecated`: the image is Available (or already Deprecated) | 403 `ImageStatus.NotAvailable` |
//! | `Status=Deprecated`: the image is not shared (unshare it first) | 403 `ImageUseShared` |
//! | `Status=Available`: the image is Deprecated (or already Available) | 403 `ImageStatus.NotDeprecated` |
//!
//! So only Available <-> Deprecated moves: a CreateFailed image stays CreateFailed. A Deprecated image is left out
//! of the default listing, cannot be shared or copied (`IncorrectImageStatus`) and still serves ReplaceSystemDisk.
//!
//! **DeleteImage**: a missing image is ignored (as documented); an import in flight answers 403 `ImageIsImporting`,
//! a copy in flight 403 `OperationDenied.ImageCopying` (cancel it with CancelCopyImage); an image used by an
//! instance or shared needs `Force=true` (403 `ImageUsingByInstance` / `ImageUseShared`); `DryRun=true` answers
//! `DryRunOperation` after these checks and deletes nothing.

use super::{
    dry_run, err, list_param, own_image, paging, region, tag_filters, valid_name, DiskMapping, Image, ALL_STATUSES,
    IN_FLIGHT,
};
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
    let mut statuses = list_param(params, "Status").unwrap_or_else(|| vec!["Available".into()]);
    if statuses.iter().any(|s| s.eq_ignore_ascii_case("ALL")) {
        if statuses.len() > 1 {
            return Err(RpcError::invalid_parameter("Status", "ALL cannot be used together with other status values."));
        }
        statuses = ALL_STATUSES.iter().map(|s| s.to_string()).collect();
    }
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
    dry_run(params)?;
    let db = inner.db();
    let mut found: Vec<&Image> = db
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
    // No documented order: by ImageId, which says nothing about creation time (see the module docs).
    found.sort_by(|a, b| a.id.cmp(&b.id));
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
    let taken =
        |n: &str| db.images.iter().any(|i| i.region == region && i.owner_alias == "self" && i.name == n && i.id != id);
    let name_taken = new_name.as_deref().is_some_and(taken);
    let i = own_image(&mut db, &region, id)?;
    // Every check first: a refused (or dry) request changes nothing.
    if IN_FLIGHT.contains(&i.status.as_str()) {
        return Err(err(
            403,
            "InvalidStatus.ImageIsCreating",
            "The operation cannot be performed because the image is creating. Please wait until the creation is complete and try again.",
        ));
    }
    if let Some(n) = &new_name {
        if !valid_name(n) {
            return Err(err(400, "InvalidImageName.Malformed", "The specified ImageName is wrongly formed."));
        }
        if name_taken {
            return Err(err(
                400,
                "InvalidImageName.Duplicated",
                format!("The specified ImageName {n} already exists."),
            ));
        }
    }
    let description = params.get("Description").filter(|d| !d.is_empty());
    if description.is_some_and(|d| d.chars().count() > 256 || d.starts_with("http://") || d.starts_with("https://")) {
        return Err(err(400, "InvalidDescription.Malformed", "The specified description is wrongly formed."));
    }
    let boot_mode = params.get("BootMode").filter(|b| !b.is_empty());
    if boot_mode.is_some_and(|b| !["BIOS", "UEFI", "UEFI-Preferred"].contains(&b)) {
        return Err(RpcError::invalid_parameter("BootMode", "The specified BootMode is not valid."));
    }
    let status = params.get("Status").filter(|s| !s.is_empty());
    if let Some(s) = status {
        // Only Available <-> Deprecated (a repeated state is accepted as is).
        let movable = ["Available", "Deprecated"].contains(&i.status.as_str());
        match s {
            "Deprecated" if !movable => {
                return Err(err(403, "ImageStatus.NotAvailable", "The specified image status is not available."))
            }
            "Deprecated" if !i.shared_with.is_empty() => {
                return Err(err(
                    403,
                    "ImageUseShared",
                    "The specified image has been shared to others, please remove shared accounts first.",
                ))
            }
            "Available" if !movable => {
                return Err(err(403, "ImageStatus.NotDeprecated", "The specified image status is not deprecated."))
            }
            "Available" | "Deprecated" => {}
            _ => return Err(RpcError::invalid_parameter("Status", "The specified Status is not valid.")),
        }
    }
    dry_run(params)?;
    if let Some(n) = new_name {
        i.name = n;
    }
    if let Some(d) = description {
        i.description = d.to_string();
    }
    if let Some(f) = params.get("ImageFamily") {
        i.family = f.to_string();
    }
    if let Some(b) = boot_mode {
        i.boot_mode = b.to_string();
    }
    if let Some(s) = status {
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
        dry_run(params)?;
        return Ok(json!({}));
    }
    let i = own_image(&mut db, &region, id)?;
    if IN_FLIGHT.contains(&i.status.as_str()) {
        if i.copied_from.is_some() {
            return Err(err(
                403,
                "OperationDenied.ImageCopying",
                "The image is being copied. Please use the CancelCopyImage API.",
            ));
        }
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
    dry_run(params)?;
    db.images.retain(|i| i.id != id);
    db.save()?;
    Ok(json!({}))
}
