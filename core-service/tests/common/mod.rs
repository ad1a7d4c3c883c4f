//! PostgreSQL for the core's own integration tests: fresh databases on the server named by
//! `TEST_POSTGRES_URL` (default: the local one), dropped after use.

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

/// The server's admin connection and the URL prefix its databases share. PostgreSQL tests are
/// `#[ignore]`d unless asked for (`./scripts/test` asks when the server answers), so an
/// unreachable server here fails the test rather than passing it silently.
pub async fn postgres() -> Postgres {
    let admin_url = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    match Database::connect(&admin_url).await {
        Ok(admin) => {
            let base =
                admin_url.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or_else(|| admin_url.clone());
            Postgres { admin, base }
        }
        Err(error) => panic!("PostgreSQL unreachable at {admin_url}: {error}"),
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
