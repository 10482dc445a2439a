//! The RPC client against a local responder that verifies each signature: RPC V1 and ACS3 calls, form bodies,
//! error answers with their RequestId, and retries of throttled calls.

use imgport_auth::endpoints::{Endpoint, Service};
use imgport_auth::provider::{Clock, CredentialsProvider, Static};
use imgport_auth::rpc::{RpcClient, RpcError, Signer, Style, Transport};
use imgport_auth::sign::{acs3, rpc_v1, sha256_hex};
use imgport_auth::{Credentials, Secret, SignableRequest};
use imgport_net::RetryPolicy;
use imgport_test_support::responder::{Received, Reply, Server};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

const AK: &str = "LTAIrpcAccessKey001";
const SK: &str = "rpc-secret-MUST-NOT-LEAK";

#[derive(Deserialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    request_id: String,
    image_id: String,
}

fn provider() -> Arc<dyn CredentialsProvider> {
    Arc::new(Static::new(Credentials::new(AK, SK), "test"))
}

fn client(server: &Server, service: Service, style: Style) -> RpcClient {
    let clock: Clock = Arc::new(imgport_auth::time::now);
    let quick = RetryPolicy {
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..Default::default()
    };
    RpcClient::new(service, "2014-05-26", Endpoint::parse(&server.url).expect("endpoint"), style, clock)
        .expect("client")
        .with_credentials(provider())
        .with_policy(quick.with_max_attempts(3))
}

fn keys(ak: &str) -> Option<Secret> {
    (ak == AK).then(|| Secret::new(SK))
}

const OK: &str = r#"{"RequestId":"req-ok","ImageId":"m-123"}"#;

#[tokio::test]
async fn rpc_v1_calls_are_signed_and_answers_deserialised() {
    let server = Server::start(|r: &Received| match rpc_v1::verify(&r.method, &r.params(), &keys) {
        Ok(_) if r.param("Action").as_deref() == Some("ImportImage") => Reply::ok(OK),
        _ => Reply::status(400, r#"{"Code":"SignatureDoesNotMatch","RequestId":"req-bad"}"#),
    });
    let c = client(&server, Service::Ecs, Style::RpcV1);
    let a: Answer = c.call("ImportImage", &[("RegionId", "cn-hangzhou"), ("ImageName", "a b*c")]).await.expect("call");
    assert_eq!((a.request_id.as_str(), a.image_id.as_str()), ("req-ok", "m-123"));
    let got = server.received();
    assert_eq!(got[0].method, "GET");
    assert_eq!(got[0].param("Version").as_deref(), Some("2014-05-26"));
    assert_eq!(got[0].param("Format").as_deref(), Some("JSON"));
    assert_eq!(got[0].param("ImageName").as_deref(), Some("a b*c"));
    assert!(!got[0].target.contains(SK));
}

#[tokio::test]
async fn acs3_calls_are_signed_in_headers() {
    let server = Server::start(|r: &Received| {
        let req = SignableRequest::from_target(&r.method, &r.target, r.headers.clone()).expect("target");
        match acs3::verify(&req, &sha256_hex(&r.body), &keys) {
            Ok(_) if r.header("x-acs-action") == Some("DescribeImages") => Reply::ok(OK),
            _ => Reply::status(400, r#"{"Code":"IncompleteSignature","RequestId":"req-bad"}"#),
        }
    });
    let c = client(&server, Service::Ecs, Style::Acs3);
    let a: Answer = c
        .call("DescribeImages", &[("RegionId", "cn-hangzhou"), ("Status", "Creating,Available")])
        .await
        .expect("query");
    assert_eq!(a.image_id, "m-123");
    let form: Result<Answer, _> =
        c.call_with("DescribeImages", &[("RegionId", "cn-hangzhou")], Transport::Form, Signer::Provider).await;
    assert!(form.is_ok(), "{form:?}");
    let got = server.received();
    assert_eq!(got[0].header("x-acs-version"), Some("2014-05-26"));
    assert!(got[0].header("authorization").is_some_and(|a| a.starts_with("ACS3-HMAC-SHA256") && !a.contains(SK)));
    assert_eq!((got[1].method.as_str(), got[1].param("RegionId").as_deref()), ("POST", Some("cn-hangzhou")));
}

#[tokio::test]
async fn errors_keep_the_request_id_and_only_transient_ones_are_retried() {
    let server = Server::start(|r: &Received| match r.param("Action").as_deref() {
        Some("Bad") => Reply::status(
            400,
            r#"{"Code":"InvalidParameter","Message":"ImageName is malformed","RequestId":"req-400","HostId":"ecs"}"#,
        ),
        _ => Reply::status(503, r#"{"Code":"Throttling.User","Message":"slow down","RequestId":"req-503"}"#),
    });
    let c = client(&server, Service::Ecs, Style::RpcV1);
    let e = c.call::<Answer>("Bad", &[]).await.expect_err("refused");
    assert_eq!((e.status(), e.code()), (Some(400), Some("InvalidParameter")));
    assert_eq!(e.request_id(), Some("req-400"));
    assert_eq!(e.kind(), imgport_auth::ErrorKind::Service);
    assert!(matches!(&e, RpcError::Service(s) if s.action == "Bad" && s.message == "ImageName is malformed"));
    let msg = e.to_string();
    assert!(msg.contains("req-400") && msg.contains("ImageName is malformed") && msg.contains("ECS Bad"), "{msg}");
    assert!(!msg.contains(SK) && !msg.contains("Signature="), "{msg}");
    assert_eq!(server.count(), 1, "a client error is not retried");
    let e = c.call::<Answer>("Slow", &[]).await.expect_err("throttled");
    assert_eq!(e.code(), Some("Throttling.User"));
    assert_eq!(server.count(), 4, "throttling is retried up to the policy's attempts");
}

#[tokio::test]
async fn anonymous_form_calls_carry_no_signature() {
    let server = Server::start(|_: &Received| Reply::ok(OK));
    let c = client(&server, Service::Sts, Style::RpcV1);
    let a: Result<Answer, _> =
        c.call_with("AssumeRoleWithOIDC", &[("OIDCToken", "tok.en")], Transport::Form, Signer::Anonymous).await;
    assert!(a.is_ok(), "{a:?}");
    let got = &server.received()[0];
    assert_eq!(got.method, "POST");
    assert!(got.target.contains("Action=AssumeRoleWithOIDC") && got.target.contains("Timestamp="));
    assert!(!got.target.contains("OIDCToken"), "long values travel in the body");
    assert_eq!(got.param("OIDCToken").as_deref(), Some("tok.en"));
    assert_eq!(got.param("Signature"), None);
}
