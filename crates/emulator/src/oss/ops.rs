//! The OSS operations: request parameters in, the real service's headers and XML out.

use super::error::OssError;
use super::store::{NewObject, ObjectMeta, Received, StoreError, MAX_PART_NUMBER};
use super::{response, Op, Principal};
use crate::body::{self, Body, FileBody, RecvError};
use crate::state::EmulatorState;
use crate::xml::{self, XmlWriter};
use base64::Engine;
use hyper::body::Incoming;
use hyper::Response;
use imgport_auth::encode::{percent_decode, uri_encode};
use imgport_auth::time::{parse_http_date, UtcTime};
use imgport_auth::SignableRequest;
use std::sync::Arc;

/// Why an operation produced no normal response.
pub enum Failure {
    Error(OssError),
    /// Close the connection without a response (an injected drop, or the client went away mid-body).
    Drop,
}

impl From<OssError> for Failure {
    fn from(e: OssError) -> Self {
        Failure::Error(e)
    }
}

/// Largest XML request body accepted (10,000 parts in a CompleteMultipartUpload fit easily).
const MAX_XML_BODY: usize = 8 << 20;

pub struct Ctx<'a> {
    pub state: Arc<EmulatorState>,
    pub req: &'a SignableRequest,
    pub bucket: String,
    pub key: String,
    pub host: String,
    pub request_id: String,
    pub now: i64,
    pub drop_request_after: Option<u64>,
    pub principal: Principal,
    pub host_region: Option<String>,
}

impl Ctx<'_> {
    fn q(&self, name: &str) -> Option<&str> {
        self.req.query_param(name)
    }

    fn h(&self, name: &str) -> Option<&str> {
        self.req.header(name)
    }

    fn store_err(&self, e: StoreError) -> Failure {
        Failure::Error(OssError::from_store(e, &self.bucket, &self.key, self.q("uploadId").unwrap_or("")))
    }

    fn url_encoding(&self) -> bool {
        self.q("encoding-type") == Some("url")
    }

    /// A key or prefix as the response shows it: URL-encoded when the client asked `encoding-type=url`.
    fn enc(&self, s: &str) -> String {
        if self.url_encoding() {
            uri_encode(s, true)
        } else {
            s.to_string()
        }
    }

    fn xml(&self, status: u16, text: String, mut headers: Vec<(String, String)>) -> Response<Body> {
        headers.push(("Content-Type".into(), "application/xml".into()));
        response(status, &self.request_id, headers, body::full(text))
    }

    fn empty(&self, status: u16, headers: Vec<(String, String)>) -> Response<Body> {
        response(status, &self.request_id, headers, body::empty())
    }

    fn owner(&self, w: &mut XmlWriter) {
        w.open("Owner").elem("ID", &self.state.account_id).elem("DisplayName", &self.state.account_id).close("Owner");
    }

    fn store(&self) -> Arc<super::store::Store> {
        self.state.store.clone()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Failure::Error(OssError::internal(format!("worker failed: {e}"))))
}

fn iso_millis(t: i64) -> String {
    super::iso_millis(t)
}

fn http_date(t: i64) -> String {
    UtcTime::from_unix(t).http_date()
}

fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// Takes the request body for a handler that reads it (once).
fn take(body: &mut Option<Incoming>) -> Result<Incoming, Failure> {
    body.take().ok_or_else(|| Failure::Error(OssError::internal("the request body was already read")))
}

pub async fn run(op: Op, ctx: &Ctx<'_>, body: &mut Option<Incoming>) -> Result<Response<Body>, Failure> {
    match op {
        Op::ListBuckets => list_buckets(ctx).await,
        Op::PutBucket => put_bucket(ctx, body).await,
        Op::GetBucketInfo => get_bucket_info(ctx).await,
        Op::GetBucketLocation => get_bucket_location(ctx).await,
        Op::GetBucketAcl => get_bucket_acl(ctx).await,
        Op::ListObjects => list_objects(ctx, false).await,
        Op::ListObjectsV2 => list_objects(ctx, true).await,
        Op::DeleteBucket => delete_bucket(ctx).await,
        Op::ListMultipartUploads => list_uploads(ctx).await,
        Op::DeleteMultipleObjects => delete_multiple(ctx, body).await,
        Op::PutObject => put_object(ctx, body).await,
        Op::GetObject => get_object(ctx, false).await,
        Op::HeadObject | Op::GetObjectMeta => get_object(ctx, true).await,
        Op::DeleteObject => delete_object(ctx).await,
        Op::InitiateMultipartUpload => initiate(ctx).await,
        Op::UploadPart => upload_part(ctx, body).await,
        Op::CompleteMultipartUpload => complete(ctx, body).await,
        Op::AbortMultipartUpload => abort(ctx).await,
        Op::ListParts => list_parts(ctx).await,
        Op::Unsupported => Err(OssError::not_implemented("This operation").into()),
    }
}

fn recv_failure(e: RecvError, max: u64) -> Failure {
    match e {
        RecvError::Dropped | RecvError::Client(_) | RecvError::Stalled => Failure::Drop,
        RecvError::TooLarge => OssError::entity_too_large(max).into(),
        RecvError::Io(e) => OssError::internal(format!("storage error: {e}")).into(),
    }
}

async fn read_xml_body(ctx: &Ctx<'_>, body: Incoming) -> Result<bytes::Bytes, Failure> {
    body::receive_small(body, ctx.drop_request_after, MAX_XML_BODY, ctx.state.idle_timeout).await.map_err(|e| match e {
        RecvError::TooLarge => OssError::malformed_xml().into(),
        other => recv_failure(other, MAX_XML_BODY as u64),
    })
}

/// The Content-MD5 a client sent, decoded; a value that is not the base64 of 16 bytes is refused.
fn expected_md5(ctx: &Ctx<'_>) -> Result<Option<[u8; 16]>, OssError> {
    let Some(v) = ctx.h("Content-MD5") else { return Ok(None) };
    let bytes = base64::engine::general_purpose::STANDARD.decode(v.trim()).map_err(|_| OssError::invalid_digest())?;
    let arr: [u8; 16] = bytes.try_into().map_err(|_| OssError::invalid_digest())?;
    Ok(Some(arr))
}

const STORED_HEADERS: &[&str] =
    &["Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Expires"];

fn new_object(ctx: &Ctx<'_>) -> Result<NewObject, OssError> {
    let mut headers = Vec::new();
    for name in STORED_HEADERS {
        if let Some(v) = ctx.h(name) {
            headers.push((name.to_string(), v.to_string()));
        }
    }
    for (k, v) in &ctx.req.headers {
        let lower = k.to_ascii_lowercase();
        if lower.starts_with("x-oss-meta-") {
            headers.push((lower, v.clone()));
        }
    }
    let storage_class = storage_class(ctx.h("x-oss-storage-class").unwrap_or("Standard"))?;
    Ok(NewObject {
        content_type: ctx.h("Content-Type").filter(|v| !v.is_empty()).unwrap_or("application/octet-stream").to_string(),
        headers,
        storage_class,
        forbid_overwrite: ctx.h("x-oss-forbid-overwrite").is_some_and(|v| v.eq_ignore_ascii_case("true")),
    })
}

fn storage_class(v: &str) -> Result<String, OssError> {
    const CLASSES: &[&str] = &["Standard", "IA", "Archive", "ColdArchive", "DeepColdArchive"];
    CLASSES
        .iter()
        .find(|c| c.eq_ignore_ascii_case(v))
        .map(|c| c.to_string())
        .ok_or_else(|| OssError::invalid_argument("Invalid storage class.", "x-oss-storage-class", v))
}

fn parse_max(ctx: &Ctx<'_>, name: &str, default: usize, max: usize) -> Result<usize, OssError> {
    match ctx.q(name) {
        None | Some("") => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(OssError::invalid_argument(
                format!("Argument {name} must be an integer between 1 and {max}."),
                name,
                v,
            )),
        },
    }
}

// ---- service and buckets -------------------------------------------------------------------------------

fn endpoints(region: &str) -> (String, String) {
    (format!("oss-{region}.aliyuncs.com"), format!("oss-{region}-internal.aliyuncs.com"))
}

async fn list_buckets(ctx: &Ctx<'_>) -> Result<Response<Body>, Failure> {
    let store = ctx.store();
    let mut buckets = blocking(move || store.buckets()).await?;
    let prefix = ctx.q("prefix").unwrap_or("").to_string();
    let marker = ctx.q("marker").unwrap_or("").to_string();
    let max = parse_max(ctx, "max-keys", 1000, 1000)?;
    buckets.retain(|b| b.name.starts_with(&prefix) && b.name.as_str() > marker.as_str());
    let truncated = buckets.len() > max;
    buckets.truncate(max);
    let mut w = XmlWriter::new();
    w.open("ListAllMyBucketsResult");
    if !prefix.is_empty() {
        w.elem("Prefix", &prefix);
    }
    if !marker.is_empty() {
        w.elem("Marker", &marker);
    }
    if ctx.q("max-keys").is_some() {
        w.elem("MaxKeys", max.to_string());
    }
    w.elem("IsTruncated", truncated.to_string());
    if truncated {
        w.elem("NextMarker", buckets.last().map_or("", |b| b.name.as_str()));
    }
    ctx.owner(&mut w);
    w.open("Buckets");
    for b in &buckets {
        let (ext, int) = endpoints(&b.region);
        w.open("Bucket")
            .elem("CreationDate", iso_millis(b.created))
            .elem("ExtranetEndpoint", ext)
            .elem("IntranetEndpoint", int)
            .elem("Location", format!("oss-{}", b.region))
            .elem("Name", &b.name)
            .elem("Region", &b.region)
            .elem("StorageClass", &b.storage_class)
            .close("Bucket");
    }
    w.close("Buckets").close("ListAllMyBucketsResult");
    Ok(ctx.xml(200, w.finish(), vec![]))
}

async fn put_bucket(ctx: &Ctx<'_>, body: &mut Option<Incoming>) -> Result<Response<Body>, Failure> {
    let data = read_xml_body(ctx, take(body)?).await?;
    let (mut class, mut redundancy, mut location) = ("Standard".to_string(), "LRS".to_string(), None);
    if !data.iter().all(u8::is_ascii_whitespace) {
        let text = std::str::from_utf8(&data).map_err(|_| OssError::malformed_xml())?;
        let root = xml::parse(text).map_err(|_| OssError::malformed_xml())?;
        if root.name != "CreateBucketConfiguration" {
            return Err(OssError::malformed_xml().into());
        }
        if let Some(c) = root.child_text("StorageClass") {
            class = storage_class(c)?;
        }
        if let Some(r) = root.child_text("DataRedundancyType") {
            if r != "LRS" && r != "ZRS" {
                return Err(OssError::invalid_argument("Invalid data redundancy type.", "DataRedundancyType", r).into());
            }
            redundancy = r.to_string();
        }
        location = root.child_text("LocationConstraint").filter(|l| !l.is_empty()).map(str::to_string);
    }
    // Where the bucket goes: an explicit location, else the region of the endpoint host, else the region the
    // request was signed for (V4), else the emulator's default region.
    let region = location
        .map(|l| l.strip_prefix("oss-").unwrap_or(&l).to_string())
        .or_else(|| ctx.host_region.clone())
        .or_else(|| ctx.principal.region.clone().filter(|r| ctx.state.serves_region(r)))
        .unwrap_or_else(|| ctx.state.default_region().to_string());
    if !ctx.state.serves_region(&region) {
        return Err(OssError::new(400, "InvalidLocationConstraint", "The specified location-constraint is not valid.")
            .with("LocationConstraint", format!("oss-{region}"))
            .into());
    }
    let info = super::store::BucketInfo {
        name: ctx.bucket.clone(),
        region,
        created: ctx.now,
        storage_class: class,
        redundancy,
    };
    let store = ctx.store();
    blocking(move || store.create_bucket(info)).await?.map_err(|e| ctx.store_err(e))?;
    Ok(ctx.empty(200, vec![("Location".into(), format!("/{}", ctx.bucket))]))
}

async fn bucket_info(ctx: &Ctx<'_>) -> Result<super::store::BucketInfo, Failure> {
    let store = ctx.store();
    let name = ctx.bucket.clone();
    blocking(move || store.bucket(&name)).await?.ok_or_else(|| OssError::no_such_bucket(&ctx.bucket).into())
}

async fn get_bucket_info(ctx: &Ctx<'_>) -> Result<Response<Body>, Failure> {
    let b = bucket_info(ctx).await?;
    let (ext, int) = endpoints(&b.region);
    let mut w = XmlWriter::new();
    w.open("BucketInfo").open("Bucket");
    w.elem("AccessMonitor", "Disabled")
        .elem("CreationDate", iso_millis(b.created))
        .elem("ExtranetEndpoint", ext)
        .elem("IntranetEndpoint", int)
        .elem("Location", format!("oss-{}", b.region))
        .elem("StorageClass", &b.storage_class)
        .elem("TransferAcceleration", "Disabled")
        .elem("CrossRegionReplication", "Disabled")
        .elem("DataRedundancyType", &b.redundancy)
        .elem("Name", &b.name)
        .elem("ResourceGroupId", "rg-default")
        .elem("Versioning", "");
    ctx.owner(&mut w);
    w.open("AccessControlList").elem("Grant", "private").close("AccessControlList");
    w.open("ServerSideEncryptionRule").elem("SSEAlgorithm", "None").close("ServerSideEncryptionRule");
    w.open("BucketPolicy").elem("LogBucket", "").elem("LogPrefix", "").close("BucketPolicy");
    w.close("Bucket").close("BucketInfo");
    Ok(ctx.xml(200, w.finish(), vec![]))
}

async fn get_bucket_location(ctx: &Ctx<'_>) -> Result<Response<Body>, Failure> {
    let b = bucket_info(ctx).await?;
    let mut w = XmlWriter::new();
    w.elem("LocationConstraint", format!("oss-{}", b.region));
    Ok(ctx.xml(200, w.finish(), vec![]))
}

async fn get_bucket_acl(ctx: &Ctx<'_>) -> Result<Response<Body>, Failure> {
    bucket_info(ctx).await?;
    let mut w = XmlWriter::new();
    w.open("AccessControlPolicy");
    ctx.owner(&mut w);
    w.open("AccessControlList").elem("Grant", "private").close("AccessControlList").close("AccessControlPolicy");
    Ok(ctx.xml(200, w.finish(), vec![]))
}

async fn delete_bucket(ctx: &Ctx<'_>) -> Result<Response<Body>, Failure> {
    let store = ctx.store();
    let name = ctx.bucket.clone();
    blocking(move || store.delete_bucket(&name)).await?.map_err(|e| ctx.store_err(e))?;
    Ok(ctx.empty(204, vec![]))
}

fn continuation_token(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}

async fn list_objects(ctx: &Ctx<'_>, v2: bool) -> Result<Response<Body>, Failure> {
    let prefix = ctx.q("prefix").unwrap_or("").to_string();
    let delimiter = ctx.q("delimiter").unwrap_or("").to_string();
    let max = parse_max(ctx, "max-keys", 100, 1000)?;
    let marker = if v2 {
        match ctx.q("continuation-token").filter(|t| !t.is_empty()) {
            Some(t) => base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    OssError::invalid_argument("The continuation token provided is incorrect.", "continuation-token", t)
                })?,
            None => ctx.q("start-after").unwrap_or("").to_string(),
        }
    } else {
        ctx.q("marker").unwrap_or("").to_string()
    };
    let store = ctx.store();
    let (b, p, d, m) = (ctx.bucket.clone(), prefix.clone(), delimiter.clone(), marker.clone());
    let listing = blocking(move || store.list_objects(&b, &p, &d, &m, max)).await?.map_err(|e| ctx.store_err(e))?;
    let fetch_owner = !v2 || ctx.q("fetch-owner") == Some("true");
    let mut w = XmlWriter::new();
    w.open("ListBucketResult").elem("Name", &ctx.bucket).elem("Prefix", ctx.enc(&prefix));
    if v2 {
        if let Some(t) = ctx.q("continuation-token") {
            w.elem("ContinuationToken", t);
        }
        if let Some(s) = ctx.q("start-after") {
            w.elem("StartAfter", ctx.enc(s));
        }
    } else {
        w.elem("Marker", ctx.enc(&marker));
    }
    w.elem("MaxKeys", max.to_string()).elem("Delimiter", ctx.enc(&delimiter));
    if ctx.url_encoding() {
        w.elem("EncodingType", "url");
    }
    w.elem("IsTruncated", listing.truncated.to_string());
    if let Some(next) = &listing.next_marker {
        if v2 {
            w.elem("NextContinuationToken", continuation_token(next));
        } else {
            w.elem("NextMarker", ctx.enc(next));
        }
    }
    if v2 {
        w.elem("KeyCount", (listing.objects.len() + listing.prefixes.len()).to_string());
    }
    for o in &listing.objects {
        w.open("Contents")
            .elem("Key", ctx.enc(&o.key))
            .elem("LastModified", iso_millis(o.last_modified))
            .elem("ETag", quoted(&o.etag))
            .elem("Type", if o.multipart { "Multipart" } else { "Normal" })
            .elem("Size", o.size.to_string())
            .elem("StorageClass", &o.storage_class);
        if fetch_owner {
            ctx.owner(&mut w);
        }
        w.close("Contents");
    }
    for p in &listing.prefixes {
        w.open("CommonPrefixes").elem("Prefix", ctx.enc(p)).close("CommonPrefixes");
    }
    w.close("ListBucketResult");
    Ok(ctx.xml(200, w.finish(), vec![]))
}

async fn delete_multiple(ctx: &Ctx<'_>, body: &mut Option<Incoming>) -> Result<Response<Body>, Failure> {
    let expected = expected_md5(ctx)?;
    let data = read_xml_body(ctx, take(body)?).await?;
    if let Some(md5) = expected {
        use md5::Digest;
        if md5::Md5::digest(&data).as_slice() != md5 {
            return Err(OssError::invalid_digest().into());
        }
    }
    let text = std::str::from_utf8(&data).map_err(|_| OssError::malformed_xml())?;
    let root = xml::parse(text).map_err(|_| OssError::malformed_xml())?;
    if root.name != "Delete" {
        return Err(OssError::malformed_xml().into());
    }
    let quiet = root.child_text("Quiet") == Some("true");
    let mut keys = Vec::new();
    for o in root.children_named("Object") {
        let k = o.child_text("Key").ok_or_else(OssError::malformed_xml)?;
        let k = if ctx.url_encoding() {
            percent_decode(k, false).map_err(|_| OssError::malformed_xml())?
        } else {
            k.to_string()
        };
        keys.push(k);
    }
    if keys.is_empty() || keys.len() > 1000 {
        return Err(OssError::malformed_xml().into());
    }
    let store = ctx.store();
    let b = ctx.bucket.clone();
    let ks = keys.clone();
    blocking(move || ks.iter().try_for_each(|k| store.delete_object(&b, k))).await?.map_err(|e| ctx.store_err(e))?;
    let mut w = XmlWriter::new();
    w.open("DeleteResult");
    if ctx.url_encoding() {
        w.elem("EncodingType", "url");
    }
    if !quiet {
        for k in &keys {
            w.open("Deleted").elem("Key", ctx.enc(k)).close("Deleted");
        }
    }
    w.close("DeleteResult");
    Ok(ctx.xml(200, w.finish(), vec![]))
}

// ---- objects ----------------------------------------------------------------------------------------------

/// Receives a PutObject or UploadPart body into a temporary file and checks its Content-MD5.
async fn receive_body(ctx: &Ctx<'_>, body: &mut Option<Incoming>) -> Result<Received, Failure> {
    let expected = expected_md5(ctx)?;
    let max = ctx.state.max_put_size;
    if let Some(len) = ctx.h("Content-Length").and_then(|v| v.parse::<u64>().ok()) {
        if len > max {
            return Err(OssError::entity_too_large(max).into());
        }
    }
    let path = ctx.state.store.tmp_path();
    let received = body::receive_to_file(take(body)?, &path, ctx.drop_request_after, max, ctx.state.idle_timeout)
        .await
        .map_err(|e| recv_failure(e, max))?;
    if expected.is_some_and(|m| m != received.md5) {
        let _ = tokio::fs::remove_file(&received.path).await;
        return Err(OssError::invalid_digest().into());
    }
    Ok(received)
}

fn write_headers(etag: &str, crc: u64, md5: &[u8; 16]) -> Vec<(String, String)> {
    vec![
        ("ETag".into(), quoted(etag)),
        ("x-oss-hash-crc64ecma".into(), crc.to_string()),
        ("Content-MD5".into(), base64::engine::general_purpose::STANDARD.encode(md5)),
    ]
}

async fn put_object(ctx: &Ctx<'_>, body: &mut Option<Incoming>) -> Result<Response<Body>, Failure> {
    let new = new_object(ctx)?;
    bucket_info(ctx).await?;
    let received = receive_body(ctx, body).await?;
    let store = ctx.store();
    let (b, k, now, r) = (ctx.bucket.clone(), ctx.key.clone(), ctx.now, received.clone());
    let result = blocking(move || store.put_object(&b, &k, &r, new, now)).await?;
    let meta = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = tokio::fs::remove_file(&received.path).await;
            return Err(ctx.store_err(e));
        }
    };
    Ok(ctx.empty(200, write_headers(&meta.etag, meta.crc64, &received.md5)))
}

fn object_headers(meta: &ObjectMeta) -> Vec<(String, String)> {
    let mut h = vec![
        ("Content-Type".to_string(), meta.content_type.clone()),
        ("ETag".to_string(), quoted(&meta.etag)),
        ("Last-Modified".to_string(), http_date(meta.last_modified)),
        ("Accept-Ranges".to_string(), "bytes".to_string()),
        ("x-oss-object-type".to_string(), if meta.multipart { "Multipart" } else { "Normal" }.to_string()),
        ("x-oss-hash-crc64ecma".to_string(), meta.crc64.to_string()),
        ("x-oss-storage-class".to_string(), meta.storage_class.clone()),
    ];
    if let Some(md5) = &meta.content_md5 {
        h.push(("Content-MD5".to_string(), md5.clone()));
    }
    h.extend(meta.headers.iter().cloned());
    h
}

/// What a Range header asks for, with OSS's rules: a range that is malformed or outside the object is ignored
/// (the whole object, 200) unless the client sent `x-oss-range-behavior: standard`, which gives HTTP semantics
/// (ends clamped to the object, a start past the end is 416).
#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

fn parse_range(header: Option<&str>, size: u64, standard: bool) -> RangeAsk {
    let Some(h) = header else { return RangeAsk::Whole };
    let Some(spec) = h.trim().strip_prefix("bytes=") else { return RangeAsk::Whole };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else { return RangeAsk::Whole };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    let invalid = if standard { RangeAsk::Unsatisfiable } else { RangeAsk::Whole };
    match (num(a), num(b)) {
        (None, Some(n)) if a.is_empty() => {
            if n == 0 || size == 0 {
                invalid
            } else if n > size {
                if standard {
                    RangeAsk::Part(0, size - 1)
                } else {
                    RangeAsk::Whole
                }
            } else {
                RangeAsk::Part(size - n, size - 1)
            }
        }
        (Some(start), None) if b.is_empty() => {
            if start >= size {
                invalid
            } else {
                RangeAsk::Part(start, size - 1)
            }
        }
        (Some(start), Some(end)) if start <= end => {
            if start >= size {
                invalid
            } else if end >= size {
                if standard {
                    RangeAsk::Part(start, size - 1)
                } else {
                    RangeAsk::Whole
                }
            } else {
                RangeAsk::Part(start, end)
            }
        }
        _ => RangeAsk::Whole,
    }
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|t| t == "*" || t.eq_ignore_ascii_case(etag))
}

/// If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since: `Some(status)` when a condition fails.
fn precondition(ctx: &Ctx<'_>, meta: &ObjectMeta) -> Option<u16> {
    if let Some(m) = ctx.h("If-Match") {
        if !etag_matches(m, &meta.etag) {
            return Some(412);
        }
    }
    if let Some(t) = ctx.h("If-Unmodified-Since").and_then(parse_http_date) {
        if meta.last_modified > t {
            return Some(412);
        }
    }
    if let Some(m) = ctx.h("If-None-Match") {
        if etag_matches(m, &meta.etag) {
            return Some(304);
        }
    }
    if let Some(t) = ctx.h("If-Modified-Since").and_then(parse_http_date) {
        if meta.last_modified <= t {
            return Some(304);
        }
    }
    None
}

async fn get_object(ctx: &Ctx<'_>, head: bool) -> Result<Response<Body>, Failure> {
    let store = ctx.store();
    let (b, k) = (ctx.bucket.clone(), ctx.key.clone());
    let data = blocking(move || store.open_object(&b, &k)).await?.map_err(|e| ctx.store_err(e))?;
    let (meta, files) = data.into_files();
    match precondition(ctx, &meta) {
        Some(412) => {
            return Err(OssError::new(
                412,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold.",
            )
            .into())
        }
        Some(_) => {
            return Ok(ctx.empty(
                304,
                vec![("ETag".into(), quoted(&meta.etag)), ("Last-Modified".into(), http_date(meta.last_modified))],
            ))
        }
        None => {}
    }
    let mut headers = object_headers(&meta);
    if head {
        headers.push(("Content-Length".into(), meta.size.to_string()));
        return Ok(ctx.empty(200, headers));
    }
    for (param, header) in [
        ("response-content-type", "Content-Type"),
        ("response-content-language", "Content-Language"),
        ("response-expires", "Expires"),
        ("response-cache-control", "Cache-Control"),
        ("response-content-disposition", "Content-Disposition"),
        ("response-content-encoding", "Content-Encoding"),
    ] {
        if let Some(v) = ctx.q(param) {
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case(header));
            headers.push((header.to_string(), v.to_string()));
        }
    }
    let standard = ctx.h("x-oss-range-behavior").is_some_and(|v| v.eq_ignore_ascii_case("standard"));
    let (status, start, len) = match parse_range(ctx.h("Range"), meta.size, standard) {
        RangeAsk::Whole => (200, 0, meta.size),
        RangeAsk::Part(a, b) => {
            headers.push(("Content-Range".into(), format!("bytes {a}-{b}/{}", meta.size)));
            (206, a, b - a + 1)
        }
        RangeAsk::Unsatisfiable => {
            return Err(OssError::new(416, "InvalidRange", "The requested range cannot be satisfied")
                .header("Content-Range", format!("bytes */{}", meta.size))
                .into())
        }
    };
    let body = blocking(move || FileBody::new(files, start, len))
        .await?
        .map_err(|e| OssError::internal(format!("storage error: {e}")))?;
    headers.push(("Content-Length".into(), len.to_string()));
    Ok(response(status, &ctx.request_id, headers, http_body_util::BodyExt::boxed(body)))
}

async fn delete_object(ctx: &Ctx<'_>) -> Result<Response<Body>, Failure> {
    let store = ctx.store();
    let (b, k) = (ctx.bucket.clone(), ctx.key.clone());
    blocking(move || store.delete_object(&b, &k)).await?.map_err(|e| ctx.store_err(e))?;
    Ok(ctx.empty(204, vec![]))
}

// ---- multipart --------------------------------------------------------------------------------------------

async fn initiate(ctx: &Ctx<'_>) -> Result<Response<Body>, Failure> {
    let new = new_object(ctx)?;
    let store = ctx.store();
    let (b, k, now) = (ctx.bucket.clone(), ctx.key.clone(), ctx.now);
    let info = blocking(move || store.initiate_upload(&b, &k, new, now)).await?.map_err(|e| ctx.store_err(e))?;
    let mut w = XmlWriter::new();
    w.open("InitiateMultipartUploadResult");
    if ctx.url_encoding() {
        w.elem("EncodingType", "url");
    }
    w.elem("Bucket", &ctx.bucket).elem("Key", ctx.enc(&ctx.key)).elem("UploadId", &info.upload_id);
    w.close("InitiateMultipartUploadResult");
    Ok(ctx.xml(200, w.finish(), vec![]))
}

fn part_number(ctx: &Ctx<'_>) -> Result<u32, OssError> {
    let raw = ctx.q("partNumber").unwrap_or("");
    match raw.parse::<u32>() {
        Ok(n) if (1..=MAX_PART_NUMBER).contains(&n) => Ok(n),
        _ => Err(OssError::invalid_argument(
            "Part number must be an integer between 1 and 10000, inclusive.",
            "partNumber",
            raw,
        )),
    }
}

async fn upload_part(ctx: &Ctx<'_>, body: &mut Option<Incoming>) -> Result<Response<Body>, Failure> {
    let number = part_number(ctx)?;
    let upload_id = ctx.q("uploadId").unwrap_or("").to_string();
    let store = ctx.store();
    let (b, k, u) = (ctx.bucket.clone(), ctx.key.clone(), upload_id.clone());
    blocking(move || store.upload_exists(&b, &k, &u)).await?.map_err(|e| ctx.store_err(e))?;
    let received = receive_body(ctx, body).await?;
    let store = ctx.store();
    let (b, k, now, r) = (ctx.bucket.clone(), ctx.key.clone(), ctx.now, received.clone());
    let result = blocking(move || store.upload_part(&b, &k, &upload_id, number, &r, now)).await?;
    let part = match result {
        Ok(p) => p,
        Err(e) => {
            let _ = tokio::fs::remove_file(&received.path).await;
            return Err(ctx.store_err(e));
        }
    };
    Ok(ctx.empty(200, write_headers(&part.etag, part.crc64, &received.md5)))
}

async fn complete(ctx: &Ctx<'_>, body: &mut Option<Incoming>) -> Result<Response<Body>, Failure> {
    let upload_id = ctx.q("uploadId").unwrap_or("").to_string();
    let data = read_xml_body(ctx, take(body)?).await?;
    let complete_all = ctx.h("x-oss-complete-all").is_some_and(|v| v.eq_ignore_ascii_case("yes"));
    let listed: Option<Vec<(u32, String)>> = if complete_all {
        if !data.iter().all(u8::is_ascii_whitespace) {
            return Err(OssError::invalid_argument(
                "Should not specify both complete all header and http body.",
                "x-oss-complete-all",
                "yes",
            )
            .into());
        }
        None
    } else {
        let text = std::str::from_utf8(&data).map_err(|_| OssError::malformed_xml())?;
        let root = xml::parse(text).map_err(|_| OssError::malformed_xml())?;
        if root.name != "CompleteMultipartUpload" {
            return Err(OssError::malformed_xml().into());
        }
        let mut parts = Vec::new();
        for p in root.children_named("Part") {
            let n =
                p.child_text("PartNumber").and_then(|n| n.parse::<u32>().ok()).ok_or_else(OssError::malformed_xml)?;
            let etag = p.child_text("ETag").ok_or_else(OssError::malformed_xml)?;
            parts.push((n, etag.to_string()));
        }
        if parts.is_empty() {
            return Err(OssError::malformed_xml().into());
        }
        Some(parts)
    };
    let forbid = ctx.h("x-oss-forbid-overwrite").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let store = ctx.store();
    let (b, k, now) = (ctx.bucket.clone(), ctx.key.clone(), ctx.now);
    let meta = blocking(move || store.complete_upload(&b, &k, &upload_id, listed.as_deref(), forbid, now))
        .await?
        .map_err(|e| ctx.store_err(e))?;
    let host = if ctx.host.starts_with(&format!("{}.", ctx.bucket)) {
        ctx.host.clone()
    } else {
        format!("{}/{}", ctx.host, ctx.bucket)
    };
    let mut w = XmlWriter::new();
    w.open("CompleteMultipartUploadResult");
    if ctx.url_encoding() {
        w.elem("EncodingType", "url");
    }
    w.elem("Location", format!("http://{host}/{}", uri_encode(&ctx.key, true)))
        .elem("Bucket", &ctx.bucket)
        .elem("Key", ctx.enc(&ctx.key))
        .elem("ETag", quoted(&meta.etag))
        .close("CompleteMultipartUploadResult");
    let headers = vec![("x-oss-hash-crc64ecma".into(), meta.crc64.to_string()), ("ETag".into(), quoted(&meta.etag))];
    Ok(ctx.xml(200, w.finish(), headers))
}

async fn abort(ctx: &Ctx<'_>) -> Result<Response<Body>, Failure> {
    let upload_id = ctx.q("uploadId").unwrap_or("").to_string();
    let store = ctx.store();
    let (b, k) = (ctx.bucket.clone(), ctx.key.clone());
    blocking(move || store.abort_upload(&b, &k, &upload_id)).await?.map_err(|e| ctx.store_err(e))?;
    Ok(ctx.empty(204, vec![]))
}

async fn list_parts(ctx: &Ctx<'_>) -> Result<Response<Body>, Failure> {
    let upload_id = ctx.q("uploadId").unwrap_or("").to_string();
    let max = parse_max(ctx, "max-parts", 1000, 1000)?;
    let marker_raw = ctx.q("part-number-marker").unwrap_or("");
    let marker = if marker_raw.is_empty() {
        0
    } else {
        marker_raw
            .parse::<u32>()
            .map_err(|_| OssError::invalid_argument("Invalid part number marker.", "part-number-marker", marker_raw))?
    };
    let store = ctx.store();
    let (b, k, u) = (ctx.bucket.clone(), ctx.key.clone(), upload_id.clone());
    let listing = blocking(move || store.list_parts(&b, &k, &u, marker, max)).await?.map_err(|e| ctx.store_err(e))?;
    let mut w = XmlWriter::new();
    w.open("ListPartsResult");
    if ctx.url_encoding() {
        w.elem("EncodingType", "url");
    }
    w.elem("Bucket", &ctx.bucket)
        .elem("Key", ctx.enc(&ctx.key))
        .elem("UploadId", &upload_id)
        .elem("StorageClass", listing.upload.as_ref().map_or("Standard", |u| u.storage_class.as_str()))
        .elem("PartNumberMarker", marker.to_string())
        .elem("NextPartNumberMarker", listing.next_marker.to_string())
        .elem("MaxParts", max.to_string())
        .elem("IsTruncated", listing.truncated.to_string());
    for p in &listing.parts {
        w.open("Part")
            .elem("PartNumber", p.number.to_string())
            .elem("LastModified", iso_millis(p.last_modified))
            .elem("ETag", quoted(&p.etag))
            .elem("HashCrc64ecma", p.crc64.to_string())
            .elem("Size", p.size.to_string())
            .close("Part");
    }
    w.close("ListPartsResult");
    Ok(ctx.xml(200, w.finish(), vec![]))
}

async fn list_uploads(ctx: &Ctx<'_>) -> Result<Response<Body>, Failure> {
    let prefix = ctx.q("prefix").unwrap_or("").to_string();
    let delimiter = ctx.q("delimiter").unwrap_or("").to_string();
    let key_marker = ctx.q("key-marker").unwrap_or("").to_string();
    let id_marker = ctx.q("upload-id-marker").unwrap_or("").to_string();
    let max = parse_max(ctx, "max-uploads", 1000, 1000)?;
    let store = ctx.store();
    let (b, p, d, km, im) =
        (ctx.bucket.clone(), prefix.clone(), delimiter.clone(), key_marker.clone(), id_marker.clone());
    let listing =
        blocking(move || store.list_uploads(&b, &p, &d, &km, &im, max)).await?.map_err(|e| ctx.store_err(e))?;
    let mut w = XmlWriter::new();
    w.open("ListMultipartUploadsResult");
    if ctx.url_encoding() {
        w.elem("EncodingType", "url");
    }
    w.elem("Bucket", &ctx.bucket)
        .elem("KeyMarker", ctx.enc(&key_marker))
        .elem("UploadIdMarker", &id_marker)
        .elem("NextKeyMarker", ctx.enc(&listing.next_key_marker))
        .elem("NextUploadIdMarker", &listing.next_upload_id_marker)
        .elem("Delimiter", ctx.enc(&delimiter))
        .elem("Prefix", ctx.enc(&prefix))
        .elem("MaxUploads", max.to_string())
        .elem("IsTruncated", listing.truncated.to_string());
    for u in &listing.uploads {
        w.open("Upload")
            .elem("Key", ctx.enc(&u.key))
            .elem("UploadId", &u.upload_id)
            .elem("StorageClass", &u.storage_class)
            .elem("Initiated", iso_millis(u.initiated))
            .close("Upload");
    }
    for p in &listing.prefixes {
        w.open("CommonPrefixes").elem("Prefix", ctx.enc(p)).close("CommonPrefixes");
    }
    w.close("ListMultipartUploadsResult");
    Ok(ctx.xml(200, w.finish(), vec![]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeAsk::*;
        let r = |h: &str, std: bool| parse_range(Some(h), 100, std);
        assert_eq!(r("bytes=0-9", false), Part(0, 9));
        assert_eq!(r("bytes=90-", false), Part(90, 99));
        assert_eq!(r("bytes=-10", false), Part(90, 99));
        assert_eq!(r("bytes=99-99", false), Part(99, 99));
        // OSS default: out of range or malformed means the whole object.
        for h in [
            "bytes=100-200",
            "bytes=50-200",
            "bytes=9-0",
            "bytes=a-b",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=-0",
            "bytes=-200",
        ] {
            assert_eq!(r(h, false), Whole, "{h}");
        }
        // Standard behaviour: clamp the end, 416 for a start past the end.
        assert_eq!(r("bytes=50-200", true), Part(50, 99));
        assert_eq!(r("bytes=100-200", true), Unsatisfiable);
        assert_eq!(r("bytes=-200", true), Part(0, 99));
        assert_eq!(parse_range(None, 100, true), Whole);
        assert_eq!(parse_range(Some("bytes=0-0"), 0, false), Whole);
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"ABC\"", "abc"));
        assert!(etag_matches("\"x\", \"ABC\"", "ABC"));
        assert!(etag_matches("*", "ABC"));
        assert!(!etag_matches("\"x\"", "ABC"));
    }
}
