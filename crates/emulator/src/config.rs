//! Emulator settings, in-process and from a TOML or JSON file.

use crate::faults::FaultConfig;
use crate::log::LogSink;
use crate::rpc::{RpcRouter, RpcService};
use crate::services::{Cloud, CloudSettings};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How to run an emulator. Build with [`EmulatorConfig::new`] and adjust the fields.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where the state lives (created if missing).
    pub data_dir: PathBuf,
    /// Served regions; the first is the default.
    pub regions: Vec<String>,
    /// The accepted long-term key pair; generated (and kept in `DATA/access-key.json`) when unset.
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<String>,
    /// The emulated account's id.
    pub account_id: String,
    pub faults: FaultConfig,
    /// Where request records and problems go as they happen (they are kept in memory either way).
    pub log_sink: Option<Arc<dyn LogSink>>,
    /// Largest PutObject / UploadPart body.
    pub max_put_size: u64,
    pub rpc: RpcRouter,
    /// The secret the admin API (`/_emulator/...`) requires as `Authorization: Bearer SECRET`; generated (and
    /// kept in `DATA/admin-secret`) when unset.
    pub admin_secret: Option<String>,
    /// Connections served at once; further ones wait in the listen queue until one closes.
    pub max_connections: usize,
    /// How long a connection may take to send a complete request head, counted from when it is ready for one
    /// (accepted, or its previous answer sent): this also closes idle kept-alive connections.
    pub header_timeout: Duration,
    /// How long a request body may stall (no bytes arriving) and a response may wait for the client to read,
    /// before the connection is closed.
    pub idle_timeout: Duration,
}

impl std::fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("regions", &self.regions)
            .field("access_key_id", &self.access_key_id.as_deref().map(imgport_auth::mask_access_key_id))
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

pub const DEFAULT_REGION: &str = "cn-hangzhou";
pub const DEFAULT_ACCOUNT_ID: &str = "1234567890123456";

impl EmulatorConfig {
    /// Loopback on a free port, state under `data_dir`, region cn-hangzhou, a generated key pair.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            regions: vec![DEFAULT_REGION.to_string()],
            access_key_id: None,
            access_key_secret: None,
            account_id: DEFAULT_ACCOUNT_ID.to_string(),
            faults: FaultConfig::default(),
            log_sink: None,
            max_put_size: 5 << 30,
            rpc: RpcRouter::default(),
            admin_secret: None,
            max_connections: 512,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
        .cloud(CloudSettings::default())
    }

    /// Serves ECS images, RAM roles and STS AssumeRole with these settings (the default configuration already
    /// does, with [`CloudSettings::default`]).
    pub fn cloud(self, settings: CloudSettings) -> Self {
        let service = Arc::new(Cloud::new(settings));
        self.rpc_service(crate::rpc::ECS_VERSION, service.clone())
            .rpc_service(crate::rpc::RAM_VERSION, service.clone())
            .rpc_service(crate::rpc::STS_VERSION, service)
    }

    /// Sets the accepted key pair.
    pub fn with_keys(mut self, access_key_id: &str, access_key_secret: &str) -> Self {
        self.access_key_id = Some(access_key_id.to_string());
        self.access_key_secret = Some(access_key_secret.to_string());
        self
    }

    /// Plugs in the service for an API version (`2014-05-26` ECS, `2015-05-01` RAM, `2015-04-01` STS, ...).
    pub fn rpc_service(mut self, version: &str, service: Arc<dyn RpcService>) -> Self {
        self.rpc.register(version, service);
        self
    }
}

/// The settings a `--config` file may hold; every field is optional and command-line flags win.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data: Option<PathBuf>,
    pub regions: Option<Vec<String>>,
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<String>,
    pub account_id: Option<String>,
    pub max_put_size: Option<u64>,
    /// The admin API's secret (generated and kept in the data folder when unset).
    pub admin_secret: Option<String>,
    /// Connections served at once (512).
    pub max_connections: Option<usize>,
    /// Seconds a connection may take to send a request head, or stay idle between requests (30).
    pub header_timeout_seconds: Option<f64>,
    /// Seconds a request body may stall, or a response wait for the client to read (60).
    pub idle_timeout_seconds: Option<f64>,
    pub faults: Option<FaultConfig>,
    /// ECS/RAM/STS settings: `import_seconds`, `copy_seconds`, `sts_lifetime_cap_seconds`, `seed_import_role`,
    /// `tag_page_size`.
    pub cloud: Option<CloudSettings>,
}

impl FileConfig {
    /// Reads a TOML file, or JSON when the name ends in `.json` or the text starts with `{`.
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
        if json {
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
        } else {
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
        }
    }

    /// [`FileConfig::load`], with the file's `cloud` settings laid over `base` field by field (a field the file
    /// leaves out keeps `base`'s value instead of the default), for an embedder with defaults of its own.
    pub fn load_over(path: &Path, base: &CloudSettings) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
        let mut value: serde_json::Value = if json {
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        } else {
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        };
        if let Some(serde_json::Value::Object(given)) = value.get("cloud").cloned() {
            let mut merged = serde_json::to_value(base).map_err(|e| e.to_string())?;
            if let serde_json::Value::Object(m) = &mut merged {
                m.extend(given);
            }
            if let serde_json::Value::Object(top) = &mut value {
                top.insert("cloud".into(), merged);
            }
        }
        serde_json::from_value(value).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Applies the file's settings to a configuration.
    pub fn apply(self, cfg: &mut EmulatorConfig) {
        if let Some(l) = self.listen {
            cfg.listen = l;
        }
        if let Some(d) = self.data {
            cfg.data_dir = d;
        }
        if let Some(r) = self.regions.filter(|r| !r.is_empty()) {
            cfg.regions = r;
        }
        if self.access_key_id.is_some() {
            cfg.access_key_id = self.access_key_id;
        }
        if self.access_key_secret.is_some() {
            cfg.access_key_secret = self.access_key_secret;
        }
        if let Some(a) = self.account_id {
            cfg.account_id = a;
        }
        if let Some(m) = self.max_put_size {
            cfg.max_put_size = m;
        }
        if self.admin_secret.is_some() {
            cfg.admin_secret = self.admin_secret;
        }
        if let Some(n) = self.max_connections {
            cfg.max_connections = n;
        }
        let seconds = |s: f64| Duration::try_from_secs_f64(s.clamp(0.001, 86_400.0)).ok();
        if let Some(t) = self.header_timeout_seconds.and_then(seconds) {
            cfg.header_timeout = t;
        }
        if let Some(t) = self.idle_timeout_seconds.and_then(seconds) {
            cfg.idle_timeout = t;
        }
        if let Some(f) = self.faults {
            cfg.faults = f;
        }
        if let Some(c) = self.cloud {
            *cfg = std::mem::replace(cfg, EmulatorConfig::new(PathBuf::new())).cloud(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = dir.path().join("emu.toml");
        std::fs::write(
            &t,
            "listen = \"127.0.0.1:9999\"\nregions = [\"cn-shanghai\", \"cn-beijing\"]\n[faults]\nseed = 3\n[[faults.rules]]\noperation = \"UploadPart\"\nkind = \"internal_error\"\nrate = 0.1\n",
        )
        .expect("write");
        let mut cfg = EmulatorConfig::new("/tmp/x");
        FileConfig::load(&t).expect("toml loads").apply(&mut cfg);
        assert_eq!(cfg.listen.port(), 9999);
        assert_eq!(cfg.regions, vec!["cn-shanghai", "cn-beijing"]);
        assert_eq!(cfg.faults.seed, 3);
        let j = dir.path().join("emu.json");
        std::fs::write(&j, r#"{"faults": {"clock_skew_seconds": 1200}}"#).expect("write");
        FileConfig::load(&j).expect("json loads").apply(&mut cfg);
        assert_eq!(cfg.faults.clock_skew_seconds, 1200);
        std::fs::write(&t, "[cloud]\nimport_seconds = 1.5\ncopy_seconds = 0.5\nseed_import_role = true\n")
            .expect("write");
        let file = FileConfig::load(&t).expect("toml loads");
        let cloud = file.cloud.clone().expect("cloud section");
        assert_eq!((cloud.import_seconds, cloud.seed_import_role, cloud.sts_lifetime_cap_seconds), (1.5, true, None));
        assert_eq!(cloud.copy_seconds, Some(0.5));
        file.apply(&mut cfg);
        assert_eq!(cfg.listen.port(), 9999, "applying cloud settings keeps the rest");
        std::fs::write(&t, "max_connections = 16\nheader_timeout_seconds = 2.5\nidle_timeout_seconds = 10\n")
            .expect("write");
        FileConfig::load(&t).expect("toml loads").apply(&mut cfg);
        assert_eq!(cfg.max_connections, 16);
        assert_eq!(cfg.header_timeout, Duration::from_millis(2500));
        assert_eq!(cfg.idle_timeout, Duration::from_secs(10));
        std::fs::write(&j, r#"{"bogus": 1}"#).expect("write");
        assert!(FileConfig::load(&j).is_err());
    }
}
