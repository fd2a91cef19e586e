//! APPR wire objects, field for field as the reference server sends them.

use serde::Serialize;
use serde_json::Value;

/// `content` of a manifest: an OCI-descriptor-like object (`urls` always empty).
#[derive(Debug, Clone, Serialize)]
pub struct Content {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Hex SHA-256 of the uncompressed tar, without `sha256:`.
    pub digest: String,
    pub size: u64,
    pub urls: Vec<String>,
}

/// A release manifest (§6.7); `channels` only on the show-one route.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub package: String,
    pub release: String,
    pub created_at: String,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub metadata: Value,
    pub content: Content,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
}

/// An entry of `GET /packages`.
#[derive(Debug, Clone, Serialize)]
pub struct PackageSummary {
    pub name: String,
    pub releases: Vec<String>,
    pub default: String,
    pub created_at: String,
    pub visibility: &'static str,
    pub manifests: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Channel {
    pub name: String,
    pub current: String,
    pub releases: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub status: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReleaseDeleted {
    pub status: &'static str,
    pub package: String,
    pub release: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChannelReleaseDeleted {
    pub status: &'static str,
    pub package: String,
    pub name: String,
    pub release: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChannelDeleted {
    pub channel: String,
    pub package: String,
    pub action: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApiVersion {
    #[serde(rename = "appr-api")]
    pub appr_api: &'static str,
}
