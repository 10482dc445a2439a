//! The background work behind ImportImage and CopyImage (Waiting, Creating with rising Progress, then Available
//! or CreateFailed), its restart after the emulator restarts, and DescribeTasks, DescribeTaskAttribute, CancelTask.
//!
//! Only imports are tasks. A copy is worked on the same way but has no task: it is tracked on its destination
//! image alone and cancelled with CancelCopyImage (see [`super::copy`]); CancelTask answers `InvalidTaskId.NotFound`
//! for anything that is not an import's TaskId. State files written when copies were tasks are migrated at start:
//! their CopyImage tasks are dropped and the copies carry on as images.
//!
//! DescribeTasks: RegionId; `TaskIds` (comma-separated, at most 100); `ResourceIds.N` (the image a task works on,
//! at most 100); `TaskAction` and `TaskStatus` (exact values; only ImportImage tasks exist here, statuses Waiting,
//! Processing, Finished, Failed, Deleted once cancelled); `StartTime`/`EndTime` (UTC `yyyy-MM-ddTHH:mmZ`, both inclusive, compared
//! with the task's CreationTime); PageNumber/PageSize (1-100, default 10) with TotalCount before paging; newest
//! first. Differences: a malformed time or too many ids answers 400 `InvalidParameter.<name>` as the docs name no
//! code; the real service keeps tasks for a limited time, the emulator keeps the newest
//! `CloudSettings::task_history` finished ones (Finished, Failed, Deleted; 1000 by default) and forgets the oldest
//! beyond that whenever a task is queued, finishes or is cancelled (tasks in flight are always kept). Deleting an
//! image leaves its task, as in ECS.
//!
//! Threads and saving: each import or copy is worked on by its own thread (their number is bounded by
//! `CloudSettings::max_in_flight` per region, see [`super`]), counted in the emulator's
//! [`crate::state::Background`]. The state is saved when a status changes (Creating, then Available or
//! CreateFailed), not on each Progress step: a restart begins unfinished work again from Waiting, so the Progress
//! reached is not worth a write of the whole state. On shutdown the stop flag is set: every worker checks it before
//! each update and save, wakes from its waits and ends without writing; the image stays as last saved and the next
//! start resumes it. When no thread can be started for an import or copy, its image ends CreateFailed (task Failed,
//! `InternalError`) instead of waiting for ever.
//!
//! CreateImage is worked on the same way (no task either: its image is Waiting, Creating, then Available, and
//! the task calls do not know it). When the work ends Available, each disk gets its snapshot (see
//! [`super::snapshots`]).
//!
//! Timing: the work takes `import_seconds` for an import or a CreateImage and `copy_seconds` (unset:
//! `import_seconds`) for a copy,
//! in ten steps (Waiting, Creating at 5%, then 11% ... 88%, then the end). An import or copy whose request was hit
//! by a `stall` fault rule holds at Creating 5% (task Processing) until the rule's `seconds` have passed, or, without
//! `seconds`, for as long as a `stall` rule for its action (`ImportImage` / `CopyImage`, `rpc` or `*`) stays in the
//! fault configuration (clear it with `DELETE /_emulator/faults`). It can be cancelled while held. The real
//! service takes minutes to hours and never stalls on purpose; a stall the emulator was restarted during holds
//! again on resume, by the same rule. An import whose request was hit by a `task_finishes_early` fault rule reports
//! its task Finished (Progress 100) at the end of its work, then holds its image in Creating for the rule's
//! `seconds` before it becomes Available (the real service was seen to do this); CancelTask then answers
//! `InvalidTaskId.IncorrectTaskStatus`, as for any finished task.

use super::{err, import, list_param, paging, region, Image, Task, IN_FLIGHT};
use crate::faults::Stall;
use crate::rpc::{Params, RpcContext, RpcError, RpcResult};
use crate::services::{iso, Db, Inner};
use serde_json::{json, Value};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

/// Task statuses of work still under way (and so cancellable).
const IN_FLIGHT_TASK: [&str; 2] = ["Waiting", "Processing"];

/// Seeds the catalogue on first start, then restarts the imports and copies a restart interrupted (they begin
/// again from Waiting, as a re-queued task does).
pub(crate) fn resume(inner: &Arc<Inner>) {
    let mut db = inner.db();
    if !db.images.iter().any(|i| i.owner_alias == "system") {
        let now = inner.state.now();
        for r in &inner.state.regions {
            let s = super::images::seed(r, now, &inner.state.account_id);
            db.images.extend(s);
        }
        for r in &inner.state.regions {
            db.instances.extend(super::instances::seed(r, now));
        }
        let _ = db.save();
    }
    // Copies used to be recorded as tasks: forget those tasks, the images carry the copies.
    let copy_tasks: Vec<String> = db.tasks.iter().filter(|t| t.action == "CopyImage").map(|t| t.id.clone()).collect();
    if !copy_tasks.is_empty() {
        db.tasks.retain(|t| t.action != "CopyImage");
        for i in db.images.iter_mut().filter(|i| i.task_id.as_ref().is_some_and(|t| copy_tasks.contains(t))) {
            i.task_id = None;
        }
        let _ = db.save();
    }
    // State written before snapshots were records: record the snapshots of finished images.
    if super::snapshots::migrate(&mut db) {
        let _ = db.save();
    }
    let pending: Vec<String> =
        db.images.iter().filter(|i| IN_FLIGHT.contains(&i.status.as_str())).map(|i| i.id.clone()).collect();
    for id in &pending {
        if let Some(i) = db.images.iter_mut().find(|i| &i.id == id) {
            i.status = "Waiting".into();
            i.progress = 0;
        }
    }
    drop(db);
    for id in pending {
        spawn_worker(inner.clone(), id);
    }
}

/// Records `task` (id and region set) as a waiting `action` on `image_id` and starts the worker that moves it on.
pub(super) fn queue_task(
    inner: &Arc<Inner>,
    mut db: MutexGuard<'_, Db>,
    ctx: &RpcContext,
    task: Task,
    action: &str,
    image_id: &str,
) -> Result<(), RpcError> {
    prune_tasks(&mut db, inner.settings.task_history);
    db.tasks.push(Task {
        action: action.into(),
        image_id: image_id.to_string(),
        status: "Waiting".into(),
        created: ctx.now,
        ..task
    });
    db.save()?;
    drop(db);
    spawn_worker(inner.clone(), image_id.to_string());
    Ok(())
}

/// Starts the thread that works on `image_id`. When no thread can be started the image ends CreateFailed (its
/// task Failed) rather than Waiting for ever; when the emulator is stopping it stays as saved, for the next start
/// to resume.
pub(super) fn spawn_worker(inner: Arc<Inner>, image_id: String) {
    let background = inner.background().clone();
    if background.stopped() {
        return;
    }
    let worker = (inner.clone(), image_id.clone());
    if background.spawn("imgport-emulator-import", move || work(&worker.0, &worker.1)).is_err() && !background.stopped()
    {
        let now = inner.state.now();
        update(&inner, &image_id, true, |i, t| {
            let reason = "InternalError: the import or copy could not be started".to_string();
            i.status = "CreateFailed".into();
            i.failure = Some(reason.clone());
            t.status = "Failed".into();
            t.failure = Some(reason);
            t.finished = Some(now);
        });
    }
}

/// Forgets the oldest finished tasks (Finished, Failed, Deleted) beyond `keep`; tasks in flight are kept.
pub(super) fn prune_tasks(db: &mut Db, keep: usize) {
    let finished = db.tasks.iter().filter(|t| !IN_FLIGHT_TASK.contains(&t.status.as_str())).count();
    let mut drop = finished.saturating_sub(keep);
    if drop == 0 {
        return;
    }
    // Tasks are recorded in creation order: the first finished ones are the oldest.
    db.tasks.retain(|t| {
        if drop > 0 && !IN_FLIGHT_TASK.contains(&t.status.as_str()) {
            drop -= 1;
            return false;
        }
        true
    });
}

/// Applies a change to the image and its task (a copy has none: `f` gets a scratch task that is not kept), and
/// saves the state when `save` (status changes; Progress steps are not saved: a restart begins the work again from
/// Waiting anyway); false when the emulator is stopping (nothing changes), the image is gone (a cancelled import
/// or copy), an import's task was cancelled or the image is no longer in flight.
fn update(inner: &Inner, image_id: &str, save: bool, f: impl FnOnce(&mut Image, &mut Task)) -> bool {
    update_then(inner, image_id, save, f, |_, _| {})
}

/// [`update`], then `then` with the whole state and the updated image, under the same lock.
fn update_then(
    inner: &Inner,
    image_id: &str,
    save: bool,
    f: impl FnOnce(&mut Image, &mut Task),
    then: impl FnOnce(&mut Db, &Image),
) -> bool {
    let mut db = inner.db();
    if inner.background().stopped() {
        return false;
    }
    let Some((ii, ti)) = in_flight(&db, image_id) else { return false };
    let mut image = db.images[ii].clone();
    let mut task = ti.map_or_else(Task::default, |ti| db.tasks[ti].clone());
    f(&mut image, &mut task);
    then(&mut db, &image);
    db.images[ii] = image;
    if let Some(ti) = ti {
        db.tasks[ti] = task;
    }
    if save {
        prune_tasks(&mut db, inner.settings.task_history);
        let _ = db.save();
    }
    true
}

/// The image's index and its task's (a copy has none) while the import or copy is still in flight.
fn in_flight(db: &Db, image_id: &str) -> Option<(usize, Option<usize>)> {
    let ii = db.images.iter().position(|i| i.id == image_id)?;
    let ti = match db.images[ii].task_id.clone() {
        None if IN_FLIGHT.contains(&db.images[ii].status.as_str()) => None,
        None => return None,
        Some(task_id) => {
            let ti = db.tasks.iter().position(|t| t.id == task_id)?;
            let status = db.tasks[ti].status.as_str();
            // A task that finished early (a `task_finishes_early` fault) still has its image to finish.
            let early = status == "Finished" && IN_FLIGHT.contains(&db.images[ii].status.as_str());
            if !IN_FLIGHT_TASK.contains(&status) && !early {
                return None;
            }
            Some(ti)
        }
    };
    Some((ii, ti))
}

/// The background import or copy: Waiting, then Creating with Progress rising, then Available or CreateFailed.
fn work(inner: &Arc<Inner>, image_id: &str) {
    let (action, region, disks, copied_from, forced, stall, finish_early) = {
        let db = inner.db();
        let Some(i) = db.images.iter().find(|i| i.id == image_id) else { return };
        // Copies carry their source, imports their task; CreateImage has neither.
        let action = match (&i.copied_from, &i.task_id) {
            (Some(_), _) => "CopyImage",
            (None, Some(_)) => "ImportImage",
            (None, None) => "CreateImage",
        };
        let early = i.finish_early.filter(|_| action == "ImportImage");
        (action, i.region.clone(), i.disks.clone(), i.copied_from.clone(), i.forced_failure.clone(), i.stall, early)
    };
    let seconds = match action {
        "CopyImage" => inner.settings.copy_seconds.unwrap_or(inner.settings.import_seconds),
        _ => inner.settings.import_seconds,
    };
    let step = Duration::from_secs_f64((seconds.max(0.0) / 10.0).min(3600.0));
    // Copies into one region run one at a time, as the real service queues them.
    let queue = (action == "CopyImage").then(|| {
        let mut q = inner.copy_queue.lock().unwrap_or_else(|p| p.into_inner());
        q.entry(region.clone()).or_default().clone()
    });
    let _turn = queue.as_ref().map(|q| q.lock().unwrap_or_else(|p| p.into_inner()));
    let background = inner.background();
    if !background.sleep(step) {
        return;
    }
    if !update(inner, image_id, true, |i, t| {
        i.status = "Creating".into();
        i.progress = 5;
        t.status = "Processing".into();
        t.progress = 5;
    }) {
        return;
    }
    // A `stall` fault holds the work here, in Creating, until its time is up or its rule is cleared.
    if let Some(stall) = stall {
        loop {
            let held = match stall {
                Stall::Until(t) => inner.state.now() < t,
                Stall::WhileConfigured => inner.state.faults.stall_configured(action),
            };
            if !held {
                break;
            }
            // Cancelled (or deleted) meanwhile, or the emulator stopping: stop.
            if !background.sleep(Duration::from_millis(100)) || in_flight(&inner.db(), image_id).is_none() {
                return;
            }
        }
    }
    let mut failure = forced;
    if failure.is_none() && action == "ImportImage" {
        let detect = inner.db().images.iter().any(|i| i.id == image_id && i.detection_requested);
        let (f, detection, formats) = import::check_disks(&inner.state, &disks, detect);
        failure = f;
        // DescribeImages shows the format each disk was read as, declared or not.
        update(inner, image_id, false, |i, _| {
            for (d, f) in i.disks.iter_mut().zip(formats) {
                if !f.is_empty() {
                    d.format = f;
                }
            }
        });
        if detection.is_some() {
            update(inner, image_id, false, |i, _| i.detection = detection);
        }
    }
    if failure.is_none() && action == "CopyImage" {
        let source_ok = copied_from
            .as_ref()
            .is_some_and(|s| inner.db().images.iter().any(|i| &i.id == s && i.status == "Available"));
        if !source_ok {
            failure = Some("InvalidImageId.NotFound: the source image was deleted during the copy".into());
        }
    }
    for p in 1..=8u32 {
        if !background.sleep(step) {
            return;
        }
        if !update(inner, image_id, false, |i, t| {
            i.progress = p * 11;
            t.progress = p * 11;
        }) {
            return;
        }
    }
    if !background.sleep(step) {
        return;
    }
    // A `task_finishes_early` fault: the task reports Finished while the image stays Creating a while longer.
    if let (Some(seconds), None) = (finish_early, &failure) {
        let now = inner.state.now();
        if !update(inner, image_id, true, |_, t| {
            t.status = "Finished".into();
            t.progress = 100;
            t.finished = Some(now);
        }) {
            return;
        }
        if !background.sleep(Duration::from_secs(seconds)) {
            return;
        }
    }
    let now = inner.state.now();
    let finished = failure.is_none();
    update_then(
        inner,
        image_id,
        true,
        |i, t| {
            // A task that finished early keeps the time it reported Finished.
            if t.status != "Finished" {
                t.finished = Some(now);
            }
            match &failure {
                Some(reason) => {
                    i.status = "CreateFailed".into();
                    i.failure = Some(reason.clone());
                    t.status = "Failed".into();
                    t.failure = Some(reason.clone());
                }
                None => {
                    i.status = "Available".into();
                    i.progress = 100;
                    t.status = "Finished".into();
                    t.progress = 100;
                    super::snapshots::assign_ids(&mut i.disks);
                }
            }
        },
        |db, i| {
            // Each disk's snapshot becomes a resource (DescribeSnapshots) as the image becomes Available.
            if finished {
                super::snapshots::record(db, i, now);
            }
        },
    );
}

fn task_json(t: &Task) -> Value {
    json!({
        "TaskId": t.id, "TaskAction": t.action, "TaskStatus": t.status, "SupportCancel": if IN_FLIGHT_TASK.contains(&t.status.as_str()) { "true" } else { "false" },
        "CreationTime": iso(t.created), "FinishedTime": t.finished.map(iso).unwrap_or_default(), "ResourceId": t.image_id,
    })
}

/// `StartTime`/`EndTime` of DescribeTasks: UTC in the documented `yyyy-MM-ddTHH:mmZ`, seconds (`...:ssZ`) also
/// accepted; anything else is 400 `InvalidParameter.<name>` (the docs name no code for it).
fn task_time(params: &Params, name: &str) -> Result<Option<i64>, RpcError> {
    let Some(v) = params.get(name).filter(|v| !v.is_empty()) else { return Ok(None) };
    let full = match v.strip_suffix('Z') {
        Some(body) if body.matches(':').count() == 1 => format!("{body}:00Z"),
        _ => v.to_string(),
    };
    imgport_auth::time::parse_iso8601(&full)
        .map(Some)
        .ok_or_else(|| RpcError::invalid_parameter(name, format!("The specified {name} is not valid.")))
}

pub(super) fn describe_tasks(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let (page, size) = paging(params, 100)?;
    let ids = list_param(params, "TaskIds");
    if ids.as_ref().is_some_and(|ids| ids.len() > 100) {
        return Err(RpcError::invalid_parameter("TaskIds", "At most 100 task ids."));
    }
    let resources: Vec<String> = params.list("ResourceIds");
    if resources.len() > 100 {
        return Err(RpcError::invalid_parameter("ResourceIds", "At most 100 resource ids."));
    }
    let action = params.get("TaskAction").filter(|v| !v.is_empty());
    let status = params.get("TaskStatus").filter(|v| !v.is_empty());
    let start = task_time(params, "StartTime")?;
    let end = task_time(params, "EndTime")?;
    let db = inner.db();
    let found: Vec<&Task> = db
        .tasks
        .iter()
        .filter(|t| t.region == region)
        .filter(|t| ids.as_ref().is_none_or(|ids| ids.contains(&t.id)))
        .filter(|t| action.is_none_or(|a| a == t.action))
        .filter(|t| status.is_none_or(|s| s == t.status))
        .filter(|t| resources.is_empty() || resources.contains(&t.image_id))
        .filter(|t| start.is_none_or(|s| t.created >= s) && end.is_none_or(|e| t.created <= e))
        .collect();
    let total = found.len();
    let list: Vec<Value> =
        found.into_iter().rev().skip(((page - 1) * size) as usize).take(size as usize).map(task_json).collect();
    Ok(
        json!({"RegionId": region, "PageNumber": page, "PageSize": size, "TotalCount": total, "TaskSet": {"Task": list}}),
    )
}

pub(super) fn describe_task_attribute(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let id = params.require("TaskId")?;
    let db = inner.db();
    let t =
        db.tasks.iter().find(|t| t.id == id && t.region == region).ok_or_else(|| {
            err(400, "InvalidTaskId.NotFound", format!("The specified \"TaskId\" {id} is not found."))
        })?;
    let (code, msg) = match &t.failure {
        Some(f) => match f.split_once(": ") {
            Some((c, m)) => (c.to_string(), m.to_string()),
            None => ("ImportImageFailed".to_string(), f.clone()),
        },
        None => (String::new(), String::new()),
    };
    let mut v = task_json(t);
    if let Value::Object(m) = &mut v {
        m.insert("RegionId".into(), json!(region));
        m.insert("TaskProcess".into(), json!(format!("{}%", t.progress)));
        m.insert("TotalCount".into(), json!(1));
        m.insert("SuccessCount".into(), json!(u32::from(t.status == "Finished")));
        m.insert("FailedCount".into(), json!(u32::from(t.status == "Failed")));
        m.insert(
            "OperationProgressSet".into(),
            json!({"OperationProgress": [{
                "OperationStatus": match t.status.as_str() { "Finished" => "Success", "Failed" => "Failed", _ => "Processing" },
                "ErrorCode": code, "ErrorMsg": msg,
                "RelatedItemSet": {"RelatedItem": [{"Name": "ImageId", "Value": t.image_id}]},
            }]}),
        );
    }
    Ok(v)
}

pub(super) fn cancel_task(inner: &Inner, ctx: &RpcContext, params: &Params) -> RpcResult {
    let region = region(ctx, params, "RegionId")?;
    let id = params.require("TaskId")?;
    let mut db = inner.db();
    let t =
        db.tasks.iter_mut().find(|t| t.id == id && t.region == region).ok_or_else(|| {
            err(400, "InvalidTaskId.NotFound", format!("The specified \"TaskId\" {id} is not found."))
        })?;
    if !IN_FLIGHT_TASK.contains(&t.status.as_str()) {
        return Err(err(403, "InvalidTaskId.IncorrectTaskStatus", "The specified task status is invalid."));
    }
    t.status = "Deleted".into();
    t.finished = Some(ctx.now);
    let image = t.image_id.clone();
    // A cancelled import leaves no image behind.
    db.images.retain(|i| i.id != image);
    prune_tasks(&mut db, inner.settings.task_history);
    db.save()?;
    Ok(json!({}))
}
