use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Developers {
    Table,
    Id,
    Username,
    PasswordHash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    DeveloperId,
    TokenHash,
    Prefix,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Apps {
    Table,
    Id,
    DeveloperId,
    Name,
    Secret,
    PublicKey,
    PrivateKey,
    Online,
    Version,
    OfflineGraceSecs,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    AppId,
    Username,
    Email,
    PasswordHash,
    Hwid,
    Joined,
    TotalPings,
    LastSeen,
    HasLicence,
}

#[derive(DeriveIden)]
enum Licences {
    Table,
    Id,
    AppId,
    LicenceKey,
    Access,
    ExpireTime,
    CreatedAt,
    UserId,
    Redeemed,
    RedeemedAt,
    Banned,
}

#[derive(DeriveIden)]
enum AppFiles {
    Table,
    Id,
    AppId,
    Filename,
    Size,
    Sha256,
    Complete,
    CreatedAt,
}

#[derive(DeriveIden)]
enum FileChunks {
    Table,
    FileId,
    Seq,
    Data,
}

fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().auto_increment().primary_key().take()
}

fn timestamp(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).timestamp_with_time_zone().not_null().take()
}

fn index<C: IntoIden>(
    name: &str,
    table: impl IntoIden,
    cols: impl IntoIterator<Item = C>,
) -> IndexCreateStatement {
    let mut index = Index::create().name(name).table(table).take();
    for col in cols {
        index.col(col);
    }
    index
}

fn unique_index<C: IntoIden>(
    name: &str,
    table: impl IntoIden,
    cols: impl IntoIterator<Item = C>,
) -> IndexCreateStatement {
    index(name, table, cols).unique().take()
}

fn fk(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(on_delete)
        .on_update(ForeignKeyAction::Cascade)
        .take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    // sea-orm wraps only PostgreSQL migrations by default; SQLite DDL is transactional too, and a
    // half-created schema must never be left behind.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Developers::Table)
                    .col(id(Developers::Id))
                    .col(ColumnDef::new(Developers::Username).string_len(256).not_null().unique_key())
                    .col(ColumnDef::new(Developers::PasswordHash).text().not_null())
                    .col(timestamp(Developers::CreatedAt))
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .col(id(ApiTokens::Id))
                    .col(ColumnDef::new(ApiTokens::DeveloperId).big_integer().not_null())
                    .col(ColumnDef::new(ApiTokens::TokenHash).binary().not_null().unique_key())
                    .col(ColumnDef::new(ApiTokens::Prefix).string_len(16).not_null())
                    .col(timestamp(ApiTokens::CreatedAt))
                    .col(ColumnDef::new(ApiTokens::RevokedAt).timestamp_with_time_zone().null())
                    .foreign_key(&mut fk(
                        "fk_api_tokens_developer",
                        (ApiTokens::Table, ApiTokens::DeveloperId),
                        (Developers::Table, Developers::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index("idx_api_tokens_developer", ApiTokens::Table, [ApiTokens::DeveloperId]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Apps::Table)
                    .col(id(Apps::Id))
                    .col(ColumnDef::new(Apps::DeveloperId).big_integer().not_null())
                    .col(ColumnDef::new(Apps::Name).string_len(256).not_null())
                    // The secret is the lookup key of every call: unique, hence indexed.
                    .col(ColumnDef::new(Apps::Secret).string_len(128).not_null().unique_key())
                    .col(ColumnDef::new(Apps::PublicKey).binary().not_null())
                    .col(ColumnDef::new(Apps::PrivateKey).binary().not_null())
                    .col(ColumnDef::new(Apps::Online).boolean().not_null())
                    .col(ColumnDef::new(Apps::Version).string_len(256).null())
                    .col(ColumnDef::new(Apps::OfflineGraceSecs).big_integer().not_null())
                    .col(timestamp(Apps::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_apps_developer",
                        (Apps::Table, Apps::DeveloperId),
                        (Developers::Table, Developers::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .take(),
            )
            .await?;
        manager.create_index(index("idx_apps_developer", Apps::Table, [Apps::DeveloperId])).await?;

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(id(Users::Id))
                    .col(ColumnDef::new(Users::AppId).big_integer().not_null())
                    .col(ColumnDef::new(Users::Username).string_len(256).not_null())
                    .col(ColumnDef::new(Users::Email).string_len(1024).not_null())
                    .col(ColumnDef::new(Users::PasswordHash).text().not_null())
                    .col(ColumnDef::new(Users::Hwid).string_len(1024).null())
                    .col(timestamp(Users::Joined))
                    .col(ColumnDef::new(Users::TotalPings).big_integer().not_null().default(0))
                    .col(ColumnDef::new(Users::LastSeen).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Users::HasLicence).boolean().not_null().default(false))
                    .foreign_key(&mut fk(
                        "fk_users_app",
                        (Users::Table, Users::AppId),
                        (Apps::Table, Apps::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .take(),
            )
            .await?;
        // Unique (app, username): also the index of every end-user lookup.
        manager
            .create_index(unique_index(
                "uq_users_app_username",
                Users::Table,
                [Users::AppId, Users::Username],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Licences::Table)
                    .col(id(Licences::Id))
                    .col(ColumnDef::new(Licences::AppId).big_integer().not_null())
                    .col(ColumnDef::new(Licences::LicenceKey).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(Licences::Access).small_integer().not_null())
                    .col(timestamp(Licences::ExpireTime))
                    .col(timestamp(Licences::CreatedAt))
                    .col(ColumnDef::new(Licences::UserId).big_integer().null())
                    .col(ColumnDef::new(Licences::Redeemed).boolean().not_null().default(false))
                    .col(ColumnDef::new(Licences::RedeemedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Licences::Banned).boolean().not_null().default(false))
                    .check(Expr::col(Licences::Access).between(0, 9))
                    .foreign_key(&mut fk(
                        "fk_licences_app",
                        (Licences::Table, Licences::AppId),
                        (Apps::Table, Apps::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    // Deleting a user unbinds their licences; the keys stay redeemed.
                    .foreign_key(&mut fk(
                        "fk_licences_user",
                        (Licences::Table, Licences::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::SetNull,
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index("idx_licences_app_id", Licences::Table, [Licences::AppId, Licences::Id]))
            .await?;
        manager.create_index(index("idx_licences_user", Licences::Table, [Licences::UserId])).await?;

        manager
            .create_table(
                Table::create()
                    .table(AppFiles::Table)
                    .col(id(AppFiles::Id))
                    .col(ColumnDef::new(AppFiles::AppId).big_integer().not_null())
                    .col(ColumnDef::new(AppFiles::Filename).string_len(1024).not_null())
                    .col(ColumnDef::new(AppFiles::Size).big_integer().not_null())
                    .col(ColumnDef::new(AppFiles::Sha256).string_len(64).not_null())
                    .col(ColumnDef::new(AppFiles::Complete).boolean().not_null().default(false))
                    .col(timestamp(AppFiles::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_app_files_app",
                        (AppFiles::Table, AppFiles::AppId),
                        (Apps::Table, Apps::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .take(),
            )
            .await?;
        manager
            .create_index(index("idx_app_files_app", AppFiles::Table, [AppFiles::AppId, AppFiles::Complete]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(FileChunks::Table)
                    .col(ColumnDef::new(FileChunks::FileId).big_integer().not_null())
                    .col(ColumnDef::new(FileChunks::Seq).integer().not_null())
                    .col(ColumnDef::new(FileChunks::Data).blob().not_null())
                    .primary_key(Index::create().col(FileChunks::FileId).col(FileChunks::Seq))
                    .foreign_key(&mut fk(
                        "fk_file_chunks_file",
                        (FileChunks::Table, FileChunks::FileId),
                        (AppFiles::Table, AppFiles::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .take(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            FileChunks::Table.into_iden(),
            AppFiles::Table.into_iden(),
            Licences::Table.into_iden(),
            Users::Table.into_iden(),
            Apps::Table.into_iden(),
            ApiTokens::Table.into_iden(),
            Developers::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).take()).await?;
        }
        Ok(())
    }
}
