//! The OCI registry core over a [`Backend`]: blobs, upload sessions,
//! manifests, tags, referrers and the catalog. Knows nothing of HTTP.

mod blobs;
mod error;
mod manifests;
pub mod names;
mod uploads;

use crate::digest::Digest;
use std::sync::Arc;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

pub use error::{BodyTooLarge, Error, Result};
pub use manifests::{media, ManifestInfo, PutManifest, Referrer};
pub use names::Reference;
pub use uploads::{Upload, SMALL_BLOB};

use crate::store::{layout, Backend, StoreError};

#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Backend>,
    max_manifest_size: usize,
    /// Manifest bytes by digest. Content-addressed bytes never change, so
    /// every replica may keep them; whether a repository still holds a
    /// manifest is always read from the store, never from here.
    manifest_cache: Arc<quick_cache::sync::Cache<Digest, Bytes, ByteWeight>>,
    /// Repositories whose catalog marker is known to be written. Markers are
    /// never deleted, so what one replica saw stays true for all of them.
    marked: Arc<quick_cache::sync::Cache<String, ()>>,
}

/// Bytes the manifest cache may hold.
const MANIFEST_CACHE_BYTES: u64 = 16 << 20;
/// Repository names the marker cache may hold.
const MARKED_REPOS: usize = 65_536;

#[derive(Clone)]
struct ByteWeight;

impl quick_cache::Weighter<Digest, Bytes> for ByteWeight {
    fn weight(&self, _key: &Digest, value: &Bytes) -> u64 {
        value.len() as u64 + 64
    }
}

/// One page of a sorted listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<String>,
    /// Set when more items follow; the next page starts after this one.
    pub next_last: Option<String>,
}

/// How many entries to read for a page of `n`: one more tells whether
/// another page follows.
pub(crate) fn page_limit(n: Option<usize>) -> usize {
    n.map_or(usize::MAX, |n| n.saturating_add(1))
}

/// A page of `n` from entries already in order and past `last`, read with
/// [`page_limit`].
pub(crate) fn page_of(mut items: Vec<String>, n: Option<usize>) -> Page {
    match n {
        Some(n) if n < items.len() => {
            items.truncate(n);
            let next_last = if n == 0 { None } else { items.last().cloned() };
            Page { items, next_last }
        }
        _ => Page {
            items,
            next_last: None,
        },
    }
}

impl Registry {
    pub fn new(store: Arc<dyn Backend>, max_manifest_size: usize) -> Self {
        Registry {
            store,
            max_manifest_size,
            manifest_cache: Arc::new(quick_cache::sync::Cache::with_weighter(
                4096,
                MANIFEST_CACHE_BYTES,
                ByteWeight,
            )),
            marked: Arc::new(quick_cache::sync::Cache::new(MARKED_REPOS)),
        }
    }

    pub fn store(&self) -> &Arc<dyn Backend> {
        &self.store
    }

    pub fn max_manifest_size(&self) -> usize {
        self.max_manifest_size
    }

    pub fn check_repo(&self, repo: &str) -> Result<()> {
        if names::valid_repo(repo) {
            Ok(())
        } else {
            Err(Error::NameInvalid(repo.to_string()))
        }
    }

    /// Whether anything was ever pushed to `repo`.
    pub async fn repo_exists(&self, repo: &str) -> Result<bool> {
        Ok(self
            .store
            .stat(&layout::catalog_marker(repo))
            .await?
            .is_some())
    }

    async fn mark_repo(&self, repo: &str) -> Result<()> {
        if self.marked.get(repo).is_none() {
            self.put_once(&layout::catalog_marker(repo), Bytes::new())
                .await?;
            self.marked.insert(repo.to_string(), ());
        }
        Ok(())
    }

    /// Write an object whose bytes never change (content-addressed bytes,
    /// links, markers), unless it is already there: a stat costs less than
    /// a write, and the bytes would be the same.
    async fn put_once(&self, key: &str, data: Bytes) -> Result<()> {
        if self.store.stat(key).await?.is_none() {
            self.store.put(key, data).await?;
        }
        Ok(())
    }

    /// Repository names, paginated, in the order of their keys (names with a
    /// "/" appended, as Distribution walks them: "a", "a/b", "a-b"). Only the
    /// page asked for is read.
    pub async fn catalog(&self, n: Option<usize>, last: Option<&str>) -> Result<Page> {
        let after = last.map(layout::catalog_marker);
        let keys = self
            .store
            .list_page(layout::CATALOG, after.as_deref(), page_limit(n))
            .await?;
        let repos = keys
            .iter()
            .filter_map(|k| layout::catalog_repo(k))
            .map(str::to_string)
            .collect();
        Ok(page_of(repos, n))
    }

    async fn read_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.store.read(key).await {
            Ok((bytes, _)) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::Store(StoreError::Io(std::io::Error::other(format!(
                    "corrupt record {key}: {e}"
                ))))
            }),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn write_json<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).expect("records serialize");
        self.store.put(key, Bytes::from(bytes)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{page_limit, page_of};

    #[test]
    fn pagination() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(page_limit(Some(2)), 3);
        let p = page_of(v(&["a", "b", "c"]), Some(2));
        assert_eq!(p.items, v(&["a", "b"]));
        assert_eq!(p.next_last.as_deref(), Some("b"));
        let p = page_of(v(&["c"]), Some(2));
        assert_eq!((p.items, p.next_last), (v(&["c"]), None));
        let p = page_of(v(&["a"]), Some(0));
        assert!(p.items.is_empty() && p.next_last.is_none());
        let p = page_of(v(&["a", "b"]), None);
        assert_eq!((p.items.len(), p.next_last), (2, None));
    }
}

#[cfg(test)]
mod session_tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use futures_util::stream;

    use super::Registry;
    use crate::digest::Digest;
    use crate::store::{fs::FsBackend, ByteStream};

    fn body(data: &'static [u8]) -> ByteStream {
        Box::pin(stream::iter(vec![Ok(Bytes::from_static(data))]))
    }

    #[tokio::test]
    async fn an_upload_continues_on_another_instance_and_stale_ones_are_purged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FsBackend::open(dir.path()).await.unwrap());
        let a = Registry::new(store.clone(), 4 << 20);
        let b = Registry::new(store, 4 << 20);
        let up = a.start_upload("r", None).await.unwrap();
        a.append_upload("r", &up.id, Some((0, 2)), body(b"abc"), None)
            .await
            .unwrap();
        // the hash state travels in the session record
        b.append_upload("r", &up.id, Some((3, 5)), body(b"def"), None)
            .await
            .unwrap();
        b.finish_upload("r", &up.id, &Digest::sha256_of(b"abcdef"))
            .await
            .unwrap();
        assert_eq!(
            a.stat_blob("r", &Digest::sha256_of(b"abcdef"))
                .await
                .unwrap(),
            6
        );

        let stale = a.start_upload("r", None).await.unwrap();
        a.append_upload("r", &stale.id, None, body(b"zz"), None)
            .await
            .unwrap();
        assert_eq!(a.purge_uploads(3600).await.unwrap(), 0);
        assert_eq!(a.purge_uploads(0).await.unwrap(), 1);
        assert!(a.upload_status("r", &stale.id).await.is_err());
        assert!(a.store().list("uploads/").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_session_that_lost_its_bytes_does_not_commit() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(
            Arc::new(FsBackend::open(dir.path()).await.unwrap()),
            4 << 20,
        );
        let up = reg.start_upload("r", None).await.unwrap();
        reg.append_upload("r", &up.id, None, body(b"abc"), None)
            .await
            .unwrap();
        reg.store()
            .stage_abort(&crate::store::layout::upload_data(&up.id))
            .await
            .unwrap();
        let d = Digest::sha256_of(b"abc");
        assert!(reg.finish_upload("r", &up.id, &d).await.is_err());
        assert!(reg.stat_blob("r", &d).await.is_err());
        assert!(reg
            .store()
            .stat(&crate::store::layout::blob(&d))
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn a_tag_resolves_in_one_read_and_older_records_still_resolve() {
        use crate::registry::{PutManifest, Reference};
        use crate::store::layout;
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(
            Arc::new(FsBackend::open(dir.path()).await.unwrap()),
            4 << 20,
        );
        let body = Bytes::from_static(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
        );
        let tag = Reference::Tag("v1".into());
        let info = reg
            .put_manifest(PutManifest {
                repo: "r",
                reference: &tag,
                content_type: None,
                body: body.clone(),
                tags: &[],
            })
            .await
            .unwrap();
        assert_eq!(reg.stat_manifest("r", &tag).await.unwrap(), info);
        // The record alone answers: with the revision gone the tag still
        // resolves (deletes remove tags first, so this only shows one read).
        let link = layout::manifest_link("r", &info.digest);
        let revision = reg.store().read(&link).await.unwrap().0;
        reg.store().delete(&link).await.unwrap();
        assert_eq!(reg.stat_manifest("r", &tag).await.unwrap(), info);
        // A record written before tags carried the facts falls back to the revision.
        reg.store().put(&link, revision).await.unwrap();
        let legacy = format!(r#"{{"digest":"{}"}}"#, info.digest);
        reg.store()
            .put(&layout::tag("r", "v1"), Bytes::from(legacy))
            .await
            .unwrap();
        assert_eq!(reg.stat_manifest("r", &tag).await.unwrap(), info);
        // Deleting the manifest removes the tag with it.
        reg.delete_manifest("r", &Reference::Digest(info.digest.clone()))
            .await
            .unwrap();
        assert!(reg.stat_manifest("r", &tag).await.is_err());
        assert_eq!(reg.manifest_bytes(&info).await.unwrap(), body);
    }
}
