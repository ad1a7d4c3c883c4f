//! Command line and environment, with defaults that work on one machine.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use ipnet::IpNet;

use crate::client_addr::parse_trusted_proxy;

/// Default largest `upload_file` body: 512 MiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 512 * 1024 * 1024;
pub const DEFAULT_CORE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

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
        }
    }
}

/// The legacy form-POST API of the licensing service, translated onto the core's gRPC API.
#[derive(Debug, Parser)]
#[command(name = "http-gateway", version, about)]
pub struct Cli {
    /// Address to serve HTTP on.
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,

    /// The core's gRPC URL; a comma-separated list balances calls over several cores.
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
    #[arg(long, env = "GATEWAY_MAX_UPLOAD_BYTES", default_value_t = DEFAULT_MAX_UPLOAD_BYTES, value_name = "BYTES")]
    pub max_upload_bytes: u64,

    /// Deadline of each call to the core, in milliseconds (uploads and download bodies excepted).
    #[arg(long, env = "GATEWAY_CORE_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..), value_name = "MS")]
    pub core_timeout_ms: u64,

    /// Seconds allowed to in-flight requests after SIGINT or SIGTERM.
    #[arg(long, env = "GATEWAY_SHUTDOWN_GRACE_SECS", default_value_t = 30, value_name = "SECS")]
    pub shutdown_grace_secs: u64,
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
pub fn normalise_core_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let url = if url.contains("://") { url.to_owned() } else { format!("http://{url}") };
    let uri: tonic::transport::Uri =
        url.parse().map_err(|error| format!("invalid core URL `{url}`: {error}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(scheme) => {
            return Err(format!(
                "invalid core URL `{url}`: scheme `{scheme}` is not supported (use http://)"
            ));
        }
        None => return Err(format!("invalid core URL `{url}`: no scheme")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("invalid core URL `{url}`: no host"));
    }
    Ok(url)
}

impl From<Cli> for GatewayConfig {
    fn from(cli: Cli) -> Self {
        GatewayConfig {
            listen: cli.listen,
            core_urls: cli.core_urls.into_iter().flat_map(|list| list.0).collect(),
            trusted_proxies: cli.trusted_proxies.into_iter().flat_map(|list| list.0).collect(),
            max_upload_bytes: cli.max_upload_bytes,
            core_timeout: Duration::from_millis(cli.core_timeout_ms),
            shutdown_grace: Duration::from_secs(cli.shutdown_grace_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<GatewayConfig, clap::Error> {
        let mut argv = vec!["http-gateway"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(GatewayConfig::from)
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
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["--listen", "nowhere"]).is_err());
        assert!(parse(&["--core-url", "https://core:50051"]).is_err());
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
    }
}
