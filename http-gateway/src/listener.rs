//! Accepting clients: the listening socket, HTTPS, the bounds on what clients may hold, and the
//! TCP peer of each request, whichever way its connection was accepted. Knows nothing of what the
//! requests ask: it serves whatever warp filter it is given.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use licensing::pem::{CertificateDer, PemError, PemFile, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::{
    TlsAcceptor,
    rustls::{self, ServerConfig},
};
use warp::{Filter, http::Request, reply::Response};

use crate::config::TlsFiles;

/// HTTP/2 pings that notice a client gone silent (e.g. a host that vanished without a reset).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that connects but never finishes the TLS handshake must not hold a connection.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one client, or a crowd of slow ones, may hold.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Binds the client port.
pub async fn bind(addr: SocketAddr) -> io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    // Accepted sockets inherit TCP_NODELAY from the listener (Linux): warp gives no hook to
    // set it per connection, and with Nagle on a reply written in two pieces can wait for the
    // client's delayed ACK.
    if let Err(error) = socket2::SockRef::from(&listener).set_tcp_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY on the listener");
    }
    Ok((listener, local_addr))
}

/// The TCP peer of a request on an HTTPS connection. warp records the peer of the connections it
/// accepts itself in a marker only warp can set; connections accepted here carry this one instead.
#[derive(Debug, Clone, Copy)]
struct PeerAddr(SocketAddr);

/// The TCP peer of the request, whether the connection is plain or TLS.
pub fn peer_address() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
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
pub async fn serve<F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    filter: F,
    stopping: impl Future<Output = ()>,
    limits: ClientLimits,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let service = warp::service(filter);
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
pub fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    let (chain, key) = identity(files).map_err(|error| error.to_string())?;
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
            format!("cannot serve TLS with {} and {}: {reason}", files.cert.display(), files.key.display())
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn identity(files: &TlsFiles) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PemError> {
    let cert = PemFile::read(&files.cert, "TLS certificate")?;
    let key = PemFile::read(&files.key, "TLS key")?;
    Ok((cert.certificates()?, key.private_key()?))
}
