//! Operator commands (the CLI): developers, apps and API tokens.

use chrono::Utc;
use serde::Serialize;

use base64::Engine;
use sea_orm::ActiveModelTrait;

use super::{AppView, Core, SigningKeyState, SigningKeyView};
use crate::{
    domain::{CoreError, Password, Username, parse_app_name, parse_version, secrets},
    storage::{
        self,
        entities::{app, developer},
        queries,
    },
};

/// What `app add` prints: the shape of `get_app_data` without `status`, plus the app's id (what
/// the other `app` commands take).
#[derive(Debug, Serialize)]
pub struct AppCreated {
    pub id: i64,
    pub appname: String,
    pub secret: String,
    pub public: String,
    pub online: u8,
    pub version: Option<String>,
    pub keys: Vec<SigningKeyView>,
}

impl From<AppView> for AppCreated {
    fn from(a: AppView) -> Self {
        AppCreated {
            id: a.id,
            keys: a.keys,
            appname: a.name,
            secret: a.secret,
            public: a.public_key,
            online: u8::from(a.online),
            version: a.version,
        }
    }
}

/// One line of `app list`: never the secret.
#[derive(Debug, Serialize)]
pub struct AppListed {
    pub id: i64,
    pub appname: String,
    pub online: u8,
    pub version: Option<String>,
    pub public: String,
}

/// A new API token: the only time its text is shown.
#[derive(Serialize)]
pub struct TokenCreated {
    pub id: i64,
    pub developer: String,
    pub token: String,
}

#[derive(Debug, Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub prefix: String,
    pub created: String,
    pub revoked: Option<String>,
}

impl Core {
    pub async fn add_developer(&self, username: &str, password: &str) -> Result<developer::Model, CoreError> {
        let username = Username::parse("username", username)?;
        let password = Password::parse("password", password)?;
        if queries::find_developer(self.db.writer(), username.as_str()).await?.is_some() {
            return Err(CoreError::UsernameTaken);
        }
        let hash = self.hasher.hash(&password).await?;
        queries::insert_developer(self.db.writer(), username.as_str(), hash)
            .await
            .map_err(|e| e.or_duplicate(CoreError::UsernameTaken))
    }

    async fn developer_named(&self, username: &str) -> Result<developer::Model, CoreError> {
        queries::find_developer(self.db.writer(), username)
            .await?
            .ok_or(CoreError::NotFound("no developer with that username"))
    }

    pub async fn add_app(
        &self,
        developer: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<AppView, CoreError> {
        let name = parse_app_name(name)?;
        let version = version.map(parse_version).transpose()?;
        let dev = self.developer_named(developer).await?;
        self.insert_app(dev.id, name, version).await
    }

    /// A new app of `developer_id`: online, a new secret, and its first signing key, together.
    pub(super) async fn insert_app(
        &self,
        developer_id: i64,
        name: String,
        version: Option<String>,
    ) -> Result<AppView, CoreError> {
        let (key_row, kid, public_key, private_key) =
            super::keys::new_key_row(self, None, SigningKeyState::Signing)?;
        let grace = i64::try_from(self.settings.default_offline_grace.as_secs()).unwrap_or(i64::MAX);
        let secret = secrets::new_app_secret()?;
        let model = app::ActiveModel {
            developer_id: sea_orm::Set(developer_id),
            name: sea_orm::Set(name),
            secret_hash: sea_orm::Set(secrets::app_secret_hash(&secret)),
            secret: sea_orm::Set(secret),
            public_key: sea_orm::Set(public_key),
            private_key: sea_orm::Set(private_key),
            signing_kid: sea_orm::Set(kid),
            online: sea_orm::Set(true),
            version: sea_orm::Set(version),
            offline_grace_secs: sea_orm::Set(grace),
            created_at: sea_orm::Set(Utc::now()),
            ..Default::default()
        };
        // The app and its first key together, or neither.
        let txn = storage::begin(self.db.writer()).await?;
        let outcome = async {
            let app = queries::insert_app(&txn, model).await?;
            let mut key_row = key_row;
            key_row.app_id = sea_orm::Set(app.id);
            key_row.insert(&txn).await?;
            Ok(app)
        }
        .await;
        let app = storage::settle(txn, outcome).await?;
        self.app_view(app).await
    }

    /// The developer's apps, oldest first.
    pub async fn list_apps(&self, developer: &str) -> Result<Vec<AppListed>, CoreError> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
        let dev = self.developer_named(developer).await?;
        let apps = app::Entity::find()
            .filter(app::Column::DeveloperId.eq(dev.id))
            .order_by_asc(app::Column::Id)
            .all(self.db.writer())
            .await?;
        Ok(apps
            .into_iter()
            .map(|a| AppListed {
                id: a.id,
                public: base64::engine::general_purpose::STANDARD.encode(&a.public_key),
                appname: a.name,
                online: u8::from(a.online),
                version: a.version,
            })
            .collect())
    }

    pub async fn add_token(&self, developer: &str) -> Result<TokenCreated, CoreError> {
        let dev = self.developer_named(developer).await?;
        let token = secrets::new_api_token()?;
        let prefix: String = token.chars().take(10).collect();
        let row = queries::insert_token(self.db.writer(), dev.id, secrets::sha256(token.as_bytes()), prefix)
            .await?;
        Ok(TokenCreated { id: row.id, developer: dev.username, token })
    }

    pub async fn list_tokens(&self, developer: &str) -> Result<Vec<TokenInfo>, CoreError> {
        let dev = self.developer_named(developer).await?;
        let fmt = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
        Ok(queries::list_tokens(self.db.writer(), dev.id)
            .await?
            .into_iter()
            .map(|t| TokenInfo {
                id: t.id,
                prefix: t.prefix,
                created: fmt(t.created_at),
                revoked: t.revoked_at.map(fmt),
            })
            .collect())
    }

    pub async fn revoke_token(&self, developer: &str, token_id: i64) -> Result<(), CoreError> {
        let dev = self.developer_named(developer).await?;
        if !queries::revoke_token(self.db.writer(), dev.id, token_id).await? {
            return Err(CoreError::NotFound("the developer has no live token with that id"));
        }
        Ok(())
    }
}
