//! The use cases: each public method is one call of the API, applying the rules of `domain` over
//! the queries of `storage`, in the contract's order of checks.

mod admin;
mod client;
mod developer;
mod files;
mod keys;
mod sessions;
mod views;
mod warm;

use std::time::Duration;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection};

pub use admin::{AppCreated, TokenCreated, TokenInfo};
pub use client::{LoginOutput, RedeemOutput, Reply, UserAuthInput};
pub use developer::{ListPage, PageStream, ScopeInput};
pub use files::{Download, Upload};
pub use keys::{SigningKeyState, SigningKeyView};
pub use sessions::{ActivityDay, AppSummary, DeveloperInput, LicenceFilter, ListFilter, SessionOpened};
pub use views::{AppView, FileView, LicenceView, UserView};
pub use warm::WarmStats;

use crate::domain::{
    CoreError, Standing,
    keyvault::KeyVault,
    password::PasswordHasher,
    throttle::{Throttle, ThrottleConfig},
};
use crate::storage::{Store, pings::PingWriter, queries};

/// Bytes of one stored chunk of an uploaded binary (and of one download message).
pub const CHUNK_SIZE: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Offline grace given to apps created from now on.
    pub default_offline_grace: Duration,
    /// Largest binary `UploadFile` accepts.
    pub max_upload_bytes: u64,
    pub throttle: ThrottleConfig,
    /// Argon2 computations run at once.
    pub hash_workers: usize,
    /// Argon2 computations allowed to wait for a worker before calls are refused.
    pub hash_queue: usize,
    /// Longest time one call may work (uploads: longest wait for their next chunk).
    pub request_timeout: Duration,
    /// How long a successful password check is remembered (zero: never), so frequent heartbeats
    /// skip Argon2.
    pub credential_cache: Duration,
    /// The shared secret gateways present to be believed about client addresses; `None`
    /// believes loopback callers only.
    pub gateway_credential: Option<GatewayCredential>,
    /// Callers presenting a client certificate of the configured client CA are gateways (and
    /// loopback alone no longer makes one).
    pub gateways_by_certificate: bool,
    /// Seals apps' private keys at rest when the operator gave a key-encryption key.
    pub key_vault: KeyVault,
    /// A dashboard session ends after this long without a call...
    pub session_idle: Duration,
    /// ...and this long after sign-in, whatever its use.
    pub session_lifetime: Duration,
}

/// A secret shared by the core and its gateways. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct GatewayCredential(String);

impl GatewayCredential {
    pub fn parse(value: &str) -> Result<Self, String> {
        licensing::check_gateway_credential(value)?;
        Ok(GatewayCredential(value.to_owned()))
    }

    /// Compares in constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        crate::domain::secrets::constant_time_eq(self.0.as_bytes(), presented)
    }
}

impl std::fmt::Debug for GatewayCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewayCredential(***)")
    }
}

impl std::str::FromStr for GatewayCredential {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        Self::parse(value)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_offline_grace: Duration::from_secs(24 * 3600),
            max_upload_bytes: 512 * 1024 * 1024,
            throttle: ThrottleConfig::default(),
            hash_workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            hash_queue: 256,
            request_timeout: Duration::from_secs(30),
            credential_cache: Duration::from_secs(300),
            gateway_credential: None,
            gateways_by_certificate: false,
            key_vault: KeyVault::default(),
            session_idle: Duration::from_secs(30 * 60),
            session_lifetime: Duration::from_secs(12 * 3600),
        }
    }
}

/// The licensing core. Cheap to share behind an `Arc`; holds no rule-relevant state but the
/// throttle counters (which the contract allows per process).
pub struct Core {
    db: Store,
    pings: PingWriter,
    sign_ins: crate::storage::sign_ins::SignInReader,
    signing_keys: crate::domain::token::SigningKeys,
    hasher: PasswordHasher,
    throttle: Throttle,
    warm: warm::WarmCache,
    settings: Settings,
}

/// Most sign-ins a core remembers for warm heartbeats (a few hundred bytes each).
const WARM_SIGN_INS: usize = 50_000;

impl Core {
    pub fn new(db: Store, settings: Settings) -> Result<Self, CoreError> {
        Ok(Core {
            pings: PingWriter::new(db.writer().clone()),
            sign_ins: crate::storage::sign_ins::SignInReader::new(db.reader().clone()),
            signing_keys: crate::domain::token::SigningKeys::new(settings.key_vault.clone()),
            hasher: PasswordHasher::with_cache(
                settings.hash_workers,
                settings.hash_queue,
                settings.credential_cache,
            )?,
            throttle: Throttle::new(settings.throttle.clone()),
            warm: warm::WarmCache::new(settings.credential_cache, WARM_SIGN_INS)?,
            db,
            settings,
        })
    }

    /// How often this core answered a heartbeat from a remembered sign-in, and how often one was
    /// found out of date.
    pub fn warm_heartbeats(&self) -> WarmStats {
        self.warm.stats()
    }

    /// The writer connection (the one pool on PostgreSQL).
    pub fn db(&self) -> &DatabaseConnection {
        self.db.writer()
    }

    pub fn store(&self) -> &Store {
        &self.db
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Argon2 computations started so far (every password check costs exactly one).
    pub fn password_work(&self) -> u64 {
        self.hasher.computed()
    }

    /// Argon2 computations waiting or running now.
    pub fn password_queue(&self) -> usize {
        self.hasher.queued()
    }
}

/// A user's standing now, from the licences they hold.
pub(crate) async fn standing_of(c: &impl ConnectionTrait, user_id: i64) -> Result<Standing, CoreError> {
    let held = queries::held_licences(c, &[user_id]).await?;
    Ok(Standing::derive(held.get(&user_id).map(Vec::as_slice).unwrap_or(&[]), Utc::now()))
}
