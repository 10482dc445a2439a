//! OSS signature V4 (`OSS4-HMAC-SHA256`), header and presigned-query forms.

use super::{hmac_sha256, lookup, param, sha256_hex, SecretLookup, Verified, VerifyError};
use crate::encode::uri_encode;
use crate::time::{parse_basic, UtcTime};
use crate::{Credentials, SignableRequest};
use imgport_wire::hex;

pub const ALGORITHM: &str = "OSS4-HMAC-SHA256";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const TERMINATOR: &str = "aliyun_v4_request";

/// The bucket and key a request addresses; both are part of the canonical URI whatever the host style.
#[derive(Debug, Clone, Copy, Default)]
pub struct Resource<'a> {
    pub bucket: Option<&'a str>,
    pub key: Option<&'a str>,
}

/// Region and product of the credential scope (`oss` for OSS, `oss-cloudbox` for CloudBox).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub region: &'a str,
    pub product: &'a str,
}

fn is_default_signed(lower: &str) -> bool {
    lower.starts_with("x-oss-") || lower == "content-type" || lower == "content-md5"
}

/// `/bucket/key`, percent-encoded with `/` kept.
pub fn canonical_uri(res: Resource) -> String {
    let mut uri = String::from("/");
    if let Some(b) = res.bucket {
        uri.push_str(b);
        uri.push('/');
    }
    if let Some(k) = res.key {
        uri.push_str(k);
    }
    uri_encode(&uri, true)
}

/// Encoded pairs sorted by encoded name; a pair with an empty value is written as the bare name.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> =
        query.iter().map(|(k, v)| (uri_encode(k, false), uri_encode(v, false))).collect();
    pairs.sort();
    pairs.dedup_by(|a, b| a.0 == b.0);
    pairs.iter().map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k}={v}") }).collect::<Vec<_>>().join("&")
}

/// The additional headers that take part: lowercased, present in the request, not signed by default, sorted.
pub fn additional_headers(req: &SignableRequest, requested: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = requested
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .filter(|h| !is_default_signed(h) && req.header(h).is_some_and(|v| !v.is_empty()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The canonical request; the payload hash is the `x-oss-content-sha256` header or `UNSIGNED-PAYLOAD`.
pub fn canonical_request(req: &SignableRequest, res: Resource, additional: &[String]) -> String {
    let mut names: Vec<String> = req
        .headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .filter(|k| is_default_signed(k) || additional.contains(k))
        .collect();
    names.sort();
    names.dedup();
    let headers = super::canonical_headers(req, &names, |v| v.trim().to_string());
    let payload = req.header("x-oss-content-sha256").filter(|v| !v.is_empty()).unwrap_or(UNSIGNED_PAYLOAD);
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(res),
        canonical_query(&req.query),
        headers,
        additional.join(";"),
        payload
    )
}

pub fn scope_string(date: &str, scope: Scope) -> String {
    format!("{date}/{}/{}/{TERMINATOR}", scope.region, scope.product)
}

pub fn string_to_sign(datetime: &str, scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{datetime}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// HMAC chain `aliyun_v4`+secret -> date -> region -> product -> `aliyun_v4_request`.
pub fn signing_key(secret: &str, date: &str, scope: Scope) -> [u8; 32] {
    let k = hmac_sha256(format!("aliyun_v4{secret}").as_bytes(), date.as_bytes());
    let k = hmac_sha256(&k, scope.region.as_bytes());
    let k = hmac_sha256(&k, scope.product.as_bytes());
    hmac_sha256(&k, TERMINATOR.as_bytes())
}

pub fn signature(secret: &str, date: &str, scope: Scope, string_to_sign: &str) -> String {
    hex(&hmac_sha256(&signing_key(secret, date, scope), string_to_sign.as_bytes()))
}

/// Signs in the `Authorization` header. Sets `x-oss-date`, `Date`, `x-oss-security-token` (STS),
/// `x-oss-content-sha256` (kept when the caller already put a real payload hash there) and `Authorization`.
pub fn sign_header(
    req: &mut SignableRequest,
    creds: &Credentials,
    res: Resource,
    scope: Scope,
    additional: &[&str],
    time: i64,
) {
    let t = UtcTime::from_unix(time);
    let (datetime, date) = (t.basic(), t.date_basic());
    req.set_header("x-oss-date", &datetime);
    req.set_header("Date", &t.http_date());
    if let Some(token) = creds.token() {
        req.set_header("x-oss-security-token", token);
    }
    if req.header("x-oss-content-sha256").is_none_or(str::is_empty) {
        req.set_header("x-oss-content-sha256", UNSIGNED_PAYLOAD);
    }
    req.remove_header("Authorization");
    let additional = additional_headers(req, additional);
    let scope_str = scope_string(&date, scope);
    let sts = string_to_sign(&datetime, &scope_str, &canonical_request(req, res, &additional));
    let sig = signature(creds.access_key_secret.expose(), &date, scope, &sts);
    let mut auth = format!("{ALGORITHM} Credential={}/{scope_str}", creds.access_key_id);
    if !additional.is_empty() {
        auth.push_str(",AdditionalHeaders=");
        auth.push_str(&additional.join(";"));
    }
    auth.push_str(",Signature=");
    auth.push_str(&sig);
    req.set_header("Authorization", &auth);
}

/// Presigns in the query string: valid from `time` for `expires_in` seconds.
pub fn presign(
    req: &mut SignableRequest,
    creds: &Credentials,
    res: Resource,
    scope: Scope,
    additional: &[&str],
    time: i64,
    expires_in: u64,
) {
    let t = UtcTime::from_unix(time);
    let (datetime, date) = (t.basic(), t.date_basic());
    let additional = additional_headers(req, additional);
    let scope_str = scope_string(&date, scope);
    if let Some(token) = creds.token() {
        req.set_query("x-oss-security-token", token);
    }
    req.set_query("x-oss-signature-version", ALGORITHM);
    req.set_query("x-oss-date", &datetime);
    req.set_query("x-oss-expires", &expires_in.to_string());
    req.set_query("x-oss-credential", &format!("{}/{scope_str}", creds.access_key_id));
    if !additional.is_empty() {
        req.set_query("x-oss-additional-headers", &additional.join(";"));
    }
    req.query.retain(|(k, _)| k != "x-oss-signature");
    let sts = string_to_sign(&datetime, &scope_str, &canonical_request(req, res, &additional));
    let sig = signature(creds.access_key_secret.expose(), &date, scope, &sts);
    req.set_query("x-oss-signature", &sig);
}

struct Claim {
    ak: String,
    date: String,
    region: String,
    product: String,
    additional: Vec<String>,
    signature: String,
}

fn parse_credential(credential: &str) -> Result<(String, String, String, String), VerifyError> {
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [ak, date, region, product, term] if *term == TERMINATOR && !ak.is_empty() => {
            Ok((ak.to_string(), date.to_string(), region.to_string(), product.to_string()))
        }
        _ => Err(VerifyError::Malformed(format!("bad credential scope {credential:?}"))),
    }
}

/// Verifies a V4-signed request (header or presigned form) against the bucket and key it addresses.
pub fn verify(req: &SignableRequest, res: Resource, keys: &dyn SecretLookup) -> Result<Verified, VerifyError> {
    let presigned = req.query_param("x-oss-signature-version").is_some();
    let (claim, datetime, expires_at, unsigned) = if presigned {
        if req.query_param("x-oss-signature-version") != Some(ALGORITHM) {
            return Err(VerifyError::Malformed("unsupported x-oss-signature-version".into()));
        }
        let q = |n: &str| req.query_param(n).ok_or_else(|| VerifyError::Malformed(format!("missing {n}")));
        let (ak, date, region, product) = parse_credential(q("x-oss-credential")?)?;
        let datetime = q("x-oss-date")?.to_string();
        let expires: i64 =
            q("x-oss-expires")?.parse().map_err(|_| VerifyError::Malformed("bad x-oss-expires".into()))?;
        let additional = req
            .query_param("x-oss-additional-headers")
            .map(|h| h.split(';').filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        let mut unsigned = req.clone();
        unsigned.query.retain(|(k, _)| k != "x-oss-signature");
        let claim = Claim { ak, date, region, product, additional, signature: q("x-oss-signature")?.to_string() };
        let signed_at = parse_basic(&datetime).ok_or_else(|| VerifyError::Malformed("bad x-oss-date".into()))?;
        (claim, datetime, Some(signed_at + expires), unsigned)
    } else {
        let auth = req.header("Authorization").ok_or(VerifyError::Unsigned)?;
        let rest = auth
            .strip_prefix(ALGORITHM)
            .filter(|r| r.starts_with(' '))
            .ok_or_else(|| VerifyError::Malformed("not an OSS4-HMAC-SHA256 authorization".into()))?;
        let params = super::auth_params(rest);
        let credential = param(&params, "Credential").ok_or_else(|| VerifyError::Malformed("no Credential".into()))?;
        let (ak, date, region, product) = parse_credential(credential)?;
        let signature = param(&params, "Signature").ok_or_else(|| VerifyError::Malformed("no Signature".into()))?;
        let additional = param(&params, "AdditionalHeaders")
            .map(|h| h.split(';').filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        let datetime =
            req.header("x-oss-date").ok_or_else(|| VerifyError::Malformed("missing x-oss-date".into()))?.to_string();
        let claim = Claim { ak, date, region, product, additional, signature: signature.to_string() };
        (claim, datetime, None, req.clone())
    };
    let signed_at = parse_basic(&datetime).ok_or_else(|| VerifyError::Malformed("bad x-oss-date".into()))?;
    if !datetime.starts_with(&claim.date) {
        return Err(VerifyError::Malformed("credential date differs from x-oss-date".into()));
    }
    let secret = lookup(keys, &claim.ak)?;
    let scope = Scope { region: &claim.region, product: &claim.product };
    let sts = string_to_sign(
        &datetime,
        &scope_string(&claim.date, scope),
        &canonical_request(&unsigned, res, &claim.additional),
    );
    if !super::same_signature(&signature(secret.expose(), &claim.date, scope, &sts), &claim.signature) {
        return Err(VerifyError::Mismatch { access_key_id: claim.ak, string_to_sign: sts });
    }
    Ok(Verified {
        access_key_id: claim.ak,
        signed_at: Some(signed_at),
        expires_at,
        region: Some(claim.region),
        presigned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    const KEY: &str = "1234+-/123/1.txt";

    fn vector_request(content_type: &str) -> SignableRequest {
        let mut r = SignableRequest::new("PUT", "/1234+-/123/1.txt")
            .with_header("x-oss-head1", "value")
            .with_header("abc", "value")
            .with_header("ZAbc", "value")
            .with_header("XYZ", "value")
            .with_header("content-type", content_type);
        for (k, v) in [
            ("param1", "value1"),
            ("+param1", "value3"),
            ("|param1", "value4"),
            ("+param2", ""),
            ("|param2", ""),
            ("param2", ""),
        ] {
            r = r.with_query(k, v);
        }
        r
    }

    fn res() -> Resource<'static> {
        Resource { bucket: Some("bucket"), key: Some(KEY) }
    }

    const HZ: Scope = Scope { region: "cn-hangzhou", product: "oss" };

    fn keys(ak: &str) -> Option<Secret> {
        (ak == "ak").then(|| Secret::new("sk"))
    }

    #[test]
    fn header_vector() {
        let mut r = vector_request("text/plain");
        sign_header(&mut r, &Credentials::new("ak", "sk"), res(), HZ, &[], 1702743657);
        let expected_cr = "PUT\n/bucket/1234%2B-/123/1.txt\n%2Bparam1=value3&%2Bparam2&%7Cparam1=value4&%7Cparam2&param1=value1&param2\ncontent-type:text/plain\nx-oss-content-sha256:UNSIGNED-PAYLOAD\nx-oss-date:20231216T162057Z\nx-oss-head1:value\n\n\nUNSIGNED-PAYLOAD";
        assert_eq!(canonical_request(&r, res(), &[]), expected_cr);
        assert_eq!(
            r.header("Authorization"),
            Some("OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request,Signature=e21d18daa82167720f9b1047ae7e7f1ce7cb77a31e8203a7d5f4624fa0284afe")
        );
        let v = verify(&r, res(), &keys).map_err(|e| e.to_string());
        assert_eq!(v.map(|v| v.signed_at), Ok(Some(1702743657)));
    }

    #[test]
    fn header_vector_with_token() {
        let mut r = vector_request("text/plain");
        sign_header(&mut r, &Credentials::new("ak", "sk").with_token("token"), res(), HZ, &[], 1702784856);
        assert_eq!(
            r.header("Authorization"),
            Some("OSS4-HMAC-SHA256 Credential=ak/20231217/cn-hangzhou/oss/aliyun_v4_request,Signature=b94a3f999cf85bcdc00d332fbd3734ba03e48382c36fa4d5af5df817395bd9ea")
        );
        assert!(verify(&r, res(), &keys).is_ok());
    }

    #[test]
    fn header_vector_additional_headers() {
        for requested in [&["ZAbc", "abc"][..], &["x-oss-no-exist", "ZAbc", "x-oss-head1", "abc"][..]] {
            let mut r = vector_request("text/plain");
            sign_header(&mut r, &Credentials::new("ak", "sk"), res(), HZ, requested, 1702747512);
            assert_eq!(
                r.header("Authorization"),
                Some("OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request,AdditionalHeaders=abc;zabc,Signature=4a4183c187c07c8947db7620deb0a6b38d9fbdd34187b6dbaccb316fa251212f")
            );
            assert!(verify(&r, res(), &keys).is_ok());
        }
    }

    #[test]
    fn header_vector_cloudbox() {
        let mut r = vector_request("text/plain");
        let scope = Scope { region: "cb-123", product: "oss-cloudbox" };
        sign_header(&mut r, &Credentials::new("ak", "sk"), res(), scope, &[], 1702743657);
        assert_eq!(
            r.header("Authorization"),
            Some("OSS4-HMAC-SHA256 Credential=ak/20231216/cb-123/oss-cloudbox/aliyun_v4_request,Signature=94ce1f12c17d148ea681030275a94449d3357f5b5b21133996eec80af3e08a43")
        );
    }

    fn presigned(creds: &Credentials, scope: Scope, additional: &[&str], sign: i64, until: i64) -> SignableRequest {
        let mut r = vector_request("application/octet-stream");
        presign(&mut r, creds, res(), scope, additional, sign, (until - sign) as u64);
        r
    }

    #[test]
    fn query_vectors() {
        let ak = Credentials::new("ak", "sk");
        type Case<'a> = (Credentials, Scope<'a>, &'a [&'a str], i64, i64, &'a str, &'a str);
        let cases: [Case; 6] = [
            (
                ak.clone(),
                HZ,
                &[],
                1702781677,
                1702782276,
                "20231217T025437Z",
                "a39966c61718be0d5b14e668088b3fa07601033f6518ac7b523100014269c0fe",
            ),
            (
                ak.clone().with_token("token"),
                HZ,
                &[],
                1702785388,
                1702785987,
                "20231217T035628Z",
                "3817ac9d206cd6dfc90f1c09c00be45005602e55898f26f5ddb06d7892e1f8b5",
            ),
            (
                ak.clone(),
                HZ,
                &["ZAbc", "abc"],
                1702783809,
                1702784408,
                "20231217T033009Z",
                "6bd984bfe531afb6db1f7550983a741b103a8c58e5e14f83ea474c2322dfa2b7",
            ),
            (
                ak.clone(),
                HZ,
                &["x-oss-no-exist", "abc", "x-oss-head1", "ZAbc"],
                1702783809,
                1702784408,
                "20231217T033009Z",
                "6bd984bfe531afb6db1f7550983a741b103a8c58e5e14f83ea474c2322dfa2b7",
            ),
            (
                ak.clone(),
                Scope { region: "cb-123", product: "oss-cloudbox" },
                &["ZAbc", "abc"],
                1702781677,
                1702782276,
                "20231217T025437Z",
                "07284191b9b4978ac3520cd39ee2dea2747eda454089359371ff463a6c7ba20f",
            ),
            (
                ak,
                Scope { region: "cb-123", product: "oss-cloudbox" },
                &["x-oss-no-exist", "abc", "x-oss-head1", "ZAbc"],
                1702783809,
                1702784408,
                "20231217T033009Z",
                "16782cc8a7a554523db055eb804b508522e7e370073108ad88ee2f47496701dd",
            ),
        ];
        for (creds, scope, additional, sign, until, date, sig) in cases {
            let r = presigned(&creds, scope, additional, sign, until);
            assert_eq!(r.query_param("x-oss-date"), Some(date));
            assert_eq!(r.query_param("x-oss-expires"), Some("599"));
            assert_eq!(r.query_param("x-oss-signature"), Some(sig), "{date} {additional:?}");
            let v = verify(&r, res(), &keys).map_err(|e| e.to_string());
            assert_eq!(v.map(|v| (v.presigned, v.expires_at)), Ok((true, Some(until))));
        }
    }

    #[test]
    fn tampering_is_detected() {
        let mut r = vector_request("text/plain");
        sign_header(&mut r, &Credentials::new("ak", "sk"), res(), HZ, &[], 1702743657);
        let other = Resource { bucket: Some("bucket"), key: Some("other") };
        assert!(matches!(verify(&r, other, &keys), Err(VerifyError::Mismatch { .. })));
        let mut t = r.clone();
        t.set_header("x-oss-head1", "changed");
        assert!(matches!(verify(&t, res(), &keys), Err(VerifyError::Mismatch { .. })));
        let mut t = r.clone();
        t.set_header("XYZ", "unsigned headers may change");
        assert!(verify(&t, res(), &keys).is_ok());
        let wrong = |_: &str| Some(Secret::new("other"));
        assert!(matches!(verify(&r, res(), &wrong), Err(VerifyError::Mismatch { .. })));
        let none = |_: &str| None;
        assert!(matches!(verify(&r, res(), &none), Err(VerifyError::UnknownAccessKey(_))));
        assert_eq!(verify(&SignableRequest::new("GET", "/"), res(), &keys), Err(VerifyError::Unsigned));
    }
}
