//! A [`Backend`] decorator that counts and times every storage operation, so
//! the backends themselves stay free of metrics code.
//!
//! Errors counted are failures of the store (`Io`, `Unavailable`); `NotFound`,
//! failed preconditions, offset mismatches and broken client bodies are normal
//! outcomes of a registry and are not. For streaming reads (`get`,
//! `stage_read`) the latency is the time to open the stream.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Backend, ByteRange, ByteStream, Condition, Meta, StoreError, StoreResult};
use crate::ops::metrics;

pub struct Instrumented {
    inner: Arc<dyn Backend>,
}

/// Wrap `inner` so that its operations show in `/metrics`.
pub fn instrument(inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
    Arc::new(Instrumented { inner })
}

impl Instrumented {
    async fn timed<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let start = Instant::now();
        let result = fut.await;
        let failed = matches!(
            result,
            Err(StoreError::Io(_)) | Err(StoreError::Unavailable(_))
        );
        metrics::storage_op(self.inner.name(), op, start.elapsed(), failed);
        result
    }
}

#[async_trait]
impl Backend for Instrumented {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn stat(&self, key: &str) -> StoreResult<Option<Meta>> {
        self.timed("stat", self.inner.stat(key)).await
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> StoreResult<ByteStream> {
        self.timed("get", self.inner.get(key, range)).await
    }

    async fn read(&self, key: &str) -> StoreResult<(Bytes, Meta)> {
        self.timed("read", self.inner.read(key)).await
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<Meta> {
        self.timed("put", self.inner.put(key, data)).await
    }

    async fn put_if(&self, key: &str, data: Bytes, cond: Condition) -> StoreResult<Meta> {
        self.timed("put_if", self.inner.put_if(key, data, cond))
            .await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<String>> {
        self.timed("list", self.inner.list(prefix)).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        self.timed("list", self.inner.list_page(prefix, after, limit))
            .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.timed("delete", self.inner.delete(key)).await
    }

    async fn stage_append(
        &self,
        staged: &str,
        offset: u64,
        body: ByteStream,
        len: Option<u64>,
    ) -> StoreResult<u64> {
        self.timed(
            "stage_append",
            self.inner.stage_append(staged, offset, body, len),
        )
        .await
    }

    async fn stage_read(&self, staged: &str) -> StoreResult<ByteStream> {
        self.timed("stage_read", self.inner.stage_read(staged))
            .await
    }

    async fn stage_commit(&self, staged: &str, dest: &str) -> StoreResult<()> {
        self.timed("stage_commit", self.inner.stage_commit(staged, dest))
            .await
    }

    async fn stage_abort(&self, staged: &str) -> StoreResult<()> {
        self.timed("stage_abort", self.inner.stage_abort(staged))
            .await
    }

    // Forwarded (not left to the trait defaults) so that a backend's own
    // version of these is what runs.
    async fn put_stream(&self, staged: &str, dest: &str, body: ByteStream) -> StoreResult<u64> {
        self.timed("put_stream", self.inner.put_stream(staged, dest, body))
            .await
    }

    async fn presign_get(&self, key: &str) -> Option<String> {
        self.inner.presign_get(key).await
    }

    async fn purge_stale(&self, ttl_secs: u64) -> StoreResult<usize> {
        self.timed("purge_stale", self.inner.purge_stale(ttl_secs))
            .await
    }

    async fn check(&self) -> StoreResult<()> {
        self.timed("check", self.inner.check()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fs::FsBackend;

    fn async_fns(source: &str) -> Vec<&str> {
        source
            .split("async fn ")
            .skip(1)
            .filter_map(|rest| rest.split('(').next())
            .collect()
    }

    /// A trait method left to its default here would bypass the backend's own
    /// version: every method of `Backend` must be forwarded.
    #[test]
    fn forwards_every_backend_method() {
        let tr = include_str!("mod.rs");
        let tr = &tr[tr.find("pub trait Backend").unwrap()..];
        let tr = &tr[..tr.find("\n}\n").unwrap()];
        let here = include_str!("instrumented.rs");
        let here = &here[here.find("impl Backend for Instrumented").unwrap()..];
        let forwarded = async_fns(here);
        for name in async_fns(tr) {
            assert!(
                forwarded.contains(&name),
                "Instrumented does not forward {name}"
            );
        }
    }

    #[tokio::test]
    async fn passes_the_contract_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = instrument(Arc::new(FsBackend::open(dir.path()).await.unwrap()));
        crate::store::contract::run(store.as_ref(), "instrumented").await;
        let text = metrics::render();
        assert!(
            text.contains(
                r#"apprd_storage_operations_total{backend="filesystem",operation="put"}"#
            ),
            "{text}"
        );
    }
}
