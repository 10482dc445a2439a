//! The ECS records the emulator keeps in its state file: images with their disks, tasks and instances.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub(crate) struct DiskMapping {
    pub device: String,
    pub bucket: String,
    pub object: String,
    pub format: String,
    pub size_gib: u64,
    pub snapshot_id: String,
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
