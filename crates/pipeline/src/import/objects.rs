//! The import's objects: uploading a disk (as it is, or converted on the way), deleting what the import sent, and
//! cancelling an import that was interrupted.

use super::{plan, ImportError, ImportEvent, Run};
use imgport_cloud::model::Image;
use imgport_disk::{open, Control, WriteOptions};
use imgport_storage::upload::{self, Summary, UploadError, UploadOptions};
use imgport_storage::{EventFn, ObjectStore, UploadEvent};
use plan::Upload;
use std::sync::Arc;

/// Uploads the file as it is, or converts it to qcow2 while uploading.
pub(super) async fn upload_image(
    run: &Run<'_>,
    how: Upload,
    key: &str,
    path: &std::path::Path,
) -> Result<Summary, ImportError> {
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
        put: Default::default(),
        rate_limit: None,
        max_attempts: 10,
        send_md5: !clouds.store.has_crc64(),
    };
    let events: EventFn = {
        let events = run.events.clone();
        Arc::new(move |e: &UploadEvent| events(&ImportEvent::Upload(e.clone())))
    };
    let ctl = {
        let events = run.events.clone();
        Control::new().with_progress(move |done| events(&ImportEvent::Converting { done, total: 0 }))
    };
    let flag = ctl.cancel_flag();
    let work = async {
        match how {
            Upload::AsIs => upload::upload(store, &opts, Some(events)).await,
            Upload::ConvertToQcow2 => {
                let img = open(path, &spec.open).map_err(|e| UploadError::Source(e.to_string()))?;
                let write = WriteOptions::new(imgport_disk::Format::Qcow2);
                let job = crate::convert_upload::ConvertUpload::new(img, &spec.open, write)
                    .map_err(|e| UploadError::Source(e.to_string()))?;
                job.run(store, &opts, ctl, Some(events)).await
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
