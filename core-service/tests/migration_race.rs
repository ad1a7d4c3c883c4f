//! Processes that migrate a fresh database at the same moment (replicas starting together, a CLI
//! command run right after `serve`) must all start. Each round opens two independent connection
//! pools, as two processes would, and migrates through both at once.

mod common;

use core_service::storage::{self, DbConfig};
use sea_orm::ConnectionTrait;

const ROUNDS: usize = 8;

async fn race(url: &str) {
    let config = DbConfig::new(url.to_owned());
    let (a, b) = tokio::join!(storage::connect_and_migrate(&config), storage::connect_and_migrate(&config));
    let a = a.unwrap_or_else(|e| panic!("first migrator failed: {e}"));
    let b = b.unwrap_or_else(|e| panic!("second migrator failed: {e}"));
    // Both see the whole schema, applied once.
    for store in [&a, &b] {
        let rows = store
            .writer()
            .query_all_raw(sea_orm::Statement::from_string(
                store.writer().get_database_backend(),
                "SELECT version FROM seaql_migrations",
            ))
            .await
            .expect("migration table");
        use sea_orm_migration::MigratorTrait;
        let migrations = storage::migration::Migrator::migrations().len();
        assert_eq!(rows.len(), migrations, "each migration recorded exactly once");
    }
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_migrators_on_a_fresh_sqlite_file_both_succeed() {
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join(format!("race-{round}.db")).display());
        race(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "PostgreSQL: ./scripts/test runs it when PostgreSQL answers"]
async fn two_migrators_on_a_fresh_postgres_database_both_succeed() {
    let postgres = common::postgres().await;
    for round in 0..ROUNDS {
        let name = format!("licensing_race_{}_{round}", std::process::id());
        race(&postgres.create(&name).await).await;
        postgres.drop(&name).await;
    }
}
