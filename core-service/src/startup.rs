//! Building and running the gRPC server, so tests boot the real thing on port 0.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use licensing::{
    pem::{PemError, PemFile},
    v1::{client_service_server::ClientServiceServer, developer_service_server::DeveloperServiceServer},
};
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};

// Still here for `cli` and other callers that found it in this module before both programs
// shared it.
pub use licensing::shutdown::signal as shutdown_signal;

use crate::{
    grpc::{ClientApi, DeveloperApi},
    service::{Core, Settings},
    storage::{self, DbConfig, StorageError},
};

#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub listen: SocketAddr,
    pub db: DbConfig,
    pub settings: Settings,
    /// Time allowed for in-flight calls to finish after the shutdown signal.
    pub shutdown_grace: Duration,
    /// Serve gRPC over TLS with this certificate and key; `None` serves plain TCP.
    pub tls: Option<TlsFiles>,
    /// With TLS: the CA of gateways' client certificates. A caller presenting one is a gateway.
    pub tls_client_ca: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP on this address; `None` serves none.
    pub metrics_listen: Option<SocketAddr>,
}

/// PEM files of a TLS server identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// The private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A client that connects but never finishes the handshake must not hold a connection slot.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl CoreConfig {
    /// A local configuration on an ephemeral port, for tests and tools.
    pub fn local(database_url: &str) -> Self {
        CoreConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            db: DbConfig::new(database_url),
            settings: Settings::default(),
            shutdown_grace: Duration::from_secs(30),
            tls: None,
            tls_client_ca: None,
            metrics_listen: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the core: {0}")]
    Core(String),
    #[error("{0}")]
    Tls(String),
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

impl From<PemError> for StartupError {
    fn from(error: PemError) -> Self {
        StartupError::Tls(error.to_string())
    }
}

/// Cancelled calls allowed to wait for the server's accept before the connection is closed
/// (h2's default of 20 is sized for untrusted clients on the internet).
const MAX_PENDING_RESETS: usize = 1024;

/// A bound, migrated, ready-to-run core.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    /// Already carries the TLS acceptor when TLS is on, so bad files fail `build`, not `run`.
    server: Server,
    tls: bool,
    core: Arc<Core>,
    shutdown_grace: Duration,
    metrics: Option<(TcpListener, SocketAddr)>,
}

impl Application {
    pub async fn build(config: CoreConfig) -> Result<Self, StartupError> {
        // Unusable TLS files are a configuration mistake: report them before touching the port
        // or the database.
        // A gateway cancels a call whenever its HTTP client hangs up; a burst of those (a load
        // balancer dropping connections) must not count as a reset flood and close the one
        // HTTP/2 connection that carries every other call of that gateway.
        let builder = Server::builder().http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS));
        let server = match &config.tls {
            Some(files) => builder
                .tls_config(server_tls_config(files, config.tls_client_ca.as_deref())?)
                .map_err(|error| StartupError::Tls(tls_error_text(files, &error)))?,
            None if config.tls_client_ca.is_some() => {
                return Err(StartupError::Tls(
                    "a client CA needs TLS: give a certificate and key too".into(),
                ));
            }
            None => builder,
        };
        // Bind first: a taken port is reported before any database work or log line.
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartupError::Bind { addr: config.listen, source })?;
        let addr =
            listener.local_addr().map_err(|source| StartupError::Bind { addr: config.listen, source })?;
        let metrics = match config.metrics_listen {
            Some(wanted) => {
                let bind_error = |source| StartupError::Bind { addr: wanted, source };
                let listener = TcpListener::bind(wanted).await.map_err(bind_error)?;
                let addr = listener.local_addr().map_err(bind_error)?;
                Some((listener, addr))
            }
            None => None,
        };
        let db = storage::connect_and_migrate(&config.db).await?;
        let settings =
            Settings { gateways_by_certificate: config.tls_client_ca.is_some(), ..config.settings };
        let core = Core::new(db, settings).map_err(|e| StartupError::Core(e.to_string()))?;
        core.secure_keys_at_rest().await.map_err(StartupError::Core)?;
        Ok(Application {
            listener,
            addr,
            server,
            tls: config.tls.is_some(),
            core: Arc::new(core),
            shutdown_grace: config.shutdown_grace,
            metrics,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where metrics are served, when they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    pub fn core(&self) -> Arc<Core> {
        self.core.clone()
    }

    pub fn db(&self) -> &DatabaseConnection {
        self.core.db()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight calls finish
    /// within the grace time.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter.set_serving::<ClientServiceServer<ClientApi>>().await;
        health_reporter.set_serving::<DeveloperServiceServer<DeveloperApi>>().await;

        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(licensing::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1().map_err(|e| StartupError::Core(e.to_string()))?;
        let reflection_v1alpha =
            reflection().build_v1alpha().map_err(|e| StartupError::Core(e.to_string()))?;

        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight calls");
            let _ = stopped_tx.send(());
        };
        // Dropped (and so stopped) when this function returns.
        let _metrics = self.metrics.map(|(listener, addr)| {
            tracing::info!(%addr, "metrics served at /metrics");
            AbortOnDrop(tokio::spawn(crate::metrics::serve(listener, self.core.clone())))
        });
        let mut server = self.server.layer(crate::metrics::RpcObserverLayer);
        let server = server
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(ClientServiceServer::new(ClientApi::new(self.core.clone())))
            .add_service(DeveloperServiceServer::new(DeveloperApi::new(self.core.clone())))
            .serve_with_incoming_shutdown(incoming_nodelay(self.listener), signal);

        tracing::info!(addr = %self.addr, tls = self.tls, "core-service listening");
        let settings = self.core.settings();
        if settings.gateway_credential.is_some() || settings.gateways_by_certificate {
            tracing::info!(
                credential = settings.gateway_credential.is_some(),
                client_certificates = settings.gateways_by_certificate,
                "client addresses are believed only from gateways proven by credential or client certificate"
            );
        } else {
            tracing::info!(
                "no gateway credential: client addresses are believed from loopback callers only \
                 (set CORE_GATEWAY_CREDENTIAL when gateways run on other hosts)"
            );
        }
        let grace = self.shutdown_grace;
        tokio::select! {
            served = server => served?,
            () = async {
                let _ = stopped_rx.await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!("shutdown grace elapsed with calls still in flight"),
        }
        self.core.store().clone().close().await;
        Ok(())
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Accepted connections with Nagle's algorithm off. tonic only sets `TCP_NODELAY` on listeners it
/// binds itself; left on, a reply's data and trailers frames can wait for the peer's delayed ACK,
/// adding about 40 ms to every call.
fn incoming_nodelay(
    listener: TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::StreamExt::map(TcpListenerStream::new(listener), |accepted| {
        accepted.inspect(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
        })
    })
}

/// Reads and parses the certificate and key, so each kind of mistake gets its own message naming
/// the file (tonic alone would only say "transport error").
fn server_tls_config(files: &TlsFiles, client_ca: Option<&Path>) -> Result<ServerTlsConfig, StartupError> {
    // tonic builds its rustls config from the process-wide provider. Only ring is compiled in
    // today; pinning it keeps a second backend pulled in by some other crate from turning that
    // lookup into a panic. An error only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = PemFile::read(&files.cert, "TLS certificate")?;
    let key = PemFile::read(&files.key, "TLS key")?;
    cert.certificates()?;
    key.private_key()?;
    let config = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert.into_bytes(), key.into_bytes()))
        .timeout(TLS_HANDSHAKE_TIMEOUT);
    let Some(client_ca) = client_ca else { return Ok(config) };
    let ca = PemFile::read(client_ca, "TLS client CA bundle")?;
    ca.certificates()?;
    // Optional: internal services without a certificate are still served, only not believed
    // about client addresses.
    Ok(config
        .client_ca_root(tonic::transport::Certificate::from_pem(ca.into_bytes()))
        .client_auth_optional(true))
}

/// tonic's error says only "transport error"; the reason (e.g. a key that does not match the
/// certificate) is in its source chain.
fn tls_error_text(files: &TlsFiles, error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("cannot serve TLS with {} and {}", files.cert.display(), files.key.display());
    let mut cause = error.source();
    while let Some(reason) = cause {
        text.push_str(": ");
        match reason.downcast_ref::<rustls::Error>() {
            // rustls words this one for its own developers ("keys may not be consistent").
            Some(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                text.push_str("the key does not belong to the certificate");
            }
            _ => text.push_str(&reason.to_string()),
        }
        cause = reason.source();
    }
    text
}
