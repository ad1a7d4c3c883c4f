//! PostgreSQL for the core's own integration tests: fresh databases on the server named by
//! `TEST_POSTGRES_URL` (default: the local one), dropped after use.

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

/// The server's admin connection and the URL prefix its databases share; `None` (with a note)
/// when PostgreSQL is unreachable outside CI. In CI it must be reachable.
pub async fn postgres() -> Option<Postgres> {
    let admin_url = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    match Database::connect(&admin_url).await {
        Ok(admin) => {
            let base =
                admin_url.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or_else(|| admin_url.clone());
            Some(Postgres { admin, base })
        }
        Err(error) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "PostgreSQL is required in CI: {error}");
            eprintln!("PostgreSQL unreachable: test skipped ({error})");
            None
        }
    }
}

pub struct Postgres {
    admin: DatabaseConnection,
    base: String,
}

impl Postgres {
    /// Creates database `name` and returns its URL.
    pub async fn create(&self, name: &str) -> String {
        self.admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await.expect("create database");
        format!("{}/{name}", self.base)
    }

    pub async fn drop(&self, name: &str) {
        self.admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .expect("drop database");
    }
}
