//! Persistence: entities, migrations and the queries the rules need. Every `DbErr` becomes a
//! `CoreError` here, so database text never reaches a client.

pub mod entities;
pub mod migration;
pub mod pings;
pub mod queries;
pub mod sign_ins;

use std::time::Duration;

use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbErr, SqlErr, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::domain::CoreError;

/// The default database: a SQLite file in the working directory, created when missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://licensing.db?mode=rwc";

/// PostgreSQL connections per core. Measured, not guessed (`scripts/bench`, BENCHMARKS.md): with
/// the database on the same 2 cores, 2 to 4 connections gave a third more heartbeats than 16,
/// whose backends only fought over the CPU. Raise it when PostgreSQL has cores of its own.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4;

#[derive(Debug, Clone)]
pub struct DbConfig {
    pub url: String,
    /// Most connections to PostgreSQL (SQLite always uses one writer connection).
    pub max_connections: u32,
    /// Read-only connections beside SQLite's one writer (PostgreSQL reads share its pool).
    pub read_connections: u32,
    pub acquire_timeout: Duration,
}

impl DbConfig {
    pub fn new(url: impl Into<String>) -> Self {
        DbConfig {
            url: url.into(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            read_connections: 4,
            acquire_timeout: Duration::from_secs(5),
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }
}

/// The database as the core uses it: writes go to `writer`; reads that need not see the
/// caller's own uncommitted writes go to `reader`. On SQLite the reader is a pool of read-only
/// connections, which WAL lets run beside the single writer, so a heartbeat's lookups never queue
/// behind another call's fsync. On PostgreSQL both are the same pool.
#[derive(Clone)]
pub struct Store {
    writer: DatabaseConnection,
    reader: DatabaseConnection,
    separate_reader: bool,
}

impl Store {
    /// A store whose reads and writes share one connection pool.
    pub fn single(db: DatabaseConnection) -> Self {
        Store { reader: db.clone(), writer: db, separate_reader: false }
    }

    pub fn writer(&self) -> &DatabaseConnection {
        &self.writer
    }

    pub fn reader(&self) -> &DatabaseConnection {
        &self.reader
    }

    /// Whether reads have a pool of their own (SQLite with read connections).
    pub fn has_separate_reader(&self) -> bool {
        self.separate_reader
    }

    pub async fn close(self) {
        self.reader.close().await.ok();
        self.writer.close().await.ok();
    }
}

/// Opens the database, applies pending migrations, then opens the read pool.
pub async fn connect_and_migrate(config: &DbConfig) -> Result<Store, StorageError> {
    let writer = connect(config).await?;
    migrate(&writer).await?;
    if !config.is_sqlite() || config.read_connections == 0 || config.url.contains(":memory:") {
        return Ok(Store::single(writer));
    }
    // Opened after the migration, so the file exists and is already in WAL mode.
    let mut options = base_options(config);
    options
        .max_connections(config.read_connections)
        .min_connections(1)
        .map_sqlx_sqlite_opts(|o| o.read_only(true).busy_timeout(SQLITE_BUSY_TIMEOUT));
    let reader = open(options, config).await?;
    Ok(Store { writer, reader, separate_reader: true })
}

/// Settles a transaction: commits after `Ok`, rolls back after `Err`. The caller always gets the
/// outcome it produced (or the commit's failure); a failed rollback is only logged, since the
/// database discards an unfinished transaction anyway and the original error is the one that
/// explains what went wrong.
pub async fn settle<T>(txn: DatabaseTransaction, outcome: Result<T, CoreError>) -> Result<T, CoreError> {
    match outcome {
        Ok(value) => {
            txn.commit().await?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = txn.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed after an error");
            }
            Err(error)
        }
    }
}

/// Begins a read-only transaction that sees one consistent snapshot for all its reads
/// (PostgreSQL: REPEATABLE READ; SQLite: a deferred transaction, whose first read fixes the WAL
/// snapshot).
pub async fn begin_snapshot(db: &DatabaseConnection) -> Result<DatabaseTransaction, CoreError> {
    let _waiting = Waiting::start();
    Ok(match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            db.begin_with_config(
                Some(sea_orm::IsolationLevel::RepeatableRead),
                Some(sea_orm::AccessMode::ReadOnly),
            )
            .await?
        }
        _ => db.begin().await?,
    })
}

/// Begins a transaction on the writer.
pub async fn begin(db: &DatabaseConnection) -> Result<DatabaseTransaction, CoreError> {
    let _waiting = Waiting::start();
    Ok(db.begin().await?)
}

/// Counts a transaction in `licensing_core_db_transactions_waiting` until it has its connection
/// (or gave up).
struct Waiting;

impl Waiting {
    fn start() -> Self {
        crate::metrics::metrics().db_waiting.inc();
        Waiting
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        crate::metrics::metrics().db_waiting.dec();
    }
}

/// Connections of a pool in use and idle now.
pub fn pool_usage(db: &DatabaseConnection) -> (i64, i64) {
    let (size, idle) = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        sea_orm::DbBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => (0, 0),
    };
    let idle = i64::try_from(idle).unwrap_or(i64::MAX);
    (i64::from(size).saturating_sub(idle).max(0), idle)
}

/// How long SQLite waits for another connection's lock before a statement fails.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A pooled PostgreSQL connection idle at least this long is pinged before use.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// What every pool shares: the URL, the timeouts, no statement logging, and no ping before every
/// use. The pool's default pings each connection it hands out: one more round trip per query
/// (on PostgreSQL, to the server; on SQLite, to the connection's worker thread), which cost the
/// heartbeat and the refused path more than their query. A PostgreSQL connection that sat idle
/// is still pinged first, since a server restart or a proxy may have dropped it; a SQLite
/// connection cannot be dropped.
fn base_options(config: &DbConfig) -> ConnectOptions {
    let mut options = ConnectOptions::new(config.url.clone());
    options
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(config.acquire_timeout)
        .sqlx_logging(false);
    if config.is_sqlite() {
        options.test_before_acquire(false);
    } else {
        options.test_before_acquire_if_idle_for(PING_AFTER_IDLE);
    }
    options
}

pub async fn connect(config: &DbConfig) -> Result<DatabaseConnection, StorageError> {
    let mut options = base_options(config);
    if config.is_sqlite() {
        // One connection serialises writers inside the process, so no transaction ever fails
        // with SQLITE_BUSY on a lock upgrade; WAL and the busy timeout cover other processes
        // (the CLI run beside `serve`).
        options.max_connections(1).min_connections(1).map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Full)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
        });
    } else {
        options.max_connections(config.max_connections).min_connections(1);
    }
    open(options, config).await
}

/// Opens a pool. Switching a fresh SQLite file into WAL mode needs a lock that SQLite's busy
/// handler does not wait for, so two processes opening a new file at the same moment (a CLI
/// command right after `serve`) can see SQLITE_BUSY here: wait and try again, as the busy timeout
/// would.
async fn open(options: ConnectOptions, config: &DbConfig) -> Result<DatabaseConnection, StorageError> {
    let deadline = std::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(20);
    loop {
        match Database::connect(options.clone()).await {
            Ok(db) => return Ok(db),
            Err(source) if is_busy(&source) && std::time::Instant::now() < deadline => {
                tracing::debug!(error = %source, "the database is locked while opening; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Err(source) => return Err(StorageError::Connect { url: redact(&config.url), source }),
        }
    }
}

/// SQLITE_BUSY (and its extended codes): another connection holds a lock for now.
fn is_busy(err: &DbErr) -> bool {
    database_code(err).and_then(|c| c.parse::<i32>().ok()).is_some_and(|code| code & 0xff == 5)
}

/// The database's own error code (SQLite's result code, PostgreSQL's SQLSTATE), when the database
/// refused a statement or a connection.
pub(crate) fn database_code(err: &DbErr) -> Option<String> {
    let (DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e))
    | DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
    | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e))) = err
    else {
        return None;
    };
    match e.as_ref() {
        sea_orm::sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// What each caller waiting on a failed batch (of pings, of sign-in reads) is answered: one error
/// apiece, classified as `From<DbErr>` classifies, with `internal` as the message when the database
/// is not simply unavailable.
pub(crate) fn batch_failure(err: &DbErr, internal: &'static str) -> impl Fn() -> CoreError {
    let unavailable = matches!(err, DbErr::ConnectionAcquire(_) | DbErr::Conn(_));
    move || {
        if unavailable {
            CoreError::Unavailable("the database is unavailable".into())
        } else {
            CoreError::internal(internal)
        }
    }
}

/// The file a SQLite URL names, if it names one (not an in-memory database).
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(":memory:") {
        return None;
    }
    Some(std::path::PathBuf::from(path))
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

/// Applies pending migrations. Several processes may do this at the same moment on a fresh
/// database (replicas starting together, a CLI command beside `serve`): each migration runs in a
/// transaction, so the loser of such a race rolls back; it then finds nothing pending, because the
/// winner applied it, and carries on. A failure that leaves migrations pending is retried a few
/// times with backoff, then reported.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), StorageError> {
    const ATTEMPTS: u32 = 5;
    let mut attempt = 1;
    loop {
        let error = match migration::Migrator::up(db, None).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let pending = migration::Migrator::get_pending_migrations(db).await.map(|p| p.len());
        if pending.as_ref().is_ok_and(|n| *n == 0) {
            tracing::debug!(%error, "another process applied the migrations first");
            return Ok(());
        }
        if attempt == ATTEMPTS {
            return Err(StorageError::Migrate(error));
        }
        tracing::debug!(%error, attempt, "migration failed with migrations still pending; retrying");
        tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
        attempt += 1;
    }
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
    use super::{redact, sqlite_file};

    #[test]
    fn the_file_of_a_sqlite_url() {
        assert_eq!(sqlite_file("sqlite://licensing.db?mode=rwc"), Some("licensing.db".into()));
        assert_eq!(sqlite_file("sqlite:///var/lib/l.db"), Some("/var/lib/l.db".into()));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://u@h/db"), None);
    }

    #[test]
    fn messages_never_show_a_database_password() {
        assert_eq!(redact("postgres://app:s3cret@db:5432/lic"), "postgres://app:***@db:5432/lic");
        assert_eq!(redact("postgres://app@db/lic"), "postgres://app@db/lic");
        assert_eq!(redact("sqlite://licensing.db?mode=rwc"), "sqlite://licensing.db?mode=rwc");
    }
}
