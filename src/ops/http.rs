//! Per-request operations plumbing: the metrics + `X-Request-Id` middleware
//! and the root span of every request (path only: query strings can carry
//! tokens, and headers are never recorded).

use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest};
use bytes::Bytes;
use futures_util::StreamExt;
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};

use super::idle_poll::InFlight;
use super::metrics::METRICS;
use crate::oci::Route;

/// The metrics route label: the `/v2` or APPR route kind, else the actix route pattern.
pub fn route_label(req: &HttpRequest) -> Cow<'static, str> {
    let path = req.path();
    if let Some(rest) = path.strip_prefix("/v2") {
        if rest.is_empty() || rest.starts_with('/') {
            return Cow::Borrowed(Route::parse(rest).map_or("v2_unknown", |r| r.label()));
        }
    }
    if let Some(r) = crate::appr::Route::parse(path) {
        return Cow::Borrowed(r.label());
    }
    Cow::Owned(
        req.match_pattern()
            .unwrap_or_else(|| "unmatched".to_string()),
    )
}

/// The route label, worked out once per request by the root span and
/// kept in the request's extensions for the metrics.
#[derive(Clone)]
struct RouteLabel(Cow<'static, str>);

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Liveness, readiness and scrape requests: logged at debug, not info.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Counts the request when dropped, which is once its response body has
/// been sent (or the connection dropped).
struct Record {
    route: Cow<'static, str>,
    method: &'static str,
    status: StatusCode,
    start: Instant,
    bytes: u64,
    /// Dropped after the metrics are recorded.
    _in_flight: InFlight,
}

impl Drop for Record {
    fn drop(&mut self) {
        let m = &*METRICS;
        m.requests
            .with_label_values(&[&*self.route, self.method, self.status.as_str()])
            .inc();
        let labels = &[&*self.route, self.method];
        m.request_duration
            .with_label_values(labels)
            .observe(self.start.elapsed().as_secs_f64());
        m.response_bytes
            .with_label_values(labels)
            .inc_by(self.bytes);
    }
}

/// A response body that counts the bytes it yields.
pub struct Counted {
    inner: BoxBody,
    record: Record,
}

impl MessageBody for Counted {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let next = Pin::new(&mut this.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            this.record.bytes += chunk.len() as u64;
        }
        next
    }
}

/// Decrements the uploads gauge when the upload request is done.
struct UploadGuard;

impl UploadGuard {
    fn start() -> Self {
        METRICS.uploads_in_progress.inc();
        UploadGuard
    }
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        METRICS.uploads_in_progress.dec();
    }
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request metrics and the `X-Request-Id` response header. Wrap it inside
/// `TracingLogger` (which assigns the id and the route label), itself inside
/// `NormalizePath`.
pub async fn track(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<Counted>, Error> {
    let in_flight = super::idle_poll::request_started();
    let start = Instant::now();
    let route = req.extensions().get::<RouteLabel>().cloned();
    let route = route.map_or_else(|| route_label(req.request()), |r| r.0);
    let method = method_label(req.method());
    let request_id = req.extensions().get::<RequestId>().copied();

    let bytes_in = METRICS.request_bytes.with_label_values(&[&*route, method]);
    let payload = req.take_payload().inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            bytes_in.inc_by(chunk.len() as u64);
        }
    });
    req.set_payload(Payload::Stream {
        payload: Box::pin(payload),
    });

    let uploading = match &*route {
        "upload_start" => method == "POST",
        "upload" => method == "PATCH" || method == "PUT",
        _ => false,
    };
    let guard = uploading.then(UploadGuard::start);
    let result = next.call(req).await;
    drop(guard);

    let mut record = Record {
        route,
        method,
        status: StatusCode::INTERNAL_SERVER_ERROR,
        start,
        bytes: 0,
        _in_flight: in_flight,
    };
    let mut res = match result {
        Ok(res) => res,
        Err(e) => {
            record.status = e.as_response_error().status_code();
            return Err(e);
        }
    };
    record.status = res.status();
    if let Some(id) = request_id {
        let mut buf = uuid::Uuid::encode_buffer();
        let id = id.hyphenated().encode_lower(&mut buf);
        if let Ok(id) = HeaderValue::from_str(id) {
            res.headers_mut().insert(X_REQUEST_ID, id);
        }
    }
    Ok(res.map_body(|_, body| Counted {
        inner: body.boxed(),
        record,
    }))
}

#[derive(Clone, Copy)]
struct Started(Instant);

/// The root span of each request: method, path (no query), route label,
/// client address and request id; status and latency are logged at the end.
pub struct RequestSpan;

macro_rules! request_span {
    ($level:expr, $req:expr, $route:expr, $id:expr) => {
        tracing::span!(
            $level,
            "request",
            method = %$req.method(),
            path = %$req.path(),
            route = %$route,
            client = %$req.connection_info().realip_remote_addr().unwrap_or(""),
            request_id = %$id,
            status = tracing::field::Empty,
            otel.name = %format!("{} {}", $req.method(), $route),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
        )
    };
}

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(req: &ServiceRequest) -> Span {
        let route = route_label(req.request());
        let id = req.extensions().get::<RequestId>().copied();
        let id = id.map(|id| *id).unwrap_or_default();
        let mut ext = req.extensions_mut();
        ext.insert(Started(Instant::now()));
        ext.insert(RouteLabel(route.clone()));
        drop(ext);
        let span = if is_probe(req.path()) {
            request_span!(tracing::Level::DEBUG, req, route, id)
        } else {
            request_span!(tracing::Level::INFO, req, route, id)
        };
        super::telemetry::link_remote_parent(req.request(), &span);
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let _entered = span.enter();
        let res = match outcome {
            Ok(res) => res,
            Err(e) => {
                span.record("otel.status_code", "ERROR");
                tracing::error!(error = %e, "request failed");
                return;
            }
        };
        let status = res.status().as_u16();
        span.record("status", status);
        let ms = res
            .request()
            .extensions()
            .get::<Started>()
            .map(|s| s.0.elapsed().as_secs_f64() * 1000.0)
            .unwrap_or_default();
        if res.status().is_server_error() {
            span.record("otel.status_code", "ERROR");
            let error = res.response().error().map(|e| e.to_string());
            tracing::error!(status, ms, error = error.as_deref(), "request failed");
        } else if is_probe(res.request().path()) {
            tracing::debug!(status, ms, "request done");
        } else {
            tracing::info!(status, ms, "request done");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn route_labels_are_bounded() {
        let label = |p: &str| route_label(&TestRequest::with_uri(p).to_http_request());
        assert_eq!(label("/v2/"), "base");
        assert_eq!(label("/v2"), "base");
        assert_eq!(label("/v2/a/b/manifests/latest"), "manifest");
        assert_eq!(label("/v2/a/blobs/uploads/"), "upload_start");
        assert_eq!(label("/v2/a/blobs/uploads/123?digest=x"), "upload");
        assert_eq!(label("/v2/a/nonsense"), "v2_unknown");
        assert_eq!(label("/anything/else"), "unmatched");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}
