//! Blobs: stored once globally by digest, readable by a repository only
//! through a link (pushed or mounted into it).

use bytes::Bytes;

use super::{Error, Registry, Result};
use crate::digest::Digest;
use crate::store::{layout, ByteRange, ByteStream};

impl Registry {
    pub(crate) async fn link_blob(&self, repo: &str, digest: &Digest) -> Result<()> {
        self.put_once(&layout::blob_link(repo, digest), Bytes::new())
            .await
    }

    /// Store a small blob (a config) given whole, in one atomic write
    /// instead of an upload session, and link it into `repo`.
    pub async fn put_small_blob(&self, repo: &str, data: Bytes) -> Result<Digest> {
        self.check_repo(repo)?;
        let digest = Digest::sha256_of(&data);
        self.store_whole_blob(repo, &digest, data).await?;
        Ok(digest)
    }

    /// Write bytes already checked against `digest` as that blob, in one
    /// atomic put, and link it into `repo`.
    pub(crate) async fn store_whole_blob(
        &self,
        repo: &str,
        digest: &Digest,
        data: Bytes,
    ) -> Result<()> {
        self.put_once(&layout::blob(digest), data).await?;
        self.link_blob(repo, digest).await
    }

    /// Size of a blob `repo` may read.
    pub async fn stat_blob(&self, repo: &str, digest: &Digest) -> Result<u64> {
        self.check_repo(repo)?;
        // Both at once: on S3 each is a round trip.
        let (link_key, blob_key) = (layout::blob_link(repo, digest), layout::blob(digest));
        let (link, blob) =
            tokio::try_join!(self.store.stat(&link_key), self.store.stat(&blob_key))?;
        match (link, blob) {
            (Some(_), Some(m)) => Ok(m.size),
            _ => Err(Error::BlobUnknown(digest.clone())),
        }
    }

    /// Stream a blob (or part of it); call [`Registry::stat_blob`] first.
    pub async fn open_blob(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream> {
        Ok(self.store.get(&layout::blob(digest), range).await?)
    }

    /// The storage key of a blob, for backends that can hand out direct URLs.
    pub fn blob_key(&self, digest: &Digest) -> String {
        layout::blob(digest)
    }

    /// Unlink a blob from `repo`. The bytes stay for other repositories.
    pub async fn delete_blob(&self, repo: &str, digest: &Digest) -> Result<()> {
        self.stat_blob(repo, digest).await?;
        self.store.delete(&layout::blob_link(repo, digest)).await?;
        Ok(())
    }

    /// Whether `repo` may read the blob. Blobs are never deleted (only their
    /// links are) and a link is written only after its blob, so the link
    /// alone answers: one store request where [`Registry::stat_blob`] needs two.
    pub(crate) async fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        Ok(self
            .store
            .stat(&layout::blob_link(repo, digest))
            .await?
            .is_some())
    }

    /// Make a blob readable in `repo` without uploading it again. With `from`,
    /// the blob must be readable there; without, it must exist anywhere.
    /// Returns false when there is nothing to mount.
    pub async fn mount_blob(
        &self,
        repo: &str,
        digest: &Digest,
        from: Option<&str>,
    ) -> Result<bool> {
        self.check_repo(repo)?;
        let source_ok = match from {
            Some(from) if super::names::valid_repo(from) => self.has_blob(from, digest).await?,
            Some(_) => false,
            None => self.store.stat(&layout::blob(digest)).await?.is_some(),
        };
        if !source_ok {
            return Ok(false);
        }
        // Written without a stat first: clients HEAD a blob in the target
        // before they ask to mount it, so the link is almost never there yet.
        self.store
            .put(&layout::blob_link(repo, digest), Bytes::new())
            .await?;
        Ok(true)
    }
}
