//! Fault injection: errors, throttling, latency, dropped connections, clock skew, token expiry, failed, stalled and
//! early-finishing imports and copies, and images' creation times, chosen per operation by rules whose random draws come from a seed, so a run
//! can be repeated exactly.
//!
//! A rule's n-th matching request gets the same decision in every run with the same seed, whatever else runs.

use crate::util::splitmix64;
use serde::{Deserialize, Serialize};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

/// Everything that can be injected; set from the config file, the admin endpoint or in-process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Seed of the per-rule random draws.
    pub seed: u64,
    pub rules: Vec<FaultRule>,
    /// The server's clock runs this many seconds ahead of the real one (negative: behind). Requests then look
    /// skewed (`RequestTimeTooSkewed`) and every response's `Date` shows the server's time.
    pub clock_skew_seconds: i64,
    /// From this time on (unix seconds, server clock) every temporary credential issued up to then counts as
    /// expired; credentials issued later work.
    pub tokens_expire_at: Option<i64>,
}

/// One rule: which operations, what happens, how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// An operation name (`PutObject`, `UploadPart`, `ImportImage`, ...), `oss` or `rpc` for all of one
    /// kind, or `*` for every request.
    #[serde(default = "any")]
    pub operation: String,
    #[serde(flatten)]
    pub fault: Fault,
    /// Probability that a matching request is hit (0..=1; default 1).
    #[serde(default = "one")]
    pub rate: f64,
    /// Matching requests let through before the rule starts.
    #[serde(default)]
    pub after: u64,
    /// Hit at most this many requests.
    #[serde(default)]
    pub times: Option<u64>,
}

fn any() -> String {
    "*".into()
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// 500 `InternalError`.
    InternalError,
    /// 503 `ServiceUnavailable`.
    ServiceUnavailable,
    /// Throttling: 503 `SlowDown` from OSS, `Throttling` from the RPC gateway.
    SlowDown,
    /// Extra delay before the request is handled.
    Latency { ms: u64 },
    /// Close the connection after this many bytes of the response body.
    DropResponse { after_bytes: u64 },
    /// Close the connection after this many bytes of the request body have arrived.
    DropRequest { after_bytes: u64 },
    /// Imports and copies started by the matching action (`ImportImage`, `CopyImage`) end CreateFailed, with
    /// this reason (`CODE: message`) when given.
    CreateFailed {
        #[serde(default)]
        reason: Option<String>,
    },
    /// Images created by the matching action (`ImportImage`, `CopyImage`) get this `CreationTime` instead of the
    /// server's clock: `at` (unix seconds) when given, else the server's time plus `offset_seconds`. With `after`
    /// and `times`, tests create images with equal and out-of-order creation times.
    CreationTime {
        #[serde(default)]
        at: Option<i64>,
        #[serde(default)]
        offset_seconds: i64,
    },
    /// Imports and copies started by the matching action (`ImportImage`, `CopyImage`) stall in `Creating` (task
    /// `Processing`, Progress below 100): for at least `seconds` (at most one more) when given, otherwise for as long as a `stall` rule for
    /// that action (or `rpc` / `*`) stays in the fault configuration; clearing it (`PUT /_emulator/faults`) lets
    /// them finish. A stalled import can still be cancelled.
    Stall {
        #[serde(default)]
        seconds: Option<u64>,
    },
    /// Imports started by the matching `ImportImage` report their task Finished (Progress 100) while the image
    /// stays Creating for `seconds` more before it becomes Available, as the real service was seen to do: a client
    /// that takes a Finished task for a ready image uses it too early. A create failure still fails the task.
    TaskFinishesEarly { seconds: u64 },
}

/// How long an import or copy hit by a `stall` fault holds in Creating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stall {
    /// Until this time (unix seconds, server clock).
    Until(i64),
    /// While a `stall` rule for the action stays configured.
    WhileConfigured,
}

/// An error to answer with instead of handling the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedError {
    InternalError,
    ServiceUnavailable,
    SlowDown,
}

/// What the rules decided for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub latency: Duration,
    pub error: Option<InjectedError>,
    pub drop_response_after: Option<u64>,
    pub drop_request_after: Option<u64>,
    /// The reason an import or copy started by this request must fail with (`CODE: message`).
    pub create_failed: Option<String>,
    /// The creation time of an image this request creates: an absolute time, or an offset from the server's clock.
    pub creation_time: Option<CreationClock>,
    /// A `stall` rule hit: seconds to stall, or `None` inside for "while the rule stays configured".
    pub stall: Option<Option<u64>>,
    /// A `task_finishes_early` rule hit: seconds the image stays Creating after its task reports Finished.
    pub finish_early: Option<u64>,
}

/// How a `creation_time` fault sets an image's CreationTime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreationClock {
    At(i64),
    Offset(i64),
}

impl CreationClock {
    /// The creation time for a request handled when the server's clock read `now`.
    pub fn time(self, now: i64) -> i64 {
        match self {
            CreationClock::At(t) => t,
            CreationClock::Offset(o) => now.saturating_add(o),
        }
    }
}

impl Decision {
    pub fn is_empty(&self) -> bool {
        *self == Decision::default()
    }

    /// A short description for the request log.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.latency.is_zero() {
            parts.push(format!("latency {}ms", self.latency.as_millis()));
        }
        if let Some(e) = self.error {
            parts.push(format!("{e:?}"));
        }
        if let Some(n) = self.drop_request_after {
            parts.push(format!("drop request after {n}"));
        }
        if let Some(n) = self.drop_response_after {
            parts.push(format!("drop response after {n}"));
        }
        if self.create_failed.is_some() {
            parts.push("create failed".into());
        }
        if let Some(c) = self.creation_time {
            parts.push(format!("creation time {c:?}"));
        }
        if let Some(s) = self.stall {
            parts.push(format!("stall {}", s.map_or_else(|| "until cleared".to_string(), |s| format!("{s}s"))));
        }
        if let Some(s) = self.finish_early {
            parts.push(format!("task finishes {s}s early"));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

#[derive(Default, Clone, Copy)]
struct Counter {
    seen: u64,
    hit: u64,
}

/// The live fault state.
#[derive(Default)]
pub struct Faults {
    config: RwLock<FaultConfig>,
    counters: Mutex<Vec<Counter>>,
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        let n = config.rules.len();
        Faults { config: RwLock::new(config), counters: Mutex::new(vec![Counter::default(); n]) }
    }

    /// Replaces the configuration and restarts the rule counters.
    pub fn set(&self, config: FaultConfig) {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        *counters = vec![Counter::default(); config.rules.len()];
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    pub fn get(&self) -> FaultConfig {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn clock_skew(&self) -> i64 {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clock_skew_seconds
    }

    /// Whether a `stall` rule for `operation` (by name, `rpc` or `*`) is configured.
    pub fn stall_configured(&self, operation: &str) -> bool {
        let config = self.config.read().unwrap_or_else(|p| p.into_inner());
        config
            .rules
            .iter()
            .any(|r| matches!(r.fault, Fault::Stall { .. }) && ["*", "rpc", operation].contains(&r.operation.as_str()))
    }

    pub fn tokens_expire_at(&self) -> Option<i64> {
        self.config.read().unwrap_or_else(|p| p.into_inner()).tokens_expire_at
    }

    /// Decides the faults for one request of `service` (`oss` or `rpc`) and operation.
    pub fn decide(&self, service: &str, operation: &str) -> Decision {
        let config = self.config.read().unwrap_or_else(|p| p.into_inner());
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut d = Decision::default();
        for (i, rule) in config.rules.iter().enumerate() {
            if !(rule.operation == "*" || rule.operation == service || rule.operation == operation) {
                continue;
            }
            let Some(c) = counters.get_mut(i) else { continue };
            let n = c.seen;
            c.seen += 1;
            if n < rule.after || rule.times.is_some_and(|t| c.hit >= t) {
                continue;
            }
            let mut state =
                config.seed ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407) ^ n.wrapping_mul(0x9FB2_1C65_1E98_DF25);
            let draw = (splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
            if draw >= rule.rate {
                continue;
            }
            c.hit += 1;
            match &rule.fault {
                Fault::InternalError => {
                    d.error.get_or_insert(InjectedError::InternalError);
                }
                Fault::ServiceUnavailable => {
                    d.error.get_or_insert(InjectedError::ServiceUnavailable);
                }
                Fault::SlowDown => {
                    d.error.get_or_insert(InjectedError::SlowDown);
                }
                Fault::Latency { ms } => d.latency += Duration::from_millis(*ms),
                Fault::DropResponse { after_bytes } => {
                    d.drop_response_after.get_or_insert(*after_bytes);
                }
                Fault::DropRequest { after_bytes } => {
                    d.drop_request_after.get_or_insert(*after_bytes);
                }
                Fault::CreateFailed { reason } => {
                    d.create_failed.get_or_insert_with(|| {
                        reason.clone().unwrap_or_else(|| "ImportImageFailed: injected failure".into())
                    });
                }
                Fault::Stall { seconds } => {
                    d.stall.get_or_insert(*seconds);
                }
                Fault::TaskFinishesEarly { seconds } => {
                    d.finish_early.get_or_insert(*seconds);
                }
                Fault::CreationTime { at, offset_seconds } => {
                    d.creation_time.get_or_insert(match at {
                        Some(t) => CreationClock::At(*t),
                        None => CreationClock::Offset(*offset_seconds),
                    });
                }
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(op: &str, fault: Fault, rate: f64) -> FaultRule {
        FaultRule { operation: op.into(), fault, rate, after: 0, times: None }
    }

    #[test]
    fn deterministic_with_seed() {
        let cfg =
            FaultConfig { seed: 42, rules: vec![rule("UploadPart", Fault::InternalError, 0.3)], ..Default::default() };
        let run = |cfg: &FaultConfig| {
            let f = Faults::new(cfg.clone());
            (0..200).map(|_| f.decide("oss", "UploadPart").error.is_some()).collect::<Vec<_>>()
        };
        let a = run(&cfg);
        assert_eq!(a, run(&cfg));
        let hits = a.iter().filter(|h| **h).count();
        assert!((35..=85).contains(&hits), "{hits}");
        let other = run(&FaultConfig { seed: 43, ..cfg.clone() });
        assert_ne!(a, other);
        // Other operations are not affected, and do not shift the rule's draws.
        let f = Faults::new(cfg);
        assert!(f.decide("oss", "PutObject").is_empty());
    }

    #[test]
    fn after_and_times() {
        let mut r = rule("*", Fault::DropResponse { after_bytes: 10 }, 1.0);
        r.after = 2;
        r.times = Some(1);
        let f = Faults::new(FaultConfig { rules: vec![r], ..Default::default() });
        let got: Vec<Option<u64>> = (0..5).map(|_| f.decide("oss", "GetObject").drop_response_after).collect();
        assert_eq!(got, vec![None, None, Some(10), None, None]);
    }

    #[test]
    fn parses_from_toml_and_json() {
        let toml_text = r#"
            seed = 7
            clock_skew_seconds = -1200
            [[rules]]
            operation = "UploadPart"
            kind = "slow_down"
            rate = 0.5
            [[rules]]
            kind = "latency"
            ms = 20
        "#;
        let cfg: FaultConfig = toml::from_str(toml_text).expect("toml");
        assert_eq!(cfg.rules[0].fault, Fault::SlowDown);
        assert_eq!(cfg.rules[1].operation, "*");
        assert_eq!(cfg.rules[1].fault, Fault::Latency { ms: 20 });
        let json = serde_json::to_string(&cfg).expect("json");
        let back: FaultConfig = serde_json::from_str(&json).expect("json back");
        assert_eq!(back, cfg);
    }

    #[test]
    fn creation_time_rules() {
        let cfg: FaultConfig = toml::from_str(
            r#"
            [[rules]]
            operation = "ImportImage"
            kind = "creation_time"
            at = 1700000000
            times = 2
            [[rules]]
            operation = "ImportImage"
            kind = "creation_time"
            offset_seconds = -3600
            after = 2
            times = 1
        "#,
        )
        .expect("toml");
        let f = Faults::new(cfg);
        let got: Vec<Option<i64>> =
            (0..4).map(|_| f.decide("rpc", "ImportImage").creation_time.map(|c| c.time(1_800_000_000))).collect();
        assert_eq!(got, vec![Some(1_700_000_000), Some(1_700_000_000), Some(1_799_996_400), None]);
        assert!(f.decide("rpc", "CopyImage").is_empty());
    }

    #[test]
    fn stall_rules() {
        let cfg: FaultConfig = toml::from_str(
            r#"
            [[rules]]
            operation = "ImportImage"
            kind = "stall"
            times = 1
            [[rules]]
            operation = "CopyImage"
            kind = "stall"
            seconds = 5
        "#,
        )
        .expect("toml");
        let f = Faults::new(cfg);
        assert_eq!(f.decide("rpc", "ImportImage").stall, Some(None));
        assert_eq!(f.decide("rpc", "ImportImage").stall, None);
        assert_eq!(f.decide("rpc", "CopyImage").stall, Some(Some(5)));
        assert!(f.stall_configured("ImportImage") && !f.stall_configured("DeleteImage"));
        f.set(FaultConfig::default());
        assert!(!f.stall_configured("ImportImage"));
    }

    #[test]
    fn task_finishes_early_rules() {
        let cfg: FaultConfig = toml::from_str(
            r#"
            [[rules]]
            operation = "ImportImage"
            kind = "task_finishes_early"
            seconds = 4
            times = 1
        "#,
        )
        .expect("toml");
        let f = Faults::new(cfg);
        let first = f.decide("rpc", "ImportImage");
        assert_eq!(first.finish_early, Some(4));
        assert_eq!(first.describe().as_deref(), Some("task finishes 4s early"));
        assert_eq!(f.decide("rpc", "ImportImage").finish_early, None);
        assert!(
            toml::from_str::<FaultConfig>("[[rules]]\nkind = \"task_finishes_early\"\n").is_err(),
            "seconds needed"
        );
    }
}
