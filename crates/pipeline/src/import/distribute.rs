//! Distribution: the image family (set once the image is Available: ImportImage and CopyImage take none), copies
//! into other regions (in parallel, each waited for, cancellable, each given the family too) and shares. With
//! `replace`, a region that holds other content under the name gets the copy under the temporary name, swapped in
//! once it is Available (see [`super::replace`]).

use super::preflight::explain;
use super::{plan, replace, CopyOutcome, ImportError, ImportOutcome, Run, Step, DIGEST_TAG};
use imgport_cloud::ecs::CopyRequest;
use imgport_cloud::model::{Image, ImageStatus};
use imgport_cloud::wait::{wait_image, WaitEventFn, WaitOptions};
use imgport_cloud::{CloudError, Ecs};

/// What to make of an Available image in other regions and accounts: the import's own distribution, and
/// `imgport images copy`.
#[derive(Debug, Clone, Default)]
pub struct Distribution {
    /// The copies' name (and, with `replace`, the name they take from an image of other content).
    pub name: String,
    pub description: Option<String>,
    /// Set on the image (when it lacks it) and on every copy.
    pub family: Option<String>,
    /// The copies' tags.
    pub tags: Vec<(String, String)>,
    /// The content digest (`imgport:digest`): a region that holds an image of the name with it is reused, and the
    /// copies' ClientTokens derive from it. `None` (an image imgport did not make): no reuse, tokens from the
    /// image id.
    pub digest: Option<String>,
    pub copy_to: Vec<String>,
    pub share_with: Vec<String>,
    pub replace: bool,
}

/// What distribution did.
#[derive(Debug, Clone, Default)]
pub struct Distributed {
    pub copies: Vec<CopyOutcome>,
    pub shared_with: Vec<String>,
    /// What failed besides copies (family, shares), each with its cause and fix.
    pub warnings: Vec<String>,
    /// Copies, shares and family settings that failed.
    pub failed: usize,
}

/// Copies started, by region and image id, so that an interruption can cancel them ([`cancel_copies`]).
pub type Started = std::sync::Mutex<Vec<(String, String)>>;

/// Sets the family, copies into each `copy_to` region (all started at once, each waited for in its region; a
/// region that already holds an Available image of this name and content is reused, one still being copied is
/// waited for, a failed one replaced) and shares the image and its copies. With `wait` `None` the copies are
/// started and reported as they are (no family on them, no swap, no shares of them).
pub async fn distribute(
    ecs: &Ecs,
    image: &Image,
    d: &Distribution,
    wait: Option<&WaitOptions>,
    wait_events: &WaitEventFn,
    started: &Started,
) -> Distributed {
    let mut out = Distributed::default();
    // The family first, so that copies made from the image carry it where the service copies it along.
    if let Some(family) = d.family.as_deref().filter(|f| image.image_family != *f) {
        if let Err(e) = ecs.set_family(&image.image_id, family).await {
            out.failed += 1;
            out.warnings.push(explain(&format!("setting the family of {}", image.image_id), &e));
        }
    }
    // Without a content digest the tokens still make a rerun answer the same copies.
    let token_key = d.digest.clone().unwrap_or_else(|| image.image_id.clone());
    let copies = d.copy_to.iter().map(|dest| {
        let (ecs, wait_events, token_key) = (ecs.clone(), wait_events.clone(), token_key.clone());
        let mut request = CopyRequest {
            image_id: image.image_id.clone(),
            destination_region: dest.clone(),
            destination_name: Some(d.name.clone()),
            destination_description: d.description.clone(),
            tags: d.tags.clone(),
            client_token: Some(plan::client_token(&token_key, &d.name, dest)),
            ..Default::default()
        };
        async move {
            let there = ecs.in_region(&request.destination_region);
            let digest = d.digest.as_deref();
            let mut found = match digest {
                Some(digest) => same_content(&there, &d.name, digest).await,
                None => None,
            };
            // With `replace`, an image of other content under the name: copied under the temporary name (an
            // earlier run's copy there is taken up), swapped in once Available.
            let mut old = None;
            if let (None, true, Some(digest)) = (&found, d.replace, digest) {
                old = replace::named(&there, &d.name).await?.filter(|o| !o.status.in_flight());
                let temporary = replace::temporary_name(&d.name, digest);
                found = same_content(&there, &temporary, digest).await;
                if old.is_some() || found.is_some() {
                    request.destination_name = Some(temporary.clone());
                    request.client_token = Some(plan::client_token(digest, &temporary, &request.destination_region));
                }
            }
            let name = request.destination_name.clone().unwrap_or_default();
            let (id, done, reused) = match found {
                Some(done) if !done.status.in_flight() && done.status != ImageStatus::CreateFailed => {
                    (done.image_id.clone(), Ok(done), true)
                }
                // An earlier run's copy still under way: wait for it.
                Some(going) if going.status.in_flight() => {
                    let done = waited(&there, going.clone(), wait, &wait_events).await;
                    (going.image_id, done, true)
                }
                // An earlier run's failed copy: remove it, and copy again under a token of its own (the old one
                // would answer the failed copy).
                found => {
                    if let Some(failed) = found {
                        there.delete_image(&failed.image_id, false).await?;
                        let salted = format!("{}:{}", request.destination_region, failed.image_id);
                        request.client_token = Some(plan::client_token(&token_key, &name, &salted));
                    }
                    let id = ecs.copy_image(&request).await?;
                    let region = request.destination_region.clone();
                    started.lock().unwrap_or_else(|p| p.into_inner()).push((region, id.clone()));
                    let done = match wait {
                        Some(w) => wait_image(&there, &id, None, w, &wait_events).await,
                        None => match there.image(&id).await {
                            Ok(Some(copy)) => Ok(copy),
                            Ok(None) => Err(CloudError::InvalidArgument(format!("the copy {id} is not listed yet"))),
                            Err(e) => Err(e),
                        },
                    };
                    (id, done, false)
                }
            };
            // Available under the temporary name: it takes the name.
            let (done, replaced) = match done {
                Ok(img) if img.image_name != d.name && !img.status.in_flight() => {
                    match replace::swap(&there, &d.name, old.as_ref(), &img).await {
                        Ok(r) => (Ok(img), r),
                        Err(e) => (Err(e), None),
                    }
                }
                other => (other, None),
            };
            Ok::<_, CloudError>((id, done, reused, replaced))
        }
    });
    let results = futures_util::future::join_all(copies).await;
    let mut available: Vec<(String, String)> = Vec::new();
    for (dest, r) in d.copy_to.iter().zip(results) {
        let c = match r {
            Ok((id, Ok(img), reused, replaced)) => {
                if let Some(family) = d.family.as_deref().filter(|f| img.image_family != *f && !img.status.in_flight())
                {
                    if let Err(e) = ecs.in_region(dest).set_family(&id, family).await {
                        out.failed += 1;
                        out.warnings.push(explain(&format!("setting the family of {id} in {dest}"), &e));
                    }
                }
                if !img.status.in_flight() {
                    available.push((dest.clone(), id.clone()));
                }
                let status = img.status.as_str().to_string();
                CopyOutcome { region: dest.clone(), image_id: id, status, error: None, reused, replaced }
            }
            Ok((id, Err(e), _, _)) => {
                out.failed += 1;
                let error = Some(e.to_string());
                let status = "failed".into();
                CopyOutcome { region: dest.clone(), image_id: id, status, error, reused: false, replaced: None }
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
                    replaced: None,
                }
            }
        };
        out.copies.push(c);
    }
    if !d.share_with.is_empty() {
        let mut targets = vec![(ecs.region().to_string(), image.image_id.clone())];
        targets.extend(available);
        let mut all_shared = true;
        // The accounts are recorded on the image: retention tells imgport's shares from others' by them.
        // Added to those an earlier run shared it with, which stay imgport's.
        let earlier = image.tag(imgport_cloud::retain::SHARED_TAG).unwrap_or("");
        let mut accounts: Vec<String> =
            earlier.split(',').filter(|a| !a.is_empty()).map(str::to_string).chain(d.share_with.clone()).collect();
        accounts.sort();
        accounts.dedup();
        // A tag value holds 128 characters (7 accounts): with more, retention leaves the shared images alone.
        let joined = accounts.join(",");
        let tag: Vec<(String, String)> = match joined.len() <= 128 {
            true => vec![(imgport_cloud::retain::SHARED_TAG.to_string(), joined)],
            false => {
                out.warnings.push(format!(
                    "shared with {} accounts: too many to record in the tag {} (128 characters), so retention                      will treat these shares as someone else's and keep the images",
                    accounts.len(),
                    imgport_cloud::retain::SHARED_TAG
                ));
                Vec::new()
            }
        };
        for (region, id) in targets {
            let ecs = ecs.in_region(&region);
            let shared = match ecs.tag("image", std::slice::from_ref(&id), &tag).await {
                Ok(()) => ecs.share(&id, &d.share_with, &[]).await,
                Err(e) => Err(e),
            };
            if let Err(e) = shared {
                out.failed += 1;
                all_shared = false;
                out.warnings.push(explain(&format!("sharing {id} in {region}"), &e));
            }
        }
        if all_shared {
            out.shared_with = d.share_with.clone();
        }
    }
    out
}

/// `image` once Available (waited for with `wait`), or as it is now without a wait.
async fn waited(
    ecs: &Ecs,
    image: Image,
    wait: Option<&WaitOptions>,
    events: &WaitEventFn,
) -> Result<Image, CloudError> {
    match wait {
        Some(w) => wait_image(ecs, &image.image_id, None, w, events).await,
        None => Ok(image),
    }
}

/// An own image of `name` carrying this content digest in `ecs`'s region, in any status.
pub(super) async fn same_content(ecs: &Ecs, name: &str, digest: &str) -> Option<Image> {
    replace::named(ecs, name).await.ok().flatten().filter(|i| i.tag(DIGEST_TAG) == Some(digest))
}

/// After an interruption during distribution: cancels the copies still under way; says what was done.
pub async fn cancel_copies(ecs: &Ecs, started: &Started) -> String {
    let list = started.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut done = Vec::new();
    for (region, id) in list {
        let there = ecs.in_region(&region);
        let in_flight = there.image(&id).await.ok().flatten().is_some_and(|i| i.status.in_flight());
        if in_flight {
            match there.cancel_copy(&id).await {
                Ok(()) => done.push(format!("cancelled the copy {id} in {region}")),
                Err(e) => done.push(format!("could not cancel the copy {id} in {region}: {e}")),
            }
        }
    }
    if done.is_empty() {
        "no copy was under way".into()
    } else {
        done.join(", ")
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
    let started = Started::default();
    let d = Distribution {
        name: run.spec.name.clone(),
        description: run.spec.description.clone(),
        family: run.spec.family.clone(),
        tags: tags.to_vec(),
        digest: Some(outcome.digest.clone()),
        copy_to: run.spec.copy_to.clone(),
        share_with: run.spec.share_with.clone(),
        replace: run.spec.replace,
    };
    let wait_events = run.wait_events();
    let done = {
        let run_ref: &Run<'_> = run;
        let ecs = &run_ref.clouds.ecs;
        tokio::select! {
            d = distribute(ecs, image, &d, Some(wait), &wait_events, &started) => d,
            _ = run_ref.cancelled() => {
                let cleanup = format!("the image is Available; {}", cancel_copies(ecs, &started).await);
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
