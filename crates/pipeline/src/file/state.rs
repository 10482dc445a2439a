//! Run state in a bucket (`state = "oss://BUCKET/PREFIX"` or `s3://...`), shared by runners on many machines:
//! the pipeline's run record, and a lease per pipeline, region and content that a run holds while it works.
//!
//! A lease is a chain of small JSON objects `PREFIX/NAME/REGION/leases/DIGEST/N` (N = 1, 2, ...), each created
//! with a create-only write ([`imgport_storage::PutOptions::create_only`]): of two runners creating the same
//! link, one wins. The holder renews its link every third of the lease; at the end it marks it released. A
//! runner that finds the newest link live waits; one that finds it released or expired (its holder crashed)
//! creates the next link, which takes the lease over. A holder that finds a next link after its own has lost
//! the lease (it was too slow to renew). Expiry is judged by the runners' clocks: they must agree within a
//! fraction of the lease (NTP does).

use super::record::RunRecord;
use imgport_storage::{ErrorKind, ObjectStore, PutOptions};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The lease's lifetime unless the file says (`lease`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);
/// The shortest lease a file may ask for: renewals come every third of it.
pub const MIN_LEASE: Duration = Duration::from_secs(3);
/// At most this many links in a chain: a chain grows by one per failed, crashed or forced run of the same content.
const MAX_LINKS: u32 = 100_000;
/// Creating the next link lost to another runner this many times in a row: give up (it keeps changing hands).
const RACES: u32 = 20;
/// A link expiring later than a lease from now by more than this is taken as not live: a holder's clock far ahead,
/// or a link not written by imgport, must not hold every runner back for ever.
const SKEW_ALLOWANCE: i64 = 300;
/// How long releasing a lease may take at the end of a run.
const RELEASE_TIME: Duration = Duration::from_secs(10);
/// Lease and record objects are small; anything larger in their place is not read.
const MAX_STATE_OBJECT: u64 = 1 << 20;

/// One link of a lease chain: who holds it, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// The holder's run id: unique per run.
    pub run_uuid: String,
    pub host: String,
    pub pid: u32,
    /// Unix seconds.
    pub acquired: i64,
    pub expires: i64,
    #[serde(default)]
    pub released: bool,
}

impl LeaseInfo {
    /// A new holder's link, live for `ttl` from `now`.
    pub fn new(run_uuid: &str, now: i64, ttl: Duration) -> LeaseInfo {
        LeaseInfo {
            run_uuid: run_uuid.to_string(),
            host: hostname(),
            pid: std::process::id(),
            acquired: now,
            expires: now.saturating_add(ttl.as_secs() as i64),
            released: false,
        }
    }

    fn live(&self, now: i64, lease: Duration) -> bool {
        let longest = now.saturating_add(lease.as_secs() as i64).saturating_add(SKEW_ALLOWANCE);
        !self.released && self.expires > now && self.expires <= longest
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`), for messages about who runs what.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown-host".into())
}

/// The bucket and prefix a pipeline keeps its state under.
#[derive(Clone)]
pub struct BucketState {
    store: Arc<dyn ObjectStore>,
    /// `oss://BUCKET` or `s3://BUCKET`, for messages.
    bucket_url: String,
    /// Empty, or ending in `/`.
    prefix: String,
    lease: Duration,
}

/// What [`BucketState::acquire`] found.
pub enum Acquire {
    Held(Lease),
    /// Another run holds the lease, live.
    Busy(LeaseInfo),
}

impl BucketState {
    pub fn new(store: Arc<dyn ObjectStore>, bucket_url: &str, prefix: &str, lease: Duration) -> BucketState {
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        BucketState { store, bucket_url: bucket_url.trim_end_matches('/').to_string(), prefix, lease }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn record_key(&self, pipeline: &str, region: &str) -> String {
        format!("{}{pipeline}/{region}/record.json", self.prefix)
    }

    fn link_key(&self, pipeline: &str, region: &str, digest: &str, n: u32) -> String {
        format!("{}{pipeline}/{region}/leases/{digest}/{n}", self.prefix)
    }

    /// Where the pipeline's record is kept, for messages.
    pub fn location(&self, pipeline: &str, region: &str) -> String {
        format!("{}/{}", self.bucket_url, self.record_key(pipeline, region))
    }

    pub async fn load(&self, pipeline: &str, region: &str) -> Result<Option<RunRecord>, String> {
        let key = self.record_key(pipeline, region);
        let url = format!("{}/{key}", self.bucket_url);
        match read_small(self.store.as_ref(), &key).await {
            Ok(Small::Data(data)) => {
                serde_json::from_slice(&data).map(Some).map_err(|e| format!("{url}: not a run record: {e}"))
            }
            Ok(Small::TooLarge(len)) => Err(format!("{url}: {len} bytes: not a run record")),
            Ok(Small::Missing) => Ok(None),
            Err(e) => Err(format!("{url}: {e}")),
        }
    }

    pub async fn save(&self, pipeline: &str, region: &str, record: &RunRecord) -> Result<(), String> {
        let key = self.record_key(pipeline, region);
        let data = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
        let opts = PutOptions { content_type: Some("application/json".into()), ..Default::default() };
        self.store
            .put_object(&key, data.into(), &opts)
            .await
            .map(|_| ())
            .map_err(|e| format!("{}/{key}: {e}", self.bucket_url))
    }

    /// Takes the lease of `pipeline` in `region` for `digest`'s content, or says who holds it. Called again to
    /// poll: each call looks at the chain as it is now. Links are created in order and never deleted, so the
    /// newest is found in O(log n) reads (doubling, then halving), and only it decides.
    pub async fn acquire(
        &self,
        pipeline: &str,
        region: &str,
        digest: &str,
        run_uuid: &str,
        now: i64,
    ) -> Result<Acquire, String> {
        let short = &digest[..digest.len().min(16)];
        for _ in 0..RACES {
            let (newest, link) = self.newest(pipeline, region, short).await?;
            if let Some(link) = link {
                if link.run_uuid == run_uuid {
                    let key = self.link_key(pipeline, region, short, newest);
                    return Ok(Acquire::Held(self.lease_at(key, pipeline, region, short, newest, link)));
                }
                if link.live(now, self.lease) {
                    return Ok(Acquire::Busy(link));
                }
            }
            let n = newest + 1;
            if n > MAX_LINKS {
                return Err(format!(
                    "{}/{}: {MAX_LINKS} lease links for this content: the run fails or is forced over and over",
                    self.bucket_url,
                    self.link_key(pipeline, region, short, n).trim_end_matches(char::is_numeric)
                ));
            }
            let key = self.link_key(pipeline, region, short, n);
            let info = LeaseInfo::new(run_uuid, now, self.lease);
            let data = serde_json::to_vec(&info).map_err(|e| e.to_string())?;
            let opts = PutOptions { create_only: true, ..Default::default() };
            match self.store.put_object(&key, data.into(), &opts).await {
                Ok(_) => return Ok(Acquire::Held(self.lease_at(key, pipeline, region, short, n, info))),
                // Another runner created it first (or this one, its answer lost): look again.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("{}/{key}: creating the lease: {e}", self.bucket_url)),
            }
        }
        Err(format!("the lease of {pipeline} in {region} keeps changing hands: {RACES} tries lost the race"))
    }

    /// The newest link's number (0: none) and the link.
    async fn newest(&self, pipeline: &str, region: &str, short: &str) -> Result<(u32, Option<LeaseInfo>), String> {
        let exists = |n: u32| self.read_link_at(pipeline, region, short, n);
        // Doubling: `low` exists (or is 0), `high` does not.
        let (mut low, mut high) = (0u32, 1u32);
        let mut low_link = None;
        loop {
            match exists(high).await? {
                Some(link) if high < MAX_LINKS => {
                    (low, low_link) = (high, Some(link));
                    high = high.saturating_mul(2).min(MAX_LINKS + 1);
                }
                Some(link) => return Ok((high, Some(link))),
                None => break,
            }
        }
        // Halving between them.
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            match exists(mid).await? {
                Some(link) => (low, low_link) = (mid, Some(link)),
                None => high = mid,
            }
        }
        Ok((low, low_link))
    }

    async fn read_link_at(
        &self,
        pipeline: &str,
        region: &str,
        short: &str,
        n: u32,
    ) -> Result<Option<LeaseInfo>, String> {
        self.read_link(&self.link_key(pipeline, region, short, n)).await
    }

    fn lease_at(&self, key: String, pipeline: &str, region: &str, short: &str, n: u32, info: LeaseInfo) -> Lease {
        Lease {
            state: self.clone(),
            next_key: self.link_key(pipeline, region, short, n + 1),
            key,
            info,
            lost: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A link, or `None` where there is none. A link that is not one (too large, not JSON) counts as released:
    /// whatever wrote it does not hold a lease.
    async fn read_link(&self, key: &str) -> Result<Option<LeaseInfo>, String> {
        let not_a_lease = || LeaseInfo {
            run_uuid: String::new(),
            host: String::new(),
            pid: 0,
            acquired: 0,
            expires: 0,
            released: true,
        };
        match read_small(self.store.as_ref(), key).await {
            Ok(Small::Data(data)) => {
                let mut link: LeaseInfo = serde_json::from_slice(&data).unwrap_or_else(|_| not_a_lease());
                // Shown in messages: no control characters, no screenfuls.
                link.host = printable(&link.host);
                link.run_uuid = printable(&link.run_uuid);
                Ok(Some(link))
            }
            Ok(Small::TooLarge(_)) => Ok(Some(not_a_lease())),
            Ok(Small::Missing) => Ok(None),
            Err(e) => Err(format!("{}/{key}: {e}", self.bucket_url)),
        }
    }
}

/// `s` without control characters (each shown as `?`), at most 128 characters.
fn printable(s: &str) -> String {
    s.chars().take(128).map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// A state object as read.
enum Small {
    Missing,
    TooLarge(u64),
    Data(Vec<u8>),
}

/// A small object's bytes; one above [`MAX_STATE_OBJECT`] is not read.
async fn read_small(store: &dyn ObjectStore, key: &str) -> Result<Small, imgport_storage::StorageError> {
    match store.head_object(key).await {
        Ok(meta) if meta.len > MAX_STATE_OBJECT => return Ok(Small::TooLarge(meta.len)),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Small::Missing),
        Err(e) => return Err(e),
    }
    match store.get_object(key).await {
        Ok(data) if data.len() as u64 > MAX_STATE_OBJECT => Ok(Small::TooLarge(data.len() as u64)),
        Ok(data) => Ok(Small::Data(data.to_vec())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Small::Missing),
        Err(e) => Err(e),
    }
}

/// A held lease: renewed while the run works ([`Lease::keep_alive`]), released at its end.
pub struct Lease {
    state: BucketState,
    key: String,
    next_key: String,
    info: LeaseInfo,
    lost: Arc<AtomicBool>,
}

/// What renewing a lease came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Renewal {
    Renewed,
    /// Another runner took it over (this one was too slow to renew): the run should stop.
    Lost(LeaseInfo),
}

impl Lease {
    pub fn info(&self) -> &LeaseInfo {
        &self.info
    }

    /// Where the lease link is, for messages.
    pub fn location(&self) -> String {
        format!("{}/{}", self.state.bucket_url, self.key)
    }

    /// Extends the lease by its lifetime from `now`, unless it was taken over.
    pub async fn renew(&mut self, now: i64) -> Result<Renewal, String> {
        if let Some(next) = self.state.read_link(&self.next_key).await? {
            self.lost.store(true, Ordering::Relaxed);
            return Ok(Renewal::Lost(next));
        }
        let mut info = self.info.clone();
        info.expires = now.saturating_add(self.state.lease.as_secs() as i64);
        self.write(&info).await?;
        self.info = info;
        Ok(Renewal::Renewed)
    }

    async fn write(&self, info: &LeaseInfo) -> Result<(), String> {
        let data = serde_json::to_vec(info).map_err(|e| e.to_string())?;
        let opts = PutOptions::default();
        let put = self.state.store.put_object(&self.key, data.into(), &opts).await;
        put.map(|_| ()).map_err(|e| format!("{}: {e}", self.location()))
    }

    /// Renews the lease every third of its lifetime in a task until the answer is dropped or
    /// [`KeepAlive::release`]d. `report` hears of a failed renewal and of a lost lease.
    pub fn keep_alive(self, report: Arc<dyn Fn(&str) + Send + Sync>) -> KeepAlive {
        let lost = self.lost.clone();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let every = self.state.lease / 3;
        let task = tokio::spawn(async move {
            let mut lease = self;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => return lease,
                }
                match lease.renew(unix_now()).await {
                    Ok(Renewal::Renewed) => {}
                    Ok(Renewal::Lost(by)) => {
                        report(&format!(
                            "the lease {} was taken over by run {} on {} (pid {}): this run was too slow to renew it",
                            lease.location(),
                            by.run_uuid,
                            by.host,
                            by.pid
                        ));
                        return lease;
                    }
                    // Not renewed before it expired: another runner may take it over any moment now.
                    Err(e) if unix_now() >= lease.info.expires => {
                        lease.lost.store(true, Ordering::Relaxed);
                        report(&format!("the lease {} expired before it could be renewed: {e}", lease.location()));
                        return lease;
                    }
                    Err(e) => report(&format!("renewing the lease: {e}; trying again")),
                }
            }
        });
        KeepAlive { stop, task, lost }
    }

    /// Marks the lease released, so the next runner need not wait for it to expire.
    pub async fn release(self) -> Result<(), String> {
        if self.lost.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut info = self.info.clone();
        info.released = true;
        self.write(&info).await
    }
}

/// A lease being renewed.
pub struct KeepAlive {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Lease>,
    lost: Arc<AtomicBool>,
}

impl KeepAlive {
    /// Whether another runner took the lease over.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Stops renewing and releases the lease, within `RELEASE_TIME` (a renewal stuck in retries, or a store that
    /// does not answer, leaves the lease to expire instead).
    pub async fn release(self) -> Result<(), String> {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        let released = tokio::time::timeout(RELEASE_TIME, async move {
            match self.task.await {
                Ok(lease) => lease.release().await,
                Err(e) => Err(format!("the lease's renewal task failed: {e}")),
            }
        })
        .await;
        match released {
            Ok(r) => r,
            Err(_) => {
                abort.abort();
                Err(format!("no answer within {} s", RELEASE_TIME.as_secs()))
            }
        }
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
