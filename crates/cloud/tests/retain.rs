//! Retention against the emulator: what [`survey`] reads (a copy in flight marks its source in the other region,
//! shares and instances are seen), the plan it leads to, and [`apply`] deprecating, then deleting with the
//! snapshot, and reporting a refusal without stopping.

use crate::ecs::{ecs, quick, recorder, request, rpc, start, upload_disk, REGION};
use imgport_auth::endpoints::Service;
use imgport_auth::rpc::Style;
use imgport_cloud::ecs::CopyRequest;
use imgport_cloud::model::ImageStatus;
use imgport_cloud::retain::{apply, plan, survey, Action, Policy, Why, DEPRECATED_AT_TAG, DIGEST_TAG};
use imgport_cloud::wait::wait_image;
use imgport_emulator::faults::{Fault, FaultConfig, FaultRule};
use imgport_emulator::CloudSettings;
use std::time::{SystemTime, UNIX_EPOCH};

const OTHER: &str = "cn-shanghai";
const DAY: i64 = 86_400;

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// How many snapshots DescribeSnapshots finds with the id `id`.
async fn snapshots(emu: &imgport_emulator::RunningEmulator, id: &str) -> u64 {
    let rpc = rpc(emu, Service::Ecs, imgport_cloud::ecs::VERSION, Style::Acs3);
    let ids = format!("[\"{id}\"]");
    let found: serde_json::Value =
        rpc.call("DescribeSnapshots", &[("RegionId", REGION), ("SnapshotIds", &ids)]).await.expect("snapshots");
    found["TotalCount"].as_u64().expect("TotalCount")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survey_plan_and_apply_against_the_emulator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start(dir.path(), CloudSettings { import_seconds: 0.3, seed_import_role: true, ..Default::default() });
    upload_disk(&emu).await;
    let ecs = ecs(&emu);
    let (events, _) = recorder();
    let started = now();
    let mut ids = std::collections::BTreeMap::new();
    for (name, age) in [("r-copied", 5), ("r-shared", 4), ("r-used", 3), ("r-old", 2), ("r-new", 1)] {
        let clock = Fault::CreationTime { at: Some(started - age * DAY), offset_seconds: 0 };
        let rule = FaultRule { operation: "ImportImage".into(), fault: clock, rate: 1.0, after: 0, times: None };
        emu.set_faults(FaultConfig { rules: vec![rule], ..Default::default() });
        let mut req = request(name);
        req.tags = vec![(DIGEST_TAG.into(), format!("digest-of-{name}"))];
        let imported = ecs.import_image(&req).await.expect("import");
        let image = wait_image(&ecs, &imported.image_id, Some(&imported.task_id), &quick(), &events).await.expect("ok");
        ecs.set_family(&image.image_id, "web").await.expect("family");
        ids.insert(name, image.image_id);
    }
    let id = |name: &str| ids[name].clone();
    ecs.share(&id("r-shared"), &["123456789012".into()], &[]).await.expect("share");
    let stopped = ecs.instances(&[]).await.expect("instances").into_iter().find(|i| i.status == "Stopped");
    let instance = stopped.expect("a stopped instance").instance_id;
    ecs.replace_system_disk(&instance, &id("r-used"), None).await.expect("replace");
    // A copy as imgport makes it (the source's name and digest tag), held in flight.
    let stall = FaultRule {
        operation: "CopyImage".into(),
        fault: Fault::Stall { seconds: None },
        rate: 1.0,
        after: 0,
        times: None,
    };
    emu.set_faults(FaultConfig { rules: vec![stall], ..Default::default() });
    let copy = ecs
        .copy_image(&CopyRequest {
            image_id: id("r-copied"),
            destination_region: OTHER.into(),
            destination_name: Some("r-copied".into()),
            tags: vec![(DIGEST_TAG.into(), "digest-of-r-copied".into())],
            ..Default::default()
        })
        .await
        .expect("copy");

    let regions = [REGION.to_string(), OTHER.to_string()];
    let surveys = survey(&ecs, "web", &regions).await.expect("survey");
    assert_eq!(surveys.len(), 2);
    let (here, there) = (&surveys[0], &surveys[1]);
    assert_eq!(here.images.len(), 5);
    assert_eq!(here.copying.iter().collect::<Vec<_>>(), [&id("r-copied")], "{here:?}");
    assert_eq!(here.shared.get(&id("r-shared")), Some(&1));
    assert!(here.in_use.contains(&id("r-used")), "{:?}", here.in_use);
    assert_eq!(there.images.iter().map(|i| i.image_id.as_str()).collect::<Vec<_>>(), [copy.as_str()]);

    let policy = Policy { keep: Some(1), min_keep: 1, delete_after: Some(0), ..Default::default() };
    let p = plan(here, &policy, now()).expect("plan");
    let of = |p: &imgport_cloud::retain::Plan, name: &str| {
        let i = p.images.iter().find(|i| i.image_id == id(name)).expect("planned").clone();
        (i.action, i.why)
    };
    assert_eq!(of(&p, "r-new"), (Action::Keep, Why::Newest));
    assert_eq!(of(&p, "r-old"), (Action::Deprecate, Why::Old));
    assert_eq!(of(&p, "r-used"), (Action::Skip, Why::InUse));
    assert_eq!(of(&p, "r-shared"), (Action::Skip, Why::Shared { accounts: 1 }));
    assert_eq!(of(&p, "r-copied"), (Action::Skip, Why::Copying));
    let in_flight = plan(there, &policy, now()).expect("plan");
    assert_eq!((in_flight.images[0].action, &in_flight.images[0].why), (Action::Skip, &Why::InFlight));

    // Deprecated, with the time recorded.
    let done = apply(&ecs, &p, now()).await;
    assert_eq!(done.len(), 1);
    assert!(done[0].ok, "{done:?}");
    let old = ecs.image(&id("r-old")).await.expect("describe").expect("exists");
    assert_eq!(old.status, ImageStatus::Deprecated);
    assert_eq!(old.tag(DEPRECATED_AT_TAG), done[0].deprecated_at.as_deref());

    // The next run (no grace period here) deletes it and its snapshot.
    let snapshot = old.disk_device_mappings[0].snapshot_id.clone();
    assert!(!snapshot.is_empty());
    let surveys = survey(&ecs, "web", &regions).await.expect("survey");
    let p = plan(&surveys[0], &policy, now()).expect("plan");
    assert_eq!(
        of(&p, "r-old"),
        (Action::Delete, Why::GraceOver { deprecated_at: old.tag(DEPRECATED_AT_TAG).expect("tag").into() })
    );
    assert_eq!(snapshots(&emu, &snapshot).await, 1);
    let done = apply(&ecs, &p, now()).await;
    assert!(done.len() == 1 && done[0].ok, "{done:?}");
    assert_eq!(done[0].snapshots_deleted, std::slice::from_ref(&snapshot));
    assert!(ecs.image(&id("r-old")).await.expect("describe").is_none());
    assert_eq!(snapshots(&emu, &snapshot).await, 0, "the snapshot is gone");

    // A stale plan (made before the share) meets ECS's refusal: reported, and the next image is still done.
    let mut stale = surveys[0].clone();
    stale.shared.clear();
    stale.in_use.clear();
    stale.images.iter_mut().for_each(|i| i.usage = "none".into());
    stale.images.retain(|i| i.image_id != id("r-old"));
    let p = plan(&stale, &policy, now()).expect("plan");
    assert_eq!(of(&p, "r-shared").0, Action::Deprecate);
    assert_eq!(of(&p, "r-used").0, Action::Deprecate);
    let done = apply(&ecs, &p, now()).await;
    let by_id = |name: &str| done.iter().find(|d| d.image_id == id(name)).expect("reported").clone();
    let refused = by_id("r-shared");
    assert!(!refused.ok && refused.error.as_deref().is_some_and(|e| e.contains("ImageUseShared")), "{refused:?}");
    assert!(by_id("r-used").ok, "an image in use may be deprecated (instances go on): {done:?}");
    let shared = ecs.image(&id("r-shared")).await.expect("describe").expect("exists");
    assert_eq!(shared.status, ImageStatus::Available, "still shared and Available");
    emu.set_faults(FaultConfig::default());
    emu.shutdown();
}
