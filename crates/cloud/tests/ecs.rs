//! The ECS client and the waiter against the emulator: an import waited for to Available, a ClientToken retry
//! answering the same image, CreateFailed reported with the task's code and advice, a stalled import timing out, a
//! cancelled import ending the wait, a copy into another region waited for there, share, tag, deprecate, delete;
//! and the import role preflight (missing, untrusted, repaired by `create_import_role`).

use imgport_auth::endpoints::{Endpoint, Service};
use imgport_auth::provider::{system_clock, Static};
use imgport_auth::rpc::{RpcClient, Style};
use imgport_cloud::ecs::{CopyRequest, ImportDisk, ImportRequest};
use imgport_cloud::model::ImageStatus;
use imgport_cloud::role::{Ram, RoleProblem};
use imgport_cloud::wait::{wait_image, WaitEvent, WaitEventFn, WaitOptions};
use imgport_cloud::{Ecs, ErrorKind};
use imgport_emulator::faults::{Fault, FaultConfig, FaultRule};
use imgport_emulator::{CloudSettings, Emulator, EmulatorConfig, RunningEmulator};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const REGION: &str = "cn-hangzhou";
const BUCKET: &str = "images";
const KEY: &str = "disk.raw";

pub(crate) fn start(dir: &std::path::Path, settings: CloudSettings) -> RunningEmulator {
    let mut cfg = EmulatorConfig::new(dir).cloud(settings);
    cfg.regions = vec![REGION.into(), "cn-shanghai".into()];
    Emulator::start(cfg).expect("emulator starts")
}

pub(crate) fn rpc(emu: &RunningEmulator, service: Service, version: &str, style: Style) -> RpcClient {
    let endpoint = Endpoint::parse(&emu.ecs_endpoint).expect("endpoint");
    RpcClient::new(service, version, endpoint, style, system_clock())
        .expect("client")
        .with_credentials(Arc::new(Static::new(emu.credentials.clone(), "test")))
}

pub(crate) fn ecs(emu: &RunningEmulator) -> Ecs {
    Ecs::new(rpc(emu, Service::Ecs, imgport_cloud::ecs::VERSION, Style::Acs3), REGION)
}

fn ram(emu: &RunningEmulator) -> Ram {
    Ram::new(rpc(emu, Service::Ram, imgport_cloud::role::VERSION, Style::RpcV1))
}

/// A 4 MiB raw disk with an MBR holding one bootable Linux partition, stored as `BUCKET/KEY`.
pub(crate) async fn upload_disk(emu: &RunningEmulator) {
    use imgport_storage::{Client, Flavor, ObjectStore, StoreConfig};
    let endpoint = Endpoint::parse(&emu.oss_endpoint).expect("endpoint");
    let client = Client::new(StoreConfig {
        flavor: Flavor::OssV4,
        style: imgport_auth::endpoints::BucketStyle::default_for(&endpoint),
        endpoint,
        region: REGION.into(),
        bucket: BUCKET.into(),
        credentials: Arc::new(Static::new(emu.credentials.clone(), "test")),
    })
    .expect("client");
    client.create_bucket().await.expect("bucket");
    let mut disk = vec![0u8; 4 << 20];
    let sectors = (disk.len() / 512 - 2048) as u32;
    disk[446] = 0x80;
    disk[446 + 4] = 0x83;
    disk[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    disk[446 + 12..446 + 16].copy_from_slice(&sectors.to_le_bytes());
    disk[510] = 0x55;
    disk[511] = 0xaa;
    client.put_object(KEY, disk.into(), &Default::default()).await.expect("put");
}

pub(crate) fn request(name: &str) -> ImportRequest {
    ImportRequest {
        image_name: name.into(),
        disks: vec![ImportDisk { bucket: BUCKET.into(), object: KEY.into(), format: "RAW".into(), size_gib: None }],
        tags: vec![("imgport:digest".into(), "abc123".into())],
        ..Default::default()
    }
}

pub(crate) fn quick() -> WaitOptions {
    WaitOptions {
        timeout: Duration::from_secs(60),
        first_poll: Duration::from_millis(200),
        max_poll: Duration::from_millis(500),
        ..Default::default()
    }
}

pub(crate) fn recorder() -> (WaitEventFn, Arc<Mutex<Vec<WaitEvent>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    (Arc::new(move |e: &WaitEvent| s.lock().expect("lock").push(e.clone())), seen)
}

pub(crate) fn rule(operation: &str, fault: Fault) -> FaultConfig {
    FaultConfig {
        rules: vec![FaultRule { operation: operation.into(), fault, rate: 1.0, after: 0, times: Some(1) }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_wait_copy_share_retire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start(dir.path(), CloudSettings { import_seconds: 1.0, seed_import_role: true, ..Default::default() });
    upload_disk(&emu).await;
    let ecs = ecs(&emu);
    let mut req = request("web-1");
    req.client_token = Some("token-web-1".into());
    let imported = ecs.import_image(&req).await.expect("import");
    assert!(imported.image_id.starts_with("m-") && !imported.task_id.is_empty(), "{imported:?}");
    // A retried request with the same token answers the same image.
    let again = ecs.import_image(&req).await.expect("retry");
    assert_eq!(again.image_id, imported.image_id);
    let (events, seen) = recorder();
    let image = wait_image(&ecs, &imported.image_id, Some(&imported.task_id), &quick(), &events).await.expect("wait");
    assert_eq!((&image.status, image.image_name.as_str()), (&ImageStatus::Available, "web-1"));
    assert_eq!(image.tag("imgport:digest"), Some("abc123"));
    assert_eq!(image.disk_device_mappings[0].format, "RAW");
    let statuses: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|e| match e {
            WaitEvent::Progress { status, .. } => Some(status.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(statuses.last().map(String::as_str), Some("Available"), "{statuses:?}");
    assert!(statuses.len() >= 2, "progress was reported along the way: {statuses:?}");

    // Copy into the other region, waited for there.
    let copy = CopyRequest {
        image_id: image.image_id.clone(),
        destination_region: "cn-shanghai".into(),
        tags: vec![("imgport:digest".into(), "abc123".into())],
        ..Default::default()
    };
    let copy_id = ecs.copy_image(&copy).await.expect("copy");
    let shanghai = ecs.in_region("cn-shanghai");
    let copied = wait_image(&shanghai, &copy_id, None, &quick(), &events).await.expect("copy waited for");
    assert!(copied.is_copied && copied.tag("imgport:digest") == Some("abc123"), "{copied:?}");

    // Share, tag, deprecate; a shared image cannot be deleted until unshared.
    ecs.share(&image.image_id, &["123456789012".into()], &[]).await.expect("share");
    ecs.tag("image", std::slice::from_ref(&image.image_id), &[("team".into(), "web".into())]).await.expect("tag");
    let e = ecs.delete_image(&image.image_id, false).await.expect_err("shared");
    assert_eq!(e.code(), Some("ImageUseShared"));
    assert!(e.advice().is_some_and(|a| a.fix.contains("unshare")), "{e}");
    ecs.share(&image.image_id, &[], &["123456789012".into()]).await.expect("unshare");
    ecs.set_deprecated(&image.image_id, true).await.expect("deprecate");
    let got = ecs.image(&image.image_id).await.expect("describe").expect("exists");
    assert_eq!((&got.status, got.tag("team")), (&ImageStatus::Deprecated, Some("web")));
    ecs.delete_image(&image.image_id, false).await.expect("delete");
    assert!(ecs.image(&image.image_id).await.expect("describe").is_none());
    // The name is free again.
    let e = ecs.import_image(&request("copy-of-web")).await;
    assert!(e.is_ok(), "{e:?}");
    emu.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_timeouts_and_cancels_end_the_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start(dir.path(), CloudSettings { import_seconds: 1.0, seed_import_role: true, ..Default::default() });
    upload_disk(&emu).await;
    let ecs = ecs(&emu);
    let (events, _) = recorder();

    // CreateFailed: reported at once, with the task's code and its advice.
    let fault = Fault::CreateFailed { reason: Some("InvalidImage.Format: the disk is broken".into()) };
    emu.set_faults(rule("ImportImage", fault));
    let failing = ecs.import_image(&request("failing")).await.expect("import");
    let started = Instant::now();
    let e = wait_image(&ecs, &failing.image_id, Some(&failing.task_id), &quick(), &events).await.expect_err("fails");
    assert_eq!(e.kind(), ErrorKind::CreateFailed, "{e}");
    assert_eq!(e.code(), Some("InvalidImage.Format"), "{e}");
    assert!(e.to_string().contains("the disk is broken"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10), "reported within a few polls");

    // A stall: the wait's timeout ends it, naming where the image stood.
    emu.set_faults(rule("ImportImage", Fault::Stall { seconds: None }));
    let stalled = ecs.import_image(&request("stalled")).await.expect("import");
    let short = WaitOptions { timeout: Duration::from_secs(2), ..quick() };
    let e = wait_image(&ecs, &stalled.image_id, Some(&stalled.task_id), &short, &events).await.expect_err("times out");
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(e.to_string().contains(&stalled.image_id), "{e}");

    // Cancelled while waited for: the wait ends as cancelled.
    let waiter = {
        let (ecs, events, id, task) = (ecs.clone(), events.clone(), stalled.image_id.clone(), stalled.task_id.clone());
        tokio::spawn(async move { wait_image(&ecs, &id, Some(&task), &quick(), &events).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    ecs.cancel_task(&stalled.task_id).await.expect("cancel");
    let e = waiter.await.expect("joins").expect_err("cancelled");
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
    emu.set_faults(FaultConfig::default());

    // API errors carry advice.
    let e = ecs.import_image(&request("failing")).await.expect_err("the failed image still holds the name");
    assert_eq!(e.code(), Some("InvalidImageName.Duplicated"), "{e}");
    assert!(e.advice().is_some_and(|a| a.fix.contains("images delete")), "{e}");
    emu.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_role_preflight_and_repair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start(dir.path(), CloudSettings { import_seconds: 1.0, ..Default::default() });
    upload_disk(&emu).await;
    let ram = ram(&emu);
    let problem = ram.check_import_role(None).await.expect("check");
    assert!(matches!(problem, Some(RoleProblem::Missing { .. })), "{problem:?}");
    assert!(problem.is_some_and(|p| p.explain().contains("--create-role")));
    // The import itself is refused the same way.
    let e = ecs(&emu).import_image(&request("no-role")).await.expect_err("no role");
    assert_eq!(e.code(), Some("NoSetRoletoECSServiceAcount"), "{e}");

    let done = ram.create_import_role(None).await.expect("create");
    assert_eq!(done.len(), 2, "{done:?}");
    assert_eq!(ram.check_import_role(None).await.expect("check"), None);
    assert!(ram.create_import_role(None).await.expect("again").is_empty(), "nothing left to change");
    ecs(&emu).import_image(&request("with-role")).await.expect("imports now");
    emu.shutdown();
}

/// A role trusting another service is found and repaired; a custom policy granting the import's reads stands in
/// for the system policy (read back with GetPolicy), one that lacks them does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_role_trust_and_custom_policies() {
    use imgport_auth::rpc::{Signer, Transport};
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start(dir.path(), CloudSettings { import_seconds: 1.0, ..Default::default() });
    let client = rpc(&emu, Service::Ram, imgport_cloud::role::VERSION, Style::RpcV1);
    let call = |action: &'static str, params: Vec<(&'static str, String)>| {
        let client = client.clone();
        async move {
            let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            client.call_with::<serde_json::Value>(action, &p, Transport::Form, Signer::Provider).await.expect(action)
        }
    };
    let role = imgport_auth::policy::IMPORT_ROLE;
    let other = imgport_auth::policy::ECS_TRUST_POLICY.replace("ecs.aliyuncs.com", "fc.aliyuncs.com");
    call("CreateRole", vec![("RoleName", role.into()), ("AssumeRolePolicyDocument", other)]).await;
    let roles = ram(&emu);
    let problem = roles.check_import_role(None).await.expect("check");
    assert!(matches!(problem, Some(RoleProblem::NotTrustedByEcs { .. })), "{problem:?}");
    // Fix the trust by hand; a custom policy without GetObject is not enough.
    let trust = imgport_auth::policy::ECS_TRUST_POLICY.to_string();
    call("UpdateRole", vec![("RoleName", role.into()), ("NewAssumeRolePolicyDocument", trust)]).await;
    let partial = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:GetBucket*"],"Resource":"*"}]}"#;
    call("CreatePolicy", vec![("PolicyName", "partial".into()), ("PolicyDocument", partial.into())]).await;
    let attach = |name: &'static str| {
        vec![("PolicyType", "Custom".to_string()), ("PolicyName", name.to_string()), ("RoleName", role.to_string())]
    };
    call("AttachPolicyToRole", attach("partial")).await;
    let problem = roles.check_import_role(None).await.expect("check");
    assert!(matches!(problem, Some(RoleProblem::NoImportPolicy { .. })), "{problem:?}");
    let full = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:Get*","Resource":"*"}]}"#;
    call("CreatePolicy", vec![("PolicyName", "reads".into()), ("PolicyDocument", full.into())]).await;
    call("AttachPolicyToRole", attach("reads")).await;
    assert_eq!(roles.check_import_role(None).await.expect("check"), None);
    emu.shutdown();

    // A second account's untrusted role is repaired by create_import_role (UpdateRole, then the system policy).
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start(dir.path(), CloudSettings { import_seconds: 1.0, ..Default::default() });
    let client = rpc(&emu, Service::Ram, imgport_cloud::role::VERSION, Style::RpcV1);
    let other = imgport_auth::policy::ECS_TRUST_POLICY.replace("ecs.aliyuncs.com", "fc.aliyuncs.com");
    client
        .call_with::<serde_json::Value>(
            "CreateRole",
            &[("RoleName", role), ("AssumeRolePolicyDocument", &other)],
            Transport::Form,
            Signer::Provider,
        )
        .await
        .expect("CreateRole");
    let roles = ram(&emu);
    let done = roles.create_import_role(None).await.expect("repair");
    assert_eq!(done.len(), 2, "{done:?}");
    assert_eq!(roles.check_import_role(None).await.expect("check"), None);
    emu.shutdown();
}

/// Listings follow the pages: five images listed two at a time come back whole, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_follow_every_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = start(dir.path(), CloudSettings { import_seconds: 0.2, seed_import_role: true, ..Default::default() });
    upload_disk(&emu).await;
    let ecs = ecs(&emu).with_page_size(2);
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(ecs.import_image(&request(&format!("paged-{n}"))).await.expect("import").image_id);
    }
    let filter = imgport_cloud::ecs::ImageFilter { owner_alias: Some("self".into()), ..Default::default() };
    let mut listed: Vec<String> = ecs.images(&filter).await.expect("list").into_iter().map(|i| i.image_id).collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids);
    // The system catalogue too, across its pages.
    let system = imgport_cloud::ecs::ImageFilter { owner_alias: Some("system".into()), ..Default::default() };
    let all = ecs.images(&system).await.expect("system images");
    let whole = ecs.clone().with_page_size(100).images(&system).await.expect("one page");
    assert!(all.len() > 2 && all.len() == whole.len(), "{} vs {}", all.len(), whole.len());
    emu.shutdown();
}
