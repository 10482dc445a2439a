//! What an upload reports while it runs, as typed events handed to a callback the caller supplies: the library
//! never prints; the caller turns events into progress bars, lines or JSON. Events carry no secrets (no
//! credentials, no signed URLs) and serialise with serde, one object per event tagged by `event`.

use std::sync::Arc;

/// Where an upload's events go.
pub type EventFn = Arc<dyn Fn(&UploadEvent) + Send + Sync>;

/// Bytes stored so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    /// The object's length; 0 for a stream, whose length is known only at its end.
    pub total: u64,
    pub done: u64,
    /// Parts being sent.
    pub in_flight: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum UploadEvent {
    /// The multipart upload this run adds parts to: a new one, or an interrupted one that already holds
    /// `resumed_parts` intact parts.
    Started {
        upload_id: String,
        resumed_parts: u64,
    },
    /// Part `number` is in the store: sent by this run, or found there intact (`sent` false: a resumed stream).
    PartStored {
        number: u32,
        size: u64,
        crc64: u64,
        sent: bool,
    },
    Progress(Progress),
    /// The interrupted upload the resume state names is not continued: it is aborted and a new one started.
    Restarted {
        reason: RestartReason,
    },
    /// The object is stored and its checksums verified.
    Completed {
        bytes: u64,
        parts: u64,
        etag: String,
        crc64: Option<String>,
    },
}

/// Why an interrupted upload is not continued.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RestartReason {
    /// The source file's size, modification time or content differ from the interrupted run's.
    SourceChanged { path: String },
    /// What turns the source into the stream (output options, extent or backing files) differs.
    StreamChanged,
    /// The store no longer knows the upload (aborted elsewhere, expired by a lifecycle rule).
    UploadLost { upload_id: String },
    /// The store refused the flexible checksum `algorithm` (a store older than them): the upload is sent again
    /// with Content-MD5.
    ChecksumRefused { algorithm: String, error: String },
    /// `--checksum` asks for another kind than the interrupted upload's (`crc64nvme`, `crc32c`, `md5`).
    ChecksumChanged { from: String, to: String },
}

impl std::fmt::Display for RestartReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartReason::SourceChanged { path } => {
                write!(f, "{path} changed since the interrupted upload; starting over")
            }
            RestartReason::StreamChanged => write!(
                f,
                "the output options, or a file the image is read from (extent, backing file), changed since the \
                 interrupted upload; starting over"
            ),
            RestartReason::UploadLost { upload_id } => {
                write!(f, "the store no longer has the interrupted upload {upload_id}; starting over")
            }
            RestartReason::ChecksumChanged { from, to } => write!(
                f,
                "the interrupted upload was checked by {from}, --checksum asks for {to}; starting over (--checksum \
                 auto continues it)"
            ),
            RestartReason::ChecksumRefused { algorithm, error } => {
                write!(f, "the store does not take {algorithm} checksums ({error}); sending with Content-MD5 instead")
            }
        }
    }
}

/// Hands `event` to the caller's callback, if there is one.
pub(crate) fn emit(events: &Option<EventFn>, event: UploadEvent) {
    if let Some(f) = events {
        f(&event);
    }
}

/// The event of a part in the store.
pub(crate) fn part_stored(number: u32, rec: &crate::state::PartRecord, sent: bool) -> UploadEvent {
    UploadEvent::PartStored { number, size: rec.size, crc64: rec.crc64, sent }
}

/// The event of a finished upload.
pub(crate) fn completed(summary: &crate::upload::Summary) -> UploadEvent {
    let s = summary;
    UploadEvent::Completed { bytes: s.bytes, parts: s.parts, etag: s.etag.clone(), crc64: s.crc64.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_tagged() {
        let restart = UploadEvent::Restarted { reason: RestartReason::SourceChanged { path: "/d/a.raw".into() } };
        assert_eq!(
            serde_json::to_string(&restart).ok().as_deref(),
            Some(r#"{"event":"restarted","reason":{"reason":"source_changed","path":"/d/a.raw"}}"#)
        );
        let progress = UploadEvent::Progress(Progress { total: 10, done: 4, in_flight: 2 });
        assert_eq!(
            serde_json::to_string(&progress).ok().as_deref(),
            Some(r#"{"event":"progress","total":10,"done":4,"in_flight":2}"#)
        );
    }

    #[test]
    fn restart_reasons_read_as_before() {
        let r = RestartReason::SourceChanged { path: "/d/a.raw".into() };
        assert_eq!(r.to_string(), "/d/a.raw changed since the interrupted upload; starting over");
        assert!(RestartReason::StreamChanged.to_string().starts_with("the output options, or a file the image"));
    }
}
