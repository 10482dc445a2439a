//! ECS images: ImportImage (checked up front like the real API, then read in the background with imgport's disk
//! engine), DescribeImages over a seeded catalogue, tasks, copy, share, attributes, tags and delete.

use super::ram::IMPORT_POLICY;
use super::{iso, new_id, Detection, DiskMapping, Image, Inner, Instance, Task};
use crate::oss::store::StoreError;
use crate::rpc::{Params, RpcContext, RpcError, RpcResult};
use crate::state::EmulatorState;
use imgport_disk::Format;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const GIB: u64 = 1 << 30;
const OTHER_ACCOUNT: &str = "9876543210987654";
const IN_FLIGHT: [&str; 2] = ["Waiting", "Creating"];
/// A custom image can be shared with at most this many accounts.
const MAX_SHARED_ACCOUNTS: usize = 50;

fn err(status: u16, code: &str, message: impl Into<String>) -> RpcError {
    RpcError::new(status, code, message)
}

fn no_image(id: &str) -> RpcError {
    err(404, "InvalidImageId.NotFound", format!("The specified ImageId {id} does not exist."))
}

pub(crate) fn handle(inner: &Arc<Inner>, ctx: &RpcContext, action: &str, params: &Params) -> RpcResult {
    match action {
        "DescribeRegions" => Ok(json!({"Regions": {"Region": ctx.state.regions.iter().map(|r| json!({
            "RegionId": r, "LocalName": r, "RegionEndpoint": ctx.host, "Status": "available"})).collect::<Vec<_>>()}})),
        "ImportImage" => import_image(inner, ctx, params),
        "DescribeImages" => describe_images(inner, ctx, params),
        "DescribeTasks" => describe_tasks(inner, ctx, params),
        "DescribeTaskAttribute" => describe_task_attribute(inner, ctx, params),
        "CancelTask" => cancel_task(inner, ctx, params),
        "DeleteImage" => delete_image(inner, ctx, params),
        "CopyImage" => copy_image(inner, ctx, params),
        "ModifyImageSharePermission" => modify_share(inner, ctx, params),
        "DescribeImageSharePermission" => describe_share(inner, ctx, params),
        "ModifyImageAttribute" => modify_attribute(inner, ctx, params),
        "TagResources" => tag_resources(inner, ctx, params, true),
        "UntagResources" => tag_resources(inner, ctx, params, false),
        "ListTagResources" => list_tag_resources(inner, ctx, params),
        "DescribeInstances" => describe_instances(inner, ctx, params),
        "StopInstance" => set_instance_status(inner, ctx, params, "Running", "Stopped"),
        "StartInstance" => set_instance_status(inner, ctx, params, "Stopped", "Running"),
        "ReplaceSystemDisk" => replace_system_disk(inner, ctx, params),
        _ => Err(RpcError::action_not_found()),
    }
}

fn region(ctx: &RpcContext, params: &Params, name: &str) -> Result<String, RpcError> {
    let r = params.require(name)?;
    if !ctx.state.serves_region(r) {
        // Documented as 400 for every Images and Tasks operation (ImportImage, CancelTask, ModifyImageSharePermission).
        return Err(err(400, "InvalidRegionId.NotFound", format!("The specified {name} {r} does not exist.")));
    }
    Ok(r.to_string())
}

fn valid_name(name: &str) -> bool {
    let n = name.chars().count();
    let first = name.chars().next().is_some_and(|c| c.is_alphabetic());
    let lower = name.to_ascii_lowercase();
    (2..=128).contains(&n)
        && first
        && !lower.starts_with("aliyun")
        && !lower.starts_with("acs:")
        && !lower.starts_with("http://")
        && !lower.starts_with("https://")
        && name.chars().all(|c| c.is_alphanumeric() || "-_.:,()[] ".contains(c))
}

/// The seeded catalogue: public images, marketplace images and one image another account shares with us.
pub(crate) fn seed(region: &str, now: i64, account: &str) -> Vec<Image> {
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

/// Seeds the catalogue on first start, then restarts the imports and copies a restart interrupted (they begin
/// again from Waiting, as a re-queued task does).
pub(crate) fn resume(inner: &Arc<Inner>) {
    let mut db = inner.db();
    if !db.images.iter().any(|i| i.owner_alias == "system") {
        let now = inner.state.now();
        for r in &inner.state.regions {
            let s = seed(r, now, &inner.state.account_id);
            db.images.extend(s);
        }
        for r in &inner.state.regions {
            for (n, status) in [(1, "Running"), (2, "Stopped")] {
                db.instances.push(Instance {
                    id: new_id("i-"),
                    region: r.clone(),
                    name: format!("seed-instance-{n}"),
                    status: status.into(),
                    image_id: "ubuntu_22_04_x64_20G_alibase_20240101.vhd".into(),
                    instance_type: "ecs.g7.large".into(),
                    system_disk_id: new_id("d-"),
                    system_disk_gib: 40,
                    created: now,
                });
            }
        }
        let _ = db.save();
    }
    let pending: Vec<String> =
        db.images.iter().filter(|i| IN_FLIGHT.contains(&i.status.as_str())).map(|i| i.id.clone()).collect();
    for id in &pending {
        if let Some(i) = db.images.iter_mut().find(|i| &i.id == id) {
            i.status = "Waiting".into();
            i.progress = 0;
        }
    }
    drop(db);
    for id in pending {
        spawn_worker(inner.clone(), id);
    }
}

/// What the disk engine makes of an uploaded object.
struct Probe {
    format: Format,
    virtual_size: u64,
    boot_sector: bool,
    /// The guest checks' problems (check id, message, risk level), when asked for.
    detection: Option<Detection>,
}

/// What the client is told when the disk engine cannot open an object: the bucket and object, the kind of problem
/// and what to do, never a host path (the engine's errors name the files it opened: here a `/proc/self/fd` link
/// or a temporary file, and whatever files the image itself names).
fn open_failure(bucket: &str, key: &str, e: &imgport_disk::Error) -> String {
    use imgport_disk::ErrorKind as K;
    let object = format!("oss://{bucket}/{key}");
    match e.kind() {
        K::UnsupportedFeature if e.message().contains("extent file") => format!(
            "{object} is a VMDK descriptor that names extent files; an uploaded image must be one file (a \
             monolithicSparse or streamOptimized VMDK, or another format)"
        ),
        K::UnsupportedFeature => format!("{object} uses an image feature that cannot be imported"),
        K::InvalidFormat => format!("{object} is not a disk image in a supported format"),
        K::CorruptImage => format!("{object} is a damaged image"),
        _ => format!("{object} cannot be read"),
    }
}

/// Reads the object with the disk engine. The engine opens paths: a single-segment object is read through its
/// open file descriptor (no copy); a multipart object is joined into a temporary file first. The object is one
/// file: a VMDK descriptor naming extent files is refused without looking the names up, and no error text
/// names a host path.
fn probe(state: &EmulatorState, bucket: &str, key: &str, detect: bool) -> Result<Probe, String> {
    let unreadable = || format!("oss://{bucket}/{key} cannot be read");
    let data = state.store.open_object(bucket, key).map_err(|_| unreadable())?;
    let (_, mut files) = data.into_files();
    let mut tmp = None;
    let path = if files.len() == 1 && std::path::Path::new("/proc/self/fd").is_dir() {
        use std::os::fd::AsRawFd;
        std::path::PathBuf::from(format!("/proc/self/fd/{}", files[0].0.as_raw_fd()))
    } else {
        let p = state.store.tmp_path();
        tmp = Some(p.clone());
        let copied = crate::util::create_private_file(&p)
            .and_then(|mut out| files.iter_mut().try_for_each(|(f, _)| std::io::copy(f, &mut out).map(drop)));
        if copied.is_err() {
            let _ = std::fs::remove_file(&p);
            return Err(unreadable());
        }
        p
    };
    let result = (|| {
        let options =
            imgport_disk::OpenOptions { extent_files: imgport_disk::ExtentFiles::Refuse, ..Default::default() };
        let image = imgport_disk::open(&path, &options).map_err(|e| open_failure(bucket, key, &e))?;
        let mut sector = [0u8; 512];
        let boot_sector = image.virtual_size() >= 512
            && image.read_at(&mut sector, 0).is_ok()
            && sector[510] == 0x55
            && sector[511] == 0xAA;
        let (format, virtual_size) = (image.details().format, image.virtual_size());
        // DetectionStrategy=Standard: the server-side image check, here imgport's own Alibaba validation.
        let detection = detect.then(|| {
            let options = imgport_validate::Options { target: imgport_validate::Target::Alibaba, file_size: None };
            match imgport_validate::validate(std::sync::Arc::from(image), &options) {
                Ok(report) => report
                    .findings
                    .iter()
                    .filter(|f| f.status == imgport_validate::Status::Fail)
                    .map(|f| {
                        let level = match f.severity {
                            imgport_validate::Severity::Error => "High",
                            imgport_validate::Severity::Warning => "Medium",
                            imgport_validate::Severity::Info => "Low",
                        };
                        (f.id.to_string(), f.message.clone(), level.to_string())
                    })
                    .collect(),
                Err(_) => vec![(
                    "inspect".to_string(),
                    format!("oss://{bucket}/{key} could not be inspected"),
                    "High".to_string(),
                )],
            }
        });
        Ok(Probe { format, virtual_size, boot_sector, detection })
    })();
    drop(files);
    if let Some(p) = tmp {
        let _ = std::fs::remove_file(p);
    }
    result
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Raw => "RAW",
        Format::Qcow2 => "QCOW2",
        Format::Vhd => "VHD",
        Format::Vhdx => "VHDX",
        Format::Vmdk => "VMDK",
    }
}

/// The image an earlier request with this ClientToken created, for idempotent retries.
fn by_client_token(inner: &Inner, params: &Params, action: &str) -> Result<Option<Image>, RpcError> {
    let Some(token) = params.get("ClientToken").filter(|t| !t.is_empty()) else { return Ok(None) };
    if token.len() > 64 || !token.is_ascii() {
        return Err(RpcError::invalid_parameter("ClientToken", "The ClientToken is at most 64 ASCII characters."));
    }
    let db = inner.db();
    let found = db.images.iter().find(|i| {
        i.client_token.as_deref() == Some(token)
            && i.task_id.as_ref().is_some_and(|t| db.tasks.iter().any(|k| &k.id == t && k.action == action))
    });
    Ok(found.cloned())
}

fn dry_run(params: &Params) -> Result<(), RpcError> {
    if params.get("DryRun").is_some_and(|d| d.eq_ignore_ascii_case("true")) {
        return Err(err(400, "DryRunOperation", "Request validation has been passed with DryRun flag set."));
    }
    Ok(())
}

fn import_image(inner: &Arc<Inner>, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    if let Some(i) = by_client_token(inner, params, "ImportImage")? {
        return Ok(json!({"ImageId": i.id, "TaskId": i.task_id.unwrap_or_default(), "RegionId": i.region}));
    }
    let pick = |name: &str, allowed: &[&str], default: &str| -> Result<String, RpcError> {
        match params.get(name).filter(|v| !v.is_empty()) {
            None => Ok(default.to_string()),
            Some(v) => allowed.iter().find(|a| a.eq_ignore_ascii_case(v)).map(|a| a.to_string()).ok_or_else(|| {
                // ImportImage's documented codes: InvalidArchitecture.Malformed, InvalidOSType.Malformed,
                // InvalidBootMode.Malformed, InvalidLicenseType.NotSupported.
                let code = match name {
                    "LicenseType" => "InvalidLicenseType.NotSupported".to_string(),
                    _ => format!("Invalid{name}.Malformed"),
                };
                err(400, &code, format!("The specified {name} \"{v}\" is wrongly formed."))
            }),
        }
    };
    let architecture = pick("Architecture", &["x86_64", "i386", "arm64"], "x86_64")?;
    let os_type = pick("OSType", &["linux", "windows"], "linux")?;
    let boot_mode =
        pick("BootMode", &["BIOS", "UEFI", "UEFI-Preferred"], if architecture == "arm64" { "UEFI" } else { "BIOS" })?;
    if architecture == "arm64" && boot_mode == "BIOS" {
        return Err(err(400, "InvalidBootMode.NotSupport", "The arm64 architecture only supports the UEFI boot mode."));
    }
    let license = pick("LicenseType", &["Auto", "Aliyun", "BYOL"], "Auto")?;
    let platform = params.get("Platform").filter(|p| !p.is_empty()).unwrap_or("Others Linux").to_string();
    if os_type == "windows" && !platform.starts_with("Windows") || os_type == "linux" && platform.starts_with("Windows")
    {
        return Err(err(
            400,
            "InvalidPlatform.Malformed",
            "The specified Platform is wrongly formed (it does not match the OSType).",
        ));
    }
    let name = match params.get("ImageName").filter(|n| !n.is_empty()) {
        Some(n) if !valid_name(n) => {
            return Err(err(400, "InvalidImageName.Malformed", "The specified ImageName is wrongly formed."))
        }
        Some(n) => n.to_string(),
        None => format!("import-{}", crate::util::random_alnum(8).to_ascii_lowercase()),
    };
    if let Some(d) = params.get("Description").filter(|d| !d.is_empty()) {
        if d.chars().count() > 256 || d.starts_with("http://") || d.starts_with("https://") {
            return Err(err(400, "InvalidDescription.Malformed", "The specified Description is wrongly formed."));
        }
    }
    let mappings = params.indexed("DiskDeviceMapping");
    if mappings.is_empty() {
        return Err(RpcError::missing_parameter("DiskDeviceMapping.1.OSSBucket"));
    }
    if mappings.len() > 17 || mappings.keys().any(|n| *n == 0 || *n > 17) {
        return Err(RpcError::invalid_parameter("DiskDeviceMapping", "At most 17 disk device mappings (1..17)."));
    }
    let role = params.get("RoleName").filter(|r| !r.is_empty()).unwrap_or(super::IMPORT_ROLE);
    {
        let db = inner.db();
        let ok = db.role(role).is_some_and(|r| r.policies.iter().any(|(_, p, _)| p == IMPORT_POLICY));
        if !ok {
            return Err(err(
                403,
                "NoSetRoletoECSServiceAcount",
                "The specified ECS service account has not been authorized by RAM role AliyunECSImageImportDefaultRole.",
            ));
        }
    }
    let mut disks = Vec::new();
    for (i, (n, m)) in mappings.iter().enumerate() {
        let field = |f: &str| m.get(f).map(String::as_str).filter(|v| !v.is_empty());
        let bucket = field("OSSBucket")
            .ok_or_else(|| RpcError::missing_parameter(&format!("DiskDeviceMapping.{n}.OSSBucket")))?;
        let object = field("OSSObject")
            .ok_or_else(|| RpcError::missing_parameter(&format!("DiskDeviceMapping.{n}.OSSObject")))?;
        let format = match field("Format") {
            None => String::new(),
            Some(f) => ["RAW", "VHD", "QCOW2", "VMDK"]
                .iter()
                .find(|a| a.eq_ignore_ascii_case(f))
                .map(|a| a.to_string())
                .ok_or_else(|| {
                    err(400, "InvalidImageFormat.Malformed", format!("The image format {f} is not supported."))
                })?,
        };
        let (lo, hi, code) = if i == 0 { (1, 2048, "InvalidImageSize") } else { (1, 2048, "InvalidDataDiskSize") };
        let size_gib =
            match field("DiskImageSize") {
                None => None,
                Some(s) => Some(s.parse::<u64>().ok().filter(|v| (lo..=hi).contains(v)).ok_or_else(|| {
                    err(400, code, format!("The DiskImageSize {s} is out of the range {lo}..{hi} GiB."))
                })?),
            };
        let info = ctx.state.store.bucket(bucket).ok_or_else(|| {
            err(
                400,
                "InvalidOSSBucket.NotFound",
                format!("The specified OSS bucket {bucket} does not exist in this region."),
            )
        })?;
        if info.region != region {
            return Err(err(
                400,
                "InvalidOSSBucket.NotMatched",
                format!("The OSS bucket {bucket} is in {}, not in the image's region {region}.", info.region),
            ));
        }
        let meta = ctx.state.store.head_object(bucket, object).map_err(|e| match e {
            StoreError::NoSuchKey | StoreError::NoSuchBucket => err(
                400,
                "InvalidOSSObject.NotFound",
                format!("The specified OSS object {object} does not exist in this region."),
            ),
            _ => RpcError::internal(),
        })?;
        if meta.size == 0 {
            return Err(err(400, "InvalidOSSObject.Size", "The OSS object is empty."));
        }
        // The header checks a real import makes before queueing: the declared size must hold the disk, and a
        // VHD's virtual size must be a whole number of MiB.
        let mut size = size_gib.unwrap_or(0);
        if let Ok(p) = probe(&ctx.state, bucket, object, false) {
            if p.format == Format::Vhd && p.virtual_size % (1 << 20) != 0 {
                return Err(err(
                    400,
                    "InvalidVHDImage.IncorrectSize",
                    format!("The virtual size of the VHD image ({} bytes) is not a multiple of 1 MiB.", p.virtual_size),
                ));
            }
            let need = p.virtual_size.div_ceil(GIB).max(1);
            if size_gib.is_some_and(|s| s < need) {
                return Err(err(
                    400,
                    code,
                    format!("The DiskImageSize {size} GiB is smaller than the image's virtual size ({need} GiB)."),
                ));
            }
            if size == 0 {
                size = need;
            }
        }
        disks.push(DiskMapping {
            device: field("Device").map_or_else(|| format!("/dev/xvd{}", (b'a' + i as u8) as char), str::to_string),
            bucket: bucket.to_string(),
            object: object.to_string(),
            format,
            size_gib: size.max(1),
            snapshot_id: String::new(),
        });
    }
    let mut db = inner.db();
    if db.images.iter().any(|i| i.region == region && i.owner_alias == "self" && i.name == name) {
        return Err(err(400, "InvalidImageName.Duplicated", format!("The specified ImageName {name} already exists.")));
    }
    dry_run(params)?;
    let image_id = new_id("m-");
    let task_id = new_id("t-");
    let mut tags = std::collections::BTreeMap::new();
    for (_, t) in params.indexed("Tag") {
        if let Some(k) = t.get("Key").filter(|k| !k.is_empty()) {
            tags.insert(k.clone(), t.get("Value").cloned().unwrap_or_default());
        }
    }
    db.images.push(Image {
        id: image_id.clone(),
        region: region.clone(),
        name,
        description: params.get("Description").unwrap_or("").to_string(),
        status: "Waiting".into(),
        progress: 0,
        owner_alias: "self".into(),
        owner_id: ctx.state.account_id.clone(),
        os_type,
        os_name: platform.clone(),
        platform,
        architecture,
        boot_mode,
        license_type: license,
        created: ctx.now,
        disks,
        tags,
        task_id: Some(task_id.clone()),
        forced_failure: ctx.create_failed.clone(),
        detection_requested: params.get("DetectionStrategy").is_some_and(|d| d.eq_ignore_ascii_case("Standard")),
        client_token: params.get("ClientToken").filter(|t| !t.is_empty()).map(str::to_string),
        ..Default::default()
    });
    queue_task(
        inner,
        db,
        ctx,
        Task { id: task_id.clone(), region: region.clone(), ..Default::default() },
        "ImportImage",
        &image_id,
    )?;
    Ok(json!({"ImageId": image_id, "TaskId": task_id, "RegionId": region}))
}

/// Records `task` (id and region set) as a waiting `action` on `image_id` and starts the worker that moves it on.
fn queue_task(
    inner: &Arc<Inner>,
    mut db: std::sync::MutexGuard<'_, super::Db>,
    ctx: &RpcContext,
    task: Task,
    action: &str,
    image_id: &str,
) -> Result<(), RpcError> {
    db.tasks.push(Task {
        action: action.into(),
        image_id: image_id.to_string(),
        status: "Waiting".into(),
        created: ctx.now,
        ..task
    });
    db.save()?;
    drop(db);
    spawn_worker(inner.clone(), image_id.to_string());
    Ok(())
}

fn spawn_worker(inner: Arc<Inner>, image_id: String) {
    let _ = std::thread::Builder::new().name("imgport-emulator-import".into()).spawn(move || work(&inner, &image_id));
}

/// Applies a change to the image and its task; false when either is gone or the task was cancelled.
fn update(inner: &Inner, image_id: &str, f: impl FnOnce(&mut Image, &mut Task)) -> bool {
    let mut db = inner.db();
    let Some(ii) = db.images.iter().position(|i| i.id == image_id) else { return false };
    let Some(task_id) = db.images[ii].task_id.clone() else { return false };
    let Some(ti) = db.tasks.iter().position(|t| t.id == task_id) else { return false };
    if !["Waiting", "Processing"].contains(&db.tasks[ti].status.as_str()) {
        return false;
    }
    let mut image = db.images[ii].clone();
    let mut task = db.tasks[ti].clone();
    f(&mut image, &mut task);
    db.images[ii] = image;
    db.tasks[ti] = task;
    let _ = db.save();
    true
}

/// The background import or copy: Waiting, then Creating with Progress rising, then Available or CreateFailed.
fn work(inner: &Arc<Inner>, image_id: &str) {
    let step = Duration::from_secs_f64((inner.settings.import_seconds.max(0.0) / 10.0).min(3600.0));
    let (action, region, disks, copied_from, forced) = {
        let db = inner.db();
        let Some(i) = db.images.iter().find(|i| i.id == image_id) else { return };
        let action = db.tasks.iter().find(|t| Some(&t.id) == i.task_id.as_ref()).map(|t| t.action.clone());
        (action.unwrap_or_default(), i.region.clone(), i.disks.clone(), i.copied_from.clone(), i.forced_failure.clone())
    };
    // Copies into one region run one at a time, as the real service queues them.
    let queue = (action == "CopyImage").then(|| {
        let mut q = inner.copy_queue.lock().unwrap_or_else(|p| p.into_inner());
        q.entry(region.clone()).or_default().clone()
    });
    let _turn = queue.as_ref().map(|q| q.lock().unwrap_or_else(|p| p.into_inner()));
    std::thread::sleep(step);
    if !update(inner, image_id, |i, t| {
        i.status = "Creating".into();
        i.progress = 5;
        t.status = "Processing".into();
        t.progress = 5;
    }) {
        return;
    }
    let mut failure = forced;
    if failure.is_none() && action == "ImportImage" {
        let detect = inner.db().images.iter().any(|i| i.id == image_id && i.detection_requested);
        let (f, detection) = check_disks(&inner.state, &disks, detect);
        failure = f;
        if detection.is_some() {
            update(inner, image_id, |i, _| i.detection = detection);
        }
    }
    if failure.is_none() && action == "CopyImage" {
        let source_ok = copied_from
            .as_ref()
            .is_some_and(|s| inner.db().images.iter().any(|i| &i.id == s && i.status == "Available"));
        if !source_ok {
            failure = Some("InvalidImageId.NotFound: the source image was deleted during the copy".into());
        }
    }
    for p in 1..=8u32 {
        std::thread::sleep(step);
        if !update(inner, image_id, |i, t| {
            i.progress = p * 11;
            t.progress = p * 11;
        }) {
            return;
        }
    }
    std::thread::sleep(step);
    let now = inner.state.now();
    update(inner, image_id, |i, t| {
        t.finished = Some(now);
        match &failure {
            Some(reason) => {
                i.status = "CreateFailed".into();
                i.failure = Some(reason.clone());
                t.status = "Failed".into();
                t.failure = Some(reason.clone());
            }
            None => {
                i.status = "Available".into();
                i.progress = 100;
                t.status = "Finished".into();
                t.progress = 100;
                for d in &mut i.disks {
                    d.snapshot_id = new_id("s-");
                }
            }
        }
    });
}

/// What a real import would fail on, read from the uploaded objects (`CODE: message`); also returns the system disk's detection results when `detect`.
fn check_disks(state: &EmulatorState, disks: &[DiskMapping], detect: bool) -> (Option<String>, Option<Detection>) {
    let mut detection = None;
    let failure = (|| {
        for (n, d) in disks.iter().enumerate() {
            let p = match probe(state, &d.bucket, &d.object, detect && n == 0) {
                Ok(p) => p,
                Err(e) => return Some(format!("InvalidImageFormat.Malformed: {e}")),
            };
            if n == 0 {
                detection = p.detection.clone();
            }
            if let Some(f) = disk_problem(n, d, &p) {
                return Some(f);
            }
        }
        None
    })();
    (failure, detection)
}

/// What a real import fails on for one disk; `CODE: message`.
fn disk_problem(n: usize, d: &DiskMapping, p: &Probe) -> Option<String> {
    let detected = format_name(p.format);
    if p.format == Format::Vhdx {
        return Some("InvalidImageFormat.Malformed: VHDX images are not supported; convert to VHD or QCOW2".into());
    }
    if !d.format.is_empty() && d.format != detected {
        return Some(format!(
            "InvalidImageFormat.Malformed: the image file is not {} (it reads as {detected})",
            d.format
        ));
    }
    if p.virtual_size > d.size_gib * GIB {
        return Some(format!(
            "InvalidImageSize: the image's virtual size ({} bytes) exceeds DiskImageSize {} GiB",
            p.virtual_size, d.size_gib
        ));
    }
    if n == 0 && !p.boot_sector {
        return Some(
            "ImportImageFailed: the system disk has no boot sector or partition table (no 0x55AA signature)".into(),
        );
    }
    None
}

fn image_json(i: &Image, account: &str) -> Value {
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

fn list_param(params: &Params, name: &str) -> Option<Vec<String>> {
    params
        .get(name)
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

fn paging(params: &Params, max: u64) -> Result<(u64, u64), RpcError> {
    let num = |name: &str, default: u64, hi: u64| -> Result<u64, RpcError> {
        match params.get(name).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=hi).contains(n))
                .ok_or_else(|| RpcError::invalid_parameter(name, format!("The specified {name} is not valid."))),
        }
    };
    Ok((num("PageNumber", 1, u32::MAX as u64)?, num("PageSize", 10, max)?))
}

fn tag_filters(params: &Params) -> Vec<(String, Option<String>)> {
    params
        .indexed("Tag")
        .into_values()
        .filter_map(|t| {
            let k = t.get("Key").filter(|k| !k.is_empty())?.clone();
            Some((k, t.get("Value").filter(|v| !v.is_empty()).cloned()))
        })
        .collect()
}

fn describe_images(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
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

fn task_json(t: &Task) -> Value {
    json!({
        "TaskId": t.id, "TaskAction": t.action, "TaskStatus": t.status, "SupportCancel": if IN_FLIGHT_TASK.contains(&t.status.as_str()) { "true" } else { "false" },
        "CreationTime": iso(t.created), "FinishedTime": t.finished.map(iso).unwrap_or_default(), "ResourceId": t.image_id,
    })
}

const IN_FLIGHT_TASK: [&str; 2] = ["Waiting", "Processing"];

fn describe_tasks(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let (page, size) = paging(params, 100)?;
    let ids = list_param(params, "TaskIds");
    let action = params.get("TaskAction").filter(|v| !v.is_empty());
    let status = params.get("TaskStatus").filter(|v| !v.is_empty());
    let db = inner.db();
    let found: Vec<&Task> = db
        .tasks
        .iter()
        .filter(|t| t.region == region)
        .filter(|t| ids.as_ref().is_none_or(|ids| ids.contains(&t.id)))
        .filter(|t| action.is_none_or(|a| a == t.action))
        .filter(|t| status.is_none_or(|s| s == t.status))
        .collect();
    let total = found.len();
    let list: Vec<Value> =
        found.into_iter().rev().skip(((page - 1) * size) as usize).take(size as usize).map(task_json).collect();
    Ok(
        json!({"RegionId": region, "PageNumber": page, "PageSize": size, "TotalCount": total, "TaskSet": {"Task": list}}),
    )
}

fn describe_task_attribute(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let id = params.require("TaskId")?;
    let db = inner.db();
    let t =
        db.tasks.iter().find(|t| t.id == id && t.region == region).ok_or_else(|| {
            err(400, "InvalidTaskId.NotFound", format!("The specified \"TaskId\" {id} is not found."))
        })?;
    let (code, msg) = match &t.failure {
        Some(f) => match f.split_once(": ") {
            Some((c, m)) => (c.to_string(), m.to_string()),
            None => ("ImportImageFailed".to_string(), f.clone()),
        },
        None => (String::new(), String::new()),
    };
    let mut v = task_json(t);
    if let Value::Object(m) = &mut v {
        m.insert("RegionId".into(), json!(region));
        m.insert("TaskProcess".into(), json!(format!("{}%", t.progress)));
        m.insert("TotalCount".into(), json!(1));
        m.insert("SuccessCount".into(), json!(u32::from(t.status == "Finished")));
        m.insert("FailedCount".into(), json!(u32::from(t.status == "Failed")));
        m.insert(
            "OperationProgressSet".into(),
            json!({"OperationProgress": [{
                "OperationStatus": match t.status.as_str() { "Finished" => "Success", "Failed" => "Failed", _ => "Processing" },
                "ErrorCode": code, "ErrorMsg": msg,
                "RelatedItemSet": {"RelatedItem": [{"Name": "ImageId", "Value": t.image_id}]},
            }]}),
        );
    }
    Ok(v)
}

fn cancel_task(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let id = params.require("TaskId")?;
    let mut db = inner.db();
    let t =
        db.tasks.iter_mut().find(|t| t.id == id && t.region == region).ok_or_else(|| {
            err(400, "InvalidTaskId.NotFound", format!("The specified \"TaskId\" {id} is not found."))
        })?;
    if !IN_FLIGHT_TASK.contains(&t.status.as_str()) {
        return Err(err(403, "InvalidTaskId.IncorrectTaskStatus", "The specified task status is invalid."));
    }
    t.status = "Deleted".into();
    t.finished = Some(ctx.now);
    let image = t.image_id.clone();
    // A cancelled import leaves no image behind.
    db.images.retain(|i| i.id != image);
    db.save()?;
    Ok(json!({}))
}

fn own_image<'a>(db: &'a mut super::Db, region: &str, id: &str) -> Result<&'a mut Image, RpcError> {
    db.images
        .iter_mut()
        .find(|i| i.id == id && i.region == region && i.owner_alias == "self")
        .ok_or_else(|| no_image(id))
}

fn delete_image(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
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

fn copy_image(inner: &Arc<Inner>, ctx: &RpcContext, params: &Params) -> RpcResult {
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

fn modify_share(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let id = params.require("ImageId")?;
    let add: Vec<String> = params.indexed("AddAccount").into_values().filter_map(|m| m.get("").cloned()).collect();
    let remove: Vec<String> =
        params.indexed("RemoveAccount").into_values().filter_map(|m| m.get("").cloned()).collect();
    // Documented: beyond 10 accounts per call, only the first 10 are processed.
    let (add, remove) = (&add[..add.len().min(10)], &remove[..remove.len().min(10)]);
    if add.iter().chain(remove).any(|a| a.is_empty() || !a.chars().all(|c| c.is_ascii_digit())) {
        return Err(err(
            404,
            "InvalidAccount.NotFound",
            "The specified parameter AddAccount.n or RemoveAccount.n does not exist.",
        ));
    }
    let mut db = inner.db();
    let i = own_image(&mut db, &region, id)?;
    if i.status != "Available" {
        return Err(err(400, "IncorrectImageStatus", "The image is not available."));
    }
    if add.contains(&ctx.state.account_id) {
        // Spelled as Alibaba spells it.
        return Err(err(404, "InvalidAccount.Forbbiden", "The specified account does not yourself."));
    }
    let after =
        i.shared_with.iter().filter(|a| !remove.contains(a)).chain(add).collect::<std::collections::BTreeSet<_>>();
    if after.len() > MAX_SHARED_ACCOUNTS {
        return Err(err(403, "QuotaExceed.ShareImageUser", "The shared image user quota exceeds."));
    }
    for a in remove {
        i.shared_with.remove(a);
    }
    i.shared_with.extend(add.iter().cloned());
    db.save()?;
    Ok(json!({}))
}

fn describe_share(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let id = params.require("ImageId")?;
    let (page, size) = paging(params, 100)?;
    let mut db = inner.db();
    let i = own_image(&mut db, &region, id)?;
    let accounts: Vec<Value> = i
        .shared_with
        .iter()
        .skip(((page - 1) * size) as usize)
        .take(size as usize)
        .map(|a| json!({"AliyunId": a, "SharedTime": iso(i.created)}))
        .collect();
    Ok(json!({
        "ImageId": i.id, "RegionId": region, "PageNumber": page, "PageSize": size, "TotalCount": i.shared_with.len(),
        "ShareGroups": {"ShareGroup": []}, "Accounts": {"Account": accounts},
    }))
}

fn modify_attribute(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
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

fn check_image_type(params: &Params) -> Result<(), RpcError> {
    let t = params.require("ResourceType")?;
    if !t.eq_ignore_ascii_case("image") {
        return Err(RpcError::invalid_parameter("ResourceType", format!("The resource type {t} is not emulated.")));
    }
    Ok(())
}

fn tag_resources(inner: &Inner, ctx: &RpcContext, params: &Params, add: bool) -> RpcResult {
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

fn list_tag_resources(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
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

fn describe_instances(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
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
fn set_instance_status(inner: &Inner, _ctx: &RpcContext, params: &Params, from: &str, to: &str) -> RpcResult {
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
    n.status = to.to_string();
    db.save()?;
    Ok(json!({}))
}

fn replace_system_disk(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
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
    if image.status != "Available" {
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
