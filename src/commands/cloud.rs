//! Which cloud a command talks to, shared by `import`, `images` and `instance`: Alibaba Cloud with the default
//! credential chain (or what the `IMGPORT_*_ENDPOINT` variables point at), or the built-in local cloud run in this
//! process.

use imgport_auth::endpoints::{self, OssNetwork, Service};
use imgport_auth::provider::{system_clock, CredentialsProvider, DefaultChain, Static};
use imgport_auth::rpc::{RpcClient, Style};
use imgport_auth::Env;
use imgport_cloud::role::Ram;
use imgport_cloud::Ecs;
use imgport_pipeline::import::Clouds;
use imgport_storage::{Client, Flavor, StoreConfig};
use std::path::PathBuf;
use std::sync::Arc;

/// `--cloud` and `--region`.
#[derive(clap::Args, Clone)]
pub struct CloudArgs {
    /// `alibaba` (default), or `local`: the built-in local cloud, no account needed.
    #[arg(long, global = true, default_value = "alibaba", value_parser = ["alibaba", "local"])]
    pub cloud: String,
    /// Region [default: ALIBABA_CLOUD_REGION_ID, else cn-hangzhou]; `images retain` takes several.
    #[arg(long, global = true)]
    pub region: Vec<String>,
}

impl CloudArgs {
    /// `--region`, else `ALIBABA_CLOUD_REGION_ID`, else cn-hangzhou. A region id becomes part of endpoint host
    /// names, so anything but the shape of one (`cn-hangzhou`, `ap-southeast-1`) is refused.
    pub fn region(&self, env: &Env) -> Result<String, String> {
        if self.region.len() > 1 {
            return Err(format!(
                "--region given {} times: only `imgport images retain` takes several",
                self.region.len()
            ));
        }
        Ok(self.regions(env)?.remove(0))
    }

    /// Every `--region`, each once in their order (at least one: the default as for [`CloudArgs::region`]).
    pub fn regions(&self, env: &Env) -> Result<Vec<String>, String> {
        let mut given = self.region.clone();
        if given.is_empty() {
            given.push(
                env.get("ALIBABA_CLOUD_REGION_ID").map(str::to_string).unwrap_or_else(|| "cn-hangzhou".to_string()),
            );
        }
        let mut out: Vec<String> = Vec::new();
        for r in given {
            let r = shaped_region(r)?;
            if !out.contains(&r) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The clients, and the local cloud when that is the one (it runs while the value lives). `bucket` is the
    /// import's bucket (the local cloud has its own).
    pub fn connect(&self, bucket: Option<&str>) -> Result<(Option<LocalCloud>, Clouds), String> {
        let env = Env::from_process();
        let region = self.region(&env)?;
        if self.cloud == "local" {
            let local = LocalCloud::start(&region)?;
            let clouds = local.clouds(&region)?;
            return Ok((Some(local), clouds));
        }
        // Commands that do not upload still need a store value: it is never used without a bucket.
        let bucket = bucket.unwrap_or("");
        Ok((None, alibaba_clouds(&region, bucket, &env)?))
    }
}

/// A region id becomes part of endpoint host names, so anything but the shape of one is refused.
fn shaped_region(r: String) -> Result<String, String> {
    let shaped = r.len() <= 64
        && r.split('-').count() >= 2
        && r.split('-').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    if !shaped {
        return Err(format!("{r:?} is not a region id (like cn-hangzhou or ap-southeast-1)"));
    }
    Ok(r)
}

/// The regions the local cloud serves besides the import's, so `--copy-to` has somewhere to go.
const LOCAL_REGIONS: [&str; 4] = ["cn-hangzhou", "cn-shanghai", "cn-beijing", "ap-southeast-1"];
const LOCAL_BUCKET: &str = "imgport-local";
/// A file with the local cloud's `cloud` settings and `faults` (the format of `emulator serve --config`).
pub const LOCAL_CONFIG_VAR: &str = "IMGPORT_LOCAL_CLOUD_CONFIG";

/// `$XDG_DATA_HOME/imgport/NAME` (or `~/.local/share/imgport/NAME`; `.imgport-NAME` with neither set): where
/// the emulator and the local cloud keep their state.
pub fn data_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".local/share")));
    match base {
        Some(b) => b.join("imgport").join(name),
        None => PathBuf::from(format!(".imgport-{name}")),
    }
}

/// The local cloud's state folder.
pub fn local_cloud_dir() -> PathBuf {
    data_dir("local-cloud")
}

/// The local cloud, running in this process for as long as the value lives; its folder is locked so that two
/// imgport processes never run it on the same state at once (the second waits).
pub struct LocalCloud {
    pub emulator: imgport_emulator::RunningEmulator,
    _lock: std::fs::File,
}

impl LocalCloud {
    pub fn start(region: &str) -> Result<LocalCloud, String> {
        let dir = local_cloud_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let lock_path = dir.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            note!("imgport: the local cloud is in use by another imgport process; waiting for it");
            // SAFETY: as above; blocks until the other process releases the lock or exits.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(format!("cannot lock {}: {}", lock_path.display(), std::io::Error::last_os_error()));
            }
        }
        let mut regions = vec![region.to_string()];
        regions.extend(LOCAL_REGIONS.iter().filter(|r| **r != region).map(|r| r.to_string()));
        let mut settings =
            imgport_emulator::CloudSettings { import_seconds: 2.0, seed_import_role: true, ..Default::default() };
        let mut faults = imgport_emulator::faults::FaultConfig::default();
        // Timing and fault injection for demos and tests, in `emulator serve --config`'s format; only its
        // `cloud` and `faults` sections apply (the folder, regions and keys stay the local cloud's own).
        if let Some(path) = std::env::var_os(LOCAL_CONFIG_VAR).filter(|p| !p.is_empty()) {
            let file = imgport_emulator::FileConfig::load_over(std::path::Path::new(&path), &settings)
                .map_err(|e| format!("{LOCAL_CONFIG_VAR}: {e}"))?;
            settings = file.cloud.unwrap_or(settings);
            faults = file.faults.unwrap_or_default();
        }
        let mut cfg = imgport_emulator::EmulatorConfig::new(&dir).cloud(settings);
        cfg.regions = regions;
        cfg.faults = faults;
        let emulator =
            imgport_emulator::Emulator::start(cfg).map_err(|e| format!("cannot start the local cloud: {e}"))?;
        Ok(LocalCloud { emulator, _lock: lock })
    }

    /// Clients of the local cloud's ECS, RAM and OSS, signed with its own key.
    pub fn clouds(&self, region: &str) -> Result<Clouds, String> {
        let emu = &self.emulator;
        let creds: Arc<dyn CredentialsProvider> = Arc::new(Static::new(emu.credentials.clone(), "local cloud"));
        let endpoint = endpoints::Endpoint::parse(&emu.ecs_endpoint)?;
        let ecs = rpc(Service::Ecs, imgport_cloud::ecs::VERSION, endpoint.clone(), Style::Acs3, creds.clone())?;
        let ram = rpc(Service::Ram, imgport_cloud::role::VERSION, endpoint, Style::RpcV1, creds.clone())?;
        let oss = endpoints::Endpoint::parse(&emu.oss_endpoint)?;
        let store = Client::new(StoreConfig {
            flavor: Flavor::OssV4,
            style: endpoints::BucketStyle::default_for(&oss),
            endpoint: oss,
            region: region.to_string(),
            bucket: LOCAL_BUCKET.to_string(),
            credentials: creds,
        })
        .map_err(|e| e.to_string())?;
        Ok(Clouds {
            ecs: Ecs::new(ecs, region),
            ram: Ram::new(ram),
            store: Arc::new(store),
            bucket: LOCAL_BUCKET.to_string(),
            store_id: Some(format!("imgport-local-cloud:{}", local_cloud_dir().display())),
        })
    }
}

fn rpc(
    service: Service,
    version: &str,
    endpoint: endpoints::Endpoint,
    style: Style,
    creds: Arc<dyn CredentialsProvider>,
) -> Result<RpcClient, String> {
    Ok(RpcClient::new(service, version, endpoint, style, system_clock())
        .map_err(|e| e.to_string())?
        .with_credentials(creds))
}

/// Clients of Alibaba Cloud (or of what the `IMGPORT_*_ENDPOINT` variables point at) with the default
/// credential chain.
fn alibaba_clouds(region: &str, bucket: &str, env: &Env) -> Result<Clouds, String> {
    let creds: Arc<dyn CredentialsProvider> = Arc::new(DefaultChain::new(env.clone()));
    let ecs_endpoint = endpoints::resolve(Service::Ecs, Some(region), OssNetwork::Public, None, env)?;
    let ram_endpoint = endpoints::resolve(Service::Ram, Some(region), OssNetwork::Public, None, env)?;
    let ecs = rpc(Service::Ecs, imgport_cloud::ecs::VERSION, ecs_endpoint, Style::Acs3, creds.clone())?;
    let ram = rpc(Service::Ram, imgport_cloud::role::VERSION, ram_endpoint, Style::RpcV1, creds.clone())?;
    let oss = endpoints::resolve(Service::Oss, Some(region), OssNetwork::Public, None, env)?;
    let store = Client::new(StoreConfig {
        flavor: Flavor::OssV4,
        style: endpoints::BucketStyle::default_for(&oss),
        endpoint: oss,
        region: region.to_string(),
        bucket: bucket.to_string(),
        credentials: creds,
    })
    .map_err(|e| e.to_string())?;
    for w in store.warnings() {
        note!("imgport: warning: {w}");
    }
    Ok(Clouds {
        ecs: Ecs::new(ecs, region),
        ram: Ram::new(ram),
        store: Arc::new(store),
        bucket: bucket.to_string(),
        store_id: None,
    })
}
