//! What the web dashboard needs: developer sessions (stored as hashes, with idle and absolute
//! limits) and daily activity aggregates kept by the heartbeat writer, so the activity chart
//! never scans pings.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Developers {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Apps {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum DeveloperSessions {
    Table,
    Id,
    DeveloperId,
    TokenHash,
    CreatedAt,
    LastUsedAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum AppActivityDays {
    Table,
    AppId,
    Day,
    Heartbeats,
}

#[derive(DeriveIden)]
enum AppActiveUsers {
    Table,
    AppId,
    Day,
    UserId,
}

fn cascade_to(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(ForeignKeyAction::Cascade)
        .on_update(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeveloperSessions::Table)
                    .col(
                        ColumnDef::new(DeveloperSessions::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(DeveloperSessions::DeveloperId).big_integer().not_null())
                    .col(ColumnDef::new(DeveloperSessions::TokenHash).binary().not_null().unique_key())
                    .col(ColumnDef::new(DeveloperSessions::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(DeveloperSessions::LastUsedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(DeveloperSessions::ExpiresAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(DeveloperSessions::RevokedAt).timestamp_with_time_zone().null())
                    .foreign_key(&mut cascade_to(
                        "fk_developer_sessions_developer",
                        (DeveloperSessions::Table, DeveloperSessions::DeveloperId),
                        (Developers::Table, Developers::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AppActivityDays::Table)
                    .col(ColumnDef::new(AppActivityDays::AppId).big_integer().not_null())
                    .col(ColumnDef::new(AppActivityDays::Day).string_len(10).not_null())
                    .col(ColumnDef::new(AppActivityDays::Heartbeats).big_integer().not_null())
                    .primary_key(Index::create().col(AppActivityDays::AppId).col(AppActivityDays::Day))
                    .foreign_key(&mut cascade_to(
                        "fk_app_activity_days_app",
                        (AppActivityDays::Table, AppActivityDays::AppId),
                        (Apps::Table, Apps::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AppActiveUsers::Table)
                    .col(ColumnDef::new(AppActiveUsers::AppId).big_integer().not_null())
                    .col(ColumnDef::new(AppActiveUsers::Day).string_len(10).not_null())
                    .col(ColumnDef::new(AppActiveUsers::UserId).big_integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(AppActiveUsers::AppId)
                            .col(AppActiveUsers::Day)
                            .col(AppActiveUsers::UserId),
                    )
                    .foreign_key(&mut cascade_to(
                        "fk_app_active_users_app",
                        (AppActiveUsers::Table, AppActiveUsers::AppId),
                        (Apps::Table, Apps::Id),
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AppActiveUsers::Table.into_iden(),
            AppActivityDays::Table.into_iden(),
            DeveloperSessions::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
