//! The HTTP client behind [`ObjectStore`]: builds, signs and sends requests, parses answers.

use crate::checksum::{self, Algorithm};
use crate::error::{from_response, RetryClass, StorageError};
use crate::xml;
use crate::{
    Body, BoxFuture, CompletedPart, ObjectMeta, ObjectStore, PartCheck, PartInfo, PutOptions, PutResult, Result,
    UploadInfo,
};
use bytes::Bytes;
use imgport_auth::endpoints::{oss_location, BucketStyle, Endpoint};
use imgport_auth::provider::CredentialsProvider;
use imgport_auth::sign::{oss_v1, oss_v4, sigv4};
use imgport_auth::SignableRequest;
use imgport_net::http::{describe_transport_error, ClientOptions};
use imgport_net::ClockOffset;
use imgport_wire::{unquote, xml_escape};
use std::sync::Arc;
use std::time::Duration;

/// Plain `http://` to a host that is not this machine (127.0.0.0/8, ::1, localhost): anyone on the way reads the
/// requests (the access key id, a session token, the data) and can replay or alter them. A warning, not an
/// error: some on-premises stores are reached that way on purpose.
pub fn plaintext_warning(endpoint: &Endpoint) -> Option<String> {
    if endpoint.scheme != "http" || is_loopback(endpoint.hostname()) {
        return None;
    }
    Some(format!(
        "{} is plain http to a host that is not this machine: the signed requests (access key id, any session \
         token, the data) cross the network unencrypted; use https",
        endpoint.url()
    ))
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => a.is_loopback(),
        Ok(std::net::IpAddr::V6(a)) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|m| m.is_loopback()),
        Err(_) => false,
    }
}

/// Which protocol and signature the store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    OssV4,
    OssV1,
    S3,
}

impl Flavor {
    pub fn is_oss(self) -> bool {
        matches!(self, Flavor::OssV4 | Flavor::OssV1)
    }
}

pub struct StoreConfig {
    pub flavor: Flavor,
    pub endpoint: Endpoint,
    pub region: String,
    pub bucket: String,
    pub style: BucketStyle,
    pub credentials: Arc<dyn CredentialsProvider>,
}

pub struct Client {
    http: reqwest::Client,
    cfg: StoreConfig,
    /// Added to the local clock when signing, learnt from `RequestTimeTooSkewed` answers.
    clock: ClockOffset,
}

struct Answer {
    headers: reqwest::header::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn etag(&self) -> String {
        self.header("etag").map(unquote).unwrap_or_default()
    }

    fn crc64(&self) -> Result<Option<u64>> {
        match self.header("x-oss-hash-crc64ecma") {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| StorageError::Protocol(format!("x-oss-hash-crc64ecma {v:?} is not a number"))),
        }
    }

    /// The flexible checksum of `algorithm` the store echoed, if it did.
    fn checksum(&self, algorithm: Option<Algorithm>) -> Result<Option<u64>> {
        let Some(alg) = algorithm else { return Ok(None) };
        match self.header(alg.header()) {
            None => Ok(None),
            Some(v) => alg
                .decode(v)
                .map(Some)
                .ok_or_else(|| StorageError::Protocol(format!("{} {v:?} is not a {}", alg.header(), alg.name()))),
        }
    }

    fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body).map_err(|_| StorageError::Protocol("answer is not UTF-8".into()))
    }
}

fn parse_u64(s: Option<String>, what: &str) -> Result<u64> {
    s.as_deref()
        .map(str::trim)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StorageError::Protocol(format!("missing or bad {what}")))
}

impl Client {
    pub fn new(cfg: StoreConfig) -> Result<Client> {
        let http = ClientOptions::new(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120))
            .idle_per_host(64)
            .build()
            .map_err(|e| StorageError::Transport(e.to_string()))?;
        Ok(Client { http, cfg, clock: ClockOffset::new() })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// What the caller should warn about before using this client: requests signed with the credentials (and
    /// a session token, and the data) would cross the network unencrypted.
    pub fn warnings(&self) -> Vec<String> {
        plaintext_warning(&self.cfg.endpoint).into_iter().collect()
    }

    pub fn clock_offset(&self) -> i64 {
        self.clock.offset()
    }

    async fn send(
        &self,
        method: &str,
        key: Option<&str>,
        query: Vec<(String, String)>,
        headers: Vec<(String, String)>,
        body: Body,
    ) -> Result<Answer> {
        let bucket = self.cfg.bucket.as_str();
        // The store is a network peer: what it answers is read up to a bound (an object's bytes, or XML).
        let limit = if method == "GET" && key.is_some() && query.is_empty() { OBJECT_LIMIT } else { ANSWER_LIMIT };
        let (host, path) = oss_location(&self.cfg.endpoint, self.cfg.style, bucket, key);
        let mut req = SignableRequest::new(method, &path);
        req.query = query;
        req.headers = headers;
        let creds = self.cfg.credentials.credentials().await.map_err(|e| StorageError::Credentials(e.to_string()))?;
        let time = self.clock.now();
        match self.cfg.flavor {
            Flavor::OssV4 => oss_v4::sign_header(
                &mut req,
                &creds,
                oss_v4::Resource { bucket: Some(bucket), key },
                oss_v4::Scope { region: &self.cfg.region, product: "oss" },
                &[],
                time,
            ),
            Flavor::OssV1 => oss_v1::sign_header(&mut req, &creds, Some(bucket), key, time),
            Flavor::S3 => {
                req.set_header("host", &host);
                sigv4::sign_header(
                    &mut req,
                    &creds,
                    sigv4::Scope { region: &self.cfg.region, service: "s3" },
                    sigv4::UNSIGNED_PAYLOAD,
                    time,
                );
            }
        }
        let url = format!("{}://{}{}", self.cfg.endpoint.scheme, host, req.target());
        let method_name = method;
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| StorageError::Protocol(format!("bad method {method}")))?;
        // Whole-request deadline sized for a slow (256 KiB/s) link, so a stalled part fails and is retried.
        let timeout = Duration::from_secs(60 + body.len() / (256 * 1024));
        let mut rb = self.http.request(method, url).timeout(timeout);
        for (k, v) in &req.headers {
            if !k.eq_ignore_ascii_case("host") {
                rb = rb.header(k.as_str(), v.as_str());
            }
        }
        let rb = match body {
            Body::Bytes(b) => rb.body(b),
            // Read from the file as the connection takes it; the length is known, so it is sent as Content-Length.
            Body::File(range) => rb.body(reqwest::Body::wrap(range.into_http_body())),
        };
        let mut resp = rb.send().await.map_err(|e| transport(method_name, key, e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let too_long = |len: u64| {
            StorageError::Protocol(format!("{method_name} answered {len} bytes or more, over the {limit} expected"))
        };
        if let Some(len) = resp.content_length().filter(|l| *l > limit) {
            return Err(too_long(len));
        }
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport(method_name, key, e))? {
            let len = body.len() as u64 + chunk.len() as u64;
            if len > limit {
                return Err(too_long(len));
            }
            body.extend_from_slice(&chunk);
        }
        let body = body.freeze();
        let answer = Answer { headers, body };
        let rid = answer.header("x-oss-request-id").or_else(|| answer.header("x-amz-request-id"));
        tracing::debug!(
            method = method_name,
            bucket,
            key = key.unwrap_or(""),
            status,
            request_id = rid.unwrap_or(""),
            "store answered"
        );
        if status >= 300 {
            let text = String::from_utf8_lossy(&answer.body);
            let server_time = answer.header("date").and_then(imgport_auth::time::parse_http_date);
            let mut err = from_response(status, &text, rid, server_time);
            if let StorageError::Service { code, temporary_credentials, .. } = &mut err {
                *temporary_credentials = creds.token().is_some();
                // HEAD answers carry no body: recognise a skewed clock from the server's Date alone.
                if status == 403 && text.is_empty() && server_time.is_some_and(|t| self.clock.is_skewed(t, 600)) {
                    *code = "RequestTimeTooSkewed".to_string();
                }
            }
            // The provider still thinks these credentials good: make the retry fetch new ones.
            if err.retry_class() == RetryClass::RefreshCredentials {
                self.cfg.credentials.invalidate(&creds.access_key_id).await;
            }
            return Err(err);
        }
        Ok(answer)
    }

    fn object_headers(&self, opts: &PutOptions) -> Vec<(String, String)> {
        let mut h = Vec::new();
        if let Some(ct) = &opts.content_type {
            h.push(("Content-Type".to_string(), ct.clone()));
        }
        if let Some(md5) = &opts.content_md5 {
            h.push(("Content-MD5".to_string(), md5.clone()));
        }
        if let Some(c) = &opts.checksum {
            h.push((c.algorithm.header().to_string(), c.algorithm.encode(c.value)));
        }
        if let Some(sc) = &opts.storage_class {
            let name = if self.cfg.flavor.is_oss() { "x-oss-storage-class" } else { "x-amz-storage-class" };
            h.push((name.to_string(), sc.clone()));
        }
        for (name, value) in &opts.metadata {
            h.push((format!("{}{name}", self.meta_prefix()), value.clone()));
        }
        if opts.create_only {
            match self.cfg.flavor.is_oss() {
                true => h.push(("x-oss-forbid-overwrite".to_string(), "true".to_string())),
                false => h.push(("If-None-Match".to_string(), "*".to_string())),
            }
        }
        h
    }

    /// The user metadata headers' prefix.
    fn meta_prefix(&self) -> &'static str {
        if self.cfg.flavor.is_oss() {
            "x-oss-meta-"
        } else {
            "x-amz-meta-"
        }
    }

    /// Creates the bucket (tests and local stores); an existing bucket of ours is fine.
    pub async fn create_bucket(&self) -> Result<()> {
        match self.send("PUT", None, vec![], vec![], Body::Bytes(Bytes::new())).await {
            Err(e) if matches!(e.code(), Some("BucketAlreadyOwnedByYou") | Some("BucketAlreadyExists")) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Deletes `key`; an object already gone is fine (both stores answer 204 for it).
    pub async fn delete_object(&self, key: &str) -> Result<()> {
        self.send("DELETE", Some(key), vec![], vec![], Body::Bytes(Bytes::new())).await.map(|_| ())
    }

    /// The bucket's region as the store names it: OSS `oss-cn-hangzhou` becomes `cn-hangzhou`; S3's empty
    /// answer is `us-east-1`. An error names a missing bucket (`NoSuchBucket`) or a refused call.
    pub async fn bucket_region(&self) -> Result<String> {
        let q = vec![("location".to_string(), String::new())];
        let a = self.send("GET", None, q, vec![], Body::Bytes(Bytes::new())).await?;
        let text = a.text()?;
        let location = xml::text(text, "LocationConstraint").unwrap_or_default();
        let location = location.trim();
        Ok(match (self.cfg.flavor.is_oss(), location.strip_prefix("oss-")) {
            (true, Some(region)) => region.to_string(),
            (false, _) if location.is_empty() => "us-east-1".to_string(),
            _ => location.to_string(),
        })
    }

    async fn list_parts_impl(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut q = vec![("uploadId".to_string(), upload_id.to_string()), ("max-parts".into(), "1000".into())];
            if let Some(m) = &marker {
                q.push(("part-number-marker".into(), m.clone()));
            }
            let a = self.send("GET", Some(key), q, vec![], Body::Bytes(Bytes::new())).await?;
            let text = a.text()?;
            for p in xml::elements(text, "Part") {
                let crc = xml::text(p, "HashCrc64ecma").and_then(|v| v.trim().parse().ok());
                out.push(PartInfo {
                    number: parse_u64(xml::text(p, "PartNumber"), "PartNumber")? as u32,
                    size: parse_u64(xml::text(p, "Size"), "Size")?,
                    etag: unquote(&xml::text(p, "ETag").unwrap_or_default()),
                    crc64: crc,
                });
            }
            let truncated = xml::text(text, "IsTruncated").is_some_and(|t| t.trim() == "true");
            let next = xml::text(text, "NextPartNumberMarker").filter(|m| !m.is_empty());
            // Part numbers go up to 10,000 and each page must move past the last: a store that sends the
            // listing round in circles is stopped.
            let at = marker.as_deref().and_then(|m| m.parse::<u32>().ok()).unwrap_or(0);
            match (truncated, next.as_deref().map(|n| n.trim().parse::<u32>())) {
                (true, Some(Ok(n))) if n > at && n <= 10_000 => marker = Some(n.to_string()),
                (true, _) => {
                    return Err(StorageError::Protocol(format!(
                        "ListParts truncated without a next part number after {at}: {next:?}"
                    )))
                }
                _ => break,
            }
        }
        // Some stores list parts unsorted.
        out.sort_by_key(|p| p.number);
        out.dedup_by_key(|p| p.number);
        Ok(out)
    }

    async fn list_uploads_impl(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (String::new(), String::new());
        // Keys are listed in order, so markers never go back; pages are capped all the same (a store could send
        // one key's upload ids round in circles).
        for page in 0.. {
            if page == 10_000 {
                return Err(StorageError::Protocol("ListMultipartUploads: more than 10,000 pages".into()));
            }
            let mut q = vec![("uploads".to_string(), String::new()), ("max-uploads".into(), "1000".into())];
            if !prefix.is_empty() {
                q.push(("prefix".into(), prefix.to_string()));
            }
            if !key_marker.is_empty() {
                q.push(("key-marker".into(), key_marker.clone()));
                q.push(("upload-id-marker".into(), id_marker.clone()));
            }
            let a = match self.send("GET", None, q, vec![], Body::Bytes(Bytes::new())).await {
                Err(e) if matches!(e.status(), Some(501) | Some(405)) || e.code() == Some("NotImplemented") => {
                    return Err(StorageError::Unsupported(format!("ListMultipartUploads: {e}")))
                }
                r => r?,
            };
            let text = a.text()?;
            for u in xml::elements(text, "Upload") {
                out.push(UploadInfo {
                    key: xml::text(u, "Key").unwrap_or_default(),
                    upload_id: xml::text(u, "UploadId").unwrap_or_default(),
                    initiated: xml::text(u, "Initiated").unwrap_or_default(),
                });
            }
            let truncated = xml::text(text, "IsTruncated").is_some_and(|t| t.trim() == "true");
            let nk = xml::text(text, "NextKeyMarker").unwrap_or_default();
            let ni = xml::text(text, "NextUploadIdMarker").unwrap_or_default();
            if !truncated || (nk == key_marker && ni == id_marker) || nk.is_empty() || nk < key_marker {
                break;
            }
            key_marker = nk;
            id_marker = ni;
        }
        Ok(out)
    }
}

/// The longest answer read, but for an object's bytes: error documents and listings (1,000 parts or uploads
/// a page) are far smaller.
const ANSWER_LIMIT: u64 = 16 << 20;
/// The longest object [`ObjectStore::get_object`] reads (it serves small objects and tests).
const OBJECT_LIMIT: u64 = 1 << 30;

fn transport(method: &str, key: Option<&str>, e: reqwest::Error) -> StorageError {
    tracing::debug!(method, key = key.unwrap_or(""), error = %e, "store request failed");
    // reqwest's messages hold the URL (no secrets: signatures travel in headers).
    StorageError::Transport(describe_transport_error(&e))
}

/// S3 may answer 200 and put an error in the body of CompleteMultipartUpload.
fn error_in_body(text: &str) -> Option<StorageError> {
    if text.contains("<Error>") {
        Some(from_response(500, text, None, None))
    } else {
        None
    }
}

impl ObjectStore for Client {
    fn correct_clock(&self, server_time: i64) {
        self.clock.correct(server_time);
    }

    fn put_object<'a>(&'a self, key: &'a str, body: Body, opts: &'a PutOptions) -> BoxFuture<'a, Result<PutResult>> {
        Box::pin(async move {
            let a = self.send("PUT", Some(key), vec![], self.object_headers(opts), body).await?;
            let checksum = a.checksum(opts.checksum.map(|c| c.algorithm))?;
            Ok(PutResult { etag: a.etag(), crc64: a.crc64()?, checksum })
        })
    }

    fn head_object<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(async move {
            let a = self.send("HEAD", Some(key), vec![], vec![], Body::Bytes(Bytes::new())).await?;
            let len = parse_u64(a.header("content-length").map(str::to_string), "Content-Length")?;
            let prefix = self.meta_prefix();
            let metadata = a
                .headers
                .iter()
                .filter_map(|(k, v)| {
                    let name = k.as_str().strip_prefix(prefix)?;
                    Some((name.to_string(), v.to_str().ok()?.to_string()))
                })
                .collect();
            Ok(ObjectMeta { len, etag: a.etag(), crc64: a.crc64()?, metadata })
        })
    }

    fn get_object<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(async move { Ok(self.send("GET", Some(key), vec![], vec![], Body::Bytes(Bytes::new())).await?.body) })
    }

    fn initiate_multipart<'a>(
        &'a self,
        key: &'a str,
        opts: &'a PutOptions,
        checksum: Option<Algorithm>,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let q = vec![("uploads".to_string(), String::new())];
            let opts = PutOptions { content_md5: None, checksum: None, ..opts.clone() };
            let mut h = self.object_headers(&opts);
            if let Some(alg) = checksum {
                h.push(("x-amz-checksum-algorithm".to_string(), alg.s3_name().to_string()));
                h.push(("x-amz-checksum-type".to_string(), "FULL_OBJECT".to_string()));
            }
            let a = self.send("POST", Some(key), q, h, Body::Bytes(Bytes::new())).await?;
            xml::text(a.text()?, "UploadId")
                .filter(|id| !id.is_empty())
                .ok_or_else(|| StorageError::Protocol("InitiateMultipartUpload: no UploadId".into()))
        })
    }

    fn upload_part<'a>(
        &'a self,
        key: &'a str,
        upload_id: &'a str,
        number: u32,
        body: Body,
        check: PartCheck,
    ) -> BoxFuture<'a, Result<PutResult>> {
        Box::pin(async move {
            let q = vec![("partNumber".to_string(), number.to_string()), ("uploadId".to_string(), upload_id.into())];
            let mut h = Vec::new();
            if let Some(m) = check.content_md5 {
                h.push(("Content-MD5".to_string(), m));
            }
            if let Some(c) = check.checksum {
                h.push((c.algorithm.header().to_string(), c.algorithm.encode(c.value)));
            }
            let algorithm = check.checksum.map(|c| c.algorithm);
            let a = self.send("PUT", Some(key), q, h, body).await?;
            let etag = a.etag();
            if etag.is_empty() {
                return Err(StorageError::Protocol(format!("UploadPart {number}: no ETag")));
            }
            Ok(PutResult { etag, crc64: a.crc64()?, checksum: a.checksum(algorithm)? })
        })
    }

    fn list_parts<'a>(&'a self, key: &'a str, upload_id: &'a str) -> BoxFuture<'a, Result<Vec<PartInfo>>> {
        Box::pin(self.list_parts_impl(key, upload_id))
    }

    fn complete_multipart<'a>(
        &'a self,
        key: &'a str,
        upload_id: &'a str,
        parts: &'a [CompletedPart],
        whole: Option<checksum::Value>,
    ) -> BoxFuture<'a, Result<PutResult>> {
        Box::pin(async move {
            let algorithm = whole.map(|w| w.algorithm);
            let mut body = String::from("<CompleteMultipartUpload>");
            for p in parts {
                let etag = xml_escape(&format!("\"{}\"", p.etag));
                body.push_str(&format!("<Part><PartNumber>{}</PartNumber><ETag>{etag}</ETag>", p.number));
                if let (Some(alg), Some(v)) = (algorithm, p.checksum) {
                    let el = alg.xml_element();
                    body.push_str(&format!("<{el}>{}</{el}>", alg.encode(v)));
                }
                body.push_str("</Part>");
            }
            body.push_str("</CompleteMultipartUpload>");
            let q = vec![("uploadId".to_string(), upload_id.to_string())];
            let mut h = vec![("Content-Type".to_string(), "application/xml".to_string())];
            if let Some(w) = whole {
                h.push((w.algorithm.header().to_string(), w.algorithm.encode(w.value)));
                h.push(("x-amz-checksum-type".to_string(), "FULL_OBJECT".to_string()));
            }
            let a = self.send("POST", Some(key), q, h, Body::Bytes(Bytes::from(body))).await?;
            let text = a.text()?;
            if let Some(e) = error_in_body(text) {
                return Err(e);
            }
            let etag = xml::text(text, "ETag").map(|e| unquote(&e)).unwrap_or_else(|| a.etag());
            // S3 answers the object's checksum in the body; some stores put it in a header. The object is stored
            // by now: a value that is not the full object's (a store that made it a composite `...-N`, or
            // garbage) is no echo, never a reason to send Complete again.
            let checksum = algorithm.and_then(|alg| {
                let v = xml::text(text, alg.xml_element()).or_else(|| a.header(alg.header()).map(str::to_string))?;
                alg.decode(&v)
            });
            Ok(PutResult { etag, crc64: a.crc64()?, checksum })
        })
    }

    fn abort_multipart<'a>(&'a self, key: &'a str, upload_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let q = vec![("uploadId".to_string(), upload_id.to_string())];
            self.send("DELETE", Some(key), q, vec![], Body::Bytes(Bytes::new())).await.map(|_| ())
        })
    }

    fn list_multipart_uploads<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<UploadInfo>>> {
        Box::pin(self.list_uploads_impl(prefix))
    }

    fn has_crc64(&self) -> bool {
        self.cfg.flavor.is_oss()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_warned_about_unless_loopback() {
        let warned = |url: &str| plaintext_warning(&Endpoint::parse(url).expect("endpoint")).is_some();
        for url in ["http://10.1.2.3:1", "http://oss.example.com", "http://[2001:db8::1]:9000", "http://128.0.0.1"] {
            assert!(warned(url), "{url}");
        }
        for url in [
            "https://10.1.2.3",
            "http://127.0.0.1:9000",
            "http://127.8.9.10",
            "http://[::1]:9000",
            "http://localhost:9000",
            "http://LOCALHOST",
            "oss-cn-hangzhou.aliyuncs.com",
        ] {
            assert!(!warned(url), "{url}");
        }
    }
}
