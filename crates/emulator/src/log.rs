//! The request log: one record per request (method, path, operation, status, duration, injected faults), never
//! the query string (it can hold signatures and security tokens) and never a header value.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;

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

/// Keeps the last entries in memory (for tests and the admin endpoint) and optionally prints each to stderr.
pub struct RequestLog {
    entries: Mutex<VecDeque<LogEntry>>,
    stderr: bool,
    json: bool,
}

impl RequestLog {
    pub fn new(stderr: bool, json: bool) -> Self {
        RequestLog { entries: Mutex::new(VecDeque::new()), stderr, json }
    }

    pub fn record(&self, entry: LogEntry) {
        if self.stderr {
            if self.json {
                if let Ok(line) = serde_json::to_string(&entry) {
                    eprintln!("{line}");
                }
            } else {
                eprintln!("imgport-emulator: {entry}");
            }
        }
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() >= KEEP {
            e.pop_front();
        }
        e.push_back(entry);
    }

    pub fn entries(&self) -> Vec<LogEntry> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }
}
