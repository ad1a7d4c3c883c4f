//! Apps are found by a SHA-256 of their secret rather than by the secret itself, so no lookup
//! ever compares a presented secret with a stored one inside the database (where an index walk
//! compares byte by byte and takes longer the more leading bytes match).

use sea_orm_migration::prelude::*;
use sha2::{Digest, Sha256};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Apps {
    Table,
    Id,
    Secret,
    SecretHash,
}

const INDEX: &str = "idx_apps_secret_hash";

/// Lowercase hex of SHA-256, spelled out here rather than borrowed from the code of the day, so
/// this migration always computes what it computed when it was written.
fn secret_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Apps::Table)
                    .add_column(ColumnDef::new(Apps::SecretHash).string_len(64).not_null().default(""))
                    .to_owned(),
            )
            .await?;
        // Backfilled here rather than in SQL: SQLite has no SHA-256 function.
        let db = manager.get_connection();
        let apps = db
            .query_all(&Query::select().columns([Apps::Id, Apps::Secret]).from(Apps::Table).to_owned())
            .await?;
        for app in apps {
            let id: i64 = app.try_get("", "id")?;
            let secret: String = app.try_get("", "secret")?;
            let update = Query::update()
                .table(Apps::Table)
                .value(Apps::SecretHash, secret_hash(&secret))
                .and_where(Expr::col(Apps::Id).eq(id))
                .to_owned();
            db.execute(&update).await?;
        }
        manager
            .create_index(
                Index::create().name(INDEX).table(Apps::Table).col(Apps::SecretHash).unique().to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(INDEX).table(Apps::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Apps::Table).drop_column(Apps::SecretHash).to_owned()).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_hash_is_lowercase_hex_sha256() {
        assert_eq!(
            super::secret_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
