//! Log output (readable text by default, JSON when asked) and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set,
//! OpenTelemetry trace export over OTLP/HTTP with protobuf bodies.
//!
//! The exporter speaks plain HTTP only (no TLS stack is linked): point it at a
//! collector next to apprd (sidecar, node agent), the usual set-up.

use std::io::IsTerminal;

use actix_web::HttpRequest;
use tracing::Span;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::config::LogFormat;

/// Flushes pending trace exports when dropped; keep it alive in `main`, and
/// drop it outside any async runtime.
pub struct Guard {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

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
    let registry = tracing_subscriber::registry().with(filter).with(logs);

    #[cfg(feature = "otel")]
    {
        let provider = otel::provider();
        let layer = provider.as_ref().map(|p| {
            use opentelemetry::trace::TracerProvider as _;
            tracing_opentelemetry::layer().with_tracer(p.tracer("apprd"))
        });
        registry.with(layer).init();
        if let Some(endpoint) = otel::endpoint() {
            tracing::info!(%endpoint, "exporting traces over OTLP/HTTP");
        }
        Guard { provider }
    }
    #[cfg(not(feature = "otel"))]
    {
        registry.init();
        if otel_endpoint_set() {
            tracing::warn!(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but this build has no `otel` feature"
            );
        }
        Guard {}
    }
}

#[cfg(not(feature = "otel"))]
fn otel_endpoint_set() -> bool {
    std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("apprd: flushing traces failed: {e}");
            }
        }
    }
}

/// Continue a caller's trace (W3C `traceparent`) when traces are exported.
pub fn link_remote_parent(req: &HttpRequest, span: &Span) {
    #[cfg(feature = "otel")]
    otel::link_remote_parent(req, span);
    #[cfg(not(feature = "otel"))]
    let _ = (req, span);
}

#[cfg(feature = "otel")]
mod otel {
    use std::sync::atomic::{AtomicBool, Ordering};

    use actix_web::HttpRequest;
    use opentelemetry::propagation::{Extractor, TextMapPropagator};
    use opentelemetry_otlp::SpanExporter;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    static ENABLED: AtomicBool = AtomicBool::new(false);

    pub fn endpoint() -> Option<String> {
        [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
    }

    /// A batch exporter when an endpoint is configured; the exporter reads the
    /// standard `OTEL_EXPORTER_OTLP_*` variables (endpoint, headers, timeout).
    pub fn provider() -> Option<SdkTracerProvider> {
        endpoint()?;
        let exporter = match SpanExporter::builder().with_http().build() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("apprd: OpenTelemetry exporter not started: {e}");
                return None;
            }
        };
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("apprd");
        }
        ENABLED.store(true, Ordering::Relaxed);
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.build())
                .build(),
        )
    }

    struct Headers<'a>(&'a actix_web::http::header::HeaderMap);

    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }

    pub fn link_remote_parent(req: &HttpRequest, span: &Span) {
        if !ENABLED.load(Ordering::Relaxed) || !req.headers().contains_key("traceparent") {
            return;
        }
        let cx = TraceContextPropagator::new().extract(&Headers(req.headers()));
        let _ = span.set_parent(cx);
    }
}
