//! Operator commands (the CLI): developers, apps and API tokens.

use chrono::Utc;
use serde::Serialize;

use super::{AppView, Core};
use crate::{
    domain::{CoreError, Password, Username, parse_app_name, parse_version, secrets},
    storage::{
        entities::{app, developer},
        queries,
    },
};

/// What `app add` prints: the shape of `get_app_data` without `status`.
#[derive(Debug, Serialize)]
pub struct AppCreated {
    pub appname: String,
    pub secret: String,
    pub public: String,
    pub online: u8,
    pub version: Option<String>,
}

impl From<AppView> for AppCreated {
    fn from(a: AppView) -> Self {
        AppCreated {
            appname: a.name,
            secret: a.secret,
            public: a.public_key,
            online: u8::from(a.online),
            version: a.version,
        }
    }
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
        let (private_key, public_key) = secrets::new_signing_key()?;
        let grace = i64::try_from(self.settings.default_offline_grace.as_secs()).unwrap_or(i64::MAX);
        let secret = secrets::new_app_secret()?;
        let model = app::ActiveModel {
            developer_id: sea_orm::Set(dev.id),
            name: sea_orm::Set(name),
            secret_hash: sea_orm::Set(secrets::app_secret_hash(&secret)),
            secret: sea_orm::Set(secret),
            public_key: sea_orm::Set(public_key.to_vec()),
            private_key: sea_orm::Set(private_key.to_vec()),
            online: sea_orm::Set(true),
            version: sea_orm::Set(version),
            offline_grace_secs: sea_orm::Set(grace),
            created_at: sea_orm::Set(Utc::now()),
            ..Default::default()
        };
        Ok(queries::insert_app(self.db.writer(), model).await?.into())
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
