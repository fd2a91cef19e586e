//! Push: the body streams through the JSON parser; the blob's base64 is
//! decoded, checked (gzip + tar) and hashed on the fly into a staged upload,
//! which is committed only once every check passed. A rejected push leaves
//! nothing behind.

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{
    busy, json_map, normalize_media_type, Appr, Checked, Result, ServiceError, TAG_RETRIES,
};
use crate::appr::artifact::{self as art, Descriptor};
use crate::appr::package::Inspector;
use crate::appr::semver::Version;
use crate::appr::stream::{decode_base64, Event, PushParser};
use crate::digest::{Algorithm, Digest};
use crate::registry::{self, media, names, Registry};
use crate::store::ByteStream;

pub struct PushRequest {
    /// `ns/name`, already checked.
    pub package: String,
    /// Query-string values; body fields win over them.
    pub query: Vec<(String, String)>,
    pub body: ByteStream,
}

/// A blob being written to a staged upload while it is checked.
struct Staging {
    reg: Registry,
    repo: String,
    id: String,
    tx: Option<mpsc::Sender<std::io::Result<Bytes>>>,
    task: Option<JoinHandle<registry::Result<registry::Upload>>>,
    inspector: Option<Inspector>,
    hash: Sha256,
    size: u64,
    invalid: Option<String>,
}

/// The outcome of staging: where the bytes are and what they are.
struct Staged {
    id: String,
    checked: std::result::Result<Checked, String>,
}

impl Staging {
    async fn start(reg: &Registry, repo: &str) -> Result<Staging> {
        let up = reg.start_upload(repo, Some(Algorithm::Sha256)).await?;
        let (tx, mut rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
        let body: ByteStream = Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        let task = {
            let (reg, repo, id) = (reg.clone(), repo.to_string(), up.id.clone());
            tokio::spawn(async move { reg.append_upload(&repo, &id, None, body, None).await })
        };
        Ok(Staging {
            reg: reg.clone(),
            repo: repo.to_string(),
            id: up.id,
            tx: Some(tx),
            task: Some(task),
            inspector: Some(Inspector::default()),
            hash: Sha256::new(),
            size: 0,
            invalid: None,
        })
    }

    async fn data(&mut self, d: Vec<u8>) {
        if self.invalid.is_some() {
            return;
        }
        if let Some(Err(e)) = self.inspector.as_mut().map(|i| i.update(&d)) {
            self.reject(e.to_string()).await;
            return;
        }
        self.hash.update(&d);
        self.size += d.len() as u64;
        if let Some(tx) = &self.tx {
            if tx.send(Ok(Bytes::from(d))).await.is_err() {
                // The store gave up; its error comes out of the task.
                self.tx = None;
            }
        }
    }

    /// The blob is not a package: stop writing it.
    async fn reject(&mut self, why: String) {
        self.invalid = Some(why);
        self.abort().await;
    }

    async fn abort(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(std::io::Error::other("push rejected"))).await;
        }
    }

    /// The blob ended: wait for the store and say what was received.
    async fn end(mut self) -> Result<Staged> {
        let mut inspected = None;
        if self.invalid.is_none() {
            match self.inspector.take().map(Inspector::finish) {
                Some(Ok(x)) => inspected = Some(x),
                Some(Err(e)) => self.reject(e.to_string()).await,
                None => {}
            }
        }
        self.tx = None;
        let written = self.join().await;
        let checked = match (self.invalid.take(), inspected) {
            (Some(why), _) => Err(why),
            (None, Some(inspected)) => Ok(Checked {
                inspected,
                layer: Digest::new(Algorithm::Sha256, hex::encode(self.hash.clone().finalize())),
                size: self.size,
            }),
            (None, None) => Err("no package".into()),
        };
        let staged = Staged {
            id: self.id.clone(),
            checked,
        };
        match written {
            Ok(_) => Ok(staged),
            // A rejected blob's upload was stopped on purpose.
            Err(_) if staged.checked.is_err() => Ok(staged),
            Err(e) => {
                cancel(&self.reg, &self.repo, &self.id).await;
                Err(e.into())
            }
        }
    }

    async fn join(&mut self) -> registry::Result<registry::Upload> {
        match self.task.take() {
            Some(t) => t
                .await
                .unwrap_or_else(|e| Err(registry::Error::Body(format!("upload task: {e}")))),
            None => Err(registry::Error::UploadUnknown),
        }
    }

    /// Something else failed: throw the staged bytes away.
    async fn fail(mut self) {
        self.abort().await;
        let _ = self.join().await;
        cancel(&self.reg, &self.repo, &self.id).await;
    }
}

async fn cancel(reg: &Registry, repo: &str, id: &str) {
    if let Err(e) = reg.cancel_upload(repo, id).await {
        if !matches!(e, registry::Error::UploadUnknown) {
            tracing::warn!(error = %e, upload = id, "could not drop a rejected push");
        }
    }
}

fn missing(field: &str) -> ServiceError {
    ServiceError::InvalidUsage {
        message: format!("push needs a '{field}' field"),
        details: json!({ "field": field }),
    }
}

impl Appr {
    pub async fn push(&self, req: PushRequest) -> Result<()> {
        let repo = req.package.clone();
        let (body_fields, staged) = self.receive(&repo, req.body).await?;
        let mut fields = json_map(&req.query);
        fields.extend(body_fields);
        // A blob given as a form/query value instead of in a JSON body.
        let staged = match (staged, fields.get("blob")) {
            (Some(s), _) => Some(s),
            (None, Some(Value::String(b))) => {
                let data = decode_base64(b).map_err(|e| ServiceError::InvalidUsage {
                    message: format!("blob: {e}"),
                    details: json!({}),
                })?;
                let mut s = Staging::start(&self.reg, &repo).await?;
                s.data(data).await;
                Some(s.end().await?)
            }
            (None, _) => None,
        };
        let id = staged.as_ref().map(|s| s.id.clone());
        let result = self.publish(&repo, &fields, staged).await;
        if result.is_err() {
            if let Some(id) = id {
                cancel(&self.reg, &repo, &id).await;
            }
        }
        result
    }

    /// Read the body: small fields, and the blob into a staged upload.
    async fn receive(
        &self,
        repo: &str,
        mut body: ByteStream,
    ) -> Result<(Map<String, Value>, Option<Staged>)> {
        let mut parser = PushParser::default();
        let mut staging: Option<Staging> = None;
        let mut staged: Option<Staged> = None;
        let failed = loop {
            let chunk = match body.next().await {
                None => break None,
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    break Some(ServiceError::from(registry::Error::from(
                        crate::store::StoreError::Body(e),
                    )))
                }
            };
            let events = match parser.feed(&chunk) {
                Ok(ev) => ev,
                Err(e) => break Some(body_error(e)),
            };
            let mut err = None;
            for ev in events {
                match ev {
                    Event::BlobStart => match Staging::start(&self.reg, repo).await {
                        Ok(s) => staging = Some(s),
                        Err(e) => {
                            err = Some(e);
                            break;
                        }
                    },
                    Event::BlobData(d) => {
                        if let Some(s) = staging.as_mut() {
                            s.data(d).await;
                        }
                    }
                    Event::BlobEnd => {
                        if let Some(s) = staging.take() {
                            match s.end().await {
                                Ok(s) => staged = Some(s),
                                Err(e) => {
                                    err = Some(e);
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            if err.is_some() {
                break err;
            }
        };
        let result = match failed {
            Some(e) => Err(e),
            None => parser.finish().map_err(body_error),
        };
        match result {
            Ok(fields) => Ok((fields, staged)),
            Err(e) => {
                if let Some(s) = staging {
                    s.fail().await;
                }
                if let Some(s) = staged {
                    cancel(&self.reg, repo, &s.id).await;
                }
                Err(e)
            }
        }
    }

    /// Check the fields and, if all is well, turn the staged blob into a release.
    async fn publish(
        &self,
        repo: &str,
        fields: &Map<String, Value>,
        staged: Option<Staged>,
    ) -> Result<()> {
        let release = match fields.get("release") {
            Some(Value::String(r)) => r.clone(),
            Some(_) => return Err(usage_field("release", "must be a string")),
            None => return Err(missing("release")),
        };
        let Some(staged) = staged else {
            return Err(match fields.get("blob") {
                Some(_) => usage_field("blob", "must be a base64 string"),
                None => missing("blob"),
            });
        };
        Version::parse(&release).map_err(|message| ServiceError::InvalidVersion {
            version: release.clone(),
            message,
        })?;
        if !names::valid_tag(&art::tag_of(&release)) {
            return Err(ServiceError::InvalidVersion {
                message: format!("release {release} is longer than an OCI tag (128 characters)"),
                version: release,
            });
        }
        let media_type = match fields.get("media_type") {
            None | Some(Value::Null) => "kpm".to_string(),
            Some(Value::String(mt)) => normalize_media_type(mt)?,
            Some(_) => return Err(usage_field("media_type", "must be a string")),
        };
        let metadata = fields.get("metadata").cloned().unwrap_or(Value::Null);
        let force = fields.get("force") == Some(&Value::String("true".into()));
        let checked = staged.checked.map_err(|why| ServiceError::InvalidUsage {
            message: format!("blob must be the base64 of a gzip-compressed tar: {why}"),
            details: json!({}),
        })?;
        let existing = self.load_release(repo, &release).await?;
        let replaced = existing
            .as_ref()
            .and_then(|r| r.format(&media_type).cloned());
        if replaced.is_some() && !force {
            return Err(ServiceError::Exists {
                package: repo.to_string(),
                release,
                media_type,
            });
        }

        self.reg
            .finish_upload(repo, &staged.id, &checked.layer)
            .await?;
        let name = repo.rsplit('/').next().unwrap_or(repo);
        let (config_type, config) = if media_type == art::HELM {
            let chart = checked.inspected.chart_yaml.as_deref();
            (art::HELM_CONFIG, art::helm_config(chart, name, &release))
        } else {
            (art::EMPTY_CONFIG, art::EMPTY_JSON.to_vec())
        };
        let config_size = config.len() as u64;
        let config_digest = self.reg.put_small_blob(repo, Bytes::from(config)).await?;

        let now = chrono::Utc::now();
        let layer_type = if media_type == art::HELM {
            art::HELM_LAYER.to_string()
        } else {
            art::content_media_type(&media_type)
        };
        let mut layer = Descriptor::new(&layer_type, checked.layer.clone(), checked.size);
        layer.annotations.insert(
            art::OCI_TITLE.into(),
            art::file_title(repo, &release, &media_type),
        );
        let manifest = art::build_manifest(art::NewManifest {
            package: repo,
            release: &release,
            media_type: &media_type,
            config: Descriptor::new(config_type, config_digest, config_size),
            layer,
            appr_digest: &checked.inspected.appr_digest,
            created_at: &art::py_isoformat(now),
            created_rfc3339: &now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            metadata: &metadata,
        });
        let info = self
            .reg
            .put_manifest_by_digest(repo, media::OCI_MANIFEST, Bytes::from(manifest))
            .await?;
        let digest = info.digest.clone();

        // Move the release tag to an index with the new entry; if another
        // writer changed the release meanwhile, merge again with its version.
        let mut existing = existing;
        for _ in 0..TAG_RETRIES {
            let replaced = existing
                .as_ref()
                .and_then(|r| r.format(&media_type).cloned());
            let mut entries: Vec<Descriptor> = existing
                .iter()
                .flat_map(|r| r.formats.iter())
                .filter(|f| f.media_type != media_type)
                .map(|f| {
                    art::index_entry(&f.media_type, f.manifest.digest.clone(), f.manifest.size)
                })
                .collect();
            entries.push(art::index_entry(&media_type, digest.clone(), info.size));
            let expected = existing.as_ref().map(|r| r.root.digest.clone());
            if self
                .put_index(repo, &release, entries, expected.as_ref())
                .await?
                .is_some()
            {
                // What the new index replaced is no longer part of the release.
                if let Some(old) = existing.as_ref().filter(|r| r.root_is_index()) {
                    self.unlink(repo, &old.root.digest).await?;
                }
                if let Some(old) = replaced.filter(|old| old.manifest.digest != info.digest) {
                    self.unlink(repo, &old.manifest.digest).await?;
                }
                return Ok(());
            }
            existing = self.load_release(repo, &release).await?;
            if !force
                && existing
                    .as_ref()
                    .is_some_and(|r| r.format(&media_type).is_some())
            {
                return Err(ServiceError::Exists {
                    package: repo.to_string(),
                    release,
                    media_type,
                });
            }
        }
        Err(busy(&release))
    }
}

fn usage_field(field: &str, why: &str) -> ServiceError {
    ServiceError::InvalidUsage {
        message: format!("'{field}' {why}"),
        details: json!({ "field": field }),
    }
}

fn body_error(e: crate::appr::stream::BodyError) -> ServiceError {
    ServiceError::InvalidUsage {
        message: format!("push body: {e}"),
        details: json!({}),
    }
}
