//! Building and running the gateway: `Gateway::build` binds, `run_until_stopped` serves.

use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::watch};
use tokio_rustls::TlsAcceptor;
use warp::Filter;

use crate::{
    config::GatewayConfig,
    core_client::{CoreClient, SetupError},
    dashboard::{self, CookiePolicy, Dashboard},
    listener::{self, ClientLimits},
    routes::{State, routes},
};

// Still here for callers that found it in this module before both programs shared it.
pub use licensing::shutdown::signal as shutdown_signal;

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

impl From<SetupError> for StartupError {
    fn from(error: SetupError) -> Self {
        match error {
            SetupError::InvalidCoreUrl(text) => StartupError::InvalidCoreUrl(text),
            SetupError::NoCoreUrl => StartupError::NoCoreUrl,
            SetupError::Tls(text) => StartupError::Tls(text),
        }
    }
}

/// A bound, ready-to-run gateway.
pub struct Gateway {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<State>,
    dashboard: Option<Arc<Dashboard>>,
    shutdown_grace: Duration,
    /// `Some` serves HTTPS.
    tls: Option<TlsAcceptor>,
    limits: ClientLimits,
}

impl Gateway {
    /// Binds the listener and prepares the core's clients. The core need not be up: connections
    /// are made on first use and remade after a failure.
    pub async fn build(config: GatewayConfig) -> Result<Gateway, StartupError> {
        let core = CoreClient::new(&config)?;
        // Unusable certificate files are reported before the port is taken.
        let tls = config.tls.as_ref().map(listener::tls_acceptor).transpose().map_err(StartupError::Tls)?;
        let (listener, local_addr) = listener::bind(config.listen)
            .await
            .map_err(|source| StartupError::Bind { addr: config.listen, source })?;
        // The dashboard's session cookie takes the `__Host-` form (Secure) when served over TLS.
        let dashboard = config.dashboard.then(|| {
            Arc::new(Dashboard::new(
                core.clone(),
                config.trusted_proxies.clone(),
                config.max_upload_bytes,
                CookiePolicy { secure: tls.is_some() },
            ))
        });
        let state = State {
            core,
            trusted_proxies: config.trusted_proxies,
            max_upload_bytes: config.max_upload_bytes,
        };
        Ok(Gateway {
            listener,
            local_addr,
            state: Arc::new(state),
            dashboard,
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
        // The dashboard answers every path under /dashboard; everything else (and all of it when
        // the dashboard is off) goes on to the legacy API's routes.
        let faces = dashboard::routes(self.dashboard).or(routes(self.state)).unify();
        let server = listener::serve(self.listener, self.tls, faces, stopping, self.limits);
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
