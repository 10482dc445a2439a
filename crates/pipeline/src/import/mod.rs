//! An image file to a ready custom image: inspect and validate, plan (parameters, upload format, key, token),
//! preflight, upload (as is, or converted while uploading), register with ImportImage, wait, copy and share, and
//! clean up on every path. The steps report [`ImportEvent`]s; nothing here prints.
//!
//! **Preflight**, before the first byte is uploaded: the credentials work and the region is served
//! (DescribeRegions), the bucket exists in the import region, the import role lets ECS read it (or, with
//! `create_role`, is made so and checked again until RAM's change shows, bounded), and no image of that name
//! exists. An image of that name made from the same content (its `imgport:digest` tag) that is Available is
//! reported as reused instead: nothing is uploaded or imported, and copies and shares an earlier run did not finish
//! are made. An earlier run's CreateFailed image of the same content is deleted; any other image of the name stops
//! the import, unless `replace` (see [`replace`]): then the new image is imported under a temporary name and takes
//! the name only once it is Available, the old one deleted (imgport's) or renamed aside and deprecated; copies
//! into regions that hold other content under the name are swapped in the same way. A `key` the user chose must
//! not hold an object yet, unless that object holds this content.
//!
//! **Upload**: every object records the content digest and upload format of its disk in its metadata
//! (`imgport-digest`, `imgport-format`); an object already at the key with the same ones is not sent again. When
//! another run holds the upload of the same object (two runs started at once), this run waits for that run's image
//! of the name with this content and reuses it, or resumes the upload if that run ended without one (bounded by
//! the wait timeout).
//! With `keep_converted`, a converted system disk is also written to that file by the same conversion pass (see
//! [`crate::convert_upload::ConvertUpload::with_copy`]); when nothing is uploaded (the object or an image of the
//! content exists) it is converted into the file alone, the same bytes. Refused when the disk goes up as it is.
//!
//! **Image quota**: ECS's API does not tell the custom image quota (DescribeAccountAttributes has no attribute for
//! it; it lives in Quota Center), so preflight cannot compare against it; ImportImage's `QuotaExceed.Image` is
//! answered with the number of own images in the region, the cause and the fix, and the object is removed.
//!
//! **Idempotency**: the ClientToken is derived from the content digest, name and region, so a retried or rerun
//! ImportImage answers the image the first one created.
//!
//! **Cleanup**: the uploaded object is deleted once ECS no longer needs it (the image is Available or failed),
//! unless `keep_object`; it is kept while an import still runs (a timeout or `no_wait`), since ECS still reads it.
//! When `cancel` fires during the upload or the wait, the unfinished import is cancelled (CancelTask), copies in
//! flight with CancelCopyImage, the object is deleted, and the run ends with [`ImportError::Interrupted`].
//! Nothing imgport did not create is ever deleted.
//!
//! **Family**: ImportImage and CopyImage take no `ImageFamily`, so the family is set with ModifyImageAttribute on
//! the image once it is Available (before the copies start) and on each copy that does not carry it already.

pub mod distribute;
mod examine;
mod objects;
pub mod plan;
mod preflight;
mod replace;

use distribute::distribute_step;
use examine::{combined_digest, examine, examine_data, size, DataDisk};
use objects::{cancel_import, delete_objects, objects, registered_anyway, send_or_wait, Disk, Sent, Turn};
use preflight::preflight;
pub use replace::{Replaced, ReplacedAction};

use imgport_cloud::ecs::Imported;
use imgport_cloud::ecs::{ImportDisk, ImportRequest};
use imgport_cloud::model::Image;
use imgport_cloud::role::Ram;
use imgport_cloud::wait::{wait_image, WaitEvent, WaitEventFn, WaitOptions};
use imgport_cloud::{CloudError, Ecs, ErrorKind};
use imgport_disk::{Control, OpenOptions};
use imgport_storage::upload::{Summary, UploadError};
use imgport_storage::{Client, UploadEvent};
use imgport_validate::Report;
use plan::{ImportParameters, Overrides, Upload};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// The tags imgport puts on the images it creates (defined with retention, which reads them).
pub use imgport_cloud::{DIGEST_TAG, VERSION_TAG};

/// What to import and how.
#[derive(Debug, Clone, Default)]
pub struct ImportSpec {
    pub image: PathBuf,
    /// Data disks imported with the system disk, in one image (`DiskDeviceMapping.2...`).
    pub data_disks: Vec<PathBuf>,
    pub open: OpenOptions,
    pub name: String,
    pub description: Option<String>,
    pub family: Option<String>,
    pub tags: Vec<(String, String)>,
    pub overrides: Overrides,
    pub license_type: Option<String>,
    pub detection_strategy: Option<String>,
    /// ImportImage's `ResourceGroupId`.
    pub resource_group_id: Option<String>,
    /// An image of the name with other content is replaced once the new one is Available (see [`replace`]).
    pub replace: bool,
    /// An Available image of the name with this very content is imported anew instead of reused, and replaced as
    /// with `replace` once the new one is Available (copies elsewhere of the same content are still reused).
    pub force: bool,
    /// The object key; unset: derived from the name and the content digest.
    pub key: Option<String>,
    pub keep_object: bool,
    /// Also write the converted system disk (qcow2) to this file as it streams into the upload; refused when the
    /// disk goes up as it is, or when the file exists.
    pub keep_converted: Option<PathBuf>,
    /// Convert every disk to qcow2 on the way, also one ECS would take as it is (`--upload-format qcow2`).
    pub always_qcow2: bool,
    /// Import even when validation finds errors.
    pub skip_validation: bool,
    /// Warnings stop the import too.
    pub strict: bool,
    /// Create or repair the import role when it is missing or wrong.
    pub create_role: bool,
    /// `None`: register and return without waiting.
    pub wait: Option<WaitOptions>,
    pub copy_to: Vec<String>,
    pub share_with: Vec<String>,
    /// Upload part size and concurrency (unset: the uploader's defaults).
    pub part_size: Option<u64>,
    pub concurrency: usize,
    pub state_dir: Option<PathBuf>,
    /// imgport's version, for the `imgport:version` tag.
    pub version: String,
    /// The system disk's content digest (imgport-digest-v1) when the caller has just computed it from the same
    /// file (`pipeline run` names the image by it): the disk is not read a second time for it. Unset: computed.
    pub known_digest: Option<String>,
}

/// Where the import goes: the region's ECS, RAM, and the bucket's store.
#[derive(Clone)]
pub struct Clouds {
    pub ecs: Ecs,
    pub ram: Ram,
    pub store: Arc<Client>,
    pub bucket: String,
    /// Names the store in the upload's resume state; unset: its endpoint URL. The local cloud listens on a new
    /// port each run, so it names itself by its folder instead, and an interrupted upload resumes.
    pub store_id: Option<String>,
}

/// An import's steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Validate,
    Preflight,
    Upload,
    Register,
    Wait,
    /// With `replace`: the new image takes the name of the old one.
    Replace,
    Distribute,
    Cleanup,
}

/// What an import reports as it goes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ImportEvent {
    StepStarted {
        step: Step,
    },
    StepDone {
        step: Step,
        seconds: f64,
        detail: String,
    },
    /// A finding of validation that is not a pass (errors, warnings, notes, unchecked).
    Finding {
        id: String,
        severity: String,
        message: String,
    },
    /// The converter's position in the virtual disk.
    Converting {
        done: u64,
        total: u64,
    },
    /// In JSON: `{"event": "upload", "upload": {"event": ...}}` (the upload's own event nested, not merged).
    Upload(#[serde(serialize_with = "nested::upload")] UploadEvent),
    /// In JSON: `{"event": "wait", "wait": {"event": ...}}`.
    Wait(#[serde(serialize_with = "nested::wait")] WaitEvent),
}

/// The upload's and the wait's events carry an `event` tag of their own: nested under a key, so that the JSON
/// object has one `event` field.
mod nested {
    use serde::ser::{SerializeMap, Serializer};

    fn under<S: Serializer, T: serde::Serialize>(key: &str, value: &T, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(key, value)?;
        m.end()
    }

    pub fn upload<S: Serializer>(e: &imgport_storage::UploadEvent, s: S) -> Result<S::Ok, S::Error> {
        under("upload", e, s)
    }

    pub fn wait<S: Serializer>(e: &imgport_cloud::wait::WaitEvent, s: S) -> Result<S::Ok, S::Error> {
        under("wait", e, s)
    }
}

/// Where events go.
pub type ImportEventFn = Arc<dyn Fn(&ImportEvent) + Send + Sync>;

/// One step's time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepTime {
    pub step: Step,
    pub seconds: f64,
}

/// A copy into another region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyOutcome {
    pub region: String,
    pub image_id: String,
    pub status: String,
    /// Why the copy failed, when it did.
    pub error: Option<String>,
    /// The region already held an Available image of this name and content: no copy was made.
    pub reused: bool,
    /// With `replace`: the image of other content the copy took the name from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Replaced>,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportOutcome {
    pub image_id: String,
    pub region: String,
    pub name: String,
    /// `Available`, or `Waiting`/`Creating` without waiting.
    pub status: String,
    /// An existing image with the same name and content was found: nothing was uploaded or imported.
    pub reused: bool,
    pub task_id: Option<String>,
    pub digest: String,
    pub source_format: String,
    /// How the object went up (`as_is` or `convert_to_qcow2`).
    pub upload: Option<Upload>,
    pub bucket: String,
    pub key: String,
    /// The data disks' objects, in order.
    pub data_keys: Vec<String>,
    pub object_deleted: bool,
    pub parameters: ImportParameters,
    /// With `replace`: the image of other content that held the name, and what became of it.
    pub replaced: Option<Replaced>,
    pub copies: Vec<CopyOutcome>,
    pub shared_with: Vec<String>,
    pub steps: Vec<StepTime>,
    pub upload_summary: Option<Summary>,
    /// Validation warnings (and errors, with `skip_validation`) the import went ahead with.
    pub warnings: Vec<String>,
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Input(#[from] imgport_disk::Error),
    #[error("validation found {errors} error(s) and {warnings} warning(s); fix them, or --skip-validation")]
    Validation { errors: usize, warnings: usize, report: Box<Report> },
    #[error("{0}")]
    Parameters(#[from] plan::Contradiction),
    /// A request ECS or OSS would refuse (name, tags, key, sizes), found before anything is read or uploaded.
    #[error("{0}")]
    Invalid(#[from] plan::Invalid),
    /// A check before the upload failed: `message` says why and how to fix it.
    #[error("{message}")]
    Preflight { message: String, source: Option<CloudError> },
    #[error("upload to oss://{bucket}/{key} failed: {error}")]
    Upload { bucket: String, key: String, error: UploadError },
    /// ImportImage was refused, or the image failed.
    #[error("{0}")]
    Import(CloudError),
    /// `swap_pending`: with `replace`, the image is under its temporary name, and a rerun of the import (not
    /// `images wait`) swaps it in.
    #[error("{error}; the import goes on: {}, the object is kept", if *swap_pending {
        "rerun the same command to wait for it and swap it in (--replace)".to_string()
    } else {
        format!("`imgport images wait {image_id}` waits again")
    })]
    TimedOut { image_id: String, error: CloudError, swap_pending: bool },
    /// The image is Available, but copies, shares or setting the family failed.
    #[error("image {} is Available but {} of its copies, shares or family settings failed", outcome.image_id, failed)]
    Partial { outcome: Box<ImportOutcome>, failed: usize },
    /// With `replace`: the new image is Available under its temporary name, but the swap failed.
    #[error("image {image_id} is Available as {temporary}, but the swap failed: {message}; rerun the same command to finish it")]
    Replace { image_id: String, temporary: String, message: String, error: CloudError },
    /// `cancel` fired: what imgport created that was not finished is cancelled and removed.
    #[error("interrupted; {cleanup}")]
    Interrupted { cleanup: String },
}

impl ImportError {
    /// The process exit code the import command documents for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ImportError::Input(_) | ImportError::Parameters(_) | ImportError::Invalid(_) => 2,
            ImportError::Validation { .. } => 3,
            ImportError::Preflight { .. } => 4,
            ImportError::Upload { .. } => 5,
            ImportError::Import(_) => 6,
            ImportError::TimedOut { .. } => 7,
            ImportError::Partial { .. } | ImportError::Replace { .. } => 8,
            ImportError::Interrupted { .. } => 130,
        }
    }
}

struct Run<'a> {
    spec: &'a ImportSpec,
    clouds: &'a Clouds,
    events: ImportEventFn,
    cancel: watch::Receiver<bool>,
    steps: Vec<StepTime>,
    started: Instant,
}

impl Run<'_> {
    fn emit(&self, e: ImportEvent) {
        (self.events)(&e);
    }

    fn start(&mut self, step: Step) {
        self.started = Instant::now();
        self.emit(ImportEvent::StepStarted { step });
    }

    fn done(&mut self, step: Step, detail: impl Into<String>) {
        let seconds = self.started.elapsed().as_secs_f64();
        self.steps.push(StepTime { step, seconds });
        self.emit(ImportEvent::StepDone { step, seconds, detail: detail.into() });
    }

    /// The wait's events, as the import's.
    fn wait_events(&self) -> WaitEventFn {
        let events = self.events.clone();
        Arc::new(move |e: &WaitEvent| events(&ImportEvent::Wait(e.clone())))
    }

    async fn cancelled(&self) {
        let mut rx = self.cancel.clone();
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// Runs the import. `cancel` set to true stops it at the next step, or during the upload or the wait, and cleans
/// up what it created.
pub async fn import(
    spec: &ImportSpec,
    clouds: &Clouds,
    events: ImportEventFn,
    cancel: watch::Receiver<bool>,
) -> Result<ImportOutcome, ImportError> {
    let mut run = Run { spec, clouds, events, cancel, steps: Vec::new(), started: Instant::now() };
    let region = clouds.ecs.region().to_string();
    plan::check_request(
        &spec.name,
        spec.description.as_deref(),
        spec.family.as_deref(),
        &spec.tags,
        spec.key.as_deref(),
        spec.overrides.disk_size_gib,
    )?;
    if spec.wait.is_none() && !(spec.copy_to.is_empty() && spec.share_with.is_empty() && spec.family.is_none()) {
        return Err(plan::Invalid(
            "--copy-to, --share-with and --family need the image Available: drop --no-wait".into(),
        )
        .into());
    }
    if let Some(keep) = &spec.keep_converted {
        crate::convert_file::check_output(&spec.image, keep, false)
            .map_err(|e| plan::Invalid(format!("--keep-converted: {e}")))?;
    }
    if spec.wait.is_none() && (spec.replace || spec.force) {
        return Err(plan::Invalid(
            "--replace and --force swap the images once the new one is Available: drop --no-wait".into(),
        )
        .into());
    }

    // Validate and digest.
    run.start(Step::Validate);
    let ctl = Control::new();
    let flag = ctl.cancel_flag();
    let examined = {
        let (spec2, ctl2) = (spec.clone(), ctl.clone());
        let work = tokio::task::spawn_blocking(move || examine(&spec2, &ctl2));
        tokio::select! {
            r = work => r.map_err(|e| imgport_disk::Error::invalid_argument(format!("inspection stopped: {e}")))?,
            _ = run.cancelled() => {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                return Err(ImportError::Interrupted { cleanup: "nothing was uploaded".into() });
            }
        }
    };
    let (report, system_digest, sparse) = examined?;
    let mut data: Vec<DataDisk> = Vec::new();
    for (n, path) in spec.data_disks.iter().enumerate() {
        let (path2, open2, ctl2) = (path.clone(), spec.open.clone(), ctl.clone());
        let work = tokio::task::spawn_blocking(move || examine_data(&path2, &open2, &ctl2));
        let (format, virtual_size, digest, sparse) = tokio::select! {
            r = work => r.map_err(|e| imgport_disk::Error::invalid_argument(format!("reading stopped: {e}")))??,
            _ = run.cancelled() => {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                return Err(ImportError::Interrupted { cleanup: "nothing was uploaded".into() });
            }
        };
        let (how, fmt, _) = plan::forced(plan::choose_upload(format, virtual_size, sparse), spec.always_qcow2);
        let key = plan::object_key(&format!("{}-data{}", spec.name, n + 1), &digest, fmt);
        let size_gib = imgport_validate::params::size_gib(virtual_size).max(5);
        data.push(DataDisk { path: path.clone(), how, format: fmt, size_gib, virtual_size, digest, key });
    }
    let digest = combined_digest(&system_digest, &data);
    let (how, format, why) =
        plan::forced(plan::choose_upload(report.format, report.virtual_size, sparse), spec.always_qcow2);
    if spec.keep_converted.is_some() && how == Upload::AsIs {
        return Err(plan::Invalid(format!(
            "--keep-converted: {} goes up as it is ({} {}), nothing is converted; the image itself is what \
             is imported, drop --keep-converted",
            spec.image.display(),
            report.format.name(),
            size(&report)
        ))
        .into());
    }
    // A container ECS refuses is not a problem when imgport converts it on the way.
    let converted =
        |f: &imgport_validate::Finding| how == Upload::ConvertToQcow2 && f.id == imgport_validate::CheckId::Container;
    let mut warnings = Vec::new();
    for f in report.findings.iter().filter(|f| f.status != imgport_validate::Status::Pass && !converted(f)) {
        run.emit(ImportEvent::Finding {
            id: f.id.to_string(),
            severity: f.severity.name().to_string(),
            message: f.message.clone(),
        });
        if f.is_blocking(true) {
            warnings.push(format!("{}: {}", f.id, f.message));
        }
    }
    let blocking = |strict: bool| report.findings.iter().filter(|f| f.is_blocking(strict) && !converted(f)).count();
    if blocking(spec.strict) > 0 && !spec.skip_validation {
        let errors = blocking(false);
        let warnings = blocking(true) - errors;
        return Err(ImportError::Validation { errors, warnings, report: Box::new(report) });
    }
    let parameters = plan::parameters(&report, &spec.overrides, format)?;
    let key = spec.key.clone().unwrap_or_else(|| plan::object_key(&spec.name, &system_digest, format));
    let mut keys = vec![key.clone()];
    keys.extend(data.iter().map(|d| d.key.clone()));
    let detail = match why {
        Some(why) => format!("{} {}, digest {digest}; uploads as {format}: {why}", report.format.name(), size(&report)),
        None => format!("{} {}, digest {digest}; uploads as it is", report.format.name(), size(&report)),
    };
    run.done(Step::Validate, detail);

    let mut outcome = ImportOutcome {
        image_id: String::new(),
        region: region.clone(),
        name: spec.name.clone(),
        status: String::new(),
        reused: false,
        task_id: None,
        digest: digest.clone(),
        source_format: report.format.name().to_string(),
        upload: Some(how),
        bucket: clouds.bucket.clone(),
        key: key.clone(),
        data_keys: data.iter().map(|d| d.key.clone()).collect(),
        object_deleted: false,
        parameters: parameters.clone(),
        replaced: None,
        copies: Vec::new(),
        shared_with: Vec::new(),
        steps: Vec::new(),
        upload_summary: None,
        warnings,
    };

    let mut tags = spec.tags.clone();
    tags.push((DIGEST_TAG.into(), digest.clone()));
    tags.push((VERSION_TAG.into(), spec.version.clone()));

    // Preflight.
    run.start(Step::Preflight);
    let found = preflight(&mut run, &digest, &key, &system_digest, format).await?;
    let system_disk = Disk {
        how,
        key: &key,
        path: &spec.image,
        digest: &system_digest,
        format,
        virtual_size: report.virtual_size,
        keep: spec.keep_converted.as_deref(),
    };
    if let Some(existing) = found.reuse {
        objects::keep_converted(&run, &system_disk).await?;
        outcome.upload = None;
        run.done(Step::Preflight, format!("{} already holds this content: nothing to upload", existing.image_id));
        return reuse(&mut run, existing, found.old.as_ref(), outcome, &tags).await;
    }
    run.done(Step::Preflight, "credentials, region, bucket, import role and name checked");
    // With an image of other content to replace: imported under a temporary name until it is Available.
    let import_name = match &found.old {
        Some(_) => replace::temporary_name(&spec.name, &digest),
        None => spec.name.clone(),
    };

    // With an image to replace, the token names it too: a forced import of the same content is not answered
    // with the image an earlier forced import made under the same temporary name.
    let client_token = match &found.old {
        Some(old) => plan::client_token(&digest, &import_name, &format!("{region}:{}", old.image_id)),
        None => plan::client_token(&digest, &import_name, &region),
    };

    // Upload, unless the bucket holds the content already; another run importing the same content is waited for.
    run.start(Step::Upload);
    let _claim = match objects::claim(&run, &client_token, &key, &digest, &import_name).await? {
        objects::Claim::Held(lock) => lock,
        objects::Claim::Reuse(existing) => {
            objects::keep_converted(&run, &system_disk).await?;
            outcome.upload = None;
            let detail = format!("another imgport run imported this content as {}", existing.image_id);
            run.done(Step::Upload, detail);
            return reuse(&mut run, *existing, found.old.as_ref(), outcome, &tags).await;
        }
    };
    let mut disks = vec![system_disk];
    disks.extend(data.iter().map(|d| Disk {
        how: d.how,
        key: &d.key,
        path: &d.path,
        digest: &d.digest,
        format: d.format,
        virtual_size: d.virtual_size,
        keep: None,
    }));
    let (mut bytes, mut parts, mut already) = (0, 0, Vec::new());
    for (n, disk) in disks.iter().enumerate() {
        match send_or_wait(&run, disk, &digest, &import_name).await {
            Ok(Turn::Sent(Sent::Uploaded(s))) => {
                (bytes, parts) = (bytes + s.bytes, parts + s.parts);
                if n == 0 {
                    outcome.upload_summary = Some(s);
                }
            }
            Ok(Turn::Sent(Sent::AlreadyThere)) => {
                // Nothing was converted on the way: the kept file is converted alone.
                objects::keep_converted(&run, disk).await?;
                already.push(format!("oss://{}/{}", clouds.bucket, disk.key));
            }
            Ok(Turn::Reuse(existing)) => {
                if n == 0 {
                    objects::keep_converted(&run, disk).await?;
                }
                outcome.upload = None;
                outcome.upload_summary = None;
                let detail =
                    format!("another imgport run uploaded this content and imports it as {}", existing.image_id);
                run.done(Step::Upload, detail);
                return reuse(&mut run, *existing, found.old.as_ref(), outcome, &tags).await;
            }
            Err(e) => {
                if n > 0 {
                    // The disks already sent are of no use without this one.
                    let _ = delete_objects(&run, &keys[..n]).await;
                }
                return Err(e);
            }
        }
    }
    let detail = match (already.len(), disks.len()) {
        (a, d) if a == d => format!("already uploaded (same content digest): {}", already.join(", ")),
        (0, d) => format!("{bytes} bytes in {parts} part(s), {d} disk(s)"),
        (_, d) => format!("{bytes} bytes in {parts} part(s), {d} disk(s); already uploaded: {}", already.join(", ")),
    };
    run.done(Step::Upload, detail);

    // Register.
    run.start(Step::Register);
    let request = ImportRequest {
        image_name: import_name.clone(),
        description: spec.description.clone(),
        disks: std::iter::once(ImportDisk {
            bucket: clouds.bucket.clone(),
            object: key.clone(),
            format: parameters.format.clone(),
            size_gib: Some(parameters.disk_image_size),
        })
        .chain(data.iter().map(|d| ImportDisk {
            bucket: clouds.bucket.clone(),
            object: d.key.clone(),
            format: d.format.to_string(),
            size_gib: Some(d.size_gib),
        }))
        .collect(),
        platform: parameters.platform.clone(),
        os_type: parameters.os_type.clone(),
        architecture: parameters.architecture.clone(),
        boot_mode: parameters.boot_mode.clone(),
        license_type: spec.license_type.clone(),
        detection_strategy: spec.detection_strategy.clone(),
        nvme_support: parameters.nvme_support.clone(),
        resource_group_id: spec.resource_group_id.clone(),
        tags: tags.clone(),
        client_token: Some(client_token),
        ..Default::default()
    };
    let imported = match clouds.ecs.import_image(&request).await {
        Ok(i) => i,
        Err(e) => match registered_anyway(&run, &import_name).await {
            // The answer was lost but the image exists (the request did arrive): go on with it.
            Some(found) if found.tag(DIGEST_TAG) == Some(digest.as_str()) && e.kind() == ErrorKind::Transport => {
                let task = clouds.ecs.tasks_of(&found.image_id).await.ok().and_then(|t| t.into_iter().next());
                Imported {
                    image_id: found.image_id,
                    task_id: task.map(|t| t.task_id).unwrap_or_default(),
                    region_id: region.clone(),
                }
            }
            // Another image of the name exists (a concurrent run): it may be reading the object, keep it.
            Some(_) => return Err(ImportError::Import(e)),
            None => {
                outcome.object_deleted = delete_objects(&run, &keys).await.is_ok();
                return Err(ImportError::Import(quota_counted(clouds, e).await));
            }
        },
    };
    outcome.image_id = imported.image_id.clone();
    outcome.task_id = Some(imported.task_id.clone()).filter(|t| !t.is_empty());
    run.done(Step::Register, format!("image {} (task {})", imported.image_id, imported.task_id));

    // Wait.
    let Some(wait) = &spec.wait else {
        outcome.status = "Waiting".into();
        outcome.steps = run.steps;
        return Ok(outcome);
    };
    run.start(Step::Wait);
    let wait_events = run.wait_events();
    let waited = tokio::select! {
        r = wait_image(&clouds.ecs, &imported.image_id, outcome.task_id.as_deref(), wait, &wait_events) => r,
        _ = run.cancelled() => {
            let cleanup = cancel_import(&run, &imported.task_id, &keys).await;
            return Err(ImportError::Interrupted { cleanup });
        }
    };
    let mut image = match waited {
        Ok(i) => i,
        // Out of time, or the cloud unreachable for a while: the import may still be running and reading the
        // object, so both stay.
        Err(e) if e.kind() == ErrorKind::TimedOut || e.is_transient() => {
            let swap_pending = import_name != spec.name;
            return Err(ImportError::TimedOut { image_id: imported.image_id.clone(), error: e, swap_pending });
        }
        Err(e) => {
            // The image failed: ECS no longer needs the object, and the failed image (this run's) would block
            // a rerun under the same name.
            let _ = delete_objects(&run, &keys).await;
            if e.kind() == ErrorKind::CreateFailed {
                let _ = clouds.ecs.delete_image(&imported.image_id, false).await;
            }
            return Err(ImportError::Import(e));
        }
    };
    outcome.status = image.status.as_str().to_string();
    run.done(Step::Wait, format!("{} is {}", image.image_id, image.status.as_str()));
    swap_step(&mut run, found.old.as_ref(), &mut image, &mut outcome).await?;

    // Cleanup of the object first: the copies read the image, not the object.
    run.start(Step::Cleanup);
    if spec.keep_object {
        run.done(Step::Cleanup, format!("kept {}", objects(&clouds.bucket, &keys)));
    } else {
        match delete_objects(&run, &keys).await {
            Ok(()) => {
                outcome.object_deleted = true;
                run.done(Step::Cleanup, format!("deleted {}", objects(&clouds.bucket, &keys)));
            }
            Err(e) => {
                let what = format!(
                    "could not delete all of {} ({e}); delete them with ossutil rm",
                    objects(&clouds.bucket, &keys)
                );
                outcome.warnings.push(what.clone());
                run.done(Step::Cleanup, what);
            }
        }
    }

    // Distribute.
    let failed = distribute_step(&mut run, &image, wait, &tags, &mut outcome).await?;
    finish(&mut run, outcome, failed)
}

/// The outcome with the steps' times; a partial success when `failed` copies, shares or settings failed.
// The import's one error type, returned once at its end: its size does not matter here.
#[allow(clippy::result_large_err)]
fn finish(run: &mut Run<'_>, mut outcome: ImportOutcome, failed: usize) -> Result<ImportOutcome, ImportError> {
    outcome.steps = std::mem::take(&mut run.steps);
    if failed > 0 {
        return Err(ImportError::Partial { outcome: Box::new(outcome), failed });
    }
    Ok(outcome)
}

/// Answers an image of the name (or, with `replace`, of the temporary name) that holds this content, made by an
/// earlier or a concurrent run: waited for when it is still being imported, swapped in for `old` with `replace`,
/// then copied and shared as the spec asks.
async fn reuse(
    run: &mut Run<'_>,
    mut existing: Image,
    old: Option<&Image>,
    mut outcome: ImportOutcome,
    tags: &[(String, String)],
) -> Result<ImportOutcome, ImportError> {
    let (spec, clouds) = (run.spec, run.clouds);
    outcome.image_id = existing.image_id.clone();
    outcome.reused = true;
    // Still being imported (another run, or one that stopped waiting): wait for it like our own.
    if existing.status.in_flight() {
        let Some(wait) = &spec.wait else {
            outcome.status = existing.status.as_str().to_string();
            outcome.steps = std::mem::take(&mut run.steps);
            return Ok(outcome);
        };
        run.start(Step::Wait);
        let task = clouds.ecs.tasks_of(&existing.image_id).await.ok().and_then(|t| t.into_iter().next());
        outcome.task_id = task.map(|t| t.task_id);
        let wait_events = run.wait_events();
        let waited = tokio::select! {
            r = wait_image(&clouds.ecs, &existing.image_id, outcome.task_id.as_deref(), wait, &wait_events) => r,
            // The import is not this run's: an interruption leaves it alone.
            _ = run.cancelled() => {
                return Err(ImportError::Interrupted { cleanup: "nothing of this run's to clean up".into() });
            }
        };
        existing = match waited {
            Ok(i) => i,
            Err(e) if e.kind() == ErrorKind::TimedOut || e.is_transient() => {
                let swap_pending = existing.image_name != spec.name;
                return Err(ImportError::TimedOut { image_id: existing.image_id.clone(), error: e, swap_pending });
            }
            Err(e) => return Err(ImportError::Import(e)),
        };
        run.done(Step::Wait, format!("{} is {}", existing.image_id, existing.status.as_str()));
    }
    swap_step(run, old, &mut existing, &mut outcome).await?;
    outcome.status = existing.status.as_str().to_string();
    // Copies and shares a earlier run did not finish are made now (regions that hold the content are reused).
    let failed = match &spec.wait {
        Some(wait) => distribute_step(run, &existing, wait, tags, &mut outcome).await?,
        None => 0,
    };
    finish(run, outcome, failed)
}

/// With `replace`, once `image` is Available under the temporary name: it takes the name from `old` (see
/// [`replace::swap`]); nothing to do when it has the name already.
async fn swap_step(
    run: &mut Run<'_>,
    old: Option<&Image>,
    image: &mut Image,
    outcome: &mut ImportOutcome,
) -> Result<(), ImportError> {
    let name = &run.spec.name;
    if image.image_name == *name {
        return Ok(());
    }
    run.start(Step::Replace);
    match replace::swap(&run.clouds.ecs, name, old, image).await {
        Ok(replaced) => {
            let detail = match &replaced {
                Some(r) => match &r.renamed_to {
                    Some(aside) => format!("{} is {name}; {} renamed to {aside}", image.image_id, r.image_id),
                    None => format!("{} is {name}; {} deleted", image.image_id, r.image_id),
                },
                None => format!("{} is {name}", image.image_id),
            };
            image.image_name = name.clone();
            outcome.replaced = replaced;
            run.done(Step::Replace, detail);
            Ok(())
        }
        Err(error) => Err(ImportError::Replace {
            image_id: image.image_id.clone(),
            temporary: image.image_name.clone(),
            message: preflight::explain("swapping the images", &error),
            error,
        }),
    }
}

/// ImportImage's `QuotaExceed.Image`, with the number of own custom images in the region added to the message
/// (ECS's API does not tell the quota itself); any other error as it is.
async fn quota_counted(clouds: &Clouds, e: CloudError) -> CloudError {
    if e.code() != Some("QuotaExceed.Image") {
        return e;
    }
    let filter = imgport_cloud::ecs::ImageFilter { owner_alias: Some("self".into()), ..Default::default() };
    match clouds.ecs.images(&filter).await {
        Ok(own) => e.with_note(&format!(
            "{} custom images in {}, in every status, count against the quota",
            own.len(),
            clouds.ecs.region()
        )),
        Err(_) => e,
    }
}
