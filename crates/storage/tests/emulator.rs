//! The client against the in-process OSS emulator, with V4 and V1 signatures.

use bytes::Bytes;
use imgport_auth::endpoints::{BucketStyle, Endpoint};
use imgport_auth::provider::Static;
use imgport_emulator::{Emulator, EmulatorConfig, FaultConfig, RunningEmulator};
use imgport_storage::{
    crc64, Client, CompletedPart, Flavor, ObjectStore, PartCheck, PutOptions, RetryClass, StoreConfig,
};
use std::sync::Arc;

fn client(emu: &RunningEmulator, flavor: Flavor, bucket: &str) -> Client {
    let endpoint = Endpoint::parse(&emu.oss_endpoint).expect("endpoint");
    Client::new(StoreConfig {
        flavor,
        style: BucketStyle::default_for(&endpoint),
        endpoint,
        region: emu.region().to_string(),
        bucket: bucket.to_string(),
        credentials: Arc::new(Static::new(emu.credentials.clone(), "test")),
    })
    .expect("client")
}

async fn round_trip(flavor: Flavor) {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(EmulatorConfig::new(dir.path())).expect("emulator");
    let c = client(&emu, flavor, "bucket-one");
    c.create_bucket().await.expect("bucket");
    let data = Bytes::from(vec![7u8; 300 * 1024]);
    // User metadata goes with the signed request and comes back on HEAD, for a simple and a multipart upload.
    let meta = |d: &str| PutOptions {
        metadata: vec![("imgport-digest".into(), d.into()), ("imgport-format".into(), "QCOW2".into())],
        ..Default::default()
    };
    let put = c.put_object("dir/a b+c", data.clone().into(), &meta("sha256:ab12")).await.expect("put");
    assert_eq!(put.crc64, Some(crc64::checksum(&data)));
    let head = c.head_object("dir/a b+c").await.expect("head");
    assert_eq!(head.len, data.len() as u64);
    assert_eq!(head.metadata.get("imgport-digest").map(String::as_str), Some("sha256:ab12"), "{head:?}");
    assert_eq!(head.metadata.get("imgport-format").map(String::as_str), Some("QCOW2"), "{head:?}");

    let id = c.initiate_multipart("big", &meta("sha256:cd34"), None).await.expect("initiate");
    let p1 = Bytes::from(vec![1u8; 200 * 1024]);
    let p2 = Bytes::from(vec![2u8; 1000]);
    let r1 = c.upload_part("big", &id, 1, p1.clone().into(), PartCheck::default()).await.expect("part 1");
    let r2 = c.upload_part("big", &id, 2, p2.clone().into(), PartCheck::default()).await.expect("part 2");
    assert_eq!(r1.crc64, Some(crc64::checksum(&p1)));
    let parts = c.list_parts("big", &id).await.expect("list parts");
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[1].size, 1000);
    let ups = c.list_multipart_uploads("").await.expect("list uploads");
    assert!(ups.iter().any(|u| u.upload_id == id && u.key == "big"));
    let done = c.complete_multipart("big", &id, &[part(1, r1.etag), part(2, r2.etag)], None).await.expect("complete");
    let want = crc64::combine(crc64::checksum(&p1), crc64::checksum(&p2), p2.len() as u64);
    assert_eq!(done.crc64, Some(want));
    let got = c.get_object("big").await.expect("get");
    assert_eq!(got.len(), p1.len() + p2.len());
    let head = c.head_object("big").await.expect("head big");
    assert_eq!(head.metadata.get("imgport-digest").map(String::as_str), Some("sha256:cd34"), "{head:?}");

    let err = c.upload_part("big", "no-such-id", 1, p2.into(), PartCheck::default()).await.expect_err("bogus upload");
    assert_eq!(err.retry_class(), RetryClass::RestartUpload, "{err}");

    // The server's clock runs an hour ahead: the error carries its time, and correcting the offset fixes signing.
    emu.set_faults(FaultConfig { clock_skew_seconds: 3600, ..Default::default() });
    let err = c.head_object("big").await.expect_err("skewed");
    assert_eq!(err.retry_class(), RetryClass::ClockSkew, "{err}");
    if let imgport_storage::StorageError::Service { server_time: Some(t), .. } = err {
        c.correct_clock(t);
    }
    c.head_object("big").await.expect("head after clock correction");
}

#[tokio::test]
async fn oss_v4_round_trip() {
    round_trip(Flavor::OssV4).await;
}

#[tokio::test]
async fn oss_v1_round_trip() {
    round_trip(Flavor::OssV1).await;
}

struct EmulatorSts(Arc<RunningEmulator>);

impl imgport_auth::provider::Fetch for EmulatorSts {
    fn fetch(
        &self,
    ) -> imgport_auth::provider::BoxFuture<
        '_,
        Result<imgport_auth::Credentials, imgport_auth::provider::CredentialsError>,
    > {
        let r = self.0.issue_temporary_credentials(2).map(|t| {
            imgport_auth::Credentials::new(t.access_key_id, t.access_key_secret)
                .with_token(t.security_token)
                .with_expiration(t.expiration)
        });
        Box::pin(async move {
            r.map_err(|e| imgport_auth::provider::CredentialsError::Failed {
                provider: "emulator".into(),
                message: e.to_string(),
            })
        })
    }
}

/// Two-second STS credentials expire several times during the upload: expired-token answers are retried with
/// fresh credentials and the object is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_tokens_are_refreshed() {
    use imgport_storage::upload::{upload, UploadOptions};
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Arc::new(Emulator::start(EmulatorConfig::new(dir.path().join("emu"))).expect("emulator"));
    client(&emu, Flavor::OssV4, "bucket-sts").create_bucket().await.expect("bucket");
    let provider = imgport_auth::provider::Refreshing::new(
        EmulatorSts(emu.clone()),
        "emulator-sts",
        imgport_auth::provider::system_clock(),
    )
    // Keep using credentials a second past their expiry, so the store answers SecurityTokenExpired.
    .with_margin(-1);
    let endpoint = Endpoint::parse(&emu.oss_endpoint).expect("endpoint");
    let c = Arc::new(
        Client::new(StoreConfig {
            flavor: Flavor::OssV4,
            style: BucketStyle::default_for(&endpoint),
            endpoint,
            region: emu.region().to_string(),
            bucket: "bucket-sts".into(),
            credentials: Arc::new(provider),
        })
        .expect("client"),
    );
    emu.set_faults(FaultConfig {
        rules: vec![imgport_emulator::FaultRule {
            operation: "UploadPart".into(),
            fault: imgport_emulator::Fault::Latency { ms: 150 },
            rate: 1.0,
            after: 0,
            times: None,
        }],
        ..Default::default()
    });
    let src = dir.path().join("src");
    let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&src, &data).expect("write");
    let opts = UploadOptions {
        source: src,
        key: "sts.raw".into(),
        endpoint_id: emu.oss_endpoint.clone(),
        url: "oss://bucket-sts/sts.raw".into(),
        part_size: Some(128 << 10),
        min_part_size: 100 << 10,
        concurrency: 4,
        resume: true,
        state_dir: Some(dir.path().join("state")),
        put: PutOptions::default(),
        rate_limit: None,
        max_attempts: 10,
        send_md5: false,
        checksum: Default::default(),
    };
    let store: Arc<dyn ObjectStore> = c.clone();
    let s = upload(store, &opts, None).await.expect("upload");
    assert_eq!(s.parts, 64);
    assert!(s.retries > 0, "no expired-token answers were retried");
    emu.set_faults(FaultConfig::default());
    let got = c.get_object("sts.raw").await.expect("get");
    assert!(got.as_ref() == data.as_slice());
}

/// A part as CompleteMultipartUpload names it, without a flexible checksum (OSS).
fn part(number: u32, etag: String) -> CompletedPart {
    CompletedPart { number, etag, checksum: None }
}
