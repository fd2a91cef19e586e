//! APPR packages, releases and channels over the OCI registry core
//! (HTTP-free). The data model is described in [`super::artifact`].

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::StreamExt;
use once_cell::sync::Lazy;
use regex::Regex;
use serde_json::{json, Map, Value};

use super::artifact::{self as art, Descriptor, OciObject};
use super::models;
use super::package::{self, Inspected};
use super::semver::{self, Version};
use crate::digest::Digest;
use crate::registry::{self, media, names, ManifestInfo, Reference, Registry};
use crate::store::{ByteStream, StoreError};

mod channels;
mod push;

pub use channels::Channel;
pub use push::PushRequest;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("package {package} not found")]
    PackageNotFound {
        package: String,
        release: Option<String>,
        media_type: Option<String>,
    },
    #[error("no release of {package} matches {query}")]
    NoReleaseMatch { package: String, query: String },
    #[error("release {release} of {package} not found")]
    ReleaseNotFound { package: String, release: String },
    #[error("channel {channel} not found")]
    ChannelNotFound { channel: String },
    #[error("{package} {release} {media_type} exists")]
    Exists {
        package: String,
        release: String,
        media_type: String,
    },
    #[error("invalid version: {message}")]
    InvalidVersion { version: String, message: String },
    #[error("invalid release query: {message}")]
    InvalidQuery { release: String, message: String },
    #[error("ambiguous media type")]
    AmbiguousMediaType { media_types: Vec<String> },
    #[error("invalid package name {package}: {reason}")]
    InvalidName { package: String, reason: String },
    #[error("invalid {name} {value}: {reason}")]
    InvalidParameter {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("{message}")]
    InvalidUsage { message: String, details: Value },
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

impl From<registry::Error> for ServiceError {
    fn from(e: registry::Error) -> Self {
        match e {
            registry::Error::TooLarge { limit } => ServiceError::TooLarge { limit },
            registry::Error::Body(msg) => ServiceError::InvalidUsage {
                message: format!("request body: {msg}"),
                details: json!({}),
            },
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        registry::Error::from(e).into()
    }
}

static MEDIA_TYPE: Lazy<Regex> =
    Lazy::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}$").unwrap());
static FULL_MEDIA_TYPE: Lazy<Regex> = Lazy::new(|| {
    Regex::new(r"^application/vnd\.appr\.package-manifest\.(.+?)\.(.+).json").unwrap()
});

/// The short media type, from a short name or a full APPR manifest media type.
pub fn normalize_media_type(mt: &str) -> Result<String> {
    let short = FULL_MEDIA_TYPE
        .captures(mt)
        .map(|c| c[1].to_string())
        .unwrap_or_else(|| mt.to_string());
    if MEDIA_TYPE.is_match(&short) && short != "-" {
        Ok(short)
    } else {
        Err(ServiceError::InvalidParameter {
            name: "media_type",
            value: mt.to_string(),
            reason: "a media type is letters, digits and !#$&^_.+- (at most 64)".into(),
        })
    }
}

/// A package name (`ns/name`) checked against the OCI repository grammar.
pub fn package_name(ns: &str, name: &str) -> Result<String> {
    let package = format!("{ns}/{name}");
    if names::valid_repo(&package) {
        Ok(package)
    } else {
        Err(ServiceError::InvalidName {
            package,
            reason: "namespace and name must be lower-case letters and digits, separated by \
                     '.', '_', '__' or '-' (the OCI repository name rules)"
                .into(),
        })
    }
}

/// One media type of a release, as read from its OCI manifest.
#[derive(Debug, Clone)]
pub struct Format {
    pub media_type: String,
    pub manifest: ManifestInfo,
    pub layer: Descriptor,
    pub appr_digest: String,
    pub created_at: String,
    pub metadata: Value,
}

#[derive(Debug, Clone)]
pub struct Release {
    pub release: String,
    /// What the tag points at: an index, or one manifest.
    pub root: ManifestInfo,
    pub formats: Vec<Format>,
}

impl Release {
    pub fn format(&self, media_type: &str) -> Option<&Format> {
        self.formats.iter().find(|f| f.media_type == media_type)
    }

    /// Whether the tag points at an index (not straight at a format's manifest).
    pub fn root_is_index(&self) -> bool {
        self.formats
            .iter()
            .all(|f| f.manifest.digest != self.root.digest)
    }

    pub fn media_types(&self) -> Vec<String> {
        self.formats.iter().map(|f| f.media_type.clone()).collect()
    }
}

/// APPR digests of layers pushed without one (`helm push`), by layer digest:
/// derived from content, so a process-wide cache is always right.
static DIGEST_CACHE: Lazy<Mutex<HashMap<Digest, String>>> = Lazy::new(Default::default);

/// `application/x-gzip` blob to stream out.
pub struct BlobOut {
    pub package: String,
    pub release: String,
    pub media_type: Option<String>,
    pub filename: String,
    pub digest: Digest,
    pub size: u64,
}

#[derive(Clone)]
pub struct Appr {
    reg: Registry,
}

impl Appr {
    pub fn new(reg: Registry) -> Self {
        Appr { reg }
    }

    pub fn registry(&self) -> &Registry {
        &self.reg
    }

    async fn read_object(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<(ManifestInfo, OciObject)>> {
        match self
            .reg
            .get_manifest(repo, &Reference::Digest(digest.clone()))
            .await
        {
            Ok((info, bytes)) => Ok(serde_json::from_slice(&bytes).ok().map(|o| (info, o))),
            Err(registry::Error::ManifestUnknown(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read_small_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut s = self.reg.open_blob(digest, None).await?;
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.map_err(StoreError::Io)?);
            if out.len() > 4 * 1024 * 1024 {
                return Err(ServiceError::Internal(format!(
                    "blob {digest} is too large"
                )));
            }
        }
        Ok(out)
    }

    /// The APPR digest of a layer that does not carry it: computed once.
    async fn computed_digest(&self, layer: &Digest) -> Result<String> {
        if let Some(d) = DIGEST_CACHE.lock().unwrap().get(layer) {
            return Ok(d.clone());
        }
        let mut i = package::Inspector::default();
        let mut s = self.reg.open_blob(layer, None).await?;
        while let Some(chunk) = s.next().await {
            if i.update(&chunk.map_err(StoreError::Io)?).is_err() {
                return Ok(layer.hex().to_string());
            }
        }
        let d = i
            .finish()
            .map(|x| x.appr_digest)
            .unwrap_or_else(|_| layer.hex().to_string());
        let mut cache = DIGEST_CACHE.lock().unwrap();
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(layer.clone(), d.clone());
        Ok(d)
    }

    async fn format_of(
        &self,
        repo: &str,
        info: ManifestInfo,
        o: &OciObject,
        mt: String,
    ) -> Result<Option<Format>> {
        let Some(layer) = o.package_layer().cloned() else {
            return Ok(None);
        };
        let appr_digest = match o.annotations.get(art::ANN_DIGEST) {
            Some(d) => d.clone(),
            None => self.computed_digest(&layer.digest).await?,
        };
        let created_at = match (
            o.annotations.get(art::ANN_CREATED),
            o.annotations.get(art::OCI_CREATED),
        ) {
            (Some(c), _) => c.clone(),
            (None, Some(c)) => chrono::DateTime::parse_from_rfc3339(c)
                .map(|t| art::py_isoformat(t.with_timezone(&chrono::Utc)))
                .unwrap_or_else(|_| c.clone()),
            (None, None) => "1970-01-01T00:00:00".to_string(),
        };
        let metadata = match o.annotations.get(art::ANN_METADATA) {
            Some(m) => serde_json::from_str(m).unwrap_or(Value::Null),
            None => self.helm_metadata(repo, o).await,
        };
        Ok(Some(Format {
            media_type: mt,
            manifest: info,
            layer,
            appr_digest,
            created_at,
            metadata,
        }))
    }

    /// What `appr push` would have sent as metadata for a chart pushed by helm.
    async fn helm_metadata(&self, _repo: &str, o: &OciObject) -> Value {
        let Some(config) = o
            .config
            .as_ref()
            .filter(|c| c.media_type == art::HELM_CONFIG)
        else {
            return Value::Null;
        };
        match self.read_small_blob(&config.digest).await {
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(c) => json!({
                    "maintainers": c.get("maintainers").cloned().unwrap_or(Value::Null),
                    "source": c.get("sources").cloned().unwrap_or(Value::Null),
                }),
                Err(_) => Value::Null,
            },
            Err(_) => Value::Null,
        }
    }

    /// The release a tag names, if the tag is a release of APPR's model.
    pub async fn load_release(&self, repo: &str, release: &str) -> Result<Option<Release>> {
        if Version::parse(release).is_err() {
            return Ok(None);
        }
        let tag = art::tag_of(release);
        if !names::valid_tag(&tag) {
            return Ok(None);
        }
        let Some(digest) = self.reg.resolve_tag(repo, &tag).await? else {
            return Ok(None);
        };
        let Some((root, obj)) = self.read_object(repo, &digest).await? else {
            return Ok(None);
        };
        let mut formats = Vec::new();
        if media::is_index(&root.media_type) {
            for entry in &obj.manifests {
                let Some((info, child)) = self.read_object(repo, &entry.digest).await? else {
                    continue;
                };
                let mt = art::entry_media_type(entry).or_else(|| child.appr_media_type());
                if let Some(mt) = mt {
                    if formats.iter().any(|f: &Format| f.media_type == mt) {
                        continue;
                    }
                    if let Some(f) = self.format_of(repo, info, &child, mt).await? {
                        formats.push(f);
                    }
                }
            }
        } else if let Some(mt) = obj.appr_media_type() {
            if let Some(f) = self.format_of(repo, root.clone(), &obj, mt).await? {
                formats.push(f);
            }
        }
        if formats.is_empty() {
            return Ok(None);
        }
        Ok(Some(Release {
            release: release.to_string(),
            root,
            formats,
        }))
    }

    async fn exists(&self, repo: &str) -> Result<bool> {
        Ok(self.reg.repo_exists(repo).await?)
    }

    fn not_found(package: &str) -> ServiceError {
        ServiceError::PackageNotFound {
            package: package.to_string(),
            release: None,
            media_type: None,
        }
    }

    /// Release names of a package (semver tags), highest first.
    pub async fn release_names(&self, repo: &str) -> Result<Vec<String>> {
        let tags = match self.reg.list_tags(repo, None, None).await {
            Ok(page) => page.items,
            Err(registry::Error::NameUnknown(_)) => return Err(Self::not_found(repo)),
            Err(e) => return Err(e.into()),
        };
        let mut releases: Vec<String> = tags.iter().map(|t| art::release_of(t)).collect();
        semver::sort_desc(&mut releases);
        Ok(releases)
    }

    /// Every release of a package, highest first.
    pub async fn releases(&self, repo: &str) -> Result<Vec<Release>> {
        let mut out = Vec::new();
        for r in self.release_names(repo).await? {
            if let Some(rel) = self.load_release(repo, &r).await? {
                out.push(rel);
            }
        }
        Ok(out)
    }

    /// Resolve a release query (`default`, exact, range) to a release.
    pub async fn query_release(&self, repo: &str, query: &str) -> Result<Release> {
        if !self.exists(repo).await? {
            return Err(Self::not_found(repo));
        }
        let releases = self.releases(repo).await?;
        let names: Vec<String> = releases.iter().map(|r| r.release.clone()).collect();
        if names.is_empty() {
            return Err(Self::not_found(repo));
        }
        let chosen = if query == "default" {
            semver::last_version(&names)
        } else {
            semver::select_version(&names, query).map_err(|message| ServiceError::InvalidQuery {
                release: query.to_string(),
                message,
            })?
        };
        let chosen = chosen.ok_or_else(|| ServiceError::NoReleaseMatch {
            package: repo.to_string(),
            query: query.to_string(),
        })?;
        Ok(releases
            .into_iter()
            .find(|r| r.release == chosen)
            .expect("chosen from these releases"))
    }

    /// A release query plus a media type (`-`: the only one).
    pub async fn query_format(
        &self,
        repo: &str,
        query: &str,
        media_type: &str,
    ) -> Result<(Release, Format)> {
        let release = self.query_release(repo, query).await?;
        let format = if media_type == "-" {
            match release.formats.as_slice() {
                [only] => only.clone(),
                _ => {
                    return Err(ServiceError::AmbiguousMediaType {
                        media_types: release.media_types(),
                    })
                }
            }
        } else {
            release
                .format(media_type)
                .cloned()
                .ok_or_else(|| ServiceError::PackageNotFound {
                    package: repo.to_string(),
                    release: Some(release.release.clone()),
                    media_type: Some(media_type.to_string()),
                })?
        };
        Ok((release, format))
    }

    /// An exact release (no query), or package-not-found.
    pub async fn exact_release(&self, repo: &str, release: &str) -> Result<Release> {
        match self.load_release(repo, release).await? {
            Some(r) => Ok(r),
            None => Err(ServiceError::PackageNotFound {
                package: repo.to_string(),
                release: Some(release.to_string()),
                media_type: None,
            }),
        }
    }

    /// Manifests of every release (route 8), optionally of one media type.
    pub async fn package_manifests(
        &self,
        repo: &str,
        media_type: Option<&str>,
    ) -> Result<Vec<models::Manifest>> {
        if !self.exists(repo).await? {
            return Err(Self::not_found(repo));
        }
        let mut out = Vec::new();
        for r in self.releases(repo).await? {
            for f in &r.formats {
                if media_type.is_none_or(|mt| mt == f.media_type) {
                    out.push(manifest_json(repo, &r.release, f));
                }
            }
        }
        Ok(out)
    }

    /// Manifests of one exact release (route 9).
    pub async fn release_manifests(
        &self,
        repo: &str,
        release: &str,
    ) -> Result<Vec<models::Manifest>> {
        let r = self.exact_release(repo, release).await?;
        Ok(r.formats
            .iter()
            .map(|f| manifest_json(repo, &r.release, f))
            .collect())
    }

    /// One manifest (route 10), with the channels whose current release it is.
    pub async fn show(
        &self,
        repo: &str,
        query: &str,
        media_type: &str,
    ) -> Result<models::Manifest> {
        let (release, format) = self.query_format(repo, query, media_type).await?;
        let mut v = manifest_json(repo, &release.release, &format);
        let channels: Vec<String> = self
            .channels(repo)
            .await?
            .into_iter()
            .filter(|c| c.current == release.release)
            .map(|c| c.name)
            .collect();
        v.channels = Some(channels);
        Ok(v)
    }

    /// A pull: which blob, under what name.
    pub async fn pull(&self, repo: &str, query: &str, media_type: &str) -> Result<BlobOut> {
        let (release, format) = self.query_format(repo, query, media_type).await?;
        Ok(BlobOut {
            package: repo.to_string(),
            filename: format!("{}_{}.tar.gz", repo.replace('/', "_"), release.release),
            release: release.release,
            media_type: Some(format.media_type),
            digest: format.layer.digest,
            size: format.layer.size,
        })
    }

    /// A blob by APPR digest (SHA-256 of the uncompressed tar).
    pub async fn blob(&self, repo: &str, appr_digest: &str) -> Result<BlobOut> {
        let missing = || ServiceError::PackageNotFound {
            package: repo.to_string(),
            release: Some(appr_digest.to_string()),
            media_type: None,
        };
        if !self.exists(repo).await? {
            return Err(missing());
        }
        for r in self.releases(repo).await? {
            if let Some(f) = r.formats.into_iter().find(|f| f.appr_digest == appr_digest) {
                let short: String = appr_digest.chars().take(8).collect();
                return Ok(BlobOut {
                    package: repo.to_string(),
                    release: appr_digest.to_string(),
                    media_type: None,
                    filename: format!("{}_{short}.tar.gz", repo.replace('/', "_")),
                    digest: f.layer.digest,
                    size: f.layer.size,
                });
            }
        }
        Err(missing())
    }

    pub async fn open(&self, blob: &BlobOut) -> Result<ByteStream> {
        Ok(self.reg.open_blob(&blob.digest, None).await?)
    }

    /// Every package, for `GET /packages` (with its filters).
    pub async fn list(
        &self,
        namespace: Option<&str>,
        query: Option<&str>,
        media_type: Option<&str>,
    ) -> Result<Vec<models::PackageSummary>> {
        let filter = query.map(search_regex).transpose()?;
        let mut out = Vec::new();
        for repo in self.reg.catalog(None, None).await?.items {
            let Some(ns) = appr_namespace(&repo) else {
                continue;
            };
            if namespace.is_some_and(|n| n != ns)
                || filter.as_ref().is_some_and(|f| !f.is_match(&repo))
            {
                continue;
            }
            let releases: Vec<Release> = match self.releases(&repo).await {
                Ok(r) => r,
                Err(ServiceError::PackageNotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let releases: Vec<Release> = releases
                .into_iter()
                .filter(|r| media_type.is_none_or(|mt| r.format(mt).is_some()))
                .collect();
            let Some(default) = releases.first() else {
                continue;
            };
            let manifests = match media_type {
                Some(mt) => vec![mt.to_string()],
                None => default.media_types(),
            };
            let created_at = releases
                .iter()
                .flat_map(|r| r.formats.iter().map(|f| f.created_at.clone()))
                .min()
                .unwrap_or_default();
            out.push(models::PackageSummary {
                releases: releases.iter().map(|r| r.release.clone()).collect(),
                default: default.release.clone(),
                name: repo,
                created_at,
                visibility: "public",
                manifests,
            });
        }
        Ok(out)
    }

    /// Package names matching a regex anywhere (`GET /packages/search`).
    pub async fn search(&self, query: &str) -> Result<Vec<String>> {
        let re = search_regex(query)?;
        let mut out = Vec::new();
        for repo in self.reg.catalog(None, None).await?.items {
            if appr_namespace(&repo).is_some()
                && re.is_match(&repo)
                && !self.releases(&repo).await?.is_empty()
            {
                out.push(repo);
            }
        }
        Ok(out)
    }

    /// Delete one media type of an exact release (route 11); the release goes
    /// when its last media type goes, and leaves every channel.
    pub async fn delete(&self, repo: &str, release: &str, media_type: &str) -> Result<()> {
        let missing = || ServiceError::PackageNotFound {
            package: repo.to_string(),
            release: None,
            media_type: None,
        };
        for _ in 0..TAG_RETRIES {
            let rel = self
                .load_release(repo, release)
                .await?
                .ok_or_else(missing)?;
            let format = rel.format(media_type).cloned().ok_or_else(missing)?;
            let rest: Vec<Descriptor> = rel
                .formats
                .iter()
                .filter(|f| f.media_type != media_type)
                .map(|f| {
                    art::index_entry(&f.media_type, f.manifest.digest.clone(), f.manifest.size)
                })
                .collect();
            if rest.is_empty() {
                self.unlink(repo, &rel.root.digest).await?;
                self.channels_drop_release(repo, release).await?;
            } else if self
                .put_index(repo, release, rest, Some(&rel.root.digest))
                .await?
                .is_none()
            {
                continue;
            } else if rel.root_is_index() {
                self.unlink(repo, &rel.root.digest).await?;
            }
            if rel.root.digest != format.manifest.digest {
                self.unlink(repo, &format.manifest.digest).await?;
            }
            return Ok(());
        }
        Err(busy(release))
    }

    async fn unlink(&self, repo: &str, digest: &Digest) -> Result<()> {
        match self
            .reg
            .delete_manifest(repo, &Reference::Digest(digest.clone()))
            .await
        {
            Ok(()) | Err(registry::Error::ManifestUnknown(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Store a release index and move the release tag to it, if the tag
    /// still points at `expected`; `None` when another writer moved it first.
    pub(crate) async fn put_index(
        &self,
        repo: &str,
        release: &str,
        entries: Vec<Descriptor>,
        expected: Option<&Digest>,
    ) -> Result<Option<ManifestInfo>> {
        let body = art::build_index(repo, release, entries);
        let info = self
            .reg
            .put_manifest_by_digest(repo, media::OCI_INDEX, Bytes::from(body))
            .await?;
        let moved = self
            .reg
            .swap_tag(repo, &art::tag_of(release), expected, &info)
            .await?;
        Ok(moved.then_some(info))
    }
}

/// Tries of a release-tag update that keeps losing to other writers.
pub(crate) const TAG_RETRIES: usize = 16;

pub(crate) fn busy(release: &str) -> ServiceError {
    ServiceError::Internal(format!(
        "release {release} kept changing under concurrent writes; try again"
    ))
}

/// APPR packages are `ns/name`: repositories of other depths are not theirs.
fn appr_namespace(repo: &str) -> Option<&str> {
    let (ns, name) = repo.split_once('/')?;
    (!name.contains('/')).then_some(ns)
}

fn search_regex(q: &str) -> Result<Regex> {
    Regex::new(q).map_err(|e| ServiceError::InvalidUsage {
        message: format!("invalid search expression: {e}"),
        details: json!({ "query": q }),
    })
}

/// The APPR manifest object (§6.7), media type strings always `v0`.
pub fn manifest_json(package: &str, release: &str, f: &Format) -> models::Manifest {
    models::Manifest {
        package: package.to_string(),
        release: release.to_string(),
        created_at: f.created_at.clone(),
        media_type: art::manifest_media_type(&f.media_type),
        metadata: f.metadata.clone(),
        content: models::Content {
            media_type: art::content_media_type(&f.media_type),
            digest: f.appr_digest.clone(),
            size: f.layer.size,
            urls: vec![],
        },
        channels: None,
    }
}

/// What a successful inspection needs to become a release.
pub(crate) struct Checked {
    pub inspected: Inspected,
    pub layer: Digest,
    pub size: u64,
}

pub(crate) fn json_map(pairs: &[(String, String)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}
