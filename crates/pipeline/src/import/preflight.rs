//! The checks before the first byte is uploaded (see the module docs of [`super`]).

use super::objects::same_content;
use super::{replace, ImportError, ImportEvent, Run, Step, DIGEST_TAG};
use imgport_cloud::model::{Image, ImageStatus};
use imgport_cloud::{CloudError, ErrorKind};
use imgport_storage::ObjectStore;
use std::time::Duration;

pub(super) fn preflight_error(message: impl Into<String>, source: Option<CloudError>) -> ImportError {
    ImportError::Preflight { message: message.into(), source }
}

/// With the cause and fix when the code is known.
pub(super) fn explain(what: &str, e: &CloudError) -> String {
    match e.advice() {
        Some(a) => format!("{what}: {} ({e}); fix: {}", a.cause, a.fix),
        None => format!("{what}: {e}"),
    }
}

/// The checks before the upload; an image of the name with the same content (`digest`, the import's) is answered
/// for reuse, and with `replace` the image to swap out. `disk_digest` and `format` are the system disk's, which a
/// user-chosen `key` may already hold.
pub(super) async fn preflight(
    run: &mut Run<'_>,
    digest: &str,
    key: &str,
    disk_digest: &str,
    format: &str,
) -> Result<Found, ImportError> {
    let (spec, clouds) = (run.spec, run.clouds);
    let region = clouds.ecs.region().to_string();
    let regions = clouds.ecs.regions().await.map_err(|e| {
        let m = if e.kind() == ErrorKind::Credentials {
            format!(
                "no usable credentials: {e}; fix: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, \
                 or configure a profile (aliyun configure); `imgport auth whoami` shows what imgport finds"
            )
        } else {
            explain("the credentials do not work with ECS", &e)
        };
        preflight_error(m, Some(e))
    })?;
    if !regions.iter().any(|r| r == &region) {
        return Err(preflight_error(
            format!("ECS does not serve region {region} for this account (it serves {})", regions.join(", ")),
            None,
        ));
    }
    for dest in &spec.copy_to {
        if dest == &region {
            return Err(preflight_error(format!("--copy-to {dest}: the image is imported there already"), None));
        }
        if !regions.contains(dest) {
            return Err(preflight_error(
                format!(
                    "--copy-to {dest}: not a region ECS serves for this account (it serves {})",
                    regions.join(", ")
                ),
                None,
            ));
        }
    }
    // A copy region holding another image under the name would fail the copy after the whole import; found now.
    if !spec.replace {
        for dest in &spec.copy_to {
            let there = clouds.ecs.in_region(dest);
            let held = replace::named(&there, &spec.name).await.map_err(|e| {
                let m = explain(&format!("cannot list the images in {dest}"), &e);
                preflight_error(m, Some(e))
            })?;
            if let Some(i) = held.filter(|i| i.tag(DIGEST_TAG) != Some(digest)) {
                return Err(preflight_error(
                    format!(
                        "--copy-to {dest}: an image named {:?} with other content already exists there: {} ({}); \
                         fix: --replace (the copy takes the name once Available), another --name, or delete it \
                         (imgport images delete {} --region {dest})",
                        spec.name,
                        i.image_id,
                        i.status.as_str(),
                        i.image_id
                    ),
                    None,
                ));
            }
        }
    }
    match clouds.store.bucket_region().await {
        Ok(r) if r == region => {}
        Ok(r) => {
            return Err(preflight_error(
                format!(
                    "bucket {} is in {r}, the import is in {region}: ECS imports only from a bucket in its own region; \
                     fix: use a bucket in {region} (ossutil mb oss://NAME --region {region})",
                    clouds.bucket
                ),
                None,
            ))
        }
        Err(e) => {
            return Err(preflight_error(
                format!(
                    "bucket {} cannot be used: {e}; fix: create it in {region} (ossutil mb oss://{} --region {region}) \
                     or check the credentials' OSS permissions",
                    clouds.bucket, clouds.bucket
                ),
                None,
            ))
        }
    }
    // A key the user chose must not hold an object already (imgport would overwrite it, then delete it), unless
    // it is this very content, which imgport uploaded before and does not send again.
    if spec.key.is_some() {
        match clouds.store.head_object(key).await {
            Ok(meta) if same_content(&meta, disk_digest, format) => {}
            Ok(_) => {
                return Err(preflight_error(
                    format!(
                        "oss://{}/{key} already exists: imgport would overwrite it and delete it after the import; \
                         fix: choose another --key, or leave --key out (imgport derives one from the content)",
                        clouds.bucket
                    ),
                    None,
                ))
            }
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(preflight_error(format!("cannot check oss://{}/{key}: {e}", clouds.bucket), None)),
        }
    }
    let role_problem = clouds.ram.check_import_role(None).await.map_err(|e| {
        let m = explain("cannot check the import role", &e);
        preflight_error(m, Some(e))
    })?;
    if let Some(problem) = role_problem {
        if !spec.create_role {
            return Err(preflight_error(problem.explain(), None));
        }
        let done = clouds.ram.create_import_role(None).await.map_err(|e| {
            let m = explain("cannot create the import role", &e);
            preflight_error(m, Some(e))
        })?;
        run.emit(ImportEvent::StepDone { step: Step::Preflight, seconds: 0.0, detail: done.join("; ") });
        // RAM changes take a moment to reach ECS: check again, bounded.
        let mut ok = false;
        for _ in 0..30 {
            if clouds.ram.check_import_role(None).await.map_err(|e| preflight_error(e.to_string(), Some(e)))?.is_none()
            {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        if !ok {
            return Err(preflight_error("the import role was created but does not work yet; rerun in a minute", None));
        }
    }
    let same_name = replace::named(&clouds.ecs, &spec.name)
        .await
        .map_err(|e| preflight_error(explain("cannot list the images", &e), Some(e)))?;
    let mut found = Found::default();
    if let Some(i) = same_name {
        let same = i.tag(DIGEST_TAG) == Some(digest);
        match (&i.status, same) {
            // Imported anew with `force`, and swapped in once Available.
            (ImageStatus::Available | ImageStatus::Deprecated, true) if spec.force => found.old = Some(i),
            (ImageStatus::Available | ImageStatus::Deprecated, true) => {
                found.reuse = Some(i);
                return Ok(found);
            }
            // An earlier run's failed import of this very content: imgport made it, it is of no use, and it
            // holds the name.
            (ImageStatus::CreateFailed, true) => delete_failed(run, &i).await?,
            // Another run is importing this very content: its image is the answer, once it is ready.
            (s, true) if s.in_flight() => {
                found.reuse = Some(i);
                return Ok(found);
            }
            // Replaced once the new image is Available.
            (s, false) if spec.replace && !s.in_flight() => found.old = Some(i),
            (s, _) => {
                let fix = if spec.replace {
                    "wait until it is done, or cancel it (imgport images cancel ID)".to_string()
                } else {
                    format!(
                        "choose another --name, replace it once the new image is Available (--replace), or delete \
                         it first (imgport images delete {})",
                        i.image_id
                    )
                };
                return Err(preflight_error(
                    format!(
                        "an image named {:?} with other content already exists in {region}: {} ({}); fix: {fix}",
                        spec.name,
                        i.image_id,
                        s.as_str(),
                    ),
                    None,
                ));
            }
        }
    }
    if spec.replace || spec.force {
        // An earlier run's replacement under the temporary name: taken up where it stopped.
        let temporary = replace::temporary_name(&spec.name, digest);
        let earlier = replace::named(&clouds.ecs, &temporary)
            .await
            .map_err(|e| preflight_error(explain("cannot list the images", &e), Some(e)))?
            .filter(|i| i.tag(DIGEST_TAG) == Some(digest));
        match earlier {
            Some(i) if i.status == ImageStatus::CreateFailed => delete_failed(run, &i).await?,
            Some(i) => found.reuse = Some(i),
            None => {}
        }
    }
    Ok(found)
}

/// What preflight found under the name: an image of this content to answer (`reuse`; with `replace`, possibly
/// under the temporary name), and with `replace` the image of other content to swap out (`old`).
#[derive(Default)]
pub(super) struct Found {
    pub reuse: Option<Image>,
    pub old: Option<Image>,
}

/// Deletes an earlier run's CreateFailed image of this content: imgport made it, it is of no use, and it holds a
/// name the import needs.
async fn delete_failed(run: &Run<'_>, i: &Image) -> Result<(), ImportError> {
    run.clouds.ecs.delete_image(&i.image_id, false).await.map_err(|e| {
        let m = explain(&format!("cannot delete the failed image {} of an earlier run", i.image_id), &e);
        preflight_error(m, Some(e))
    })?;
    run.emit(ImportEvent::StepDone {
        step: Step::Preflight,
        seconds: 0.0,
        detail: format!("deleted {}, an earlier run's failed import of this content", i.image_id),
    });
    Ok(())
}
