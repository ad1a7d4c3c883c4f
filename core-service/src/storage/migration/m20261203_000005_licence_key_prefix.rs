//! Key-prefix search (the dashboard's licence search) without walking every licence. On SQLite the
//! search is a `GLOB`, which the existing unique index on `licence_key` (binary collation) serves;
//! on PostgreSQL a `LIKE` prefix can use an index only with `text_pattern_ops` (unless the
//! database's collation is C), so it gets one of its own.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "CREATE INDEX IF NOT EXISTS idx_licences_key_pattern ON licences (licence_key text_pattern_ops)",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("DROP INDEX IF EXISTS idx_licences_key_pattern")
                .await?;
        }
        Ok(())
    }
}
