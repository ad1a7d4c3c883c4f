//! Command line and environment, with defaults that work on one machine.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use ipnet::IpNet;

use crate::client_addr::parse_trusted_proxy;

/// Default largest `upload_file` body: 512 MiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 512 * 1024 * 1024;
/// The largest upload limit either program accepts (64 GiB): past that a number is a typo.
pub const MAX_UPLOAD_LIMIT: u64 = 64 << 30;
pub const DEFAULT_CORE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How the gateway runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Where to serve HTTP (port 0 picks a free one).
    pub listen: SocketAddr,
    /// The core's gRPC URLs; calls are balanced over them.
    pub core_urls: Vec<String>,
    /// Proxies whose `X-Forwarded-For` entries are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Largest `upload_file` body.
    pub max_upload_bytes: u64,
    /// Deadline of each unary call to the core (and of the first message of a download).
    pub core_timeout: Duration,
    /// Time allowed to in-flight requests after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Serve HTTPS with this certificate and key; `None` serves plain HTTP.
    pub tls: Option<TlsFiles>,
    /// PEM bundle of the CAs trusted to sign the certificates of `https://` cores.
    pub core_ca: Option<PathBuf>,
    /// Presented to the core on every call, so it believes the client addresses reported.
    pub gateway_credential: Option<GatewayCredential>,
    /// A client certificate and key presented to `https://` cores (mutual TLS): the other way,
    /// beside the credential, for a core to recognise this gateway.
    pub core_client_identity: Option<TlsFiles>,
    /// Most client connections open at once; past it, new ones wait in the listen queue.
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers, and so also the longest a
    /// kept-alive HTTP/1 connection may sit idle before its next request.
    pub header_read_timeout: Duration,
    /// Serve the developers' web dashboard under `/dashboard`.
    pub dashboard: bool,
}

/// PEM files of a TLS server identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// The private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl GatewayConfig {
    /// Listens on a free loopback port and calls the core at `core_url`; everything else default.
    pub fn local(core_url: &str) -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            core_urls: vec![core_url.to_owned()],
            trusted_proxies: Vec::new(),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            core_timeout: DEFAULT_CORE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            tls: None,
            core_ca: None,
            gateway_credential: None,
            core_client_identity: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            dashboard: true,
        }
    }
}

/// The legacy form-POST API of the licensing service, translated onto the core's gRPC API.
#[derive(Debug, Parser)]
#[command(name = "http-gateway", version, about)]
pub struct Cli {
    /// Log lines as `text` or `json` (one object per line).
    #[arg(long, env = "GATEWAY_LOG_FORMAT", default_value = "text")]
    pub log_format: licensing::telemetry::LogFormat,

    /// Address to serve HTTP on.
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,

    /// The core's gRPC URL (`https://` needs --core-ca); a comma-separated list balances calls
    /// over several cores.
    #[arg(
        long = "core-url",
        env = "CORE_URL",
        default_value = "http://127.0.0.1:50051",
        value_name = "URL[,URL...]",
        value_parser = parse_url_list
    )]
    pub core_urls: Vec<UrlList>,

    /// Comma-separated IP addresses or CIDR blocks of proxies whose X-Forwarded-For is believed.
    #[arg(
        long,
        env = "GATEWAY_TRUSTED_PROXIES",
        value_name = "IP|CIDR[,...]",
        value_parser = parse_proxy_list
    )]
    pub trusted_proxies: Vec<ProxyList>,

    /// Largest upload_file body, in bytes.
    #[arg(long, env = "GATEWAY_MAX_UPLOAD_BYTES", default_value_t = DEFAULT_MAX_UPLOAD_BYTES, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1..=MAX_UPLOAD_LIMIT))]
    pub max_upload_bytes: u64,

    /// Deadline of each call to the core, in milliseconds (uploads and download bodies excepted).
    #[arg(long, env = "GATEWAY_CORE_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=600_000), value_name = "MS")]
    pub core_timeout_ms: u64,

    /// Seconds allowed to in-flight requests after SIGINT or SIGTERM.
    #[arg(long, env = "GATEWAY_SHUTDOWN_GRACE_SECS", default_value_t = 30, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_secs: u64,

    /// The secret shared with the cores (their CORE_GATEWAY_CREDENTIAL), sent on every call so
    /// they believe the client addresses this gateway reports. Needed when the gateway does not
    /// reach the core over loopback.
    #[arg(long, env = "GATEWAY_CREDENTIAL", value_name = "SECRET", hide_env_values = true)]
    pub gateway_credential: Option<String>,

    /// PEM client certificate presented to `https://` cores (mutual TLS, with --core-client-key):
    /// cores whose CORE_TLS_CLIENT_CA signed it believe this gateway about client addresses.
    #[arg(long, env = "GATEWAY_CORE_CLIENT_CERT", value_name = "PATH")]
    pub core_client_cert: Option<PathBuf>,

    /// PEM private key of --core-client-cert.
    #[arg(long, env = "GATEWAY_CORE_CLIENT_KEY", value_name = "PATH")]
    pub core_client_key: Option<PathBuf>,

    /// Most client connections open at once; past it, new ones wait in the listen queue until
    /// one closes.
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS as u32, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Seconds a client may take to send a request's headers; also how long a kept-alive
    /// connection may sit idle before its next request (slow and idle clients are closed).
    #[arg(long, env = "GATEWAY_HEADER_READ_TIMEOUT_SECS", default_value_t = 10, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout_secs: u64,

    /// PEM certificate chain: with --tls-key, the gateway serves HTTPS (plain HTTP without both).
    #[arg(long, env = "GATEWAY_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "GATEWAY_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// PEM bundle of the CAs that sign the cores' certificates, for `https://` core URLs.
    #[arg(long, env = "GATEWAY_CORE_CA", value_name = "PATH")]
    pub core_ca: Option<PathBuf>,

    /// Serve the developers' web dashboard under /dashboard (`on` or `off`).
    #[arg(long, env = "GATEWAY_DASHBOARD", value_enum, default_value_t = Switch::On, value_name = "on|off")]
    pub dashboard: Switch,
}

/// A feature switched `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// The credential as gRPC metadata, checked when configured. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct GatewayCredential(pub tonic::metadata::AsciiMetadataValue);

impl std::str::FromStr for GatewayCredential {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        licensing::check_gateway_credential(value)?;
        let mut metadata = tonic::metadata::AsciiMetadataValue::try_from(value)
            .map_err(|_| "a gateway credential may hold visible ASCII characters only".to_owned())?;
        metadata.set_sensitive(true);
        Ok(GatewayCredential(metadata))
    }
}

impl std::fmt::Debug for GatewayCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewayCredential(***)")
    }
}

/// One `--core-url` value, already split on commas.
#[derive(Debug, Clone)]
pub struct UrlList(pub Vec<String>);

/// One `--trusted-proxies` value, already split on commas.
#[derive(Debug, Clone)]
pub struct ProxyList(pub Vec<IpNet>);

// Splitting inside the value parser (rather than clap's `value_delimiter`) lets an empty
// environment variable mean "none" and tolerates spaces after commas.
fn parse_url_list(text: &str) -> Result<UrlList, String> {
    let urls: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(normalise_core_url)
        .collect::<Result<_, _>>()?;
    if urls.is_empty() {
        return Err("at least one core URL is needed".into());
    }
    Ok(UrlList(urls))
}

fn parse_proxy_list(text: &str) -> Result<ProxyList, String> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(parse_trusted_proxy)
        .collect::<Result<_, _>>()
        .map(ProxyList)
}

/// Accepts `host:port` for `http://host:port`, and refuses what the client could not dial.
/// `https://` dials over TLS (the gateway then needs `--core-ca`).
pub fn normalise_core_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let url = if url.contains("://") { url.to_owned() } else { format!("http://{url}") };
    let uri: tonic::transport::Uri =
        url.parse().map_err(|error| format!("invalid core URL `{url}`: {error}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(scheme) => {
            return Err(format!(
                "invalid core URL `{url}`: scheme `{scheme}` is not supported (use http:// or https://)"
            ));
        }
        None => return Err(format!("invalid core URL `{url}`: no scheme")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("invalid core URL `{url}`: no host"));
    }
    Ok(url)
}

// Not `From`: half a TLS identity is refused here, in one line, rather than by clap's `requires`,
// whose message spans several lines.
impl TryFrom<Cli> for GatewayConfig {
    type Error = String;

    fn try_from(cli: Cli) -> Result<Self, String> {
        let has_core_ca = cli.core_ca.is_some();
        let tls = match (cli.tls_cert, cli.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err("--tls-cert (GATEWAY_TLS_CERT) needs --tls-key (GATEWAY_TLS_KEY) too".into());
            }
            (None, Some(_)) => {
                return Err("--tls-key (GATEWAY_TLS_KEY) needs --tls-cert (GATEWAY_TLS_CERT) too".into());
            }
        };
        Ok(GatewayConfig {
            listen: cli.listen,
            core_urls: cli.core_urls.into_iter().flat_map(|list| list.0).collect(),
            trusted_proxies: cli.trusted_proxies.into_iter().flat_map(|list| list.0).collect(),
            max_upload_bytes: cli.max_upload_bytes,
            core_timeout: Duration::from_millis(cli.core_timeout_ms),
            shutdown_grace: Duration::from_secs(cli.shutdown_grace_secs),
            tls,
            core_ca: cli.core_ca,
            // Checked here rather than by clap, whose refusal would print the rejected secret.
            gateway_credential: cli
                .gateway_credential
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|reason| format!("--gateway-credential (GATEWAY_CREDENTIAL): {reason}"))?,
            core_client_identity: match (cli.core_client_cert, cli.core_client_key) {
                (Some(cert), Some(key)) if has_core_ca => Some(TlsFiles { cert, key }),
                (Some(_), Some(_)) => {
                    return Err("--core-client-cert needs --core-ca (GATEWAY_CORE_CA): client certificates are presented to https:// cores".into());
                }
                (None, None) => None,
                _ => {
                    return Err("--core-client-cert (GATEWAY_CORE_CLIENT_CERT) and --core-client-key (GATEWAY_CORE_CLIENT_KEY) go together".into());
                }
            },
            max_connections: cli.max_connections as usize,
            header_read_timeout: Duration::from_secs(cli.header_read_timeout_secs),
            dashboard: cli.dashboard == Switch::On,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<GatewayConfig, String> {
        let mut argv = vec!["http-gateway"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map_err(|error| error.to_string()).and_then(GatewayConfig::try_from)
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse() {
        let config = parse(&[
            "--listen",
            "0.0.0.0:9000",
            "--core-url",
            "http://10.0.0.1:50051, 10.0.0.2:50051",
            "--trusted-proxies",
            "10.0.0.0/8, 192.0.2.1",
            "--max-upload-bytes",
            "1024",
            "--core-timeout-ms",
            "2500",
            "--shutdown-grace-secs",
            "5",
        ])
        .unwrap();
        assert_eq!(config.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(config.core_urls, ["http://10.0.0.1:50051", "http://10.0.0.2:50051"]);
        assert_eq!(config.trusted_proxies.len(), 2);
        assert_eq!(config.max_upload_bytes, 1024);
        assert_eq!(config.core_timeout, Duration::from_millis(2500));
        assert_eq!(config.shutdown_grace, Duration::from_secs(5));
        assert_eq!(config.tls, None);
        assert_eq!(config.core_ca, None);
    }

    #[test]
    fn tls_flags_parse_and_come_in_pairs() {
        let config = parse(&[
            "--tls-cert",
            "/etc/gw/cert.pem",
            "--tls-key",
            "/etc/gw/key.pem",
            "--core-ca",
            "/etc/gw/core-ca.pem",
            "--core-url",
            "https://core.internal:50051",
        ])
        .unwrap();
        assert_eq!(
            config.tls,
            Some(TlsFiles { cert: "/etc/gw/cert.pem".into(), key: "/etc/gw/key.pem".into() })
        );
        assert_eq!(config.core_ca, Some(PathBuf::from("/etc/gw/core-ca.pem")));
        assert_eq!(config.core_urls, ["https://core.internal:50051"]);

        let alone = parse(&["--tls-cert", "cert.pem"]).unwrap_err();
        assert!(alone.contains("--tls-key"), "{alone}");
        assert_eq!(alone.lines().count(), 1);
        let alone = parse(&["--tls-key", "key.pem"]).unwrap_err();
        assert!(alone.contains("--tls-cert"), "{alone}");
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["--listen", "nowhere"]).is_err());
        assert!(parse(&["--core-url", "ftp://core:50051"]).is_err());
        assert!(parse(&["--core-url", " , "]).is_err());
        assert!(parse(&["--trusted-proxies", "proxy.local"]).is_err());
        assert!(parse(&["--core-timeout-ms", "0"]).is_err());
        assert!(parse(&["--trusted-proxies", ""]).unwrap().trusted_proxies.is_empty());
    }

    #[test]
    fn local_config_uses_a_free_port() {
        let config = GatewayConfig::local("http://127.0.0.1:1");
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.core_urls, ["http://127.0.0.1:1"]);
        assert_eq!(config.max_upload_bytes, 536_870_912);
        assert_eq!((config.tls, config.core_ca), (None, None));
        assert!(config.dashboard, "the dashboard is on unless switched off");
    }

    #[test]
    fn dashboard_switch() {
        assert!(parse(&[]).unwrap().dashboard);
        assert!(parse(&["--dashboard", "on"]).unwrap().dashboard);
        assert!(!parse(&["--dashboard", "off"]).unwrap().dashboard);
        assert!(parse(&["--dashboard", "maybe"]).is_err());
    }
}
