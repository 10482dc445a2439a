//! Which cloud a command talks to, shared by `import`, `images` and `instance`: Alibaba Cloud with the default
//! credential chain (or what the `IMGPORT_*_ENDPOINT` variables point at), or the built-in local cloud, which one
//! imgport process serves for all that use it at the time ([`LocalCloud`]).

use imgport_auth::endpoints::{self, OssNetwork, Service};
use imgport_auth::provider::{system_clock, CredentialsProvider, DefaultChain, Static};
use imgport_auth::rpc::{RpcClient, Style};
use imgport_auth::Credentials;
use imgport_auth::Env;
use imgport_cloud::role::Ram;
use imgport_cloud::Ecs;
use imgport_pipeline::import::Clouds;
use imgport_storage::{Client, Flavor, StoreConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// import's bucket (the local cloud has its own); the store is on the given OSS network
    /// (`IMGPORT_OSS_ENDPOINT` still wins). Commands run through [`with_clouds`], which calls this.
    pub fn connect(&self, bucket: Option<&str>, network: OssNetwork) -> Result<(Option<LocalCloud>, Clouds), String> {
        let env = Env::from_process();
        let region = self.region(&env)?;
        if self.cloud == "local" {
            let local = LocalCloud::start(&region)?;
            let clouds = local.clouds(&region)?;
            return Ok((Some(local), clouds));
        }
        // Commands that do not upload still need a store value: it is never used without a bucket.
        let bucket = bucket.unwrap_or("");
        Ok((None, alibaba_clouds(&region, bucket, network, &env)?))
    }
}

/// How long the instance metadata service may take to say which region imgport runs in.
const IMDS_TIMEOUT: Duration = Duration::from_secs(1);

/// What a command on a cloud needs besides `--cloud` and `--region`.
#[derive(Default)]
pub struct Connect<'a> {
    /// The bucket an upload goes through (unset: the command uploads nothing).
    pub bucket: Option<&'a str>,
    /// `--oss-internal`.
    pub oss_internal: bool,
}

/// Runs `f` on the network runtime with the clients connected (the local cloud served meanwhile, its bucket
/// created) and a flag a signal sets; answers `f`'s exit code, or 1 when the runtime or the connection cannot be
/// had (the error printed). A command that uploads gets the OSS internal endpoint where it applies, with the
/// endpoint chosen printed. `import`, `images`, `instance` and `pipeline` all run this way.
pub fn with_clouds<F, Fut>(cloud: &CloudArgs, connect: Connect<'_>, f: F) -> u8
where
    F: FnOnce(Clouds, tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = u8>,
{
    let rt = match super::upload::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("imgport: error: {e}");
            return 1;
        }
    };
    let env = Env::from_process();
    let network = match (cloud.cloud.as_str(), connect.bucket) {
        ("local", _) => {
            if connect.oss_internal {
                note!("imgport: note: --oss-internal is ignored with --cloud local (its store is on this machine)");
            }
            OssNetwork::Public
        }
        (_, None) => OssNetwork::Public,
        (_, Some(_)) => {
            let region = match cloud.region(&env) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("imgport: error: {e}");
                    return 2;
                }
            };
            let (network, why) = rt.block_on(endpoints::oss_network(&region, connect.oss_internal, &env, IMDS_TIMEOUT));
            let endpoint = endpoints::resolve(Service::Oss, Some(&region), network, None, &env)
                .map(|e| e.url())
                .unwrap_or_default();
            note!("imgport: oss        {endpoint} ({why})");
            network
        }
    };
    let (local, clouds) = match cloud.connect(connect.bucket, network) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imgport: error: {e}");
            return 1;
        }
    };
    if local.is_some() {
        // The local cloud's own bucket in the region.
        let _ = rt.block_on(clouds.store.create_bucket());
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    let code = rt.block_on(async {
        tokio::spawn(async move {
            crate::signals::wait().await;
            let _ = tx.send(true);
        });
        f(clouds, rx).await
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    if let Some(l) = local {
        l.shutdown();
    }
    code
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
/// The local cloud's bucket in `region`: one per region, as ECS imports only from a bucket in its own region
/// (`imgport-local` in the first region, as before, so existing state keeps its bucket).
fn local_bucket(region: &str) -> String {
    if region == LOCAL_REGIONS[0] {
        "imgport-local".to_string()
    } else {
        format!("imgport-local-{region}")
    }
}
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

/// The local cloud, shared by every imgport process on the same folder: the first process to take the folder's
/// lock serves it (the emulator in-process, on a loopback port) and writes where in `server.json`; the others
/// connect to that server instead of waiting for the lock, so a command never waits for another's import.
///
/// Only the process holding the lock runs the emulator, so its state files are never written by two processes. A
/// client also keeps a thread waiting for the lock: when the serving process ends (its own command done), a
/// waiting client takes the lock and serves the same state on the same address, and the requests that failed in
/// the gap are retried by the shared retry policy. Should the address be taken meanwhile, the client's requests
/// fail with a transport error naming it.
pub struct LocalCloud {
    /// Where the local cloud answers, and the key it accepts.
    pub server: ServerInfo,
    /// The emulator this process serves, if it does (from the start, or after taking over).
    served: Arc<Mutex<Served>>,
}

/// What `server.json` holds (0600, in the 0700 folder): the serving process's address and the local cloud's
/// keys, which are generated per folder and are what its own `access-key.json` and `admin-secret` hold.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct ServerInfo {
    pub address: std::net::SocketAddr,
    pub pid: u32,
    pub access_key_id: String,
    pub access_key_secret: String,
    pub admin_secret: String,
}

impl std::fmt::Debug for ServerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerInfo").field("address", &self.address).field("pid", &self.pid).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Served {
    emulator: Option<imgport_emulator::RunningEmulator>,
    /// The folder's lock, held for as long as `emulator` runs (and released after it stops).
    lock: Option<std::fs::File>,
    /// Set when this process is done with the local cloud: a waiting thread that takes the lock then lets it go.
    closing: bool,
}

/// How long a process waits for the local cloud when its lock is held but nothing answers at the address in
/// `server.json` (a serving process starting up, or one that is stuck).
const LOCAL_WAIT: Duration = Duration::from_secs(30);
/// How long the check that a served local cloud answers may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const SERVER_FILE: &str = "server.json";

impl LocalCloud {
    pub fn start(region: &str) -> Result<LocalCloud, String> {
        let dir = local_cloud_dir();
        imgport_emulator::util::create_private_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let lock_path = dir.join("lock");
        let began = Instant::now();
        let mut said = false;
        loop {
            let lock = open_lock(&lock_path)?;
            if try_lock(&lock, &lock_path)? {
                let served = Arc::new(Mutex::new(Served::default()));
                let server = serve(&dir, region, lock, &mut lock_served(&served))?;
                return Ok(LocalCloud { server, served });
            }
            drop(lock);
            let answer = read_server_file(&dir).map(|info| (probe(&info), info));
            match answer {
                Some((Ok(regions), info)) => {
                    if !regions.iter().any(|r| r == region) {
                        return Err(format!(
                            "the local cloud is served by another imgport process (pid {}), which does not serve \
                             region {region} (it serves {}); run this command with one of those or once it ends",
                            info.pid,
                            regions.join(", ")
                        ));
                    }
                    let served = Arc::new(Mutex::new(Served::default()));
                    let waiting = served.clone();
                    let (d, r, p) = (dir.clone(), region.to_string(), lock_path.clone());
                    std::thread::Builder::new()
                        .name("imgport-local-cloud".into())
                        .spawn(move || take_over(&d, &r, &p, &waiting))
                        .map_err(|e| format!("cannot start a thread: {e}"))?;
                    return Ok(LocalCloud { server: info, served });
                }
                Some((Err(e), info)) if began.elapsed() >= LOCAL_WAIT => {
                    return Err(format!(
                        "the local cloud in {} is locked by another imgport process, and nothing answers at {} (pid \
                         {} wrote it): {e}; waited {}s. End that process, or wait for it to finish",
                        dir.display(),
                        info.address,
                        info.pid,
                        LOCAL_WAIT.as_secs()
                    ))
                }
                None if began.elapsed() >= LOCAL_WAIT => {
                    return Err(format!(
                        "the local cloud in {} is locked by another imgport process that has not said where it \
                         serves; waited {}s. End that process, or wait for it to finish",
                        dir.display(),
                        LOCAL_WAIT.as_secs()
                    ))
                }
                _ => {
                    if !said && began.elapsed() >= Duration::from_secs(2) {
                        note!(
                            "imgport: the local cloud is locked by another imgport process; waiting for it to answer"
                        );
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Stops the emulator this process serves, if any (letting open requests finish), then releases the lock; a
    /// process connected to it takes over.
    pub fn shutdown(self) {
        drop(self);
    }

    /// Clients of the local cloud's ECS, RAM and OSS, signed with its own key.
    pub fn clouds(&self, region: &str) -> Result<Clouds, String> {
        let key = Credentials::new(self.server.access_key_id.clone(), self.server.access_key_secret.as_str());
        let creds: Arc<dyn CredentialsProvider> = Arc::new(Static::new(key, "local cloud"));
        let url = format!("http://{}", self.server.address);
        let endpoint = endpoints::Endpoint::parse(&url)?;
        let ecs = rpc(Service::Ecs, imgport_cloud::ecs::VERSION, endpoint.clone(), Style::Acs3, creds.clone())?;
        let ram = rpc(Service::Ram, imgport_cloud::role::VERSION, endpoint.clone(), Style::RpcV1, creds.clone())?;
        let oss = endpoint;
        let store = Client::new(StoreConfig {
            flavor: Flavor::OssV4,
            style: endpoints::BucketStyle::default_for(&oss),
            endpoint: oss,
            region: region.to_string(),
            bucket: local_bucket(region),
            credentials: creds,
        })
        .map_err(|e| e.to_string())?;
        Ok(Clouds {
            ecs: Ecs::new(ecs, region),
            ram: Ram::new(ram),
            store: Arc::new(store),
            bucket: local_bucket(region),
            store_id: Some(format!("imgport-local-cloud:{}", local_cloud_dir().display())),
        })
    }
}

impl Drop for LocalCloud {
    fn drop(&mut self) {
        let (emulator, lock) = {
            let mut s = lock_served(&self.served);
            s.closing = true;
            (s.emulator.take(), s.lock.take())
        };
        // The emulator stops (and with it every state write) before the lock lets another process serve.
        if let Some(e) = emulator {
            e.shutdown();
        }
        drop(lock);
    }
}

fn lock_served(s: &Mutex<Served>) -> std::sync::MutexGuard<'_, Served> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_lock(path: &Path) -> Result<std::fs::File, String> {
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).truncate(false).write(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// Takes the lock if it is free; false when another process holds it.
fn try_lock(lock: &std::fs::File, path: &Path) -> Result<bool, String> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor the caller owns.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(false);
    }
    Err(format!("cannot lock {}: {e}", path.display()))
}

/// Starts the emulator on the folder (its lock held): on the address of the previous server when that is free, so
/// that processes still connected to it carry on, else on a new loopback port; then says where in `server.json`.
fn serve(dir: &Path, region: &str, lock: std::fs::File, served: &mut Served) -> Result<ServerInfo, String> {
    let previous = read_server_file(dir).map(|i| i.address).filter(|a| a.ip().is_loopback());
    let emulator = match previous {
        Some(addr) => match start_emulator(dir, region, addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                start_emulator(dir, region, std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            }
            other => other,
        },
        None => start_emulator(dir, region, std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
    }
    .map_err(|e| format!("cannot start the local cloud: {e}"))?;
    let info = ServerInfo {
        address: emulator.addr,
        pid: std::process::id(),
        access_key_id: emulator.credentials.access_key_id.clone(),
        access_key_secret: emulator.credentials.access_key_secret.expose().to_string(),
        admin_secret: emulator.admin_secret.clone(),
    };
    let path = dir.join(SERVER_FILE);
    let tmp = dir.join(format!("{SERVER_FILE}.{}.tmp", std::process::id()));
    let data = serde_json::to_vec_pretty(&info).map_err(|e| e.to_string())?;
    imgport_emulator::util::write_private(&tmp, &data)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    served.emulator = Some(emulator);
    served.lock = Some(lock);
    Ok(info)
}

/// A client's standby: waits for the lock (the serving process ending) and then serves the local cloud itself,
/// unless this process is done with it by then.
fn take_over(dir: &Path, region: &str, lock_path: &Path, served: &Mutex<Served>) {
    use std::os::fd::AsRawFd;
    let Ok(lock) = open_lock(lock_path) else { return };
    // SAFETY: flock on a file descriptor this function owns; blocks until the serving process lets go.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return;
    }
    let mut s = lock_served(served);
    if s.closing {
        return;
    }
    if let Err(e) = serve(dir, region, lock, &mut s) {
        note!("imgport: the process serving the local cloud ended, and this one cannot take over: {e}");
    }
}

fn read_server_file(dir: &Path) -> Option<ServerInfo> {
    let data = std::fs::read(dir.join(SERVER_FILE)).ok()?;
    serde_json::from_slice(&data).ok()
}

/// Asks the local cloud at `info.address` for its health (the admin API, with the folder's admin secret, so that
/// only this folder's emulator passes); answers the regions it serves.
fn probe(info: &ServerInfo) -> Result<Vec<String>, String> {
    use std::io::{Read, Write};
    if !info.address.ip().is_loopback() {
        return Err(format!("{} is not a loopback address", info.address));
    }
    let mut s = std::net::TcpStream::connect_timeout(&info.address, PROBE_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(PROBE_TIMEOUT)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(PROBE_TIMEOUT)).map_err(|e| e.to_string())?;
    let request = format!(
        "GET /_emulator/health HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        info.address, info.admin_secret
    );
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    s.take(64 << 10).read_to_end(&mut reply).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("answered {}", head.lines().next().unwrap_or("")));
    }
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("not the local cloud: {e}"))?;
    Ok(v["regions"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(str::to_string)).collect())
}

/// The emulator on the local cloud's folder, listening on `listen`, with the import's region first.
fn start_emulator(
    dir: &Path,
    region: &str,
    listen: std::net::SocketAddr,
) -> std::io::Result<imgport_emulator::RunningEmulator> {
    let mut regions = vec![region.to_string()];
    regions.extend(LOCAL_REGIONS.iter().filter(|r| **r != region).map(|r| r.to_string()));
    let mut settings =
        imgport_emulator::CloudSettings { import_seconds: 2.0, seed_import_role: true, ..Default::default() };
    let mut faults = imgport_emulator::faults::FaultConfig::default();
    // Timing and fault injection for demos and tests, in `emulator serve --config`'s format; only its
    // `cloud` and `faults` sections apply (the folder, regions and keys stay the local cloud's own). They are the
    // serving process's: a process that connects to another's local cloud gets that one's.
    if let Some(path) = std::env::var_os(LOCAL_CONFIG_VAR).filter(|p| !p.is_empty()) {
        let file = imgport_emulator::FileConfig::load_over(Path::new(&path), &settings)
            .map_err(|e| std::io::Error::other(format!("{LOCAL_CONFIG_VAR}: {e}")))?;
        settings = file.cloud.unwrap_or(settings);
        faults = file.faults.unwrap_or_default();
    }
    let mut cfg = imgport_emulator::EmulatorConfig::new(dir).cloud(settings);
    cfg.regions = regions;
    cfg.faults = faults;
    cfg.listen = listen;
    imgport_emulator::Emulator::start(cfg)
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
fn alibaba_clouds(region: &str, bucket: &str, network: OssNetwork, env: &Env) -> Result<Clouds, String> {
    let creds: Arc<dyn CredentialsProvider> = Arc::new(DefaultChain::new(env.clone()));
    let ecs_endpoint = endpoints::resolve(Service::Ecs, Some(region), OssNetwork::Public, None, env)?;
    let ram_endpoint = endpoints::resolve(Service::Ram, Some(region), OssNetwork::Public, None, env)?;
    let ecs = rpc(Service::Ecs, imgport_cloud::ecs::VERSION, ecs_endpoint, Style::Acs3, creds.clone())?;
    let ram = rpc(Service::Ram, imgport_cloud::role::VERSION, ram_endpoint, Style::RpcV1, creds.clone())?;
    let oss = endpoints::resolve(Service::Oss, Some(region), network, None, env)?;
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
