//! The image catalogue: DescribeImages over seeded public, marketplace and shared images plus the account's own,
//! DescribeImageFromFamily, ModifyImageAttribute and DeleteImage.
//!
//! **DescribeImages filters.** Besides `ImageId`, `ImageName` (substring, any case), `SnapshotId`, `OSType`,
//! `Architecture`, `ImageFamily`, `Tag.N`, `Status` and `ImageOwnerAlias`:
//!
//! | parameter | meaning in the emulator | bad value |
//! |---|---|---|
//! | `Usage` (instance, none) | `instance` when an instance in the region has its system disk from the image (seeded instances, ReplaceSystemDisk) | 400 `InvalidParameter.Usage` |
//! | `ImageOwnerId` | the listed `ImageOwnerId`: the account's id for its images, the sharer's for shared ones, 0 for public and marketplace images | 400 `InvalidParameter.ImageOwnerId` (not an integer) |
//! | `IsPublic` | true: only public (`system`) images; false: all others | 400 `InvalidParameter.IsPublic` |
//! | `ShowExpired` | checked and otherwise ignored: the emulator has no expired public images | 400 `InvalidParameter.ShowExpired` |
//! | `Filter.N.Key` CreationStartTime / CreationEndTime, `Filter.N.Value` `yyyy-MM-ddTHH:mmZ` (or with seconds) | `CreationTime` within the bounds, both inclusive; a minute-precision end covers its whole minute | 400 `InvalidParameter.Filter` (another key, or a time that does not parse) |
//!
//! The error codes for bad values are the emulator's choice (the reference names none). Each image carries the
//! fields the SDK (alibabacloud-ecs20140526 7.11.8) models: `Usage` as above, `Usable` (true only for an Available
//! image, the emulator's reading: not while importing, copying or creating, not once CreateFailed or Deprecated),
//! `LoginAsNonRootSupported` (false), `SupplierName` (empty but for marketplace images), `Features` (every feature
//! `unsupported`, `ImdsSupport` v1: the emulator models none of them, but `NvmeSupport` answers what ImportImage's
//! `Features.NvmeSupport` declared), `ResourceGroupId` (ImportImage's, as given; a copy keeps its source's), `SecureBootOptions.SecureBootSupport`
//! (`supported` for UEFI images), and `DiskDeviceMappings.DiskDeviceMapping[].Format`: the format the import task
//! read the disk as (RAW, QCOW2, VHD, VMDK), whether or not the request declared one; before the task has read it,
//! the declared format (empty when none was declared); `DiskDeviceMappings.DiskDeviceMapping[].Encrypted` (true for
//! the disks of a copy made with `Encrypted=true`) and `SnapshotId` (empty until the image is Available, then the
//! disk's snapshot, see [`super::snapshots`]).
//!
//! **DescribeImageFromFamily** (`RegionId`, `ImageFamily`, both required: 400 `InvalidRegionId.NotFound`, the gateway's
//! 400 missing-parameter error) answers `{"Image": {...}}` with the newest Available custom image of the account in the
//! family, or `{"Image": {}}` when there is none (documented: "If no available image exists ..., the response is
//! empty"). Newest means the largest `CreationTime`; of images with equal `CreationTime`, the one whose ImportImage
//! or CopyImage request came later wins. Images still importing or copying, CreateFailed and Deprecated images are
//! never the answer. **Differs:** ECS also resolves families of public (`acs:...`), community and shared images;
//! the emulator answers for the account's own images only, so a public or shared family answers empty.
//!
//! **Image families.** `ImageFamily` is set with ModifyImageAttribute only: ImportImage documents no `ImageFamily`
//! (SDK 7.11.8 has none) and the emulator ignores one sent anyway, as it does any unknown parameter; CopyImage
//! documents no `DestinationImageFamily` and the copy keeps the source's family. A family is 2-128 characters,
//! starts with a letter, holds only letters, digits, `.`, `:`, `_` and `-`, does not start with `aliyun` or `acs:`
//! (compared in any case, the emulator's reading) and contains no `http://` or `https://`; anything else answers
//! 400 `InvalidImageFamily.Malformed` (a code the emulator chose). An empty `ImageFamily` leaves the family as it is.
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
//! | `Description` is 2-256 characters and not a URL | 400 `InvalidDescription.Malformed` |
//! | `BootMode` is BIOS, UEFI or UEFI-Preferred | 400 `InvalidParameter.BootMode` |
//! | `ImageFamily` is well formed (see Image families) | 400 `InvalidImageFamily.Malformed` |
//! | `Status` is Available or Deprecated | 400 `InvalidParameter.Status` |
//! | `Status=Deprecated`: the image is Available (or already Deprecated) | 403 `ImageStatus.NotAvailable` |
//! | `Status=Deprecated`: the image is not shared (unshare it first) | 403 `ImageUseShared` |
//! | `Status=Available`: the image is Deprecated (or already Available) | 403 `ImageStatus.NotDeprecated` |
//!
//! So only Available <-> Deprecated moves: a CreateFailed image stays CreateFailed. A Deprecated image is left out
//! of the default listing, cannot be shared or copied (`IncorrectImageStatus`) and still serves ReplaceSystemDisk.
//!
//! **DeleteImage**: a missing image is ignored (as documented); an import in flight answers 403 `ImageIsImporting`,
//! a copy in flight 403 `OperationDenied.ImageCopying` (cancel it with CancelCopyImage), a CreateImage in flight
//! 403 `ImageIsCreating`; an image used by an instance, shared, or the source of a copy still Waiting or Creating
//! needs `Force=true` (403 `ImageUsingByInstance` / `ImageUseShared` / `OperationDenied.ImageCopying`, "the source
//! image is being copied" in the error table; the docs give `Force` for instances only, the emulator extends it to
//! the other two as the reference's retention rules read, and a copy whose source is force-deleted ends
//! CreateFailed); `DryRun=true` answers `DryRunOperation` after these checks and deletes nothing. The image's
//! snapshots stay (documented): they are no longer used by it and DeleteSnapshot can remove them.

use super::{
    description_param, dry_run, err, family_param, list_param, own_image, paging, region, tag_filters, valid_name,
    DiskMapping, Image, ALL_STATUSES, BOOT_MODES, IN_FLIGHT,
};
use crate::rpc::{Params, RpcContext, RpcError, RpcResult};
use crate::services::{iso, Db, Inner};
use imgport_auth::time::parse_iso8601;
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

/// `Usage`: `instance` when an instance in the image's region runs on it (its system disk was made from it),
/// `none` otherwise.
fn usage(db: &Db, i: &Image) -> &'static str {
    if db.instances.iter().any(|n| n.region == i.region && n.image_id == i.id) {
        "instance"
    } else {
        "none"
    }
}

/// The `ImageOwnerId` the account sees: its own id for its images, the sharer's for shared ones, 0 for Alibaba
/// Cloud's public and marketplace images.
fn owner_id(i: &Image, account: &str) -> i64 {
    let id = if i.owner_alias == "self" { account } else { i.owner_id.as_str() };
    id.parse::<i64>().unwrap_or(0)
}

pub(super) fn image_json(i: &Image, account: &str, usage: &str) -> Value {
    let disks: Vec<Value> = i
        .disks
        .iter()
        .enumerate()
        .map(|(n, d)| {
            json!({
                "Device": d.device, "Size": d.size_gib.to_string(), "SnapshotId": d.snapshot_id,
                "Type": if n == 0 { "system" } else { "data" }, "Format": d.format, "Encrypted": d.encrypted,
                "ImportOSSBucket": d.bucket, "ImportOSSObject": d.object,
                "Progress": format!("{}%", i.progress), "RemainTime": 0,
            })
        })
        .collect();
    let tags: Vec<Value> = i.tags.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect();
    // The emulator models none of these features: every image reports them unsupported (IMDS v1 only), but for
    // the NVMe support an import declared.
    let nvme = if i.nvme_support.is_empty() { "unsupported" } else { i.nvme_support.as_str() };
    let features = json!({"NvmeSupport": nvme, "ImdsSupport": "v1", "CpuOnlineUpgrade": "unsupported",
        "CpuOnlineDowngrade": "unsupported", "MemoryOnlineUpgrade": "unsupported",
        "MemoryOnlineDowngrade": "unsupported"});
    let secure_boot = json!({"SecureBootSupport": if i.boot_mode == "BIOS" { "unsupported" } else { "supported" }});
    let mut out = json!({
        "ImageId": i.id, "ImageName": i.name, "Description": i.description, "ImageOwnerAlias": i.owner_alias,
        "ImageOwnerId": owner_id(i, account),
        "Status": i.status, "Progress": format!("{}%", i.progress), "OSType": i.os_type, "OSName": i.os_name,
        "OSNameEn": i.os_name, "Platform": i.platform, "Architecture": i.architecture, "BootMode": i.boot_mode,
        "LicenseType": i.license_type, "ImageFamily": i.family,
        "Size": i.disks.first().map_or(0, |d| d.size_gib), "CreationTime": iso(i.created),
        "IsSelfShared": if i.shared_with.is_empty() { "False" } else { "True" },
        "IsCopied": i.copied_from.is_some(), "IsPublic": i.owner_alias == "system", "IsSubscribed": false,
        "IsSupportIoOptimized": true, "IsSupportCloudinit": true, "Usage": usage,
        "ImageVersion": "", "ProductCode": if i.owner_alias == "marketplace" { "cmjj000001" } else { "" },
        "ResourceGroupId": i.resource_group_id,
        "DiskDeviceMappings": {"DiskDeviceMapping": disks}, "Tags": {"Tag": tags},
        "DetectionOptions": match &i.detection {
            None if i.detection_requested => json!({"Status": "Processing", "Items": {"Item": []}}),
            None => json!({}),
            Some(items) => json!({"Status": "Finished", "Items": {"Item": items.iter().map(|(name, value, level)| json!({
                "Name": name, "Value": value, "RiskLevel": level, "RiskCode": name})).collect::<Vec<_>>()}}),
        },
    });
    if let Value::Object(m) = &mut out {
        // The emulator's reading of `Usable` (the docs give no rule): the image can start new instances now,
        // so only an Available image is usable (not one still in flight, failed or Deprecated).
        m.insert("Usable".into(), json!(i.status == "Available"));
        m.insert("LoginAsNonRootSupported".into(), json!(false));
        let supplier = if i.owner_alias == "marketplace" { "Alibaba Cloud Marketplace" } else { "" };
        m.insert("SupplierName".into(), json!(supplier));
        m.insert("Features".into(), features);
        m.insert("SecureBootOptions".into(), secure_boot);
    }
    out
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
    let usage_filter = match params.get("Usage").filter(|u| !u.is_empty()) {
        None => None,
        Some(u @ ("instance" | "none")) => Some(u),
        Some(_) => return Err(RpcError::invalid_parameter("Usage", "The specified Usage is not valid.")),
    };
    let owner_filter = match params.get("ImageOwnerId").filter(|o| !o.is_empty()) {
        None => None,
        Some(o) => Some(
            o.parse::<i64>()
                .map_err(|_| RpcError::invalid_parameter("ImageOwnerId", "The specified ImageOwnerId is not valid."))?,
        ),
    };
    let public = bool_param(params, "IsPublic")?;
    // Accepted and checked; the emulator has no expired (end-of-life) public images to show or hide.
    bool_param(params, "ShowExpired")?;
    let (start, end) = creation_window(params)?;
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
        .filter(|i| usage_filter.is_none_or(|u| usage(&db, i) == u))
        .filter(|i| owner_filter.is_none_or(|o| owner_id(i, &ctx.state.account_id) == o))
        .filter(|i| public.is_none_or(|p| (i.owner_alias == "system") == p))
        .filter(|i| start.is_none_or(|t| i.created >= t) && end.is_none_or(|t| i.created <= t))
        .collect();
    // No documented order: by ImageId, which says nothing about creation time (see the module docs).
    found.sort_by(|a, b| a.id.cmp(&b.id));
    let total = found.len();
    let list: Vec<Value> = found
        .into_iter()
        .skip(((page - 1) * size) as usize)
        .take(size as usize)
        .map(|i| image_json(i, &ctx.state.account_id, usage(&db, i)))
        .collect();
    Ok(
        json!({"RegionId": region, "PageNumber": page, "PageSize": size, "TotalCount": total, "Images": {"Image": list}}),
    )
}

/// A boolean parameter (`true`/`false`, any case): `None` when absent or empty, `InvalidParameter.NAME` otherwise.
fn bool_param(params: &Params, name: &str) -> Result<Option<bool>, RpcError> {
    match params.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(RpcError::invalid_parameter(name, format!("The specified {name} is not a boolean."))),
    }
}

/// `Filter.N.Key` CreationStartTime / CreationEndTime with `Filter.N.Value` in UTC, `yyyy-MM-ddTHH:mmZ` as
/// documented (seconds accepted too): both bounds inclusive, a minute-precision end covering its whole minute. Another key, or a time that does not parse, answers
/// 400 `InvalidParameter.Filter` (a code the emulator chose).
fn creation_window(params: &Params) -> Result<(Option<i64>, Option<i64>), RpcError> {
    // (time, whether the value had minute precision only)
    let parse = |v: &str| {
        parse_iso8601(v)
            .map(|t| (t, false))
            .or_else(|| v.strip_suffix('Z').and_then(|m| parse_iso8601(&format!("{m}:00Z"))).map(|t| (t, true)))
    };
    let (mut start, mut end) = (None, None);
    for (_, f) in params.indexed("Filter") {
        let key = f.get("Key").map(String::as_str).unwrap_or("");
        let value = f.get("Value").map(String::as_str).unwrap_or("");
        let bad = || RpcError::invalid_parameter("Filter", format!("The filter {key}={value} is not valid."));
        let (t, minute) = match key {
            "CreationStartTime" | "CreationEndTime" => parse(value).ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        if key == "CreationStartTime" {
            start = Some(t);
        } else {
            // A minute-precision end bound covers its whole minute.
            end = Some(if minute { t + 59 } else { t });
        }
    }
    Ok((start, end))
}

/// DescribeImageFromFamily: the newest (by `CreationTime`) Available custom image of the account in the family, or
/// an empty `Image` when there is none. Ties are broken by request order: of images with the same `CreationTime`, the
/// one whose ImportImage or CopyImage came later wins.
pub(super) fn describe_image_from_family(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let family = params.require("ImageFamily")?;
    let db = inner.db();
    // `db.images` is in request order, so `max_by_key` (the last of equal maxima) breaks ties by request order.
    let newest = db
        .images
        .iter()
        .filter(|i| i.region == region && i.owner_alias == "self" && i.status == "Available" && i.family == family)
        .max_by_key(|i| i.created);
    let image = newest.map_or_else(|| json!({}), |i| image_json(i, &ctx.state.account_id, usage(&db, i)));
    Ok(json!({"Image": image}))
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
    let description = description_param(params, "Description")?;
    let boot_mode = params.get("BootMode").filter(|b| !b.is_empty());
    if boot_mode.is_some_and(|b| !BOOT_MODES.contains(&b)) {
        return Err(RpcError::invalid_parameter("BootMode", "The specified BootMode is not valid."));
    }
    let family = family_param(params)?;
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
        i.description = d;
    }
    if let Some(f) = family {
        i.family = f;
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
        if i.task_id.is_none() {
            return Err(err(403, "ImageIsCreating", "The specified image is being created."));
        }
        return Err(err(403, "ImageIsImporting", "The specified Image is importing."));
    }
    let used = db.instances.iter().any(|n| n.image_id == id);
    let copying =
        db.images.iter().any(|c| c.copied_from.as_deref() == Some(id) && IN_FLIGHT.contains(&c.status.as_str()));
    let i = own_image(&mut db, &region, id)?;
    if used && !force {
        return Err(err(403, "ImageUsingByInstance", "The specified image has been used to create instances."));
    }
    if !i.shared_with.is_empty() && !force {
        return Err(err(403, "ImageUseShared", "The specified image has been shared to others."));
    }
    if copying && !force {
        return Err(err(403, "OperationDenied.ImageCopying", "The Image is coping."));
    }
    dry_run(params)?;
    db.images.retain(|i| i.id != id);
    db.save()?;
    Ok(json!({}))
}
