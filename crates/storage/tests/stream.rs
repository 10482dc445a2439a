//! The stream uploader against the in-process OSS emulator: a header region held back and written last,
//! holes (inside parts, over whole parts, at the end), one-part streams, a producer that fails, and resume.

use imgport_auth::endpoints::{BucketStyle, Endpoint};
use imgport_auth::provider::Static;
use imgport_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use imgport_storage::stream::{upload_stream, StreamParams, StreamWriter};
use imgport_storage::upload::{Summary, UploadError, UploadOptions};
use imgport_storage::{Client, Flavor, ObjectStore, PutOptions, StoreConfig};
use std::path::Path;
use std::sync::Arc;

const PART: u64 = 100 << 10;

fn client(emu: &RunningEmulator) -> Arc<Client> {
    let endpoint = Endpoint::parse(&emu.oss_endpoint).expect("endpoint");
    Arc::new(
        Client::new(StoreConfig {
            flavor: Flavor::OssV4,
            style: BucketStyle::default_for(&endpoint),
            endpoint,
            region: emu.region().to_string(),
            bucket: "streams".to_string(),
            credentials: Arc::new(Static::new(emu.credentials.clone(), "test")),
        })
        .expect("client"),
    )
}

fn options(dir: &Path, key: &str) -> UploadOptions {
    UploadOptions {
        source: dir.join("source"),
        key: key.to_string(),
        endpoint_id: "emulator".into(),
        url: format!("oss://streams/{key}"),
        part_size: Some(PART),
        min_part_size: 100 << 10,
        concurrency: 3,
        resume: true,
        state_dir: Some(dir.join("state")),
        put: PutOptions::default(),
        rate_limit: None,
        max_attempts: 5,
        send_md5: false,
        checksum: Default::default(),
    }
}

/// A stream like a writer's: (header length, body writes, header writes, total length).
struct Plan {
    header: u64,
    body: Vec<(u64, Vec<u8>)>,
    head: Vec<(u64, Vec<u8>)>,
    total: u64,
}

impl Plan {
    fn expected(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.total as usize];
        for (off, d) in self.body.iter().chain(&self.head) {
            v[*off as usize..*off as usize + d.len()].copy_from_slice(d);
        }
        v
    }

    /// Writes the plan; stops with an error after `fail_after` body writes if given.
    fn write(&self, w: &mut StreamWriter, fail_after: Option<usize>) -> Result<(), UploadError> {
        w.begin(self.header)?;
        for (i, (off, d)) in self.body.iter().enumerate() {
            if fail_after == Some(i) {
                return Err(UploadError::Source("stopped on purpose".into()));
            }
            w.write_at(*off, d)?;
        }
        for (off, d) in &self.head {
            w.write_at(*off, d)?;
        }
        w.finish(self.total)
    }
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect()
}

fn plan(header: u64) -> Plan {
    let body = vec![
        (header, bytes(5000, 1)),
        (header + 5000 + 7, bytes(150_000, 2)),
        // A hole over several whole parts.
        (8 * PART + 11, bytes(3 * PART as usize, 3)),
        (11 * PART + 50, bytes(1000, 4)),
    ];
    let head = vec![(0, bytes(header as usize / 2, 5)), (header / 2, bytes((header - header / 2) as usize, 6))];
    // A trailing hole that ends inside a part.
    Plan { header, body, head, total: 14 * PART + 333 }
}

async fn run(
    store: Arc<Client>,
    opts: &UploadOptions,
    plan: Arc<Plan>,
    fail_after: Option<usize>,
) -> Result<Summary, UploadError> {
    let params = StreamParams { params: "test v1".into(), len_bound: plan.total };
    upload_stream(store, opts, &params, None, move |_id, w: &mut StreamWriter| plan.write(w, fail_after)).await
}

fn setup() -> (tempfile::TempDir, RunningEmulator) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("source"), b"the source of the stream").expect("source");
    let emu = Emulator::start(EmulatorConfig::new(dir.path().join("emu"))).expect("emulator");
    (dir, emu)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_held_back_and_holes_filled() {
    let (dir, emu) = setup();
    let store = client(&emu);
    store.create_bucket().await.expect("bucket");
    // Header inside part 1, and a header region over two and a half parts.
    for (key, header) in [("small-header", 3000), ("large-header", 2 * PART + PART / 2)] {
        let p = Arc::new(plan(header));
        let s = run(store.clone(), &options(dir.path(), key), p.clone(), None).await.expect("upload");
        assert_eq!((s.bytes, s.parts, s.sent_parts, s.skipped_parts), (p.total, 15, 15, 0), "{key}");
        let got = store.get_object(key).await.expect("get");
        assert!(got == p.expected(), "{key}: stored object differs");
        assert_eq!(s.crc64, Some(imgport_storage::crc64::checksum(&p.expected()).to_string()));
    }
    // One part or less: a single PutObject; an empty stream is an empty object.
    for (key, total) in [("one", PART), ("short", 1000), ("empty", 0)] {
        let p = Arc::new(Plan { header: 0, body: vec![], head: vec![], total });
        let s = run(store.clone(), &options(dir.path(), key), p.clone(), None).await.expect("upload");
        assert_eq!((s.bytes, s.parts, s.upload_id.is_none()), (total, 1, true), "{key}");
        assert!(store.get_object(key).await.expect("get") == p.expected(), "{key}");
    }
    assert!(std::fs::read_dir(dir.path().join("state")).map_or(0, |d| d.count()) == 0, "state left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_going_backwards_is_refused() {
    let (dir, emu) = setup();
    let store = client(&emu);
    store.create_bucket().await.expect("bucket");
    let params = StreamParams { params: "test".into(), len_bound: 10 * PART };
    let err = upload_stream(store, &options(dir.path(), "back"), &params, None, |_, w: &mut StreamWriter| {
        w.begin(100)?;
        w.write_at(3 * PART, &[1; 10])?;
        w.write_at(2 * PART, &[1; 10])?;
        w.finish(4 * PART)
    })
    .await
    .expect_err("backwards");
    assert!(err.to_string().contains("went backwards: offset 204800 after 307210"), "{err}");
}

/// A run that fails half-way leaves a resumable upload; the next run of the same stream sends only the parts
/// the store lacks and the object is right. Other parameters start over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_skips_stored_parts() {
    let (dir, emu) = setup();
    let store = client(&emu);
    store.create_bucket().await.expect("bucket");
    let p = Arc::new(plan(3000));
    let opts = options(dir.path(), "resumed");
    let err = run(store.clone(), &opts, p.clone(), Some(3)).await.expect_err("stopped");
    assert!(err.to_string().contains("stopped on purpose"), "{err}");
    let s = run(store.clone(), &opts, p.clone(), None).await.expect("resumed upload");
    // The third write reached part 12: parts 2 to 11 had been handed over and were stored (part 1 is held
    // back); the first run waited for them before it stopped.
    assert_eq!((s.resumed_parts, s.skipped_parts), (10, 10), "{s:?}");
    assert_eq!(s.sent_parts + s.skipped_parts, s.parts, "{s:?}");
    assert!(store.get_object("resumed").await.expect("get") == p.expected());

    // The same stop, then other parameters: nothing is kept.
    run(store.clone(), &opts, p.clone(), Some(3)).await.expect_err("stopped");
    let params = StreamParams { params: "test v2".into(), len_bound: p.total };
    let p2 = p.clone();
    let s = upload_stream(store.clone(), &opts, &params, None, move |_, w: &mut StreamWriter| p2.write(w, None))
        .await
        .expect("upload");
    assert_eq!((s.resumed_parts, s.skipped_parts), (0, 0), "{s:?}");
    assert!(store.get_object("resumed").await.expect("get") == p.expected());
}
