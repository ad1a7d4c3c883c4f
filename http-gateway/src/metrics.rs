//! The gateway's Prometheus metrics, served at `GET /metrics`. Process-wide, as Prometheus
//! expects of one process.

use std::{sync::LazyLock, time::Duration};

use licensing::metrics::{
    HistogramVec, IntCounter, IntCounterVec, IntGauge, LATENCY_BUCKETS, Metrics, Registry,
};
use tonic::Code;

pub struct GatewayMetrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    bytes_streamed: IntCounterVec,
    core_in_flight: IntGauge,
    core_unavailable: IntCounter,
}

static METRICS: LazyLock<GatewayMetrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let m = Metrics(&registry);
    GatewayMetrics {
        requests: m.counter_vec(
            "licensing_gateway_requests_total",
            "API and dashboard requests answered, by path, action (- when none was recognised) and outcome code (success or the error code).",
            &["path", "action", "code"],
        ),
        request_seconds: m.histogram_vec(
            "licensing_gateway_request_duration_seconds",
            "Time from a request's arrival to its answer's headers, by path and action.",
            &["path", "action"],
            LATENCY_BUCKETS,
        ),
        bytes_streamed: m.counter_vec(
            "licensing_gateway_bytes_streamed_total",
            "Bytes streamed between clients and the core: download (file bytes sent), upload (file bytes received), listing (JSON bytes of get_licences and get_users, CSV bytes of the dashboard's licence export).",
            &["kind"],
        ),
        core_in_flight: m.gauge(
            "licensing_gateway_core_calls_in_flight",
            "Calls to the core waiting for its answer now.",
        ),
        core_unavailable: m.counter(
            "licensing_gateway_core_unavailable_total",
            "Calls to the core that ended UNAVAILABLE or DEADLINE_EXCEEDED: the core unreachable or too slow, or itself short of its database or of Argon2 capacity.",
        ),
        registry,
    }
});

fn metrics() -> &'static GatewayMetrics {
    &METRICS
}

/// The metrics in Prometheus' text format.
pub fn render() -> String {
    licensing::metrics::render(&metrics().registry)
}

/// Counts one answered API request.
pub fn request(path: &str, action: &str, code: &str, latency: Duration) {
    let m = metrics();
    m.requests.with_label_values(&[path, action, code]).inc();
    m.request_seconds.with_label_values(&[path, action]).observe(latency.as_secs_f64());
}

#[derive(Debug, Clone, Copy)]
pub enum Stream {
    Download,
    Upload,
    Listing,
}

pub fn streamed(kind: Stream, bytes: usize) {
    let label = match kind {
        Stream::Download => "download",
        Stream::Upload => "upload",
        Stream::Listing => "listing",
    };
    metrics().bytes_streamed.with_label_values(&[label]).inc_by(bytes as u64);
}

/// Counts a core call as in flight for as long as it lives.
pub struct CoreCall(());

impl CoreCall {
    pub fn start() -> Self {
        metrics().core_in_flight.inc();
        CoreCall(())
    }
}

impl Drop for CoreCall {
    fn drop(&mut self) {
        metrics().core_in_flight.dec();
    }
}

/// Counts a failed core call when the core was not there to answer it (rather than refusing it).
pub fn core_failed(code: Code) {
    if matches!(code, Code::Unavailable | Code::DeadlineExceeded) {
        metrics().core_unavailable.inc();
    }
}
