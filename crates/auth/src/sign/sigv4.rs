//! AWS Signature Version 4 for S3-compatible stores (and OSS's S3 endpoint), header and presigned-URL forms.
//!
//! Paths are encoded once and not normalised, as S3 requires.

use super::{hmac_sha256, lookup, param, sha256_hex, SecretLookup, Verified, VerifyError};
use crate::encode::uri_encode;
use crate::time::{parse_basic, UtcTime};
use crate::{Credentials, SignableRequest};
use imgport_wire::hex;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Region and service of the credential scope (`s3` for object stores).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
}

/// Headers a proxy may add or rewrite, which signers leave out.
const UNSIGNED_HEADERS: &[&str] =
    &["authorization", "user-agent", "expect", "x-amzn-trace-id", "transfer-encoding", "connection"];

pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        "/".to_string()
    } else {
        uri_encode(path, true)
    }
}

/// Encoded `k=v` pairs sorted by name then value.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> =
        query.iter().map(|(k, v)| (uri_encode(k, false), uri_encode(v, false))).collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

fn trim_all(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every header of the request except the few proxies touch, lowercased and sorted.
pub fn default_signed_headers(req: &SignableRequest) -> Vec<String> {
    let mut names: Vec<String> = req
        .headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .filter(|k| !UNSIGNED_HEADERS.contains(&k.as_str()))
        .collect();
    names.sort();
    names.dedup();
    names
}

pub fn canonical_request(req: &SignableRequest, signed_headers: &[String], payload_hash: &str) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(&req.path),
        canonical_query(&req.query),
        super::canonical_headers(req, signed_headers, trim_all),
        signed_headers.join(";"),
        payload_hash
    )
}

pub fn scope_string(date: &str, scope: Scope) -> String {
    format!("{date}/{}/{}/aws4_request", scope.region, scope.service)
}

pub fn string_to_sign(datetime: &str, scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{datetime}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

pub fn signing_key(secret: &str, date: &str, scope: Scope) -> [u8; 32] {
    let k = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac_sha256(&k, scope.region.as_bytes());
    let k = hmac_sha256(&k, scope.service.as_bytes());
    hmac_sha256(&k, b"aws4_request")
}

pub fn signature(secret: &str, date: &str, scope: Scope, string_to_sign: &str) -> String {
    hex(&hmac_sha256(&signing_key(secret, date, scope), string_to_sign.as_bytes()))
}

/// Signs in the `Authorization` header. `payload_hash` is the hex SHA-256 of the body or `UNSIGNED-PAYLOAD`;
/// for the `s3` service it is also sent as `x-amz-content-sha256`, which S3 requires. Sets `x-amz-date`,
/// `x-amz-security-token` (temporary credentials) and `Authorization`; the request must carry `host`.
pub fn sign_header(req: &mut SignableRequest, creds: &Credentials, scope: Scope, payload_hash: &str, time: i64) {
    let t = UtcTime::from_unix(time);
    let (datetime, date) = (t.basic(), t.date_basic());
    req.set_header("x-amz-date", &datetime);
    if scope.service == "s3" {
        req.set_header("x-amz-content-sha256", payload_hash);
    }
    if let Some(token) = creds.token() {
        req.set_header("x-amz-security-token", token);
    }
    req.remove_header("Authorization");
    let signed = default_signed_headers(req);
    let scope_str = scope_string(&date, scope);
    let sts = string_to_sign(&datetime, &scope_str, &canonical_request(req, &signed, payload_hash));
    let sig = signature(creds.access_key_secret.expose(), &date, scope, &sts);
    req.set_header(
        "Authorization",
        &format!(
            "{ALGORITHM} Credential={}/{scope_str}, SignedHeaders={}, Signature={sig}",
            creds.access_key_id,
            signed.join(";")
        ),
    );
}

/// Presigns in the query string (`X-Amz-*`), valid from `time` for `expires_in` seconds (at most 604800).
/// Signs only the headers present in the request (at least `host`) and an unsigned payload.
pub fn presign(req: &mut SignableRequest, creds: &Credentials, scope: Scope, time: i64, expires_in: u64) {
    let t = UtcTime::from_unix(time);
    let (datetime, date) = (t.basic(), t.date_basic());
    let signed = default_signed_headers(req);
    let scope_str = scope_string(&date, scope);
    req.set_query("X-Amz-Algorithm", ALGORITHM);
    req.set_query("X-Amz-Credential", &format!("{}/{scope_str}", creds.access_key_id));
    req.set_query("X-Amz-Date", &datetime);
    req.set_query("X-Amz-Expires", &expires_in.to_string());
    req.set_query("X-Amz-SignedHeaders", &signed.join(";"));
    if let Some(token) = creds.token() {
        req.set_query("X-Amz-Security-Token", token);
    }
    req.query.retain(|(k, _)| k != "X-Amz-Signature");
    let sts = string_to_sign(&datetime, &scope_str, &canonical_request(req, &signed, UNSIGNED_PAYLOAD));
    let sig = signature(creds.access_key_secret.expose(), &date, scope, &sts);
    req.set_query("X-Amz-Signature", &sig);
}

fn parse_credential(c: &str) -> Result<(String, String, String, String), VerifyError> {
    match c.split('/').collect::<Vec<_>>().as_slice() {
        [ak, date, region, service, "aws4_request"] if !ak.is_empty() => {
            Ok((ak.to_string(), date.to_string(), region.to_string(), service.to_string()))
        }
        _ => Err(VerifyError::Malformed(format!("bad credential scope {c:?}"))),
    }
}

/// Verifies a SigV4 request. For the header form the payload hash is `x-amz-content-sha256` when sent,
/// otherwise `body_sha256` (the hash of the body that arrived); presigned URLs sign an unsigned payload.
pub fn verify(
    req: &SignableRequest,
    body_sha256: Option<&str>,
    keys: &dyn SecretLookup,
) -> Result<Verified, VerifyError> {
    let presigned = req.query_param("X-Amz-Algorithm").is_some();
    let (credential, signed, sig, datetime, payload, expires, unsigned) = if presigned {
        let q = |n: &str| req.query_param(n).ok_or_else(|| VerifyError::Malformed(format!("missing {n}")));
        if q("X-Amz-Algorithm")? != ALGORITHM {
            return Err(VerifyError::Malformed("unsupported X-Amz-Algorithm".into()));
        }
        let expires: i64 =
            q("X-Amz-Expires")?.parse().map_err(|_| VerifyError::Malformed("bad X-Amz-Expires".into()))?;
        let mut unsigned = req.clone();
        unsigned.query.retain(|(k, _)| k != "X-Amz-Signature");
        let payload = req.header("x-amz-content-sha256").unwrap_or(UNSIGNED_PAYLOAD).to_string();
        (
            q("X-Amz-Credential")?,
            q("X-Amz-SignedHeaders")?,
            q("X-Amz-Signature")?,
            q("X-Amz-Date")?,
            payload,
            Some(expires),
            unsigned,
        )
    } else {
        let auth = req.header("Authorization").ok_or(VerifyError::Unsigned)?;
        let rest = auth
            .strip_prefix(ALGORITHM)
            .filter(|r| r.starts_with(' '))
            .ok_or_else(|| VerifyError::Malformed("not an AWS4-HMAC-SHA256 authorization".into()))?;
        let params = super::auth_params(rest);
        let get = |n: &str| param(&params, n).ok_or_else(|| VerifyError::Malformed(format!("no {n}")));
        let (credential, signed, sig) = (get("Credential")?, get("SignedHeaders")?, get("Signature")?);
        let datetime = req.header("x-amz-date").ok_or_else(|| VerifyError::Malformed("missing x-amz-date".into()))?;
        let payload = match (req.header("x-amz-content-sha256"), body_sha256) {
            (Some(h), _) => h.to_string(),
            (None, Some(b)) => b.to_string(),
            (None, None) => return Err(VerifyError::Malformed("missing x-amz-content-sha256".into())),
        };
        // Borrowed from the request; copy out so the tuple owns what it needs.
        let (credential, signed, sig) = (credential.to_string(), signed.to_string(), sig.to_string());
        return finish(req, &credential, &signed, &sig, datetime, &payload, None, false, keys);
    };
    let (credential, signed, sig) = (credential.to_string(), signed.to_string(), sig.to_string());
    let datetime = datetime.to_string();
    finish(&unsigned, &credential, &signed, &sig, &datetime, &payload, expires, presigned, keys)
}

#[allow(clippy::too_many_arguments)]
fn finish(
    req: &SignableRequest,
    credential: &str,
    signed: &str,
    sig: &str,
    datetime: &str,
    payload: &str,
    expires: Option<i64>,
    presigned: bool,
    keys: &dyn SecretLookup,
) -> Result<Verified, VerifyError> {
    let (ak, date, region, service) = parse_credential(credential)?;
    let signed_at = parse_basic(datetime).ok_or_else(|| VerifyError::Malformed("bad x-amz-date".into()))?;
    if !datetime.starts_with(&date) {
        return Err(VerifyError::Malformed("credential date differs from x-amz-date".into()));
    }
    if let (Some(h), false) = (req.header("x-amz-content-sha256"), presigned) {
        if h != payload {
            return Err(VerifyError::Malformed("x-amz-content-sha256 differs from the payload hash".into()));
        }
    }
    let signed: Vec<String> = signed.split(';').filter(|s| !s.is_empty()).map(str::to_ascii_lowercase).collect();
    if !signed.iter().any(|h| h == "host") {
        return Err(VerifyError::Malformed("host is not signed".into()));
    }
    let secret = lookup(keys, &ak)?;
    let scope = Scope { region: &region, service: &service };
    let sts = string_to_sign(datetime, &scope_string(&date, scope), &canonical_request(req, &signed, payload));
    if !super::same_signature(&signature(secret.expose(), &date, scope, &sts), sig) {
        return Err(VerifyError::Mismatch { access_key_id: ak, string_to_sign: sts });
    }
    Ok(Verified {
        access_key_id: ak,
        signed_at: Some(signed_at),
        expires_at: expires.map(|e| signed_at + e),
        region: Some(region),
        presigned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::EMPTY_SHA256;
    use crate::time::parse_basic;
    use crate::Secret;

    // The S3 documentation examples.
    const S3_AK: &str = "AKIAIOSFODNN7EXAMPLE";
    const S3_SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const S3_HOST: &str = "examplebucket.s3.amazonaws.com";
    const S3: Scope = Scope { region: "us-east-1", service: "s3" };

    fn s3_keys(ak: &str) -> Option<Secret> {
        (ak == S3_AK).then(|| Secret::new(S3_SK))
    }

    fn s3_time() -> i64 {
        parse_basic("20130524T000000Z").unwrap_or_default()
    }

    fn s3_auth(signed: &str, sig: &str) -> String {
        format!("{ALGORITHM} Credential={S3_AK}/20130524/us-east-1/s3/aws4_request, SignedHeaders={signed}, Signature={sig}")
    }

    #[test]
    fn s3_get_object_with_range() {
        let mut r =
            SignableRequest::new("GET", "/test.txt").with_header("Host", S3_HOST).with_header("Range", "bytes=0-9");
        sign_header(&mut r, &Credentials::new(S3_AK, S3_SK), S3, EMPTY_SHA256, s3_time());
        let signed = default_signed_headers(&r);
        assert_eq!(
            canonical_request(&r, &signed, EMPTY_SHA256),
            format!("GET\n/test.txt\n\nhost:{S3_HOST}\nrange:bytes=0-9\nx-amz-content-sha256:{EMPTY_SHA256}\nx-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n{EMPTY_SHA256}")
        );
        assert_eq!(
            r.header("Authorization").map(str::to_string),
            Some(s3_auth(
                "host;range;x-amz-content-sha256;x-amz-date",
                "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            ))
        );
        assert!(verify(&r, None, &s3_keys).is_ok());
    }

    #[test]
    fn s3_put_object() {
        let body_hash = sha256_hex(b"Welcome to Amazon S3.");
        assert_eq!(body_hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
        let mut r = SignableRequest::new("PUT", "/test$file.text")
            .with_header("Host", S3_HOST)
            .with_header("Date", "Fri, 24 May 2013 00:00:00 GMT")
            .with_header("x-amz-storage-class", "REDUCED_REDUNDANCY");
        sign_header(&mut r, &Credentials::new(S3_AK, S3_SK), S3, &body_hash, s3_time());
        assert_eq!(
            r.header("Authorization").map(str::to_string),
            Some(s3_auth(
                "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
            ))
        );
        assert!(verify(&r, Some(&body_hash), &s3_keys).is_ok());
        let mut t = r.clone();
        t.set_header("x-amz-content-sha256", EMPTY_SHA256);
        assert!(verify(&t, None, &s3_keys).is_err());
    }

    #[test]
    fn s3_get_lifecycle_and_list_objects() {
        for (query, sig) in [
            (vec![("lifecycle", "")], "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
            (
                vec![("max-keys", "2"), ("prefix", "J")],
                "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            ),
        ] {
            let mut r = SignableRequest::new("GET", "/").with_header("Host", S3_HOST);
            for (k, v) in query {
                r = r.with_query(k, v);
            }
            sign_header(&mut r, &Credentials::new(S3_AK, S3_SK), S3, EMPTY_SHA256, s3_time());
            assert_eq!(
                r.header("Authorization").map(str::to_string),
                Some(s3_auth("host;x-amz-content-sha256;x-amz-date", sig))
            );
            assert!(verify(&r, None, &s3_keys).is_ok());
        }
    }

    #[test]
    fn s3_presigned_url() {
        let mut r = SignableRequest::new("GET", "/test.txt").with_header("Host", S3_HOST);
        presign(&mut r, &Credentials::new(S3_AK, S3_SK), S3, s3_time(), 86400);
        assert_eq!(
            r.target(),
            "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
        assert_eq!(verify(&r, None, &s3_keys).map(|v| v.expires_at), Ok(Some(s3_time() + 86400)));
        let mut t = r.clone();
        t.set_query("X-Amz-Expires", "864000");
        assert!(matches!(verify(&t, None, &s3_keys), Err(VerifyError::Mismatch { .. })));
    }

    // The aws-sig-v4-test-suite cases (service "service", no payload hash header).
    const SUITE: Scope = Scope { region: "us-east-1", service: "service" };

    fn suite(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8], signed: &str, sig: &str) {
        let mut r = SignableRequest::from_target(method, target, vec![])
            .unwrap_or_default()
            .with_header("Host", "example.amazonaws.com");
        for (k, v) in headers {
            r = r.with_header(k, v);
        }
        let time = parse_basic("20150830T123600Z").unwrap_or_default();
        sign_header(
            &mut r,
            &Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            SUITE,
            &sha256_hex(body),
            time,
        );
        assert_eq!(
            r.header("Authorization").map(str::to_string),
            Some(format!("{ALGORITHM} Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed}, Signature={sig}")),
            "{target}"
        );
        let keys = |_: &str| Some(Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"));
        assert!(verify(&r, Some(&sha256_hex(body)), &keys).is_ok());
    }

    #[test]
    fn aws_test_suite() {
        let hd = "host;x-amz-date";
        suite("GET", "/", &[], b"", hd, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
        suite(
            "GET",
            "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            &[],
            b"",
            hd,
            "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
        );
        suite(
            "GET",
            "/?Param2=value2&Param1=value1",
            &[],
            b"",
            hd,
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        );
        suite(
            "GET",
            "/?Param1=value2&Param1=value1",
            &[],
            b"",
            hd,
            "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
        );
        suite(
            "GET",
            "/?%E1%88%B4=bar",
            &[],
            b"",
            hd,
            "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
        );
        suite(
            "GET",
            "/",
            &[("My-Header1", "value4"), ("My-Header1", "value1"), ("My-Header1", "value3"), ("My-Header1", "value2")],
            b"",
            "host;my-header1;x-amz-date",
            "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
        );
        suite(
            "GET",
            "/",
            &[("My-Header1", "value2"), ("My-Header1", "value2"), ("My-Header1", "value1")],
            b"",
            "host;my-header1;x-amz-date",
            "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
        );
        suite(
            "GET",
            "/",
            &[("My-Header1", " value1"), ("My-Header2", "\"a   b   c\"")],
            b"",
            "host;my-header1;my-header2;x-amz-date",
            "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        );
        suite(
            "POST",
            "/",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"Param1=value1",
            "content-type;host;x-amz-date",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        );
    }
}
