//! The OCI error catalogue: every failure of `/v2` leaves as
//! `{"errors":[{"code","message","detail"}]}` with the spec's code and status.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::http::BodyError;
use crate::registry::Error;
use crate::store::StoreError;

#[derive(Debug)]
pub struct OciError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra headers (`Range` on 416, `Location` for an upload that goes on).
    pub headers: Vec<(&'static str, String)>,
}

impl OciError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        OciError {
            status,
            code,
            message: message.into(),
            headers: vec![],
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn not_found() -> Self {
        OciError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
    }

    pub fn unsupported(msg: impl Into<String>) -> Self {
        OciError::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", msg)
    }

    pub fn digest_invalid(msg: impl Into<String>) -> Self {
        OciError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", msg)
    }
}

impl std::fmt::Display for OciError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for OciError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header(("Docker-Distribution-API-Version", "registry/2.0"));
        for (name, value) in &self.headers {
            res.insert_header((*name, value.as_str()));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.insert_header(("Retry-After", "1"));
        }
        res.json(json!({"errors": [{"code": self.code, "message": self.message, "detail": {}}]}))
    }
}

impl From<Error> for OciError {
    fn from(e: Error) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        let (status, code) = match &e {
            Error::NameInvalid(_) => (S::BAD_REQUEST, "NAME_INVALID"),
            Error::NameUnknown(_) => (S::NOT_FOUND, "NAME_UNKNOWN"),
            Error::TagInvalid(_) => (S::BAD_REQUEST, "TAG_INVALID"),
            Error::DigestInvalid(_) => (S::BAD_REQUEST, "DIGEST_INVALID"),
            Error::Unsupported(_) => (S::BAD_REQUEST, "UNSUPPORTED"),
            Error::BlobUnknown(_) => (S::NOT_FOUND, "BLOB_UNKNOWN"),
            Error::UploadUnknown => (S::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            Error::UploadInvalid(_) => (S::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            Error::ChunkOutOfOrder { size } => {
                let range = if *size == 0 {
                    "0-0".to_string()
                } else {
                    format!("0-{}", size - 1)
                };
                return OciError::new(S::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID", msg)
                    .with_header("Range", range);
            }
            Error::RangeNotSatisfiable { size } => {
                return OciError::new(S::RANGE_NOT_SATISFIABLE, "BLOB_UNKNOWN", msg)
                    .with_header("Content-Range", format!("bytes */{size}"));
            }
            Error::ManifestUnknown(_) => (S::NOT_FOUND, "MANIFEST_UNKNOWN"),
            Error::ManifestInvalid(_) => (S::BAD_REQUEST, "MANIFEST_INVALID"),
            Error::ManifestBlobUnknown(_) => (S::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
            Error::TooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
            Error::SizeInvalid(_) => (S::BAD_REQUEST, "SIZE_INVALID"),
            Error::Body(_) => (S::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            Error::Store(StoreError::Unavailable(_)) => (S::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            Error::Store(_) => {
                tracing::error!(error = %msg, "storage failure");
                (S::INTERNAL_SERVER_ERROR, "UNKNOWN")
            }
        };
        OciError::new(status, code, msg)
    }
}

impl From<BodyError> for OciError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge(limit) => Error::TooLarge { limit }.into(),
            BodyError::Io(m) => Error::Body(m).into(),
        }
    }
}
