//! How an APPR package lives in the OCI store (the data model).
//!
//! ```text
//! repository <ns>/<name>
//!   tag <release> ('+' written '_', as Helm does)
//!     -> OCI image index            annotations: io.appr.package, io.appr.release
//!          manifests[i]: one OCI image manifest per APPR media type,
//!                        artifactType + annotation io.appr.media-type
//!          -> image manifest        annotations: io.appr.{package,release,media-type,
//!                                   digest,created-at,metadata}, org.opencontainers.image.created
//!               config  helm: application/vnd.cncf.helm.config.v1+json (Chart.yaml as JSON)
//!                       other: application/vnd.oci.empty.v1+json `{}`
//!               layers  [the package .tar.gz]: helm: application/vnd.cncf.helm.chart.content.v1.tar+gzip
//!                       other: application/vnd.appr.package.<type>.v0.tar+gzip
//! ```
//! A tag may also point straight at one image manifest (a chart pushed with
//! `helm push`): it is read as a release with the single media type `helm`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::digest::Digest;
use crate::registry::media;

pub const HELM: &str = "helm";
pub const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
pub const HELM_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_JSON: &[u8] = b"{}";

pub const ANN_PACKAGE: &str = "io.appr.package";
pub const ANN_RELEASE: &str = "io.appr.release";
pub const ANN_MEDIA_TYPE: &str = "io.appr.media-type";
pub const ANN_DIGEST: &str = "io.appr.digest";
pub const ANN_CREATED: &str = "io.appr.created-at";
pub const ANN_METADATA: &str = "io.appr.metadata";
pub const OCI_CREATED: &str = "org.opencontainers.image.created";
pub const OCI_TITLE: &str = "org.opencontainers.image.title";

/// `application/vnd.appr.package-manifest.<type>.v0.json`
pub fn manifest_media_type(mt: &str) -> String {
    format!("application/vnd.appr.package-manifest.{mt}.v0.json")
}

/// `application/vnd.appr.package.<type>.v0.tar+gzip`
pub fn content_media_type(mt: &str) -> String {
    format!("application/vnd.appr.package.{mt}.v0.tar+gzip")
}

/// The layer's file name for `oras pull`: Helm's `<name>-<version>.tgz` for
/// charts, else appr's `<ns>_<name>_<release>_<type>.tar.gz`, distinct per type.
pub fn file_title(package: &str, release: &str, mt: &str) -> String {
    if mt == HELM {
        let name = package.rsplit('/').next().unwrap_or(package);
        format!("{name}-{release}.tgz")
    } else {
        format!("{}_{release}_{mt}.tar.gz", package.replace('/', "_"))
    }
}

/// OCI tags cannot hold `+`; semver never holds `_`.
pub fn tag_of(release: &str) -> String {
    release.replace('+', "_")
}

pub fn release_of(tag: &str) -> String {
    tag.replace('_', "+")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// The parts of an image manifest or index that APPR reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciObject {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl OciObject {
    /// The APPR media type of an image manifest, if it is an APPR package.
    pub fn appr_media_type(&self) -> Option<String> {
        if let Some(mt) = self.annotations.get(ANN_MEDIA_TYPE) {
            return Some(mt.clone());
        }
        let config = self.config.as_ref()?;
        (config.media_type == HELM_CONFIG && self.package_layer().is_some())
            .then(|| HELM.to_string())
    }

    /// The package layer: the Helm chart layer, an APPR package layer, or the only layer.
    pub fn package_layer(&self) -> Option<&Descriptor> {
        self.layers
            .iter()
            .find(|l| {
                l.media_type == HELM_LAYER
                    || (l.media_type.starts_with("application/vnd.appr.package.")
                        && l.media_type.ends_with(".tar+gzip"))
            })
            .or(if self.layers.len() == 1 {
                self.layers.first()
            } else {
                None
            })
    }
}

/// The index entry's media type for APPR: its annotation, or Helm by artifact type.
pub fn entry_media_type(d: &Descriptor) -> Option<String> {
    if let Some(mt) = d.annotations.get(ANN_MEDIA_TYPE) {
        return Some(mt.clone());
    }
    (d.artifact_type.as_deref() == Some(HELM_CONFIG)).then(|| HELM.to_string())
}

/// Everything that goes into one per-format image manifest.
pub struct NewManifest<'a> {
    pub package: &'a str,
    pub release: &'a str,
    pub media_type: &'a str,
    pub config: Descriptor,
    pub layer: Descriptor,
    pub appr_digest: &'a str,
    pub created_at: &'a str,
    pub created_rfc3339: &'a str,
    pub metadata: &'a Value,
}

pub fn build_manifest(m: NewManifest<'_>) -> Vec<u8> {
    let mut annotations = BTreeMap::from([
        (ANN_PACKAGE, m.package.to_string()),
        (ANN_RELEASE, m.release.to_string()),
        (ANN_MEDIA_TYPE, m.media_type.to_string()),
        (ANN_DIGEST, m.appr_digest.to_string()),
        (ANN_CREATED, m.created_at.to_string()),
        (OCI_CREATED, m.created_rfc3339.to_string()),
    ]);
    if !m.metadata.is_null() {
        annotations.insert(ANN_METADATA, m.metadata.to_string());
    }
    let mut v = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": m.config,
        "layers": [m.layer],
        "annotations": annotations,
    });
    if m.media_type != HELM {
        v["artifactType"] = json!(manifest_media_type(m.media_type));
    }
    serde_json::to_vec(&v).expect("manifest serializes")
}

/// The release index; `helm` goes first so that clients which cannot take
/// an index are given the Helm chart.
pub fn build_index(package: &str, release: &str, mut entries: Vec<Descriptor>) -> Vec<u8> {
    entries.sort_by_key(|d| {
        let mt = entry_media_type(d).unwrap_or_default();
        (mt != HELM, mt)
    });
    let v = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": entries,
        "annotations": {ANN_PACKAGE: package, ANN_RELEASE: release},
    });
    serde_json::to_vec(&v).expect("index serializes")
}

/// The index entry for a per-format manifest.
pub fn index_entry(media_type: &str, digest: Digest, size: u64) -> Descriptor {
    let mut d = Descriptor::new(media::OCI_MANIFEST, digest, size);
    d.artifact_type = Some(if media_type == HELM {
        HELM_CONFIG.to_string()
    } else {
        manifest_media_type(media_type)
    });
    d.annotations
        .insert(ANN_MEDIA_TYPE.to_string(), media_type.to_string());
    d
}

/// Helm's OCI config: the fields of Chart.yaml as JSON.
pub fn helm_config(chart_yaml: Option<&[u8]>, name: &str, release: &str) -> Vec<u8> {
    let parsed = chart_yaml
        .and_then(|y| serde_yaml::from_slice::<serde_yaml::Value>(y).ok())
        .and_then(|y| serde_json::to_value(y).ok())
        .filter(Value::is_object);
    let mut v = parsed.unwrap_or_else(|| json!({"apiVersion": "v2", "name": name}));
    // Helm reads these as strings; YAML may have typed them as numbers.
    for key in ["name", "version", "appVersion", "apiVersion", "kubeVersion"] {
        match v.get(key) {
            Some(Value::String(_)) | None => {}
            Some(other) => {
                let s = other.to_string();
                v[key] = json!(s);
            }
        }
    }
    if v.get("version").is_none() {
        v["version"] = json!(release);
    }
    serde_json::to_vec(&v).expect("config serializes")
}

/// Python's `datetime.isoformat()` of a UTC time: microseconds only when non-zero.
pub fn py_isoformat(t: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::Timelike;
    if t.nanosecond() / 1000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_types() {
        assert_eq!(tag_of("1.0.0+build.1"), "1.0.0_build.1");
        assert_eq!(release_of("1.0.0_build.1"), "1.0.0+build.1");
        assert_eq!(
            manifest_media_type("helm"),
            "application/vnd.appr.package-manifest.helm.v0.json"
        );
        assert_eq!(
            content_media_type("kpm"),
            "application/vnd.appr.package.kpm.v0.tar+gzip"
        );
    }

    #[test]
    fn helm_config_from_chart_yaml() {
        let y = b"apiVersion: v2\nname: mychart\nversion: 1.0.0\nappVersion: 1.10\nmaintainers:\n- name: T\n";
        let v: Value = serde_json::from_slice(&helm_config(Some(y), "x", "9.9.9")).unwrap();
        assert_eq!(v["name"], "mychart");
        assert_eq!(v["version"], "1.0.0");
        assert_eq!(v["appVersion"], "1.1");
        assert_eq!(v["maintainers"][0]["name"], "T");
        let v: Value = serde_json::from_slice(&helm_config(None, "x", "9.9.9")).unwrap();
        assert_eq!(
            (v["name"].as_str(), v["version"].as_str()),
            (Some("x"), Some("9.9.9"))
        );
    }

    #[test]
    fn index_puts_helm_first() {
        let d = |mt: &str| index_entry(mt, Digest::sha256_of(mt.as_bytes()), 1);
        let bytes = build_index("a/b", "1.0.0", vec![d("kpm"), d("helm"), d("appr")]);
        let o: OciObject = serde_json::from_slice(&bytes).unwrap();
        let mts: Vec<_> = o.manifests.iter().filter_map(entry_media_type).collect();
        assert_eq!(mts, ["helm", "appr", "kpm"]);
    }
}
