//! `imgport upload` and `imgport uploads list|abort|gc`: resumable, verified multipart uploads to OSS and S3.

use crate::output::print_json;
use imgport_auth::endpoints::{self, BucketStyle, Endpoint, OssNetwork, Service};
use imgport_auth::provider::{CredentialsProvider, DefaultChain, Static};
use imgport_auth::{Credentials, Env};
use imgport_storage::upload::{self, Progress, UploadOptions};
use imgport_storage::{state, Client, Flavor, ObjectStore, PutOptions, StoreConfig};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// The file to upload.
    source: PathBuf,
    /// oss://BUCKET/KEY or s3://BUCKET/KEY.
    dest: String,
    #[command(flatten)]
    upload: UploadArgs,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

/// How to upload: shared by `upload` and `convert` to a store.
#[derive(clap::Args, Clone)]
pub struct UploadArgs {
    /// Part size (e.g. 64M, 100K); default max(64 MiB, size/9000) rounded up to MiB, and for a file larger than
    /// that, at least 4 parts per connection (of 8 MiB at least).
    #[arg(long, value_parser = parse_size)]
    part_size: Option<u64>,
    /// Parts in flight at most (lowered automatically while the store throttles).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Start a new upload even if an interrupted one for the same source and destination exists.
    #[arg(long)]
    no_resume: bool,
    /// Storage class of the object (OSS: Standard, IA, Archive...; S3: STANDARD, STANDARD_IA...).
    #[arg(long)]
    storage_class: Option<String>,
    /// Bytes per second at most over all parts (e.g. 50M).
    #[arg(long, value_parser = parse_size)]
    rate_limit: Option<u64>,
}

#[derive(clap::Args, Clone)]
pub struct StoreArgs {
    /// Endpoint URL (default: IMGPORT_OSS_ENDPOINT / AWS_ENDPOINT_URL, then the region's).
    #[arg(long)]
    endpoint: Option<String>,
    /// Region (OSS default: ALIBABA_CLOUD_REGION_ID or cn-hangzhou; S3: AWS_REGION or us-east-1).
    #[arg(long)]
    region: Option<String>,
    /// OSS signature version 1 instead of 4.
    #[arg(long)]
    oss_v1: bool,
}

#[derive(clap::Subcommand)]
pub enum UploadsCommand {
    /// Interrupted multipart uploads: from the store where it can list them, else from the local resume state.
    List(UploadsArgs),
    /// Abort interrupted uploads under DEST (all, or one with --upload-id) and forget their resume state.
    Abort(AbortArgs),
    /// Forget local resume state whose upload the store no longer has.
    Gc(GcArgs),
}

#[derive(clap::Args)]
pub struct UploadsArgs {
    /// oss://BUCKET[/PREFIX] or s3://BUCKET[/PREFIX].
    dest: String,
    #[command(flatten)]
    store: StoreArgs,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct AbortArgs {
    /// oss://BUCKET/KEY or s3://BUCKET/KEY.
    dest: String,
    #[arg(long)]
    upload_id: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(clap::Args)]
pub struct GcArgs {
    #[arg(long)]
    json: bool,
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some((i, _)) => {
            let unit = s[i..].trim().to_ascii_lowercase();
            let unit = unit.trim_end_matches("ib").trim_end_matches('b');
            let m = match unit {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                "t" => 1 << 40,
                _ => return Err(format!("{s:?}: unknown unit (use K, M, G or T)")),
            };
            (&s[..i], m)
        }
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)).ok_or_else(|| format!("{s:?} is not a size"))
}

struct Dest {
    flavor: Flavor,
    bucket: String,
    key: String,
}

fn parse_dest(s: &str, oss_v1: bool) -> Result<Dest, String> {
    let (scheme, rest) =
        s.split_once("://").ok_or_else(|| format!("{s:?}: expected oss://BUCKET/KEY or s3://BUCKET/KEY"))?;
    let flavor = match scheme {
        "oss" if oss_v1 => Flavor::OssV1,
        "oss" => Flavor::OssV4,
        "s3" => Flavor::S3,
        _ => return Err(format!("{s:?}: the scheme must be oss or s3")),
    };
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("{s:?}: no bucket"));
    }
    Ok(Dest { flavor, bucket: bucket.to_string(), key: key.to_string() })
}

/// AWS_* variables for S3 stores, else the Alibaba Cloud chain (OSS, and OSS's S3 endpoint).
fn credentials(flavor: Flavor, env: &Env) -> Arc<dyn CredentialsProvider> {
    if flavor == Flavor::S3 {
        if let (Some(id), Some(secret)) = (env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")) {
            let mut c = Credentials::new(id, secret);
            if let Some(t) = env.get("AWS_SESSION_TOKEN") {
                c = c.with_token(t);
            }
            return Arc::new(Static::new(c, "env (AWS_*)"));
        }
    }
    Arc::new(DefaultChain::new(env.clone()))
}

fn client(dest: &Dest, args: &StoreArgs) -> Result<Client, String> {
    let env = Env::from_process();
    let (endpoint, region) = if dest.flavor == Flavor::S3 {
        let region =
            args.region.clone().or_else(|| env.get("AWS_REGION").map(str::to_string)).unwrap_or("us-east-1".into());
        let ep = match args.endpoint.as_deref().or_else(|| env.get("AWS_ENDPOINT_URL")) {
            Some(e) => Endpoint::parse(e)?,
            None => Endpoint::parse(&format!("https://s3.{region}.amazonaws.com"))?,
        };
        (ep, region)
    } else {
        let region = args
            .region
            .clone()
            .or_else(|| env.get("ALIBABA_CLOUD_REGION_ID").map(str::to_string))
            .unwrap_or("cn-hangzhou".into());
        (endpoints::resolve(Service::Oss, Some(&region), OssNetwork::Public, args.endpoint.as_deref(), &env)?, region)
    };
    let client = Client::new(StoreConfig {
        flavor: dest.flavor,
        style: BucketStyle::default_for(&endpoint),
        endpoint,
        region,
        bucket: dest.bucket.clone(),
        credentials: credentials(dest.flavor, &env),
    })
    .map_err(|e| e.to_string())?;
    for w in client.warnings() {
        eprintln!("imgport: warning: {w}");
    }
    Ok(client)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

pub fn is_store_url(s: &str) -> bool {
    s.starts_with("oss://") || s.starts_with("s3://")
}

/// A destination's client and runtime, with the upload options for `source` (the file whose identity keys the
/// resume state).
pub struct Prepared {
    pub client: Arc<Client>,
    pub rt: tokio::runtime::Runtime,
    pub opts: UploadOptions,
}

impl Prepared {
    pub fn new(dest_url: &str, args: &UploadArgs, source: &std::path::Path) -> Result<Prepared, String> {
        let dest = match parse_dest(dest_url, args.store.oss_v1)? {
            d if !d.key.is_empty() && !d.key.ends_with('/') => d,
            _ => return Err(format!("{dest_url}: give the object key (oss://BUCKET/KEY)")),
        };
        let client = Arc::new(client(&dest, &args.store)?);
        let rt = runtime()?;
        let opts = UploadOptions {
            source: source.to_path_buf(),
            key: dest.key.clone(),
            endpoint_id: client.config().endpoint.url(),
            url: dest_url.to_string(),
            part_size: args.part_size,
            min_part_size: if dest.flavor == Flavor::S3 { 5 << 20 } else { 100 << 10 },
            concurrency: args.concurrency,
            resume: !args.no_resume,
            state_dir: state::default_dir(),
            put: PutOptions { storage_class: args.storage_class.clone(), ..Default::default() },
            rate_limit: args.rate_limit,
            max_attempts: 10,
            send_md5: dest.flavor == Flavor::S3,
        };
        Ok(Prepared { client, rt, opts })
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.client.clone()
    }

    /// Signs with the server's clock after a `RequestTimeTooSkewed`.
    pub fn fix_clock(&self) -> Arc<dyn Fn(i64) + Send + Sync> {
        let c = self.client.clone();
        Arc::new(move |t| c.correct_clock(t))
    }
}

/// The human line after an upload (with `--json` the summary is printed as is).
pub fn summary_line(s: &upload::Summary, dest: &str) -> String {
    let mut line = format!(
        "uploaded {} bytes to {dest} in {} part(s) of {} bytes, {:.1} s, {:.1} MiB/s, {} retries",
        s.bytes, s.parts, s.part_size, s.seconds, s.mib_per_s, s.retries
    );
    if s.resumed_parts > 0 || s.skipped_parts > 0 {
        line.push_str(&format!(", {} part(s) resumed, {} not sent again", s.resumed_parts, s.skipped_parts));
    }
    line
}

fn progress_bar(total: u64) -> Option<(indicatif::ProgressBar, upload::ProgressFn)> {
    if !crate::output::progress_enabled() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    let style =
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    let b = bar.clone();
    let f: upload::ProgressFn = Arc::new(move |p: Progress| {
        b.set_position(p.done);
        b.set_message(format!("{} in flight", p.in_flight));
    });
    Some((bar, f))
}

pub fn run(args: Args) -> u8 {
    let prepared = match Prepared::new(&args.dest, &args.upload, &args.source) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("imgport: error: {e}");
            return 1;
        }
    };
    let size = std::fs::metadata(&args.source).map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(size);
    let (fix_clock, store) = (prepared.fix_clock(), prepared.store());
    let (rt, opts) = (&prepared.rt, &prepared.opts);
    let result = rt.block_on(async {
        tokio::select! {
            r = upload::upload(store, Some(fix_clock), opts, bar.as_ref().map(|b| b.1.clone())) => Ok(r),
            sig = crate::signals::wait() => Err(sig),
        }
    });
    if let Some((b, _)) = &bar {
        b.finish_and_clear();
    }
    // Dropping the upload released the resume state's lock; the state itself is as of the last finished part.
    prepared.rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Err(sig) => interrupted(sig, &args.dest, &args.upload.store),
        Ok(Ok(s)) => {
            if args.json {
                print_json(&s);
            } else {
                outln!("{}", summary_line(&s, &args.dest));
            }
            0
        }
        Ok(Err(e)) => failed(&e, &args.dest, &args.upload.store),
    }
}

/// Exit code of an upload another process is running (it holds the resume state's lock): EX_TEMPFAIL.
pub const EXIT_BUSY: u8 = 75;

/// A word of a command line as the shell reads it back.
fn shell_word(w: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c);
    if !w.is_empty() && w.chars().all(plain) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// The store options as given, for the commands printed to the user.
fn store_flags(a: &StoreArgs) -> String {
    let mut s = String::new();
    if let Some(e) = &a.endpoint {
        s.push_str(&format!(" --endpoint {}", shell_word(e)));
    }
    if let Some(r) = &a.region {
        s.push_str(&format!(" --region {}", shell_word(r)));
    }
    if a.oss_v1 {
        s.push_str(" --oss-v1");
    }
    s
}

/// Says how to resume or abort an upload stopped by `sig` (SIGINT, SIGTERM, SIGHUP); returns the exit code,
/// 128 + the signal. Written without panicking: after SIGHUP the terminal may be gone.
pub fn interrupted(sig: libc::c_int, dest: &str, store: &StoreArgs) -> u8 {
    use crate::signals::{eprintln_safe, name};
    let again: Vec<String> =
        std::env::args_os().map(|a| a.to_string_lossy().into_owned()).filter(|a| a != "--no-resume").collect();
    let again: Vec<String> = again.iter().map(|a| shell_word(a)).collect();
    let _ = eprintln_safe(&format!("imgport: interrupted by {}; the parts sent so far are kept.", name(sig)));
    let _ = eprintln_safe(&format!("  resume: {}", again.join(" ")));
    let _ = eprintln_safe(&format!("  abort:  imgport uploads abort {}{}", shell_word(dest), store_flags(store)));
    crate::signals::exit_code()
}

/// Reports a failed upload; returns the exit code: 75 when another process is running the same upload, else 1.
pub fn failed(e: &upload::UploadError, dest: &str, store: &StoreArgs) -> u8 {
    eprintln!("imgport: error: {e}");
    match e {
        upload::UploadError::Busy { .. } => EXIT_BUSY,
        upload::UploadError::Vanished { upload_id, .. } => {
            eprintln!(
                "  to abort it and forget its resume state: imgport uploads abort {} --upload-id {}{}",
                shell_word(dest),
                shell_word(upload_id),
                store_flags(store)
            );
            1
        }
        _ => 1,
    }
}

#[derive(serde::Serialize)]
struct Listed {
    key: String,
    upload_id: String,
    initiated: String,
    source: &'static str,
}

pub fn run_uploads(cmd: UploadsCommand) -> u8 {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("imgport: error: {e}");
            return 1;
        }
    };
    let r = rt.block_on(async move {
        match cmd {
            UploadsCommand::List(a) => list(a).await,
            UploadsCommand::Abort(a) => abort(a).await,
            UploadsCommand::Gc(a) => gc(a).await,
        }
    });
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("imgport: error: {e}");
            1
        }
    }
}

fn local_states() -> Vec<(PathBuf, state::UploadState)> {
    state::default_dir().map(|d| state::list(&d)).unwrap_or_default()
}

async fn list(a: UploadsArgs) -> Result<(), String> {
    let dest = parse_dest(&a.dest, a.store.oss_v1)?;
    let c = client(&dest, &a.store)?;
    let endpoint = c.config().endpoint.url();
    let out: Vec<Listed> = match c.list_multipart_uploads(&dest.key).await {
        Ok(ups) => ups
            .into_iter()
            .map(|u| Listed { key: u.key, upload_id: u.upload_id, initiated: u.initiated, source: "store" })
            .collect(),
        Err(imgport_storage::StorageError::Unsupported(_)) => local_states()
            .into_iter()
            .filter(|(_, s)| s.endpoint == endpoint && s.bucket == dest.bucket && s.key.starts_with(&dest.key))
            .map(|(_, s)| Listed {
                key: s.key,
                upload_id: s.upload_id,
                initiated: imgport_auth::time::UtcTime::from_unix(s.created).iso8601(),
                source: "local",
            })
            .collect(),
        Err(e) => return Err(e.to_string()),
    };
    if a.json {
        print_json(&out);
    } else {
        for u in &out {
            outln!("{}  {}  {}  ({})", u.initiated, u.upload_id, u.key, u.source);
        }
    }
    Ok(())
}

async fn abort(a: AbortArgs) -> Result<(), String> {
    let dest = parse_dest(&a.dest, a.store.oss_v1)?;
    let c = client(&dest, &a.store)?;
    let endpoint = c.config().endpoint.url();
    let mut ids: Vec<String> = match &a.upload_id {
        Some(id) => vec![id.clone()],
        None => match c.list_multipart_uploads(&dest.key).await {
            Ok(ups) => ups.into_iter().filter(|u| u.key == dest.key).map(|u| u.upload_id).collect(),
            Err(imgport_storage::StorageError::Unsupported(_)) => Vec::new(),
            Err(e) => return Err(e.to_string()),
        },
    };
    let locals: Vec<_> = local_states()
        .into_iter()
        .filter(|(_, s)| s.endpoint == endpoint && s.bucket == dest.bucket && s.key == dest.key)
        .filter(|(_, s)| a.upload_id.as_ref().is_none_or(|id| *id == s.upload_id))
        .collect();
    for (_, s) in &locals {
        if !ids.contains(&s.upload_id) {
            ids.push(s.upload_id.clone());
        }
    }
    // An upload still running holds its state's lock: aborting under it would fail that run late. The locks
    // taken here are held until the states are forgotten.
    let mut _held = Vec::new();
    for (p, _) in &locals {
        match state::lock(p) {
            Ok(lock) => _held.push(lock),
            Err(state::LockError::Busy { pid, .. }) => {
                let who = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
                return Err(format!(
                    "an upload to {} is running{who}: stop it first (Ctrl-C leaves it resumable), then abort",
                    a.dest
                ));
            }
            Err(state::LockError::Io(e)) => return Err(format!("cannot lock the resume state {}: {e}", p.display())),
        }
    }
    for id in &ids {
        match c.abort_multipart(&dest.key, id).await {
            Ok(()) => outln!("aborted {id}"),
            Err(e) if e.code() == Some("NoSuchUpload") => outln!("{id}: already gone"),
            Err(e) => return Err(format!("aborting {id}: {e}")),
        }
    }
    for (p, _) in locals {
        state::remove(&p);
    }
    if ids.is_empty() {
        outln!("no interrupted uploads for {}", a.dest);
    }
    Ok(())
}

async fn gc(a: GcArgs) -> Result<(), String> {
    let mut removed = Vec::new();
    for (p, s) in local_states() {
        let Some((scheme, _)) = s.url.split_once("://") else { continue };
        let v1 = false;
        let Ok(dest) = parse_dest(&format!("{scheme}://{}/{}", s.bucket, s.key), v1) else { continue };
        let args = StoreArgs { endpoint: Some(s.endpoint.clone()), region: None, oss_v1: false };
        let Ok(c) = client(&dest, &args) else { continue };
        if let Err(e) = c.list_parts(&s.key, &s.upload_id).await {
            if e.code() == Some("NoSuchUpload") {
                state::remove(&p);
                removed.push(s.url.clone());
            }
        }
    }
    if a.json {
        print_json(&removed);
    } else {
        for u in &removed {
            outln!("forgot {u} (the store no longer has the upload)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_destinations() {
        assert_eq!(parse_size("5M"), Ok(5 << 20));
        assert_eq!(parse_size("100KiB"), Ok(100 << 10));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("5X").is_err());
        let d = parse_dest("oss://b/k/x.raw", false).expect("dest");
        assert_eq!((d.flavor, d.bucket.as_str(), d.key.as_str()), (Flavor::OssV4, "b", "k/x.raw"));
        assert_eq!(parse_dest("s3://b/k", false).map(|d| d.flavor), Ok(Flavor::S3));
        assert!(parse_dest("http://b/k", false).is_err());
    }
}
