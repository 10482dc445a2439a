//! The control-plane services behind the RPC gateway: one [`Cloud`] serves ECS ([`crate::ecs`]), RAM
//! ([`crate::ram`]) and STS ([`crate::sts`]) so that roles created through RAM gate ECS imports and STS, and keeps
//! their shared state in `DATA/cloud.json`.

use crate::ecs::{Image, Instance, Task};
use crate::ram::{Role, IMPORT_ROLE};
use crate::rpc::{Params, RpcContext, RpcError, RpcResult, RpcService, ECS_VERSION, RAM_VERSION, STS_VERSION};
use crate::state::{Background, EmulatorState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Settings of the ECS, RAM and STS services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudSettings {
    /// How long an import (and a copy, unless `copy_seconds` is set) takes from Waiting to Available, in seconds.
    pub import_seconds: f64,
    /// How long a copy takes from Waiting to Available, in seconds; unset: `import_seconds`.
    pub copy_seconds: Option<f64>,
    /// When set, temporary credentials from AssumeRole expire after at most this many seconds whatever
    /// DurationSeconds asked for, so expiry can be exercised without waiting 15 minutes.
    pub sts_lifetime_cap_seconds: Option<i64>,
    /// Create `AliyunECSImageImportDefaultRole` with its policy on first start, as if the user had authorised it.
    pub seed_import_role: bool,
    /// How many tag resources one ListTagResources page holds before it answers a `NextToken` (ECS documents 50;
    /// tests set it small so paging is exercised).
    pub tag_page_size: usize,
    /// Custom images per region, counting every status (in-flight imports and copies, CreateFailed and Deprecated
    /// images included): ImportImage and CopyImage (in its destination region) answer 403 `QuotaExceed.Image` at
    /// this many. The real quota is per account and region and can be raised in Quota Center.
    pub image_quota: usize,
    /// Imports and copies in flight (Waiting or Creating) per region, each worked on by its own thread: ImportImage
    /// and CopyImage (in its destination region) answer 400 `Throttling` at this many, where the real service
    /// would queue them. Keeps the emulator's threads bounded.
    pub max_in_flight: usize,
    /// Finished tasks kept for DescribeTasks (Finished, Failed, or Deleted by CancelTask); beyond this many the
    /// oldest are forgotten, as the real service keeps tasks for a limited time.
    pub task_history: usize,
}

impl Default for CloudSettings {
    fn default() -> Self {
        CloudSettings {
            import_seconds: 3.0,
            copy_seconds: None,
            sts_lifetime_cap_seconds: None,
            seed_import_role: false,
            tag_page_size: 50,
            image_quota: 100,
            max_in_flight: 20,
            task_history: 1000,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Db {
    pub roles: BTreeMap<String, Role>,
    /// Custom RAM policies by lower-case name.
    pub policies: BTreeMap<String, crate::ram::Policy>,
    pub images: Vec<Image>,
    pub tasks: Vec<Task>,
    pub instances: Vec<Instance>,
    #[serde(default)]
    pub snapshots: Vec<crate::ecs::Snapshot>,
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// The emulator's stop flag: once it is set nothing is written.
    #[serde(skip)]
    pub background: Option<Arc<Background>>,
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

    /// Writes the state atomically (temporary file, then rename), as compact JSON. Once the emulator is stopping
    /// nothing is written and this answers 500 `InternalError`: a later emulator on the same data folder must find
    /// the state as it was at shutdown.
    pub fn save(&self) -> Result<(), RpcError> {
        let Some(p) = &self.path else { return Ok(()) };
        let write = || {
            let data = serde_json::to_vec(self).map_err(|_| RpcError::internal())?;
            let tmp = p.with_extension("json.tmp");
            crate::util::write_private(&tmp, &data)
                .and_then(|_| std::fs::rename(&tmp, p))
                .map_err(|_| RpcError::internal())
        };
        match &self.background {
            Some(b) => b.unless_stopped(write).unwrap_or_else(|| Err(RpcError::internal())),
            None => write(),
        }
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

    /// The stop flag and the background threads (imports, copies), shared with [`crate::RunningEmulator`] through
    /// the emulator state: shutdown sets the flag, and the workers check it before every update and save.
    pub fn background(&self) -> &Arc<Background> {
        &self.state.background
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
            db.background = Some(state.background.clone());
            if self.settings.seed_import_role && db.role(IMPORT_ROLE).is_none() {
                crate::ram::seed_import_role(&mut db, state.now());
                db.save().map_err(|e| e.message)?;
            }
            let inner = Arc::new(Inner {
                settings: self.settings.clone(),
                db: Mutex::new(db),
                state: state.clone(),
                copy_queue: Default::default(),
            });
            crate::ecs::resume(&inner);
            Ok(inner)
        });
        match r {
            Ok(i) => Ok(i.clone()),
            Err(e) => {
                state.log.problem(&format!("cannot open the ECS state: {e}"));
                Err(RpcError::internal())
            }
        }
    }
}

impl RpcService for Cloud {
    fn handle(&self, ctx: &RpcContext, action: &str, params: &Params) -> RpcResult {
        let inner = self.inner(&ctx.state)?;
        match ctx.version.as_str() {
            ECS_VERSION => crate::ecs::handle(&inner, ctx, action, params),
            RAM_VERSION => crate::ram::handle(&inner, ctx, action, params),
            STS_VERSION => crate::sts::handle(&inner, ctx, action, params),
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
