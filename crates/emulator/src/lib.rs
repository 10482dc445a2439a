//! A local Alibaba Cloud emulator that the official SDKs work against unchanged: OSS (buckets, objects, ranges,
//! multipart uploads, V1 and V4 signatures, CRC-64 and MD5 checks) and an RPC gateway serving ECS images, RAM roles
//! and STS AssumeRole ([`services`]; other services plug in through [`rpc::RpcService`]). State persists under a data
//! folder; faults can be injected ([`faults`]). Run it as `imgport emulator serve`, or in-process with [`Emulator::start`].
//!
//! **Implemented operations.** Each module below lists its operations with their parameters, what they check and
//! answer, and where they knowingly differ from the real service:
//!
//! | service | operations | documented in |
//! |---|---|---|
//! | OSS | ListBuckets, PutBucket, GetBucketInfo, GetBucketLocation, GetBucketAcl, ListObjects, ListObjectsV2, DeleteBucket, ListMultipartUploads, DeleteMultipleObjects, PutObject, GetObject, HeadObject, GetObjectMeta, DeleteObject, InitiateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload, ListParts; addressing and signatures | [`oss`] |
//! | ECS images | DescribeImages, DescribeImageFromFamily, ModifyImageAttribute, DeleteImage | [`ecs::images`] |
//! | ECS imports | ImportImage (and how long an import takes, which upload faults it detects) | [`ecs::import`] |
//! | ECS tasks | DescribeTasks, DescribeTaskAttribute, CancelTask | [`ecs::tasks`] |
//! | ECS copies | CopyImage, CancelCopyImage | [`ecs::copy`] |
//! | ECS images from instances and snapshots | CreateImage | [`ecs::create`] |
//! | ECS snapshots | DescribeSnapshots, DeleteSnapshot | [`ecs::snapshots`] |
//! | ECS sharing | ModifyImageSharePermission, DescribeImageSharePermission | [`ecs::sharing`] |
//! | ECS tags | TagResources, UntagResources, ListTagResources | [`ecs::tags`] |
//! | ECS instances | DescribeInstances, StopInstance, StartInstance, ReplaceSystemDisk | [`ecs::instances`] |
//! | ECS regions | DescribeRegions (the served regions) | [`ecs`] |
//! | RAM | GetRole, CreateRole, UpdateRole, DeleteRole, AttachPolicyToRole, DetachPolicyFromRole, ListPoliciesForRole, CreatePolicy, GetPolicy | [`ram`] |
//! | STS | AssumeRole, GetCallerIdentity | [`sts`] |
//!
//! What applies to every ECS operation (DryRun, ClientToken, bounds, timing) is in [`ecs`]; the RPC gateway's
//! signatures (ACS3-HMAC-SHA256 and RPC V1), timestamps, nonces and security tokens are in [`rpc`]; the listener's
//! connection limits in the `server` module; the admin API (`/_emulator/...`) on [`RunningEmulator::admin_secret`].

pub mod body;
pub mod config;
pub mod ecs;
pub mod ram;
pub mod services;
pub mod sts;
pub use imgport_wire::crc64;
pub mod credentials;
pub mod faults;
#[doc(hidden)]
pub mod fuzzing;
pub mod log;
pub mod oss;
pub mod rpc;
mod server;
pub mod state;
pub mod util;
pub mod xml;

pub use config::{EmulatorConfig, FileConfig};
pub use credentials::{CredentialStore, TemporaryCredential};
pub use faults::{Fault, FaultConfig, FaultRule};
pub use log::{LogEntry, LogSink};
pub use rpc::{Params, RpcContext, RpcError, RpcResult, RpcService};
pub use services::{Cloud, CloudSettings};
pub use state::EmulatorState;

use imgport_auth::Credentials;
use serde::{Deserialize, Serialize};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// Starts emulators.
pub struct Emulator;

/// How long [`RunningEmulator::shutdown`] waits for the background threads to end.
pub const SHUTDOWN_WORKER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A running emulator; stops when dropped or on [`RunningEmulator::shutdown`].
pub struct RunningEmulator {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`: the OSS endpoint (path style; `http://BUCKET.localhost:PORT` works too).
    pub oss_endpoint: String,
    /// The same listener, for ECS, RAM and STS.
    pub ecs_endpoint: String,
    pub regions: Vec<String>,
    /// The long-term key pair the emulator accepts.
    pub credentials: Credentials,
    /// The admin API's secret: send `Authorization: Bearer SECRET` with every `/_emulator/...` request.
    pub admin_secret: String,
    state: Arc<EmulatorState>,
    shutdown: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Serialize, Deserialize)]
struct SavedKey {
    access_key_id: String,
    access_key_secret: String,
}

/// The configured key pair, or the one generated on an earlier run with this data folder, or a new one.
fn resolve_keys(config: &EmulatorConfig) -> io::Result<(String, String)> {
    if let (Some(id), Some(secret)) = (&config.access_key_id, &config.access_key_secret) {
        return Ok((id.clone(), secret.clone()));
    }
    let path = config.data_dir.join("access-key.json");
    if let Ok(data) = std::fs::read(&path) {
        if let Ok(k) = serde_json::from_slice::<SavedKey>(&data) {
            return Ok((k.access_key_id, k.access_key_secret));
        }
    }
    let (id, secret) = credentials::generate_key_pair();
    let data = serde_json::to_vec_pretty(&SavedKey { access_key_id: id.clone(), access_key_secret: secret.clone() })
        .map_err(io::Error::other)?;
    util::write_private(&path, &data)?;
    Ok((id, secret))
}

/// The configured admin secret, or the one kept in `DATA/admin-secret` from an earlier run, or a new one.
fn resolve_admin_secret(config: &EmulatorConfig) -> io::Result<String> {
    if let Some(s) = config.admin_secret.as_ref().filter(|s| !s.is_empty()) {
        return Ok(s.clone());
    }
    let path = config.data_dir.join("admin-secret");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let text = text.trim();
        if text.len() >= 32 && text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(text.to_string());
        }
    }
    let secret = util::random_alnum(40);
    util::write_private(
        &path,
        format!(
            "{secret}
"
        )
        .as_bytes(),
    )?;
    Ok(secret)
}

impl Emulator {
    /// Opens the state, binds the listener and serves on a background thread with its own runtime.
    pub fn start(config: EmulatorConfig) -> io::Result<RunningEmulator> {
        if config.regions.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "at least one region is needed"));
        }
        if config.max_connections == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "max_connections must be at least 1"));
        }
        // Objects, keys and state are the user's alone: the folder is 0700 and every file in it 0600, including
        // what older versions left readable.
        util::create_private_dir_all(&config.data_dir)?;
        util::tighten_tree(&config.data_dir)?;
        let (ak, sk) = resolve_keys(&config)?;
        let admin_secret = resolve_admin_secret(&config)?;
        let creds = credentials::CredentialStore::open(&ak, &sk, Some(&config.data_dir))?;
        let store = oss::store::Store::open(&config.data_dir)?;
        let state = Arc::new(EmulatorState {
            regions: config.regions.clone(),
            account_id: config.account_id.clone(),
            data_dir: config.data_dir.clone(),
            store: Arc::new(store),
            credentials: Arc::new(creds),
            faults: faults::Faults::new(config.faults.clone()),
            log: log::RequestLog::new(config.log_sink.clone()),
            max_put_size: config.max_put_size,
            idle_timeout: config.idle_timeout,
            background: Default::default(),
        });
        let listener = std::net::TcpListener::bind(config.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("imgport-emulator")
            .enable_all()
            .build()?;
        // Registered with the runtime here, so that a failure is `start`'s error rather than the server thread's.
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let (tx, rx) = watch::channel(false);
        let server = Arc::new(server::Server {
            state: state.clone(),
            router: config.rpc.clone(),
            nonces: Default::default(),
            addr,
            admin_secret: admin_secret.clone(),
            unverified: Default::default(),
        });
        let limits = server::Limits {
            max_connections: config.max_connections,
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
        };
        let thread = std::thread::Builder::new().name("imgport-emulator".into()).spawn(move || {
            runtime.block_on(server::accept_loop(listener, server, limits, rx));
            runtime.shutdown_timeout(std::time::Duration::from_secs(2));
        })?;
        let url = format!("http://{addr}");
        Ok(RunningEmulator {
            addr,
            oss_endpoint: url.clone(),
            ecs_endpoint: url,
            regions: config.regions,
            credentials: Credentials::new(ak, sk),
            admin_secret,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }
}

impl RunningEmulator {
    /// The default region.
    pub fn region(&self) -> &str {
        self.state.default_region()
    }

    /// The shared state (store, credentials, faults, log).
    pub fn state(&self) -> &Arc<EmulatorState> {
        &self.state
    }

    /// Replaces the fault configuration.
    pub fn set_faults(&self, faults: FaultConfig) {
        self.state.faults.set(faults);
    }

    pub fn faults(&self) -> FaultConfig {
        self.state.faults.get()
    }

    /// Issues temporary credentials valid for `duration_seconds` (as STS AssumeRole will).
    pub fn issue_temporary_credentials(&self, duration_seconds: i64) -> io::Result<TemporaryCredential> {
        self.state.credentials.issue_temporary(self.state.now(), duration_seconds)
    }

    pub fn add_temporary_credentials(&self, cred: TemporaryCredential) -> io::Result<()> {
        self.state.credentials.add_temporary(cred, self.state.now())
    }

    /// The most recent request log records.
    pub fn request_log(&self) -> Vec<LogEntry> {
        self.state.log.entries()
    }

    /// Stops accepting, lets open requests finish (up to a few seconds), waits for the server thread, then stops
    /// the background imports and copies: from then on nothing writes the data folder's state, so a later emulator
    /// on the same folder resumes the unfinished work from what was saved. It waits up to
    /// [`SHUTDOWN_WORKER_WAIT`] for the background threads to end (one busy reading a large object ends at its
    /// next step, writing nothing).
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Background threads (imports, copies) still running.
    pub fn background_threads(&self) -> usize {
        self.state.background.running()
    }

    fn stop(&mut self) {
        // Once only: `shutdown` stops, then the drop that follows finds nothing left to do.
        let running = self.shutdown.is_some() || self.thread.is_some();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if running {
            self.state.background.stop(SHUTDOWN_WORKER_WAIT);
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        self.stop();
    }
}
