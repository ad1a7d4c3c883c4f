//! Command line and environment: every flag also reads the variable named beside it.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    domain::keyvault::KeyVault,
    domain::throttle::ThrottleConfig,
    service::Settings,
    startup::TlsFiles,
    storage::{DEFAULT_DATABASE_URL, DbConfig},
};

#[derive(Debug, Parser)]
#[command(name = "core-service", version, about = "The licensing core: every rule, served over gRPC")]
pub struct Cli {
    /// Database URL: `sqlite://FILE?mode=rwc` (the default, a file in the working directory) or
    /// `postgres://USER@HOST/DB`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,

    /// Most database connections (PostgreSQL; SQLite always writes through one). Raise it when
    /// PostgreSQL runs on cores of its own (BENCHMARKS.md).
    #[arg(long, env = "CORE_DB_MAX_CONNECTIONS", default_value_t = crate::storage::DEFAULT_MAX_CONNECTIONS, global = true,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,

    /// Read-only SQLite connections beside the one writer, so reads never queue behind a
    /// write's fsync (0: reads share the writer). PostgreSQL reads use its one pool.
    #[arg(long, env = "CORE_DB_READ_CONNECTIONS", default_value_t = 4, global = true,
          value_parser = clap::value_parser!(u32).range(0..=64))]
    pub db_read_connections: u32,

    /// Offline grace of apps created from now on, in seconds (`app add` and `serve` alike).
    #[arg(long, env = "CORE_DEFAULT_OFFLINE_GRACE_SECS", default_value_t = 86_400, global = true,
          value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub default_offline_grace_secs: u64,

    /// File holding the key-encryption key (32 raw bytes or 64 hex digits) that seals apps'
    /// private signing keys in the database. Without it they are stored unsealed (SECURITY.md).
    /// Given once, it is needed from then on.
    #[arg(long, env = "CORE_KEY_ENCRYPTION_KEY_FILE", global = true)]
    pub key_encryption_key_file: Option<std::path::PathBuf>,

    /// Log lines as `text` or `json` (one object per line).
    #[arg(long, env = "CORE_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: licensing::telemetry::LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve gRPC (migrations run first).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage developers.
    #[command(subcommand)]
    Developer(DeveloperCommand),
    /// Manage apps.
    #[command(subcommand)]
    App(AppCommand),
    /// Manage developer API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Ask a running core whether it serves (the standard gRPC health check); exits 0 when it
    /// does, 1 otherwise. For container health checks: no other tool needed.
    Health {
        /// The core's gRPC URL (plain `http://` only).
        #[arg(long, env = "CORE_HEALTH_URL", default_value = "http://127.0.0.1:50051")]
        url: String,
        /// Longest wait for the answer, in seconds.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
        timeout_secs: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeveloperCommand {
    /// Create a developer; prints `{"id": N, "username": U}`.
    Add {
        #[arg(long)]
        username: String,
        /// The password; else DEVELOPER_PASSWORD; else a prompt.
        #[arg(long, env = "DEVELOPER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an app owned by a developer; prints its `get_app_data` shape.
    Add {
        /// The owning developer's username.
        #[arg(long)]
        developer: String,
        /// The app's name.
        #[arg(long)]
        name: String,
        /// The app's version string.
        #[arg(long)]
        version: Option<String>,
    },
    /// List a developer's apps; prints `[{"id", "appname", "online", "version", "public"}]`.
    List {
        /// The owning developer's username.
        #[arg(long)]
        developer: String,
    },
    /// List an app's published signing keys; prints `{"app": ID, "keys": [{"kid", "public",
    /// "state"}]}`, as do the three commands below after their change.
    Keys {
        /// The app's id (`app add` and `app list` print it).
        #[arg(long)]
        app: i64,
    },
    /// Publish a new signing key (state `next`): clients can pin it before it signs.
    AddKey {
        #[arg(long)]
        app: i64,
    },
    /// Make a published key the signing key; the one before it becomes `previous`.
    PromoteKey {
        #[arg(long)]
        app: i64,
        /// The key's `kid`, as `app keys` lists it (it may begin with `-`).
        #[arg(long, allow_hyphen_values = true)]
        kid: String,
    },
    /// Stop publishing a key that no longer signs, and erase its private half.
    RetireKey {
        #[arg(long)]
        app: i64,
        #[arg(long, allow_hyphen_values = true)]
        kid: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a developer; prints it once.
    Add {
        #[arg(long)]
        developer: String,
    },
    /// List a developer's tokens (prefixes only).
    List {
        #[arg(long)]
        developer: String,
    },
    /// Revoke a token at once.
    Revoke {
        #[arg(long)]
        developer: String,
        #[arg(long)]
        id: i64,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to serve gRPC on.
    #[arg(long, env = "CORE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Failed attempts allowed per username and client address in the throttle window.
    #[arg(long, env = "CORE_THROTTLE_USERNAME_LIMIT", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub throttle_username_limit: u32,

    /// Failed attempts allowed per client address in the throttle window.
    #[arg(long, env = "CORE_THROTTLE_ADDRESS_LIMIT", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub throttle_address_limit: u32,

    /// Length of the sliding throttle window, in seconds.
    #[arg(long, env = "CORE_THROTTLE_WINDOW_SECS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=2_592_000))]
    pub throttle_window_secs: u64,

    /// Leading bits of an IPv6 client address the throttle counts as one client (an IPv4 address
    /// always counts whole).
    #[arg(long, env = "CORE_THROTTLE_IPV6_PREFIX", default_value_t = 64,
          value_parser = clap::value_parser!(u8).range(16..=128))]
    pub throttle_ipv6_prefix: u8,

    /// Seconds allowed for in-flight calls to finish at shutdown.
    #[arg(long, env = "CORE_SHUTDOWN_GRACE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_secs: u64,

    /// Longest a call may work, in seconds (an upload: longest wait for its next chunk).
    #[arg(long, env = "CORE_REQUEST_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout_secs: u64,

    /// Seconds a successful password check is remembered in memory after its last use, so
    /// frequent heartbeats skip Argon2 (0 disables).
    #[arg(long, env = "CORE_CREDENTIAL_CACHE_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub credential_cache_secs: u64,

    /// Largest binary `upload_file` accepts, in bytes.
    #[arg(long, env = "CORE_MAX_UPLOAD_BYTES", default_value_t = 512 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..=64 << 30))]
    pub max_upload_bytes: u64,

    /// A secret shared with the gateways (32+ visible ASCII characters): only callers presenting
    /// it are believed about their clients' addresses. Without it, only loopback callers are.
    #[arg(long, env = "CORE_GATEWAY_CREDENTIAL", value_name = "SECRET", hide_env_values = true)]
    pub gateway_credential: Option<String>,

    /// Serve Prometheus metrics over plain HTTP at `http://ADDR/metrics` (off when unset). Keep
    /// the address internal: the metrics name no user, but they show traffic.
    #[arg(long, env = "CORE_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// PEM certificate chain: with --tls-key, gRPC is served over TLS (plain TCP without both).
    #[arg(long, env = "CORE_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "CORE_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// PEM bundle of the CA that signs gateways' client certificates (needs --tls-cert): a caller
    /// presenting such a certificate is a gateway, believed about client addresses. Callers
    /// without one are still served.
    #[arg(long, env = "CORE_TLS_CLIENT_CA", value_name = "PATH")]
    pub tls_client_ca: Option<PathBuf>,
}

impl ServeArgs {
    /// The TLS identity, if any. Checked by hand rather than with clap's `requires`, whose error
    /// spans several lines.
    pub fn tls(&self) -> Result<Option<TlsFiles>, String> {
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err("--tls-client-ca (CORE_TLS_CLIENT_CA) needs --tls-cert and --tls-key: client certificates come with TLS".into());
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert: cert.clone(), key: key.clone() })),
            (None, None) => Ok(None),
            (Some(_), None) => Err("--tls-cert (CORE_TLS_CERT) needs --tls-key (CORE_TLS_KEY) too".into()),
            (None, Some(_)) => Err("--tls-key (CORE_TLS_KEY) needs --tls-cert (CORE_TLS_CERT) too".into()),
        }
    }

    /// The gateway credential, checked here rather than by clap, whose refusal would print the
    /// rejected secret.
    pub fn gateway_credential(&self) -> Result<Option<crate::service::GatewayCredential>, String> {
        self.gateway_credential
            .as_deref()
            .map(crate::service::GatewayCredential::parse)
            .transpose()
            .map_err(|reason| format!("--gateway-credential (CORE_GATEWAY_CREDENTIAL): {reason}"))
    }

    pub fn settings(&self, default_offline_grace: Duration) -> Settings {
        Settings {
            default_offline_grace,
            max_upload_bytes: self.max_upload_bytes,
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            credential_cache: Duration::from_secs(self.credential_cache_secs),
            // Checked at start (`gateway_credential`); a bad one never gets this far.
            gateway_credential: self.gateway_credential().ok().flatten(),
            throttle: ThrottleConfig {
                per_username: self.throttle_username_limit,
                per_address: self.throttle_address_limit,
                window: Duration::from_secs(self.throttle_window_secs),
                ipv6_prefix: self.throttle_ipv6_prefix,
                ..ThrottleConfig::default()
            },
            ..Settings::default()
        }
    }
}

impl Cli {
    pub fn default_offline_grace(&self) -> Duration {
        Duration::from_secs(self.default_offline_grace_secs)
    }

    /// The key-encryption key, read from its file (an unusable file is a start-up error).
    pub fn key_vault(&self) -> Result<KeyVault, String> {
        match &self.key_encryption_key_file {
            Some(path) => KeyVault::from_file(path),
            None => Ok(KeyVault::default()),
        }
    }

    pub fn db_config(&self) -> DbConfig {
        DbConfig {
            max_connections: self.db_max_connections,
            read_connections: self.db_read_connections,
            ..DbConfig::new(self.database_url.clone())
        }
    }
}
