//! The ECS records the emulator keeps in its state file: images with their disks, snapshots, tasks and instances.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub(crate) struct DiskMapping {
    pub device: String,
    pub bucket: String,
    pub object: String,
    pub format: String,
    pub size_gib: u64,
    /// Empty until the import, copy or CreateImage that makes the disk is Available (then its own snapshot), or
    /// the existing snapshot a CreateImage named.
    pub snapshot_id: String,
    /// The disk's snapshot is encrypted (a copy with `Encrypted=true`), with this KMS key (empty: the default key).
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default)]
    pub kms_key_id: String,
    /// The disk the snapshot is taken of: an instance's system disk for CreateImage from an instance; empty
    /// otherwise (the snapshot then gets a disk id of its own).
    #[serde(default)]
    pub source_disk_id: String,
    /// For a copy: the source image's snapshot of this disk, and its region.
    #[serde(default)]
    pub source_snapshot_id: String,
    #[serde(default)]
    pub source_region_id: String,
}

/// A snapshot of the account's: made when an import, copy or CreateImage becomes Available (one per disk), kept
/// when the image is deleted, removed by DeleteSnapshot. The images that use it are those whose disks name it.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub(crate) struct Snapshot {
    pub id: String,
    pub region: String,
    pub name: String,
    pub description: String,
    /// progressing, accomplished or failed.
    pub status: String,
    pub size_gib: u64,
    pub source_disk_id: String,
    /// system or data.
    pub source_disk_type: String,
    pub created: i64,
    pub tags: BTreeMap<String, String>,
    pub encrypted: bool,
    pub kms_key_id: String,
    /// For a copy's snapshot: the snapshot it was copied from, and that snapshot's region.
    pub source_snapshot_id: String,
    pub source_region_id: String,
}

/// DetectionStrategy=Standard findings: (check name, what was found, risk level).
pub(crate) type Detection = Vec<(String, String, String)>;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub(crate) struct Image {
    pub id: String,
    pub region: String,
    pub name: String,
    pub description: String,
    pub status: String,
    pub progress: u32,
    /// system, self, others or marketplace, as seen by the emulated account.
    pub owner_alias: String,
    pub owner_id: String,
    pub os_type: String,
    pub os_name: String,
    pub platform: String,
    pub architecture: String,
    pub boot_mode: String,
    pub license_type: String,
    pub family: String,
    pub created: i64,
    pub disks: Vec<DiskMapping>,
    pub tags: BTreeMap<String, String>,
    pub shared_with: BTreeSet<String>,
    pub task_id: Option<String>,
    pub copied_from: Option<String>,
    pub failure: Option<String>,
    /// Set by a `create_failed` fault when the import or copy was requested.
    pub forced_failure: Option<String>,
    /// DetectionStrategy=Standard: `None` until the check ran, then (name, value, risk level) per problem.
    #[serde(default)]
    pub detection: Option<Detection>,
    #[serde(default)]
    pub detection_requested: bool,
    /// The request's ClientToken: a retried request with the same token gets the same image back.
    #[serde(default)]
    pub client_token: Option<String>,
    /// A digest of the request's parameters, so a reuse of the token with other parameters is refused.
    #[serde(default)]
    pub client_params: Option<String>,
    /// Set by a `stall` fault when the import or copy was requested: it holds in Creating.
    #[serde(default)]
    pub stall: Option<crate::faults::Stall>,
    /// Set by a `task_finishes_early` fault when the import was requested: the seconds the image stays Creating
    /// after its task reports Finished.
    #[serde(default)]
    pub finish_early: Option<u64>,
    /// ImportImage's `Features.NvmeSupport` (`supported` or `unsupported`; empty: not given, reported unsupported).
    #[serde(default)]
    pub nvme_support: String,
    /// ImportImage's `ResourceGroupId`, as given (empty: none).
    #[serde(default)]
    pub resource_group_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub(crate) struct Task {
    pub id: String,
    pub region: String,
    pub action: String,
    pub image_id: String,
    pub status: String,
    pub progress: u32,
    pub created: i64,
    pub finished: Option<i64>,
    pub failure: Option<String>,
}

/// A minimal instance: enough for DescribeInstances, Start/StopInstance and ReplaceSystemDisk.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub(crate) struct Instance {
    pub id: String,
    pub region: String,
    pub name: String,
    pub status: String,
    pub image_id: String,
    pub instance_type: String,
    pub system_disk_id: String,
    pub system_disk_gib: u64,
    pub created: i64,
}
