//! The web dashboard for app developers, under `/dashboard`: server-rendered pages over the
//! same core calls as the rest of the gateway, named by app id and authenticated by the core's
//! session token (a cookie here, `authorization: Bearer` to the core). Like the legacy API it
//! holds no state, no rules and no keys.
//!
//! One warp filter takes every `/dashboard` request; the path is matched here, in plain Rust,
//! and each page's handler lives in `pages`. Every answer, error pages and files included, leaves
//! through [`secure`], which sets the headers the page contract requires.

mod chart;
mod csv;
mod pages;
mod session;

use std::{sync::Arc, time::Instant};

use bytes::Buf;
use futures_util::{Stream, StreamExt, TryStreamExt};
use ipnet::IpNet;
use warp::{
    Filter, Rejection,
    filters::path::Tail,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    reply::Response,
};

pub use session::CookiePolicy;

use crate::{
    client_addr::client_address, core_client::CoreClient, forms::Form, listener::peer_address, metrics,
    transfer::BodyStream,
};

/// The prefix every dashboard path starts with.
pub const PREFIX: &str = "/dashboard";

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// What every page handler shares: the gateway's core client, how it treats its HTTP clients,
/// and the cookie's shape.
pub struct Dashboard {
    core: CoreClient,
    trusted_proxies: Vec<IpNet>,
    max_upload_bytes: u64,
    cookie: CookiePolicy,
}

impl Dashboard {
    pub fn new(
        core: CoreClient,
        trusted_proxies: Vec<IpNet>,
        max_upload_bytes: u64,
        cookie: CookiePolicy,
    ) -> Self {
        Dashboard { core, trusted_proxies, max_upload_bytes, cookie }
    }
}

/// One request, as the handlers see it.
pub(crate) struct Incoming {
    method: Method,
    /// The path below `/dashboard`, split on `/`, empty segments dropped.
    segments: Vec<String>,
    query: Form,
    headers: HeaderMap,
    /// The client's address as the core should count it (empty when unknown).
    address: String,
    body: BodyStream,
}

/// The dashboard's routes: every path under `/dashboard`, and nothing else (other paths are
/// rejected, so the routes after it answer them). Without a dashboard (switched off), it rejects
/// everything.
pub fn routes(
    dashboard: Option<Arc<Dashboard>>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let served = warp::any().and_then(move || {
        let dashboard = dashboard.clone();
        async move { dashboard.ok_or_else(warp::reject::not_found) }
    });
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::path("dashboard")
        .and(served)
        .and(warp::path::tail())
        .and(warp::method())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(peer_address())
        .and(warp::body::stream().map(boxed_body))
        .then(
            |dashboard: Arc<Dashboard>,
             tail: Tail,
             method: Method,
             query: String,
             headers: HeaderMap,
             peer,
             body: BodyStream| async move {
                let address = client_address(peer, &headers, &dashboard.trusted_proxies)
                    .map(|address| address.to_string())
                    .unwrap_or_default();
                let incoming = Incoming {
                    method,
                    segments: tail.as_str().split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
                    query: Form::parse_urlencoded(query.as_bytes()),
                    headers,
                    address,
                    body,
                };
                dashboard.handle(incoming).await
            },
        )
}

fn boxed_body<S, B>(body: S) -> BodyStream
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    body.map_ok(|mut buf| buf.copy_to_bytes(buf.remaining())).boxed()
}

impl Dashboard {
    async fn handle(&self, incoming: Incoming) -> Response {
        let started = Instant::now();
        let address = incoming.address.clone();
        let (action, code, response) = pages::dispatch(self, incoming).await;
        let response = secure(response);
        let latency = started.elapsed();
        metrics::request(PREFIX, action, code, latency);
        tracing::info!(
            path = PREFIX,
            action,
            code,
            http = response.status().as_u16(),
            address = %address,
            latency_ms = latency.as_millis() as u64,
            "request"
        );
        response
    }
}

/// Adds the headers every dashboard answer carries.
fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A bare answer of the given status (the handlers fill in the rest).
fn empty(status: StatusCode) -> Response {
    let mut response = Response::new("".into());
    *response.status_mut() = status;
    response
}
