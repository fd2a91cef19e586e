//! Running apprd as a service: liveness, readiness and metrics endpoints,
//! request metrics and spans, log and trace set-up.

pub mod http;
pub mod metrics;
pub mod telemetry;

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

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

/// Storage is reachable and writable: `Backend::check()` within [`READY_TIMEOUT`].
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store = state.registry.store();
    let error = match tokio::time::timeout(READY_TIMEOUT, store.check()).await {
        Ok(Ok(())) => {
            return HttpResponse::Ok().json(json!({ "status": "ready", "storage": store.name() }))
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("storage check took longer than {READY_TIMEOUT:?}"),
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
