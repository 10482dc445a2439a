//! OSS errors with the codes, HTTP statuses and XML body of the real service.

use crate::body::{self, Body};
use crate::oss::store::StoreError;
use crate::xml::XmlWriter;
use hyper::Response;

/// An OSS error response.
#[derive(Debug, Clone)]
pub struct OssError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Extra elements the real service adds for this code (BucketName, Key, StringToSign, ...).
    pub extra: Vec<(&'static str, String)>,
    /// The service's detailed error code (also sent as `x-oss-ec`), where it is known.
    pub ec: Option<&'static str>,
    pub headers: Vec<(String, String)>,
}

impl OssError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        OssError { status, code, message: message.into(), extra: Vec::new(), ec: None, headers: Vec::new() }
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra.push((name, value.into()));
        self
    }

    pub fn ec(mut self, ec: &'static str) -> Self {
        self.ec = Some(ec);
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn no_such_bucket(bucket: &str) -> Self {
        OssError::new(404, "NoSuchBucket", "The specified bucket does not exist.").with("BucketName", bucket)
    }

    pub fn no_such_key(key: &str) -> Self {
        OssError::new(404, "NoSuchKey", "The specified key does not exist.").with("Key", key)
    }

    pub fn no_such_upload(upload_id: &str) -> Self {
        OssError::new(
            404,
            "NoSuchUpload",
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
        )
        .with("UploadId", upload_id)
    }

    pub fn invalid_argument(message: impl Into<String>, name: &str, value: &str) -> Self {
        OssError::new(400, "InvalidArgument", message).with("ArgumentName", name).with("ArgumentValue", value)
    }

    pub fn malformed_xml() -> Self {
        OssError::new(
            400,
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our published schema.",
        )
    }

    pub fn invalid_digest() -> Self {
        OssError::new(400, "InvalidDigest", "The Content-MD5 you specified was invalid.")
    }

    pub fn entity_too_large(max: u64) -> Self {
        OssError::new(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")
            .with("MaxSizeAllowed", max.to_string())
    }

    pub fn internal(message: impl Into<String>) -> Self {
        OssError::new(500, "InternalError", message)
    }

    pub fn not_implemented(what: &str) -> Self {
        OssError::new(501, "NotImplemented", format!("{what} is not implemented by the emulator."))
    }

    /// Maps a store error, naming the bucket, key or upload involved as the real service does.
    pub fn from_store(e: StoreError, bucket: &str, key: &str, upload_id: &str) -> Self {
        match e {
            StoreError::NoSuchBucket => OssError::no_such_bucket(bucket),
            StoreError::NoSuchKey => OssError::no_such_key(key),
            StoreError::NoSuchUpload => OssError::no_such_upload(upload_id),
            StoreError::BucketNotEmpty => {
                OssError::new(409, "BucketNotEmpty", "The bucket you tried to delete is not empty.")
                    .with("BucketName", bucket)
            }
            StoreError::BucketConflict(msg) => OssError::new(409, "BucketAlreadyExists", msg).with("BucketName", bucket),
            StoreError::InvalidPart { number, etag } => OssError::new(
                400,
                "InvalidPart",
                "One or more of the specified parts could not be found or the specified entity tag might not have matched the part's entity tag.",
            )
            .with("UploadId", upload_id)
            .with("PartNumber", number.to_string())
            .with("ETag", etag),
            StoreError::InvalidPartOrder => OssError::new(
                400,
                "InvalidPartOrder",
                "The list of parts was not in ascending order. Parts list must specified in order by part number.",
            )
            .with("UploadId", upload_id),
            StoreError::EntityTooSmall { number, size } => {
                OssError::new(400, "EntityTooSmall", "Your proposed upload smaller than the minimum allowed size.")
                    .with("MinSizeAllowed", crate::oss::store::MIN_PART_SIZE.to_string())
                    .with("ProposedSize", size.to_string())
                    .with("PartNumber", number.to_string())
                    .with("UploadId", upload_id)
            }
            StoreError::FileAlreadyExists => OssError::new(
                409,
                "FileAlreadyExists",
                "The object you specified already exists and can not be overwritten.",
            ),
            StoreError::NoParts => OssError::malformed_xml(),
            StoreError::Io(e) => OssError::internal(format!("storage error: {e}")),
        }
    }

    /// The response: XML body (none for HEAD), `x-oss-request-id`, `x-oss-ec`.
    pub fn into_response(self, request_id: &str, host: &str, head: bool) -> Response<Body> {
        let mut w = XmlWriter::new();
        w.open("Error").elem("Code", self.code).elem("Message", &self.message).elem("RequestId", request_id);
        w.elem("HostId", host);
        for (k, v) in &self.extra {
            w.elem(k, v);
        }
        if let Some(ec) = self.ec {
            w.elem("EC", ec);
            w.elem("RecommendDoc", format!("https://api.aliyun.com/troubleshoot?q={ec}"));
        }
        w.close("Error");
        let text = w.finish();
        let mut headers = vec![("Content-Type".to_string(), "application/xml".to_string())];
        if let Some(ec) = self.ec {
            headers.push(("x-oss-ec".to_string(), ec.to_string()));
        }
        headers.extend(self.headers);
        let body = if head {
            headers.push(("Content-Length".to_string(), "0".to_string()));
            body::empty()
        } else {
            body::full(text)
        };
        super::response(self.status, request_id, headers, body)
    }
}
