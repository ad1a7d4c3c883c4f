//! Building and running the gateway: `Gateway::build` binds, `run_until_stopped` serves.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    path::Path,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use licensing::v1::{
    client_service_client::ClientServiceClient, developer_service_client::DeveloperServiceClient,
};
use tokio::{net::TcpListener, sync::watch};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self, ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use warp::{Filter, http::Request};

use crate::{
    config::{GatewayConfig, TlsFiles, normalise_core_url},
    routes::{State, routes},
};

/// How long dialling a core may take before the call is answered `unavailable`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 pings that notice a core gone silent (e.g. a host that vanished without a reset).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CORES: usize = 1024;
/// A client that connects but never finishes the TLS handshake must not hold a connection.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    InvalidCoreUrl(String),
    #[error("no core URL configured")]
    NoCoreUrl,
    #[error("{0}")]
    Tls(String),
}

/// A bound, ready-to-run gateway.
pub struct Gateway {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<State>,
    shutdown_grace: Duration,
    /// `Some` serves HTTPS.
    tls: Option<TlsAcceptor>,
    limits: ClientLimits,
}

/// What one client, or a crowd of slow ones, may hold.
#[derive(Debug, Clone, Copy)]
struct ClientLimits {
    max_connections: usize,
    header_read_timeout: Duration,
}

impl Gateway {
    /// Binds the listener and prepares the core's clients. The core need not be up: connections
    /// are made on first use and remade after a failure.
    pub async fn build(config: GatewayConfig) -> Result<Gateway, StartupError> {
        let core_tls = config
            .core_ca
            .as_deref()
            .map(|ca| core_tls_config(ca, config.core_client_identity.as_ref()))
            .transpose()?;
        if core_tls.is_some() && !config.core_urls.iter().any(|url| is_https(url)) {
            tracing::warn!(
                "--core-ca is set but no core URL is https://: the cores are called in plain text"
            );
        }
        let channel = core_channel(&config.core_urls, core_tls.as_ref())?;
        // Unusable certificate files are reported before the port is taken.
        let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartupError::Bind { addr: config.listen, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| StartupError::Bind { addr: config.listen, source })?;
        // Accepted sockets inherit TCP_NODELAY from the listener (Linux): warp gives no hook to
        // set it per connection, and with Nagle on a reply written in two pieces can wait for the
        // client's delayed ACK.
        if let Err(error) = socket2::SockRef::from(&listener).set_tcp_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on the listener");
        }
        let state = State {
            client: ClientServiceClient::new(channel.clone()),
            developer: DeveloperServiceClient::new(channel.clone()),
            health: tonic_health::pb::health_client::HealthClient::new(channel),
            trusted_proxies: config.trusted_proxies,
            max_upload_bytes: config.max_upload_bytes,
            core_timeout: config.core_timeout,
            gateway_credential: config.gateway_credential,
        };
        Ok(Gateway {
            listener,
            local_addr,
            state: Arc::new(state),
            shutdown_grace: config.shutdown_grace,
            tls,
            limits: ClientLimits {
                max_connections: config.max_connections.max(1),
                header_read_timeout: config.header_read_timeout,
            },
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether the gateway serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight requests finish
    /// within the grace time.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let mut server_stop = stop_rx.clone();
        let stopping = async move {
            let _ = server_stop.wait_for(|stop| *stop).await;
            tracing::info!("shutting down: finishing in-flight requests");
        };
        let server = serve(self.listener, self.tls, self.state, stopping, self.limits);
        let grace = self.shutdown_grace;
        let mut deadline_stop = stop_rx;
        let deadline = async move {
            let _ = deadline_stop.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            () = server => tracing::info!("stopped"),
            () = deadline => tracing::warn!(?grace, "grace time over: dropping unfinished requests"),
        }
        Ok(())
    }
}

/// The TCP peer of a request on an HTTPS connection. warp records the peer of the connections it
/// accepts itself in a marker only warp can set; connections accepted here carry this one instead.
#[derive(Debug, Clone, Copy)]
struct PeerAddr(SocketAddr);

/// The TCP peer of the request, whether the connection is plain or TLS.
pub(crate) fn peer_address() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<PeerAddr>()
        .and(warp::addr::remote())
        .map(|tls: Option<PeerAddr>, plain: Option<SocketAddr>| tls.map(|PeerAddr(peer)| peer).or(plain))
}

/// Adds the connection's peer to each request it carries.
#[derive(Clone)]
struct WithPeer<S> {
    inner: S,
    peer: SocketAddr,
}

impl<S, B> tower_service::Service<Request<B>> for WithPeer<S>
where
    S: tower_service::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        request.extensions_mut().insert(PeerAddr(self.peer));
        self.inner.call(request)
    }
}

/// warp's graceful runner, with what it lacks: a TLS handshake between accepting and serving
/// (warp 0.4 has no TLS listener), a bound on open connections, and a deadline for request
/// headers (without one, a client that trickles a byte a second holds its connection forever).
async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
    stopping: impl Future<Output = ()>,
    limits: ClientLimits,
) {
    let service = warp::service(routes(state));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    // An HTTP/2 client that vanishes without closing is noticed by its unanswered pings.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    let builder = Arc::new(builder);
    let mut stopping = std::pin::pin!(stopping);
    loop {
        // A free slot first: at the limit, new clients wait in the kernel's listen queue.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut stopping => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut stopping => break,
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        let builder = builder.clone();
        let service = TowerToHyperService::new(WithPeer { inner: service.clone(), peer });
        // Taken before the handshake, so shutdown also waits for connections still shaking hands.
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let Some(acceptor) = tls else {
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                if let Err(error) = watcher.watch(connection).await {
                    tracing::debug!(%peer, %error, "HTTP connection ended with an error");
                }
                return;
            };
            let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "HTTPS connection ended with an error");
            }
        });
    }
    // Closing the listener first: new clients are refused while the others finish.
    drop(listener);
    graceful.shutdown().await;
}

/// As warp does: a failed accept of one client is nothing; anything else (e.g. out of file
/// descriptors) is logged, and accepting pauses so the loop does not spin.
async fn accept_failed(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The HTTPS identity, checked now so each kind of mistake is one line naming the file.
fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, StartupError> {
    let cert = read_pem(&files.cert, "TLS certificate")?;
    let key = read_pem(&files.key, "TLS key")?;
    let chain = certificates(&cert, &files.cert, "TLS certificate")?;
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|error| {
        StartupError::Tls(format!(
            "invalid TLS key {}: no usable PEM private key ({error})",
            files.key.display()
        ))
    })?;
    // The provider is named rather than taken from the process default, which another crate
    // could have left unset or ambiguous.
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|error| {
            let reason = match error {
                // rustls words this one for its own developers ("keys may not be consistent").
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                    "the key does not belong to the certificate".to_owned()
                }
                other => other.to_string(),
            };
            StartupError::Tls(format!(
                "cannot serve TLS with {} and {}: {reason}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The CAs trusted for `https://` cores, and the client certificate shown to them, if any.
fn core_tls_config(path: &Path, identity: Option<&TlsFiles>) -> Result<ClientTlsConfig, StartupError> {
    let pem = read_pem(path, "core CA bundle")?;
    certificates(&pem, path, "core CA bundle")?;
    let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
    let Some(files) = identity else { return Ok(config) };
    let cert = read_pem(&files.cert, "core client certificate")?;
    certificates(&cert, &files.cert, "core client certificate")?;
    let key = read_pem(&files.key, "core client key")?;
    PrivateKeyDer::from_pem_slice(&key).map_err(|error| {
        StartupError::Tls(format!(
            "invalid core client key {}: no usable PEM private key ({error})",
            files.key.display()
        ))
    })?;
    Ok(config.identity(tonic::transport::Identity::from_pem(cert, key)))
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, StartupError> {
    std::fs::read(path)
        .map_err(|error| StartupError::Tls(format!("cannot read the {what} {}: {error}", path.display())))
}

fn certificates(pem: &[u8], path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, StartupError> {
    let invalid = |reason: String| StartupError::Tls(format!("invalid {what} {}: {reason}", path.display()));
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(error.to_string()))?;
    if chain.is_empty() {
        return Err(invalid("no PEM CERTIFICATE block".into()));
    }
    Ok(chain)
}

fn core_endpoint(url: &str, tls: Option<&ClientTlsConfig>) -> Result<Endpoint, StartupError> {
    let url = normalise_core_url(url).map_err(StartupError::InvalidCoreUrl)?;
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|error| StartupError::InvalidCoreUrl(format!("invalid core URL `{url}`: {error}")))?;
    if is_https(&url) {
        // No system roots are compiled in: a TLS core is trusted only through the CA given.
        let tls = tls.ok_or_else(|| {
            StartupError::InvalidCoreUrl(format!(
                "core URL `{url}` needs --core-ca (GATEWAY_CORE_CA), the CA that signs the core's certificate"
            ))
        })?;
        // The certificate is checked against the URL's host, as tonic does by default.
        endpoint = endpoint.tls_config(tls.clone()).map_err(|error| {
            StartupError::Tls(format!("cannot reach `{url}` over TLS: {}", error_chain(&error)))
        })?;
    }
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT))
}

/// Whether the URL dials TLS; schemes are case-insensitive, so no prefix test.
fn is_https(url: &str) -> bool {
    url.trim().parse::<tonic::transport::Uri>().is_ok_and(|uri| uri.scheme_str() == Some("https"))
}

/// The reason behind tonic's "transport error", which lives in its source chain.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(reason) = cause {
        text.push_str(": ");
        text.push_str(&reason.to_string());
        cause = reason.source();
    }
    text
}

/// One lazily connected channel, balanced when there are several cores.
fn core_channel(urls: &[String], tls: Option<&ClientTlsConfig>) -> Result<Channel, StartupError> {
    let endpoints: Vec<Endpoint> = urls
        .iter()
        .map(String::as_str)
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| core_endpoint(url, tls))
        .collect::<Result<_, _>>()?;
    match endpoints.as_slice() {
        [] => Err(StartupError::NoCoreUrl),
        // tonic queues the list into a channel of this size and panics past it.
        list if list.len() > MAX_CORES => {
            Err(StartupError::InvalidCoreUrl(format!("at most {MAX_CORES} core URLs are supported")))
        }
        [single] => Ok(single.connect_lazy()),
        _ => Ok(Channel::balance_list(endpoints.into_iter())),
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
