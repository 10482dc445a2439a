//! The ECS Images API, typed: ImportImage, CreateImage, DescribeImages (every page), DescribeTaskAttribute,
//! CancelTask, CopyImage, CancelCopyImage, DeleteImage, ModifyImageAttribute, ModifyImageSharePermission,
//! DescribeImageSharePermission, TagResources, DescribeRegions. One [`Ecs`] talks to one region; [`Ecs::in_region`]
//! gives the same client for another.

use crate::model::{
    Image, ImagesPage, Instance, InstancesPage, Task, TaskAttribute, TaskSummary, TasksPage, EVERY_STATUS,
};
use crate::CloudError;
use imgport_auth::endpoints::{ecs_host, Endpoint};
use imgport_auth::rpc::RpcClient;
use serde::Deserialize;

/// The ECS API version the client speaks.
pub const VERSION: &str = "2014-05-26";
/// DescribeImages' largest page.
const PAGE_SIZE: usize = 100;
/// A bound on the pages one listing fetches (100 000 images), so a misbehaving service cannot keep a client
/// paging for ever.
const MAX_PAGES: usize = 1000;

/// The parameters of one call, in the order they were added.
#[derive(Debug, Default, Clone)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    fn put(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.0.push((key.into(), value.into()));
        self
    }

    fn opt(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.put(key, v);
        }
        self
    }

    fn tags(&mut self, tags: &[(String, String)]) -> &mut Self {
        for (n, (k, v)) in tags.iter().enumerate() {
            self.put(format!("Tag.{}.Key", n + 1), k.as_str());
            self.put(format!("Tag.{}.Value", n + 1), v.as_str());
        }
        self
    }

    fn list(&mut self, prefix: &str, values: &[String]) -> &mut Self {
        for (n, v) in values.iter().enumerate() {
            self.put(format!("{prefix}.{}", n + 1), v.as_str());
        }
        self
    }

    fn as_refs(&self) -> Vec<(&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
}

/// One disk of an import: an object in a bucket of the import region.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportDisk {
    pub bucket: String,
    pub object: String,
    /// `QCOW2`, `RAW` or `VHD`.
    pub format: String,
    /// The disk's size in GiB (at least the image's virtual size); `None` lets ECS take the virtual size.
    pub size_gib: Option<u64>,
}

/// An ImportImage request: every parameter the API takes. Empty strings and `None` are not sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportRequest {
    pub image_name: String,
    pub description: Option<String>,
    /// The system disk first, then data disks.
    pub disks: Vec<ImportDisk>,
    pub platform: Option<String>,
    /// `linux` or `windows`.
    pub os_type: Option<String>,
    /// `x86_64`, `i386` or `arm64`.
    pub architecture: Option<String>,
    /// `BIOS`, `UEFI` or `UEFI-Preferred`.
    pub boot_mode: Option<String>,
    /// `Auto`, `Aliyun` or `BYOL`.
    pub license_type: Option<String>,
    // ImportImage takes no ImageFamily (the API documents none and ignores one sent anyway): see `set_family`.
    /// `Standard` asks ECS to check the image.
    pub detection_strategy: Option<String>,
    /// `Features.NvmeSupport`: `supported` or `unsupported`.
    pub nvme_support: Option<String>,
    pub resource_group_id: Option<String>,
    /// The role ECS reads the bucket as; unset: `AliyunECSImageImportDefaultRole`.
    pub role_name: Option<String>,
    pub tags: Vec<(String, String)>,
    /// Makes retries of the same request idempotent: the same token answers the first request's image.
    pub client_token: Option<String>,
}

/// A CreateImage request: from an instance's system disk, or from a system snapshot plus data snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateRequest {
    pub image_name: String,
    pub description: Option<String>,
    pub instance_id: Option<String>,
    /// The system disk's snapshot, then data disks' snapshots (sent as `DiskDeviceMapping.N.SnapshotId`).
    pub snapshots: Vec<String>,
    pub platform: Option<String>,
    pub architecture: Option<String>,
    pub boot_mode: Option<String>,
    pub image_family: Option<String>,
    pub tags: Vec<(String, String)>,
    pub client_token: Option<String>,
}

/// A CopyImage request, sent in the source image's region.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyRequest {
    pub image_id: String,
    pub destination_region: String,
    pub destination_name: Option<String>,
    pub destination_description: Option<String>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub tags: Vec<(String, String)>,
    pub client_token: Option<String>,
}

/// DescribeImages' filters; empty ones are not sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageFilter {
    pub image_ids: Vec<String>,
    /// Fuzzy match, as ECS does it.
    pub image_name: Option<String>,
    /// system, self, others or marketplace; unset: system, self and shared.
    pub owner_alias: Option<String>,
    pub snapshot_id: Option<String>,
    pub family: Option<String>,
    pub os_type: Option<String>,
    pub architecture: Option<String>,
    /// Comma-separated statuses; unset: every status (not ECS's default of Available only).
    pub status: Option<String>,
    /// `instance` or `none`.
    pub usage: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// The ids an ImportImage answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Imported {
    pub image_id: String,
    pub task_id: String,
    pub region_id: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ImageIdAnswer {
    image_id: String,
}

#[derive(Deserialize)]
struct Ignored {}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RegionsAnswer {
    regions: RegionList,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RegionList {
    region: Vec<RegionEntry>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RegionEntry {
    region_id: String,
}

/// A client of the ECS Images API in one region.
#[derive(Clone)]
pub struct Ecs {
    rpc: RpcClient,
    region: String,
    page_size: usize,
}

impl Ecs {
    /// A client for `region` through `rpc` (an ECS [`RpcClient`] with credentials).
    pub fn new(rpc: RpcClient, region: impl Into<String>) -> Ecs {
        Ecs { rpc, region: region.into(), page_size: PAGE_SIZE }
    }

    /// Lists with pages of `n` (1-100) instead of the largest: tests use it to exercise paging.
    pub fn with_page_size(mut self, n: usize) -> Ecs {
        self.page_size = n.clamp(1, PAGE_SIZE);
        self
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The same client for `region`: a custom endpoint (a local cloud, a proxy) serves every region, a derived
    /// one is replaced by that region's.
    pub fn in_region(&self, region: &str) -> Ecs {
        let rpc = if self.rpc.endpoint().custom {
            self.rpc.clone()
        } else {
            let host = ecs_host(region);
            self.rpc.clone().with_endpoint(Endpoint { scheme: "https".into(), host, custom: false })
        };
        Ecs { rpc, region: region.to_string(), page_size: self.page_size }
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, action: &str, mut params: Params) -> Result<T, CloudError> {
        let mut all = Params::default();
        all.put("RegionId", self.region.as_str());
        all.0.append(&mut params.0);
        Ok(self.rpc.call(action, &all.as_refs()).await?)
    }

    /// ImportImage: registers the uploaded disks as a custom image; the answer names the image and its task.
    pub async fn import_image(&self, r: &ImportRequest) -> Result<Imported, CloudError> {
        if r.disks.is_empty() {
            return Err(CloudError::InvalidArgument("an import needs at least a system disk".into()));
        }
        let mut p = Params::default();
        p.put("ImageName", r.image_name.as_str())
            .opt("Description", r.description.as_deref())
            .opt("Platform", r.platform.as_deref())
            .opt("OSType", r.os_type.as_deref())
            .opt("Architecture", r.architecture.as_deref())
            .opt("BootMode", r.boot_mode.as_deref())
            .opt("LicenseType", r.license_type.as_deref())
            .opt("DetectionStrategy", r.detection_strategy.as_deref())
            .opt("Features.NvmeSupport", r.nvme_support.as_deref())
            .opt("ResourceGroupId", r.resource_group_id.as_deref())
            .opt("RoleName", r.role_name.as_deref())
            .opt("ClientToken", r.client_token.as_deref());
        for (n, d) in r.disks.iter().enumerate() {
            let key = |f: &str| format!("DiskDeviceMapping.{}.{f}", n + 1);
            p.put(key("OSSBucket"), d.bucket.as_str()).put(key("OSSObject"), d.object.as_str());
            p.put(key("Format"), d.format.as_str());
            if let Some(s) = d.size_gib {
                p.put(key("DiskImageSize"), s.to_string());
            }
        }
        p.tags(&r.tags);
        let mut answer: Imported = self.call("ImportImage", p).await?;
        if answer.image_id.is_empty() {
            return Err(CloudError::InvalidArgument("ImportImage answered no ImageId".into()));
        }
        if answer.region_id.is_empty() {
            answer.region_id = self.region.clone();
        }
        Ok(answer)
    }

    /// CreateImage: a custom image from an instance's system disk or from snapshots.
    pub async fn create_image(&self, r: &CreateRequest) -> Result<String, CloudError> {
        if r.instance_id.is_some() != r.snapshots.is_empty() {
            // Both given, or neither.
            return Err(CloudError::InvalidArgument("CreateImage takes an instance or snapshots, not both".into()));
        }
        let mut p = Params::default();
        p.put("ImageName", r.image_name.as_str())
            .opt("Description", r.description.as_deref())
            .opt("InstanceId", r.instance_id.as_deref())
            .opt("Platform", r.platform.as_deref())
            .opt("Architecture", r.architecture.as_deref())
            .opt("BootMode", r.boot_mode.as_deref())
            .opt("ImageFamily", r.image_family.as_deref())
            .opt("ClientToken", r.client_token.as_deref());
        for (n, s) in r.snapshots.iter().enumerate() {
            p.put(format!("DiskDeviceMapping.{}.SnapshotId", n + 1), s.as_str());
        }
        p.tags(&r.tags);
        let a: ImageIdAnswer = self.call("CreateImage", p).await?;
        Ok(a.image_id)
    }

    /// DescribeImages, every page. Unlike ECS's default (Available only), an unset status filter asks for every
    /// status, so an image in flight or failed is never mistaken for one that does not exist.
    pub async fn images(&self, f: &ImageFilter) -> Result<Vec<Image>, CloudError> {
        let mut out: Vec<Image> = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut p = Params::default();
            p.put("Status", f.status.as_deref().unwrap_or(EVERY_STATUS))
                .opt("ImageName", f.image_name.as_deref())
                .opt("ImageOwnerAlias", f.owner_alias.as_deref())
                .opt("SnapshotId", f.snapshot_id.as_deref())
                .opt("ImageFamily", f.family.as_deref())
                .opt("OSType", f.os_type.as_deref())
                .opt("Architecture", f.architecture.as_deref())
                .opt("Usage", f.usage.as_deref());
            if !f.image_ids.is_empty() {
                p.put("ImageId", f.image_ids.join(","));
            }
            p.tags(&f.tags);
            p.put("PageNumber", page.to_string()).put("PageSize", self.page_size.to_string());
            let answer: ImagesPage = self.call("DescribeImages", p).await?;
            let got = answer.images.image.len();
            out.extend(answer.images.image);
            if got < self.page_size || out.len() as u64 >= answer.total_count {
                break;
            }
        }
        Ok(out)
    }

    /// The image `id` in this region, in any status, or `None`.
    pub async fn image(&self, id: &str) -> Result<Option<Image>, CloudError> {
        let f = ImageFilter { image_ids: vec![id.to_string()], ..Default::default() };
        Ok(self.images(&f).await?.into_iter().find(|i| i.image_id == id))
    }

    /// DescribeTaskAttribute: the task's status, progress and, when it failed, its error.
    pub async fn task(&self, id: &str) -> Result<Task, CloudError> {
        let mut p = Params::default();
        p.put("TaskId", id);
        let t: TaskAttribute = self.call("DescribeTaskAttribute", p).await?;
        Ok(t.into())
    }

    /// DescribeTasks for the image `image_id`: the import tasks that worked on it, newest first.
    pub async fn tasks_of(&self, image_id: &str) -> Result<Vec<TaskSummary>, CloudError> {
        let mut p = Params::default();
        p.put("ResourceIds.1", image_id).put("PageSize", "100");
        let page: TasksPage = self.call("DescribeTasks", p).await?;
        Ok(page.task_set.task)
    }

    /// CancelTask: stops an import; ECS removes the unfinished image.
    pub async fn cancel_task(&self, id: &str) -> Result<(), CloudError> {
        let mut p = Params::default();
        p.put("TaskId", id);
        self.call::<Ignored>("CancelTask", p).await.map(|_| ())
    }

    /// CopyImage, sent in this (the source) region: the answer is the copy's id in the destination region.
    pub async fn copy_image(&self, r: &CopyRequest) -> Result<String, CloudError> {
        let mut p = Params::default();
        p.put("ImageId", r.image_id.as_str())
            .put("DestinationRegionId", r.destination_region.as_str())
            .opt("DestinationImageName", r.destination_name.as_deref())
            .opt("DestinationDescription", r.destination_description.as_deref())
            .opt("KMSKeyId", r.kms_key_id.as_deref())
            .opt("ClientToken", r.client_token.as_deref());
        if r.encrypted {
            p.put("Encrypted", "true");
        }
        p.tags(&r.tags);
        let a: ImageIdAnswer = self.call("CopyImage", p).await?;
        Ok(a.image_id)
    }

    /// CancelCopyImage, sent in the destination region: removes the unfinished copy `id`.
    pub async fn cancel_copy(&self, id: &str) -> Result<(), CloudError> {
        let mut p = Params::default();
        p.put("ImageId", id);
        self.call::<Ignored>("CancelCopyImage", p).await.map(|_| ())
    }

    /// DeleteImage; `force` deletes an image instances run. ECS leaves the image's snapshots.
    pub async fn delete_image(&self, id: &str, force: bool) -> Result<(), CloudError> {
        let mut p = Params::default();
        p.put("ImageId", id);
        if force {
            p.put("Force", "true");
        }
        self.call::<Ignored>("DeleteImage", p).await.map(|_| ())
    }

    /// DeleteSnapshot: ECS refuses a snapshot an image still uses (`SnapshotCreatedImage`).
    pub async fn delete_snapshot(&self, id: &str) -> Result<(), CloudError> {
        let mut p = Params::default();
        p.put("SnapshotId", id);
        self.call::<Ignored>("DeleteSnapshot", p).await.map(|_| ())
    }

    /// ModifyImageAttribute `Status`: `deprecated` true moves Available to Deprecated, false back.
    pub async fn set_deprecated(&self, id: &str, deprecated: bool) -> Result<(), CloudError> {
        let mut p = Params::default();
        p.put("ImageId", id).put("Status", if deprecated { "Deprecated" } else { "Available" });
        self.call::<Ignored>("ModifyImageAttribute", p).await.map(|_| ())
    }

    /// ModifyImageAttribute `ImageFamily`. ImportImage and CopyImage take no family, so an imported image and
    /// its copies get theirs this way, once Available (an image still being created cannot be modified).
    pub async fn set_family(&self, id: &str, family: &str) -> Result<(), CloudError> {
        let mut p = Params::default();
        p.put("ImageId", id).put("ImageFamily", family);
        self.call::<Ignored>("ModifyImageAttribute", p).await.map(|_| ())
    }

    /// ModifyImageAttribute `ImageName`: renames the image (ECS refuses a name another own image in the region has,
    /// and an image still being imported or copied).
    pub async fn rename_image(&self, id: &str, name: &str) -> Result<(), CloudError> {
        let mut p = Params::default();
        p.put("ImageId", id).put("ImageName", name);
        self.call::<Ignored>("ModifyImageAttribute", p).await.map(|_| ())
    }

    /// ModifyImageSharePermission: shares with `add` and stops sharing with `remove` (10 accounts per call, as
    /// ECS takes them).
    pub async fn share(&self, id: &str, add: &[String], remove: &[String]) -> Result<(), CloudError> {
        let (mut add, mut remove) = (add, remove);
        while !add.is_empty() || !remove.is_empty() {
            let (a, ra) = add.split_at(add.len().min(10));
            let (r, rr) = remove.split_at(remove.len().min(10));
            let mut p = Params::default();
            p.put("ImageId", id).list("AddAccount", a).list("RemoveAccount", r);
            self.call::<Ignored>("ModifyImageSharePermission", p).await?;
            (add, remove) = (ra, rr);
        }
        Ok(())
    }

    /// DescribeImageSharePermission, every page: the accounts the image `id` is shared with.
    pub async fn shared_with(&self, id: &str) -> Result<Vec<String>, CloudError> {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "PascalCase", default)]
        struct Answer {
            accounts: Accounts,
            #[serde(deserialize_with = "crate::model::lenient_u64")]
            total_count: u64,
        }
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "PascalCase", default)]
        struct Accounts {
            account: Vec<Account>,
        }
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "PascalCase", default)]
        struct Account {
            aliyun_id: String,
        }
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut p = Params::default();
            p.put("ImageId", id).put("PageNumber", page.to_string()).put("PageSize", PAGE_SIZE.to_string());
            let a: Answer = self.call("DescribeImageSharePermission", p).await?;
            let got = a.accounts.account.len();
            out.extend(a.accounts.account.into_iter().map(|a| a.aliyun_id));
            if got < PAGE_SIZE || out.len() as u64 >= a.total_count {
                break;
            }
        }
        Ok(out)
    }

    /// TagResources on images (`resource_type` `image`) or snapshots (`snapshot`).
    pub async fn tag(&self, resource_type: &str, ids: &[String], tags: &[(String, String)]) -> Result<(), CloudError> {
        if ids.is_empty() || tags.is_empty() {
            return Ok(());
        }
        let mut p = Params::default();
        p.put("ResourceType", resource_type).list("ResourceId", ids).tags(tags);
        self.call::<Ignored>("TagResources", p).await.map(|_| ())
    }

    /// DescribeInstances, every page; `ids` empty: all of the region's.
    pub async fn instances(&self, ids: &[String]) -> Result<Vec<Instance>, CloudError> {
        let mut out: Vec<Instance> = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut p = Params::default();
            if !ids.is_empty() {
                let list = serde_json::to_string(ids).map_err(|e| CloudError::InvalidArgument(e.to_string()))?;
                p.put("InstanceIds", list);
            }
            p.put("PageNumber", page.to_string()).put("PageSize", self.page_size.to_string());
            let answer: InstancesPage = self.call("DescribeInstances", p).await?;
            let got = answer.instances.instance.len();
            out.extend(answer.instances.instance);
            if got < self.page_size || out.len() as u64 >= answer.total_count {
                break;
            }
        }
        Ok(out)
    }

    /// StartInstance (`running` true) or StopInstance.
    pub async fn set_instance_running(&self, id: &str, running: bool) -> Result<(), CloudError> {
        let mut p = Params::default();
        p.put("InstanceId", id);
        let action = if running { "StartInstance" } else { "StopInstance" };
        self.call::<Ignored>(action, p).await.map(|_| ())
    }

    /// ReplaceSystemDisk: the stopped instance's system disk from `image_id`, of `size_gib` when given; the new
    /// disk's id.
    pub async fn replace_system_disk(
        &self,
        id: &str,
        image_id: &str,
        size_gib: Option<u64>,
    ) -> Result<String, CloudError> {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "PascalCase", default)]
        struct Answer {
            disk_id: String,
        }
        let mut p = Params::default();
        p.put("InstanceId", id).put("ImageId", image_id);
        if let Some(s) = size_gib {
            p.put("SystemDisk.Size", s.to_string());
        }
        let a: Answer = self.call("ReplaceSystemDisk", p).await?;
        Ok(a.disk_id)
    }

    /// DescribeRegions: the region ids this account can use.
    pub async fn regions(&self) -> Result<Vec<String>, CloudError> {
        let a: RegionsAnswer = self.call("DescribeRegions", Params::default()).await?;
        Ok(a.regions.region.into_iter().map(|r| r.region_id).collect())
    }
}
