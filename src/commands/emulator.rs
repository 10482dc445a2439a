//! `imgport emulator serve`: a local Alibaba Cloud (OSS, ECS images, RAM roles, STS) on one port.

use imgport_emulator::{CloudSettings, Emulator, EmulatorConfig, FileConfig, LogEntry, LogSink};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Lines of the server's banner and log on stdout. Unlike `outln!`, a closed stdout is ignored: the server's
/// job is to keep serving, whoever reads its banner.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The server's request log (unless `--quiet`) and problems on stderr (a closed stderr loses lines, never panics
/// a server thread): `imgport-emulator: RECORD` lines, or one JSON object per request with `--json`.
struct StderrLog {
    requests: bool,
    json: bool,
}

impl LogSink for StderrLog {
    fn request(&self, entry: &LogEntry) {
        if !self.requests {
            return;
        }
        if !self.json {
            let _ = writeln!(std::io::stderr(), "imgport-emulator: {entry}");
        } else if let Ok(line) = serde_json::to_string(entry) {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }

    fn problem(&self, message: &str) {
        let _ = writeln!(std::io::stderr(), "imgport-emulator: {message}");
    }
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Serve the emulator until Ctrl-C. Prints the endpoints, regions, the key pair it accepts and the admin API's
    /// secret.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port) [default: the config file's `listen`, else 127.0.0.1:9400].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Folder for the emulator's state (created if missing) [default: $XDG_DATA_HOME/imgport/emulator].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Settings and fault injection rules, TOML or JSON.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The access key id to accept (generated and kept in the data folder when not given).
    #[arg(long, requires = "access_key_secret")]
    access_key_id: Option<String>,
    /// The access key secret to accept.
    #[arg(long, requires = "access_key_id")]
    access_key_secret: Option<String>,
    /// A region to serve (repeat for several; the first is the default) [default: cn-hangzhou].
    #[arg(long = "region")]
    regions: Vec<String>,
    /// Print the start-up facts as one JSON object on the first line of stdout; request logs go to stderr
    /// as JSON lines.
    #[arg(long)]
    json: bool,
    // -q (global, src/main.rs) stops the log of each request.
    /// Seconds an ECS ImportImage (and CopyImage, unless --copy-seconds) takes from Waiting to Available
    /// [default: 3].
    #[arg(long, value_name = "SECS")]
    import_seconds: Option<f64>,
    /// Seconds an ECS CopyImage takes from Waiting to Available [default: --import-seconds].
    #[arg(long, value_name = "SECS")]
    copy_seconds: Option<f64>,
    /// Create the ECS import role (AliyunECSImageImportDefaultRole with its policy) if it does not exist, as the
    /// console's one-click authorisation does; without it ImportImage answers NoSetRoletoECSServiceAcount until
    /// the role is created through RAM.
    #[arg(long)]
    seed_import_role: bool,
}

#[derive(serde::Serialize)]
struct Started<'a> {
    oss_endpoint: &'a str,
    ecs_endpoint: &'a str,
    sts_endpoint: &'a str,
    ram_endpoint: &'a str,
    listen: String,
    region: &'a str,
    regions: &'a [String],
    access_key_id: &'a str,
    access_key_secret: &'a str,
    admin_secret: &'a str,
    data_dir: String,
}

fn default_data_dir() -> PathBuf {
    super::cloud::data_dir("emulator")
}

pub fn run(cmd: Command) -> u8 {
    match cmd {
        Command::Serve(a) => serve(a),
    }
}

fn serve(args: ServeArgs) -> u8 {
    let mut cfg = EmulatorConfig::new(default_data_dir());
    cfg.listen = SocketAddr::from(([127, 0, 0, 1], 9400));
    let mut cloud = CloudSettings::default();
    if let Some(path) = &args.config {
        match FileConfig::load(path) {
            Ok(file) => {
                if let Some(c) = &file.cloud {
                    cloud = c.clone();
                }
                file.apply(&mut cfg);
            }
            Err(e) => {
                eprintln!("imgport: error: {e}");
                return 1;
            }
        }
    }
    // Flags win over the file.
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(d) = args.data {
        cfg.data_dir = d;
    }
    if !args.regions.is_empty() {
        cfg.regions = args.regions;
    }
    if let (Some(id), Some(secret)) = (&args.access_key_id, &args.access_key_secret) {
        cfg = cfg.with_keys(id, secret);
    }
    if let Some(secs) = args.import_seconds {
        if !(0.0..=86_400.0).contains(&secs) {
            eprintln!("imgport: error: --import-seconds must be between 0 and 86400");
            return 1;
        }
        cloud.import_seconds = secs;
    }
    if let Some(secs) = args.copy_seconds {
        if !(0.0..=86_400.0).contains(&secs) {
            eprintln!("imgport: error: --copy-seconds must be between 0 and 86400");
            return 1;
        }
        cloud.copy_seconds = Some(secs);
    }
    cloud.seed_import_role |= args.seed_import_role;
    cfg = cfg.cloud(cloud);
    cfg.log_sink = Some(std::sync::Arc::new(StderrLog { requests: !crate::output::quiet(), json: args.json }));
    let data_dir = cfg.data_dir.clone();
    // Ctrl-C, SIGTERM (systemd, Kubernetes, CI) or SIGHUP (src/signals.rs) stops it cleanly.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    crate::signals::cancel_on_signal(stop.clone());
    let emu = match Emulator::start(cfg) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("imgport: error: cannot start the emulator: {e}");
            return 1;
        }
    };
    let started = Started {
        oss_endpoint: &emu.oss_endpoint,
        ecs_endpoint: &emu.ecs_endpoint,
        sts_endpoint: &emu.ecs_endpoint,
        ram_endpoint: &emu.ecs_endpoint,
        listen: emu.addr.to_string(),
        region: emu.region(),
        regions: &emu.regions,
        access_key_id: &emu.credentials.access_key_id,
        access_key_secret: emu.credentials.access_key_secret.expose(),
        admin_secret: &emu.admin_secret,
        data_dir: data_dir.display().to_string(),
    };
    if args.json {
        match serde_json::to_string(&started) {
            Ok(line) => say!("{line}"),
            Err(e) => {
                eprintln!("imgport: error: cannot encode JSON: {e}");
                return 1;
            }
        }
    } else {
        say!("imgport emulator listening on {}", started.listen);
        say!("  OSS endpoint:      {}", started.oss_endpoint);
        say!("  ECS endpoint:      {} (RAM and STS on the same port)", started.ecs_endpoint);
        say!("  regions:           {}", started.regions.join(", "));
        say!("  access key id:     {}", started.access_key_id);
        say!("  access key secret: {}", started.access_key_secret);
        say!("  admin secret:      {} (Authorization: Bearer ... for /_emulator/)", started.admin_secret);
        say!("  data:              {}", started.data_dir);
        say!("Point imgport at it:");
        say!(
            "  export IMGPORT_OSS_ENDPOINT={0} IMGPORT_ECS_ENDPOINT={0} IMGPORT_STS_ENDPOINT={0} IMGPORT_RAM_ENDPOINT={0}",
            started.oss_endpoint
        );
        say!(
            "  export ALIBABA_CLOUD_ACCESS_KEY_ID={} ALIBABA_CLOUD_ACCESS_KEY_SECRET={}",
            started.access_key_id,
            started.access_key_secret
        );
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    note!("imgport: emulator stopping");
    emu.shutdown();
    0
}
