//! Building and running the gRPC server, so tests boot the real thing on port 0.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use licensing::v1::{
    client_service_server::ClientServiceServer, developer_service_server::DeveloperServiceServer,
};
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

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
}

impl CoreConfig {
    /// A local configuration on an ephemeral port, for tests and tools.
    pub fn local(database_url: &str) -> Self {
        CoreConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            db: DbConfig::new(database_url),
            settings: Settings::default(),
            shutdown_grace: Duration::from_secs(30),
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
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A bound, migrated, ready-to-run core.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    core: Arc<Core>,
    shutdown_grace: Duration,
}

impl Application {
    pub async fn build(config: CoreConfig) -> Result<Self, StartupError> {
        // Bind first: a taken port is reported before any database work or log line.
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartupError::Bind { addr: config.listen, source })?;
        let addr =
            listener.local_addr().map_err(|source| StartupError::Bind { addr: config.listen, source })?;
        let db = storage::connect_and_migrate(&config.db).await?;
        let core = Core::new(db, config.settings).map_err(|e| StartupError::Core(e.to_string()))?;
        Ok(Application { listener, addr, core: Arc::new(core), shutdown_grace: config.shutdown_grace })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
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
        let server = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(ClientServiceServer::new(ClientApi::new(self.core.clone())))
            .add_service(DeveloperServiceServer::new(DeveloperApi::new(self.core.clone())))
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.listener), signal);

        tracing::info!(addr = %self.addr, "core-service listening");
        let grace = self.shutdown_grace;
        tokio::select! {
            served = server => served?,
            () = async {
                let _ = stopped_rx.await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!("shutdown grace elapsed with calls still in flight"),
        }
        self.core.db().clone().close().await.ok();
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled, so a signal during startup (migrations) still stops cleanly.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {},
                () = wait(int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
