//! The state every service shares: the OSS store, the accepted credentials, the fault rules, the request log,
//! the clock and the regions served.

use crate::credentials::CredentialStore;
use crate::faults::Faults;
use crate::log::RequestLog;
use crate::oss::store::Store;
use std::path::PathBuf;
use std::sync::Arc;

/// Shared by all requests; handed to RPC services through [`crate::rpc::RpcContext`].
pub struct EmulatorState {
    /// Served regions; the first is the default (where a bucket goes when nothing else says).
    pub regions: Vec<String>,
    /// The emulated account's id (bucket owner, image owner).
    pub account_id: String,
    pub data_dir: PathBuf,
    pub store: Arc<Store>,
    pub credentials: Arc<CredentialStore>,
    pub faults: Faults,
    pub log: RequestLog,
    /// The largest body a single PutObject or UploadPart accepts (5 GiB, as OSS).
    pub max_put_size: u64,
    /// How long a request body may stall before the connection is closed.
    pub idle_timeout: std::time::Duration,
}

impl EmulatorState {
    /// The server's clock: the real time plus any injected skew (unix seconds).
    pub fn now(&self) -> i64 {
        imgport_auth::time::now() + self.faults.clock_skew()
    }

    pub fn default_region(&self) -> &str {
        self.regions.first().map(String::as_str).unwrap_or("cn-hangzhou")
    }

    pub fn serves_region(&self, region: &str) -> bool {
        self.regions.iter().any(|r| r == region)
    }
}
