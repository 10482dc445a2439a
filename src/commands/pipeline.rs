//! `imgport pipeline check|plan|run FILE`: a pipeline file (`pipelines/*.toml`, see
//! [`imgport_pipeline::file`]) checked, planned or run. A run is the composition of what the other commands do:
//! the source resolved and digested, the templates rendered, [`import::import`] (validate, upload, register, wait,
//! copy, share, clean up), then [`imgport_cloud::retain`] for the family in the import region and the copy regions,
//! then the manifest in Packer's shape. Each run is recorded under `$XDG_STATE_HOME/imgport/pipelines`: a finished
//! run with the same content and the same file reruns as a no-op ("up to date") unless `--force`; a failed one
//! reruns, and the import, being idempotent, resumes its upload and reuses what exists.

use crate::output::print_json;
use imgport_auth::Env;
use imgport_cloud::retain::{self, Action, Done, Plan};
use imgport_cloud::wait::WaitOptions;
use imgport_pipeline::file::digests::Digests;
use imgport_pipeline::file::manifest::{artifact_id, Build, BuildFile, Manifest};
use imgport_pipeline::file::record::{self, LocalRuns, RunRecord, RunStatus, RunStore, StepRecord};
use imgport_pipeline::file::state::{self, Acquire, BucketState, Lease};
use imgport_pipeline::file::template::{self, Context};
use imgport_pipeline::file::{self, check::Placed, source, FileError, Pipeline};
use imgport_pipeline::import::plan::Overrides;
use imgport_pipeline::import::{self, ImportEvent, ImportOutcome, ImportSpec};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Check a pipeline file: every fault with its line, column and field (exit 0 good, 2 faults).
    Check(CheckArgs),
    /// What a run would do: the source and its digest, whether the run is already done, the image it would make
    /// or reuse, and what retention would retire now.
    Plan(RunArgs),
    /// Run a pipeline: import, distribute, retain, write the manifest. Exit codes as `imgport import`'s, and 0
    /// when the run is already done for this content.
    Run(RunArgs),
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The pipeline file.
    file: PathBuf,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The pipeline file.
    file: PathBuf,
    /// A value for `{var.NAME}` in templates (repeat); without it, the environment's IMGPORT_VAR_NAME.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = super::import::parse_tag)]
    vars: Vec<(String, String)>,
    /// Print what would run and change nothing (`run` only).
    #[arg(long)]
    dry_run: bool,
    /// Run even when the last run finished for this content.
    #[arg(long)]
    force: bool,
    /// With `state` in the bucket: when another runner holds the pipeline's lease, exit 75 at once instead of
    /// waiting for its result.
    #[arg(long)]
    no_wait: bool,
    /// One JSON result document on stdout; events as JSON lines on stderr.
    #[arg(long)]
    json: bool,
}

pub fn run(c: Command) -> u8 {
    match c {
        Command::Check(a) => check(&a),
        Command::Plan(a) => run_pipeline(a, Mode::Plan),
        Command::Run(a) if a.dry_run => run_pipeline(a, Mode::Plan),
        Command::Run(a) => run_pipeline(a, Mode::Run),
    }
}

fn print_errors(errors: &[FileError]) {
    for e in errors {
        eprintln!("imgport: error: {e}");
    }
}

fn check(a: &CheckArgs) -> u8 {
    match file::load(&a.file) {
        Ok(p) => {
            for n in &p.notes {
                note!("imgport: note: {n}");
            }
            outln!(
                "{}: ok: pipeline {} ({} cloud, {}): {}",
                a.file.display(),
                p.name,
                p.cloud,
                region_of(&p),
                describe(&p)
            );
            0
        }
        Err(errors) => {
            print_errors(&errors);
            2
        }
    }
}

/// The steps of a pipeline in a line.
fn describe(p: &Pipeline) -> String {
    let mut steps = vec!["validate".to_string(), format!("import {}", p.import.name.template.source)];
    if !p.copy_to.is_empty() {
        steps.push(format!("copy to {}", p.copy_to.join(", ")));
    }
    if !p.share_with.is_empty() {
        steps.push(format!("share with {}", p.share_with.join(", ")));
    }
    if let Some(r) = &p.retain {
        let mut rule = Vec::new();
        if let Some(k) = r.keep {
            rule.push(format!("keep {k}"));
        }
        if let Some(d) = r.keep_younger_than {
            rule.push(format!("keep {} days", d / 86_400));
        }
        steps.push(format!("retain ({})", rule.join(", ")));
    }
    if let Some(m) = &p.manifest {
        steps.push(format!("manifest {}", m.display()));
    }
    steps.join(", ")
}

fn region_of(p: &Pipeline) -> String {
    let args = cloud_args(p);
    args.region(&Env::from_process()).unwrap_or_else(|_| "?".into())
}

fn cloud_args(p: &Pipeline) -> super::cloud::CloudArgs {
    super::cloud::CloudArgs { cloud: p.cloud.clone(), region: p.region.iter().cloned().collect() }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plan,
    Run,
}

/// The templates of the import step, rendered.
#[derive(Debug, Clone, Serialize)]
struct Rendered {
    name: String,
    description: Option<String>,
    family: Option<String>,
    key: Option<String>,
    tags: Vec<(String, String)>,
    /// `[convert] keep`, relative to the file's folder.
    keep: Option<String>,
    /// `outputs.webhook` (never printed: it may hold a token).
    #[serde(skip)]
    webhook: Option<String>,
}

fn render(p: &Pipeline, ctx: &Context) -> Result<Rendered, Vec<FileError>> {
    let mut errors = Vec::new();
    let mut one = |t: &Placed| match t.template.render(ctx) {
        Ok(s) => Some(s),
        Err(message) => {
            errors.push(FileError {
                file: p.file.clone(),
                line: t.line,
                column: t.column,
                field: t.field.clone(),
                message,
            });
            None
        }
    };
    let i = &p.import;
    let r = Rendered {
        name: one(&i.name).unwrap_or_default(),
        description: i.description.as_ref().and_then(&mut one),
        family: i.family.as_ref().and_then(&mut one),
        key: i.key.as_ref().and_then(&mut one),
        tags: i.tags.iter().filter_map(|(k, t)| one(t).map(|v| (k.clone(), v))).collect(),
        keep: p.keep_converted.as_ref().and_then(&mut one),
        webhook: p.webhook.as_ref().and_then(&mut one),
    };
    if let (Some(url), Some(t)) = (&r.webhook, &p.webhook) {
        if let Err(message) = imgport_pipeline::file::webhook::check_url(url) {
            let field = t.field.clone();
            errors.push(FileError { file: p.file.clone(), line: t.line, column: t.column, field, message });
        }
    }
    match errors.is_empty() {
        true => Ok(r),
        false => Err(errors),
    }
}

/// The import the pipeline asks for: [`super::import::base_spec`] with the file's settings.
fn import_spec(p: &Pipeline, r: &Rendered, image: PathBuf, digest: &str) -> ImportSpec {
    let i = &p.import;
    let base = super::import::base_spec();
    ImportSpec {
        image,
        name: r.name.clone(),
        description: r.description.clone(),
        family: r.family.clone(),
        tags: r.tags.clone(),
        overrides: Overrides {
            platform: i.platform.clone(),
            os_type: i.os_type.clone(),
            architecture: i.arch.clone(),
            boot_mode: i.boot_mode.clone(),
            disk_size_gib: i.disk_size,
            nvme: Some(i.nvme.clone().unwrap_or_else(|| "auto".into())),
        },
        license_type: i.license_type.clone(),
        detection_strategy: i.detect.then(|| "Standard".to_string()),
        resource_group_id: i.resource_group_id.clone(),
        replace: i.replace,
        key: r.key.clone(),
        keep_object: i.keep_object,
        skip_validation: p.skip_validation,
        strict: p.strict,
        create_role: i.create_role,
        wait: Some(WaitOptions { timeout: i.timeout, ..Default::default() }),
        copy_to: p.copy_to.clone(),
        share_with: p.share_with.clone(),
        part_size: i.part_size,
        concurrency: i.concurrency.unwrap_or(base.concurrency),
        // Computed by the run a moment ago: the image is not read twice.
        known_digest: Some(digest.to_string()),
        always_qcow2: p.always_qcow2,
        keep_converted: r.keep.as_ref().map(|k| p.dir.join(k)),
        ..base
    }
}

/// The one document `--json` prints.
#[derive(Serialize)]
struct RunResult<'a> {
    pipeline: &'a str,
    /// `finished`, `up_to_date`, `planned` or `failed`.
    status: &'a str,
    run_uuid: String,
    source: String,
    digest: String,
    image_name: String,
    /// Image ids per region.
    images: BTreeMap<String, String>,
    artifact_id: String,
    steps: Vec<StepRecord>,
    findings: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    retired: Vec<Done>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    retain_plans: Vec<Plan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest: Option<String>,
    record: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    import: Option<ImportOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<u8>,
    /// With `plan`: what would be done, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    would: Vec<String>,
}

use state::unix_now;

fn fail(json: bool, code: u8, message: &str) -> u8 {
    if json {
        print_json(&serde_json::json!({"status": "failed", "error": message, "exit_code": code}));
    }
    eprintln!("imgport: error: {message}");
    code
}

fn run_pipeline(a: RunArgs, mode: Mode) -> u8 {
    let p = match file::load(&a.file) {
        Ok(p) => p,
        Err(errors) => {
            print_errors(&errors);
            if a.json {
                let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                print_json(&serde_json::json!({"status": "failed", "error": all.join("; "), "exit_code": 2}));
            }
            return 2;
        }
    };
    let cloud = cloud_args(&p);
    let region = match cloud.region(&Env::from_process()) {
        Ok(r) => r,
        Err(e) => return fail(a.json, 2, &e),
    };
    let started = unix_now();
    let mut steps: Vec<StepRecord> = Vec::new();
    // The build command makes the source (`plan` only looks at what the last build left).
    let mut built = None;
    if let (Some(cmd), Mode::Run) = (&p.command, mode) {
        match run_build(&p, &a, cmd, &region, started) {
            Ok(b) => {
                steps.push(StepRecord {
                    step: "build".into(),
                    seconds: b.seconds,
                    detail: format!("`{}` exit 0", cmd.join(" ")),
                });
                built = Some(b);
            }
            Err(code) => return code,
        }
    }
    let src = match source::resolve(&p.source) {
        Ok(s) => s,
        Err(e) if p.command.is_some() && mode == Mode::Plan => {
            return fail(a.json, 2, &format!("{e} (source.command makes it; plan does not run it)"))
        }
        Err(e) => return fail(a.json, 2, &e),
    };

    // The content digest: it names the run and may name the image.
    let t = Instant::now();
    let remembered = LocalRuns::default_dir().and_then(|d| d.parent().map(|p| p.join("digests")));
    // The image's other files (VMDK extents, backing files) are part of its identity.
    // The image is opened once: for those files, and for the digest when it is not remembered.
    let digested = imgport_disk::open(&src.path, &imgport_disk::OpenOptions::default()).and_then(|img| {
        let others: Vec<_> = img.extra_files().into_iter().chain(img.backing_files()).collect();
        match remembered {
            Some(dir) => Digests { dir }.get_or_compute(&src.path, &others, || digest_of(img.as_ref())),
            None => digest_of(img.as_ref()).map(|d| (d, false)),
        }
    });
    let (digest, known) = match digested {
        Ok(d) => d,
        Err(e) => return fail(a.json, 2, &format!("{}: {e}", src.path.display())),
    };
    let how = if known { "; the file is unchanged since it was digested" } else { "" };
    steps.push(StepRecord {
        step: "source".into(),
        seconds: t.elapsed().as_secs_f64(),
        detail: format!("{} (digest {}{how})", src.path.display(), &digest[..digest.len().min(template::SHORT_DIGEST)]),
    });
    if !a.json {
        note!("imgport: source     {} (digest {digest}{how})", src.path.display());
    }
    let mut ctx = Context::at(started);
    ctx.git_sha = template::git_sha(&p.dir);
    ctx.build = src.build.clone();
    ctx.digest = Some(digest.clone());
    ctx.vars = a.vars.iter().cloned().collect();
    let rendered = match render(&p, &ctx) {
        // The kept file's folder is made, as a manifest's is.
        Ok(r) => {
            if let Some(dir) = r.keep.as_ref().and_then(|k| p.dir.join(k).parent().map(std::path::Path::to_path_buf)) {
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    return fail(a.json, 2, &format!("convert.keep: {}: {e}", dir.display()));
                }
            }
            r
        }
        Err(errors) => {
            let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return fail(a.json, 2, &all.join("; "));
        }
    };

    // Local records are read before the cloud is connected: an up-to-date run costs nothing. Records in the bucket
    // are read once connected.
    let local = match &p.state {
        Some(_) => None,
        None => {
            let Some(dir) = LocalRuns::default_dir() else {
                return fail(a.json, 1, "no state folder: set XDG_STATE_HOME or HOME");
            };
            let store = LocalRuns { dir };
            let key = record::key(&p.name, &p.file, &p.cloud, &region);
            match store.load(&key) {
                Ok(r) => Some((store, key, r)),
                Err(e) => return fail(a.json, 1, &format!("run record: {e}")),
            }
        }
    };
    let last = local.as_ref().and_then(|(_, _, r)| r.clone());
    let done = last.as_ref().filter(|r| r.done_for(&digest, &p.hash) && !a.force);
    let mut result = RunResult {
        pipeline: &p.name,
        status: "planned",
        run_uuid: String::new(),
        source: src.path.display().to_string(),
        digest: digest.clone(),
        image_name: rendered.name.clone(),
        images: BTreeMap::new(),
        artifact_id: String::new(),
        steps: Vec::new(),
        findings: Vec::new(),
        retired: Vec::new(),
        retain_plans: Vec::new(),
        manifest: p.manifest.as_ref().map(|m| m.display().to_string()),
        record: local.as_ref().map(|(store, key, _)| store.location(key)).unwrap_or_default(),
        import: None,
        error: None,
        exit_code: None,
        would: Vec::new(),
    };
    if let Some(r) = done {
        up_to_date(&mut result, r);
        if mode == Mode::Run {
            print_up_to_date(&p, &a, &result);
            return 0;
        }
    }

    let connect = super::cloud::Connect { bucket: p.bucket.as_deref(), oss_internal: false };
    let done = done.is_some();
    let (p, a, result) = (&p, &a, &mut result);
    super::cloud::with_clouds(&cloud, connect, |clouds, cancel| async move {
        let shared = match &p.state {
            Some((dest, lease)) => match state_store(p, dest, *lease, &clouds, &region).await {
                Ok(s) => Some(s),
                Err(e) => return fail(a.json, 1, &format!("state {}: {e}", state_url(dest))),
            },
            None => None,
        };
        let mut last = last;
        let mut done = done;
        if let Some(state) = &shared {
            result.record = state.location(&p.name, &region);
            last = match state.load(&p.name, &region).await {
                Ok(r) => r,
                Err(e) => return fail(a.json, 1, &format!("run record: {e}")),
            };
            if let Some(r) = last.as_ref().filter(|r| r.done_for(&digest, &p.hash) && !a.force) {
                up_to_date(result, r);
                if mode == Mode::Run {
                    print_up_to_date(p, a, result);
                    return 0;
                }
                done = true;
            }
        }
        match mode {
            Mode::Plan => plan(p, a, &region, &rendered, done, &clouds, result).await,
            Mode::Run => {
                let uuid = record::new_run_id(&p.file);
                // With state in the bucket: this run's turn, or another runner's result.
                let mut held = None;
                if let Some(state) = &shared {
                    match take_turn(state, p, a, &region, &digest, &uuid, cancel.clone()).await {
                        Turn::Go(lease) => {
                            let report: Arc<dyn Fn(&str) + Send + Sync> =
                                Arc::new(|m: &str| eprintln!("imgport: warning: {m}"));
                            held = Some(lease.keep_alive(report));
                        }
                        Turn::Done(r) => {
                            up_to_date(result, &r);
                            print_up_to_date(p, a, result);
                            return 0;
                        }
                        Turn::Exit(code) => return code,
                    }
                    // The run before this turn may have finished this very content.
                    last = match state.load(&p.name, &region).await {
                        Ok(r) => r,
                        Err(e) => {
                            release(held).await;
                            return fail(a.json, 1, &format!("run record: {e}"));
                        }
                    };
                    if let Some(r) = last.as_ref().filter(|r| r.done_for(&digest, &p.hash) && !a.force) {
                        release(held).await;
                        up_to_date(result, r);
                        print_up_to_date(p, a, result);
                        return 0;
                    }
                }
                let store = Records { local: local.as_ref().map(|(s, k, _)| (s, k.as_str())), shared: shared.as_ref() };
                let mut rec = RunRecord {
                    pipeline: p.name.clone(),
                    file_hash: p.hash.clone(),
                    run_uuid: uuid.clone(),
                    status: RunStatus::Running,
                    source: src.path.display().to_string(),
                    digest: digest.clone(),
                    image_name: rendered.name.clone(),
                    started,
                    ended: None,
                    steps,
                    images: BTreeMap::new(),
                    error: None,
                    exit_code: None,
                    build: built,
                };
                if let Some(prev) = last.as_ref().filter(|r| r.status != RunStatus::Finished) {
                    note!(
                        "imgport: resuming after run {} ({:?}): the import reuses what it finished",
                        prev.run_uuid,
                        prev.status
                    );
                }
                if let Err(e) = store.save(p, &region, &rec).await {
                    release(held).await;
                    return fail(a.json, 1, &format!("run record: {e}"));
                }
                let spec = import_spec(p, &rendered, src.path.clone(), &digest);
                let lost = || held.as_ref().is_some_and(|h| h.lost());
                let code = execute(
                    p,
                    a,
                    &region,
                    &spec,
                    &clouds,
                    &src,
                    &mut rec,
                    result,
                    cancel,
                    &lost,
                    rendered.webhook.as_deref(),
                )
                .await;
                // A run whose lease was lost leaves the record to the runner that took it over.
                if code == LEASE_LOST {
                    release(held).await;
                    return code;
                }
                rec.ended = Some(unix_now());
                rec.status = if code == 0 { RunStatus::Finished } else { RunStatus::Failed };
                rec.exit_code = Some(code);
                rec.error = result.error.clone();
                if let Err(e) = store.save(p, &region, &rec).await {
                    eprintln!("imgport: error: run record: {e}");
                }
                release(held).await;
                code
            }
        }
    })
}

/// Runs the pipeline's build command in the file's folder, its output shown as it comes (`imgport: build` lines, or
/// `build_output` JSON events with `--json`). A failure is recorded (locally) and answered as the exit code: 9 the
/// command failed, 2 it could not be started, 128+N a signal stopped it.
fn run_build(
    p: &Pipeline,
    a: &RunArgs,
    cmd: &[String],
    region: &str,
    started: i64,
) -> Result<imgport_pipeline::file::build::BuildRecord, u8> {
    use imgport_pipeline::file::build::{self, BuildError};
    if !a.json {
        note!("imgport: build      {} (in {})", cmd.join(" "), p.dir.display());
    }
    let json = a.json;
    let mut on_line = |line: &str, is_err: bool| {
        if json {
            let stream = if is_err { "stderr" } else { "stdout" };
            eprintln!("{}", serde_json::json!({"event": "build_output", "stream": stream, "line": line}));
        } else {
            note!("imgport: build      | {line}");
        }
    };
    let env = [("IMGPORT_PIPELINE".to_string(), p.name.clone()), ("IMGPORT_REGION".to_string(), region.to_string())];
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    crate::signals::cancel_on_signal(flag.clone());
    let stop = || flag.load(std::sync::atomic::Ordering::SeqCst);
    match build::run(cmd, &p.dir, &env, &stop, &mut on_line) {
        Ok(b) => {
            if !a.json {
                note!("imgport: build      done ({:.1} s)", b.seconds);
            }
            Ok(b)
        }
        Err(e) => {
            let code = match &e {
                BuildError::Start(_) => 2,
                BuildError::Failed(_) => 9,
                BuildError::Stopped(_) => crate::signals::exit_code(),
            };
            if let (BuildError::Failed(b) | BuildError::Stopped(b), Some(dir)) = (&e, LocalRuns::default_dir()) {
                if p.state.is_none() {
                    let store = LocalRuns { dir };
                    let key = record::key(&p.name, &p.file, &p.cloud, region);
                    let rec = RunRecord {
                        pipeline: p.name.clone(),
                        file_hash: p.hash.clone(),
                        run_uuid: record::new_run_id(&p.file),
                        status: RunStatus::Failed,
                        source: String::new(),
                        digest: String::new(),
                        image_name: String::new(),
                        started,
                        ended: Some(unix_now()),
                        steps: vec![StepRecord { step: "build".into(), seconds: b.seconds, detail: e.to_string() }],
                        images: BTreeMap::new(),
                        error: Some(e.to_string()),
                        exit_code: Some(code),
                        build: Some(b.clone()),
                    };
                    if let Err(err) = store.save(&key, &rec) {
                        eprintln!("imgport: error: run record: {err}");
                    }
                }
            }
            Err(fail(a.json, code, &format!("{e}; the run stops before the import")))
        }
    }
}

/// The exit code of a run whose lease another runner took over (as `--no-wait`'s: that runner has the run).
const LEASE_LOST: u8 = 75;

/// A finished run's result, answered for this run (`up_to_date`).
fn up_to_date(result: &mut RunResult<'_>, r: &RunRecord) {
    result.status = "up_to_date";
    result.run_uuid = r.run_uuid.clone();
    result.image_name = r.image_name.clone();
    result.images = r.images.clone();
    result.artifact_id = artifact_id(&r.images);
    result.steps = r.steps.clone();
}

fn print_up_to_date(p: &Pipeline, a: &RunArgs, result: &RunResult<'_>) {
    if a.json {
        print_json(result);
    } else {
        outln!(
            "{}: up to date: run {} finished for this content ({}); nothing to do (--force runs again)",
            p.name,
            result.run_uuid,
            result.artifact_id
        );
    }
}

/// Where run records go: a local file, or the bucket.
struct Records<'a> {
    local: Option<(&'a LocalRuns, &'a str)>,
    shared: Option<&'a BucketState>,
}

impl Records<'_> {
    async fn save(&self, p: &Pipeline, region: &str, rec: &RunRecord) -> Result<(), String> {
        if let Some((store, key)) = self.local {
            store.save(key, rec)?;
        }
        if let Some(state) = self.shared {
            state.save(&p.name, region, rec).await?;
        }
        Ok(())
    }
}

fn state_url(dest: &imgport_storage::Destination) -> String {
    let scheme = if dest.flavor.is_oss() { "oss" } else { "s3" };
    format!("{scheme}://{}/{}", dest.bucket, dest.key)
}

/// The store of `state`: on OSS, the import's connection to its bucket (the local cloud's when the cloud is
/// local; created there), reconnected to the bucket's own region when it is in another; on S3, a connection as
/// `imgport upload` makes one (AWS_* environment).
async fn state_store(
    p: &Pipeline,
    dest: &imgport_storage::Destination,
    lease: std::time::Duration,
    clouds: &import::Clouds,
    region: &str,
) -> Result<BucketState, String> {
    use imgport_storage::{settings, Client, StoreConfig};
    let env = Env::from_process();
    let client = if dest.flavor.is_oss() {
        let c = clouds.store.config();
        let client = Client::new(StoreConfig {
            flavor: c.flavor,
            endpoint: c.endpoint.clone(),
            region: c.region.clone(),
            bucket: dest.bucket.clone(),
            style: c.style,
            credentials: c.credentials.clone(),
        })
        .map_err(|e| e.to_string())?;
        if p.cloud == "local" {
            client.create_bucket().await.map_err(|e| e.to_string())?;
            client
        } else {
            match client.bucket_region().await {
                Ok(r) if r != region => {
                    let s = settings::StoreSettings { region: Some(r), ..Default::default() };
                    settings::connect(dest, &s, &env)?.client
                }
                Ok(_) => client,
                Err(e) => return Err(e.to_string()),
            }
        }
    } else {
        let s = settings::StoreSettings::default();
        let connection = settings::connect(dest, &s, &env)?;
        for w in &connection.warnings {
            eprintln!("imgport: warning: {w}");
        }
        connection.client
    };
    let bucket_url = state_url(&imgport_storage::Destination { key: String::new(), ..dest.clone() });
    Ok(BucketState::new(Arc::new(client), &bucket_url, &dest.key, lease))
}

/// What waiting for the pipeline's lease came to.
enum Turn {
    Go(Lease),
    /// Another runner finished this content meanwhile: its record.
    Done(RunRecord),
    Exit(u8),
}

/// Takes the lease of this pipeline, region and content; while another runner holds it, waits for its record to
/// say it finished this content (or, with `--no-wait`, exits 75). An expired lease is taken over.
async fn take_turn(
    state: &BucketState,
    p: &Pipeline,
    a: &RunArgs,
    region: &str,
    digest: &str,
    uuid: &str,
    mut cancel: tokio::sync::watch::Receiver<bool>,
) -> Turn {
    let poll = (state.lease() / 3).clamp(std::time::Duration::from_millis(500), std::time::Duration::from_secs(5));
    let mut told = false;
    loop {
        // The holder's result first: once it finished this content there is nothing to take.
        if told {
            match state.load(&p.name, region).await {
                Ok(Some(r)) if r.done_for(digest, &p.hash) && !a.force => return Turn::Done(r),
                Ok(_) => {}
                Err(e) => eprintln!("imgport: warning: run record: {e}; trying again"),
            }
        }
        match state.acquire(&p.name, region, digest, uuid, state::unix_now()).await {
            Ok(Acquire::Held(lease)) => {
                if told && !a.json {
                    note!("imgport: lease      taken: {}", lease.location());
                }
                return Turn::Go(lease);
            }
            Ok(Acquire::Busy(holder)) => {
                let since = imgport_cloud::retain::format_time(holder.acquired);
                let left = holder.expires - state::unix_now();
                let who = format!(
                    "pipeline {} is already running on {} since {since} (run {}, pid {}); its lease expires in {left}s unless renewed",
                    p.name, holder.host, holder.run_uuid, holder.pid
                );
                if a.no_wait {
                    return Turn::Exit(fail(a.json, 75, &format!("{who}; rerun later (--no-wait)")));
                }
                if !told {
                    note!("imgport: waiting    {who}: waiting for its result");
                    told = true;
                }
            }
            Err(e) => return Turn::Exit(fail(a.json, 1, &format!("lease: {e}"))),
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = cancel.changed() => return Turn::Exit(fail(a.json, crate::signals::exit_code(), "interrupted while waiting for the other runner")),
        }
    }
}

/// Releases a held lease (a failure is only worth a warning: the lease then expires).
async fn release(held: Option<imgport_pipeline::file::state::KeepAlive>) {
    if let Some(k) = held {
        if let Err(e) = k.release().await {
            eprintln!("imgport: warning: releasing the lease: {e}; it expires on its own");
        }
    }
}

fn digest_of(img: &dyn imgport_disk::DiskImage) -> Result<String, imgport_disk::Error> {
    // A signal stops the reading (the run has recorded nothing yet); the exit code is then 128 + the signal.
    let ctl = imgport_disk::Control::new();
    crate::signals::cancel_on_signal(ctl.cancel_flag());
    imgport_disk::digest(img, &ctl)
}

/// `plan` and `run --dry-run`.
async fn plan(
    p: &Pipeline,
    a: &RunArgs,
    region: &str,
    r: &Rendered,
    done: bool,
    clouds: &import::Clouds,
    result: &mut RunResult<'_>,
) -> u8 {
    let mut would = Vec::new();
    if done {
        would
            .push(format!("skip: the last run finished for this content ({}); --force runs again", result.artifact_id));
    } else {
        // The import's own reuse check, cheaply: an image of the name that carries this content.
        let filter = imgport_cloud::ecs::ImageFilter {
            image_name: Some(r.name.clone()),
            owner_alias: Some("self".into()),
            ..Default::default()
        };
        let existing = match clouds.ecs.images(&filter).await {
            Ok(found) => found,
            Err(e) => {
                would.push(format!("(could not look for an image of the name to reuse: {e})"));
                Vec::new()
            }
        };
        let same = existing
            .iter()
            .find(|i| i.image_name == r.name && i.tag(import::DIGEST_TAG) == Some(result.digest.as_str()));
        match (same, existing.iter().any(|i| i.image_name == r.name)) {
            (Some(i), _) => would.push(format!(
                "import: reuse {} ({}): {} in {region} already holds this content",
                i.image_id,
                i.status.as_str(),
                r.name
            )),
            (None, true) if !p.import.replace => would.push(format!(
                "import: stops: an image named {} with other content exists in {region} (set import.replace)",
                r.name
            )),
            _ => would.push(format!(
                "import {} as {} into {region}: validate, upload, register, wait",
                result.source, r.name
            )),
        }
        for c in &p.copy_to {
            would.push(format!("copy to {c}"));
        }
        if !p.share_with.is_empty() {
            would.push(format!("share with {}", p.share_with.join(", ")));
        }
    }
    if let (Some(policy), Some(family)) = (&p.retain, &r.family) {
        let mut regions = vec![region.to_string()];
        regions.extend(p.copy_to.iter().cloned());
        match retain::survey(&clouds.ecs, family, &regions).await {
            Ok(surveys) => {
                for s in &surveys {
                    match retain::plan(s, policy, unix_now()) {
                        Ok(plan) => result.retain_plans.push(plan),
                        Err(e) => would.push(format!("retain: {e}")),
                    }
                }
            }
            Err(e) => would.push(format!("retain: the survey failed: {e}")),
        }
        for plan in &result.retain_plans {
            for i in plan.images.iter().filter(|i| matches!(i.action, Action::Deprecate | Action::Delete)) {
                let what = if i.action == Action::Delete { "delete" } else { "deprecate" };
                would.push(format!(
                    "retain: {what} {} ({}) in {}: {}",
                    i.image_id,
                    i.image_name,
                    plan.region,
                    i.why.describe()
                ));
            }
        }
        if result.retain_plans.iter().all(|p| p.count(Action::Deprecate) + p.count(Action::Delete) == 0) {
            would.push(format!("retain: nothing of family {family} to retire now (before this run's image)"));
        }
    }
    if !done {
        if let Some(m) = &p.manifest {
            would.push(format!("manifest: append a build to {}", m.display()));
        }
    }
    if a.json {
        result.would = would;
        print_json(result);
    } else {
        outln!("pipeline {}: {} -> {} (digest {})", p.name, result.source, r.name, result.digest);
        for w in &would {
            outln!("  {w}");
        }
        note!("imgport: plan only: nothing changed");
    }
    0
}

/// The run itself: import, retain, manifest. Fills `rec` and `result`; answers the exit code.
#[allow(clippy::too_many_arguments)]
async fn execute(
    p: &Pipeline,
    a: &RunArgs,
    region: &str,
    spec: &ImportSpec,
    clouds: &import::Clouds,
    src: &source::Resolved,
    rec: &mut RunRecord,
    result: &mut RunResult<'_>,
    cancel: tokio::sync::watch::Receiver<bool>,
    lease_lost: &dyn Fn() -> bool,
    webhook: Option<&str>,
) -> u8 {
    result.run_uuid = rec.run_uuid.clone();
    let stopped = cancel.clone();
    let findings: Arc<Mutex<Vec<String>>> = Arc::default();
    let done_steps: Arc<Mutex<Vec<StepRecord>>> = Arc::default();
    let events = {
        let inner = if a.json { super::import::json_events() } else { super::import::print_events() };
        let (findings, done_steps) = (findings.clone(), done_steps.clone());
        Arc::new(move |e: &ImportEvent| {
            match e {
                ImportEvent::Finding { id, severity, message } => {
                    findings.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{severity} {id}: {message}"))
                }
                ImportEvent::StepDone { step, seconds, detail } => {
                    done_steps.lock().unwrap_or_else(|p| p.into_inner()).push(StepRecord {
                        step: super::import::step_name(*step).to_string(),
                        seconds: *seconds,
                        detail: detail.clone(),
                    })
                }
                _ => {}
            }
            inner(e)
        })
    };
    let imported = import::import(spec, clouds, events, cancel).await;
    result.findings = findings.lock().unwrap_or_else(|p| p.into_inner()).clone();
    rec.steps.extend(done_steps.lock().unwrap_or_else(|p| p.into_inner()).drain(..));
    let outcome = match imported {
        Ok(o) => o,
        Err(e) => {
            let code = match (&e, crate::signals::received()) {
                (import::ImportError::Interrupted { .. }, Some(_)) => crate::signals::exit_code(),
                _ => e.exit_code(),
            };
            if let import::ImportError::Partial { outcome, .. } = &e {
                record_outcome(outcome, rec);
            }
            result.status = "failed";
            result.error = Some(format!("import: {e}"));
            result.exit_code = Some(code);
            result.steps = rec.steps.clone();
            result.images = rec.images.clone();
            if a.json {
                print_json(result);
            }
            eprintln!("imgport: error: import: {e}; rerun the pipeline to resume");
            return code;
        }
    };
    record_outcome(&outcome, rec);
    // The import is done; what follows (retention, the manifest, the webhook) is not started after a signal, nor
    // by a run whose lease another runner took over (that runner does it).
    if lease_lost() {
        result.status = "failed";
        result.error = Some(format!(
            "the lease was lost to another runner before the run ended (image {} is {}); that runner finishes the run",
            outcome.image_id, outcome.status
        ));
        result.exit_code = Some(LEASE_LOST);
        result.images = rec.images.clone();
        return fail(a.json, LEASE_LOST, result.error.as_deref().unwrap_or_default());
    }
    if *stopped.borrow() {
        let code = crate::signals::exit_code();
        result.status = "failed";
        result.error = Some(format!("interrupted after the import (image {} is {})", outcome.image_id, outcome.status));
        result.exit_code = Some(code);
        result.images = rec.images.clone();
        result.steps = rec.steps.clone();
        if a.json {
            print_json(result);
        }
        eprintln!("imgport: error: {}; rerun the pipeline to finish it", result.error.as_deref().unwrap_or_default());
        return code;
    }

    // Retention for the family, in the import region and every copy region.
    let mut failed = 0;
    if let (Some(policy), Some(family)) = (&p.retain, &spec.family) {
        let t = Instant::now();
        let mut regions = vec![region.to_string()];
        regions.extend(p.copy_to.iter().cloned());
        let now = unix_now();
        match retain::survey(&clouds.ecs, family, &regions).await {
            Ok(surveys) => {
                for s in &surveys {
                    let plan = match retain::plan(s, policy, now) {
                        Ok(plan) => plan,
                        Err(e) => {
                            failed += 1;
                            result.error = Some(format!("retain: {e}"));
                            continue;
                        }
                    };
                    let done = retain::apply(&clouds.ecs, &plan, unix_now()).await;
                    if !a.json {
                        done.iter().for_each(super::images::print_done);
                    }
                    failed += done.iter().filter(|d| !d.ok).count();
                    result.retired.extend(done);
                }
            }
            Err(e) => {
                failed += 1;
                result.error = Some(format!("retain: the survey failed: {e}"));
            }
        }
        let ok = result.retired.iter().filter(|d| d.ok);
        let (deprecated, deleted) =
            ok.fold((0, 0), |(dp, dl), d| if d.action == Action::Delete { (dp, dl + 1) } else { (dp + 1, dl) });
        let detail = format!("family {family} in {}: {deprecated} deprecated, {deleted} deleted", regions.join(", "));
        if !a.json {
            note!("imgport: retain     {detail} ({:.1} s)", t.elapsed().as_secs_f64());
        }
        rec.steps.push(StepRecord { step: "retain".into(), seconds: t.elapsed().as_secs_f64(), detail });
    }

    // The manifest (a build appended) and the webhook (the run's build in a manifest of its own).
    if p.manifest.is_some() || webhook.is_some() {
        let size = std::fs::metadata(&src.path).map(|m| m.len()).unwrap_or(0);
        let mut custom = BTreeMap::new();
        let json = |v: &dyn erased::Json| v.text();
        custom.insert("digest".to_string(), outcome.digest.clone());
        custom.insert("image_name".to_string(), outcome.name.clone());
        custom.insert("images".to_string(), json(&rec.images));
        custom.insert("steps".to_string(), json(&rec.steps));
        custom.insert("findings".to_string(), json(&result.findings));
        custom.insert("retired".to_string(), json(&result.retired));
        custom.insert("reused".to_string(), outcome.reused.to_string());
        custom.insert("imgport_version".to_string(), spec.version.clone());
        let build = Build {
            name: src.build.clone().unwrap_or_else(|| p.name.clone()),
            builder_type: "imgport".into(),
            build_time: unix_now(),
            files: vec![BuildFile { name: src.path.display().to_string(), size }],
            artifact_id: artifact_id(&rec.images),
            packer_run_uuid: rec.run_uuid.clone(),
            custom_data: Some(custom),
        };
        if let Some(path) = &p.manifest {
            let t = Instant::now();
            match Manifest::append(path, build.clone()) {
                Ok(m) => {
                    let detail = format!("{} ({m} build(s))", path.display());
                    if !a.json {
                        note!("imgport: manifest   {detail}");
                    }
                    rec.steps.push(StepRecord { step: "manifest".into(), seconds: t.elapsed().as_secs_f64(), detail });
                }
                Err(e) => {
                    failed += 1;
                    result.error = Some(format!("manifest: {e}"));
                }
            }
        }
        if let Some(url) = webhook {
            let t = Instant::now();
            let body = serde_json::json!({"builds": [build], "last_run_uuid": rec.run_uuid});
            let mut stop = stopped.clone();
            let posted = tokio::select! {
                r = imgport_pipeline::file::webhook::post(url, &body) => r,
                _ = stop.changed() => Err("interrupted before the webhook answered".to_string()),
            };
            match posted {
                Ok((status, attempts)) => {
                    let to = imgport_pipeline::file::webhook::redacted(url);
                    let detail = format!("POST {to}: HTTP {status} ({attempts} attempt(s))");
                    if !a.json {
                        note!("imgport: webhook    {detail}");
                    }
                    rec.steps.push(StepRecord { step: "webhook".into(), seconds: t.elapsed().as_secs_f64(), detail });
                }
                Err(e) => {
                    failed += 1;
                    result.error = Some(e);
                }
            }
        }
    }

    result.images = rec.images.clone();
    result.artifact_id = artifact_id(&rec.images);
    result.steps = rec.steps.clone();
    let code = if failed > 0 { 8 } else { 0 };
    result.status = if code == 0 { "finished" } else { "failed" };
    result.exit_code = (code != 0).then_some(code);
    if a.json {
        result.import = Some(outcome.clone());
        print_json(result);
    } else {
        outln!("{}: {} is {} in {}", p.name, outcome.image_id, outcome.status, outcome.region);
        for c in &outcome.copies {
            match &c.error {
                None => outln!("  copy in {}: {} is {}", c.region, c.image_id, c.status),
                Some(e) => outln!("  copy in {}: failed: {e}", c.region),
            }
        }
        outln!("  artifact {}", artifact_id(&rec.images));
        if let Some(e) = &result.error {
            eprintln!("imgport: error: {e}; rerun the pipeline to retry");
        }
    }
    code
}

/// The import's images into the run record.
fn record_outcome(o: &ImportOutcome, rec: &mut RunRecord) {
    if !o.image_id.is_empty() {
        rec.images.insert(o.region.clone(), o.image_id.clone());
    }
    for c in o.copies.iter().filter(|c| c.error.is_none() && !c.image_id.is_empty()) {
        rec.images.insert(c.region.clone(), c.image_id.clone());
    }
}

/// Values as JSON text, for Packer's string-valued `custom_data`.
mod erased {
    pub trait Json {
        fn text(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn text(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}
