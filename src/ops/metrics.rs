//! Prometheus metrics: one registry for the process, the metric families, and
//! the text rendering served on `/metrics`.
//!
//! Labels are bounded on purpose: routes are labels, never raw paths;
//! methods outside the HTTP set become `other`.

use std::time::Duration;

use once_cell::sync::Lazy;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Latency buckets in seconds: from small manifest reads to long blob uploads.
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub request_bytes: IntCounterVec,
    pub response_bytes: IntCounterVec,
    pub uploads_in_progress: IntGauge,
    storage_ops: IntCounterVec,
    storage_errors: IntCounterVec,
    storage_duration: HistogramVec,
    s3_reads: IntCounterVec,
    s3_stats: IntCounterVec,
    s3_streams: IntCounterVec,
    /// `apprd_worker_wakeups_total`, resolved once: counted on every request
    /// that finds its worker idle. `[asleep, polling]`.
    worker_wakeups: [IntCounter; 2],
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
    let h = HistogramVec::new(opts, labels).expect("metric definition");
    r.register(Box::new(h.clone()))
        .expect("metric registered once");
    h
}

pub static METRICS: Lazy<Metrics> = Lazy::new(|| {
    let r = Registry::new();
    let route = &["route", "method"];
    let m = Metrics {
        requests: counter(
            &r,
            "apprd_http_requests_total",
            "HTTP requests answered, by route, method and status.",
            &["route", "method", "status"],
        ),
        request_duration: histogram(
            &r,
            "apprd_http_request_duration_seconds",
            "Time from request start to the last byte of the response.",
            route,
        ),
        request_bytes: counter(
            &r,
            "apprd_http_request_bytes_total",
            "Request body bytes received.",
            route,
        ),
        response_bytes: counter(
            &r,
            "apprd_http_response_bytes_total",
            "Response body bytes sent.",
            route,
        ),
        uploads_in_progress: IntGauge::new(
            "apprd_uploads_in_progress",
            "Upload requests (POST/PATCH/PUT on /v2 upload routes) whose body is still being received.",
        )
        .expect("metric definition"),
        storage_ops: counter(
            &r,
            "apprd_storage_operations_total",
            "Storage operations, by backend and operation.",
            &["backend", "operation"],
        ),
        storage_errors: counter(
            &r,
            "apprd_storage_errors_total",
            "Storage operations that failed (I/O or store unavailable).",
            &["backend", "operation"],
        ),
        storage_duration: histogram(
            &r,
            "apprd_storage_operation_duration_seconds",
            "Storage operation latency (for streamed reads: until the stream opens).",
            &["backend", "operation"],
        ),
        s3_reads: counter(
            &r,
            "apprd_s3_reads_total",
            "Whole-object S3 reads, by who sent them: apprd's direct GET, or the SDK (direct reads off, or handed back).",
            &["path"],
        ),
        s3_stats: counter(
            &r,
            "apprd_s3_stats_total",
            "S3 HEADs (stats), by who sent them: apprd's direct HEAD, or the SDK (direct off, or handed back).",
            &["path"],
        ),
        s3_streams: counter(
            &r,
            "apprd_s3_streams_total",
            "Streamed S3 reads (blobs), by who sent them: apprd's direct GET, or the SDK (direct off, or handed back).",
            &["path"],
        ),
        worker_wakeups: {
            let c = counter(
                &r,
                "apprd_worker_wakeups_total",
                "Requests that found their worker idle, by how it waited: still polling (see --idle-poll-us) or asleep.",
                &["waiting"],
            );
            ["asleep", "polling"].map(|w| c.with_label_values(&[w]))
        },
        registry: r,
    };
    m.registry
        .register(Box::new(m.uploads_in_progress.clone()))
        .expect("metric registered once");
    let info = IntGauge::with_opts(
        Opts::new("apprd_build_info", "Always 1; labels carry the version.")
            .const_label("version", env!("CARGO_PKG_VERSION")),
    )
    .expect("metric definition");
    info.set(1);
    m.registry
        .register(Box::new(info))
        .expect("metric registered once");
    // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...
    #[cfg(target_os = "linux")]
    m.registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("metric registered once");
    m
});

/// Record one storage operation.
pub fn storage_op(backend: &str, op: &str, took: Duration, failed: bool) {
    let m = &*METRICS;
    let labels = &[backend, op];
    m.storage_ops.with_label_values(labels).inc();
    m.storage_duration
        .with_label_values(labels)
        .observe(took.as_secs_f64());
    if failed {
        m.storage_errors.with_label_values(labels).inc();
    }
}

/// Record one whole-object S3 read and the path that answered it.
pub fn s3_read(path: &str) {
    METRICS.s3_reads.with_label_values(&[path]).inc();
}

/// Record one S3 stat (HEAD) and the path that answered it.
pub fn s3_stat(path: &str) {
    METRICS.s3_stats.with_label_values(&[path]).inc();
}

/// Record one streamed S3 read and the path that answered it.
pub fn s3_stream(path: &str) {
    METRICS.s3_streams.with_label_values(&[path]).inc();
}

/// Record a request that found its worker idle, and whether it was still polling.
pub fn worker_wakeup(polling: bool) {
    METRICS.worker_wakeups[usize::from(polling)].inc();
}

/// Every metric in the Prometheus text exposition format.
pub fn render() -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&METRICS.registry.gather(), &mut buf)
        .expect("text encoding cannot fail");
    String::from_utf8(buf).expect("text format is UTF-8")
}

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
