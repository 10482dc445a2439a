//! Distribution: the image family (set once the image is Available: ImportImage and CopyImage take none), copies
//! into other regions (in parallel, each waited for, cancellable, each given the family too) and shares.

use super::preflight::explain;
use super::{plan, CopyOutcome, ImportError, ImportEvent, ImportOutcome, Run, Step, DIGEST_TAG};
use imgport_cloud::ecs::{CopyRequest, ImageFilter};
use imgport_cloud::model::{Image, ImageStatus};
use imgport_cloud::wait::{wait_image, WaitEvent, WaitEventFn, WaitOptions};
use imgport_cloud::{CloudError, Ecs};
use std::sync::Arc;

/// What distribution did.
pub(super) struct Distributed {
    copies: Vec<CopyOutcome>,
    shared_with: Vec<String>,
    warnings: Vec<String>,
    failed: usize,
}

/// Copies into each `copy_to` region (all started at once, each waited for in its region; a region that already
/// holds an Available image of this name and content is reused) and shares the image and its copies. Copies
/// started are recorded in `started`, so that an interruption can cancel them.
pub(super) async fn distribute(
    run: &Run<'_>,
    image: &Image,
    wait: &WaitOptions,
    tags: &[(String, String)],
    digest: &str,
    started: &std::sync::Mutex<Vec<(String, String)>>,
) -> Distributed {
    let (spec, clouds) = (run.spec, run.clouds);
    let mut out = Distributed { copies: Vec::new(), shared_with: Vec::new(), warnings: Vec::new(), failed: 0 };
    // The family first, so that copies made from the image carry it where the service copies it along.
    if let Some(family) = spec.family.as_deref().filter(|f| image.image_family != *f) {
        if let Err(e) = clouds.ecs.set_family(&image.image_id, family).await {
            out.failed += 1;
            out.warnings.push(explain(&format!("setting the family of {}", image.image_id), &e));
        }
    }
    let wait_events: WaitEventFn = {
        let events = run.events.clone();
        Arc::new(move |e: &WaitEvent| events(&ImportEvent::Wait(e.clone())))
    };
    let copies = spec.copy_to.iter().map(|dest| {
        let (ecs, wait_events) = (clouds.ecs.clone(), wait_events.clone());
        let mut request = CopyRequest {
            image_id: image.image_id.clone(),
            destination_region: dest.clone(),
            destination_name: Some(spec.name.clone()),
            destination_description: spec.description.clone(),
            tags: tags.to_vec(),
            client_token: Some(plan::client_token(digest, &spec.name, dest)),
            ..Default::default()
        };
        async move {
            let there = ecs.in_region(&request.destination_region);
            match same_content(&there, &spec.name, digest).await {
                Some(done) if !done.status.in_flight() && done.status != ImageStatus::CreateFailed => {
                    return Ok((done.image_id.clone(), Ok(done), true))
                }
                // An earlier run's copy still under way: wait for it.
                Some(going) if going.status.in_flight() => {
                    let done = wait_image(&there, &going.image_id, None, wait, &wait_events).await;
                    return Ok((going.image_id, done, true));
                }
                // An earlier run's failed copy: remove it, and copy again under a token of its own (the old one
                // would answer the failed copy).
                Some(failed) => {
                    there.delete_image(&failed.image_id, false).await?;
                    let salted = format!("{}:{}", request.destination_region, failed.image_id);
                    request.client_token = Some(plan::client_token(digest, &spec.name, &salted));
                }
                None => {}
            }
            let id = ecs.copy_image(&request).await?;
            started.lock().unwrap_or_else(|p| p.into_inner()).push((request.destination_region.clone(), id.clone()));
            let done = wait_image(&there, &id, None, wait, &wait_events).await;
            Ok::<_, CloudError>((id, done, false))
        }
    });
    let results = futures_util::future::join_all(copies).await;
    let mut available: Vec<(String, String)> = Vec::new();
    for (dest, r) in spec.copy_to.iter().zip(results) {
        let c = match r {
            Ok((id, Ok(img), reused)) => {
                if let Some(family) = spec.family.as_deref().filter(|f| img.image_family != *f) {
                    if let Err(e) = clouds.ecs.in_region(dest).set_family(&id, family).await {
                        out.failed += 1;
                        out.warnings.push(explain(&format!("setting the family of {id} in {dest}"), &e));
                    }
                }
                available.push((dest.clone(), id.clone()));
                let status = img.status.as_str().to_string();
                CopyOutcome { region: dest.clone(), image_id: id, status, error: None, reused }
            }
            Ok((id, Err(e), _)) => {
                out.failed += 1;
                let error = Some(e.to_string());
                CopyOutcome { region: dest.clone(), image_id: id, status: "failed".into(), error, reused: false }
            }
            Err(e) => {
                out.failed += 1;
                let error = Some(explain("CopyImage", &e));
                CopyOutcome {
                    region: dest.clone(),
                    image_id: String::new(),
                    status: "failed".into(),
                    error,
                    reused: false,
                }
            }
        };
        out.copies.push(c);
    }
    if !spec.share_with.is_empty() {
        let mut targets = vec![(clouds.ecs.region().to_string(), image.image_id.clone())];
        targets.extend(available);
        let mut all_shared = true;
        for (region, id) in targets {
            if let Err(e) = clouds.ecs.in_region(&region).share(&id, &spec.share_with, &[]).await {
                out.failed += 1;
                all_shared = false;
                out.warnings.push(explain(&format!("sharing {id} in {region}"), &e));
            }
        }
        if all_shared {
            out.shared_with = spec.share_with.clone();
        }
    }
    out
}

/// An own image of `name` carrying this content digest in `ecs`'s region, in any status.
pub(super) async fn same_content(ecs: &Ecs, name: &str, digest: &str) -> Option<Image> {
    let filter =
        ImageFilter { image_name: Some(name.to_string()), owner_alias: Some("self".into()), ..Default::default() };
    let found = ecs.images(&filter).await.ok()?;
    found.into_iter().find(|i| i.image_name == name && i.tag(DIGEST_TAG) == Some(digest))
}

/// After an interruption during distribution: cancels the copies still under way; says what was done.
pub(super) async fn cancel_copies(run: &Run<'_>, started: &std::sync::Mutex<Vec<(String, String)>>) -> String {
    let list = started.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut done = Vec::new();
    for (region, id) in list {
        let there = run.clouds.ecs.in_region(&region);
        let in_flight = there.image(&id).await.ok().flatten().is_some_and(|i| i.status.in_flight());
        if in_flight {
            match there.cancel_copy(&id).await {
                Ok(()) => done.push(format!("cancelled the copy {id} in {region}")),
                Err(e) => done.push(format!("could not cancel the copy {id} in {region}: {e}")),
            }
        }
    }
    if done.is_empty() {
        "the image is Available; no copy was under way".into()
    } else {
        format!("the image is Available; {}", done.join(", "))
    }
}

/// Runs distribution (when there is any) as a step, cancellable; fills `outcome`; the number of failures.
pub(super) async fn distribute_step(
    run: &mut Run<'_>,
    image: &Image,
    wait: &WaitOptions,
    tags: &[(String, String)],
    outcome: &mut ImportOutcome,
) -> Result<usize, ImportError> {
    if run.spec.copy_to.is_empty() && run.spec.share_with.is_empty() && run.spec.family.is_none() {
        return Ok(0);
    }
    run.start(Step::Distribute);
    let started = std::sync::Mutex::new(Vec::new());
    let digest = outcome.digest.clone();
    let done = {
        let run_ref: &Run<'_> = run;
        tokio::select! {
            d = distribute(run_ref, image, wait, tags, &digest, &started) => d,
            _ = run_ref.cancelled() => {
                let cleanup = cancel_copies(run_ref, &started).await;
                return Err(ImportError::Interrupted { cleanup });
            }
        }
    };
    outcome.copies = done.copies;
    outcome.shared_with = done.shared_with;
    outcome.warnings.extend(done.warnings);
    let copies = match outcome.copies.len() {
        1 => "1 copy".to_string(),
        n => format!("{n} copies"),
    };
    let family = run.spec.family.as_ref().map(|f| format!(", family {f}")).unwrap_or_default();
    run.done(Step::Distribute, format!("{copies}, shared with {} account(s){family}", outcome.shared_with.len()));
    Ok(done.failed)
}
