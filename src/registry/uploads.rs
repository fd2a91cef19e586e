//! Blob upload sessions. The bytes are staged in the backend and the running
//! hash state is saved in the session record after every chunk, so any replica
//! can continue an upload and the digest is checked without re-reading the
//! data (except when the client names a different algorithm at the end).

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{Error, Registry, Result};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::store::{layout, ByteStream, StoreError};

/// Largest body a closing PUT may bring for [`Registry::finish_upload_with`].
pub const SMALL_BLOB: u64 = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    repo: String,
    size: u64,
    algorithm: String,
    /// Base64 of the hasher state after `size` bytes.
    hash_state: String,
    started: i64,
    updated: i64,
}

/// Where an upload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub size: u64,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Wrap `body` so that every chunk also feeds `hasher`.
pub(crate) fn hashing(body: ByteStream, hasher: Arc<Mutex<Hasher>>) -> ByteStream {
    Box::pin(body.inspect_ok(move |chunk| hasher.lock().unwrap().update(chunk)))
}

fn valid_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok()
}

impl Registry {
    pub async fn start_upload(&self, repo: &str, alg: Option<Algorithm>) -> Result<Upload> {
        self.check_repo(repo)?;
        let id = uuid::Uuid::new_v4().to_string();
        let alg = alg.unwrap_or(Algorithm::Sha256);
        let session = Session {
            repo: repo.to_string(),
            size: 0,
            algorithm: alg.as_str().to_string(),
            hash_state: b64().encode(Hasher::new(alg).save()),
            started: now(),
            updated: now(),
        };
        self.write_json(&layout::upload_session(&id), &session)
            .await?;
        Ok(Upload { id, size: 0 })
    }

    async fn session(&self, repo: &str, id: &str) -> Result<Session> {
        if !valid_id(id) {
            return Err(Error::UploadUnknown);
        }
        match self
            .read_json::<Session>(&layout::upload_session(id))
            .await?
        {
            Some(s) if s.repo == repo => Ok(s),
            _ => Err(Error::UploadUnknown),
        }
    }

    fn hasher_of(s: &Session) -> Result<Hasher> {
        let alg = Algorithm::parse(&s.algorithm).ok_or(Error::UploadUnknown)?;
        let state = b64()
            .decode(&s.hash_state)
            .map_err(|_| Error::UploadUnknown)?;
        Hasher::restore(alg, &state).ok_or(Error::UploadUnknown)
    }

    pub async fn upload_status(&self, repo: &str, id: &str) -> Result<Upload> {
        let s = self.session(repo, id).await?;
        Ok(Upload {
            id: id.to_string(),
            size: s.size,
        })
    }

    /// Append a chunk. `start`/`end` come from `Content-Range` when given: the
    /// chunk must start where the upload ends, and end where it says. `len` is
    /// the chunk's declared length (`Content-Length`), if any.
    pub async fn append_upload(
        &self,
        repo: &str,
        id: &str,
        range: Option<(u64, u64)>,
        body: ByteStream,
        len: Option<u64>,
    ) -> Result<Upload> {
        let mut s = self.session(repo, id).await?;
        if let Some((start, end)) = range {
            if start != s.size || end < start {
                return Err(Error::ChunkOutOfOrder { size: s.size });
            }
        }
        let hasher = Arc::new(Mutex::new(Self::hasher_of(&s)?));
        let new_size = self
            .store
            .stage_append(
                &layout::upload_data(id),
                s.size,
                hashing(body, hasher.clone()),
                len,
            )
            .await
            .map_err(|e| match e {
                StoreError::OffsetMismatch { .. } => {
                    Error::UploadInvalid("upload data is inconsistent".into())
                }
                e => e.into(),
            })?;
        if let Some((_, end)) = range {
            if new_size != end + 1 {
                // Not saved: the session stays at its old size and the extra bytes are cut next time.
                return Err(Error::UploadInvalid(format!(
                    "Content-Range end {end} does not match the {} bytes received",
                    new_size - s.size
                )));
            }
        }
        s.size = new_size;
        s.hash_state = b64().encode(hasher.lock().unwrap().save());
        s.updated = now();
        self.write_json(&layout::upload_session(id), &s).await?;
        Ok(Upload {
            id: id.to_string(),
            size: new_size,
        })
    }

    /// Close an upload: verify `digest` over all its bytes and make the blob
    /// visible in `repo`. On a digest mismatch the upload is discarded.
    pub async fn finish_upload(&self, repo: &str, id: &str, digest: &Digest) -> Result<()> {
        let s = self.session(repo, id).await?;
        let staged = layout::upload_data(id);
        let actual = if Algorithm::parse(&s.algorithm) == Some(digest.algorithm()) {
            Self::hasher_of(&s)?.finish()
        } else {
            // The client named another algorithm only now: one more pass over the bytes.
            let mut h = Hasher::new(digest.algorithm());
            let mut data = self.store.stage_read(&staged).await?;
            while let Some(chunk) = data.next().await {
                h.update(&chunk.map_err(StoreError::Io)?);
            }
            h.finish()
        };
        if &actual != digest {
            return Err(self.wrong_digest(repo, id, &actual, digest).await?);
        }
        let blob_key = layout::blob(digest);
        if self.store.stat(&blob_key).await?.is_some() {
            self.store.stage_abort(&staged).await?;
        } else {
            self.store.stage_commit(&staged, &blob_key).await?;
            // The digest was checked against the hash state, not the staged bytes: a
            // session whose staging was lost (a cancel that failed half way) must not
            // leave a short object under a real digest.
            let stored = self.store.stat(&blob_key).await?.map(|m| m.size);
            if stored != Some(s.size) {
                self.store.delete(&blob_key).await?;
                self.store.delete(&layout::upload_session(id)).await?;
                return Err(Error::UploadInvalid(format!(
                    "staged upload holds {} bytes, the session {}",
                    stored.unwrap_or(0),
                    s.size
                )));
            }
        }
        self.link_blob(repo, digest).await?;
        self.store.delete(&layout::upload_session(id)).await?;
        Ok(())
    }

    /// Close an upload whose whole content came with the closing request
    /// (`data`, at most [`SMALL_BLOB`] bytes). When nothing was staged before,
    /// the checked bytes go straight to the digest key: a small blob on S3
    /// then costs no staging record, tail object, copy or their deletes.
    pub async fn finish_upload_with(
        &self,
        repo: &str,
        id: &str,
        digest: &Digest,
        data: bytes::Bytes,
    ) -> Result<()> {
        let s = self.session(repo, id).await?;
        if s.size > 0 {
            let len = data.len() as u64;
            let body: ByteStream = Box::pin(futures_util::stream::once(async { Ok(data) }));
            self.append_upload(repo, id, None, body, Some(len)).await?;
            return self.finish_upload(repo, id, digest).await;
        }
        let actual = Digest::of(digest.algorithm(), &data);
        if &actual != digest {
            return Err(self.wrong_digest(repo, id, &actual, digest).await?);
        }
        self.store_whole_blob(repo, digest, data).await?;
        // Also drops leftovers of an append that failed before the session counted it.
        self.drop_session(id).await
    }

    /// Discard an upload whose bytes hash to `actual`, not `expected`; the error to answer.
    async fn wrong_digest(
        &self,
        repo: &str,
        id: &str,
        actual: &Digest,
        expected: &Digest,
    ) -> Result<Error> {
        self.cancel_upload(repo, id).await?;
        Ok(Error::DigestInvalid(format!(
            "content digest is {actual}, not {expected}"
        )))
    }

    pub async fn cancel_upload(&self, repo: &str, id: &str) -> Result<()> {
        self.session(repo, id).await?;
        self.drop_session(id).await
    }

    /// Remove an upload's staged bytes, then its session record.
    async fn drop_session(&self, id: &str) -> Result<()> {
        self.store.stage_abort(&layout::upload_data(id)).await?;
        self.store.delete(&layout::upload_session(id)).await?;
        Ok(())
    }

    /// Store a whole body (of `len` bytes, if declared) as a blob of `repo` in
    /// one go, checking `expected` if given. Runs as an upload session so that
    /// a crash leaves only a session for the purge to find. Returns the digest and size.
    pub async fn put_blob(
        &self,
        repo: &str,
        expected: Option<&Digest>,
        body: ByteStream,
        len: Option<u64>,
    ) -> Result<(Digest, u64)> {
        let upload = self
            .start_upload(repo, expected.map(|d| d.algorithm()))
            .await?;
        let result = async {
            let size = self
                .append_upload(repo, &upload.id, None, body, len)
                .await?
                .size;
            let digest = match expected {
                Some(d) => d.clone(),
                None => {
                    let s = self.session(repo, &upload.id).await?;
                    Self::hasher_of(&s)?.finish()
                }
            };
            self.finish_upload(repo, &upload.id, &digest).await?;
            Ok((digest, size))
        }
        .await;
        if result.is_err() {
            let _ = self.cancel_upload(repo, &upload.id).await;
        }
        result
    }

    /// Remove upload sessions idle for longer than `ttl_secs`; returns how many.
    pub async fn purge_uploads(&self, ttl_secs: u64) -> Result<usize> {
        let cutoff = now() - ttl_secs as i64;
        let mut purged = 0;
        for key in self.store.list(layout::UPLOADS).await? {
            let Some(id) = key
                .strip_prefix(layout::UPLOADS)
                .and_then(|r| r.strip_suffix("/session"))
            else {
                continue;
            };
            if let Some(s) = self.read_json::<Session>(&key).await? {
                if s.updated <= cutoff {
                    self.drop_session(id).await?;
                    purged += 1;
                }
            }
        }
        purged += self.store.purge_stale(ttl_secs).await?;
        Ok(purged)
    }
}
