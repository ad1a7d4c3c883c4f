//! Signing-key rotation: an app's Ed25519 keys move to a table of their own, each with the `kid`
//! its tokens name and a state (`signing`, `next`, `previous`, `retired`). The app row keeps a
//! copy of the signing key (and its `kid`) so that signing an answer still reads one row.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sea_orm_migration::prelude::*;
use sha2::{Digest, Sha256};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Apps {
    Table,
    Id,
    PublicKey,
    PrivateKey,
    SigningKid,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AppSigningKeys {
    Table,
    Id,
    AppId,
    Kid,
    PublicKey,
    PrivateKey,
    State,
    CreatedAt,
    RetiredAt,
}

const UNIQUE_KID: &str = "idx_app_signing_keys_app_kid";

/// RFC 7638 thumbprint of an Ed25519 public key, spelled out here so this migration always
/// computes what it computed when it was written.
fn thumbprint(public_key: &[u8]) -> String {
    let jwk = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, URL_SAFE_NO_PAD.encode(public_key));
    URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()))
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AppSigningKeys::Table)
                    .col(
                        ColumnDef::new(AppSigningKeys::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AppSigningKeys::AppId).big_integer().not_null())
                    .col(ColumnDef::new(AppSigningKeys::Kid).string_len(64).not_null())
                    .col(ColumnDef::new(AppSigningKeys::PublicKey).binary().not_null())
                    .col(ColumnDef::new(AppSigningKeys::PrivateKey).binary().not_null())
                    .col(ColumnDef::new(AppSigningKeys::State).string_len(16).not_null())
                    .col(ColumnDef::new(AppSigningKeys::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(AppSigningKeys::RetiredAt).timestamp_with_time_zone().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_app_signing_keys_app")
                            .from(AppSigningKeys::Table, AppSigningKeys::AppId)
                            .to(Apps::Table, Apps::Id)
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(UNIQUE_KID)
                    .table(AppSigningKeys::Table)
                    .col(AppSigningKeys::AppId)
                    .col(AppSigningKeys::Kid)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Apps::Table)
                    .add_column(ColumnDef::new(Apps::SigningKid).string_len(64).not_null().default(""))
                    .to_owned(),
            )
            .await?;
        // Each existing key becomes its app's signing key (SQLite has no SHA-256 to do it in SQL).
        let db = manager.get_connection();
        let apps = db
            .query_all(
                &Query::select()
                    .columns([Apps::Id, Apps::PublicKey, Apps::PrivateKey, Apps::CreatedAt])
                    .from(Apps::Table)
                    .to_owned(),
            )
            .await?;
        for app in apps {
            let id: i64 = app.try_get("", "id")?;
            let public: Vec<u8> = app.try_get("", "public_key")?;
            let private: Vec<u8> = app.try_get("", "private_key")?;
            let created: chrono::DateTime<chrono::Utc> = app.try_get("", "created_at")?;
            let kid = thumbprint(&public);
            db.execute(
                &Query::insert()
                    .into_table(AppSigningKeys::Table)
                    .columns([
                        AppSigningKeys::AppId,
                        AppSigningKeys::Kid,
                        AppSigningKeys::PublicKey,
                        AppSigningKeys::PrivateKey,
                        AppSigningKeys::State,
                        AppSigningKeys::CreatedAt,
                    ])
                    .values_panic([
                        id.into(),
                        kid.clone().into(),
                        public.into(),
                        private.into(),
                        "signing".into(),
                        created.into(),
                    ])
                    .to_owned(),
            )
            .await?;
            db.execute(
                &Query::update()
                    .table(Apps::Table)
                    .value(Apps::SigningKid, kid)
                    .and_where(Expr::col(Apps::Id).eq(id))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Apps::Table).drop_column(Apps::SigningKid).to_owned())
            .await?;
        manager.drop_table(Table::drop().table(AppSigningKeys::Table).to_owned()).await
    }
}

#[cfg(test)]
mod tests {
    /// The example of RFC 8037 appendix A.3: the thumbprint of its Ed25519 key.
    #[test]
    fn the_thumbprint_is_rfc_7638() {
        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
        let x = URL_SAFE_NO_PAD.decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").expect("b64");
        assert_eq!(super::thumbprint(&x), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }
}
