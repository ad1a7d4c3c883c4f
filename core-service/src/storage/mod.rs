//! Persistence: entities, migrations and the queries the rules need. Every `DbErr` becomes a
//! `CoreError` here, so database text never reaches a client.

pub mod entities;
pub mod migration;
pub mod queries;

use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr, SqlErr};
use sea_orm_migration::MigratorTrait;

use crate::domain::CoreError;

/// The default database: a SQLite file in the working directory, created when missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://licensing.db?mode=rwc";

#[derive(Debug, Clone)]
pub struct DbConfig {
    pub url: String,
    /// Most connections to PostgreSQL (SQLite always uses one writer connection).
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl DbConfig {
    pub fn new(url: impl Into<String>) -> Self {
        DbConfig { url: url.into(), max_connections: 16, acquire_timeout: Duration::from_secs(5) }
    }

    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }
}

/// Opens the database and applies pending migrations.
pub async fn connect_and_migrate(config: &DbConfig) -> Result<DatabaseConnection, StorageError> {
    let db = connect(config).await?;
    migrate(&db).await?;
    Ok(db)
}

pub async fn connect(config: &DbConfig) -> Result<DatabaseConnection, StorageError> {
    let mut options = ConnectOptions::new(config.url.clone());
    options
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(config.acquire_timeout)
        .sqlx_logging(false);
    if config.is_sqlite() {
        // One connection serialises writers inside the process, so no transaction ever fails
        // with SQLITE_BUSY on a lock upgrade; WAL and the busy timeout cover other processes
        // (the CLI run beside `serve`).
        options.max_connections(1).min_connections(1).map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    } else {
        options.max_connections(config.max_connections).min_connections(1);
    }
    Database::connect(options)
        .await
        .map_err(|source| StorageError::Connect { url: redact(&config.url), source })
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), StorageError> {
    migration::Migrator::up(db, None).await.map_err(StorageError::Migrate)
}

/// Why the database could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot open the database {url}: {source} (is it running, reachable and writable?)")]
    Connect {
        url: String,
        #[source]
        source: DbErr,
    },
    #[error("cannot migrate the database: {0}")]
    Migrate(#[source] DbErr),
}

impl From<DbErr> for CoreError {
    fn from(err: DbErr) -> Self {
        match err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => CoreError::Unavailable(Box::new(err)),
            other => CoreError::Internal(Box::new(other)),
        }
    }
}

pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn messages_never_show_a_database_password() {
        assert_eq!(redact("postgres://app:s3cret@db:5432/lic"), "postgres://app:***@db:5432/lic");
        assert_eq!(redact("postgres://app@db/lic"), "postgres://app@db/lic");
        assert_eq!(redact("sqlite://licensing.db?mode=rwc"), "sqlite://licensing.db?mode=rwc");
    }
}
