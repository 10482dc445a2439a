//! ECS images, RAM roles and STS AssumeRole behind the RPC gateway. One [`Cloud`] serves the three API versions
//! so that roles created through RAM gate ECS imports and STS, and keeps its state in `DATA/cloud.json`.

mod ecs;
mod ram;

use crate::rpc::{Params, RpcContext, RpcError, RpcResult, RpcService, ECS_VERSION, RAM_VERSION, STS_VERSION};
use crate::state::EmulatorState;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

pub use ram::IMPORT_ROLE;

/// Settings of the ECS, RAM and STS services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudSettings {
    /// How long an import (or a copy) takes from Waiting to Available, in seconds.
    pub import_seconds: f64,
    /// When set, temporary credentials from AssumeRole expire after at most this many seconds whatever
    /// DurationSeconds asked for, so expiry can be exercised without waiting 15 minutes.
    pub sts_lifetime_cap_seconds: Option<i64>,
    /// Create `AliyunECSImageImportDefaultRole` with its policy on first start, as if the user had authorised it.
    pub seed_import_role: bool,
}

impl Default for CloudSettings {
    fn default() -> Self {
        CloudSettings { import_seconds: 3.0, sts_lifetime_cap_seconds: None, seed_import_role: false }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Role {
    pub name: String,
    pub id: String,
    pub description: String,
    pub trust_policy: String,
    pub max_session_duration: i64,
    pub created: i64,
    /// (policy type, policy name, attached at)
    pub policies: Vec<(String, String, i64)>,
}

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

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Db {
    pub roles: BTreeMap<String, Role>,
    pub images: Vec<Image>,
    pub tasks: Vec<Task>,
    pub instances: Vec<Instance>,
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

impl Db {
    fn load(path: &Path) -> io::Result<Db> {
        let mut db = match std::fs::read(path) {
            Ok(data) => serde_json::from_slice::<Db>(&data)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Db::default(),
            Err(e) => return Err(e),
        };
        db.path = Some(path.to_path_buf());
        Ok(db)
    }

    /// Writes the state atomically (temporary file, then rename).
    pub fn save(&self) -> Result<(), RpcError> {
        let Some(p) = &self.path else { return Ok(()) };
        let data = serde_json::to_vec_pretty(self).map_err(|_| RpcError::internal())?;
        let tmp = p.with_extension("json.tmp");
        crate::util::write_private(&tmp, &data).and_then(|_| std::fs::rename(&tmp, p)).map_err(|_| RpcError::internal())
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(&name.to_ascii_lowercase())
    }
}

pub(crate) struct Inner {
    pub settings: CloudSettings,
    pub db: Mutex<Db>,
    pub state: Arc<EmulatorState>,
    /// One lock per destination region: copies into a region run one at a time.
    pub copy_queue: Mutex<BTreeMap<String, Arc<Mutex<()>>>>,
}

impl Inner {
    pub fn db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The ECS, RAM and STS services. Register the same value for the three versions (see
/// [`crate::EmulatorConfig::cloud`]); the state is opened on the first request, from the emulator's data folder.
pub struct Cloud {
    settings: CloudSettings,
    inner: OnceLock<Result<Arc<Inner>, String>>,
}

impl Cloud {
    pub fn new(settings: CloudSettings) -> Self {
        Cloud { settings, inner: OnceLock::new() }
    }

    fn inner(&self, state: &Arc<EmulatorState>) -> Result<Arc<Inner>, RpcError> {
        let r = self.inner.get_or_init(|| {
            let mut db = Db::load(&state.data_dir.join("cloud.json")).map_err(|e| e.to_string())?;
            if self.settings.seed_import_role && db.role(IMPORT_ROLE).is_none() {
                ram::seed_import_role(&mut db, state.now());
                db.save().map_err(|e| e.message)?;
            }
            let inner = Arc::new(Inner {
                settings: self.settings.clone(),
                db: Mutex::new(db),
                state: state.clone(),
                copy_queue: Default::default(),
            });
            ecs::resume(&inner);
            Ok(inner)
        });
        match r {
            Ok(i) => Ok(i.clone()),
            Err(e) => {
                eprintln!("imgport-emulator: cannot open the ECS state: {e}");
                Err(RpcError::internal())
            }
        }
    }
}

impl RpcService for Cloud {
    fn handle(&self, ctx: &RpcContext, action: &str, params: &Params) -> RpcResult {
        let inner = self.inner(&ctx.state)?;
        match ctx.version.as_str() {
            ECS_VERSION => ecs::handle(&inner, ctx, action, params),
            RAM_VERSION => ram::handle_ram(&inner, ctx, action, params),
            STS_VERSION => ram::handle_sts(&inner, ctx, action, params),
            _ => Err(RpcError::action_not_found()),
        }
    }
}

/// A resource id: prefix and 20 lowercase alphanumerics, as ECS shapes them.
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", crate::util::random_alnum(20).to_ascii_lowercase())
}

pub(crate) fn iso(t: i64) -> String {
    imgport_auth::time::UtcTime::from_unix(t).iso8601()
}
