//! What ECS answers about images and tasks, as typed values. ECS writes some numbers as strings (`"Size": "40"`,
//! `"Progress": "45%"`) and others as numbers; the readers here take either, and a field the answer lacks takes its
//! default, so a new or missing field never fails a poll.

use serde::{Deserialize, Deserializer, Serialize};

/// An image's `Status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ImageStatus {
    Waiting,
    Creating,
    Available,
    UnAvailable,
    CreateFailed,
    Deprecated,
    /// A status this client does not know; kept verbatim.
    Other(String),
}

impl ImageStatus {
    pub fn parse(s: &str) -> ImageStatus {
        match s {
            "Waiting" => ImageStatus::Waiting,
            "Creating" => ImageStatus::Creating,
            "Available" => ImageStatus::Available,
            "UnAvailable" => ImageStatus::UnAvailable,
            "CreateFailed" => ImageStatus::CreateFailed,
            "Deprecated" => ImageStatus::Deprecated,
            other => ImageStatus::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ImageStatus::Waiting => "Waiting",
            ImageStatus::Creating => "Creating",
            ImageStatus::Available => "Available",
            ImageStatus::UnAvailable => "UnAvailable",
            ImageStatus::CreateFailed => "CreateFailed",
            ImageStatus::Deprecated => "Deprecated",
            ImageStatus::Other(s) => s,
        }
    }

    /// An import, copy or create still under way.
    pub fn in_flight(&self) -> bool {
        matches!(self, ImageStatus::Waiting | ImageStatus::Creating)
    }
}

impl Default for ImageStatus {
    fn default() -> Self {
        ImageStatus::Other(String::new())
    }
}

impl<'de> Deserialize<'de> for ImageStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ImageStatus::parse(&String::deserialize(d)?))
    }
}

/// Every status DescribeImages knows: it answers only Available images unless asked for others.
pub const EVERY_STATUS: &str = "Creating,Waiting,Available,UnAvailable,CreateFailed,Deprecated";

/// A number written as a number or a string, with an optional `%` (`45`, `"45"`, `"45%"`); anything else is 0.
pub(crate) fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
        serde_json::Value::String(s) => s.trim().trim_end_matches('%').trim().parse().unwrap_or(0),
        _ => 0,
    })
}

/// A boolean written as `true` or `"true"`/`"True"`.
fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => b,
        serde_json::Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    })
}

/// One key and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Tag {
    pub tag_key: String,
    pub tag_value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Tags {
    tag: Vec<Tag>,
}

fn tags<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Tag>, D::Error> {
    Ok(Option::<Tags>::deserialize(d)?.map(|t| t.tag).unwrap_or_default())
}

/// One disk of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DiskMapping {
    pub device: String,
    /// GiB.
    #[serde(deserialize_with = "lenient_u64")]
    pub size: u64,
    pub snapshot_id: String,
    /// `system` or `data`.
    #[serde(rename = "Type")]
    pub kind: String,
    pub format: String,
    #[serde(rename = "ImportOSSBucket")]
    pub import_oss_bucket: String,
    #[serde(rename = "ImportOSSObject")]
    pub import_oss_object: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct DiskMappings {
    disk_device_mapping: Vec<DiskMapping>,
}

fn disks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DiskMapping>, D::Error> {
    Ok(Option::<DiskMappings>::deserialize(d)?.map(|m| m.disk_device_mapping).unwrap_or_default())
}

/// An image as DescribeImages describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Image {
    pub image_id: String,
    pub image_name: String,
    pub description: String,
    pub status: ImageStatus,
    /// Percent.
    #[serde(deserialize_with = "lenient_u64")]
    pub progress: u64,
    /// system, self, others or marketplace.
    pub image_owner_alias: String,
    #[serde(rename = "OSType")]
    pub os_type: String,
    #[serde(rename = "OSName")]
    pub os_name: String,
    pub platform: String,
    pub architecture: String,
    pub boot_mode: String,
    pub image_family: String,
    /// The system disk, GiB.
    #[serde(deserialize_with = "lenient_u64")]
    pub size: u64,
    /// ISO 8601, UTC.
    pub creation_time: String,
    #[serde(deserialize_with = "lenient_bool")]
    pub is_copied: bool,
    /// `instance` when instances run it, `none` otherwise.
    pub usage: String,
    #[serde(deserialize_with = "disks")]
    pub disk_device_mappings: Vec<DiskMapping>,
    #[serde(deserialize_with = "tags")]
    pub tags: Vec<Tag>,
    pub resource_group_id: String,
    pub features: ImageFeatures,
}

/// An image's `Features`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageFeatures {
    /// `supported` or `unsupported` (empty when ECS does not say).
    pub nvme_support: String,
}

impl Image {
    /// The value of tag `key`, if the image has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|t| t.tag_key == key).map(|t| t.tag_value.as_str())
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ImagesPage {
    pub images: ImageList,
    #[serde(deserialize_with = "lenient_u64")]
    pub total_count: u64,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ImageList {
    pub image: Vec<Image>,
}

/// A task's `TaskStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TaskStatus {
    Waiting,
    Processing,
    Finished,
    Failed,
    /// Cancelled.
    Deleted,
    Paused,
    Other(String),
}

impl TaskStatus {
    pub fn parse(s: &str) -> TaskStatus {
        match s {
            "Waiting" => TaskStatus::Waiting,
            "Processing" => TaskStatus::Processing,
            "Finished" => TaskStatus::Finished,
            "Failed" => TaskStatus::Failed,
            "Deleted" => TaskStatus::Deleted,
            "Paused" => TaskStatus::Paused,
            other => TaskStatus::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            TaskStatus::Waiting => "Waiting",
            TaskStatus::Processing => "Processing",
            TaskStatus::Finished => "Finished",
            TaskStatus::Failed => "Failed",
            TaskStatus::Deleted => "Deleted",
            TaskStatus::Paused => "Paused",
            TaskStatus::Other(s) => s,
        }
    }
}

impl Default for TaskStatus {
    fn default() -> Self {
        TaskStatus::Other(String::new())
    }
}

impl<'de> Deserialize<'de> for TaskStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(TaskStatus::parse(&String::deserialize(d)?))
    }
}

/// A task as DescribeTaskAttribute describes it, with the error of a failed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Task {
    pub task_id: String,
    pub task_action: String,
    pub task_status: TaskStatus,
    /// Percent.
    pub progress: u64,
    /// The error code and message of a failed task, when it says.
    pub error_code: String,
    pub error_message: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct TaskAttribute {
    task_id: String,
    task_action: String,
    task_status: TaskStatus,
    #[serde(deserialize_with = "lenient_u64")]
    task_process: u64,
    operation_progress_set: OperationProgressSet,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct OperationProgressSet {
    operation_progress: Vec<OperationProgress>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct OperationProgress {
    error_code: String,
    error_msg: String,
}

impl From<TaskAttribute> for Task {
    fn from(t: TaskAttribute) -> Task {
        let (error_code, error_message) = t
            .operation_progress_set
            .operation_progress
            .into_iter()
            .find(|o| !o.error_code.is_empty() || !o.error_msg.is_empty())
            .map(|o| (o.error_code, o.error_msg))
            .unwrap_or_default();
        Task {
            task_id: t.task_id,
            task_action: t.task_action,
            task_status: t.task_status,
            progress: t.task_process,
            error_code,
            error_message,
        }
    }
}

/// A task as DescribeTasks lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskSummary {
    pub task_id: String,
    pub task_action: String,
    pub task_status: TaskStatus,
    /// The image the task works on.
    pub resource_id: String,
    pub creation_time: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct TasksPage {
    pub task_set: TaskList,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct TaskList {
    pub task: Vec<TaskSummary>,
}

/// An instance as DescribeInstances describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Instance {
    pub instance_id: String,
    pub instance_name: String,
    /// Running, Stopped, Starting, Stopping, Pending.
    pub status: String,
    pub image_id: String,
    pub instance_type: String,
    pub region_id: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct InstancesPage {
    pub instances: InstanceList,
    #[serde(deserialize_with = "lenient_u64")]
    pub total_count: u64,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct InstanceList {
    pub instance: Vec<Instance>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_written_either_way() {
        let i: Image = serde_json::from_str(
            r#"{"ImageId":"m-1","Status":"Creating","Progress":"45%","Size":40,"IsCopied":"True",
                "DiskDeviceMappings":{"DiskDeviceMapping":[{"Size":"40","Type":"system","Format":"QCOW2"}]},
                "Tags":{"Tag":[{"TagKey":"k","TagValue":"v"}]}}"#,
        )
        .expect("parses");
        assert_eq!((i.progress, i.size, i.is_copied), (45, 40, true));
        assert_eq!(i.status, ImageStatus::Creating);
        assert_eq!(i.disk_device_mappings[0].size, 40);
        assert_eq!(i.tag("k"), Some("v"));
        let odd: Image = serde_json::from_str(r#"{"Status":"Frozen","Progress":null,"Tags":null}"#).expect("parses");
        assert_eq!(odd.status, ImageStatus::Other("Frozen".into()));
        assert_eq!((odd.progress, odd.tags.len()), (0, 0));
    }

    #[test]
    fn a_failed_task_keeps_its_error() {
        let t: TaskAttribute = serde_json::from_str(
            r#"{"TaskId":"t-1","TaskAction":"ImportImage","TaskStatus":"Failed","TaskProcess":"20%",
                "OperationProgressSet":{"OperationProgress":[{"ErrorCode":"InvalidImage.Format","ErrorMsg":"bad"}]}}"#,
        )
        .expect("parses");
        let t = Task::from(t);
        assert_eq!((t.task_status, t.progress, t.error_code.as_str()), (TaskStatus::Failed, 20, "InvalidImage.Format"));
    }
}
