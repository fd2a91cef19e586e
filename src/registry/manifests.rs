//! Manifests (stored byte-exact as blobs, linked per repository), tags and
//! the referrers index.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::names::{valid_tag, Reference};
use super::{page_limit, page_of, Error, Page, Registry, Result};
use crate::digest::{Algorithm, Digest};
use crate::store::{layout, Condition, StoreError};

pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

    pub fn is_index(mt: &str) -> bool {
        mt == OCI_INDEX || mt == DOCKER_LIST
    }

    pub fn is_manifest(mt: &str) -> bool {
        mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
    }

    /// Layers that registries are not expected to hold.
    pub fn is_non_distributable(mt: &str) -> bool {
        mt.contains(".nondistributable.") || mt.contains(".foreign.")
    }
}

/// A descriptor as found in manifests; only what the registry checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    urls: Option<Vec<String>>,
}

/// The per-repository record of a manifest revision.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Revision {
    media_type: String,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<Digest>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TagRecord {
    digest: Digest,
    /// What the manifest is, copied from its revision when the tag is
    /// written, so a GET by tag takes one read. Absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<Digest>,
}

impl TagRecord {
    fn of(info: &ManifestInfo) -> Self {
        TagRecord {
            digest: info.digest.clone(),
            media_type: Some(info.media_type.clone()),
            size: Some(info.size),
            subject: info.subject.clone(),
        }
    }

    /// The manifest, when the record carries its facts.
    fn info(&self) -> Option<ManifestInfo> {
        Some(ManifestInfo {
            digest: self.digest.clone(),
            media_type: self.media_type.clone()?,
            size: self.size?,
            subject: self.subject.clone(),
        })
    }
}

/// An entry of the referrers index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A manifest to store.
pub struct PutManifest<'a> {
    pub repo: &'a str,
    pub reference: &'a Reference,
    /// `Content-Type` of the request, if any.
    pub content_type: Option<&'a str>,
    pub body: Bytes,
    /// Extra tags (`?tag=`) to point at the manifest.
    pub tags: &'a [String],
}

/// What a stored manifest is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub subject: Option<Digest>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::ManifestInvalid(msg.into())
}

fn descriptors(v: &Value, field: &str) -> Result<Vec<Descriptor>> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(list) => {
            serde_json::from_value(list.clone()).map_err(|e| invalid(format!("{field}: {e}")))
        }
    }
}

fn descriptor(v: &Value, field: &str) -> Result<Option<Descriptor>> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(d) => serde_json::from_value(d.clone())
            .map(Some)
            .map_err(|e| invalid(format!("{field}: {e}"))),
    }
}

fn parse_digest(d: &Descriptor) -> Result<Digest> {
    if d.size < 0 {
        return Err(invalid(format!(
            "descriptor {} has a negative size",
            d.digest
        )));
    }
    d.digest
        .parse()
        .map_err(|e| invalid(format!("descriptor digest {:?}: {e}", d.digest)))
}

/// The first of `digests`, in their order, that `present` finds missing.
/// A few are checked at once: on S3 each check is a round trip.
async fn first_missing<F, Fut>(digests: Vec<Digest>, present: F) -> Result<Option<Digest>>
where
    F: Fn(Digest) -> Fut,
    Fut: std::future::Future<Output = Result<(Digest, bool)>>,
{
    let mut checks = stream::iter(digests.into_iter().map(present)).buffered(8);
    while let Some(check) = checks.next().await {
        if let (digest, false) = check? {
            return Ok(Some(digest));
        }
    }
    Ok(None)
}

impl Registry {
    /// Validate and store a manifest; point its tag(s) at it.
    pub async fn put_manifest(&self, req: PutManifest<'_>) -> Result<ManifestInfo> {
        self.check_repo(req.repo)?;
        for t in req.tags {
            if !valid_tag(t) {
                return Err(Error::TagInvalid(t.clone()));
            }
        }
        if req.body.len() > self.max_manifest_size {
            return Err(Error::TooLarge {
                limit: self.max_manifest_size as u64,
            });
        }
        let digest = match req.reference {
            Reference::Digest(d) => {
                let actual = Digest::of(d.algorithm(), &req.body);
                if &actual != d {
                    return Err(Error::DigestInvalid(format!(
                        "manifest digest is {actual}, not {d}"
                    )));
                }
                actual
            }
            Reference::Tag(_) => Digest::of(Algorithm::Sha256, &req.body),
        };
        let v: Value =
            serde_json::from_slice(&req.body).map_err(|e| invalid(format!("not JSON: {e}")))?;
        if !v.is_object() {
            return Err(invalid("not a JSON object"));
        }
        if v.get("schemaVersion").and_then(Value::as_i64) != Some(2) {
            return Err(invalid("schemaVersion must be 2"));
        }
        let declared = v.get("mediaType").and_then(Value::as_str);
        let header = req
            .content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| !c.is_empty());
        let media_type = match (declared, header) {
            (Some(d), Some(h)) if d != h && h != "application/json" => {
                return Err(invalid(format!(
                    "mediaType {d} does not match Content-Type {h}"
                )));
            }
            (Some(d), _) => d.to_string(),
            (None, Some(h)) if media::is_index(h) || media::is_manifest(h) => h.to_string(),
            (None, _) if v.get("manifests").is_some() => media::OCI_INDEX.to_string(),
            (None, _) => media::OCI_MANIFEST.to_string(),
        };
        let subject = descriptor(&v, "subject")?
            .map(|d| parse_digest(&d))
            .transpose()?;
        let artifact_type = v
            .get("artifactType")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut config_type = None;
        if media::is_manifest(&media_type) {
            let config = descriptor(&v, "config")?
                .ok_or_else(|| invalid("an image manifest needs a config"))?;
            config_type = Some(config.media_type.clone());
            // A missing `layers` is read as none (some artifact tools omit it); anything else must be a list.
            if v.get("layers")
                .is_some_and(|l| !l.is_array() && !l.is_null())
            {
                return Err(invalid("layers must be an array"));
            }
            let mut refs = vec![config];
            refs.extend(descriptors(&v, "layers")?);
            let mut wanted = Vec::new();
            for d in &refs {
                let foreign = media::is_non_distributable(&d.media_type)
                    || d.urls.as_ref().is_some_and(|u| !u.is_empty());
                let digest = parse_digest(d)?;
                if !foreign {
                    wanted.push(digest);
                }
            }
            let present = |d: Digest| async move {
                let ok = self.has_blob(req.repo, &d).await?;
                Ok((d, ok))
            };
            if let Some(missing) = first_missing(wanted, present).await? {
                return Err(Error::ManifestBlobUnknown(missing));
            }
        } else if media::is_index(&media_type) {
            if v.get("manifests").map(|l| !l.is_array()).unwrap_or(true) {
                return Err(invalid("an index needs a manifests array"));
            }
            let children = descriptors(&v, "manifests")?
                .iter()
                .map(parse_digest)
                .collect::<Result<Vec<_>>>()?;
            let present = |d: Digest| async move {
                let link = self
                    .store
                    .stat(&layout::manifest_link(req.repo, &d))
                    .await?;
                Ok((d, link.is_some()))
            };
            if let Some(missing) = first_missing(children, present).await? {
                return Err(Error::ManifestBlobUnknown(missing));
            }
        } else {
            return Err(invalid(format!(
                "unsupported manifest media type {media_type}"
            )));
        }

        // Bytes first, then the link, then tags: a crash never leaves a pointer to nothing.
        // Cached bytes were read from the store or written to it, and blobs are never deleted.
        if self.manifest_cache.get(&digest).is_none() {
            self.put_once(&layout::blob(&digest), req.body.clone())
                .await?;
            self.manifest_cache.insert(digest.clone(), req.body.clone());
        }
        let size = req.body.len() as u64;
        let revision = Revision {
            media_type: media_type.clone(),
            size,
            subject: subject.clone(),
        };
        self.write_json(&layout::manifest_link(req.repo, &digest), &revision)
            .await?;
        if let Some(subject) = &subject {
            let annotations = v
                .get("annotations")
                .and_then(|a| serde_json::from_value::<BTreeMap<String, String>>(a.clone()).ok())
                .filter(|a| !a.is_empty());
            let entry = Referrer {
                media_type: media_type.clone(),
                digest: digest.clone(),
                size,
                artifact_type: artifact_type.or(config_type),
                annotations,
            };
            self.write_json(&layout::referrer(req.repo, subject, &digest), &entry)
                .await?;
        }
        let mut tags: Vec<&str> = req.tags.iter().map(String::as_str).collect();
        if let Reference::Tag(t) = req.reference {
            tags.push(t);
        }
        let info = ManifestInfo {
            digest: digest.clone(),
            media_type: media_type.clone(),
            size,
            subject: subject.clone(),
        };
        let tag_writes = async {
            for t in tags {
                self.write_json(&layout::tag(req.repo, t), &TagRecord::of(&info))
                    .await?;
            }
            Ok::<_, Error>(())
        };
        // The catalog marker does not wait for the tags: only listings read it.
        tokio::try_join!(tag_writes, self.mark_repo(req.repo))?;
        Ok(info)
    }

    /// The digest a tag points at.
    pub async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        Ok(self
            .read_json::<TagRecord>(&layout::tag(repo, tag))
            .await?
            .map(|t| t.digest))
    }

    /// Point `tag` at the stored manifest `digest` only if it still points at
    /// `expected` (`None`: the tag must not exist). False when another writer
    /// moved it first: read-modify-write of a tag, safe across replicas.
    pub async fn swap_tag(
        &self,
        repo: &str,
        tag: &str,
        expected: Option<&Digest>,
        target: &ManifestInfo,
    ) -> Result<bool> {
        self.check_repo(repo)?;
        if !valid_tag(tag) {
            return Err(Error::TagInvalid(tag.to_string()));
        }
        let key = layout::tag(repo, tag);
        let cond = match self.store.read(&key).await {
            Ok((bytes, meta)) => {
                let current = serde_json::from_slice::<TagRecord>(&bytes).ok();
                if current.as_ref().map(|t| &t.digest) != expected {
                    return Ok(false);
                }
                Condition::Matches(meta.etag)
            }
            Err(StoreError::NotFound) if expected.is_none() => Condition::Absent,
            Err(StoreError::NotFound) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let record = serde_json::to_vec(&TagRecord::of(target)).expect("records serialize");
        match self.store.put_if(&key, Bytes::from(record), cond).await {
            Ok(_) => Ok(true),
            Err(StoreError::PreconditionFailed) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// What a reference names in `repo`.
    pub async fn stat_manifest(&self, repo: &str, reference: &Reference) -> Result<ManifestInfo> {
        self.check_repo(repo)?;
        let unknown = || Error::ManifestUnknown(reference.to_string());
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => {
                let record = self
                    .read_json::<TagRecord>(&layout::tag(repo, t))
                    .await?
                    .ok_or_else(unknown)?;
                // Tags go before their manifest's revision on delete, so a
                // record that carries the facts needs no second read.
                if let Some(info) = record.info() {
                    return Ok(info);
                }
                record.digest
            }
        };
        let rev: Revision = self
            .read_json(&layout::manifest_link(repo, &digest))
            .await?
            .ok_or_else(unknown)?;
        Ok(ManifestInfo {
            digest,
            media_type: rev.media_type,
            size: rev.size,
            subject: rev.subject,
        })
    }

    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<(ManifestInfo, Bytes)> {
        let info = self.stat_manifest(repo, reference).await?;
        let bytes = self.manifest_bytes(&info).await?;
        Ok((info, bytes))
    }

    /// The bytes of a manifest already resolved by [`Registry::stat_manifest`].
    pub async fn manifest_bytes(&self, info: &ManifestInfo) -> Result<Bytes> {
        if let Some(bytes) = self.manifest_cache.get(&info.digest) {
            return Ok(bytes);
        }
        match self.store.read(&layout::blob(&info.digest)).await {
            Ok((bytes, _)) => {
                self.manifest_cache
                    .insert(info.digest.clone(), bytes.clone());
                Ok(bytes)
            }
            Err(StoreError::NotFound) => Err(Error::ManifestUnknown(info.digest.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Store a manifest under its own sha256 digest, untagged.
    pub async fn put_manifest_by_digest(
        &self,
        repo: &str,
        media_type: &str,
        body: Bytes,
    ) -> Result<ManifestInfo> {
        let reference = Reference::Digest(Digest::sha256_of(&body));
        self.put_manifest(PutManifest {
            repo,
            reference: &reference,
            content_type: Some(media_type),
            body,
            tags: &[],
        })
        .await
    }

    /// Delete a tag, or a manifest with every tag and referrer entry of it.
    pub async fn delete_manifest(&self, repo: &str, reference: &Reference) -> Result<()> {
        self.check_repo(repo)?;
        match reference {
            Reference::Tag(t) => {
                if self.resolve_tag(repo, t).await?.is_none() {
                    return Err(Error::ManifestUnknown(t.clone()));
                }
                self.store.delete(&layout::tag(repo, t)).await?;
            }
            Reference::Digest(d) => {
                let info = self.stat_manifest(repo, reference).await?;
                for t in self.all_tags(repo).await? {
                    if self.resolve_tag(repo, &t).await?.as_ref() == Some(d) {
                        self.store.delete(&layout::tag(repo, &t)).await?;
                    }
                }
                if let Some(subject) = &info.subject {
                    self.store
                        .delete(&layout::referrer(repo, subject, d))
                        .await?;
                }
                self.store.delete(&layout::manifest_link(repo, d)).await?;
            }
        }
        Ok(())
    }

    async fn all_tags(&self, repo: &str) -> Result<Vec<String>> {
        let prefix = layout::tags(repo);
        let keys = self.store.list(&prefix).await?;
        Ok(keys
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(str::to_string)
            .collect())
    }

    /// Tags of `repo`, sorted, paginated; only the page asked for is read.
    pub async fn list_tags(
        &self,
        repo: &str,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Page> {
        self.check_repo(repo)?;
        // Tags are one key level below the prefix: key order is tag order.
        let prefix = layout::tags(repo);
        let after = last.map(|l| layout::tag(repo, l));
        let keys = self
            .store
            .list_page(&prefix, after.as_deref(), page_limit(n))
            .await?;
        let tags: Vec<String> = keys
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(str::to_string)
            .collect();
        if tags.is_empty() && !self.repo_exists(repo).await? {
            return Err(Error::NameUnknown(repo.to_string()));
        }
        Ok(page_of(tags, n))
    }

    /// Digests of every manifest in `repo`.
    pub async fn list_manifests(&self, repo: &str) -> Result<Vec<Digest>> {
        let keys = self.store.list(&layout::manifest_links(repo)).await?;
        Ok(keys
            .iter()
            .filter_map(|k| layout::manifest_link_digest(k))
            .collect())
    }

    /// Manifests in `repo` whose subject is `subject`, optionally of one artifact type.
    pub async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        self.check_repo(repo)?;
        let mut out = Vec::new();
        for key in self.store.list(&layout::referrers(repo, subject)).await? {
            if let Some(r) = self.read_json::<Referrer>(&key).await? {
                if artifact_type.is_none() || r.artifact_type.as_deref() == artifact_type {
                    out.push(r);
                }
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }
}

impl Registry {
    /// For a client that cannot take the index `index`: the first entry it
    /// can take (`usable` decides by media type) that is stored in `repo`.
    pub async fn negotiate_child(
        &self,
        repo: &str,
        index: &ManifestInfo,
        usable: impl Fn(&str) -> bool,
    ) -> Result<Option<ManifestInfo>> {
        let bytes = self.manifest_bytes(index).await?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        for d in descriptors(&v, "manifests")? {
            if !usable(&d.media_type) {
                continue;
            }
            let Ok(digest) = parse_digest(&d) else {
                continue;
            };
            if let Ok(info) = self.stat_manifest(repo, &Reference::Digest(digest)).await {
                return Ok(Some(info));
            }
        }
        Ok(None)
    }
}
