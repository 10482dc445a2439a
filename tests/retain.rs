//! `imgport images retain` against the local cloud: a family of imported images with chosen creation times (the
//! emulator's `creation_time` fault), one shared, one run by an instance, one not made by imgport and a copy in a
//! second region; the dry run's plans, then a run that deprecates, a run whose deletion fails (exit 8), then one
//! after the grace period that deletes the image with its snapshot.
//! The shared and in-use images, and the foreign one, are never touched.

use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

const FAST: &str = "[cloud]\nimport_seconds = 0.3\n";
const DAY: i64 = 86_400;

/// `imgport ARGS --cloud local` with the local cloud in `home` and `config` as its settings: (exit code, stdout,
/// stderr).
fn imgport_local(home: &Path, config: &str, args: &[&str]) -> (i32, String, String) {
    let cfg = home.join("local-cloud.toml");
    std::fs::write(&cfg, config).expect("config");
    let out = imgport()
        .env("XDG_DATA_HOME", home.join("data"))
        .env("IMGPORT_LOCAL_CLOUD_CONFIG", &cfg)
        .env("HOME", home)
        .args(args)
        .args(["--cloud", "local"])
        .output()
        .expect("imgport runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The JSON document a successful command prints; `images retain`'s is checked against its schema in docs/schemas.
fn json_of(home: &Path, args: &[&str]) -> Value {
    let (code, out, err) = imgport_local(home, FAST, args);
    assert_eq!(code, 0, "{args:?}: {err}");
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"));
    if args.contains(&"retain") {
        check_schema("retain-result.schema.json", std::slice::from_ref(&doc));
    }
    doc
}

/// Imports the guest as `name` into family `web`, created at `created` (UNIX seconds): its image id.
fn import_at(home: &Path, name: &str, created: i64) -> String {
    let image = guest_images().join("mbr-bios-ext4.raw");
    let config =
        format!("{FAST}[[faults.rules]]\noperation = \"ImportImage\"\nkind = \"creation_time\"\nat = {created}\n");
    let (code, out, err) = imgport_local(
        home,
        &config,
        &["import", &image.to_string_lossy(), "--name", name, "--family", "web", "--json"],
    );
    assert_eq!(code, 0, "{name}: {err}");
    let doc: Value = serde_json::from_str(&out).expect("JSON");
    doc["image_id"].as_str().expect("image id").to_string()
}

/// The family's images by id: (status, tags as a JSON object).
fn family(home: &Path) -> Vec<(String, String, Value)> {
    let list = json_of(home, &["images", "list", "--family", "web", "--json"]);
    list.as_array()
        .expect("array")
        .iter()
        .map(|i| {
            let tags: serde_json::Map<String, Value> = i["Tags"]["Tag"]
                .as_array()
                .or(i["Tags"].as_array())
                .into_iter()
                .flatten()
                .map(|t| (t["TagKey"].as_str().unwrap_or("").to_string(), t["TagValue"].clone()))
                .collect();
            (
                i["ImageId"].as_str().unwrap_or("").to_string(),
                i["Status"].as_str().unwrap_or("").to_string(),
                tags.into(),
            )
        })
        .collect()
}

fn planned<'a>(plan: &'a Value, id: &str) -> &'a Value {
    plan["images"]
        .as_array()
        .expect("images")
        .iter()
        .find(|i| i["image_id"] == id)
        .unwrap_or_else(|| panic!("{id} in {plan}"))
}

#[test]
fn retain_keeps_the_newest_and_retires_the_rest_in_two_phases() {
    let home = tempdir();
    let home = home.path();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
    // Oldest first; two created in the same second, so only the image id orders them.
    let used = import_at(home, "web-used", now - 10 * DAY);
    let shared = import_at(home, "web-shared", now - 8 * DAY);
    let tie_a = import_at(home, "web-tie-a", now - 4 * DAY);
    let tie_b = import_at(home, "web-tie-b", now - 4 * DAY);
    let newest = import_at(home, "web-newest", now - DAY);
    let (tie_kept, tie_retired) = if tie_a > tie_b { (tie_a, tie_b) } else { (tie_b, tie_a) };

    // One shared with another account, one run by an instance, one in the family not made by imgport.
    let (code, _, err) = imgport_local(home, FAST, &["images", "share", &shared, "--account", "123456789012"]);
    assert_eq!(code, 0, "{err}");
    let instances = json_of(home, &["instance", "list", "--json"]);
    let stopped = instances.as_array().expect("instances").iter().find(|i| i["Status"] == "Stopped").expect("one");
    let instance = stopped["InstanceId"].as_str().expect("id");
    let (code, _, err) = imgport_local(home, FAST, &["instance", "replace-disk", instance, "--image", &used]);
    assert_eq!(code, 0, "{err}");
    let created = json_of(
        home,
        &["images", "create", "--from-instance", instance, "--name", "by-hand", "--family", "web", "--json"],
    );
    let foreign = created["ImageId"].as_str().expect("id").to_string();

    // A copy of the newest in another region carries its imgport tags, so retention counts it there.
    let copies = json_of(home, &["images", "copy", &newest, "--to", "cn-beijing", "--json"]);
    let copy = copies[0]["image_id"].as_str().expect("copy id").to_string();

    // The dry run over both regions: the plans, and nothing changed.
    let dry = json_of(
        home,
        &[
            "images",
            "retain",
            "--family",
            "web",
            "--keep",
            "2",
            "--region",
            "cn-hangzhou",
            "--region",
            "cn-beijing",
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(dry["dry_run"], true);
    let there = &dry["plans"][1];
    assert_eq!(there["region"], "cn-beijing");
    let p = planned(there, &copy);
    assert_eq!(
        (p["action"].as_str(), p["reason"].as_str(), p["rank"].as_u64()),
        (Some("keep"), Some("newest"), Some(1))
    );
    assert_eq!(dry["done"].as_array().map(Vec::len), Some(0), "{dry}");
    let plan = &dry["plans"][0];
    assert_eq!(plan["region"], "cn-hangzhou");
    let expect = [
        (&newest, "keep", "newest", Some(1)),
        (&tie_kept, "keep", "newest", Some(2)),
        (&tie_retired, "deprecate", "old", Some(3)),
        (&shared, "skip", "shared", Some(4)),
        (&used, "skip", "in_use", Some(5)),
        (&foreign, "skip", "not_imgport", None),
    ];
    for (id, action, reason, rank) in expect {
        let p = planned(plan, id);
        assert_eq!(
            (p["action"].as_str(), p["reason"].as_str(), p["rank"].as_u64()),
            (Some(action), Some(reason), rank.map(|r| r as u64)),
            "{id}: {p}"
        );
    }
    assert_eq!(plan["images"].as_array().map(Vec::len), Some(6), "{plan}");
    assert!(family(home).iter().all(|(_, status, _)| status == "Available"), "the dry run changed nothing");

    // A real run deprecates, recording when; the deletion waits for the grace period (7 days by default).
    let (code, out, err) = imgport_local(home, FAST, &["images", "retain", "--family", "web", "--keep", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("deprecated {tie_retired} in cn-hangzhou at ")), "{out}");
    let after = family(home);
    for (id, status, tags) in &after {
        let want = if *id == tie_retired { "Deprecated" } else { "Available" };
        assert_eq!(status, want, "{id}: {after:?}");
        assert_eq!(tags.get("imgport:deprecated-at").is_some(), *id == tie_retired, "{id}: {tags}");
    }
    let waiting = json_of(home, &["images", "retain", "--family", "web", "--keep", "2", "--dry-run", "--json"]);
    let p = planned(&waiting["plans"][0], &tie_retired);
    assert_eq!((p["action"].as_str(), p["reason"].as_str()), (Some("wait"), Some("grace_period")), "{p}");

    // DeleteImage failing (past the client's retries): exit 8, the failure in the report, the image still there.
    let failing = format!("{FAST}[[faults.rules]]\noperation = \"DeleteImage\"\nkind = \"internal_error\"\n");
    let (code, out, err) = imgport_local(
        home,
        &failing,
        &["images", "retain", "--family", "web", "--keep", "2", "--delete-after", "0s", "--json"],
    );
    assert_eq!(code, 8, "{out}{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON");
    check_schema("retain-result.schema.json", std::slice::from_ref(&report));
    assert_eq!((report["failed"].as_u64(), report["done"][0]["ok"].as_bool()), (Some(1), Some(false)), "{report}");
    assert!(report["done"][0]["error"].as_str().is_some_and(|e| e.contains("InternalError")), "{report}");
    assert!(err.contains("1 of 1 retirements failed"), "{err}");
    assert!(family(home).iter().any(|(id, status, _)| *id == tie_retired && status == "Deprecated"));

    // After the grace period (here none): deleted with its snapshot; the rest stays as it was.
    let snapshot = json_of(home, &["images", "show", &tie_retired, "--json"])["DiskDeviceMappings"][0]["SnapshotId"]
        .as_str()
        .expect("snapshot")
        .to_string();
    let run = json_of(home, &["images", "retain", "--family", "web", "--keep", "2", "--delete-after", "0s", "--json"]);
    assert_eq!(run["failed"], 0, "{run}");
    let done = run["done"].as_array().expect("done");
    assert_eq!(done.len(), 1, "{run}");
    assert_eq!(
        (done[0]["image_id"].as_str(), done[0]["action"].as_str()),
        (Some(tie_retired.as_str()), Some("delete"))
    );
    assert_eq!(done[0]["snapshots_deleted"], serde_json::json!([snapshot]), "{run}");
    let left: Vec<String> = family(home).into_iter().map(|(id, status, _)| format!("{id} {status}")).collect();
    let mut want: Vec<String> =
        [&used, &shared, &tie_kept, &newest, &foreign].iter().map(|id| format!("{id} Available")).collect();
    let mut left_sorted = left.clone();
    left_sorted.sort();
    want.sort();
    assert_eq!(left_sorted, want);
    let by_snapshot = json_of(home, &["images", "list", "--snapshot-id", &snapshot, "--json"]);
    assert_eq!(by_snapshot.as_array().map(Vec::len), Some(0), "{by_snapshot}");

    // A third run has nothing to do.
    let again =
        json_of(home, &["images", "retain", "--family", "web", "--keep", "2", "--delete-after", "0s", "--json"]);
    assert_eq!(again["done"].as_array().map(Vec::len), Some(0), "{again}");
}

/// Bad input is refused before anything is called: no rule, a bad duration.
#[test]
fn retain_refuses_a_policy_without_a_rule() {
    let home = tempdir();
    let (code, _, err) = imgport_local(home.path(), FAST, &["images", "retain", "--family", "web"]);
    assert_eq!(code, 2, "clap refuses a missing --keep/--keep-days: {err}");
    let (code, _, err) = imgport_local(
        home.path(),
        FAST,
        &["images", "retain", "--family", "web", "--keep", "1", "--delete-after", "soon"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("soon"), "{err}");
}
