//! The store's own ceiling for a multipart upload: every part is the same in-memory buffer, sent N at a time,
//! with no file reads and no hashing on the client. What imgport's upload is compared with in
//! scripts/bench-upload.sh.
//!
//! usage: put_ceiling ENDPOINT BUCKET KEY TOTAL_BYTES PART_BYTES CONCURRENCY
//! (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, region from AWS_REGION or us-east-1; prints one
//! JSON line with bytes, parts, seconds and MiB/s)

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

async fn run(args: Vec<String>) -> Result<String, String> {
    let endpoint = Endpoint::parse(&arg::<String>(&args, 1, "ENDPOINT")?)?;
    let bucket: String = arg(&args, 2, "BUCKET")?;
    let key: String = arg(&args, 3, "KEY")?;
    let total: u64 = arg(&args, 4, "TOTAL_BYTES")?;
    let part: u64 = arg(&args, 5, "PART_BYTES")?;
    let concurrency: usize = arg(&args, 6, "CONCURRENCY")?;
    if part == 0 || total == 0 || concurrency == 0 {
        return Err("sizes and concurrency must be positive".into());
    }
    let creds = Credentials::new(env("AWS_ACCESS_KEY_ID")?, env("AWS_SECRET_ACCESS_KEY")?);
    let client = Arc::new(
        Client::new(StoreConfig {
            flavor: Flavor::S3,
            style: BucketStyle::default_for(&endpoint),
            endpoint,
            region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
            bucket,
            credentials: Arc::new(Static::new(creds, "env")),
        })
        .map_err(|e| e.to_string())?,
    );
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
                client.upload_part(&key, &id, n, body.into(), PartCheck::None).await.map(|r| (n, r.etag))
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
