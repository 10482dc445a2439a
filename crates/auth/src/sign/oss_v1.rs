//! OSS signature V1 (`OSS ak:signature`, HMAC-SHA1), header and presigned-URL forms.

use super::{base64, hmac_sha1, lookup, SecretLookup, Verified, VerifyError};
use crate::time::{parse_http_date, UtcTime};
use crate::{Credentials, SignableRequest};

/// Query parameters that are part of the canonical resource: the union of the lists the official SDKs sign
/// (oss2 and the V2 SDKs), so a verifier accepts what either of them sends. Names starting `x-oss-` are signed too.
pub const SUB_RESOURCES: &[&str] = &[
    "acl",
    "append",
    "asyncFetch",
    "bucketInfo",
    "callback",
    "callback-var",
    "cloudboxes",
    "cname",
    "comp",
    "continuation-token",
    "cors",
    "delete",
    "encryption",
    "endTime",
    "group",
    "inventory",
    "inventoryId",
    "lifecycle",
    "link",
    "live",
    "location",
    "logging",
    "metaQuery",
    "objectInfo",
    "objectMeta",
    "partNumber",
    "policy",
    "position",
    "qos",
    "qosInfo",
    "referer",
    "regionList",
    "replication",
    "replicationLocation",
    "replicationProgress",
    "requestPayment",
    "resourceGroup",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "security-token",
    "sequential",
    "startTime",
    "stat",
    "status",
    "symlink",
    "tagging",
    "transferAcceleration",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "vod",
    "website",
    "worm",
    "wormExtend",
    "wormId",
];

fn is_sub_resource(name: &str, extra: &[&str]) -> bool {
    SUB_RESOURCES.contains(&name) || name.starts_with("x-oss-") || extra.contains(&name)
}

/// `/bucket/key?subresources` (bucket and key as they are, not encoded).
pub fn canonical_resource(req: &SignableRequest, bucket: Option<&str>, key: Option<&str>, extra: &[&str]) -> String {
    let mut out = String::from("/");
    if let Some(b) = bucket {
        out.push_str(b);
        out.push('/');
    }
    if let Some(k) = key {
        out.push_str(k);
    }
    let mut subs: Vec<&(String, String)> = req.query.iter().filter(|(k, _)| is_sub_resource(k, extra)).collect();
    subs.sort_by(|a, b| a.0.cmp(&b.0));
    subs.dedup_by(|a, b| a.0 == b.0);
    if !subs.is_empty() {
        out.push('?');
        let items: Vec<String> =
            subs.iter().map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k}={v}") }).collect();
        out.push_str(&items.join("&"));
    }
    out
}

/// Lowercased `x-oss-*` headers, sorted, `name:value\n` each.
pub fn canonical_oss_headers(req: &SignableRequest) -> String {
    let mut names: Vec<String> =
        req.headers.iter().map(|(k, _)| k.to_ascii_lowercase()).filter(|k| k.starts_with("x-oss-")).collect();
    names.sort();
    names.dedup();
    super::canonical_headers(req, &names, |v| v.trim().to_string())
}

/// `VERB\nContent-MD5\nContent-Type\nDate\n` + canonical x-oss headers + canonical resource.
pub fn string_to_sign(
    req: &SignableRequest,
    date: &str,
    bucket: Option<&str>,
    key: Option<&str>,
    extra: &[&str],
) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}{}",
        req.method,
        req.header("Content-MD5").unwrap_or(""),
        req.header("Content-Type").unwrap_or(""),
        date,
        canonical_oss_headers(req),
        canonical_resource(req, bucket, key, extra)
    )
}

pub fn signature(secret: &str, string_to_sign: &str) -> String {
    base64(&hmac_sha1(secret.as_bytes(), string_to_sign.as_bytes()))
}

/// Signs in the `Authorization` header; sets `Date` (and `x-oss-security-token` for STS credentials).
/// When the request carries `x-oss-date`, that is what takes the date's place, as the SDKs do.
pub fn sign_header(req: &mut SignableRequest, creds: &Credentials, bucket: Option<&str>, key: Option<&str>, time: i64) {
    let date = UtcTime::from_unix(time).http_date();
    req.set_header("Date", &date);
    if let Some(token) = creds.token() {
        req.set_header("x-oss-security-token", token);
    }
    req.remove_header("Authorization");
    let date = req.header("x-oss-date").unwrap_or(&date).to_string();
    let sig = signature(creds.access_key_secret.expose(), &string_to_sign(req, &date, bucket, key, &[]));
    req.set_header("Authorization", &format!("OSS {}:{sig}", creds.access_key_id));
}

/// Presigns in the query string (`OSSAccessKeyId`, `Expires`, `Signature`), valid until `expires_at` (unix seconds).
pub fn presign(
    req: &mut SignableRequest,
    creds: &Credentials,
    bucket: Option<&str>,
    key: Option<&str>,
    expires_at: i64,
) {
    if let Some(token) = creds.token() {
        req.set_query("security-token", token);
    }
    let expires = expires_at.to_string();
    let sig = signature(creds.access_key_secret.expose(), &string_to_sign(req, &expires, bucket, key, &[]));
    req.set_query("Expires", &expires);
    req.set_query("OSSAccessKeyId", &creds.access_key_id);
    req.set_query("Signature", &sig);
}

/// Verifies a V1-signed request (header or presigned URL).
pub fn verify(
    req: &SignableRequest,
    bucket: Option<&str>,
    key: Option<&str>,
    keys: &dyn SecretLookup,
) -> Result<Verified, VerifyError> {
    if let Some(sig) = req.query_param("Signature") {
        let ak =
            req.query_param("OSSAccessKeyId").ok_or_else(|| VerifyError::Malformed("missing OSSAccessKeyId".into()))?;
        let expires = req.query_param("Expires").ok_or_else(|| VerifyError::Malformed("missing Expires".into()))?;
        let expires_at: i64 = expires.parse().map_err(|_| VerifyError::Malformed("bad Expires".into()))?;
        let secret = lookup(keys, ak)?;
        let mut unsigned = req.clone();
        unsigned.query.retain(|(k, _)| !matches!(k.as_str(), "Signature" | "OSSAccessKeyId" | "Expires"));
        let sts = string_to_sign(&unsigned, expires, bucket, key, &[]);
        if !super::same_signature(&signature(secret.expose(), &sts), sig) {
            return Err(VerifyError::Mismatch { access_key_id: ak.to_string(), string_to_sign: sts });
        }
        return Ok(Verified {
            access_key_id: ak.to_string(),
            signed_at: None,
            expires_at: Some(expires_at),
            region: None,
            presigned: true,
        });
    }
    let auth = req.header("Authorization").ok_or(VerifyError::Unsigned)?;
    let (ak, sig) = auth
        .strip_prefix("OSS ")
        .and_then(|r| r.rsplit_once(':'))
        .ok_or_else(|| VerifyError::Malformed("not an OSS V1 authorization".into()))?;
    let secret = lookup(keys, ak)?;
    // oss2 puts x-oss-date in the date's place while the V2 SDKs use Date: accept either.
    let candidates: Vec<&str> = [req.header("x-oss-date"), req.header("Date")].into_iter().flatten().collect();
    if candidates.is_empty() {
        return Err(VerifyError::Malformed("missing Date".into()));
    }
    let mut last = String::new();
    for date in &candidates {
        let sts = string_to_sign(req, date, bucket, key, &[]);
        if super::same_signature(&signature(secret.expose(), &sts), sig) {
            return Ok(Verified {
                access_key_id: ak.to_string(),
                signed_at: parse_http_date(date),
                expires_at: None,
                region: None,
                presigned: false,
            });
        }
        last = sts;
    }
    Err(VerifyError::Mismatch { access_key_id: ak.to_string(), string_to_sign: last })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    const DATE: &str = "Wed, 28 Dec 2022 10:27:41 GMT";

    fn keys(ak: &str) -> Option<Secret> {
        (ak == "ak").then(|| Secret::new("sk"))
    }

    fn put(path_query: &str) -> SignableRequest {
        SignableRequest::from_target("PUT", path_query, vec![])
            .unwrap_or_default()
            .with_header("Content-MD5", "eB5eJF1ptWaXm4bijSPyxw==")
            .with_header("Content-Type", "text/html")
            .with_header("x-oss-meta-author", "alice")
            .with_header("x-oss-meta-magic", "abracadabra")
            .with_header("x-oss-date", DATE)
    }

    #[test]
    fn header_vectors() {
        let t = parse_http_date(DATE).unwrap_or_default();
        let cases = [
            ("/", "/examplebucket/nelson", "OSS ak:kSHKmLxlyEAKtZPkJhG9bZb5k7M="),
            ("/?acl", "/examplebucket/nelson?acl", "OSS ak:/afkugFbmWDQ967j1vr6zygBLQk="),
        ];
        for (target, resource, auth) in cases {
            let mut r = put(target);
            sign_header(&mut r, &Credentials::new("ak", "sk"), Some("examplebucket"), Some("nelson"), t);
            let sts = string_to_sign(&r, DATE, Some("examplebucket"), Some("nelson"), &[]);
            assert_eq!(
                sts,
                format!("PUT\neB5eJF1ptWaXm4bijSPyxw==\ntext/html\n{DATE}\nx-oss-date:{DATE}\nx-oss-meta-author:alice\nx-oss-meta-magic:abracadabra\n{resource}")
            );
            assert_eq!(r.header("Authorization"), Some(auth));
            assert!(verify(&r, Some("examplebucket"), Some("nelson"), &keys).is_ok());
        }
    }

    #[test]
    fn header_vectors_with_extra_sub_resources() {
        let t = parse_http_date(DATE).unwrap_or_default();
        for (target, resource, auth) in [
            (
                "/?resourceGroup&non-resousce=null",
                "/examplebucket/?resourceGroup",
                "OSS ak:vkQmfuUDyi1uDi3bKt67oemssIs=",
            ),
            ("/?resourceGroup&acl", "/examplebucket/?acl&resourceGroup", "OSS ak:x3E5TgOvl/i7PN618s5mEvpJDYk="),
        ] {
            let mut r =
                SignableRequest::from_target("GET", target, vec![]).unwrap_or_default().with_header("x-oss-date", DATE);
            sign_header(&mut r, &Credentials::new("ak", "sk"), Some("examplebucket"), None, t);
            assert_eq!(canonical_resource(&r, Some("examplebucket"), None, &[]), resource);
            assert_eq!(r.header("Authorization"), Some(auth));
        }
    }

    #[test]
    fn presign_vectors() {
        let mut r = SignableRequest::from_target("GET", "/key?versionId=versionId", vec![]).unwrap_or_default();
        presign(&mut r, &Credentials::new("ak", "sk"), Some("bucket"), Some("key"), 1699807420);
        assert_eq!(
            r.target(),
            "/key?versionId=versionId&Expires=1699807420&OSSAccessKeyId=ak&Signature=dcLTea%2BYh9ApirQ8o8dOPqtvJXQ%3D"
        );
        assert_eq!(verify(&r, Some("bucket"), Some("key"), &keys).map(|v| v.expires_at), Ok(Some(1699807420)));

        let mut r = SignableRequest::from_target("GET", "/key%2B123?versionId=versionId", vec![]).unwrap_or_default();
        presign(&mut r, &Credentials::new("ak", "sk").with_token("token"), Some("bucket"), Some("key+123"), 1699808204);
        assert_eq!(r.query_param("Signature"), Some("jzKYRrM5y6Br0dRFPaTGOsbrDhY="));
        assert_eq!(r.query_param("security-token"), Some("token"));
        assert!(verify(&r, Some("bucket"), Some("key+123"), &keys).is_ok());
    }

    #[test]
    fn tampering_is_detected() {
        let mut r = put("/");
        sign_header(&mut r, &Credentials::new("ak", "sk"), Some("examplebucket"), Some("nelson"), 0);
        let mut t = r.clone();
        t.set_header("Content-MD5", "AAAAAAAAAAAAAAAAAAAAAA==");
        assert!(matches!(verify(&t, Some("examplebucket"), Some("nelson"), &keys), Err(VerifyError::Mismatch { .. })));
        assert!(matches!(verify(&r, Some("examplebucket"), Some("other"), &keys), Err(VerifyError::Mismatch { .. })));
        let mut t = r.clone();
        t.query.push(("uploads".into(), String::new()));
        assert!(matches!(verify(&t, Some("examplebucket"), Some("nelson"), &keys), Err(VerifyError::Mismatch { .. })));
        let mut t = r.clone();
        t.query.push(("prefix".into(), "not a sub-resource".into()));
        assert!(verify(&t, Some("examplebucket"), Some("nelson"), &keys).is_ok());
    }
}
