//! `imgport upload` and `imgport uploads list|abort|gc`: resumable, verified multipart uploads to OSS and S3.

use crate::output::print_json;
use imgport_auth::Env;
use imgport_storage::checksum::Choice;
use imgport_storage::events::{Progress, RestartReason};
use imgport_storage::settings::{self, StoreSettings, UploadChoices};
use imgport_storage::upload::{self, UploadOptions};
use imgport_storage::{state, uploads, Client, Destination, EventFn, Flavor, ObjectStore, UploadEvent};
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
    /// How S3 checks each part and the object: auto (CRC-64/NVME, or Content-MD5 where the store refuses
    /// flexible checksums), crc64nvme, crc32c or md5. OSS always checks CRC-64; streamed conversions send
    /// Content-MD5.
    #[arg(long, default_value = "auto", value_parser = parse_checksum)]
    checksum: Choice,
}

fn parse_checksum(s: &str) -> Result<Choice, String> {
    s.parse()
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

/// A size flag's value: `64M`, `100K`, `100KiB`, `65536`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    imgport_disk::size::parse_size(s).map_err(|e| e.to_string())
}

impl StoreArgs {
    fn settings(&self) -> StoreSettings {
        StoreSettings { endpoint: self.endpoint.clone(), region: self.region.clone(), oss_v1: self.oss_v1 }
    }
}

impl UploadArgs {
    fn choices(&self) -> UploadChoices {
        UploadChoices {
            part_size: self.part_size,
            concurrency: self.concurrency,
            resume: !self.no_resume,
            storage_class: self.storage_class.clone(),
            rate_limit: self.rate_limit,
            checksum: self.checksum,
        }
    }
}

fn print_warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("imgport: warning: {w}");
    }
}

/// The client for `dest`, after printing what the user should be warned about.
fn client(dest: &Destination, args: &StoreArgs) -> Result<Client, String> {
    let connection = settings::connect(dest, &args.settings(), &Env::from_process())?;
    print_warnings(&connection.warnings);
    Ok(connection.client)
}

/// The async runtime the network commands run on: two workers, I/O and timers.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// A destination's client and runtime, with the upload options for `source` (the file whose identity keys the
/// resume state).
pub struct Prepared {
    pub client: Arc<Client>,
    pub rt: tokio::runtime::Runtime,
    pub opts: UploadOptions,
}

impl Prepared {
    /// `streamed`: the upload is a conversion's stream, which always sends Content-MD5 to S3.
    pub fn new(
        dest_url: &str,
        args: &UploadArgs,
        source: &std::path::Path,
        streamed: bool,
    ) -> Result<Prepared, String> {
        let dest = Destination::parse_object(dest_url, args.store.oss_v1).map_err(|e| e.to_string())?;
        if args.checksum != Choice::Auto && dest.flavor != Flavor::S3 {
            return Err("--checksum applies to s3:// destinations: OSS checks every part's CRC-64".into());
        }
        if streamed && matches!(args.checksum, Choice::Flexible(_)) {
            return Err("a streamed conversion sends Content-MD5 (its resume recognises stored parts by their MD5): \
                        leave out --checksum, or convert to a file and upload that"
                .into());
        }
        let client = Arc::new(client(&dest, &args.store)?);
        let rt = runtime()?;
        let opts = settings::upload_options(&dest, dest_url, &client, source, &args.choices());
        Ok(Prepared { client, rt, opts })
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.client.clone()
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

/// Prints what an upload reports: its progress on `bar` (as `show` puts it), a line for an interrupted upload
/// that is started over.
pub fn print_events(bar: Option<indicatif::ProgressBar>, show: fn(&indicatif::ProgressBar, &Progress)) -> EventFn {
    Arc::new(move |event: &UploadEvent| match event {
        UploadEvent::Progress(p) => {
            if let Some(b) = &bar {
                show(b, p);
            }
        }
        // A lost upload started over was never announced: the summary's counts tell.
        UploadEvent::Restarted { reason: RestartReason::UploadLost { .. } } => {}
        UploadEvent::Restarted { reason } => match &bar {
            Some(b) => b.suspend(|| note!("imgport: {reason}")),
            None => note!("imgport: {reason}"),
        },
        UploadEvent::Started { .. } | UploadEvent::PartStored { .. } | UploadEvent::Completed { .. } => {}
    })
}

fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    if !crate::output::progress_enabled() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    let style =
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}

pub fn run(args: Args) -> u8 {
    let prepared = match Prepared::new(&args.dest, &args.upload, &args.source, false) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("imgport: error: {e}");
            return 1;
        }
    };
    let size = std::fs::metadata(&args.source).map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(size);
    let events = print_events(bar.clone(), |b, p| {
        b.set_position(p.done);
        b.set_message(format!("{} in flight", p.in_flight));
    });
    let store = prepared.store();
    let (rt, opts) = (&prepared.rt, &prepared.opts);
    let result = rt.block_on(async {
        tokio::select! {
            r = upload::upload(store, opts, Some(events)) => Ok(r),
            sig = crate::signals::wait() => Err(sig),
        }
    });
    if let Some(b) = &bar {
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

async fn list(a: UploadsArgs) -> Result<(), String> {
    let dest = Destination::parse(&a.dest, a.store.oss_v1).map_err(|e| e.to_string())?;
    let c = client(&dest, &a.store)?;
    let out = uploads::list(&c, &dest, state::default_dir().as_deref()).await?;
    if a.json {
        print_json(&out);
    } else {
        for u in &out {
            let checksum = u.checksum.unwrap_or("-");
            outln!("{}  {}  {}  {checksum}  ({})", u.initiated, u.upload_id, u.key, u.source);
        }
    }
    Ok(())
}

fn print_aborted(done: &[uploads::Aborted]) {
    for a in done {
        if a.already_gone {
            outln!("{}: already gone", a.upload_id);
        } else {
            outln!("aborted {}", a.upload_id);
        }
    }
}

async fn abort(a: AbortArgs) -> Result<(), String> {
    let dest = Destination::parse(&a.dest, a.store.oss_v1).map_err(|e| e.to_string())?;
    let c = client(&dest, &a.store)?;
    let state_dir = state::default_dir();
    match uploads::abort(&c, &dest, &a.dest, a.upload_id.as_deref(), state_dir.as_deref()).await {
        Ok(done) => {
            print_aborted(&done);
            if done.is_empty() {
                outln!("no interrupted uploads for {}", a.dest);
            }
            Ok(())
        }
        Err(failed) => {
            print_aborted(&failed.done);
            Err(failed.error)
        }
    }
}

async fn gc(a: GcArgs) -> Result<(), String> {
    let report = uploads::gc(state::default_dir().as_deref(), &Env::from_process()).await;
    print_warnings(&report.warnings);
    if a.json {
        print_json(&report.forgotten);
    } else {
        for u in &report.forgotten {
            outln!("forgot {u} (the store no longer has the upload)");
        }
    }
    Ok(())
}
