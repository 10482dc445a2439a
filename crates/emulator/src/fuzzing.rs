//! Entry points for the fuzz targets in `fuzz/`: the emulator's parsers of what clients send (XML bodies, query
//! strings, form bodies, headers), without a server. Any input must give an answer or an error, never a panic,
//! a stack overflow or a huge allocation. Not a stable API.

use crate::credentials::CredentialStore;
use crate::rpc::Params;
use imgport_auth::encode::parse_query;
use imgport_auth::sign::{acs3, oss_v1, oss_v4, rpc_v1, sha256_hex};
use imgport_auth::SignableRequest;
use std::net::SocketAddr;

const AK: &str = "LTAI5tFuzzingKey0000";

fn keys() -> CredentialStore {
    // No data folder: nothing is written.
    match CredentialStore::open(AK, "fuzzing-secret", None) {
        Ok(k) => k,
        Err(_) => unreachable!("a store without a data folder opens"),
    }
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// An XML request body (CreateBucketConfiguration, Delete, CompleteMultipartUpload) through the reader and the
/// look-ups the handlers make.
pub fn xml_body(data: &[u8]) {
    let Ok(root) = crate::xml::parse(&text(data)) else { return };
    let _ = root.child_text("StorageClass");
    let _ = root.child_text("Quiet");
    for part in root.children_named("Part").chain(root.children_named("Object")) {
        let _ = part.child_text("PartNumber").map(|n| n.parse::<u32>());
        let _ = (part.child_text("ETag"), part.child_text("Key"));
    }
    // What the writer makes of the text reads back the same.
    let mut w = crate::xml::XmlWriter::new();
    w.elem("T", &root.text);
    let back = crate::xml::parse(&w.finish()).map(|e| e.text.clone());
    assert_eq!(back.ok().as_deref(), Some(root.text.as_str()), "the writer's escaping reads back");
}

/// A request target (path and query string) as OSS and the RPC gateway take it apart, and every signature
/// verifier over the parameters it carries.
pub fn query(data: &[u8]) {
    let raw = text(data);
    let _ = parse_query(&raw);
    let target = if raw.starts_with('/') { raw } else { format!("/?{raw}") };
    let host = "127.0.0.1:9400".to_string();
    let Ok(req) = SignableRequest::from_target("GET", &target, vec![("host".into(), host.clone())]) else { return };
    let (bucket, key) = crate::oss::address(&host, &req.path);
    let _ = crate::oss::identify(&hyper::Method::GET, bucket.as_deref(), key.as_deref(), &req.query, false);
    let keys = keys();
    let _ = oss_v1::verify(&req, bucket.as_deref(), key.as_deref(), &keys);
    let _ = oss_v4::verify(&req, oss_v4::Resource { bucket: bucket.as_deref(), key: key.as_deref() }, &keys);
    let _ = rpc_v1::verify("GET", &req.query, &keys);
    let _ = req.target();
}

/// An RPC form body: its parameters, the list parameters services read, and the V1 verifier.
pub fn form(data: &[u8]) {
    let Ok(params) = parse_query(&text(data)) else { return };
    let _ = rpc_v1::verify("POST", &params, &keys());
    let params = Params(params);
    for list in ["DiskDeviceMapping", "Tag", "ImageId", "LaunchPermission"] {
        let _ = params.indexed(list);
    }
    let _ = params.require("Action");
}

/// Header lines (`name: value`, one per line, the first line a request target): virtual-hosted addressing, the
/// admin API's Host check and every signature verifier, ACS3's coverage rule included.
pub fn headers(data: &[u8]) {
    let raw = text(data);
    let mut lines = raw.split('\n');
    let target = lines.next().unwrap_or("/").trim().to_string();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let Ok(req) = SignableRequest::from_target("PUT", &target, headers) else { return };
    let host = req.header("host").unwrap_or("").to_string();
    let (bucket, key) = crate::oss::address(&host, &req.path);
    let copy = req.header("x-oss-copy-source").is_some();
    let _ = crate::oss::identify(&hyper::Method::PUT, bucket.as_deref(), key.as_deref(), &req.query, copy);
    for addr in ["127.0.0.1:9400", "[::]:9400", "0.0.0.0:0"] {
        if let Ok(a) = addr.parse::<SocketAddr>() {
            let _ = crate::server::host_names_listener(a, &host);
        }
    }
    let keys = keys();
    let _ = oss_v1::verify(&req, bucket.as_deref(), key.as_deref(), &keys);
    let _ = oss_v4::verify(&req, oss_v4::Resource { bucket: bucket.as_deref(), key: key.as_deref() }, &keys);
    let _ = crate::rpc::acs3_coverage(&req);
    let _ = acs3::verify(&req, &sha256_hex(b""), &keys);
    let _ = imgport_auth::time::parse_iso8601(req.header("x-acs-date").unwrap_or(""));
    let _ = imgport_auth::time::parse_http_date(req.header("date").unwrap_or(""));
}
