//! Building the store, the app and the HTTP server from a [`Config`].

use std::sync::Arc;
use std::time::Duration;

use actix_web::{middleware, web, App, HttpServer};
use futures_util::future::BoxFuture;

use crate::config::{Config, StorageKind};
use crate::registry::Registry;
use crate::state::AppState;
use crate::store::{fs::FsBackend, s3::S3Backend, Backend};

/// A check the store must still pass; the server listens meanwhile.
type PendingCheck = BoxFuture<'static, anyhow::Result<()>>;

/// The store, and what is left to check of it. An S3 bucket is checked while
/// the server already listens: the round trip would otherwise be most of
/// apprd's start-up, and `/readyz` says when the store answers.
pub async fn open_store(
    config: &Config,
) -> anyhow::Result<(Arc<dyn Backend>, Option<PendingCheck>)> {
    match config.storage {
        StorageKind::Filesystem => Ok((Arc::new(FsBackend::open(&config.root).await?), None)),
        StorageKind::S3 => {
            let s3 = Arc::new(S3Backend::open(&config.s3).await);
            let check = s3.clone();
            Ok((
                s3,
                Some(Box::pin(async move { check.check_bucket().await })),
            ))
        }
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
    let (store, check) = open_store(&config).await?;
    let store = crate::store::instrumented::instrument(store);
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
    let idle_poll = Duration::from_micros(config.idle_poll_us);
    let server = HttpServer::new(move || {
        crate::ops::idle_poll::start(idle_poll);
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
    .run();

    // A failed check stops the server, and apprd exits with its message.
    let stop = server.handle();
    let checked = async {
        let Some(check) = check else { return Ok(()) };
        let result = check.await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "storage check failed: stopping");
            stop.stop(false).await;
        }
        result
    };
    let (served, checked) = tokio::join!(server, checked);
    checked?;
    Ok(served?)
}
