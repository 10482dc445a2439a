//! Waiting until an image is ready: polls the image (every status, so an image in flight or failed is never taken
//! for a missing one) and, for an import, its task, until the image is Available, fails, vanishes or the time runs
//! out. A task can report Finished before its image is Available: only the image's status ends a wait.
//!
//! The poll interval starts short and grows by half each poll up to a bound, so short imports are seen quickly and
//! hour-long ones cost few calls. A failed poll that may succeed later (no answer, throttling, a server error that
//! outlasted the client's own retries) is reported and polled again, up to a bound of failures in a row. Progress
//! is reported as [`WaitEvent`]s; the library never prints.

use crate::advice;
use crate::ecs::Ecs;
use crate::model::{Image, ImageStatus, TaskStatus};
use crate::CloudError;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long and how often to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitOptions {
    pub timeout: Duration,
    /// The first interval between polls.
    pub first_poll: Duration,
    /// The longest interval between polls.
    pub max_poll: Duration,
    /// Polls in a row that may find no image before the wait ends as cancelled (a new image can take a moment
    /// to show in DescribeImages).
    pub missing_polls: u32,
    /// Failed polls in a row before the wait gives up with the last error.
    pub failed_polls: u32,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            timeout: Duration::from_secs(3 * 3600),
            first_poll: Duration::from_secs(2),
            max_poll: Duration::from_secs(30),
            missing_polls: 5,
            failed_polls: 10,
        }
    }
}

/// What a wait reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WaitEvent {
    /// The image's status or progress changed.
    Progress { region: String, image_id: String, status: String, progress: u64, elapsed_seconds: u64 },
    /// The task reports Finished but the image is not Available yet: the wait goes on.
    TaskFinishedEarly { region: String, image_id: String, task_id: String },
    /// A poll failed; the wait polls again.
    PollFailed { region: String, image_id: String, message: String, failures_in_a_row: u32 },
}

/// Where a wait's events go.
pub type WaitEventFn = Arc<dyn Fn(&WaitEvent) + Send + Sync>;

/// Waits until image `image_id` in `ecs`'s region is Available (or Deprecated) and answers it. `task_id` is the
/// import's task, whose failure and error code end the wait at once; copies and created images have none.
pub async fn wait_image(
    ecs: &Ecs,
    image_id: &str,
    task_id: Option<&str>,
    opts: &WaitOptions,
    events: &WaitEventFn,
) -> Result<Image, CloudError> {
    let region = ecs.region().to_string();
    if image_id.is_empty() {
        return Err(CloudError::InvalidArgument("no image id to wait for".into()));
    }
    let start = Instant::now();
    let mut interval = opts.first_poll;
    let (mut missing, mut failures) = (0u32, 0u32);
    let mut last: Option<(String, u64)> = None;
    let mut told_early = false;
    loop {
        match poll(ecs, image_id, task_id).await {
            Ok(Poll::Image(image, task)) => {
                (missing, failures) = (0, 0);
                let now = (image.status.as_str().to_string(), image.progress);
                if last.as_ref() != Some(&now) {
                    events(&WaitEvent::Progress {
                        region: region.clone(),
                        image_id: image_id.to_string(),
                        status: now.0.clone(),
                        progress: now.1,
                        elapsed_seconds: start.elapsed().as_secs(),
                    });
                    last = Some(now);
                }
                match (&image.status, task) {
                    (ImageStatus::Available | ImageStatus::Deprecated, _) => return Ok(*image),
                    (ImageStatus::CreateFailed | ImageStatus::UnAvailable, task) => {
                        return Err(failed(ecs, &region, image_id, task_id, task).await)
                    }
                    (_, Some(t)) if t.task_status == TaskStatus::Failed => {
                        return Err(failed(ecs, &region, image_id, task_id, Some(t)).await)
                    }
                    (_, Some(t)) if t.task_status == TaskStatus::Deleted => {
                        return Err(cancelled(&region, image_id, "its task was cancelled"))
                    }
                    (_, Some(t)) if t.task_status == TaskStatus::Finished && !told_early => {
                        told_early = true;
                        events(&WaitEvent::TaskFinishedEarly {
                            region: region.clone(),
                            image_id: image_id.to_string(),
                            task_id: t.task_id,
                        });
                    }
                    _ => {}
                }
            }
            Ok(Poll::Missing(task)) => {
                failures = 0;
                missing += 1;
                if task.is_some_and(|t| t.task_status == TaskStatus::Deleted) {
                    return Err(cancelled(&region, image_id, "its task was cancelled"));
                }
                if missing > opts.missing_polls {
                    return Err(cancelled(&region, image_id, "the image no longer exists (deleted or cancelled)"));
                }
            }
            Err(e) if e.is_transient() && failures < opts.failed_polls => {
                failures += 1;
                events(&WaitEvent::PollFailed {
                    region: region.clone(),
                    image_id: image_id.to_string(),
                    message: e.to_string(),
                    failures_in_a_row: failures,
                });
            }
            Err(e) => return Err(e),
        }
        let elapsed = start.elapsed();
        if elapsed >= opts.timeout {
            let (status, progress) = last.unwrap_or_else(|| ("unknown".into(), 0));
            return Err(CloudError::TimedOut {
                region,
                image_id: image_id.to_string(),
                status,
                progress,
                waited_seconds: elapsed.as_secs(),
            });
        }
        tokio::time::sleep(interval.min(opts.timeout - elapsed)).await;
        interval = (interval + interval / 2).min(opts.max_poll.max(opts.first_poll));
    }
}

enum Poll {
    Image(Box<Image>, Option<crate::model::Task>),
    Missing(Option<crate::model::Task>),
}

/// The image, and its task when there is one. The image decides: a task call that fails (the task API busy or
/// broken while the image is fine) leaves the task out instead of failing the poll.
async fn poll(ecs: &Ecs, image_id: &str, task_id: Option<&str>) -> Result<Poll, CloudError> {
    let image = ecs.image(image_id).await?;
    let task = match (task_id, &image) {
        (Some(_), Some(i)) if !i.status.in_flight() => None,
        (Some(t), _) => ecs.task(t).await.ok(),
        (None, _) => None,
    };
    Ok(match image {
        Some(i) => Poll::Image(Box::new(i), task),
        None => Poll::Missing(task),
    })
}

fn cancelled(region: &str, image_id: &str, reason: &str) -> CloudError {
    CloudError::Cancelled { region: region.to_string(), image_id: image_id.to_string(), reason: reason.to_string() }
}

/// The failure of an image, with the task's error code and message when there is a task to ask.
async fn failed(
    ecs: &Ecs,
    region: &str,
    image_id: &str,
    task_id: Option<&str>,
    task: Option<crate::model::Task>,
) -> CloudError {
    let task = match (task, task_id) {
        (Some(t), _) => Some(t),
        (None, Some(id)) => ecs.task(id).await.ok(),
        (None, None) => None,
    };
    let (code, message) = task.map(|t| (t.error_code, t.error_message)).unwrap_or_default();
    CloudError::CreateFailed {
        region: region.to_string(),
        image_id: image_id.to_string(),
        advice: advice::for_code(&code),
        code,
        message,
    }
}
