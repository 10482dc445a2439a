//! The request log: one record per request (method, path, operation, status, duration, injected faults), never
//! the query string (it can hold signatures and security tokens) and never a header value. The emulator never
//! prints: records and problems go to the [`LogSink`] the caller provides (`imgport emulator serve` prints them).

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

const KEEP: usize = 10_000;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LogEntry {
    /// Unix milliseconds.
    pub time_ms: u64,
    pub request_id: String,
    pub method: String,
    /// The path only, without the query string.
    pub path: String,
    pub operation: String,
    /// HTTP status; 0 when the connection was dropped without a response.
    pub status: u16,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

impl std::fmt::Display for LogEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = if self.status == 0 { "dropped".to_string() } else { self.status.to_string() };
        write!(
            f,
            "{} {} {} {} {} {}ms {}",
            self.request_id, self.method, self.path, self.operation, status, self.duration_ms, self.time_ms
        )?;
        if let Some(fault) = &self.fault {
            write!(f, " fault=[{fault}]")?;
        }
        Ok(())
    }
}

/// Receives the emulator's reports as they happen, on the thread that made them.
pub trait LogSink: Send + Sync {
    /// One request's record, once it is answered (or dropped).
    fn request(&self, entry: &LogEntry);
    /// A problem no single answer explains in full (the ECS state cannot be opened, ...).
    fn problem(&self, message: &str);
}

/// Keeps the last entries in memory (for tests and the admin endpoint) and hands each to the sink, if any.
pub struct RequestLog {
    entries: Mutex<VecDeque<LogEntry>>,
    sink: Option<Arc<dyn LogSink>>,
}

impl RequestLog {
    pub fn new(sink: Option<Arc<dyn LogSink>>) -> Self {
        RequestLog { entries: Mutex::new(VecDeque::new()), sink }
    }

    pub fn record(&self, entry: LogEntry) {
        if let Some(sink) = &self.sink {
            sink.request(&entry);
        }
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() >= KEEP {
            e.pop_front();
        }
        e.push_back(entry);
    }

    /// Reports a problem to the sink (nothing is kept).
    pub fn problem(&self, message: &str) {
        if let Some(sink) = &self.sink {
            sink.problem(message);
        }
    }

    pub fn entries(&self) -> Vec<LogEntry> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }
}
