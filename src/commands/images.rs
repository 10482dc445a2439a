//! `imgport images ...` (list, show, wait, copy, share, unshare, tag, deprecate, undeprecate, delete, cancel,
//! create, retain) and `imgport instance replace-disk`: the custom image lifecycle, on Alibaba Cloud or the local
//! cloud. `retain` is [`imgport_cloud::retain`] on the command line.

use super::cloud::CloudArgs;
use crate::output::print_json;
use imgport_cloud::ecs::{CreateRequest, ImageFilter};
use imgport_cloud::model::{Image, TaskStatus};
use imgport_cloud::retain::{self, Action, Done, Plan, Policy};
use imgport_cloud::wait::{wait_image, WaitEvent, WaitEventFn, WaitOptions};
use imgport_cloud::{CloudError, Ecs, ErrorKind};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    cloud: CloudArgs,
    #[command(subcommand)]
    command: ImagesCommand,
}

#[derive(clap::Subcommand)]
pub enum ImagesCommand {
    /// List images (every page), filtered; custom images of every status by default.
    #[command(alias = "find")]
    List(ListArgs),
    /// One image in full.
    Show(IdArgs),
    /// Wait until an image is Available (fails at once on CreateFailed).
    Wait(WaitArgs),
    /// Copy an image into other regions, waiting for each copy.
    Copy(CopyArgs),
    /// Share an image with accounts.
    Share(ShareArgs),
    /// Stop sharing an image with accounts.
    Unshare(ShareArgs),
    /// Add or change tags (KEY=VALUE...).
    Tag(TagArgs),
    /// Mark an Available image Deprecated (it can no longer create instances; unshare it first).
    Deprecate(IdArgs),
    /// Make a Deprecated image Available again.
    Undeprecate(IdArgs),
    /// Delete an image (and with --with-snapshots its snapshots).
    Delete(DeleteArgs),
    /// Cancel an import (CancelTask) or a copy (CancelCopyImage) still under way.
    Cancel(IdArgs),
    /// Create an image from an instance's system disk or from snapshots (CreateImage), and wait for it.
    Create(CreateArgs),
    /// Retire a family's old images imgport made: keep the newest, deprecate the rest, delete them (with their
    /// snapshots) after a grace period; never images in use, shared or being copied.
    Retain(RetainArgs),
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// system, self, others (shared with you) or marketplace [default: self].
    #[arg(long, default_value = "self")]
    owner: String,
    /// Name, matched as ECS does (fuzzy; `*` wildcards).
    #[arg(long)]
    name: Option<String>,
    /// Image id (repeat).
    #[arg(long = "id")]
    ids: Vec<String>,
    #[arg(long)]
    snapshot_id: Option<String>,
    #[arg(long)]
    family: Option<String>,
    /// linux or windows.
    #[arg(long)]
    os: Option<String>,
    /// x86_64, i386 or arm64.
    #[arg(long)]
    arch: Option<String>,
    /// Comma-separated statuses [default: every status].
    #[arg(long)]
    status: Option<String>,
    /// KEY=VALUE (repeat).
    #[arg(long = "tag", value_parser = super::import::parse_tag)]
    tags: Vec<(String, String)>,
    /// instance (images instances run) or none.
    #[arg(long)]
    usage: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct IdArgs {
    id: String,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct WaitArgs {
    id: String,
    /// Give up after this long (3h, 90m, 600s).
    #[arg(long, value_parser = super::import::parse_duration, default_value = "3h")]
    timeout: Duration,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct CopyArgs {
    id: String,
    /// Destination region (repeat).
    #[arg(long = "to", required = true)]
    to: Vec<String>,
    /// The copies' name [default: the source's].
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    wait: Waiting,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ShareArgs {
    id: String,
    /// Account id (repeat).
    #[arg(long = "account", required = true)]
    accounts: Vec<String>,
}

#[derive(clap::Args)]
pub struct TagArgs {
    id: String,
    #[arg(required = true, value_parser = super::import::parse_tag)]
    tags: Vec<(String, String)>,
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    id: String,
    /// Delete it even though instances run it.
    #[arg(long)]
    force: bool,
    /// Delete its snapshots too (ECS keeps them otherwise).
    #[arg(long)]
    with_snapshots: bool,
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// An instance whose system disk becomes the image.
    #[arg(long, conflicts_with_all = ["from_snapshot", "data_snapshots"], required_unless_present = "from_snapshot")]
    from_instance: Option<String>,
    /// The system disk's snapshot.
    #[arg(long)]
    from_snapshot: Option<String>,
    /// A data disk's snapshot (repeat; with --from-snapshot).
    #[arg(long = "data-snapshot", requires = "from_snapshot")]
    data_snapshots: Vec<String>,
    #[arg(long)]
    name: String,
    #[arg(long)]
    description: Option<String>,
    #[arg(long)]
    family: Option<String>,
    #[arg(long = "tag", value_parser = super::import::parse_tag)]
    tags: Vec<(String, String)>,
    #[command(flatten)]
    wait: Waiting,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct RetainArgs {
    /// The image family (every `--region` is surveyed).
    #[arg(long)]
    family: String,
    /// Keep the N newest.
    #[arg(long, required_unless_present = "keep_days")]
    keep: Option<usize>,
    /// Keep those younger than D days (with --keep: either keeps an image).
    #[arg(long)]
    keep_days: Option<u64>,
    /// Never keep fewer than N (the newest).
    #[arg(long, default_value_t = 1)]
    min_keep: usize,
    /// Deprecate an image out of the keep set once it is this old (since its creation; 0: at once).
    #[arg(long, value_parser = super::import::parse_duration, default_value = "0s")]
    deprecate_after: Duration,
    /// Delete a deprecated image (and its snapshots) this long after it was deprecated; `never` keeps it deprecated.
    #[arg(long, value_parser = parse_grace, default_value = "7d")]
    delete_after: Grace,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

/// `--delete-after`: a duration, or `never`.
#[derive(Clone, Copy)]
struct Grace(Option<Duration>);

fn parse_grace(s: &str) -> Result<Grace, String> {
    if s.trim() == "never" {
        return Ok(Grace(None));
    }
    super::import::parse_duration(s).map(|d| Grace(Some(d)))
}

/// Whether and how long a command that starts images waits for them.
#[derive(clap::Args)]
pub struct Waiting {
    /// Return once started (`imgport images wait ID` waits later).
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this long (3h, 90m, 600s).
    #[arg(long, value_parser = super::import::parse_duration, default_value = "3h")]
    timeout: Duration,
}

#[derive(clap::Subcommand)]
pub enum InstanceCommand {
    /// The region's instances.
    List(InstanceListArgs),
    /// Replace an instance's system disk with an image (ReplaceSystemDisk); the instance must be stopped.
    ReplaceDisk(ReplaceDiskArgs),
}

#[derive(clap::Args)]
pub struct InstanceArgs {
    #[command(flatten)]
    cloud: CloudArgs,
    #[command(subcommand)]
    command: InstanceCommand,
}

#[derive(clap::Args)]
pub struct InstanceListArgs {
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ReplaceDiskArgs {
    instance: String,
    #[arg(long)]
    image: String,
    /// The new system disk's size in GiB.
    #[arg(long)]
    size: Option<u64>,
    /// Stop a running instance first (and start it again after).
    #[arg(long)]
    stop: bool,
}

/// Runs `f` with the region's ECS client (and the local cloud running meanwhile); prints the error. A signal
/// drops `f` at once: commands whose work a signal should undo use [`with_ecs_cancellable`].
fn with_ecs<F>(cloud: &CloudArgs, f: impl FnOnce(Ecs) -> F) -> u8
where
    F: std::future::Future<Output = Result<(), CloudError>>,
{
    with_ecs_code(cloud, |ecs| async move { f(ecs).await.map(|()| 0) })
}

/// [`with_ecs`] for a command that answers its own exit code when it does not fail outright.
fn with_ecs_code<F>(cloud: &CloudArgs, f: impl FnOnce(Ecs) -> F) -> u8
where
    F: std::future::Future<Output = Result<u8, CloudError>>,
{
    with_ecs_cancellable(cloud, |ecs, mut cancel| async move {
        tokio::select! {
            r = f(ecs) => r,
            _ = cancel.wait_for(|c| *c) => Ok(0),
        }
    })
}

/// [`with_ecs_code`], but a signal only sets `cancel`: `f` undoes what it started and returns; the exit code is
/// then 128 + the signal's number.
fn with_ecs_cancellable<F>(cloud: &CloudArgs, f: impl FnOnce(Ecs, tokio::sync::watch::Receiver<bool>) -> F) -> u8
where
    F: std::future::Future<Output = Result<u8, CloudError>>,
{
    let code = super::cloud::with_clouds(cloud, Default::default(), |clouds, cancel| async move {
        match f(clouds.ecs, cancel).await {
            Ok(code) => code,
            Err(e) => failed(&e),
        }
    });
    match crate::signals::received() {
        Some(_) => crate::signals::exit_code(),
        None => code,
    }
}

/// Prints the error with its cause and fix; exit 6 for a failed image, 7 for a timeout, 1 otherwise.
fn failed(e: &CloudError) -> u8 {
    eprintln!("imgport: error: {e}");
    if let Some(a) = e.advice() {
        eprintln!("  cause: {}\n  fix: {}", a.cause, a.fix);
    }
    if let Some(r) = e.request_id() {
        eprintln!("  request id: {r}");
    }
    match e.kind() {
        ErrorKind::CreateFailed => 6,
        ErrorKind::TimedOut => 7,
        _ => 1,
    }
}

/// A wait's event as a line on stderr (`import` and `images` alike).
pub fn print_wait_event(e: &WaitEvent) {
    match e {
        WaitEvent::Progress { region, image_id, status, progress, elapsed_seconds } => {
            note!("imgport: {image_id} in {region}: {status} {progress}% ({elapsed_seconds} s)")
        }
        WaitEvent::TaskFinishedEarly { image_id, .. } => {
            note!("imgport: the task is finished but {image_id} is not Available yet: waiting for the image")
        }
        WaitEvent::PollFailed { message, failures_in_a_row, .. } => {
            note!("imgport: a poll failed ({failures_in_a_row} in a row), polling again: {message}")
        }
    }
}

fn progress_lines() -> WaitEventFn {
    Arc::new(print_wait_event)
}

fn not_found(ecs: &Ecs, id: &str) -> CloudError {
    CloudError::InvalidArgument(format!("no image {id} in {}", ecs.region()))
}

/// The images as a table, columns as wide as their widest value.
fn table(images: &[Image]) {
    let id = images.iter().map(|i| i.image_id.len()).max().unwrap_or(0).max(2);
    let name = images.iter().map(|i| i.image_name.len()).max().unwrap_or(0).max(4);
    outln!(
        "{:<id$}  {:<name$}  {:<12} {:<11} {:<7} {:<7} {:>5}  CREATED",
        "ID",
        "NAME",
        "STATUS",
        "OWNER",
        "OS",
        "ARCH",
        "SIZE"
    );
    for i in images {
        outln!(
            "{:<id$}  {:<name$}  {:<12} {:<11} {:<7} {:<7} {:>5}  {}",
            i.image_id,
            i.image_name,
            i.status.as_str(),
            i.image_owner_alias,
            i.os_type,
            i.architecture,
            format!("{}G", i.size),
            i.creation_time
        );
    }
}

fn show(i: &Image, json: bool) {
    if json {
        print_json(i);
        return;
    }
    outln!("{}  {}", i.image_id, i.image_name);
    outln!("  status:       {} {}%", i.status.as_str(), i.progress);
    outln!("  owner:        {}", i.image_owner_alias);
    outln!("  os:           {} {} ({}, {})", i.platform, i.os_name, i.os_type, i.architecture);
    outln!("  boot mode:    {}", i.boot_mode);
    outln!("  family:       {}", i.image_family);
    outln!("  created:      {}", i.creation_time);
    outln!("  usage:        {}", i.usage);
    if !i.features.nvme_support.is_empty() {
        outln!("  nvme:         {}", i.features.nvme_support);
    }
    if !i.resource_group_id.is_empty() {
        outln!("  res. group:   {}", i.resource_group_id);
    }
    for d in &i.disk_device_mappings {
        outln!("  disk:         {} {} {}G {} snapshot {}", d.kind, d.device, d.size, d.format, d.snapshot_id);
    }
    for t in &i.tags {
        outln!("  tag:          {}={}", t.tag_key, t.tag_value);
    }
}

/// Waits for `id`, with its import task when it has one.
async fn wait_for(ecs: &Ecs, id: &str, timeout: Duration) -> Result<Image, CloudError> {
    let task = ecs.tasks_of(id).await.ok().and_then(|t| t.into_iter().next()).map(|t| t.task_id);
    let opts = WaitOptions { timeout, ..Default::default() };
    wait_image(ecs, id, task.as_deref(), &opts, &progress_lines()).await
}

pub fn run(args: ImagesArgs) -> u8 {
    if let ImagesCommand::Retain(a) = args.command {
        return run_retain(&args.cloud, a);
    }
    let cloud = args.cloud.clone();
    if let ImagesCommand::Copy(a) = args.command {
        return with_ecs_cancellable(&cloud, move |ecs, cancel| async move { copy(&ecs, a, cancel).await });
    }
    with_ecs(&cloud, move |ecs| async move {
        match args.command {
            ImagesCommand::List(a) => list(&ecs, a).await,
            ImagesCommand::Show(a) => {
                let i = ecs.image(&a.id).await?.ok_or_else(|| not_found(&ecs, &a.id))?;
                show(&i, a.json);
                Ok(())
            }
            ImagesCommand::Wait(a) => {
                let i = wait_for(&ecs, &a.id, a.timeout).await?;
                show(&i, a.json);
                Ok(())
            }
            ImagesCommand::Copy(_) => Ok(()), // handled above: its copies are cancelled on a signal
            ImagesCommand::Share(a) => ecs.share(&a.id, &a.accounts, &[]).await,
            ImagesCommand::Unshare(a) => ecs.share(&a.id, &[], &a.accounts).await,
            ImagesCommand::Tag(a) => ecs.tag("image", std::slice::from_ref(&a.id), &a.tags).await,
            ImagesCommand::Deprecate(a) => ecs.set_deprecated(&a.id, true).await,
            ImagesCommand::Undeprecate(a) => ecs.set_deprecated(&a.id, false).await,
            ImagesCommand::Delete(a) => delete(&ecs, a).await,
            ImagesCommand::Cancel(a) => cancel(&ecs, &a.id).await,
            ImagesCommand::Create(a) => create(&ecs, a).await,
            // Taken before connecting (it surveys several regions): never reaches here.
            ImagesCommand::Retain(_) => Err(CloudError::InvalidArgument("retain runs on its own".into())),
        }
    })
}

async fn list(ecs: &Ecs, a: ListArgs) -> Result<(), CloudError> {
    let filter = ImageFilter {
        image_ids: a.ids,
        image_name: a.name,
        owner_alias: Some(a.owner).filter(|o| !o.is_empty() && o != "all"),
        snapshot_id: a.snapshot_id,
        family: a.family,
        os_type: a.os,
        architecture: a.arch,
        status: a.status,
        usage: a.usage,
        tags: a.tags,
    };
    let images = ecs.images(&filter).await?;
    if a.json {
        print_json(&images);
    } else {
        table(&images);
    }
    Ok(())
}

/// Copies as an import distributes: the copies carry the source's name (or `--name`), description, family and
/// tags; a region already holding the same content under the name (the `imgport:digest` tag) is reused, and a
/// rerun's CopyImage answers the same copy (ClientToken). A signal cancels the copies under way.
async fn copy(ecs: &Ecs, a: CopyArgs, mut cancel: tokio::sync::watch::Receiver<bool>) -> Result<u8, CloudError> {
    use imgport_pipeline::import::distribute::{cancel_copies, distribute, Distribution, Started};
    let image = ecs.image(&a.id).await?.ok_or_else(|| not_found(ecs, &a.id))?;
    let d = Distribution {
        name: a.name.clone().unwrap_or_else(|| image.image_name.clone()),
        description: Some(image.description.clone()).filter(|s| !s.is_empty()),
        family: Some(image.image_family.clone()).filter(|s| !s.is_empty()),
        // The service's own tags (acs:...) are not the user's to set.
        tags: image
            .tags
            .iter()
            .filter(|t| !t.tag_key.starts_with("acs:"))
            .map(|t| (t.tag_key.clone(), t.tag_value.clone()))
            .collect(),
        digest: image.tag(imgport_pipeline::import::DIGEST_TAG).map(str::to_string),
        copy_to: a.to.clone(),
        ..Default::default()
    };
    let wait = (!a.wait.no_wait).then(|| WaitOptions { timeout: a.wait.timeout, ..Default::default() });
    let (started, events) = (Started::default(), progress_lines());
    let done = tokio::select! {
        d = distribute(ecs, &image, &d, wait.as_ref(), &events, &started) => d,
        _ = cancel.wait_for(|c| *c) => {
            note!("imgport: interrupted; {}", cancel_copies(ecs, &started).await);
            return Ok(0);
        }
    };
    if a.json {
        print_json(&done.copies);
    } else {
        for c in &done.copies {
            match &c.error {
                None if c.reused => outln!("{}: {} is {} (already there)", c.region, c.image_id, c.status),
                None => outln!("{}: {} is {}", c.region, c.image_id, c.status),
                Some(e) => outln!("{}: failed: {e}", c.region),
            }
        }
    }
    for w in &done.warnings {
        note!("imgport: warning: {w}");
    }
    // As `import` exits when copies fail: 8, the rerun reuses what was made.
    Ok(if done.failed > 0 { 8 } else { 0 })
}

async fn delete(ecs: &Ecs, a: DeleteArgs) -> Result<(), CloudError> {
    let image = ecs.image(&a.id).await?.ok_or_else(|| not_found(ecs, &a.id))?;
    ecs.delete_image(&a.id, a.force).await?;
    outln!("deleted {}", a.id);
    if a.with_snapshots {
        for d in image.disk_device_mappings.iter().filter(|d| !d.snapshot_id.is_empty()) {
            match ecs.delete_snapshot(&d.snapshot_id).await {
                Ok(()) => outln!("deleted snapshot {}", d.snapshot_id),
                // Another image may still use it: say so and go on.
                Err(e) => eprintln!("imgport: warning: snapshot {} kept: {e}", d.snapshot_id),
            }
        }
    }
    Ok(())
}

async fn cancel(ecs: &Ecs, id: &str) -> Result<(), CloudError> {
    let image = ecs.image(id).await?.ok_or_else(|| not_found(ecs, id))?;
    if !image.status.in_flight() {
        return Err(CloudError::InvalidArgument(format!("{id} is {}: nothing to cancel", image.status.as_str())));
    }
    if image.is_copied {
        ecs.cancel_copy(id).await?;
        outln!("cancelled the copy {id}");
        return Ok(());
    }
    let tasks = ecs.tasks_of(id).await?;
    let running = tasks.iter().find(|t| matches!(t.task_status, TaskStatus::Waiting | TaskStatus::Processing));
    match running {
        Some(t) => {
            ecs.cancel_task(&t.task_id).await?;
            outln!("cancelled task {} of {id}", t.task_id);
            Ok(())
        }
        None => Err(CloudError::InvalidArgument(format!("{id} has no task that can be cancelled"))),
    }
}

async fn create(ecs: &Ecs, a: CreateArgs) -> Result<(), CloudError> {
    let mut snapshots: Vec<String> = a.from_snapshot.into_iter().collect();
    snapshots.extend(a.data_snapshots);
    let mut tags = a.tags;
    tags.push((imgport_pipeline::import::VERSION_TAG.into(), env!("IMGPORT_VERSION").into()));
    let request = CreateRequest {
        image_name: a.name,
        description: a.description,
        instance_id: a.from_instance,
        snapshots,
        image_family: a.family,
        tags,
        ..Default::default()
    };
    let id = ecs.create_image(&request).await?;
    note!("imgport: creating {id}");
    if a.wait.no_wait {
        outln!("{id}");
        return Ok(());
    }
    let image = wait_for(ecs, &id, a.wait.timeout).await?;
    show(&image, a.json);
    Ok(())
}

pub fn run_instance(args: InstanceArgs) -> u8 {
    let cloud = args.cloud.clone();
    with_ecs(&cloud, move |ecs| async move {
        match args.command {
            InstanceCommand::ReplaceDisk(a) => replace_disk(&ecs, a).await,
            InstanceCommand::List(a) => {
                let all = ecs.instances(&[]).await?;
                if a.json {
                    print_json(&all);
                } else {
                    for i in &all {
                        outln!("{:<24} {:<10} {:<24} {}", i.instance_id, i.status, i.instance_name, i.image_id);
                    }
                }
                Ok(())
            }
        }
    })
}

async fn replace_disk(ecs: &Ecs, a: ReplaceDiskArgs) -> Result<(), CloudError> {
    let found = ecs.instances(std::slice::from_ref(&a.instance)).await?;
    let instance = found
        .into_iter()
        .find(|i| i.instance_id == a.instance)
        .ok_or_else(|| CloudError::InvalidArgument(format!("no instance {} in {}", a.instance, ecs.region())))?;
    let was_running = instance.status == "Running";
    if was_running && !a.stop {
        return Err(CloudError::InvalidArgument(format!(
            "{} is Running: ReplaceSystemDisk needs it stopped; rerun with --stop to stop it and start it again after",
            a.instance
        )));
    }
    // Before stopping anything: the image must be one the instance can take.
    let image = ecs.image(&a.image).await?.ok_or_else(|| not_found(ecs, &a.image))?;
    if !matches!(image.status.as_str(), "Available" | "Deprecated") {
        return Err(CloudError::InvalidArgument(format!("{} is {}: not ready to use", a.image, image.status.as_str())));
    }
    if was_running {
        ecs.set_instance_running(&a.instance, false).await?;
        wait_instance(ecs, &a.instance, "Stopped").await?;
        note!("imgport: stopped {}", a.instance);
    }
    let replaced = ecs.replace_system_disk(&a.instance, &a.image, a.size).await;
    if let Ok(disk) = &replaced {
        outln!("{}: system disk {disk} from {}", a.instance, a.image);
    }
    // Started again whatever happened: the instance was running when imgport found it.
    if was_running {
        start_again(ecs, &a.instance).await?;
        note!("imgport: started {}", a.instance);
    }
    replaced.map(|_| ())
}

/// StartInstance, retried while the instance is still busy (a disk replacement takes a while), then waited for.
async fn start_again(ecs: &Ecs, id: &str) -> Result<(), CloudError> {
    for _ in 0..60 {
        match ecs.set_instance_running(id, true).await {
            Err(e) if e.code() == Some("IncorrectInstanceStatus") => tokio::time::sleep(Duration::from_secs(5)).await,
            r => {
                r?;
                return wait_instance(ecs, id, "Running").await;
            }
        }
    }
    Err(CloudError::InvalidArgument(format!("{id} could not be started again within 5 minutes: start it by hand")))
}

/// Polls the instance until it reaches `status` (bounded: 10 minutes).
async fn wait_instance(ecs: &Ecs, id: &str, status: &str) -> Result<(), CloudError> {
    for _ in 0..300 {
        let now = ecs.instances(&[id.to_string()]).await?;
        if now.iter().any(|i| i.instance_id == id && i.status == status) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Err(CloudError::InvalidArgument(format!("{id} did not become {status} within 10 minutes")))
}

/// `imgport images retain`: surveys every `--region`, plans each, prints the plans, and unless `--dry-run` carries
/// them out. Exit 0 when everything planned was done (or nothing was to do), 8 when some retirements failed (the
/// others were done; a rerun retries), 1 when the survey failed or the arguments are wrong.
fn run_retain(cloud: &CloudArgs, a: RetainArgs) -> u8 {
    let regions = match cloud.regions(&imgport_auth::Env::from_process()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("imgport: error: {e}");
            return 1;
        }
    };
    let policy = Policy {
        keep: a.keep,
        keep_younger_than: a.keep_days.map(|d| d.saturating_mul(86_400)),
        min_keep: a.min_keep,
        deprecate_after: a.deprecate_after.as_secs(),
        delete_after: a.delete_after.0.map(|d| d.as_secs()),
    };
    if let Err(e) = policy.check() {
        eprintln!("imgport: error: {e}");
        return 1;
    }
    // The clients are made for the first region and moved to each.
    let first = CloudArgs { region: regions.iter().take(1).cloned().collect(), ..cloud.clone() };
    with_ecs_code(&first, move |ecs| async move {
        let now = unix_now();
        let surveys = retain::survey(&ecs, &a.family, &regions).await?;
        let plans = surveys.iter().map(|s| retain::plan(s, &policy, now)).collect::<Result<Vec<Plan>, _>>()?;
        if !a.json {
            retain_table(&plans);
            for p in plans.iter().filter(|p| p.images.is_empty()) {
                note!("imgport: no images of family {} in {}", p.family, p.region);
            }
        }
        let mut done: Vec<Done> = Vec::new();
        if !a.dry_run {
            for p in &plans {
                let report = retain::apply(&ecs, p, unix_now()).await;
                if !a.json {
                    report.iter().for_each(print_done);
                }
                done.extend(report);
            }
        }
        let failed = done.iter().filter(|d| !d.ok).count();
        if a.json {
            print_json(&serde_json::json!({"dry_run": a.dry_run, "plans": plans, "done": done, "failed": failed}));
        } else if a.dry_run {
            note!("imgport: dry run: nothing changed");
        }
        if failed > 0 {
            eprintln!("imgport: error: {failed} of {} retirements failed; rerun to retry them", done.len());
            return Ok(8);
        }
        Ok(0)
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The plans as one table, a row per image.
fn retain_table(plans: &[Plan]) {
    let rows = plans.iter().flat_map(|p| p.images.iter().map(move |i| (p.region.as_str(), i)));
    let id = rows.clone().map(|(_, i)| i.image_id.len()).max().unwrap_or(0).max(5);
    let name = rows.clone().map(|(_, i)| i.image_name.len()).max().unwrap_or(0).max(4);
    let region = plans.iter().map(|p| p.region.len()).max().unwrap_or(0).max(6);
    outln!(
        "{:<region$}  {:<id$}  {:<name$}  {:<20}  {:<11}  {:<9}  WHY",
        "REGION",
        "IMAGE",
        "NAME",
        "CREATED",
        "STATUS",
        "ACTION"
    );
    for (r, i) in rows {
        let action =
            serde_json::to_value(i.action).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        outln!(
            "{r:<region$}  {:<id$}  {:<name$}  {:<20}  {:<11}  {action:<9}  {}",
            i.image_id,
            i.image_name,
            i.creation_time,
            i.status,
            i.why.describe()
        );
    }
}

pub(crate) fn print_done(d: &Done) {
    match (d.action, &d.error) {
        (Action::Deprecate, None) => {
            outln!("deprecated {} in {} at {}", d.image_id, d.region, d.deprecated_at.as_deref().unwrap_or(""))
        }
        (Action::Delete, None) => {
            outln!("deleted {} in {}", d.image_id, d.region);
            for s in &d.snapshots_deleted {
                outln!("deleted snapshot {s}");
            }
        }
        (_, Some(e)) => eprintln!("imgport: error: {} in {}: {e}", d.image_id, d.region),
        _ => {}
    }
    for s in &d.snapshots_kept {
        note!("imgport: snapshot {s} kept: another image uses it");
    }
}
