//! The APPR error catalogue (`appr/exception.py`): every failure of the APPR
//! API leaves as `{"code","message","details"}` with the reference's status.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Map, Value};

use super::service::ServiceError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidUsage,
    PackageNotFound,
    ChannelNotFound,
    PackageReleaseNotFound,
    PackageExists,
    InvalidRelease,
    InvalidParameters,
    /// Not in appr: no such route / method (the reference answered HTML).
    NotFound,
    MethodNotAllowed,
    /// Not in appr: the body went past `max_package_size`.
    TooLarge,
    /// Not in appr: storage failures (the reference answered HTML 500).
    Internal,
}

impl Code {
    fn parts(self) -> (StatusCode, &'static str) {
        match self {
            Code::InvalidUsage => (StatusCode::BAD_REQUEST, "invalid-usage"),
            Code::PackageNotFound => (StatusCode::NOT_FOUND, "package-not-found"),
            Code::ChannelNotFound => (StatusCode::NOT_FOUND, "channel-not-found"),
            Code::PackageReleaseNotFound => (StatusCode::NOT_FOUND, "package-release-not-found"),
            Code::PackageExists => (StatusCode::CONFLICT, "package-exists"),
            Code::InvalidRelease => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-release"),
            Code::InvalidParameters => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-parameters"),
            Code::NotFound => (StatusCode::NOT_FOUND, "not-found"),
            Code::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"),
            Code::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "package-too-large"),
            Code::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal-error"),
        }
    }
}

#[derive(Debug)]
pub struct ApprError {
    pub code: Code,
    pub message: String,
    pub details: Map<String, Value>,
    /// `Allow` for 405.
    pub allow: Option<&'static str>,
}

impl ApprError {
    pub fn new(code: Code, message: impl Into<String>, details: Value) -> Self {
        let details = match details {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        ApprError {
            code,
            message: message.into(),
            details,
            allow: None,
        }
    }

    pub fn not_found(path: &str) -> Self {
        Self::new(
            Code::NotFound,
            "The requested URL was not found on the server.",
            json!({ "path": path }),
        )
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut e = Self::new(
            Code::MethodNotAllowed,
            "The method is not allowed for the requested URL.",
            json!({}),
        );
        e.allow = Some(allow);
        e
    }

    /// The wire body; internal causes stay in the log, never in the body.
    pub fn body(&self) -> Value {
        let message = match self.code {
            Code::Internal => "internal server error",
            _ => &self.message,
        };
        json!({
            "code": self.code.parts().1,
            "message": message,
            "details": self.details,
        })
    }
}

impl std::fmt::Display for ApprError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.parts().1, self.message)
    }
}

impl ResponseError for ApprError {
    fn status_code(&self) -> StatusCode {
        self.code.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        if self.code == Code::Internal {
            tracing::error!(error = %self.message, "appr request failed");
        }
        let mut res = HttpResponse::build(self.status_code());
        if let Some(allow) = self.allow {
            res.insert_header(("Allow", allow));
        }
        res.content_type("application/json")
            .body(super::handlers::json_text(&self.body()))
    }
}

impl From<ServiceError> for ApprError {
    fn from(e: ServiceError) -> Self {
        use ServiceError as E;
        match e {
            E::PackageNotFound {
                package,
                release,
                media_type,
            } => ApprError::new(
                Code::PackageNotFound,
                format!(
                    "package {package} doesn't exist, v: {}, type: {}",
                    release.as_deref().unwrap_or("None"),
                    media_type.as_deref().unwrap_or("None")
                ),
                json!({"package": package, "release": release, "media_type": media_type}),
            ),
            E::NoReleaseMatch { package, query } => ApprError::new(
                Code::PackageReleaseNotFound,
                format!("No release match '{query}' for package '{package}'"),
                json!({"package": package, "release_query": query}),
            ),
            E::ReleaseNotFound { package, release } => ApprError::new(
                Code::PackageReleaseNotFound,
                format!("Release {release} doesn't exist for package {package}"),
                json!({"package": package, "release": release}),
            ),
            // The reference shifts its arguments: the channel name lands in `package`.
            E::ChannelNotFound { channel } => ApprError::new(
                Code::ChannelNotFound,
                format!("No channel found for package '{channel}'"),
                json!({ "package": channel }),
            ),
            E::Exists {
                package,
                release,
                media_type,
            } => ApprError::new(
                Code::PackageExists,
                "Package exists already",
                json!({"package": package, "release": release, "media_type": media_type}),
            ),
            E::InvalidVersion { version, message } => {
                ApprError::new(Code::InvalidRelease, message, json!({ "version": version }))
            }
            E::InvalidQuery { release, message } => {
                ApprError::new(Code::InvalidRelease, message, json!({ "release": release }))
            }
            E::AmbiguousMediaType { media_types } => ApprError::new(
                Code::InvalidUsage,
                format!("media-type non specified: [{}]", media_types.join(",")),
                json!({}),
            ),
            E::InvalidName { package, reason } => ApprError::new(
                Code::InvalidParameters,
                format!("invalid package name '{package}': {reason}"),
                json!({ "package": package }),
            ),
            E::InvalidParameter {
                name,
                value,
                reason,
            } => ApprError::new(
                Code::InvalidParameters,
                format!("invalid {name} '{value}': {reason}"),
                json!({ name: value }),
            ),
            E::InvalidUsage { message, details } => {
                ApprError::new(Code::InvalidUsage, message, details)
            }
            E::TooLarge { limit } => ApprError::new(
                Code::TooLarge,
                format!("package push body is larger than {limit} bytes"),
                json!({ "limit": limit }),
            ),
            E::Internal(msg) => ApprError::new(Code::Internal, msg, json!({})),
        }
    }
}
