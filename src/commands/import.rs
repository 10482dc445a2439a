//! `imgport import IMAGE`: validate, upload, register as an ECS custom image, wait until it is ready, copy and
//! share it, and clean up. `--cloud local` runs it against the built-in local cloud (the emulator in-process, its
//! state under `$XDG_DATA_HOME/imgport/local-cloud`), with no account.

use super::OpenArgs;
use crate::output::print_json;
use imgport_auth::Env;
use imgport_cloud::wait::WaitOptions;
use imgport_pipeline::import::plan::Overrides;
use imgport_pipeline::import::{self, ImportError, ImportEvent, ImportOutcome, ImportSpec, Step};
use imgport_pipeline::packer;
use imgport_storage::UploadEvent;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Exit codes: 0 done (or reused), 2 bad arguments or unreadable image, 3 validation failed, 4 preflight failed,
/// 5 upload failed, 6 import failed (refused, or CreateFailed), 7 timed out (the import goes on), 8 partially done
/// (copies, shares or the family failed, or `--replace` could not swap the images), 130 (128 + signal) interrupted. Worth retrying as they are: 5, 7 (`imgport images
/// wait`), and 4 or 6 when the error says the service was busy.
#[derive(clap::Args)]
#[command(after_help = "Exit codes: 0 done or reused, 2 bad arguments or unreadable image, 3 validation failed, \
                        4 preflight failed, 5 upload failed, 6 import failed, 7 timed out (the import goes on), \
                        8 copies, shares, the family or the --replace swap failed, 128+N interrupted by signal N (130 for Ctrl-C).")]
pub struct Args {
    #[command(flatten)]
    open: OpenArgs,
    /// The disk image: raw, qcow2, vhd, vhdx or vmdk (converted when ECS cannot take it as it is).
    #[arg(required_unless_present = "packer_manifest")]
    image: Option<PathBuf>,
    /// Instead of IMAGE: the disk image of a build in Packer's manifest (the `manifest` post-processor's file),
    /// from the last run (PACKER_RUN_UUID inside Packer); the build must hold exactly one disk image. Once
    /// imported, an entry for the build with artifact_id REGION:IMAGE-ID is added to the manifest.
    /// See examples/packer/README.md.
    #[arg(long, value_name = "FILE", conflicts_with = "image")]
    packer_manifest: Option<PathBuf>,
    /// The build to import from the manifest [default: PACKER_BUILD_NAME inside Packer, else the run's only build].
    #[arg(long, value_name = "NAME")]
    build: Option<String>,
    /// A data disk imported with the system disk, in the same image (repeat; any format imgport reads).
    #[arg(long = "data-disk", value_name = "IMAGE")]
    data_disks: Vec<PathBuf>,
    /// Name of the custom image (2-128 characters, starting with a letter).
    #[arg(long)]
    name: String,
    #[command(flatten)]
    cloud: super::cloud::CloudArgs,
    /// OSS bucket in that region to upload through (required for alibaba; the local cloud creates its own).
    #[arg(long)]
    bucket: Option<String>,
    /// Object key [default: imgport/NAME-DIGEST.FORMAT].
    #[arg(long)]
    key: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// Image family (DescribeImageFromFamily answers its newest image), set on the image and its copies once
    /// Available (not with --no-wait).
    #[arg(long)]
    family: Option<String>,
    /// A tag KEY=VALUE (repeat).
    #[arg(long = "tag", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// ImportImage Platform [default: derived from the guest].
    #[arg(long)]
    platform: Option<String>,
    /// linux or windows [default: derived].
    #[arg(long)]
    os_type: Option<String>,
    /// x86_64, i386 or arm64 [default: derived].
    #[arg(long)]
    arch: Option<String>,
    /// BIOS, UEFI or UEFI-Preferred [default: derived]; refused when the guest cannot boot that way.
    #[arg(long)]
    boot_mode: Option<String>,
    /// System disk size in GiB [default: the virtual size, rounded up].
    #[arg(long)]
    disk_size: Option<u64>,
    /// Auto, Aliyun or BYOL.
    #[arg(long)]
    license_type: Option<String>,
    /// NVMe support (Features.NvmeSupport): auto derives it from the guest (the nvme driver built into the kernel
    /// or in the initramfs: supported; otherwise unsupported; not sent when the guest cannot tell).
    #[arg(long, value_parser = ["auto", "supported", "unsupported"], default_value = "auto")]
    nvme: String,
    /// The resource group the image joins (ResourceGroupId).
    #[arg(long, value_name = "ID")]
    resource_group_id: Option<String>,
    /// An image of that name with other content is replaced, but only once the new one is Available (imported
    /// under NAME-new-DIGEST, then renamed): the old one is deleted with its snapshots if imgport made it, else
    /// renamed to NAME-replaced-TIME and deprecated. The same in each --copy-to region.
    #[arg(long)]
    replace: bool,
    /// Import again even when an image of the name holds this very content (it is replaced once the new one is
    /// Available, as with --replace); without it that image is reported as reused.
    #[arg(long)]
    force: bool,
    /// Ask ECS to check the image too (DetectionStrategy=Standard).
    #[arg(long)]
    detect: bool,
    /// Import even when validation finds errors.
    #[arg(long)]
    skip_validation: bool,
    /// Warnings stop the import too.
    #[arg(long)]
    strict: bool,
    /// Create or repair the import role (AliyunECSImageImportDefaultRole) as the console does.
    #[arg(long)]
    create_role: bool,
    /// Keep the uploaded object after the import.
    #[arg(long)]
    keep_object: bool,
    /// Also write the converted image (qcow2) to PATH as it streams into the upload: the same conversion, no
    /// second pass. Only when the image is converted (VMDK, VHDX, a sparse raw, a VHD ECS would refuse): refused
    /// when it goes up as it is, and when PATH exists. Renamed into place once the upload completed; a failed or
    /// interrupted import leaves nothing at PATH.
    #[arg(long, value_name = "PATH")]
    keep_converted: Option<PathBuf>,
    /// What the disks go up as: `auto` (as they are when ECS takes them: qcow2, a full raw, a VHD of whole MiB;
    /// else converted to qcow2) or `qcow2` (always converted, streamed into the upload).
    #[arg(long, value_name = "FORMAT", default_value = "auto", value_parser = ["auto", "qcow2"])]
    upload_format: String,
    /// Upload through the OSS internal endpoint (oss-REGION-internal.aliyuncs.com: no traffic charges, faster),
    /// which answers only from ECS in the import region. Without it, imgport uses it when the instance metadata
    /// service says it runs on ECS there. IMGPORT_OSS_ENDPOINT wins over both. Ignored with --cloud local.
    #[arg(long)]
    oss_internal: bool,
    /// Register and exit without waiting (`imgport images wait` waits later).
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this long (e.g. 3h, 90m, 600s) [default: 3h].
    #[arg(long, value_parser = parse_duration, default_value = "3h")]
    timeout: Duration,
    /// Copy the image into this region too (repeat).
    #[arg(long = "copy-to")]
    copy_to: Vec<String>,
    /// Share the image (and its copies) with this account id (repeat).
    #[arg(long = "share-with")]
    share_with: Vec<String>,
    /// Upload part size (e.g. 64M).
    #[arg(long, value_parser = super::upload::parse_size)]
    part_size: Option<u64>,
    /// Parts in flight at most.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// One JSON result document on stdout (docs/schemas/import-result.schema.json); each step, finding and
    /// progress as a JSON object per line on stderr (docs/schemas/import-event.schema.json).
    #[arg(long)]
    json: bool,
}

pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

/// `3h`, `90m`, `45s`, `7d`, `600` (seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: expected a duration like 3h, 90m or 600s"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

/// The values in their first order, each once.
fn dedup(values: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    out
}

fn spec(args: &Args, image: PathBuf) -> ImportSpec {
    ImportSpec {
        image,
        data_disks: args.data_disks.clone(),
        open: args.open.options(),
        name: args.name.clone(),
        description: args.description.clone(),
        family: args.family.clone(),
        tags: args.tags.clone(),
        overrides: Overrides {
            platform: args.platform.clone(),
            os_type: args.os_type.clone(),
            architecture: args.arch.clone(),
            boot_mode: args.boot_mode.clone(),
            disk_size_gib: args.disk_size,
            nvme: Some(args.nvme.clone()),
        },
        license_type: args.license_type.clone(),
        detection_strategy: args.detect.then(|| "Standard".to_string()),
        resource_group_id: args.resource_group_id.clone(),
        replace: args.replace,
        force: args.force,
        key: args.key.clone(),
        keep_object: args.keep_object,
        keep_converted: args.keep_converted.clone(),
        always_qcow2: args.upload_format == "qcow2",
        skip_validation: args.skip_validation,
        strict: args.strict,
        create_role: args.create_role,
        wait: (!args.no_wait).then(|| WaitOptions { timeout: args.timeout, ..Default::default() }),
        copy_to: dedup(&args.copy_to),
        share_with: dedup(&args.share_with),
        part_size: args.part_size,
        concurrency: args.concurrency,
        ..base_spec()
    }
}

/// What every import shares whoever builds its spec (`import` from its flags, `pipeline run` from a file): the
/// upload's resume state folder, imgport's version for the tag, and the defaults of the flags.
pub(crate) fn base_spec() -> ImportSpec {
    ImportSpec {
        concurrency: 8,
        wait: Some(WaitOptions { timeout: Duration::from_secs(3 * 3600), ..Default::default() }),
        state_dir: imgport_storage::state::default_dir(),
        version: env!("IMGPORT_VERSION").to_string(),
        ..Default::default()
    }
}

/// Step lines and progress on stderr (none with `-q`); with a terminal, the upload's bytes on a bar.
pub(crate) fn print_events() -> import::ImportEventFn {
    let bar: Arc<std::sync::Mutex<Option<indicatif::ProgressBar>>> = Arc::default();
    Arc::new(move |e: &ImportEvent| {
        let mut bar = bar.lock().unwrap_or_else(|p| p.into_inner());
        match e {
            ImportEvent::StepStarted { step: Step::Upload } if crate::output::progress_enabled() => {
                let b = indicatif::ProgressBar::new(0);
                let style = indicatif::ProgressStyle::with_template("upload {bar:40} {bytes} {bytes_per_sec} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                b.set_style(style);
                *bar = Some(b);
            }
            ImportEvent::StepStarted { .. } => {}
            ImportEvent::StepDone { step, seconds, detail } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                note!("imgport: {:<10} {detail} ({seconds:.1} s)", step_name(*step));
            }
            ImportEvent::Finding { id, severity, message } => note!("imgport: {severity:<10} {id}: {message}"),
            ImportEvent::Upload(UploadEvent::Progress(p)) => {
                if let Some(b) = bar.as_ref() {
                    if p.total > 0 {
                        b.set_length(p.total);
                    }
                    b.set_position(p.done);
                }
            }
            ImportEvent::Upload(_) | ImportEvent::Converting { .. } => {}
            ImportEvent::Wait(w) => super::images::print_wait_event(w),
        }
    })
}

/// `--json`: each event as one JSON object on a line of stderr (docs/schemas/import-event.schema.json); the
/// upload's and the converter's progress at most once a second, and always at their end.
pub(crate) fn json_events() -> import::ImportEventFn {
    let last: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    Arc::new(move |e: &ImportEvent| {
        let progress = match e {
            ImportEvent::Upload(UploadEvent::Progress(p)) => Some(p.total > 0 && p.done >= p.total),
            ImportEvent::Converting { done, total } => Some(*total > 0 && done >= total),
            _ => None,
        };
        if let Some(finished) = progress {
            let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if !(due || finished) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        if let Ok(line) = serde_json::to_string(e) {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    })
}

pub(crate) fn step_name(step: Step) -> &'static str {
    match step {
        Step::Validate => "validate",
        Step::Preflight => "preflight",
        Step::Upload => "upload",
        Step::Register => "register",
        Step::Wait => "wait",
        Step::Replace => "replace",
        Step::Distribute => "distribute",
        Step::Cleanup => "cleanup",
    }
}

fn summary(o: &ImportOutcome) {
    if o.reused {
        outln!(
            "{} in {}: {} already holds this content ({}); nothing was uploaded",
            o.name,
            o.region,
            o.image_id,
            o.status
        );
        return;
    }
    outln!("{} in {}: {} is {}", o.name, o.region, o.image_id, o.status);
    if let Some(r) = &o.replaced {
        outln!("  {}", replaced(r));
    }
    for c in &o.copies {
        match &c.error {
            None => outln!("  copy in {}: {} is {}", c.region, c.image_id, c.status),
            Some(e) => outln!("  copy in {}: failed: {e}", c.region),
        }
        if let Some(r) = &c.replaced {
            outln!("    {}", replaced(r));
        }
    }
    if !o.shared_with.is_empty() {
        outln!("  shared with {}", o.shared_with.join(", "));
    }
    let object = if o.object_deleted { "deleted" } else { "kept" };
    outln!("  oss://{}/{} {object}; digest {}", o.bucket, o.key, o.digest);
    for k in &o.data_keys {
        outln!("  oss://{}/{k} {object} (data disk)", o.bucket);
    }
}

/// What became of the image `--replace` took the name from.
fn replaced(r: &import::Replaced) -> String {
    let what = match &r.renamed_to {
        Some(aside) => format!("replaced {}: renamed to {aside}", r.image_id),
        None => format!("replaced {}: deleted", r.image_id),
    };
    match r.notes.is_empty() {
        true => what,
        false => format!("{what} ({})", r.notes.join("; ")),
    }
}

/// The one document `--json` prints when the import fails: the error, the exit code, the service's code and the
/// fix when known, the image when there is one (a timeout or a partial success), and the blocking findings.
#[derive(serde::Serialize)]
struct JsonError<'a> {
    error: String,
    exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'a ImportOutcome>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    findings: Vec<String>,
}

/// `--packer-manifest`: the build's disk image, read as imgport_pipeline::packer's docs say. Inside Packer
/// (shell-local), PACKER_RUN_UUID names the run and PACKER_BUILD_NAME the build.
fn packer_source(manifest: &std::path::Path, build: Option<&str>) -> Result<packer::Source, packer::PackerError> {
    let env_build = std::env::var("PACKER_BUILD_NAME").ok();
    let run = std::env::var("PACKER_RUN_UUID").ok();
    let cwd = std::env::current_dir().unwrap_or_default();
    let source = packer::read(manifest)?.source(build.or(env_build.as_deref()), run.as_deref(), &cwd)?;
    note!("imgport: packer     build {} (run {}): {}", source.build, source.run_uuid, source.image.display());
    for f in &source.skipped {
        note!("imgport: packer     {} is not a disk image: skipped", f.display());
    }
    Ok(source)
}

pub fn run(args: Args) -> u8 {
    let (image, packer) = match (&args.image, &args.packer_manifest) {
        (Some(_), _) if args.build.is_some() => {
            eprintln!("imgport: error: --build names a build in --packer-manifest FILE, not given");
            return 2;
        }
        (Some(image), _) => (image.clone(), None),
        (None, Some(manifest)) => match packer_source(manifest, args.build.as_deref()) {
            Ok(s) => (s.image.clone(), Some((manifest.clone(), s))),
            Err(e) => {
                eprintln!("imgport: error: {e}");
                return 2;
            }
        },
        (None, None) => {
            eprintln!("imgport: error: name the disk image: IMAGE or --packer-manifest FILE");
            return 2;
        }
    };
    let region = match args.cloud.region(&Env::from_process()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("imgport: error: {e}");
            return 2;
        }
    };
    if args.cloud.cloud != "local" && args.bucket.is_none() {
        eprintln!("imgport: error: --bucket is required: an OSS bucket in {region} to upload through");
        return 2;
    }
    let spec = spec(&args, image);
    let connect = super::cloud::Connect { bucket: args.bucket.as_deref(), oss_internal: args.oss_internal };
    super::cloud::with_clouds(&args.cloud, connect, |clouds, cancel| async move {
        let events = if args.json { json_events() } else { print_events() };
        match import::import(&spec, &clouds, events, cancel).await {
            Ok(o) => {
                if args.json {
                    print_json(&o);
                } else {
                    summary(&o);
                }
                match packer {
                    Some((manifest, source)) => record_in_manifest(&manifest, &source, &o),
                    None => 0,
                }
            }
            Err(e) => {
                // Copies or shares failed, but the image is there: the manifest says so (the failed copies as
                // region:failed), and the exit code still fails the build.
                if let (ImportError::Partial { outcome, .. }, Some((manifest, source))) = (&e, &packer) {
                    record_in_manifest(manifest, source, outcome);
                }
                report_failure(&e, args.json)
            }
        }
    })
}

/// The import's entry in the Packer manifest it came from; failing to write it fails the command (exit 1), so
/// that a Packer build does not pass without its record (a rerun reuses the image and writes it).
fn record_in_manifest(manifest: &std::path::Path, source: &packer::Source, o: &ImportOutcome) -> u8 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    match packer::record(manifest, source, o, now) {
        Ok(()) => {
            note!(
                "imgport: packer     recorded {} for build {} in {}",
                packer::artifact_id(o),
                source.build,
                manifest.display()
            );
            0
        }
        Err(e) => {
            eprintln!("imgport: error: {e}");
            1
        }
    }
}

fn report_failure(e: &ImportError, json: bool) -> u8 {
    // Stopped by a signal: 128 + its number, whatever the error says.
    let code = match (e, crate::signals::received()) {
        (ImportError::Interrupted { .. }, Some(_)) => crate::signals::exit_code(),
        _ => e.exit_code(),
    };
    let cloud = match e {
        ImportError::Import(c) | ImportError::TimedOut { error: c, .. } | ImportError::Replace { error: c, .. } => {
            Some(c)
        }
        ImportError::Preflight { source: Some(c), .. } => Some(c),
        _ => None,
    };
    let advice = cloud.and_then(|c| c.advice());
    let findings: Vec<String> = match e {
        ImportError::Validation { report, .. } => report
            .findings
            .iter()
            .filter(|f| f.is_blocking(false))
            .map(|f| {
                let fix = f.fix.as_ref().map(|x| format!(" -- fix: {x}")).unwrap_or_default();
                format!("{}: {}{fix}", f.id, f.message)
            })
            .collect(),
        _ => Vec::new(),
    };
    if json {
        let (image_id, outcome) = match e {
            ImportError::TimedOut { image_id, .. } | ImportError::Replace { image_id, .. } => {
                (Some(image_id.as_str()), None)
            }
            ImportError::Partial { outcome, .. } => (Some(outcome.image_id.as_str()), Some(outcome.as_ref())),
            _ => (None, None),
        };
        print_json(&JsonError {
            error: e.to_string(),
            exit_code: code,
            code: cloud.and_then(|c| c.code()),
            cause: advice.map(|a| a.cause),
            fix: advice.map(|a| a.fix),
            image_id,
            outcome,
            findings: findings.clone(),
        });
    } else if let ImportError::Partial { outcome, .. } = e {
        summary(outcome);
    }
    eprintln!("imgport: error: {e}");
    if let (Some(a), ImportError::Import(_) | ImportError::TimedOut { .. }) = (advice, e) {
        eprintln!("  cause: {}\n  fix: {}", a.cause, a.fix);
    }
    for f in &findings {
        eprintln!("  {f}");
    }
    code
}
