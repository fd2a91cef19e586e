//! Running apprd as a service: liveness, readiness and metrics endpoints,
//! request metrics and spans, log and trace set-up.

pub mod http;
pub mod idle_poll;
pub mod metrics;
pub mod telemetry;

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;
use crate::store::Backend;

/// How long `/readyz` waits for the storage check before answering 503.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(scrape));
}

/// The process is up and serving HTTP; says nothing about storage.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Run the store's own check, failing it when it takes longer than `limit`.
async fn probe(store: &dyn Backend, limit: Duration) -> Result<(), String> {
    match tokio::time::timeout(limit, store.check()).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("storage check took longer than {limit:?}")),
    }
}

/// Storage is reachable and writable: `Backend::check()` within [`READY_TIMEOUT`].
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store = state.registry.store();
    let Err(error) = probe(store.as_ref(), READY_TIMEOUT).await else {
        return HttpResponse::Ok().json(json!({ "status": "ready", "storage": store.name() }));
    };
    tracing::warn!(storage = store.name(), %error, "not ready");
    HttpResponse::ServiceUnavailable().json(json!({
        "status": "not ready",
        "storage": store.name(),
        "error": error,
    }))
}

async fn scrape() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(metrics::render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ByteRange, ByteStream, Condition, Meta, StoreResult};
    use async_trait::async_trait;
    use bytes::Bytes;

    /// A store whose check never finishes (an S3 endpoint that hangs).
    struct Hanging;

    #[async_trait]
    impl Backend for Hanging {
        fn name(&self) -> &'static str {
            "hanging"
        }
        async fn check(&self) -> StoreResult<()> {
            std::future::pending().await
        }
        async fn stat(&self, _: &str) -> StoreResult<Option<Meta>> {
            unreachable!()
        }
        async fn get(&self, _: &str, _: Option<ByteRange>) -> StoreResult<ByteStream> {
            unreachable!()
        }
        async fn read(&self, _: &str) -> StoreResult<(Bytes, Meta)> {
            unreachable!()
        }
        async fn put(&self, _: &str, _: Bytes) -> StoreResult<Meta> {
            unreachable!()
        }
        async fn put_if(&self, _: &str, _: Bytes, _: Condition) -> StoreResult<Meta> {
            unreachable!()
        }
        async fn list_page(&self, _: &str, _: Option<&str>, _: usize) -> StoreResult<Vec<String>> {
            unreachable!()
        }
        async fn delete(&self, _: &str) -> StoreResult<()> {
            unreachable!()
        }
        async fn stage_append(
            &self,
            _: &str,
            _: u64,
            _: ByteStream,
            _: Option<u64>,
        ) -> StoreResult<u64> {
            unreachable!()
        }
        async fn stage_read(&self, _: &str) -> StoreResult<ByteStream> {
            unreachable!()
        }
        async fn stage_commit(&self, _: &str, _: &str) -> StoreResult<()> {
            unreachable!()
        }
        async fn stage_abort(&self, _: &str) -> StoreResult<()> {
            unreachable!()
        }
    }

    #[tokio::test]
    async fn readiness_check_is_bounded() {
        let start = std::time::Instant::now();
        let err = probe(&Hanging, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(err.contains("longer than"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
