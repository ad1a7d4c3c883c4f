//! The gateway's side of the core: one channel to the cores, the clients built on it, and the
//! rules every call follows (the deadline, the gateway credential, the in-flight count). Any face
//! of the gateway calls the core through here.

use std::{future::Future, path::Path, time::Duration};

use licensing::{
    pem::{PemError, PemFile},
    v1::{client_service_client::ClientServiceClient, developer_service_client::DeveloperServiceClient},
};
use tonic::{
    Status,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::{
    config::{GatewayConfig, GatewayCredential, TlsFiles, normalise_core_url},
    metrics,
};

/// How long dialling a core may take before the call is answered `unavailable`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 pings that notice a core gone silent (e.g. a host that vanished without a reset).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CORES: usize = 1024;

/// Why the core's clients could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    InvalidCoreUrl(String),
    #[error("no core URL configured")]
    NoCoreUrl,
    #[error("{0}")]
    Tls(String),
}

/// The core's clients (cheap clones of one channel) and how to call them.
#[derive(Clone)]
pub struct CoreClient {
    pub client: ClientServiceClient<Channel>,
    pub developer: DeveloperServiceClient<Channel>,
    pub health: tonic_health::pb::health_client::HealthClient<Channel>,
    /// Deadline of each unary call, and the longest wait for any one message of a stream.
    pub timeout: Duration,
    credential: Option<GatewayCredential>,
}

impl CoreClient {
    /// Prepares the clients without dialling: the core need not be up, as connections are made on
    /// first use and remade after a failure. Unusable URLs and TLS files are reported here.
    pub fn new(config: &GatewayConfig) -> Result<CoreClient, SetupError> {
        let tls = config
            .core_ca
            .as_deref()
            .map(|ca| core_tls_config(ca, config.core_client_identity.as_ref()))
            .transpose()
            .map_err(|error| SetupError::Tls(error.to_string()))?;
        if tls.is_some() && !config.core_urls.iter().any(|url| is_https(url)) {
            tracing::warn!(
                "--core-ca is set but no core URL is https://: the cores are called in plain text"
            );
        }
        let channel = core_channel(&config.core_urls, tls.as_ref())?;
        Ok(CoreClient {
            client: ClientServiceClient::new(channel.clone()),
            developer: DeveloperServiceClient::new(channel.clone()),
            health: tonic_health::pb::health_client::HealthClient::new(channel),
            timeout: config.core_timeout,
            credential: config.gateway_credential.clone(),
        })
    }

    /// A unary request, with the deadline passed on to the core.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = self.streaming_request(message);
        request.set_timeout(self.timeout);
        request
    }

    /// A request without a gRPC deadline (transfers may outlast any unary call), carrying the
    /// gateway credential when one is configured.
    pub fn streaming_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(credential) = &self.credential {
            request.metadata_mut().insert(licensing::GATEWAY_CREDENTIAL_METADATA, credential.0.clone());
        }
        request
    }

    /// Waits for the core at most `timeout`; a core that does not answer is unavailable.
    pub async fn within_timeout<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Status> {
        let _in_flight = metrics::CoreCall::start();
        self.answer_within_timeout(call).await
    }

    /// `within_timeout` for a call already counted in flight by its caller (an upload is, from
    /// its first chunk).
    pub async fn answer_within_timeout<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Status> {
        let answer = match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => answer.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded("the core did not answer in time")),
        };
        if let Err(status) = &answer {
            metrics::core_failed(status.code());
        }
        answer
    }
}

/// The CAs trusted for `https://` cores, and the client certificate shown to them, if any.
fn core_tls_config(path: &Path, identity: Option<&TlsFiles>) -> Result<ClientTlsConfig, PemError> {
    let ca = PemFile::read(path, "core CA bundle")?;
    ca.certificates()?;
    let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.into_bytes()));
    let Some(files) = identity else { return Ok(config) };
    let cert = PemFile::read(&files.cert, "core client certificate")?;
    cert.certificates()?;
    let key = PemFile::read(&files.key, "core client key")?;
    key.private_key()?;
    Ok(config.identity(Identity::from_pem(cert.into_bytes(), key.into_bytes())))
}

fn core_endpoint(url: &str, tls: Option<&ClientTlsConfig>) -> Result<Endpoint, SetupError> {
    let url = normalise_core_url(url).map_err(SetupError::InvalidCoreUrl)?;
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|error| SetupError::InvalidCoreUrl(format!("invalid core URL `{url}`: {error}")))?;
    if is_https(&url) {
        // No system roots are compiled in: a TLS core is trusted only through the CA given.
        let tls = tls.ok_or_else(|| {
            SetupError::InvalidCoreUrl(format!(
                "core URL `{url}` needs --core-ca (GATEWAY_CORE_CA), the CA that signs the core's certificate"
            ))
        })?;
        // The certificate is checked against the URL's host, as tonic does by default.
        endpoint = endpoint.tls_config(tls.clone()).map_err(|error| {
            SetupError::Tls(format!("cannot reach `{url}` over TLS: {}", error_chain(&error)))
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
fn core_channel(urls: &[String], tls: Option<&ClientTlsConfig>) -> Result<Channel, SetupError> {
    let endpoints: Vec<Endpoint> = urls
        .iter()
        .map(String::as_str)
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| core_endpoint(url, tls))
        .collect::<Result<_, _>>()?;
    match endpoints.as_slice() {
        [] => Err(SetupError::NoCoreUrl),
        // tonic queues the list into a channel of this size and panics past it.
        list if list.len() > MAX_CORES => {
            Err(SetupError::InvalidCoreUrl(format!("at most {MAX_CORES} core URLs are supported")))
        }
        [single] => Ok(single.connect_lazy()),
        _ => Ok(Channel::balance_list(endpoints.into_iter())),
    }
}
