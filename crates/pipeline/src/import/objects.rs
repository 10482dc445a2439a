//! The import's objects: uploading a disk (as it is, or converted on the way), deleting what the import sent, and
//! cancelling an import that was interrupted.

use super::{plan, ImportError, ImportEvent, Run};
use imgport_cloud::model::Image;
use imgport_disk::{open, Control, WriteOptions};
use imgport_storage::upload::{self, Summary, UploadError, UploadOptions};
use imgport_storage::{EventFn, ObjectStore, UploadEvent};
use plan::Upload;
use std::sync::Arc;

/// The object metadata (`x-oss-meta-imgport-digest`) holding the content digest of the disk an object was
/// uploaded from, and the one with its upload format (`x-oss-meta-imgport-format`).
pub const DIGEST_META: &str = "imgport-digest";
pub const FORMAT_META: &str = "imgport-format";

/// One disk to send: where from, how, where to, and what it holds.
pub(super) struct Disk<'a> {
    pub how: Upload,
    pub key: &'a str,
    pub path: &'a std::path::Path,
    /// The content digest of this disk's source.
    pub digest: &'a str,
    /// The upload format (QCOW2, RAW, VHD).
    pub format: &'a str,
    /// The disk's virtual size (the converter's progress total).
    pub virtual_size: u64,
    /// Where to keep the converted image (`--keep-converted`; only with [`Upload::ConvertToQcow2`]).
    pub keep: Option<&'a std::path::Path>,
}

/// What became of a disk.
pub(super) enum Sent {
    Uploaded(Summary),
    /// The bucket held it already: same content digest and format in the object's metadata.
    AlreadyThere,
}

/// Whether the object's metadata says it holds this content in this format.
pub(super) fn same_content(meta: &imgport_storage::ObjectMeta, digest: &str, format: &str) -> bool {
    meta.metadata.get(DIGEST_META).map(String::as_str) == Some(digest)
        && meta.metadata.get(FORMAT_META).is_some_and(|f| f.eq_ignore_ascii_case(format))
}

/// Sends the disk unless the bucket already holds it (a HEAD answering its digest and format).
pub(super) async fn send(run: &Run<'_>, disk: &Disk<'_>) -> Result<Sent, ImportError> {
    if let Ok(meta) = run.clouds.store.head_object(disk.key).await {
        if same_content(&meta, disk.digest, disk.format) {
            return Ok(Sent::AlreadyThere);
        }
    }
    upload_image(run, disk).await.map(Sent::Uploaded)
}

/// What a disk's upload comes to when another run may be sending the same object.
pub(super) enum Turn {
    Sent(Sent),
    /// Another run sent it and registered an image of the name with this content: that image is the answer.
    Reuse(Box<Image>),
}

/// How often a run whose object another run is uploading looks for that run's image.
const OTHER_RUN_POLL: std::time::Duration = std::time::Duration::from_secs(1);
/// How long, after another run's upload of the object has ended, its image may take to show before this run
/// registers the object itself (the ClientToken makes both registrations one image).
const REGISTER_GRACE: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a run without a wait timeout (`--no-wait`) waits for another run's upload.
const OTHER_UPLOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(3 * 3600);

/// [`send`], but when another imgport run holds the upload of the same object (its resume lock), waits for that
/// run instead of failing: until its image of the name with this content (`digest`, the import's) shows, then
/// answered for reuse; or until the lock is free (that run ended or failed), then this run resumes the upload, or
/// finds the object complete. Bounded by the wait timeout.
pub(super) async fn send_or_wait(
    run: &Run<'_>,
    disk: &Disk<'_>,
    digest: &str,
    name: &str,
) -> Result<Turn, ImportError> {
    let began = std::time::Instant::now();
    let bound = run.spec.wait.as_ref().map_or(OTHER_UPLOAD_WAIT, |w| w.timeout);
    let mut other: Option<std::time::Instant> = None;
    loop {
        let sent = send(run, disk).await;
        if let Err(ImportError::Upload { error: UploadError::Busy { .. }, .. }) = &sent {
            if other.is_none() {
                run.emit(ImportEvent::StepDone {
                    step: super::Step::Upload,
                    seconds: 0.0,
                    detail: format!(
                        "another imgport run is uploading oss://{}/{}: waiting for it",
                        run.clouds.bucket, disk.key
                    ),
                });
            }
            other = Some(std::time::Instant::now());
        }
        if other.is_some() || matches!(sent, Ok(Sent::AlreadyThere)) {
            if let Some(image) = same_image(run, digest, name).await {
                return Ok(Turn::Reuse(Box::new(image)));
            }
        }
        match sent {
            Err(ImportError::Upload { error: UploadError::Busy { .. }, .. }) if began.elapsed() < bound => {}
            // The other run's upload ended: its image should show in a moment.
            Ok(Sent::AlreadyThere) if other.is_some_and(|t| t.elapsed() < REGISTER_GRACE) => {}
            r => return r.map(Turn::Sent),
        }
        tokio::select! {
            _ = tokio::time::sleep(OTHER_RUN_POLL) => {}
            _ = run.cancelled() => {
                return Err(ImportError::Interrupted { cleanup: "nothing of this run's to clean up".into() });
            }
        }
    }
}

/// An own image of `name` (the spec's, or with `replace` the temporary one) tagged with this content digest,
/// Available or still being imported (a failed one is no answer: its run removes it, and this run then uploads
/// and imports itself).
async fn same_image(run: &Run<'_>, digest: &str, name: &str) -> Option<Image> {
    use imgport_cloud::model::ImageStatus;
    registered_anyway(run, name).await.filter(|i| {
        i.tag(super::DIGEST_TAG) == Some(digest)
            && (i.status.in_flight() || matches!(i.status, ImageStatus::Available | ImageStatus::Deprecated))
    })
}

/// With `--keep-converted` when nothing is uploaded (the store holds the object already, or an image of the
/// content exists): converts the disk into the kept file alone, the same bytes the upload would have sent.
pub(super) async fn keep_converted(run: &Run<'_>, disk: &Disk<'_>) -> Result<(), ImportError> {
    let Some(keep) = disk.keep.filter(|_| disk.how == Upload::ConvertToQcow2) else { return Ok(()) };
    let (path, keep, open_opts, total) =
        (disk.path.to_path_buf(), keep.to_path_buf(), run.spec.open.clone(), disk.virtual_size);
    let ctl = {
        let events = run.events.clone();
        Control::new().with_progress(move |done| events(&ImportEvent::Converting { done, total }))
    };
    let flag = ctl.cancel_flag();
    let work = tokio::task::spawn_blocking(move || {
        let img = open(&path, &open_opts)?;
        let job =
            crate::convert_upload::ConvertUpload::new(img, &open_opts, WriteOptions::new(imgport_disk::Format::Qcow2))?;
        job.write_file(&path, &keep, &ctl)
    });
    tokio::select! {
        r = work => {
            r.map_err(|e| imgport_disk::Error::invalid_argument(format!("the conversion stopped: {e}")))??;
            Ok(())
        }
        _ = run.cancelled() => {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Err(ImportError::Interrupted { cleanup: "nothing was uploaded; the converted file was not kept".into() })
        }
    }
}

/// Uploads the file as it is, or converts it to qcow2 while uploading; the object's metadata records the
/// content digest and format. With `disk.keep`, the conversion is also written to that file (under a temporary
/// name in its folder, renamed into place once the upload completed; removed on failure or interruption).
pub(super) async fn upload_image(run: &Run<'_>, disk: &Disk<'_>) -> Result<Summary, ImportError> {
    let (how, key, path) = (disk.how, disk.key, disk.path);
    let (spec, clouds) = (run.spec, run.clouds);
    let store: Arc<dyn ObjectStore> = clouds.store.clone();
    let opts = UploadOptions {
        source: path.to_path_buf(),
        key: key.to_string(),
        endpoint_id: clouds.store_id.clone().unwrap_or_else(|| clouds.store.config().endpoint.url()),
        url: format!("oss://{}/{key}", clouds.bucket),
        part_size: spec.part_size,
        min_part_size: if clouds.store.config().flavor.is_oss() { 100 << 10 } else { 5 << 20 },
        concurrency: spec.concurrency.max(1),
        resume: true,
        state_dir: spec.state_dir.clone(),
        put: imgport_storage::PutOptions {
            metadata: vec![
                (DIGEST_META.to_string(), disk.digest.to_string()),
                (FORMAT_META.to_string(), disk.format.to_string()),
            ],
            ..Default::default()
        },
        rate_limit: None,
        max_attempts: 10,
        send_md5: !clouds.store.has_crc64(),
        checksum: Default::default(),
    };
    let events: EventFn = {
        let events = run.events.clone();
        Arc::new(move |e: &UploadEvent| events(&ImportEvent::Upload(e.clone())))
    };
    let ctl = {
        let events = run.events.clone();
        let total = disk.virtual_size;
        Control::new().with_progress(move |done| events(&ImportEvent::Converting { done, total }))
    };
    let flag = ctl.cancel_flag();
    let work = async {
        match how {
            Upload::AsIs => upload::upload(store, &opts, Some(events)).await,
            Upload::ConvertToQcow2 => {
                let img = open(path, &spec.open).map_err(|e| UploadError::Source(e.to_string()))?;
                let write = WriteOptions::new(imgport_disk::Format::Qcow2);
                let mut job = crate::convert_upload::ConvertUpload::new(img, &spec.open, write)
                    .map_err(|e| UploadError::Source(e.to_string()))?;
                // Dropped (the temporary file removed) when this fails or is dropped on Ctrl-C.
                let kept = match disk.keep {
                    Some(keep) => {
                        let (tmp, sink) = crate::convert_file::TempOutput::create(keep)
                            .map_err(|e| UploadError::Source(e.to_string()))?;
                        job = job.with_copy(Box::new(sink));
                        Some(tmp)
                    }
                    None => None,
                };
                let summary = job.run(store, &opts, ctl, Some(events)).await?;
                if let Some(tmp) = kept {
                    tmp.persist(false).map_err(|e| UploadError::Io(e.to_string()))?;
                }
                Ok(summary)
            }
        }
    };
    tokio::select! {
        r = work => r.map_err(|error| ImportError::Upload { bucket: clouds.bucket.clone(), key: key.to_string(), error }),
        _ = run.cancelled() => {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            if spec.keep_object {
                return Err(ImportError::Interrupted {
                    cleanup: "the parts uploaded so far are kept (--keep-object): rerun the same command to resume"
                        .into(),
                });
            }
            // Nothing of the import exists yet but the parts: remove them (kill -9 leaves them for a resume).
            let url = format!("oss://{}/{key}", clouds.bucket);
            let cleanup = match imgport_storage::Destination::parse_object(&url, false) {
                Ok(dest) => {
                    match imgport_storage::uploads::abort(&clouds.store, &dest, &url, None, spec.state_dir.as_deref())
                        .await
                    {
                        Ok(_) => format!("the upload to {url} is aborted and its parts removed"),
                        Err(e) => format!("the upload to {url} could not be aborted ({}): imgport uploads abort {url}", e.error),
                    }
                }
                Err(e) => format!("the upload to {url} could not be aborted: {e}"),
            };
            Err(ImportError::Interrupted { cleanup })
        }
    }
}

/// Deletes the uploaded object unless the spec keeps it (then `Err` says so).
pub(super) async fn delete_object(run: &Run<'_>, key: &str) -> Result<(), String> {
    if run.spec.keep_object {
        return Err("kept (--keep-object)".into());
    }
    run.clouds.store.delete_object(key).await.map_err(|e| e.to_string())
}

/// `oss://bucket/key, ...` for messages.
pub(super) fn objects(bucket: &str, keys: &[String]) -> String {
    keys.iter().map(|k| format!("oss://{bucket}/{k}")).collect::<Vec<_>>().join(", ")
}

/// Deletes every object of the import (see [`delete_object`]); the first failure, after trying them all.
pub(super) async fn delete_objects(run: &Run<'_>, keys: &[String]) -> Result<(), String> {
    let mut first = Ok(());
    for key in keys {
        if let Err(e) = delete_object(run, key).await {
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}

/// After a failed ImportImage: an own image of the name imported under, if one exists (the request may have
/// arrived and only its answer was lost, or a concurrent run registered it).
pub(super) async fn registered_anyway(run: &Run<'_>, name: &str) -> Option<Image> {
    super::replace::named(&run.clouds.ecs, name).await.ok().flatten()
}

/// After an interruption during the wait: cancels the import's task (ECS removes the unfinished image) and
/// deletes the object; says what was done.
pub(super) async fn cancel_import(run: &Run<'_>, task_id: &str, keys: &[String]) -> String {
    let mut done = Vec::new();
    if !task_id.is_empty() {
        match run.clouds.ecs.cancel_task(task_id).await {
            Ok(()) => done.push(format!("cancelled task {task_id}")),
            Err(e) => done.push(format!("could not cancel task {task_id}: {e}")),
        }
    }
    if delete_objects(run, keys).await.is_ok() {
        for key in keys {
            done.push(format!("deleted oss://{}/{key}", run.clouds.bucket));
        }
    }
    if done.is_empty() {
        "nothing to clean up".into()
    } else {
        done.join(", ")
    }
}

/// What taking the import's claim came to.
pub(super) enum Claim {
    /// This run uploads and registers; the lock (none without a state folder) is held until the run ends.
    Held(Option<imgport_storage::state::StateLock>),
    /// Another run registered an image of the name with this content meanwhile: that image is the answer.
    Reuse(Box<Image>),
}

/// Claims the upload and registration of this content under `name` for this run, on this machine: a lock beside
/// the resume states named by the import's ClientToken. A run that finds it held waits for the holder's image to
/// show (then reuses it) or for the lock to come free (the holder failed or ended; its image is looked for once
/// more). Without it, a run that found the object complete just after another run's upload would register the
/// same ClientToken and answer the other's import as its own, and cancel it on Ctrl-C. Runs on other machines are
/// kept to one image by the ClientToken alone.
pub(super) async fn claim(
    run: &Run<'_>,
    token: &str,
    key: &str,
    digest: &str,
    name: &str,
) -> Result<Claim, ImportError> {
    use imgport_storage::state::{self, LockError};
    let Some(dir) = &run.spec.state_dir else { return Ok(Claim::Held(None)) };
    let path = dir.join("imports").join(format!("{token}.state"));
    let began = std::time::Instant::now();
    let bound = run.spec.wait.as_ref().map_or(OTHER_UPLOAD_WAIT, |w| w.timeout);
    let mut told = false;
    loop {
        let busy = match state::lock(&path) {
            Ok(lock) => {
                return Ok(match same_image(run, digest, name).await {
                    Some(image) => Claim::Reuse(Box::new(image)),
                    None => Claim::Held(Some(lock)),
                })
            }
            Err(LockError::Busy { pid, path }) => (pid, path),
            Err(LockError::Io(e)) => {
                let error = UploadError::Io(format!("locking {}: {e}", path.display()));
                return Err(ImportError::Upload { bucket: run.clouds.bucket.clone(), key: key.into(), error });
            }
        };
        if !told {
            told = true;
            let who = busy.0.map_or("another imgport run".to_string(), |p| format!("imgport run {p}"));
            run.emit(ImportEvent::StepDone {
                step: super::Step::Upload,
                seconds: 0.0,
                detail: format!("{who} is importing this content as {name}: waiting for it"),
            });
        }
        if let Some(image) = same_image(run, digest, name).await {
            return Ok(Claim::Reuse(Box::new(image)));
        }
        if began.elapsed() >= bound {
            let error =
                UploadError::Busy { url: format!("oss://{}/{key}", run.clouds.bucket), pid: busy.0, lock: busy.1 };
            return Err(ImportError::Upload { bucket: run.clouds.bucket.clone(), key: key.into(), error });
        }
        tokio::select! {
            _ = tokio::time::sleep(OTHER_RUN_POLL) => {}
            _ = run.cancelled() => {
                return Err(ImportError::Interrupted { cleanup: "nothing of this run's to clean up".into() });
            }
        }
    }
}
