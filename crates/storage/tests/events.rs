//! The events an upload reports, against the in-process OSS emulator: a stale resume state restarts the upload
//! (reported, not printed), then started, every part stored, progress up to the size, completed.

use imgport_auth::endpoints::{BucketStyle, Endpoint};
use imgport_auth::provider::Static;
use imgport_emulator::{Emulator, EmulatorConfig};
use imgport_storage::events::{RestartReason, UploadEvent};
use imgport_storage::state::{self, UploadState};
use imgport_storage::upload::{upload, UploadOptions};
use imgport_storage::{Client, EventFn, Flavor, ObjectStore, PutOptions, StoreConfig};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_upload_reports_why_then_its_progress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(EmulatorConfig::new(dir.path().join("emu"))).expect("emulator");
    let endpoint = Endpoint::parse(&emu.oss_endpoint).expect("endpoint");
    let client = Arc::new(
        Client::new(StoreConfig {
            flavor: Flavor::OssV4,
            style: BucketStyle::default_for(&endpoint),
            endpoint,
            region: emu.region().to_string(),
            bucket: "events".to_string(),
            credentials: Arc::new(Static::new(emu.credentials.clone(), "test")),
        })
        .expect("client"),
    );
    client.create_bucket().await.expect("bucket");
    let src = dir.path().join("src");
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&src, &data).expect("write");
    let opts = UploadOptions {
        source: src.clone(),
        key: "e.raw".into(),
        endpoint_id: "emulator".into(),
        url: "oss://events/e.raw".into(),
        part_size: Some(128 << 10),
        min_part_size: 100 << 10,
        concurrency: 2,
        resume: true,
        state_dir: Some(dir.path().join("state")),
        put: PutOptions::default(),
        rate_limit: None,
        max_attempts: 3,
        send_md5: false,
        checksum: Default::default(),
    };
    // The resume state of an interrupted upload of this path when the file was another size.
    let abs = std::fs::canonicalize(&src).expect("canonicalize");
    let path = abs.to_string_lossy().to_string();
    let mut id = state::source_id(&path, &mut std::fs::File::open(&abs).expect("open")).expect("id");
    id.size += 1;
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&state_dir).expect("state dir");
    let stale = UploadState {
        version: state::VERSION,
        source: id,
        endpoint: "emulator".into(),
        bucket: "events".into(),
        key: "e.raw".into(),
        url: opts.url.clone(),
        upload_id: "gone".into(),
        part_size: 128 << 10,
        created: 0,
        parts: BTreeMap::new(),
        stream: None,
        checksum: None,
    };
    state::save(&state::file_for(&state_dir, &path, "emulator", "events", "e.raw"), &stale).expect("save");

    let seen: Arc<Mutex<Vec<UploadEvent>>> = Arc::default();
    let sink = seen.clone();
    let events: EventFn = Arc::new(move |e: &UploadEvent| sink.lock().expect("events").push(e.clone()));
    let store: Arc<dyn ObjectStore> = client.clone();
    let s = upload(store, &opts, Some(events)).await.expect("upload");
    assert_eq!((s.bytes, s.parts), (1 << 20, 8));

    let seen = seen.lock().expect("events").clone();
    assert_eq!(seen.first(), Some(&UploadEvent::Restarted { reason: RestartReason::SourceChanged { path } }));
    assert!(
        matches!(seen.get(1), Some(UploadEvent::Started { upload_id, resumed_parts: 0 }) if *upload_id != "gone"),
        "{seen:?}"
    );
    let done: Vec<u64> =
        seen.iter().filter_map(|e| if let UploadEvent::Progress(p) = e { Some(p.done) } else { None }).collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "progress went backwards: {done:?}");
    assert_eq!(done.last(), Some(&(1 << 20)));
    let mut stored: Vec<u32> = seen
        .iter()
        .filter_map(|e| if let UploadEvent::PartStored { number, sent: true, .. } = e { Some(*number) } else { None })
        .collect();
    stored.sort_unstable();
    assert_eq!(stored, (1..=8).collect::<Vec<u32>>());
    let want = UploadEvent::Completed { bytes: 1 << 20, parts: 8, etag: s.etag.clone(), crc64: s.crc64.clone() };
    assert_eq!(seen.last(), Some(&want));
    for e in &seen {
        let json = serde_json::to_string(e).expect("serialise");
        assert!(!json.contains(emu.credentials.access_key_secret.expose()), "a secret in {json}");
    }
}
