//! Building the store, the app and the HTTP server from a [`Config`].

use std::sync::Arc;
use std::time::Duration;

use actix_web::{middleware, web, App, HttpServer};

use crate::config::{Config, StorageKind};
use crate::registry::Registry;
use crate::state::AppState;
use crate::store::{fs::FsBackend, s3::S3Backend, Backend};

pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Backend>> {
    match config.storage {
        StorageKind::Filesystem => Ok(Arc::new(FsBackend::open(&config.root).await?)),
        StorageKind::S3 => Ok(Arc::new(S3Backend::connect(&config.s3).await?)),
    }
}

/// Register every API on an actix app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    crate::ops::configure(cfg);
    crate::oci::configure(cfg);
    crate::appr::configure(cfg);
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let store = crate::store::instrumented::instrument(open_store(&config).await?);
    let registry = Registry::new(store, config.max_manifest_size);
    let state = web::Data::new(AppState::new(config.clone(), registry.clone()));

    let ttl = config.upload_ttl_secs;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs((ttl / 4).clamp(60, 3600)));
        loop {
            tick.tick().await;
            match registry.purge_uploads(ttl).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "purged stale upload sessions"),
                Err(e) => tracing::warn!(error = %e, "upload purge failed"),
            }
        }
    });

    tracing::info!(listen = %config.listen, storage = ?config.storage, "apprd listening");
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(middleware::from_fn(crate::ops::http::track))
            .wrap(tracing_actix_web::TracingLogger::<
                crate::ops::http::RequestSpan,
            >::new())
            .wrap(middleware::NormalizePath::new(
                middleware::TrailingSlash::MergeOnly,
            ))
            .configure(configure)
    })
    .shutdown_timeout(config.shutdown_grace_secs)
    .bind(config.listen)?
    .run()
    .await?;
    Ok(())
}
