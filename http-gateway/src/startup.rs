//! Building and running the gateway: `Gateway::build` binds, `run_until_stopped` serves.

use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use licensing::v1::{
    client_service_client::ClientServiceClient, developer_service_client::DeveloperServiceClient,
};
use tokio::{net::TcpListener, sync::watch};
use tonic::transport::{Channel, Endpoint};

use crate::{
    config::{GatewayConfig, normalise_core_url},
    routes::{State, routes},
};

/// How long dialling a core may take before the call is answered `unavailable`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 pings that notice a core gone silent (e.g. a host that vanished without a reset).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CORES: usize = 1024;

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
}

/// A bound, ready-to-run gateway.
pub struct Gateway {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<State>,
    shutdown_grace: Duration,
}

impl Gateway {
    /// Binds the listener and prepares the core's clients. The core need not be up: connections
    /// are made on first use and remade after a failure.
    pub async fn build(config: GatewayConfig) -> Result<Gateway, StartupError> {
        let channel = core_channel(&config.core_urls)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartupError::Bind { addr: config.listen, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| StartupError::Bind { addr: config.listen, source })?;
        let state = State {
            client: ClientServiceClient::new(channel.clone()),
            developer: DeveloperServiceClient::new(channel),
            trusted_proxies: config.trusted_proxies,
            max_upload_bytes: config.max_upload_bytes,
            core_timeout: config.core_timeout,
        };
        Ok(Gateway { listener, local_addr, state: Arc::new(state), shutdown_grace: config.shutdown_grace })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
        let server = warp::serve(routes(self.state))
            .incoming(self.listener)
            .graceful(async move {
                let _ = server_stop.wait_for(|stop| *stop).await;
                tracing::info!("shutting down: finishing in-flight requests");
            })
            .run();
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

fn core_endpoint(url: &str) -> Result<Endpoint, StartupError> {
    let url = normalise_core_url(url).map_err(StartupError::InvalidCoreUrl)?;
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|error| StartupError::InvalidCoreUrl(format!("invalid core URL `{url}`: {error}")))?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT))
}

/// One lazily connected channel, balanced when there are several cores.
fn core_channel(urls: &[String]) -> Result<Channel, StartupError> {
    let endpoints: Vec<Endpoint> = urls
        .iter()
        .map(String::as_str)
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(core_endpoint)
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

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes help a person at a terminal; in a log file they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}
