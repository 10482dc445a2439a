//! The lease chain and the run record in a bucket ([`imgport_pipeline::file::state`]) against the in-process
//! emulator's OSS, whose `x-oss-forbid-overwrite` makes the create-only writes real: one holder at a time, a
//! released or expired lease taken over by the next link, a slow holder told it lost the lease, and links that are
//! not leases (junk, huge objects) never blocking a run nor read whole.

use imgport_auth::endpoints::{BucketStyle, Endpoint};
use imgport_auth::provider::Static;
use imgport_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use imgport_pipeline::file::record::{RunRecord, RunStatus};
use imgport_pipeline::file::state::{Acquire, BucketState, Renewal};
use imgport_storage::{Client, Flavor, ObjectStore, PutOptions, StoreConfig};
use std::sync::Arc;
use std::time::Duration;

const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const LEASE: Duration = Duration::from_secs(30);

fn client(emu: &RunningEmulator) -> Client {
    let endpoint = Endpoint::parse(&emu.oss_endpoint).expect("endpoint");
    Client::new(StoreConfig {
        flavor: Flavor::OssV4,
        style: BucketStyle::default_for(&endpoint),
        endpoint,
        region: emu.region().to_string(),
        bucket: "state-bucket".into(),
        credentials: Arc::new(Static::new(emu.credentials.clone(), "test")),
    })
    .expect("client")
}

async fn state(emu: &RunningEmulator) -> (BucketState, Arc<Client>) {
    let c = Arc::new(client(emu));
    c.create_bucket().await.expect("bucket");
    (BucketState::new(c.clone(), "oss://state-bucket", "/ci/state/", LEASE), c)
}

fn held(a: Acquire) -> imgport_pipeline::file::state::Lease {
    match a {
        Acquire::Held(l) => l,
        Acquire::Busy(i) => panic!("busy: held by {i:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn one_holder_then_release_then_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(EmulatorConfig::new(dir.path())).expect("emulator");
    let (s, _) = state(&emu).await;
    let now = 1_800_000_000;
    let first = held(s.acquire("golden", "cn-hangzhou", DIGEST, "run-a", now).await.expect("acquire"));
    assert!(
        first.location().ends_with("/ci/state/golden/cn-hangzhou/leases/0123456789abcdef/1"),
        "{}",
        first.location()
    );
    // Asking again as the holder answers the same lease (a retried request whose answer was lost).
    let again = held(s.acquire("golden", "cn-hangzhou", DIGEST, "run-a", now + 1).await.expect("acquire"));
    assert_eq!(again.location(), first.location());
    match s.acquire("golden", "cn-hangzhou", DIGEST, "run-b", now + 1).await.expect("acquire") {
        Acquire::Busy(info) => {
            assert_eq!((info.run_uuid.as_str(), info.pid), ("run-a", std::process::id()));
            assert_eq!(info.expires, now + LEASE.as_secs() as i64);
        }
        Acquire::Held(_) => panic!("two holders"),
    }
    // Other content, or another region, is another lease.
    held(s.acquire("golden", "cn-hangzhou", &DIGEST.replace('0', "f"), "run-c", now).await.expect("acquire"));
    held(s.acquire("golden", "cn-shanghai", DIGEST, "run-d", now).await.expect("acquire"));
    first.release().await.expect("release");
    let next = held(s.acquire("golden", "cn-hangzhou", DIGEST, "run-b", now + 2).await.expect("acquire"));
    assert!(next.location().ends_with("/2"), "{}", next.location());
}

#[tokio::test(flavor = "current_thread")]
async fn an_expired_lease_is_taken_over_and_its_holder_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(EmulatorConfig::new(dir.path())).expect("emulator");
    let (s, _) = state(&emu).await;
    let now = 1_800_000_000;
    let mut slow = held(s.acquire("golden", "cn-hangzhou", DIGEST, "run-a", now).await.expect("acquire"));
    // Renewed in time, it stays the holder.
    assert_eq!(slow.renew(now + 20).await.expect("renew"), Renewal::Renewed);
    let still = now + 20 + LEASE.as_secs() as i64 - 1;
    assert!(matches!(
        s.acquire("golden", "cn-hangzhou", DIGEST, "run-b", still).await.expect("acquire"),
        Acquire::Busy(_)
    ));
    // Not renewed for a whole lease: the next runner takes it over with the next link.
    let later = now + 20 + LEASE.as_secs() as i64 + 1;
    let taker = held(s.acquire("golden", "cn-hangzhou", DIGEST, "run-b", later).await.expect("acquire"));
    assert!(taker.location().ends_with("/2"), "{}", taker.location());
    match slow.renew(later + 1).await.expect("renew") {
        Renewal::Lost(by) => assert_eq!(by.run_uuid, "run-b"),
        Renewal::Renewed => panic!("the slow holder kept a lease that was taken over"),
    }
    // A third runner sees the taker as the holder, not the slow one's renewed link.
    match s.acquire("golden", "cn-hangzhou", DIGEST, "run-c", later + 2).await.expect("acquire") {
        Acquire::Busy(info) => assert_eq!(info.run_uuid, "run-b"),
        Acquire::Held(_) => panic!("two holders"),
    }
    // The slow holder's release does not release the taker's lease.
    slow.release().await.expect("release");
    assert!(matches!(
        s.acquire("golden", "cn-hangzhou", DIGEST, "run-c", later + 3).await.expect("acquire"),
        Acquire::Busy(_)
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn links_that_are_not_leases_do_not_block_and_are_not_read_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(EmulatorConfig::new(dir.path())).expect("emulator");
    let (s, c) = state(&emu).await;
    let base = "ci/state/golden/cn-hangzhou/leases/0123456789abcdef";
    c.put_object(&format!("{base}/1"), b"not json".to_vec().into(), &PutOptions::default()).await.expect("put");
    c.put_object(&format!("{base}/2"), vec![b' '; 2 << 20].into(), &PutOptions::default()).await.expect("put");
    let l = held(s.acquire("golden", "cn-hangzhou", DIGEST, "run-a", 1_800_000_000).await.expect("acquire"));
    assert!(l.location().ends_with("/3"), "{}", l.location());
}

#[tokio::test(flavor = "current_thread")]
async fn records_round_trip_and_a_bad_one_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(EmulatorConfig::new(dir.path())).expect("emulator");
    let (s, c) = state(&emu).await;
    assert_eq!(s.load("golden", "cn-hangzhou").await.expect("load"), None);
    let rec = RunRecord {
        pipeline: "golden".into(),
        file_hash: "h".into(),
        run_uuid: "run-a".into(),
        status: RunStatus::Finished,
        source: "disk.qcow2".into(),
        digest: DIGEST.into(),
        image_name: "golden-1".into(),
        started: 1,
        ended: Some(2),
        steps: Vec::new(),
        images: [("cn-hangzhou".to_string(), "m-1".to_string())].into(),
        error: None,
        exit_code: None,
        build: None,
    };
    s.save("golden", "cn-hangzhou", &rec).await.expect("save");
    assert_eq!(s.load("golden", "cn-hangzhou").await.expect("load"), Some(rec));
    assert_eq!(s.location("golden", "cn-hangzhou"), "oss://state-bucket/ci/state/golden/cn-hangzhou/record.json");
    c.put_object("ci/state/golden/cn-hangzhou/record.json", b"{}".to_vec().into(), &PutOptions::default())
        .await
        .expect("put");
    let e = s.load("golden", "cn-hangzhou").await.expect_err("not a record");
    assert!(e.contains("record.json") && e.contains("not a run record"), "{e}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_long_chain_is_searched_not_walked_and_a_far_future_link_holds_no_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(EmulatorConfig::new(dir.path())).expect("emulator");
    let (s, c) = state(&emu).await;
    let base = "ci/state/golden/cn-hangzhou/leases/0123456789abcdef";
    let now = 1_800_000_000;
    let released =
        serde_json::json!({"run_uuid": "old", "host": "h", "pid": 1, "acquired": 1, "expires": 2, "released": true});
    for n in 1..=40 {
        c.put_object(&format!("{base}/{n}"), released.to_string().into_bytes().into(), &PutOptions::default())
            .await
            .expect("put");
    }
    let before = emu.request_log().len();
    let l = held(s.acquire("golden", "cn-hangzhou", DIGEST, "run-a", now).await.expect("acquire"));
    assert!(l.location().ends_with("/41"), "{}", l.location());
    let reads = emu.request_log().len() - before;
    assert!(reads < 30, "{reads} requests for a chain of 40");
    // A link that claims to live for a year (a clock far ahead, or not imgport's) does not hold others back.
    let year =
        serde_json::json!({"run_uuid": "ahead", "host": "h", "pid": 1, "acquired": now, "expires": now + 365 * 86_400});
    c.put_object(&format!("{base}/42"), year.to_string().into_bytes().into(), &PutOptions::default())
        .await
        .expect("put");
    let l = held(s.acquire("golden", "cn-hangzhou", DIGEST, "run-b", now).await.expect("acquire"));
    assert!(l.location().ends_with("/43"), "{}", l.location());
}
