//! The OSS service: addressing (path style and virtual-hosted), operation routing by method and sub-resource,
//! signature checks (V1 and V4, header and presigned), then the operations themselves.
//!
//! **Addressing.** A host that is an IP address, `localhost` or `oss-*.aliyuncs.com` takes path style
//! (`/BUCKET/KEY`); `BUCKET.` before such a host is virtual-hosted style. A bucket name is 3-63 lowercase letters,
//! digits and hyphens, not starting or ending with a hyphen ([`valid_bucket_name`]): PutBucket answers 400
//! `InvalidBucketName` for any other, every other operation 404 `NoSuchBucket`. A key longer than 1023 bytes is
//! 400 `InvalidObjectName`. These checks come before the signature's.
//!
//! **Signatures.** Every request must be signed with the emulator's key pair or with temporary credentials from
//! STS AssumeRole (see [`crate::sts`]); there is no anonymous access. Accepted: V1 in the `Authorization: OSS
//! AK:SIGNATURE` header (signed over `Date` or `x-oss-date`, either is accepted) or presigned (`OSSAccessKeyId`,
//! `Expires`, `Signature`), and V4 in the `Authorization: OSS4-HMAC-SHA256 ...` header (with `x-oss-date`) or
//! presigned (`x-oss-signature-version=OSS4-HMAC-SHA256`, `x-oss-credential`, `x-oss-date`, `x-oss-expires`,
//! `x-oss-signature`, `x-oss-additional-headers`). S3 signatures (`AWS ...`, `AWS4-HMAC-SHA256 ...`) are not
//! accepted. Answers: no signature 403 `AccessDenied`; a malformed one 400 `InvalidArgument`; an unknown key 403
//! `InvalidAccessKeyId`; a wrong signature 403 `SignatureDoesNotMatch` (with `StringToSign` and
//! `StringToSignBytes`, as OSS gives them); a header signature more than 15 minutes from the server's clock 403
//! `RequestTimeTooSkewed`, an unparseable date 403 `AccessDenied`; a presigned URL past its expiry 403
//! `AccessDenied` ("Request has expired."); temporary credentials without their token (`x-oss-security-token`
//! header, or `security-token` / `x-oss-security-token` query parameter) or with another one 403
//! `InvalidSecurityToken`, after their expiry 403 `SecurityTokenExpired`.
//!
//! **Operations** ([`Op`]; the names are those fault rules and the request log use; sub-resources are query
//! parameters). Every listing answers 400 `InvalidArgument` for a `max-*` value outside its range, and
//! `encoding-type=url` URL-encodes the keys, prefixes and markers it shows.
//!
//! | operation | request and parameters | checks and answers |
//! |---|---|---|
//! | ListBuckets | `GET /`; `prefix`, `marker`, `max-keys` (1-1000, default 1000) | the buckets in name order after `marker`, with `Location`, `Region`, endpoints and `StorageClass`; `IsTruncated` and `NextMarker` when more remain |
//! | PutBucket | `PUT /BUCKET`; optional body `CreateBucketConfiguration` with `StorageClass`, `DataRedundancyType`, `LocationConstraint` | body at most 8 MiB of well-formed XML rooted at `CreateBucketConfiguration` (400 `MalformedXML`); storage class one of `Standard`, `IA`, `Archive`, `ColdArchive`, `DeepColdArchive`, any case (400 `InvalidArgument`); redundancy `LRS` (default) or `ZRS` (400 `InvalidArgument`); the region is `LocationConstraint` (with or without `oss-`), else the endpoint host's region (`oss-REGION[-internal].aliyuncs.com`), else a V4 signature's region if served, else the default region, and must be served (400 `InvalidLocationConstraint`); an existing bucket with another region, storage class or redundancy is 409 `BucketAlreadyExists`, with the same ones 200 and unchanged |
//! | GetBucketInfo | `GET /BUCKET?bucketInfo` | 404 `NoSuchBucket`; region, endpoints, creation date, storage class, redundancy, the owner, and fixed values for the rest (ACL `private`, no server-side encryption, versioning empty, access monitor and transfer acceleration `Disabled`, `ResourceGroupId` `rg-default`) |
//! | GetBucketLocation | `GET /BUCKET?location` | 404 `NoSuchBucket`; `oss-REGION` |
//! | GetBucketAcl | `GET /BUCKET?acl` | 404 `NoSuchBucket`; always `private` |
//! | ListObjects | `GET /BUCKET`; `prefix`, `delimiter`, `marker`, `max-keys` (1-1000, default 100), `encoding-type` | 404 `NoSuchBucket`; objects in key order after `marker` (`Key`, `LastModified`, `ETag`, `Type` Normal or Multipart, `Size`, `StorageClass`, `Owner`), keys under `prefix` rolled up at `delimiter` into `CommonPrefixes`, `NextMarker` when truncated |
//! | ListObjectsV2 | `GET /BUCKET?list-type=2`; `prefix`, `delimiter`, `continuation-token`, `start-after`, `max-keys`, `fetch-owner`, `encoding-type` | as ListObjects, with `KeyCount`, `NextContinuationToken` (the emulator's token: the next marker, base64url) and `Owner` only with `fetch-owner=true`; a token it cannot decode is 400 `InvalidArgument` |
//! | DeleteBucket | `DELETE /BUCKET` | 404 `NoSuchBucket`; 409 `BucketNotEmpty` while it holds objects or unfinished multipart uploads; 204 |
//! | ListMultipartUploads | `GET /BUCKET?uploads`; `prefix`, `delimiter`, `key-marker`, `upload-id-marker`, `max-uploads` (1-1000, default 1000), `encoding-type` | 404 `NoSuchBucket`; unfinished uploads ordered by key then upload id, rolled up at `delimiter` |
//! | DeleteMultipleObjects | `POST /BUCKET?delete`; body `Delete` with `Quiet` and `Object`/`Key`; `Content-MD5`, `encoding-type` | `Content-MD5`, when sent, is the base64 MD5 of the body (400 `InvalidDigest`); the body is at most 8 MiB of XML rooted at `Delete` with 1-1000 keys, each `Object` with a `Key` (400 `MalformedXML`); keys percent-decoded with `encoding-type=url`; 404 `NoSuchBucket`; deletes each key (a missing key counts as deleted) and lists them under `Deleted` unless `Quiet` is `true` |
//! | PutObject | `PUT /BUCKET/KEY`; `Content-Type` (default `application/octet-stream`), `Content-MD5`, `Cache-Control`, `Content-Disposition`, `Content-Encoding`, `Content-Language`, `Expires`, `x-oss-meta-*`, `x-oss-storage-class`, `x-oss-forbid-overwrite` | storage class as PutBucket's (400 `InvalidArgument`); 404 `NoSuchBucket` before the body is read; a `Content-Length` or a body above [`crate::EmulatorConfig::max_put_size`] (5 GiB by default, OSS's limit) is 400 `EntityTooLarge`; a `Content-MD5` that is not the base64 of 16 bytes or does not match the body is 400 `InvalidDigest`; `x-oss-forbid-overwrite: true` on an existing key is 409 `FileAlreadyExists`; answers `ETag` (the body's MD5, upper-case hex), `x-oss-hash-crc64ecma` and `Content-MD5` |
//! | GetObject | `GET /BUCKET/KEY`; `Range`, `x-oss-range-behavior`, `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`, `response-content-type` and the other `response-*` parameters | 404 `NoSuchBucket` / `NoSuchKey`; a failed `If-Match` or `If-Unmodified-Since` is 412 `PreconditionFailed`, a matching `If-None-Match` or an unmodified `If-Modified-Since` 304; one range `bytes=A-B`, `bytes=A-` or `bytes=-N` answers 206 with `Content-Range`; as in OSS a malformed, multiple or out-of-range `Range` answers the whole object (200), unless `x-oss-range-behavior: standard`, which clamps the end to the object and answers 416 `InvalidRange` for a start past the end; headers: `Content-Type`, `ETag`, `Last-Modified`, `Accept-Ranges`, `x-oss-object-type`, `x-oss-hash-crc64ecma`, `x-oss-storage-class`, `Content-MD5` (simple uploads only), the stored headers and `x-oss-meta-*`, then the `response-*` overrides |
//! | HeadObject | `HEAD /BUCKET/KEY`; the conditional headers | as GetObject without a body, `Range` or `response-*` overrides, with `Content-Length` the object's size; errors carry no body |
//! | GetObjectMeta | `HEAD /BUCKET/KEY?objectMeta` | answered exactly as HeadObject |
//! | DeleteObject | `DELETE /BUCKET/KEY` | 404 `NoSuchBucket`; 204 whether or not the key existed |
//! | InitiateMultipartUpload | `POST /BUCKET/KEY?uploads`; the same headers as PutObject | storage class (400 `InvalidArgument`); 404 `NoSuchBucket`; the content type, stored headers, `x-oss-meta-*` and storage class are kept for the completed object; answers `UploadId` |
//! | UploadPart | `PUT /BUCKET/KEY?partNumber=N&uploadId=ID`; `Content-MD5` | `partNumber` 1-10000 ([`store::MAX_PART_NUMBER`]; 400 `InvalidArgument`); 404 `NoSuchBucket`; the upload exists for this bucket and key (404 `NoSuchUpload`), checked before the body is read; size and `Content-MD5` as PutObject (400 `EntityTooLarge`, `InvalidDigest`); a part number uploaded again replaces the part; answers `ETag`, `x-oss-hash-crc64ecma`, `Content-MD5` |
//! | CompleteMultipartUpload | `POST /BUCKET/KEY?uploadId=ID`; body `CompleteMultipartUpload` with `Part` (`PartNumber`, `ETag`), or `x-oss-complete-all: yes` with no body; `x-oss-forbid-overwrite`, `encoding-type` | both a body and `x-oss-complete-all` is 400 `InvalidArgument`; the body at most 8 MiB of XML rooted at `CompleteMultipartUpload` with at least one `Part`, each with a numeric `PartNumber` and an `ETag` (400 `MalformedXML`); 404 `NoSuchBucket`, 404 `NoSuchUpload`; part numbers strictly ascending (400 `InvalidPartOrder`); each listed part uploaded with that ETag (quotes optional, any case; 400 `InvalidPart`); every part but the last at least 100 KiB ([`store::MIN_PART_SIZE`]; 400 `EntityTooSmall`); `x-oss-forbid-overwrite: true` on an existing key is 409 `FileAlreadyExists`; parts not listed are discarded; answers `Location`, `Bucket`, `Key`, `ETag` (MD5 of the parts' MD5s, then `-COUNT`) and the combined `x-oss-hash-crc64ecma` |
//! | AbortMultipartUpload | `DELETE /BUCKET/KEY?uploadId=ID` | 404 `NoSuchBucket`, 404 `NoSuchUpload`; 204, the parts deleted |
//! | ListParts | `GET /BUCKET/KEY?uploadId=ID`; `max-parts` (1-1000, default 1000), `part-number-marker`, `encoding-type` | a marker that is not a number is 400 `InvalidArgument`; 404 `NoSuchBucket`, 404 `NoSuchUpload`; parts after the marker in number order with `ETag`, `HashCrc64ecma`, `Size`, `LastModified`, and `NextPartNumberMarker` |
//!
//! Anything else is 501 `NotImplemented` (after the signature is checked): CopyObject (`x-oss-copy-source`),
//! AppendObject, PostObject, ACL changes and object ACLs (`?acl` on an object or a PUT), and the sub-resources in
//! `UNSUPPORTED_SUB_RESOURCES` (tagging, versioning and versions, lifecycle, CORS, policy, symlink, restore,
//! image processing, ...). Error bodies are OSS's XML `Error` (`Code`, `Message`, `RequestId`, `HostId`, and the
//! extra elements OSS adds for the code, such as `BucketName`, `Key`, `UploadId`); some carry an `EC` and an
//! `x-oss-ec` header.
//!
//! **Differs.** One account owns everything: there is no ACL or bucket-policy enforcement (any valid signature may
//! do anything; `x-oss-acl` and `x-oss-object-acl` are not read), RAM policies are not applied, and GetBucketAcl
//! always answers `private`. No versioning, object tagging, server-side encryption (its headers are ignored),
//! lifecycle, or restore: Archive and colder objects are readable at once. A bucket is not tied to its endpoint:
//! a request through another region's host is served (OSS refuses it), and a V4 signature's region and product
//! are not compared with the bucket's; `x-oss-content-sha256` is signed as sent but never compared with the body,
//! and `x-oss-expires` is not bounded. A client's `x-oss-hash-crc64ecma` is not checked (the emulator computes and
//! answers its own); DeleteMultipleObjects does not require `Content-MD5`. ListBuckets' `max-keys` defaults to 1000
//! (OSS documents 100). GetObjectMeta answers every HeadObject header, where OSS answers only a few.
//! `x-oss-forbid-overwrite` is read on PutObject and CompleteMultipartUpload only: sent with
//! InitiateMultipartUpload it is ignored. PutObject and UploadPart share one size limit,
//! [`crate::EmulatorConfig::max_put_size`]. A body that stalls for the idle timeout, or a client that goes away
//! mid-body, gets its connection closed with no answer.

pub mod error;
mod ops;
pub mod store;

use crate::body::Body;
use crate::credentials::TokenProblem;
use crate::faults::{Decision, InjectedError};
use crate::state::EmulatorState;
use error::OssError;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use imgport_auth::sign::{oss_v1, oss_v4, VerifyError};
use imgport_auth::time::UtcTime;
use imgport_auth::SignableRequest;
use std::sync::Arc;

/// How far a request's signing time may be from the server's clock.
pub const MAX_SKEW_SECONDS: i64 = 15 * 60;

/// Builds a response with the headers every OSS answer carries; header values that are not valid HTTP are
/// skipped rather than failing the response.
pub(crate) fn response(status: u16, request_id: &str, headers: Vec<(String, String)>, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert("server", HeaderValue::from_static("AliyunOSS"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-oss-request-id", v);
    }
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
            h.append(k, v);
        }
    }
    r
}

/// The operations, named as in the OSS API reference (the names fault rules and the log use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    ListBuckets,
    PutBucket,
    GetBucketInfo,
    GetBucketLocation,
    GetBucketAcl,
    ListObjects,
    ListObjectsV2,
    DeleteBucket,
    ListMultipartUploads,
    DeleteMultipleObjects,
    PutObject,
    GetObject,
    HeadObject,
    GetObjectMeta,
    DeleteObject,
    InitiateMultipartUpload,
    UploadPart,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    Unsupported,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::ListBuckets => "ListBuckets",
            Op::PutBucket => "PutBucket",
            Op::GetBucketInfo => "GetBucketInfo",
            Op::GetBucketLocation => "GetBucketLocation",
            Op::GetBucketAcl => "GetBucketAcl",
            Op::ListObjects => "ListObjects",
            Op::ListObjectsV2 => "ListObjectsV2",
            Op::DeleteBucket => "DeleteBucket",
            Op::ListMultipartUploads => "ListMultipartUploads",
            Op::DeleteMultipleObjects => "DeleteMultipleObjects",
            Op::PutObject => "PutObject",
            Op::GetObject => "GetObject",
            Op::HeadObject => "HeadObject",
            Op::GetObjectMeta => "GetObjectMeta",
            Op::DeleteObject => "DeleteObject",
            Op::InitiateMultipartUpload => "InitiateMultipartUpload",
            Op::UploadPart => "UploadPart",
            Op::CompleteMultipartUpload => "CompleteMultipartUpload",
            Op::AbortMultipartUpload => "AbortMultipartUpload",
            Op::ListParts => "ListParts",
            Op::Unsupported => "Unsupported",
        }
    }
}

fn has(query: &[(String, String)], name: &str) -> bool {
    query.iter().any(|(k, _)| k == name)
}

/// Sub-resources that name operations the emulator does not implement.
const UNSUPPORTED_SUB_RESOURCES: &[&str] = &[
    "append",
    "cors",
    "encryption",
    "inventory",
    "lifecycle",
    "logging",
    "policy",
    "referer",
    "replication",
    "restore",
    "stat",
    "symlink",
    "tagging",
    "versioning",
    "versions",
    "website",
    "worm",
    "x-oss-process",
];

pub(crate) fn identify(
    method: &Method,
    bucket: Option<&str>,
    key: Option<&str>,
    q: &[(String, String)],
    copy: bool,
) -> Op {
    if UNSUPPORTED_SUB_RESOURCES.iter().any(|s| has(q, s)) {
        return Op::Unsupported;
    }
    match (bucket, key) {
        (None, _) => match *method {
            Method::GET => Op::ListBuckets,
            _ => Op::Unsupported,
        },
        (Some(_), None) => match *method {
            Method::PUT if has(q, "acl") => Op::Unsupported,
            Method::PUT => Op::PutBucket,
            Method::GET if has(q, "bucketInfo") => Op::GetBucketInfo,
            Method::GET if has(q, "location") => Op::GetBucketLocation,
            Method::GET if has(q, "acl") => Op::GetBucketAcl,
            Method::GET if has(q, "uploads") => Op::ListMultipartUploads,
            Method::GET if q.iter().any(|(k, v)| k == "list-type" && v == "2") => Op::ListObjectsV2,
            Method::GET => Op::ListObjects,
            Method::DELETE => Op::DeleteBucket,
            Method::POST if has(q, "delete") => Op::DeleteMultipleObjects,
            _ => Op::Unsupported,
        },
        (Some(_), Some(_)) => match *method {
            _ if has(q, "acl") => Op::Unsupported,
            Method::PUT if copy => Op::Unsupported,
            Method::PUT if has(q, "partNumber") || has(q, "uploadId") => Op::UploadPart,
            Method::PUT => Op::PutObject,
            Method::GET if has(q, "uploadId") => Op::ListParts,
            Method::GET => Op::GetObject,
            Method::HEAD if has(q, "objectMeta") => Op::GetObjectMeta,
            Method::HEAD => Op::HeadObject,
            Method::DELETE if has(q, "uploadId") => Op::AbortMultipartUpload,
            Method::DELETE => Op::DeleteObject,
            Method::POST if has(q, "uploads") => Op::InitiateMultipartUpload,
            Method::POST if has(q, "uploadId") => Op::CompleteMultipartUpload,
            _ => Op::Unsupported,
        },
    }
}

/// Bucket names: 3-63 characters of lowercase letters, digits and hyphens, starting and ending with a letter or
/// digit.
pub fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The region an OSS host name names (`oss-cn-hangzhou.aliyuncs.com`, `oss-cn-hangzhou-internal...`).
fn region_of_host(host: &str) -> Option<String> {
    let first = host.split('.').next()?;
    let r = first.strip_prefix("oss-")?;
    let r = r.strip_suffix("-internal").unwrap_or(r);
    (r != "accelerate" && !r.is_empty()).then(|| r.to_string())
}

/// Splits a request into bucket and key. Hosts this emulator answers for (an IP address, `localhost`, the
/// Alibaba Cloud OSS domains) take path style; `<bucket>.<such a host>` is virtual-hosted style.
pub(crate) fn address(host: &str, path: &str) -> (Option<String>, Option<String>) {
    let host = host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|c| c.is_ascii_digit())).map_or(host, |(h, _)| h);
    let is_service_host = |h: &str| {
        h.parse::<std::net::IpAddr>().is_ok()
            || h.trim_matches(|c| c == '[' || c == ']').parse::<std::net::IpAddr>().is_ok()
            || h == "localhost"
            || (h.ends_with(".aliyuncs.com") && h.starts_with("oss-"))
    };
    let virtual_bucket = match host.split_once('.') {
        Some((label, rest)) if !is_service_host(host) && is_service_host(rest) => Some(label.to_string()),
        _ => None,
    };
    let rest = path.strip_prefix('/').unwrap_or(path);
    match virtual_bucket {
        Some(b) => (Some(b), Some(rest.to_string()).filter(|k| !k.is_empty())),
        None => {
            let (b, k) = rest.split_once('/').unwrap_or((rest, ""));
            (Some(b.to_string()).filter(|b| !b.is_empty()), Some(k.to_string()).filter(|k| !k.is_empty()))
        }
    }
}

/// Who signed a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub access_key_id: String,
    /// The V4 credential scope's region.
    pub region: Option<String>,
}

fn iso_millis(t: i64) -> String {
    let u = UtcTime::from_unix(t);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z", u.year, u.month, u.day, u.hour, u.minute, u.second)
}

fn string_to_sign_bytes(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02X} ")).collect()
}

fn authenticate(
    state: &EmulatorState,
    req: &SignableRequest,
    bucket: Option<&str>,
    key: Option<&str>,
    now: i64,
) -> Result<Principal, OssError> {
    let keys = state.credentials.as_ref();
    let v4 = req.query_param("x-oss-signature-version").is_some()
        || req.header("Authorization").is_some_and(|a| a.starts_with("OSS4-HMAC-SHA256"));
    let result = if v4 {
        oss_v4::verify(req, oss_v4::Resource { bucket, key }, keys)
    } else {
        oss_v1::verify(req, bucket, key, keys)
    };
    let verified = match result {
        Ok(v) => v,
        Err(VerifyError::Unsigned) => {
            return Err(OssError::new(
                403,
                "AccessDenied",
                "You have no right to access this object because of bucket acl.",
            ))
        }
        Err(VerifyError::Malformed(m)) => {
            return Err(OssError::new(400, "InvalidArgument", format!("Authorization is invalid: {m}")))
        }
        Err(VerifyError::UnknownAccessKey(ak)) => {
            return Err(OssError::new(
                403,
                "InvalidAccessKeyId",
                "The OSS Access Key Id you provided does not exist in our records.",
            )
            .with("OSSAccessKeyId", ak))
        }
        Err(VerifyError::Mismatch { access_key_id, string_to_sign }) => {
            let provided = req
                .query_param("Signature")
                .or_else(|| req.query_param("x-oss-signature"))
                .map(str::to_string)
                .or_else(|| {
                    req.header("Authorization").map(|a| {
                        a.rsplit_once("Signature=")
                            .map(|(_, s)| s)
                            .or_else(|| a.rsplit_once(':').map(|(_, s)| s))
                            .unwrap_or("")
                            .to_string()
                    })
                })
                .unwrap_or_default();
            return Err(OssError::new(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            )
            .with("OSSAccessKeyId", access_key_id)
            .with("SignatureProvided", provided)
            .with("StringToSignBytes", string_to_sign_bytes(&string_to_sign))
            .with("StringToSign", string_to_sign)
            .ec("0002-00000040"));
        }
    };
    if verified.presigned {
        let expires = verified.expires_at.unwrap_or(0);
        if now > expires {
            return Err(OssError::new(403, "AccessDenied", "Request has expired.")
                .with("Expires", iso_millis(expires))
                .with("ServerTime", iso_millis(now)));
        }
    } else {
        let Some(signed_at) = verified.signed_at else {
            return Err(OssError::new(403, "AccessDenied", "OSS authentication requires a valid Date."));
        };
        if (now - signed_at).abs() > MAX_SKEW_SECONDS {
            return Err(OssError::new(
                403,
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.",
            )
            .with("RequestTime", iso_millis(signed_at))
            .with("ServerTime", iso_millis(now))
            .with("MaxAllowedSkewMilliseconds", (MAX_SKEW_SECONDS * 1000).to_string()));
        }
    }
    let token = req
        .header("x-oss-security-token")
        .or_else(|| req.query_param("security-token"))
        .or_else(|| req.query_param("x-oss-security-token"));
    match state.credentials.check_token(&verified.access_key_id, token, now, state.faults.tokens_expire_at()) {
        Ok(()) => {}
        Err(TokenProblem::Invalid) => {
            return Err(OssError::new(403, "InvalidSecurityToken", "The security token you provided is invalid.")
                .with("OSSAccessKeyId", verified.access_key_id)
                .ec("0002-00000006"))
        }
        Err(TokenProblem::Expired) => {
            return Err(OssError::new(403, "SecurityTokenExpired", "The security token you provided has expired.")
                .with("OSSAccessKeyId", verified.access_key_id)
                .ec("0002-00000007"))
        }
    }
    Ok(Principal { access_key_id: verified.access_key_id, region: verified.region })
}

/// What the server needs back from a request besides the response: names for the log.
#[derive(Debug, Default)]
pub struct Outcome {
    pub operation: String,
    pub fault: Option<String>,
}

/// A response, or an instruction to drop the connection without one.
pub enum Reply {
    Response(Response<Body>),
    Drop,
}

pub(crate) fn injected_error(e: InjectedError) -> OssError {
    match e {
        InjectedError::InternalError => OssError::internal("We encountered an internal error. Please try again."),
        InjectedError::ServiceUnavailable => {
            OssError::new(503, "ServiceUnavailable", "Please reduce your request rate or try again later.")
        }
        InjectedError::SlowDown => OssError::new(503, "SlowDown", "Please reduce your request rate."),
    }
}

/// Handles one OSS request.
pub async fn handle(
    state: &Arc<EmulatorState>,
    req: Request<Incoming>,
    request_id: &str,
    decision: impl FnOnce(&str) -> Decision,
    out: &mut Outcome,
) -> Reply {
    let (parts, body) = req.into_parts();
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let head = parts.method == Method::HEAD;
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string())))
        .collect();
    let signable = match SignableRequest::from_target(parts.method.as_str(), target, headers) {
        Ok(r) => r,
        Err(_) => {
            out.operation = "Invalid".into();
            let e = OssError::new(400, "InvalidURI", "Couldn't parse the specified URI.");
            return Reply::Response(e.into_response(request_id, &host, head));
        }
    };
    let (bucket, key) = address(&host, &signable.path);
    let copy = signable.header("x-oss-copy-source").is_some();
    let op = identify(&parts.method, bucket.as_deref(), key.as_deref(), &signable.query, copy);
    out.operation = op.name().to_string();
    let d = decision(op.name());
    out.fault = d.describe();
    if !d.latency.is_zero() {
        tokio::time::sleep(d.latency).await;
    }
    let mut body = Some(body);
    let now = state.now();
    let date = UtcTime::from_unix(now).http_date();
    if let Some(e) = d.error {
        let mut r = injected_error(e).into_response(request_id, &host, head);
        if let Ok(v) = HeaderValue::from_str(&date) {
            r.headers_mut().insert("date", v);
        }
        return Reply::Response(finish(settle_body(state, &mut body, r).await, d.drop_response_after));
    }
    let reply = run(state, op, &signable, &mut body, bucket, key, &host, request_id, now, d.drop_request_after).await;
    match reply {
        Ok(mut r) => {
            if let Ok(v) = HeaderValue::from_str(&date) {
                r.headers_mut().insert("date", v);
            }
            Reply::Response(finish(r, d.drop_response_after))
        }
        Err(ops::Failure::Drop) => Reply::Drop,
        Err(ops::Failure::Error(e)) => {
            let mut r = e.into_response(request_id, &host, head);
            if let Ok(v) = HeaderValue::from_str(&date) {
                r.headers_mut().insert("date", v);
            }
            Reply::Response(finish(settle_body(state, &mut body, r).await, d.drop_response_after))
        }
    }
}

/// Largest unread request body drained before an early error, so the connection stays usable.
const DRAIN_LIMIT: u64 = 8 << 20;

/// An answer given before the request body was read: a small body is read and discarded (never kept) so the
/// client can reuse the connection; for a large one the connection is closed after the answer instead.
async fn settle_body(state: &EmulatorState, body: &mut Option<Incoming>, mut r: Response<Body>) -> Response<Body> {
    use http_body::Body as _;
    let Some(b) = body.take() else { return r };
    if b.is_end_stream() {
        return r;
    }
    let small = b.size_hint().upper().is_some_and(|n| n <= DRAIN_LIMIT);
    if small && crate::body::drain(b, DRAIN_LIMIT, state.idle_timeout).await {
        return r;
    }
    r.headers_mut().insert("connection", HeaderValue::from_static("close"));
    r
}

fn finish(r: Response<Body>, drop_after: Option<u64>) -> Response<Body> {
    match drop_after {
        Some(n) => r.map(|b| crate::body::DropAfter::wrap(b, n)),
        None => r,
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    state: &Arc<EmulatorState>,
    op: Op,
    req: &SignableRequest,
    body: &mut Option<Incoming>,
    bucket: Option<String>,
    key: Option<String>,
    host: &str,
    request_id: &str,
    now: i64,
    drop_request_after: Option<u64>,
) -> Result<Response<Body>, ops::Failure> {
    if let Some(b) = &bucket {
        let creating = op == Op::PutBucket;
        if creating && !valid_bucket_name(b) {
            return Err(OssError::new(400, "InvalidBucketName", "The specified bucket is not valid.")
                .with("BucketName", b)
                .into());
        }
        if !creating && !valid_bucket_name(b) {
            return Err(OssError::no_such_bucket(b).into());
        }
    }
    if let Some(k) = &key {
        if k.len() > 1023 {
            return Err(OssError::new(
                400,
                "InvalidObjectName",
                "The length of the object name must be less than 1024.",
            )
            .into());
        }
    }
    let principal = authenticate(state, req, bucket.as_deref(), key.as_deref(), now)?;
    if op == Op::Unsupported {
        return Err(OssError::not_implemented("This operation").into());
    }
    let ctx = ops::Ctx {
        state: state.clone(),
        req,
        bucket: bucket.unwrap_or_default(),
        key: key.unwrap_or_default(),
        host: host.to_string(),
        request_id: request_id.to_string(),
        now,
        drop_request_after,
        principal,
        host_region: region_of_host(host),
    };
    ops::run(op, &ctx, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addressing() {
        assert_eq!(address("127.0.0.1:8080", "/b/k/x"), (Some("b".into()), Some("k/x".into())));
        assert_eq!(address("127.0.0.1:8080", "/b"), (Some("b".into()), None));
        assert_eq!(address("127.0.0.1:8080", "/b/"), (Some("b".into()), None));
        assert_eq!(address("127.0.0.1", "/"), (None, None));
        assert_eq!(address("[::1]:9", "/b/k"), (Some("b".into()), Some("k".into())));
        assert_eq!(address("bkt.localhost:9000", "/k/x"), (Some("bkt".into()), Some("k/x".into())));
        assert_eq!(address("bkt.oss-cn-hangzhou.aliyuncs.com", "/"), (Some("bkt".into()), None));
        assert_eq!(address("oss-cn-hangzhou.aliyuncs.com", "/bkt/k"), (Some("bkt".into()), Some("k".into())));
        assert_eq!(address("localhost", "/bkt/k"), (Some("bkt".into()), Some("k".into())));
        assert_eq!(region_of_host("bkt.oss-cn-hangzhou.aliyuncs.com"), None);
        assert_eq!(region_of_host("oss-cn-beijing-internal.aliyuncs.com"), Some("cn-beijing".into()));
    }

    #[test]
    fn bucket_names() {
        for ok in ["abc", "a-b-c", "0bucket9", &"a".repeat(63)] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in ["ab", "-abc", "abc-", "ABC", "a_b", "a.b", &"a".repeat(64), ""] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn routing() {
        let q = |s: &[&str]| s.iter().map(|k| (k.to_string(), String::new())).collect::<Vec<_>>();
        let (b, k) = (Some("b"), Some("k"));
        assert_eq!(identify(&Method::POST, b, k, &q(&["uploads"]), false), Op::InitiateMultipartUpload);
        assert_eq!(identify(&Method::PUT, b, k, &q(&["partNumber", "uploadId"]), false), Op::UploadPart);
        assert_eq!(identify(&Method::GET, b, k, &q(&["uploadId"]), false), Op::ListParts);
        assert_eq!(identify(&Method::GET, b, None, &q(&["uploads"]), false), Op::ListMultipartUploads);
        assert_eq!(identify(&Method::GET, b, None, &[("list-type".into(), "2".into())], false), Op::ListObjectsV2);
        assert_eq!(identify(&Method::GET, b, k, &q(&["tagging"]), false), Op::Unsupported);
        assert_eq!(identify(&Method::PUT, b, k, &[], true), Op::Unsupported);
        assert_eq!(identify(&Method::GET, None, None, &[], false), Op::ListBuckets);
    }
}
