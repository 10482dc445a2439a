//! Store configuration: from a destination and what the user chose (endpoint, region, OSS signature version)
//! plus the environment, the client to use and the per-store upload defaults. Warnings (plain http to another
//! host) are returned for the caller to show, never printed.

use crate::destination::Destination;
use crate::state;
use crate::upload::UploadOptions;
use crate::{Client, Flavor, PutOptions, StoreConfig};
use imgport_auth::endpoints::{self, BucketStyle, Endpoint, OssNetwork, Service};
use imgport_auth::provider::{CredentialsProvider, DefaultChain, Static};
use imgport_auth::{Credentials, Env};
use std::path::Path;
use std::sync::Arc;

/// How to reach a store, as given on the command line; what is left out comes from the environment.
#[derive(Debug, Clone, Default)]
pub struct StoreSettings {
    /// Default: IMGPORT_OSS_ENDPOINT / AWS_ENDPOINT_URL, then the region's.
    pub endpoint: Option<String>,
    /// OSS default: ALIBABA_CLOUD_REGION_ID or cn-hangzhou; S3: AWS_REGION or us-east-1.
    pub region: Option<String>,
    /// OSS signature version 1 instead of 4.
    pub oss_v1: bool,
}

/// A client for a destination's bucket, and what the user should be warned about before it is used.
pub struct Connection {
    pub client: Client,
    pub warnings: Vec<String>,
}

/// AWS_* variables for S3 stores, else the Alibaba Cloud chain (OSS, and OSS's S3 endpoint).
pub fn credentials(flavor: Flavor, env: &Env) -> Arc<dyn CredentialsProvider> {
    if flavor == Flavor::S3 {
        if let (Some(id), Some(secret)) = (env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")) {
            let mut c = Credentials::new(id, secret);
            if let Some(t) = env.get("AWS_SESSION_TOKEN") {
                c = c.with_token(t);
            }
            return Arc::new(Static::new(c, "env (AWS_*)"));
        }
    }
    Arc::new(DefaultChain::new(env.clone()))
}

/// The endpoint and region of `flavor`'s store: the settings, then the environment, then the defaults.
fn endpoint_and_region(flavor: Flavor, settings: &StoreSettings, env: &Env) -> Result<(Endpoint, String), String> {
    if flavor == Flavor::S3 {
        let region = settings
            .region
            .clone()
            .or_else(|| env.get("AWS_REGION").map(str::to_string))
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint = match settings.endpoint.as_deref().or_else(|| env.get("AWS_ENDPOINT_URL")) {
            Some(e) => Endpoint::parse(e)?,
            None => Endpoint::parse(&format!("https://s3.{region}.amazonaws.com"))?,
        };
        return Ok((endpoint, region));
    }
    let region = settings
        .region
        .clone()
        .or_else(|| env.get("ALIBABA_CLOUD_REGION_ID").map(str::to_string))
        .unwrap_or_else(|| "cn-hangzhou".into());
    let endpoint =
        endpoints::resolve(Service::Oss, Some(&region), OssNetwork::Public, settings.endpoint.as_deref(), env)?;
    Ok((endpoint, region))
}

/// The client for `dest`'s bucket.
pub fn connect(dest: &Destination, settings: &StoreSettings, env: &Env) -> Result<Connection, String> {
    let (endpoint, region) = endpoint_and_region(dest.flavor, settings, env)?;
    let client = Client::new(StoreConfig {
        flavor: dest.flavor,
        style: BucketStyle::default_for(&endpoint),
        endpoint,
        region,
        bucket: dest.bucket.clone(),
        credentials: credentials(dest.flavor, env),
    })
    .map_err(|e| e.to_string())?;
    let warnings = client.warnings();
    Ok(Connection { client, warnings })
}

/// What the user chose about an upload (flags); the rest are the store's defaults.
#[derive(Debug, Clone, Default)]
pub struct UploadChoices {
    pub part_size: Option<u64>,
    pub concurrency: usize,
    /// Continue an interrupted upload of the same source and destination.
    pub resume: bool,
    pub storage_class: Option<String>,
    /// Bytes per second over all parts.
    pub rate_limit: Option<u64>,
    /// S3's part checksum (`--checksum`).
    pub checksum: crate::checksum::Choice,
}

/// The store's smallest part: S3 5 MiB, OSS 100 KiB.
pub fn min_part_size(flavor: Flavor) -> u64 {
    if flavor == Flavor::S3 {
        5 << 20
    } else {
        100 << 10
    }
}

/// The options of an upload of `source` (whose identity keys the resume state) to `url`, parsed as `dest`.
pub fn upload_options(
    dest: &Destination,
    url: &str,
    client: &Client,
    source: &Path,
    choices: &UploadChoices,
) -> UploadOptions {
    UploadOptions {
        source: source.to_path_buf(),
        key: dest.key.clone(),
        endpoint_id: client.config().endpoint.url(),
        url: url.to_string(),
        part_size: choices.part_size,
        min_part_size: min_part_size(dest.flavor),
        concurrency: choices.concurrency,
        resume: choices.resume,
        state_dir: state::default_dir(),
        put: PutOptions { storage_class: choices.storage_class.clone(), ..Default::default() },
        rate_limit: choices.rate_limit,
        max_attempts: 10,
        // S3 parts carry Content-MD5 and are checked by their ETag until the store echoes flexible checksums;
        // OSS has CRC-64 and skips the extra hashing.
        send_md5: dest.flavor == Flavor::S3,
        checksum: choices.checksum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::from_vars(vars.iter().copied())
    }

    #[test]
    fn s3_endpoint_and_region_defaults() {
        let none = StoreSettings::default();
        let (ep, region) = endpoint_and_region(Flavor::S3, &none, &env(&[])).expect("defaults");
        assert_eq!((ep.url(), region.as_str()), ("https://s3.us-east-1.amazonaws.com".to_string(), "us-east-1"));
        let (ep, region) = endpoint_and_region(Flavor::S3, &none, &env(&[("AWS_REGION", "eu-west-1")])).expect("env");
        assert_eq!((ep.url(), region.as_str()), ("https://s3.eu-west-1.amazonaws.com".to_string(), "eu-west-1"));
        let given = StoreSettings { endpoint: Some("http://127.0.0.1:9000".into()), ..Default::default() };
        let (ep, _) = endpoint_and_region(Flavor::S3, &given, &env(&[])).expect("given");
        assert_eq!(ep.url(), "http://127.0.0.1:9000");
    }

    #[test]
    fn plain_http_elsewhere_is_a_returned_warning() {
        let dest = Destination::parse("s3://b/k", false).expect("dest");
        let remote = StoreSettings { endpoint: Some("http://10.1.2.3:1".into()), ..Default::default() };
        let c = connect(&dest, &remote, &env(&[])).expect("client");
        assert!(c.warnings.iter().any(|w| w.contains("http://10.1.2.3:1")), "{:?}", c.warnings);
        let local = StoreSettings { endpoint: Some("http://127.0.0.1:1".into()), ..Default::default() };
        assert!(connect(&dest, &local, &env(&[])).expect("client").warnings.is_empty());
    }
}
