//! `replace`: an image of the name with other content gives way to the new one, but only once the new one is
//! Available. ECS image names are unique per region, so the new image is imported (or copied) under a temporary
//! name derived from the name and the content digest ([`temporary_name`]), waited for, and then swapped in
//! ([`swap`]): the old image is deleted with its snapshots when imgport made it (it carries the `imgport:digest`
//! tag), or else (or when ECS refuses, as for an image instances run) renamed aside to `NAME-replaced-TIME` and
//! deprecated; then the new image is renamed to the name. A failed or interrupted import leaves the old image as
//! it was. Each step can be found again by a rerun: an image of the temporary name with the same content (in any
//! status) is taken up instead of importing again, and the swap finishes what a crash left.

use super::DIGEST_TAG;
use imgport_cloud::ecs::ImageFilter;
use imgport_cloud::model::{Image, ImageStatus};
use imgport_cloud::{CloudError, Ecs, ErrorKind};
use serde::Serialize;

/// ECS's longest image name.
const MAX_NAME: usize = 128;

/// What became of the image a replacement took the name from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replaced {
    pub image_id: String,
    pub action: ReplacedAction,
    /// Its name now, when renamed aside.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renamed_to: Option<String>,
    /// What else happened or did not (snapshots kept, why it was not deleted, not deprecated).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplacedAction {
    /// imgport made it: deleted, with its snapshots.
    Deleted,
    /// Not imgport's, or ECS refused to delete it: renamed aside and deprecated.
    Renamed,
}

/// `name` with `suffix`, the name cut so the whole stays within ECS's 128 characters.
fn suffixed(name: &str, suffix: &str) -> String {
    let keep = MAX_NAME.saturating_sub(suffix.chars().count());
    let mut out: String = name.chars().take(keep).collect();
    out.push_str(suffix);
    out
}

/// The name a replacement is imported or copied under until it is Available: `NAME-new-` and the digest's first 12
/// hex digits (a valid image name whenever `name` is one).
pub fn temporary_name(name: &str, digest: &str) -> String {
    // After an algorithm prefix (`sha256:`), if any.
    let bare = digest.rsplit(':').next().unwrap_or(digest);
    let hex: String = bare.chars().filter(char::is_ascii_hexdigit).take(12).collect();
    suffixed(name, &format!("-new-{hex}"))
}

/// The name an old image is renamed aside to: `NAME-replaced-YYYYMMDDhhmmss` (UTC).
fn aside_name(name: &str, unix: u64) -> String {
    let t = imgport_auth::time::UtcTime::from_unix(i64::try_from(unix).unwrap_or(i64::MAX));
    let stamp = format!("{}{:02}{:02}{:02}", t.date_basic(), t.hour, t.minute, t.second);
    suffixed(name, &format!("-replaced-{stamp}"))
}

/// The own image named exactly `name` in `ecs`'s region, in any status.
pub(super) async fn named(ecs: &Ecs, name: &str) -> Result<Option<Image>, CloudError> {
    let filter = ImageFilter { image_name: Some(name.into()), owner_alias: Some("self".into()), ..Default::default() };
    Ok(ecs.images(&filter).await?.into_iter().find(|i| i.image_name == name))
}

/// Puts `new` (Available, under its temporary name) in the place of `old` under `name`: `old` (when it still
/// holds the name) is deleted or renamed aside, then `new` is renamed to `name`. What became of `old`, if there
/// was one to move.
pub(super) async fn swap(
    ecs: &Ecs,
    name: &str,
    old: Option<&Image>,
    new: &Image,
) -> Result<Option<Replaced>, CloudError> {
    let mut replaced = None;
    if let Some(old) = old {
        // Read again: a rerun may find it gone or moved already.
        if let Some(old) = ecs.image(&old.image_id).await?.filter(|o| o.image_name == name) {
            replaced = Some(set_aside(ecs, name, &old).await?);
        }
    }
    if new.image_name != name {
        ecs.rename_image(&new.image_id, name).await?;
    }
    Ok(replaced)
}

/// Deletes `old` with its snapshots when imgport made it; otherwise, or when ECS refuses, renames it aside and
/// deprecates it.
async fn set_aside(ecs: &Ecs, name: &str, old: &Image) -> Result<Replaced, CloudError> {
    let mut notes = Vec::new();
    if old.tag(DIGEST_TAG).is_some() {
        match ecs.delete_image(&old.image_id, false).await {
            Ok(()) => {
                for s in old.disk_device_mappings.iter().map(|d| &d.snapshot_id).filter(|s| !s.is_empty()) {
                    if let Err(e) = ecs.delete_snapshot(s).await {
                        notes.push(format!("snapshot {s} kept: {e}"));
                    }
                }
                let action = ReplacedAction::Deleted;
                return Ok(Replaced { image_id: old.image_id.clone(), action, renamed_to: None, notes });
            }
            // Refused (instances run it, it is shared): it stays, under another name.
            Err(e) if e.kind() == ErrorKind::Service => notes.push(format!("not deleted: {e}")),
            Err(e) => return Err(e),
        }
    } else {
        notes.push("not made by imgport: kept".into());
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let aside = aside_name(name, now);
    ecs.rename_image(&old.image_id, &aside).await?;
    if old.status == ImageStatus::Available {
        if let Err(e) = ecs.set_deprecated(&old.image_id, true).await {
            notes.push(format!("not deprecated: {e}"));
        }
    }
    Ok(Replaced { image_id: old.image_id.clone(), action: ReplacedAction::Renamed, renamed_to: Some(aside), notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_valid() {
        let d = "sha256:0123456789abcdef0123";
        assert_eq!(temporary_name("web", d), "web-new-0123456789ab");
        let long = "w".repeat(128);
        assert_eq!(temporary_name(&long, d).chars().count(), 128);
        assert!(temporary_name(&long, d).ends_with("-new-0123456789ab"));
        // 2026-12-04 02:21:16 UTC.
        assert_eq!(aside_name("web", 1_796_350_876), "web-replaced-20261204022116");
        assert_eq!(aside_name("web", 951_782_400), "web-replaced-20000229000000");
        assert_eq!(aside_name(&long, 0).chars().count(), 128);
    }
}
