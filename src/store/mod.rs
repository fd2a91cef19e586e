//! The object store under everything: a small, HTTP-free key/value interface
//! with streaming bodies. Backends know nothing of OCI or APPR; keys come from
//! [`layout`] only.

pub mod contract;
pub mod fs;
pub mod instrumented;
pub mod layout;
pub mod s3;

use std::io;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

/// A body of bytes that arrives or leaves piece by piece.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'static>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object not found")]
    NotFound,
    /// A conditional write lost: the object changed (or appeared) meanwhile.
    #[error("precondition failed")]
    PreconditionFailed,
    /// The staged object is not at the offset the caller expected.
    #[error("staged object is {actual} bytes, not {expected}")]
    OffsetMismatch { expected: u64, actual: u64 },
    /// The body stream failed (client went away, size limit, ...).
    #[error("body: {0}")]
    Body(io::Error),
    /// The backing store could not be reached or refused the operation.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage i/o: {0}")]
    Io(#[from] io::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// `body`, failing once it brings more than its declared `len` bytes (the
/// promise [`Backend::stage_append`] plans with).
pub fn declared(body: ByteStream, len: Option<u64>) -> ByteStream {
    let Some(len) = len else {
        return body;
    };
    let mut seen = 0u64;
    Box::pin(body.map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len() as u64;
        if seen > len {
            return Err(io::Error::other(format!(
                "body longer than its declared {len} bytes"
            )));
        }
        Ok(chunk)
    }))
}

/// What `stat` tells about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub size: u64,
    /// An opaque version tag for conditional writes.
    pub etag: String,
}

/// An inclusive byte range `start..=end` already checked against the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// Precondition of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The object must not exist (`If-None-Match: *`).
    Absent,
    /// The object must still carry this etag (`If-Match`).
    Matches(String),
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name for logs and metrics ("filesystem", "s3").
    fn name(&self) -> &'static str;

    async fn stat(&self, key: &str) -> StoreResult<Option<Meta>>;

    /// Stream an object, or the given part of it.
    async fn get(&self, key: &str, range: Option<ByteRange>) -> StoreResult<ByteStream>;

    /// Read a small object (pointers, manifests, session records) whole.
    async fn read(&self, key: &str) -> StoreResult<(Bytes, Meta)>;

    /// Write a small object whole; readers see the old or the new bytes, never a mix.
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<Meta>;

    /// Write only if `cond` holds; `PreconditionFailed` otherwise.
    async fn put_if(&self, key: &str, data: Bytes, cond: Condition) -> StoreResult<Meta>;

    /// One page of a listing: keys under `prefix` (recursively) in byte
    /// order, strictly after the key `after` when given, at most `limit` of
    /// them, reading no more of the store than the page needs.
    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<String>>;

    /// Every key under `prefix` (recursively), in byte order.
    async fn list(&self, prefix: &str) -> StoreResult<Vec<String>> {
        self.list_page(prefix, None, usize::MAX).await
    }

    /// Remove an object; removing a missing object is not an error.
    async fn delete(&self, key: &str) -> StoreResult<()>;

    /// Append a body to a staged (not yet visible) object that must currently be
    /// `offset` bytes long; a failed append leaves it at `offset`. Returns the new size.
    /// `len` is the body's length when the sender declared it (`Content-Length`):
    /// backends that cut bodies into parts plan them with it, and a body that
    /// brings more fails the append.
    async fn stage_append(
        &self,
        staged: &str,
        offset: u64,
        body: ByteStream,
        len: Option<u64>,
    ) -> StoreResult<u64>;

    /// Read a staged object back (used when a digest needs a second pass).
    async fn stage_read(&self, staged: &str) -> StoreResult<ByteStream>;

    /// Make a staged object visible at `dest` atomically, consuming the staging.
    async fn stage_commit(&self, staged: &str, dest: &str) -> StoreResult<()>;

    /// Throw a staged object away.
    async fn stage_abort(&self, staged: &str) -> StoreResult<()>;

    /// Write a streamed body to `dest` atomically (visible only once complete).
    async fn put_stream(&self, staged: &str, dest: &str, body: ByteStream) -> StoreResult<u64> {
        self.stage_abort(staged).await?;
        let size = self.stage_append(staged, 0, body, None).await?;
        self.stage_commit(staged, dest).await?;
        Ok(size)
    }

    /// Remove leftovers the backend keeps beyond upload sessions (S3: multipart
    /// uploads) idle for longer than `ttl_secs`; returns how many.
    async fn purge_stale(&self, _ttl_secs: u64) -> StoreResult<usize> {
        Ok(0)
    }

    /// A time-limited URL to read `key` directly, where the backend has one.
    async fn presign_get(&self, _key: &str) -> Option<String> {
        None
    }

    /// Cheap check that the store is reachable and writable.
    async fn check(&self) -> StoreResult<()> {
        let key = layout::health_probe();
        self.put(&key, Bytes::from_static(b"ok")).await?;
        self.delete(&key).await
    }
}
