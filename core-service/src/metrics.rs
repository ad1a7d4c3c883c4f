//! The core's Prometheus metrics, the layer that counts, times and logs every RPC, and the
//! optional listener that serves them (`--metrics-listen`).
//!
//! The metrics are process-wide, as Prometheus expects of one process: every `Core` in a process
//! (tests start several) adds to the same counters.

use std::{
    collections::HashSet,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, LazyLock},
    task::{Context, Poll, ready},
    time::Instant,
};

use http_body::{Body, Frame, SizeHint};
use licensing::metrics::{
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, LATENCY_BUCKETS, Metrics,
    Registry,
};
use tonic::{
    Code,
    codegen::http::{self, HeaderMap},
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tower_service::Service;

use crate::service::Core;

pub struct CoreMetrics {
    registry: Registry,
    rpcs: IntCounterVec,
    rpc_seconds: HistogramVec,
    pub errors: IntCounterVec,
    pub argon2_computations: IntCounter,
    pub argon2_rejections: IntCounter,
    argon2_queued: IntGauge,
    pub credential_cache_hits: IntCounter,
    pub credential_cache_misses: IntCounter,
    pub warm_heartbeats: IntCounter,
    pub warm_heartbeats_stale: IntCounter,
    pub throttle_refusals: IntCounter,
    db_connections: IntGaugeVec,
    pub db_waiting: IntGauge,
    pub ping_batch_size: Histogram,
    panics: IntCounter,
}

static METRICS: LazyLock<CoreMetrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let m = Metrics(&registry);
    // Every heartbeat counts one of the two: resolved once rather than looked up per call.
    let credential_cache = m.counter_vec(
        "licensing_core_credential_cache_total",
        "Password checks of existing accounts answered from the recent-success cache (hit) or by Argon2 (miss).",
        &["result"],
    );
    let warm = m.counter_vec(
        "licensing_core_warm_heartbeats_total",
        "Heartbeats answered from a remembered sign-in (answered), or sent the full way because the app or the user had changed since (stale).",
        &["result"],
    );
    CoreMetrics {
        rpcs: m.counter_vec(
            "licensing_core_rpcs_total",
            "gRPC calls answered, by method and gRPC status code.",
            &["method", "code"],
        ),
        rpc_seconds: m.histogram_vec(
            "licensing_core_rpc_duration_seconds",
            "Time from a call's arrival to its final status, by method.",
            &["method"],
            LATENCY_BUCKETS,
        ),
        errors: m.counter_vec(
            "licensing_core_errors_total",
            "Calls refused or failed, by the stable error code clients see (ErrorInfo.reason).",
            &["reason"],
        ),
        argon2_computations: m
            .counter("licensing_core_argon2_computations_total", "Argon2 hashes and verifications started."),
        argon2_rejections: m.counter(
            "licensing_core_argon2_rejections_total",
            "Password checks refused because the Argon2 queue was full.",
        ),
        argon2_queued: m.gauge(
            "licensing_core_argon2_queue_depth",
            "Argon2 computations waiting for a worker or running now.",
        ),
        credential_cache_hits: credential_cache.with_label_values(&["hit"]),
        credential_cache_misses: credential_cache.with_label_values(&["miss"]),
        warm_heartbeats: warm.with_label_values(&["answered"]),
        warm_heartbeats_stale: warm.with_label_values(&["stale"]),
        throttle_refusals: m.counter(
            "licensing_core_throttle_refusals_total",
            "Calls refused with rate_limited by the failed-attempt throttle.",
        ),
        db_connections: m.gauge_vec(
            "licensing_core_db_connections",
            "Database connections by pool (writer, reader) and state (in_use, idle).",
            &["pool", "state"],
        ),
        db_waiting: m.gauge(
            "licensing_core_db_transactions_waiting",
            "Transactions waiting for a database connection to begin.",
        ),
        ping_batch_size: m.histogram(
            "licensing_core_ping_batch_size",
            "Heartbeat pings written per statement (the count is the number of batches).",
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
        ),
        panics: m.counter(
            "licensing_core_panics_total",
            "Calls whose handler panicked (each answered INTERNAL; the process and other calls carry on).",
        ),
        registry,
    }
});

/// The process's metrics.
pub fn metrics() -> &'static CoreMetrics {
    &METRICS
}

/// The metrics in Prometheus' text format, with the gauges read from `core` now.
pub fn render(core: &Core) -> String {
    let m = metrics();
    m.argon2_queued.set(i64::try_from(core.password_queue()).unwrap_or(i64::MAX));
    let store = core.store();
    let mut pools = vec![("writer", store.writer())];
    if store.has_separate_reader() {
        pools.push(("reader", store.reader()));
    }
    for (name, db) in pools {
        let (in_use, idle) = crate::storage::pool_usage(db);
        m.db_connections.with_label_values(&[name, "in_use"]).set(in_use);
        m.db_connections.with_label_values(&[name, "idle"]).set(idle);
    }
    licensing::metrics::render(&m.registry)
}

/// Every method the core serves, as `package.Service/Method`; anything else is counted as
/// `unknown`, so a client sending made-up paths cannot grow the label set without bound.
/// Held for the life of the process, so a call's label is a lookup, never an allocation.
static KNOWN_METHODS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    use prost::Message;
    let mut known = HashSet::new();
    for encoded in [licensing::v1::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(encoded) else { continue };
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    known.insert(intern(format!("{}.{}/{}", file.package(), service.name(), method.name())));
                }
            }
        }
    }
    for reflection in ["grpc.reflection.v1", "grpc.reflection.v1alpha"] {
        known.insert(intern(format!("{reflection}.ServerReflection/ServerReflectionInfo")));
    }
    known
});

/// Leaks a name once: the set of served methods is fixed and built once per process.
fn intern(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

fn method_label(path: &str) -> &'static str {
    let method = path.strip_prefix('/').unwrap_or(path);
    KNOWN_METHODS.get(method).copied().unwrap_or("unknown")
}

/// A status code's label: tonic's own name for it (its `Debug` form), without formatting one per
/// call.
fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// Adds [`RpcObserver`] around the core's services.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcObserverLayer;

impl<S> tower_layer::Layer<S> for RpcObserverLayer {
    type Service = RpcObserver<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcObserver { inner }
    }
}

/// Counts, times and logs each call once it has its final status: from the answer's headers
/// when the call failed at once, else from the trailers that end its body (so a stream that fails
/// midway counts as failed), or `Cancelled` when the caller went away first.
#[derive(Debug, Clone)]
pub struct RpcObserver<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcObserver<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin + Default,
{
    type Response = http::Response<Observed<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let call = Call {
            method: method_label(request.uri().path()),
            peer: peer_of(request.extensions()),
            started: Instant::now(),
        };
        let answer = std::panic::AssertUnwindSafe(self.inner.call(request));
        Box::pin(async move {
            // A bug that panics in one handler must cost that call only: tonic would otherwise
            // reset the stream and leave the caller guessing. The panic hook has already logged
            // the message and place.
            let response = match futures_util::FutureExt::catch_unwind(answer).await {
                Ok(answered) => answered?,
                Err(_) => {
                    metrics().panics.inc();
                    tracing::error!(method = %call.method, "a call panicked; answered INTERNAL");
                    let status = tonic::Status::internal("internal error");
                    call.finish(status.code());
                    let (parts, body) = status.into_http::<ResBody>().into_parts();
                    return Ok(http::Response::from_parts(parts, Observed { inner: body, call: None }));
                }
            };
            let (parts, body) = response.into_parts();
            // A call that fails before any message answers with its status in the headers
            // ("trailers only") and an empty body, which the server may never poll.
            let call = match status_in(&parts.headers) {
                Some(code) => {
                    call.finish(code);
                    None
                }
                None => Some(call),
            };
            Ok(http::Response::from_parts(parts, Observed { inner: body, call }))
        })
    }
}

fn peer_of(extensions: &http::Extensions) -> Option<SocketAddr> {
    extensions.get::<TcpConnectInfo>().and_then(TcpConnectInfo::remote_addr).or_else(|| {
        extensions.get::<TlsConnectInfo<TcpConnectInfo>>().and_then(|i| i.get_ref().remote_addr())
    })
}

fn status_in(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(Code::from_i32(value))
}

struct Call {
    method: &'static str,
    peer: Option<SocketAddr>,
    started: Instant,
}

impl Call {
    fn finish(self, code: Code) {
        let elapsed = self.started.elapsed();
        let code = code_label(code);
        let m = metrics();
        m.rpcs.with_label_values(&[self.method, code]).inc();
        m.rpc_seconds.with_label_values(&[self.method]).observe(elapsed.as_secs_f64());
        tracing::info!(
            target: "core_service::rpc",
            method = %self.method,
            code = %code,
            latency_us = elapsed.as_micros() as u64,
            peer = %self.peer.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            "rpc"
        );
    }
}

/// A response body that reports its call's final status when the trailers pass.
pub struct Observed<B> {
    inner: B,
    call: Option<Call>,
}

impl<B: Body + Unpin> Body for Observed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let code = match &frame {
            Some(Ok(frame)) => frame.trailers_ref().map(|t| status_in(t).unwrap_or(Code::Unknown)),
            Some(Err(_)) => Some(Code::Unknown),
            None => Some(Code::Unknown),
        };
        if let Some(code) = code
            && let Some(call) = self.call.take()
        {
            call.finish(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Observed<B> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.finish(Code::Cancelled);
        }
    }
}

/// Serves `GET /metrics` on `listener` until dropped (plain HTTP/1.1; keep the port internal).
pub async fn serve(listener: tokio::net::TcpListener, core: Arc<Core>) {
    use http_body_util::Full;
    use hyper::{Method, Response, StatusCode, body::Bytes, header};
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "metrics listener: accept failed");
                continue;
            }
        };
        let core = core.clone();
        let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let core = core.clone();
            async move {
                let (status, content_type, body) = match (request.method(), request.uri().path()) {
                    (&Method::GET, "/metrics") => {
                        (StatusCode::OK, licensing::metrics::CONTENT_TYPE, render(&core))
                    }
                    (_, "/metrics") => {
                        (StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET /metrics\n".into())
                    }
                    _ => (StatusCode::NOT_FOUND, "text/plain", "only GET /metrics\n".into()),
                };
                let mut response = Response::new(Full::new(Bytes::from(body)));
                *response.status_mut() = status;
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            // The timer lets hyper drop a connection that never finishes its request headers.
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new());
            if let Err(error) = builder.serve_connection(io, service).await {
                tracing::debug!(%error, "metrics connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use tower_layer::Layer;

    use super::*;

    #[test]
    fn only_served_methods_become_labels() {
        assert_eq!(
            method_label("/licensing.v1.ClientService/Heartbeat"),
            "licensing.v1.ClientService/Heartbeat"
        );
        assert_eq!(
            method_label("/licensing.v1.DeveloperService/StreamLicences"),
            "licensing.v1.DeveloperService/StreamLicences"
        );
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), "grpc.health.v1.Health/Check");
        assert_eq!(method_label("/licensing.v1.ClientService/Heartbeat2"), "unknown");
        assert_eq!(method_label("/../../etc/passwd"), "unknown");
    }

    #[test]
    fn code_labels_are_tonics_names() {
        for value in 0..=16 {
            let code = Code::from_i32(value);
            assert_eq!(code_label(code), format!("{code:?}"));
        }
    }

    #[test]
    fn a_status_is_read_from_headers_or_trailers() {
        let mut headers = HeaderMap::new();
        assert_eq!(status_in(&headers), None);
        headers.insert("grpc-status", http::HeaderValue::from_static("16"));
        assert_eq!(status_in(&headers), Some(Code::Unauthenticated));
    }

    #[tokio::test]
    async fn a_panicking_handler_costs_its_own_call_only() {
        let inner = tower_service_fn(|request: http::Request<()>| async move {
            if request.uri().path().ends_with("/Login") {
                panic!("a bug in one handler");
            }
            Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::default()))
        });
        let mut service = RpcObserverLayer.layer(inner);
        let before = metrics().panics.get();
        let call = |path: &str| http::Request::builder().uri(path).body(()).expect("request");
        let answer = service.call(call("/licensing.v1.ClientService/Login")).await.expect("answered");
        assert_eq!(status_in(answer.headers()), Some(Code::Internal));
        assert_eq!(metrics().panics.get() - before, 1);
        // The same service goes on answering.
        let answer = service.call(call("/licensing.v1.ClientService/Heartbeat")).await.expect("answered");
        assert_eq!(answer.status(), http::StatusCode::OK);
        assert_eq!(status_in(answer.headers()), None);
    }

    /// A closure as a tower service.
    fn tower_service_fn<F, Fut>(f: F) -> ServiceFn<F>
    where
        F: FnMut(http::Request<()>) -> Fut,
    {
        ServiceFn(f)
    }

    #[derive(Clone)]
    struct ServiceFn<F>(F);

    impl<F, Fut> Service<http::Request<()>> for ServiceFn<F>
    where
        F: FnMut(http::Request<()>) -> Fut,
        Fut: Future<Output = Result<http::Response<tonic::body::Body>, std::convert::Infallible>>,
    {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = Fut;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<()>) -> Fut {
            (self.0)(request)
        }
    }
}
