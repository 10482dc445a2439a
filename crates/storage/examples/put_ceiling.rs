//! The store's own ceiling for a multipart upload: every part is the same in-memory buffer, sent N at a time,
//! with no file reads and no hashing on the client. What imgport's upload is compared with in
//! scripts/bench-upload.sh.
//!
//! usage: put_ceiling ENDPOINT BUCKET KEY TOTAL_BYTES PART_BYTES CONCURRENCY
//!        put_ceiling remove ENDPOINT BUCKET KEY   (prints the object's length, then deletes it)
//! (S3: credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, region from AWS_REGION or us-east-1; with
//! STORE_FLAVOR=oss, OSS V4 with ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET and
//! ALIBABA_CLOUD_REGION_ID or cn-hangzhou. Prints one JSON line with bytes, parts, seconds and MiB/s.)

use bytes::Bytes;
use imgport_auth::endpoints::{BucketStyle, Endpoint};
use imgport_auth::provider::Static;
use imgport_auth::Credentials;
use imgport_storage::{Client, CompletedPart, Flavor, ObjectStore, PartCheck, PutOptions, StoreConfig};
use std::sync::Arc;
use std::time::Instant;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, String> {
    args.get(i).and_then(|s| s.parse().ok()).ok_or_else(|| format!("argument {i} ({what}) missing or invalid"))
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

/// Incompressible-looking bytes, so no layer can shortcut them.
fn filler(len: usize) -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

/// The client of `bucket` at `endpoint`, S3 or (STORE_FLAVOR=oss) OSS.
fn client(endpoint: &str, bucket: String) -> Result<Client, String> {
    let endpoint = Endpoint::parse(endpoint)?;
    let oss = std::env::var("STORE_FLAVOR").is_ok_and(|f| f == "oss");
    let (flavor, creds, region) = if oss {
        let creds = Credentials::new(env("ALIBABA_CLOUD_ACCESS_KEY_ID")?, env("ALIBABA_CLOUD_ACCESS_KEY_SECRET")?);
        (Flavor::OssV4, creds, std::env::var("ALIBABA_CLOUD_REGION_ID").unwrap_or_else(|_| "cn-hangzhou".into()))
    } else {
        let creds = Credentials::new(env("AWS_ACCESS_KEY_ID")?, env("AWS_SECRET_ACCESS_KEY")?);
        (Flavor::S3, creds, std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()))
    };
    Client::new(StoreConfig {
        flavor,
        style: BucketStyle::default_for(&endpoint),
        endpoint,
        region,
        bucket,
        credentials: Arc::new(Static::new(creds, "env")),
    })
    .map_err(|e| e.to_string())
}

/// `remove ENDPOINT BUCKET KEY`: the object's length, once it is deleted.
async fn remove(args: &[String]) -> Result<String, String> {
    let client = client(&arg::<String>(args, 2, "ENDPOINT")?, arg(args, 3, "BUCKET")?)?;
    let key: String = arg(args, 4, "KEY")?;
    let len = client.head_object(&key).await.map_err(|e| e.to_string())?.len;
    client.delete_object(&key).await.map_err(|e| e.to_string())?;
    Ok(len.to_string())
}

async fn run(args: Vec<String>) -> Result<String, String> {
    if args.get(1).is_some_and(|a| a == "remove") {
        return remove(&args).await;
    }
    let endpoint: String = arg(&args, 1, "ENDPOINT")?;
    let bucket: String = arg(&args, 2, "BUCKET")?;
    let key: String = arg(&args, 3, "KEY")?;
    let total: u64 = arg(&args, 4, "TOTAL_BYTES")?;
    let part: u64 = arg(&args, 5, "PART_BYTES")?;
    let concurrency: usize = arg(&args, 6, "CONCURRENCY")?;
    if part == 0 || total == 0 || concurrency == 0 {
        return Err("sizes and concurrency must be positive".into());
    }
    let client = Arc::new(client(&endpoint, bucket)?);
    client.create_bucket().await.map_err(|e| e.to_string())?;
    let buffer = filler(part as usize);
    let nparts = total.div_ceil(part) as u32;
    let started = Instant::now();
    let upload_id = client.initiate_multipart(&key, &PutOptions::default(), None).await.map_err(|e| e.to_string())?;
    let mut set = tokio::task::JoinSet::new();
    let mut etags = Vec::with_capacity(nparts as usize);
    let mut next = 1u32;
    while next <= nparts || !set.is_empty() {
        while set.len() < concurrency && next <= nparts {
            let len = (total - (next as u64 - 1) * part).min(part) as usize;
            // A slice of the shared buffer: no copy, no hashing.
            let (client, key, id, body, n) =
                (client.clone(), key.clone(), upload_id.clone(), buffer.slice(..len), next);
            set.spawn(async move {
                client.upload_part(&key, &id, n, body.into(), PartCheck::default()).await.map(|r| (n, r.etag))
            });
            next += 1;
        }
        if let Some(joined) = set.join_next().await {
            etags.push(joined.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?);
        }
    }
    etags.sort_by_key(|(n, _)| *n);
    let parts: Vec<CompletedPart> =
        etags.into_iter().map(|(number, etag)| CompletedPart { number, etag, checksum: None }).collect();
    client.complete_multipart(&key, &upload_id, &parts, None).await.map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(format!(
        "{{\"bytes\":{total},\"parts\":{nparts},\"seconds\":{seconds:.3},\"mib_per_s\":{:.1}}}",
        total as f64 / (1 << 20) as f64 / seconds
    ))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build();
    let result = match rt {
        Ok(rt) => rt.block_on(run(args)),
        Err(e) => Err(format!("cannot start the runtime: {e}")),
    };
    match result {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("put_ceiling: {e}");
            std::process::exit(1);
        }
    }
}
