//! ECS/POP signature V3 (`ACS3-HMAC-SHA256`), the default for RPC-style APIs.

use super::{hmac_sha256, lookup, param, sha256_hex, SecretLookup, Verified, VerifyError};
use crate::encode::uri_encode;
use crate::time::{parse_iso8601, UtcTime};
use crate::{Credentials, SignableRequest};
use imgport_wire::hex;

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Encoded `k=v` pairs sorted by name then value (an empty value still gets its `=`).
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> =
        query.iter().map(|(k, v)| (uri_encode(k, false), uri_encode(v, false))).collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// The headers this signer signs: `host`, `content-type` and every `x-acs-*`, lowercased and sorted.
pub fn default_signed_headers(req: &SignableRequest) -> Vec<String> {
    let mut names: Vec<String> = req
        .headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .filter(|k| k == "host" || k == "content-type" || k.starts_with("x-acs-"))
        .collect();
    names.sort();
    names.dedup();
    names
}

pub fn canonical_request(req: &SignableRequest, signed_headers: &[String], payload_hash: &str) -> String {
    let uri = if req.path.is_empty() { "/".to_string() } else { uri_encode(&req.path, true) };
    let headers = super::canonical_headers(req, signed_headers, |v| v.trim().to_string());
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri,
        canonical_query(&req.query),
        headers,
        signed_headers.join(";"),
        payload_hash
    )
}

pub fn string_to_sign(canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()))
}

pub fn signature(secret: &str, string_to_sign: &str) -> String {
    hex(&hmac_sha256(secret.as_bytes(), string_to_sign.as_bytes()))
}

/// Signs a request whose `host`, `x-acs-action` and `x-acs-version` headers are set. Sets `x-acs-date`,
/// `x-acs-signature-nonce`, `x-acs-content-sha256`, `x-acs-security-token` (STS) and `Authorization`.
pub fn sign(req: &mut SignableRequest, creds: &Credentials, body_sha256: &str, time: i64, nonce: &str) {
    req.set_header("x-acs-date", &UtcTime::from_unix(time).iso8601());
    req.set_header("x-acs-signature-nonce", nonce);
    req.set_header("x-acs-content-sha256", body_sha256);
    if let Some(token) = creds.token() {
        req.set_header("x-acs-security-token", token);
    }
    req.remove_header("Authorization");
    let signed = default_signed_headers(req);
    let sts = string_to_sign(&canonical_request(req, &signed, body_sha256));
    let sig = signature(creds.access_key_secret.expose(), &sts);
    req.set_header(
        "Authorization",
        &format!("{ALGORITHM} Credential={},SignedHeaders={},Signature={sig}", creds.access_key_id, signed.join(";")),
    );
}

/// Verifies a request given the SHA-256 (hex) of the body that arrived; the signed headers are the ones the
/// client listed, so clients that sign more headers (the Python SDK signs all of them) verify too.
pub fn verify(req: &SignableRequest, body_sha256: &str, keys: &dyn SecretLookup) -> Result<Verified, VerifyError> {
    let auth = req.header("Authorization").ok_or(VerifyError::Unsigned)?;
    let rest = auth
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| VerifyError::Malformed("not an ACS3-HMAC-SHA256 authorization".into()))?;
    let params = super::auth_params(rest);
    let get = |n: &str| param(&params, n).ok_or_else(|| VerifyError::Malformed(format!("no {n}")));
    let (ak, signed, sig) = (get("Credential")?, get("SignedHeaders")?, get("Signature")?);
    if let Some(claimed) = req.header("x-acs-content-sha256") {
        if !claimed.eq_ignore_ascii_case(body_sha256) {
            return Err(VerifyError::Malformed("x-acs-content-sha256 does not match the body".into()));
        }
    }
    let signed: Vec<String> = signed.split(';').filter(|s| !s.is_empty()).map(str::to_ascii_lowercase).collect();
    if !signed.iter().any(|h| h == "host") {
        return Err(VerifyError::Malformed("host is not signed".into()));
    }
    let secret = lookup(keys, ak)?;
    let sts = string_to_sign(&canonical_request(req, &signed, body_sha256));
    if !super::same_signature(&signature(secret.expose(), &sts), sig) {
        return Err(VerifyError::Mismatch { access_key_id: ak.to_string(), string_to_sign: sts });
    }
    Ok(Verified {
        access_key_id: ak.to_string(),
        signed_at: req.header("x-acs-date").and_then(parse_iso8601),
        expires_at: None,
        region: None,
        presigned: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::EMPTY_SHA256;
    use crate::Secret;

    fn vector() -> SignableRequest {
        SignableRequest::new("POST", "/")
            .with_query("ImageId", "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd")
            .with_query("RegionId", "cn-shanghai")
            .with_header("host", "ecs.cn-shanghai.aliyuncs.com")
            .with_header("x-acs-action", "RunInstances")
            .with_header("x-acs-version", "2014-05-26")
    }

    #[test]
    fn official_vector() {
        let mut r = vector();
        let t = parse_iso8601("2023-10-26T09:01:01Z").unwrap_or_default();
        sign(
            &mut r,
            &Credentials::new("YourAccessKeyId", "YourAccessKeySecret"),
            EMPTY_SHA256,
            t,
            "d410180a5abf7fe235dd9b74aca91fc0",
        );
        assert_eq!(
            r.header("Authorization"),
            Some("ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=e521358f7776c97df52e6b2891a8bc73026794a071b50c3323388c4e0df64804")
        );
        let keys = |ak: &str| (ak == "YourAccessKeyId").then(|| Secret::new("YourAccessKeySecret"));
        assert_eq!(verify(&r, EMPTY_SHA256, &keys).map(|v| v.signed_at), Ok(Some(t)));
        let mut t2 = r.clone();
        t2.set_query("RegionId", "cn-hangzhou");
        assert!(matches!(verify(&t2, EMPTY_SHA256, &keys), Err(VerifyError::Mismatch { .. })));
        assert!(matches!(verify(&r, &sha256_hex(b"x"), &keys), Err(VerifyError::Malformed(_))));
    }

    #[test]
    fn verifies_clients_that_sign_every_header() {
        let mut r = vector()
            .with_header("user-agent", "AlibabaCloud (Linux) Python/3")
            .with_header("accept", "application/json");
        sign(&mut r, &Credentials::new("ak", "sk").with_token("tok"), EMPTY_SHA256, 0, "n");
        // Re-sign with the longer header list, as the Python SDK does.
        let mut names: Vec<String> =
            r.headers.iter().map(|(k, _)| k.to_ascii_lowercase()).filter(|k| k != "authorization").collect();
        names.sort();
        let sts = string_to_sign(&canonical_request(&r, &names, EMPTY_SHA256));
        r.set_header(
            "Authorization",
            &format!("{ALGORITHM} Credential=ak,SignedHeaders={},Signature={}", names.join(";"), signature("sk", &sts)),
        );
        let keys = |_: &str| Some(Secret::new("sk"));
        assert!(verify(&r, EMPTY_SHA256, &keys).is_ok());
        r.set_header("user-agent", "changed");
        assert!(verify(&r, EMPTY_SHA256, &keys).is_err());
    }
}
