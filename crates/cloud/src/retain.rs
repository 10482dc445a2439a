//! Retention: retiring the old images of an image family, safely and in two phases. `imgport images retain` and
//! the pipeline's `retain` step both call it.
//!
//! Three steps, so that what would happen can be shown before anything happens:
//! 1. [`survey`] reads what the cloud reports for one family in one region ([`Survey`]): the account's images of
//!    the family with their status, creation time and tags; which ones instances run; which ones are shared with
//!    other accounts; which ones are the source of a copy still under way.
//! 2. [`plan`] is a pure function of a survey, a [`Policy`] and the time: each image gets one [`Action`] and the
//!    reason for it ([`Why`]). Nothing is called.
//! 3. [`apply`] carries out a plan's deprecations and deletions and reports, per image, what was done or why it
//!    failed; a failure does not stop the others.
//!
//! **Which images count.** Only images imgport made are ever retired: those with the [`DIGEST_TAG`] tag. Others in
//! the family are reported as skipped. The images imgport made that are Available or Deprecated and whose
//! `CreationTime` reads are *ranked*, newest first: by `CreationTime`, and for equal times by image id (the greater
//! id counts as newer). The API's order is never used (ECS documents none).
//!
//! **The keep set** is the ranked images that are among the `keep` newest, or younger than `keep_younger_than`
//! (either rule keeps an image; at least one must be given), topped up with the next newest until it holds
//! `min_keep` (the floor) or every ranked image. Since a younger image is always a newer one, the keep set is the
//! head of the ranking, so a kept image is never older than a retired one; in particular the newest image, the one
//! DescribeImageFromFamily answers, is kept whenever the floor is at least 1. Deprecating it would roll the family
//! back to an older image, which is why nothing in the keep set is ever deprecated, nor deleted if it is
//! Deprecated already.
//!
//! **Retiring** a ranked image outside the keep set takes two runs:
//! - *deprecate*: an Available image whose age (now minus `CreationTime`) is at least `deprecate_after` (default 0:
//!   at once) is tagged [`DEPRECATED_AT_TAG`] with the time (RFC 3339, UTC) and then set Deprecated
//!   (ModifyImageAttribute `Status`): it can no longer start instances, and instances running it go on. ECS keeps no
//!   deprecation time, hence the tag; it is written first, so a deprecation whose second call failed is retried,
//!   and retagged, by the next run. A younger one *waits*.
//! - *delete*: a Deprecated image whose [`DEPRECATED_AT_TAG`] is at least `delete_after` old is deleted
//!   (DeleteImage, never with `Force`) and then its own snapshots (the `SnapshotId`s of its disks; one another image
//!   still uses is kept and said so). Before that it waits; with no `delete_after`, it stays Deprecated.
//!
//! **Skipped**, with the reason, and never retired: images instances run (`Usage` `instance`, or an instance's
//! `ImageId`), images shared with other accounts, the source of a copy in flight (a copy imgport made carries the
//! source's name and digest tag, so a copy still Waiting or Creating in a surveyed region marks the image of that
//! name and digest in the others; ECS tells no more), images still being imported or copied, failed ones, images
//! not made by imgport, Deprecated images without a readable [`DEPRECATED_AT_TAG`] (deprecated by someone else,
//! left to them), and images whose `CreationTime` does not read. Things change between the survey and the deletion: DeleteImage without `Force`
//! refuses an image in use, shared or being copied, so such an image fails to delete rather than disappearing.

use crate::ecs::ImageFilter;
use crate::model::{Image, ImageStatus};
use crate::{CloudError, Ecs};
use imgport_auth::time::{parse_iso8601, UtcTime};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The tag every image imgport creates carries: the content digest of the imported disk.
pub const DIGEST_TAG: &str = "imgport:digest";
/// The accounts imgport shared an image with (comma-separated): sharing that is the pipeline's own distribution,
/// which retention may undo when it deletes the image, unlike shares someone else added.
pub const SHARED_TAG: &str = "imgport:shared-with";
/// The tag with the version of imgport that created the image.
pub const VERSION_TAG: &str = "imgport:version";
/// The tag retention writes when it deprecates an image: when (RFC 3339, UTC), for the grace period before deletion.
pub const DEPRECATED_AT_TAG: &str = "imgport:deprecated-at";

/// What to keep and when to retire the rest. Durations are in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Policy {
    /// Keep the N newest.
    pub keep: Option<usize>,
    /// Keep those younger than this.
    pub keep_younger_than: Option<u64>,
    /// Never keep fewer than this many (the newest ones).
    pub min_keep: usize,
    /// An image outside the keep set is deprecated once it is this old (since its creation).
    pub deprecate_after: u64,
    /// A deprecated image is deleted this long after its deprecation; `None`: never.
    pub delete_after: Option<u64>,
}

/// A policy with no rule: it would say nothing about what to keep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a retention policy needs a rule: keep the N newest, or those younger than D days, or both")]
pub struct NoRule;

impl From<NoRule> for CloudError {
    fn from(e: NoRule) -> Self {
        CloudError::InvalidArgument(e.to_string())
    }
}

impl Policy {
    /// Refuses a policy with no rule.
    pub fn check(&self) -> Result<(), NoRule> {
        if self.keep.is_none() && self.keep_younger_than.is_none() {
            return Err(NoRule);
        }
        Ok(())
    }
}

/// What the cloud reports about one family in one region.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    pub region: String,
    pub family: String,
    /// The account's images of the family, in any status, in any order.
    pub images: Vec<Image>,
    /// Images instances run.
    pub in_use: BTreeSet<String>,
    /// Images shared with accounts imgport did not share them with (its tag [`SHARED_TAG`]), and how many.
    pub shared: BTreeMap<String, usize>,
    /// The accounts imgport shared each image with that still have it: unshared when it is retired.
    pub own_shares: BTreeMap<String, Vec<String>>,
    /// Images that are the source of a copy still under way.
    pub copying: BTreeSet<String>,
}

/// What happens to an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Keep,
    Deprecate,
    Delete,
    /// Nothing yet: retired later (too young to deprecate, or in its grace period).
    Wait,
    /// Never retired by this policy, for the reason given.
    Skip,
}

/// Why an image gets its action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Why {
    /// Among the `keep` newest.
    Newest,
    /// Younger than `keep_younger_than`.
    Young,
    /// Kept to hold the floor (`min_keep`).
    Floor,
    /// Outside the keep set and old enough.
    Old,
    /// Outside the keep set, deprecated once it is this old (`deprecate_after`), at `at`.
    TooYoung {
        at: String,
    },
    /// Deprecated at `deprecated_at`; deleted at `at` (`None`: no `delete_after`, kept deprecated).
    GracePeriod {
        deprecated_at: String,
        at: Option<String>,
    },
    /// Deprecated at `deprecated_at`, and the grace period is over.
    GraceOver {
        deprecated_at: String,
    },
    InUse,
    Shared {
        accounts: usize,
    },
    Copying,
    InFlight,
    /// CreateFailed, UnAvailable or a status this client does not know.
    NotReady,
    /// No `imgport:digest` tag.
    NotImgport,
    /// Deprecated, but not by retention (no readable `imgport:deprecated-at`).
    DeprecatedElsewhere,
    /// `CreationTime` does not read as a time.
    UnknownAge,
}

impl Why {
    /// The reason in words.
    pub fn describe(&self) -> String {
        match self {
            Why::Newest => "among the newest kept".into(),
            Why::Young => "younger than the age kept".into(),
            Why::Floor => "kept to hold the floor (--min-keep)".into(),
            Why::Old => "older than what is kept".into(),
            Why::TooYoung { at } => format!("out of the keep set; deprecated from {at} (--deprecate-after)"),
            Why::GracePeriod { deprecated_at, at: Some(at) } => {
                format!("deprecated at {deprecated_at}; deleted from {at} (--delete-after)")
            }
            Why::GracePeriod { deprecated_at, at: None } => {
                format!("deprecated at {deprecated_at}; never deleted (no --delete-after)")
            }
            Why::GraceOver { deprecated_at } => format!("deprecated at {deprecated_at}; the grace period is over"),
            Why::InUse => "in use by an instance".into(),
            Why::Shared { accounts } => format!("shared with {accounts} account(s)"),
            Why::Copying => "being copied to another region".into(),
            Why::InFlight => "still being imported or copied".into(),
            Why::NotReady => "not Available (failed)".into(),
            Why::NotImgport => format!("not made by imgport (no {DIGEST_TAG} tag)"),
            Why::DeprecatedElsewhere => format!("deprecated, but not by imgport (no {DEPRECATED_AT_TAG} tag)"),
            Why::UnknownAge => "its CreationTime does not read".into(),
        }
    }
}

/// One image in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub image_id: String,
    pub image_name: String,
    pub status: String,
    pub creation_time: String,
    /// 1 for the newest; `None` for images that are not ranked.
    pub rank: Option<usize>,
    pub action: Action,
    #[serde(flatten)]
    pub why: Why,
    /// The snapshots a deletion deletes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
    /// The accounts imgport shared it with, unshared before the deprecation (ECS deprecates no shared image) or
    /// the deletion.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unshare: Vec<String>,
}

/// What to do in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub region: String,
    pub family: String,
    /// When the plan was made (RFC 3339, UTC).
    pub now: String,
    pub policy: Policy,
    /// Ranked images first, newest first; then the others by image id.
    pub images: Vec<Planned>,
}

impl Plan {
    /// How many images get `action`.
    pub fn count(&self, action: Action) -> usize {
        self.images.iter().filter(|p| p.action == action).count()
    }
}

/// `CreationTime` as ECS writes it (`2026-12-04T02:44:09Z`, also with fractions or without seconds).
pub fn parse_time(s: &str) -> Option<i64> {
    parse_iso8601(s).or_else(|| {
        let minutes = s.strip_suffix('Z')?;
        (minutes.len() == 16).then(|| parse_iso8601(&format!("{minutes}:00Z")))?
    })
}

/// `secs` as RFC 3339, UTC.
pub fn format_time(secs: i64) -> String {
    UtcTime::from_unix(secs).iso8601()
}

/// The plan for `survey` under `policy` at `now` (UNIX seconds). Pure: the same input gives the same plan.
pub fn plan(survey: &Survey, policy: &Policy, now: i64) -> Result<Plan, NoRule> {
    policy.check()?;
    let mut ranked: Vec<(i64, &Image)> = Vec::new();
    let mut others: Vec<Planned> = Vec::new();
    let entry = |i: &Image, rank: Option<usize>, action: Action, why: Why| Planned {
        image_id: i.image_id.clone(),
        image_name: i.image_name.clone(),
        status: i.status.as_str().to_string(),
        creation_time: i.creation_time.clone(),
        rank,
        action,
        why,
        snapshots: Vec::new(),
        unshare: Vec::new(),
    };
    for i in &survey.images {
        let skip = |why: Why| entry(i, None, Action::Skip, why);
        if i.tag(DIGEST_TAG).is_none() {
            others.push(skip(Why::NotImgport));
        } else if i.status.in_flight() {
            others.push(skip(Why::InFlight));
        } else if !matches!(i.status, ImageStatus::Available | ImageStatus::Deprecated) {
            others.push(skip(Why::NotReady));
        } else {
            match parse_time(&i.creation_time) {
                Some(t) => ranked.push((t, i)),
                None => others.push(skip(Why::UnknownAge)),
            }
        }
    }
    // Newest first; equal times: the greater id first. Never the API's order.
    ranked.sort_by(|(ta, a), (tb, b)| tb.cmp(ta).then_with(|| b.image_id.cmp(&a.image_id)));
    others.sort_by(|a, b| a.image_id.cmp(&b.image_id));

    let by_count = policy.keep.unwrap_or(0);
    let young = match policy.keep_younger_than {
        Some(d) => ranked.iter().filter(|(t, _)| now.saturating_sub(*t) < d as i64).count(),
        None => 0,
    };
    let kept = by_count.max(young).max(policy.min_keep).min(ranked.len());

    let mut planned = Vec::with_capacity(survey.images.len());
    for (n, (created, i)) in ranked.iter().enumerate() {
        let rank = Some(n + 1);
        let at = |why: Why, action: Action| entry(i, rank, action, why);
        if n < kept {
            let why = if n < by_count {
                Why::Newest
            } else if n < young {
                Why::Young
            } else {
                Why::Floor
            };
            planned.push(at(why, Action::Keep));
            continue;
        }
        let id = &i.image_id;
        let guarded = if survey.in_use.contains(id) || i.usage == "instance" {
            Some(Why::InUse)
        } else if let Some(&accounts) = survey.shared.get(id).filter(|n| **n > 0) {
            Some(Why::Shared { accounts })
        } else if survey.copying.contains(id) {
            Some(Why::Copying)
        } else {
            None
        };
        if let Some(why) = guarded {
            planned.push(at(why, Action::Skip));
            continue;
        }
        if i.status == ImageStatus::Available {
            let from = created.saturating_add(policy.deprecate_after as i64);
            if now >= from {
                let mut p = at(Why::Old, Action::Deprecate);
                p.unshare = survey.own_shares.get(id).cloned().unwrap_or_default();
                planned.push(p);
            } else {
                planned.push(at(Why::TooYoung { at: format_time(from) }, Action::Wait));
            }
            continue;
        }
        // Deprecated: by retention (the tag), or by someone else.
        let Some(deprecated) = i.tag(DEPRECATED_AT_TAG).and_then(parse_time) else {
            planned.push(at(Why::DeprecatedElsewhere, Action::Skip));
            continue;
        };
        let deprecated_at = format_time(deprecated);
        match policy.delete_after.map(|d| deprecated.saturating_add(d as i64)) {
            Some(from) if now >= from => {
                let mut p = at(Why::GraceOver { deprecated_at }, Action::Delete);
                p.snapshots = snapshots_of(i);
                p.unshare = survey.own_shares.get(id).cloned().unwrap_or_default();
                planned.push(p);
            }
            from => {
                let why = Why::GracePeriod { deprecated_at, at: from.map(format_time) };
                planned.push(at(why, Action::Wait));
            }
        }
    }
    planned.extend(others);
    Ok(Plan {
        region: survey.region.clone(),
        family: survey.family.clone(),
        now: format_time(now),
        policy: policy.clone(),
        images: planned,
    })
}

/// The image's own snapshots, each once.
fn snapshots_of(i: &Image) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in &i.disk_device_mappings {
        if !d.snapshot_id.is_empty() && !out.contains(&d.snapshot_id) {
            out.push(d.snapshot_id.clone());
        }
    }
    out
}

/// Reads what [`plan`] needs about `family` in each of `regions` (through `ecs`, moved to each region): the
/// account's images of the family, the instances, the share permissions of the images imgport made, and the copies
/// in flight across the regions.
pub async fn survey(ecs: &Ecs, family: &str, regions: &[String]) -> Result<Vec<Survey>, CloudError> {
    let mut out = Vec::new();
    for region in regions {
        let ecs = ecs.in_region(region);
        let filter =
            ImageFilter { family: Some(family.to_string()), owner_alias: Some("self".into()), ..Default::default() };
        // The filter is the server's; the family is checked again here.
        let images: Vec<Image> = ecs.images(&filter).await?.into_iter().filter(|i| i.image_family == family).collect();
        let in_use: BTreeSet<String> = ecs
            .instances(&[])
            .await?
            .into_iter()
            .map(|i| i.image_id)
            .filter(|id| images.iter().any(|i| &i.image_id == id))
            .collect();
        let mut shared = BTreeMap::new();
        let ready = |i: &&Image| matches!(i.status, ImageStatus::Available | ImageStatus::Deprecated);
        let mut own_shares = BTreeMap::new();
        for i in images.iter().filter(|i| i.tag(DIGEST_TAG).is_some()).filter(ready) {
            let accounts = ecs.shared_with(&i.image_id).await?;
            let ours: BTreeSet<&str> = i.tag(SHARED_TAG).unwrap_or("").split(',').filter(|a| !a.is_empty()).collect();
            let (own, foreign): (Vec<String>, Vec<String>) =
                accounts.into_iter().partition(|a| ours.contains(a.as_str()));
            if !foreign.is_empty() {
                shared.insert(i.image_id.clone(), foreign.len());
            }
            if !own.is_empty() {
                own_shares.insert(i.image_id.clone(), own);
            }
        }
        out.push(Survey {
            region: region.clone(),
            family: family.to_string(),
            images,
            in_use,
            shared,
            own_shares,
            ..Default::default()
        });
    }
    // A copy imgport makes carries its source's name and digest tag: the images of that name and digest in the
    // other regions are the source of a copy still in flight.
    let copying: Vec<(String, String, String)> = out
        .iter()
        .flat_map(|s| {
            s.images
                .iter()
                .filter(|i| i.is_copied && i.status.in_flight())
                .filter_map(|i| Some((s.region.clone(), i.image_name.clone(), i.tag(DIGEST_TAG)?.to_string())))
        })
        .collect();
    for s in &mut out {
        let region = s.region.clone();
        let sources = s
            .images
            .iter()
            .filter(|i| !i.status.in_flight())
            .filter(|i| {
                copying.iter().any(|(r, name, digest)| {
                    *r != region && i.image_name == *name && i.tag(DIGEST_TAG) == Some(digest.as_str())
                })
            })
            .map(|i| i.image_id.clone())
            .collect::<Vec<_>>();
        s.copying.extend(sources);
    }
    Ok(out)
}

/// What [`apply`] did to one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Done {
    pub region: String,
    pub image_id: String,
    pub action: Action,
    /// Everything the action needed was done.
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a deprecation: the time written to the tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deprecated_at: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshots_deleted: Vec<String>,
    /// Snapshots left because another image still uses them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshots_kept: Vec<String>,
}

/// Carries out `plan`'s deprecations and deletions in its region (`ecs` is moved there), at `now` (UNIX seconds,
/// the time written to [`DEPRECATED_AT_TAG`]). One entry per image acted on; a failure is reported in its entry
/// and the others go on.
pub async fn apply(ecs: &Ecs, plan: &Plan, now: i64) -> Vec<Done> {
    let ecs = ecs.in_region(&plan.region);
    let mut out = Vec::new();
    for p in plan.images.iter().filter(|p| matches!(p.action, Action::Deprecate | Action::Delete)) {
        let mut done = Done {
            region: plan.region.clone(),
            image_id: p.image_id.clone(),
            action: p.action,
            ok: false,
            error: None,
            deprecated_at: None,
            snapshots_deleted: Vec::new(),
            snapshots_kept: Vec::new(),
        };
        match p.action {
            Action::Deprecate => {
                let at = format_time(now);
                let tag = [(DEPRECATED_AT_TAG.to_string(), at.clone())];
                // The time first: a deprecation whose second call fails is retried (and retagged) next run.
                // ECS deprecates no shared image: the shares imgport made go first (others' hold it back, see plan).
                let r = async {
                    if !p.unshare.is_empty() {
                        ecs.share(&p.image_id, &[], &p.unshare).await?;
                    }
                    ecs.tag("image", std::slice::from_ref(&p.image_id), &tag).await?;
                    ecs.set_deprecated(&p.image_id, true).await
                }
                .await;
                match r {
                    Ok(()) => (done.ok, done.deprecated_at) = (true, Some(at)),
                    Err(e) => done.error = Some(e.to_string()),
                }
            }
            // Shares imgport made since the deprecation go first: ECS deletes no shared image.
            _ => match async {
                if !p.unshare.is_empty() {
                    ecs.share(&p.image_id, &[], &p.unshare).await?;
                }
                ecs.delete_image(&p.image_id, false).await
            }
            .await
            {
                Err(e) => done.error = Some(e.to_string()),
                Ok(()) => {
                    let mut failed = Vec::new();
                    for s in &p.snapshots {
                        match ecs.delete_snapshot(s).await {
                            Ok(()) => done.snapshots_deleted.push(s.clone()),
                            // Another image was made from it: it stays, and that is no failure.
                            Err(e) if e.code() == Some("SnapshotCreatedImage") => done.snapshots_kept.push(s.clone()),
                            Err(e) => failed.push(format!("snapshot {s} kept: {e}")),
                        }
                    }
                    done.ok = failed.is_empty();
                    if !failed.is_empty() {
                        done.error = Some(format!("image deleted; {}", failed.join("; ")));
                    }
                }
            },
        }
        out.push(done);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DiskMapping, Tag};

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn image(id: &str, age_days: i64, status: ImageStatus) -> Image {
        Image {
            image_id: id.into(),
            image_name: format!("name-{id}"),
            status,
            image_family: "web".into(),
            creation_time: format_time(NOW - age_days * DAY),
            tags: vec![Tag { tag_key: DIGEST_TAG.into(), tag_value: format!("sha256:{id}") }],
            disk_device_mappings: vec![DiskMapping { snapshot_id: format!("s-{id}"), ..Default::default() }],
            ..Default::default()
        }
    }

    fn available(id: &str, age_days: i64) -> Image {
        image(id, age_days, ImageStatus::Available)
    }

    fn deprecated(id: &str, age_days: i64, deprecated_days_ago: i64) -> Image {
        let mut i = image(id, age_days, ImageStatus::Deprecated);
        i.tags.push(Tag { tag_key: DEPRECATED_AT_TAG.into(), tag_value: format_time(NOW - deprecated_days_ago * DAY) });
        i
    }

    fn survey(images: Vec<Image>) -> Survey {
        Survey { region: "cn-hangzhou".into(), family: "web".into(), images, ..Default::default() }
    }

    fn keep(n: usize) -> Policy {
        Policy { keep: Some(n), min_keep: 1, delete_after: Some(7 * DAY as u64), ..Default::default() }
    }

    /// (id, action) in plan order.
    fn actions(p: &Plan) -> Vec<(&str, Action)> {
        p.images.iter().map(|i| (i.image_id.as_str(), i.action)).collect()
    }

    fn why<'a>(p: &'a Plan, id: &str) -> &'a Why {
        &p.images.iter().find(|i| i.image_id == id).expect("planned").why
    }

    #[test]
    fn keeps_the_newest_whatever_order_the_api_answers_in() {
        let images = vec![available("m-b", 3), available("m-d", 1), available("m-a", 4), available("m-c", 2)];
        let mut reversed = images.clone();
        reversed.reverse();
        let p = plan(&survey(images), &keep(2), NOW).expect("plan");
        assert_eq!(
            actions(&p),
            [("m-d", Action::Keep), ("m-c", Action::Keep), ("m-b", Action::Deprecate), ("m-a", Action::Deprecate)]
        );
        assert_eq!(p.images.iter().map(|i| i.rank).collect::<Vec<_>>(), [Some(1), Some(2), Some(3), Some(4)]);
        assert_eq!(plan(&survey(reversed), &keep(2), NOW).expect("plan"), p, "the same plan from any order");
        assert_eq!((p.count(Action::Keep), p.count(Action::Deprecate)), (2, 2));
    }

    #[test]
    fn equal_creation_times_are_ranked_by_image_id() {
        let images = [available("m-1", 1), available("m-3", 1), available("m-2", 1)];
        for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2]] {
            let shuffled: Vec<Image> = order.iter().map(|&n| images[n].clone()).collect();
            let p = plan(&survey(shuffled), &keep(2), NOW).expect("plan");
            assert_eq!(actions(&p), [("m-3", Action::Keep), ("m-2", Action::Keep), ("m-1", Action::Deprecate)]);
        }
    }

    #[test]
    fn keeps_by_count_or_age_whichever_keeps_more() {
        let images = vec![available("m-1", 1), available("m-2", 5), available("m-3", 20), available("m-4", 40)];
        let by_age = Policy { keep: None, keep_younger_than: Some(10 * DAY as u64), ..keep(0) };
        let p = plan(&survey(images.clone()), &by_age, NOW).expect("plan");
        assert_eq!(p.count(Action::Keep), 2);
        assert_eq!((why(&p, "m-1"), why(&p, "m-2"), why(&p, "m-3")), (&Why::Young, &Why::Young, &Why::Old));
        // Both rules: the union (here the 3 newest, though only 2 are young).
        let both = Policy { keep: Some(3), ..by_age.clone() };
        let p = plan(&survey(images.clone()), &both, NOW).expect("plan");
        assert_eq!(actions(&p)[..3].iter().map(|a| a.1).collect::<Vec<_>>(), [Action::Keep; 3]);
        assert_eq!(actions(&p)[3], ("m-4", Action::Deprecate));
        // Age keeps more than the count.
        let young_wins = Policy { keep: Some(1), keep_younger_than: Some(30 * DAY as u64), ..by_age };
        let p = plan(&survey(images), &young_wins, NOW).expect("plan");
        assert_eq!((why(&p, "m-1"), why(&p, "m-3"), p.count(Action::Keep)), (&Why::Newest, &Why::Young, 3));
    }

    #[test]
    fn the_floor_holds_however_old_the_images_are() {
        let images = vec![available("m-1", 100), available("m-2", 200), available("m-3", 300)];
        let policy = Policy { keep: Some(0), keep_younger_than: Some(DAY as u64), min_keep: 2, ..keep(0) };
        let p = plan(&survey(images.clone()), &policy, NOW).expect("plan");
        assert_eq!(actions(&p), [("m-1", Action::Keep), ("m-2", Action::Keep), ("m-3", Action::Deprecate)]);
        assert_eq!(why(&p, "m-2"), &Why::Floor);
        // A floor above the count keeps them all.
        let p = plan(&survey(images), &Policy { min_keep: 5, ..policy }, NOW).expect("plan");
        assert_eq!(p.count(Action::Keep), 3);
        // No rule: refused.
        assert!(plan(&survey(vec![]), &Policy::default(), NOW).is_err());
    }

    #[test]
    fn each_guard_skips_with_its_reason() {
        let mut by_usage = available("m-usage", 9);
        by_usage.usage = "instance".into();
        let mut foreign = available("m-foreign", 9);
        foreign.tags.clear();
        let mut elsewhere = image("m-elsewhere", 9, ImageStatus::Deprecated);
        elsewhere.tags.push(Tag { tag_key: DEPRECATED_AT_TAG.into(), tag_value: "yesterday".into() });
        let mut unknown = available("m-unknown", 9);
        unknown.creation_time = "soon".into();
        let mut s = survey(vec![
            available("m-new", 0),
            available("m-used", 9),
            by_usage,
            available("m-shared", 9),
            available("m-copied", 9),
            image("m-creating", 9, ImageStatus::Creating),
            image("m-waiting", 9, ImageStatus::Waiting),
            image("m-failed", 9, ImageStatus::CreateFailed),
            foreign,
            elsewhere,
            unknown,
            available("m-old", 9),
        ]);
        s.in_use.insert("m-used".into());
        s.shared.insert("m-shared".into(), 2);
        s.copying.insert("m-copied".into());
        let p = plan(&s, &keep(1), NOW).expect("plan");
        let expect = [
            ("m-used", Why::InUse),
            ("m-usage", Why::InUse),
            ("m-shared", Why::Shared { accounts: 2 }),
            ("m-copied", Why::Copying),
            ("m-creating", Why::InFlight),
            ("m-waiting", Why::InFlight),
            ("m-failed", Why::NotReady),
            ("m-foreign", Why::NotImgport),
            ("m-elsewhere", Why::DeprecatedElsewhere),
            ("m-unknown", Why::UnknownAge),
        ];
        for (id, reason) in expect {
            let planned = p.images.iter().find(|i| i.image_id == id).expect("planned");
            assert_eq!((planned.action, &planned.why), (Action::Skip, &reason), "{id}");
        }
        assert_eq!(actions(&p)[0], ("m-new", Action::Keep));
        assert_eq!(p.count(Action::Deprecate), 1, "only m-old: {p:?}");
        assert_eq!(why(&p, "m-old"), &Why::Old);
    }

    #[test]
    fn a_kept_image_is_never_retired_even_when_guarded_or_deprecated() {
        let mut s = survey(vec![deprecated("m-2", 2, 1), available("m-1", 1), available("m-3", 3)]);
        s.shared.insert("m-1".into(), 1);
        let p = plan(&s, &Policy { delete_after: Some(0), ..keep(2) }, NOW).expect("plan");
        assert_eq!(actions(&p), [("m-1", Action::Keep), ("m-2", Action::Keep), ("m-3", Action::Deprecate)]);
    }

    #[test]
    fn deprecates_once_old_enough_then_deletes_after_the_grace_period() {
        let images = vec![
            available("m-1", 0),
            available("m-2", 1),
            available("m-3", 5),
            deprecated("m-4", 10, 3),
            deprecated("m-5", 20, 8),
        ];
        let policy = Policy { deprecate_after: 2 * DAY as u64, ..keep(1) };
        let p = plan(&survey(images.clone()), &policy, NOW).expect("plan");
        assert_eq!(
            actions(&p),
            [
                ("m-1", Action::Keep),
                ("m-2", Action::Wait),
                ("m-3", Action::Deprecate),
                ("m-4", Action::Wait),
                ("m-5", Action::Delete)
            ]
        );
        assert_eq!(why(&p, "m-2"), &Why::TooYoung { at: format_time(NOW + DAY) });
        let grace =
            Why::GracePeriod { deprecated_at: format_time(NOW - 3 * DAY), at: Some(format_time(NOW + 4 * DAY)) };
        assert_eq!(why(&p, "m-4"), &grace);
        assert_eq!(p.images[4].snapshots, ["s-m-5"]);
        assert!(p.images[4].unshare.is_empty());
        // Shares imgport made (own_shares) do not hold an image back; they are undone before the deletion.
        let mut shared = survey(images.clone());
        shared.own_shares.insert("m-3".into(), vec!["1234".into()]);
        shared.own_shares.insert("m-5".into(), vec!["1234".into(), "5678".into()]);
        let p = plan(&shared, &policy, NOW).expect("plan");
        assert_eq!((why(&p, "m-3"), p.images[2].action), (&Why::Old, Action::Deprecate));
        assert_eq!(p.images[2].unshare, ["1234"]);
        assert_eq!(
            (p.images[4].action, p.images[4].unshare.as_slice()),
            (Action::Delete, &["1234".to_string(), "5678".to_string()][..])
        );
        // No delete_after: deprecated images stay.
        let p = plan(&survey(images), &Policy { delete_after: None, ..policy }, NOW).expect("plan");
        assert_eq!(p.count(Action::Delete), 0);
        assert_eq!(why(&p, "m-5"), &Why::GracePeriod { deprecated_at: format_time(NOW - 8 * DAY), at: None });
    }

    #[test]
    fn a_deprecated_image_in_use_or_shared_is_not_deleted() {
        let mut s = survey(vec![available("m-1", 0), deprecated("m-2", 10, 10), deprecated("m-3", 10, 10)]);
        s.in_use.insert("m-2".into());
        s.shared.insert("m-3".into(), 1);
        let p = plan(&s, &keep(1), NOW).expect("plan");
        assert_eq!((why(&p, "m-2"), why(&p, "m-3")), (&Why::InUse, &Why::Shared { accounts: 1 }));
        assert_eq!(p.count(Action::Delete), 0);
    }

    #[test]
    fn the_plan_reads_as_json() {
        let p = plan(&survey(vec![available("m-1", 0), deprecated("m-2", 9, 9)]), &keep(1), NOW).expect("plan");
        let v = serde_json::to_value(&p).expect("json");
        assert_eq!(v["images"][0]["action"], "keep");
        assert_eq!(v["images"][0]["reason"], "newest");
        assert_eq!(v["images"][1]["action"], "delete");
        assert_eq!(v["images"][1]["reason"], "grace_over");
        assert_eq!(v["images"][1]["snapshots"][0], "s-m-2");
        assert_eq!(v["policy"]["keep"], 1);
    }

    #[test]
    fn reads_creation_times_as_ecs_writes_them() {
        assert_eq!(parse_time("2027-01-15T08:00:00Z"), Some(NOW));
        assert_eq!(parse_time("2027-01-15T08:00Z"), parse_time("2027-01-15T08:00:00Z"));
        assert_eq!(parse_time("2027-01-15T08:00:00.500Z"), parse_time("2027-01-15T08:00:00Z"));
        assert_eq!(parse_time("2027-01-15"), None);
        assert_eq!(format_time(parse_time("2026-12-04T02:44:09Z").expect("time")), "2026-12-04T02:44:09Z");
    }
}
