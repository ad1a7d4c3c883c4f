//! Signing-key rotation. An app has exactly one `signing` key and any number of published ones
//! that do not sign: `next` (added, waiting to be promoted, so clients can pin it first) and
//! `previous` (signed before the last promotion; still verifies until the vendor retires it).
//! A retired key is no longer published and its private half is erased.

use base64::Engine;
use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::{AppView, Core, ScopeInput};
use crate::{
    domain::{CoreError, keyvault::KeyVault, secrets, token::kid_of},
    storage::{
        self,
        entities::{app, app_signing_key as key},
    },
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKeyState {
    Signing,
    Next,
    Previous,
}

impl SigningKeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningKeyState::Signing => "signing",
            SigningKeyState::Next => "next",
            SigningKeyState::Previous => "previous",
        }
    }

    fn parse(stored: &str) -> Option<Self> {
        match stored {
            "signing" => Some(SigningKeyState::Signing),
            "next" => Some(SigningKeyState::Next),
            "previous" => Some(SigningKeyState::Previous),
            _ => None,
        }
    }
}

const RETIRED: &str = "retired";

/// A published key as clients see it: never the private half.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SigningKeyView {
    pub kid: String,
    /// Base64 (standard, padded) of the 32 raw public key bytes.
    #[serde(rename = "public")]
    pub public_key: String,
    #[serde(serialize_with = "state_name")]
    pub state: SigningKeyState,
    #[serde(skip)]
    pub created: DateTime<Utc>,
}

fn state_name<S: serde::Serializer>(state: &SigningKeyState, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(state.as_str())
}

/// A new key pair for `app_id` in `state`: the row to insert, and the private half as stored.
pub(super) fn new_key_row(
    core: &Core,
    app_id: Option<i64>,
    state: SigningKeyState,
) -> Result<(key::ActiveModel, String, Vec<u8>, Vec<u8>), CoreError> {
    let (seed, public) = secrets::new_signing_key()?;
    let kid = kid_of(&public);
    let stored = core.settings.key_vault.seal(&kid, &seed)?;
    let row = key::ActiveModel {
        app_id: app_id.map(Set).unwrap_or_default(),
        kid: Set(kid.clone()),
        public_key: Set(public.to_vec()),
        private_key: Set(stored.clone()),
        state: Set(state.as_str().to_owned()),
        created_at: Set(Utc::now()),
        retired_at: Set(None),
        ..Default::default()
    };
    Ok((row, kid, public.to_vec(), stored))
}

async fn published(c: &impl ConnectionTrait, app_id: i64) -> Result<Vec<SigningKeyView>, CoreError> {
    let rows = key::Entity::find()
        .filter(key::Column::AppId.eq(app_id))
        .filter(key::Column::State.ne(RETIRED))
        .order_by_asc(key::Column::Id)
        .all(c)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some(SigningKeyView {
                state: SigningKeyState::parse(&row.state)?,
                public_key: base64::engine::general_purpose::STANDARD.encode(&row.public_key),
                kid: row.kid,
                created: row.created_at,
            })
        })
        .collect())
}

async fn key_named(c: &impl ConnectionTrait, app_id: i64, kid: &str) -> Result<key::Model, CoreError> {
    key::Entity::find()
        .filter(key::Column::AppId.eq(app_id))
        .filter(key::Column::Kid.eq(kid))
        .filter(key::Column::State.ne(RETIRED))
        .one(c)
        .await?
        .ok_or(CoreError::NotFound("no published signing key of this app has that kid"))
}

fn parse_kid(kid: &str) -> Result<&str, CoreError> {
    let kid = kid.trim();
    if kid.is_empty() {
        return Err(CoreError::MissingField { field: "kid" });
    }
    // A thumbprint is 43 characters of base64url; anything far from that names no key.
    if kid.len() > 64 || !kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(CoreError::invalid("kid", "expected a key id as listed with the app's keys"));
    }
    Ok(kid)
}

impl Core {
    /// The app as its developer sees it, with its published keys (read from the writer, so a
    /// change this call just made is seen).
    pub(super) async fn app_view(&self, app: app::Model) -> Result<AppView, CoreError> {
        let keys = published(self.db.writer(), app.id).await?;
        Ok(AppView::new(app, keys))
    }

    async fn app_by_id(&self, app_id: i64) -> Result<app::Model, CoreError> {
        app::Entity::find_by_id(app_id)
            .one(self.db.writer())
            .await?
            .ok_or(CoreError::NotFound("no app with that id"))
    }

    /// The published keys of an app (operator's view, by app id).
    pub async fn signing_keys(&self, app_id: i64) -> Result<Vec<SigningKeyView>, CoreError> {
        self.app_by_id(app_id).await?;
        published(self.db.writer(), app_id).await
    }

    /// Adds a `next` key: published at once, signing nothing until promoted.
    pub async fn add_signing_key(&self, app_id: i64) -> Result<Vec<SigningKeyView>, CoreError> {
        self.app_by_id(app_id).await?;
        let (row, kid, _, _) = new_key_row(self, Some(app_id), SigningKeyState::Next)?;
        row.insert(self.db.writer()).await?;
        tracing::info!(app_id, kid, "signing key added (next)");
        published(self.db.writer(), app_id).await
    }

    /// Makes a published key the signing key; the signing key before it becomes `previous`.
    pub async fn promote_signing_key(
        &self,
        app_id: i64,
        kid: &str,
    ) -> Result<Vec<SigningKeyView>, CoreError> {
        let kid = parse_kid(kid)?;
        self.app_by_id(app_id).await?;
        let txn = storage::begin(self.db.writer()).await?;
        let outcome = async {
            let chosen = key_named(&txn, app_id, kid).await?;
            if chosen.state == SigningKeyState::Signing.as_str() {
                return Ok(());
            }
            key::Entity::update_many()
                .col_expr(
                    key::Column::State,
                    sea_orm::sea_query::Expr::value(SigningKeyState::Previous.as_str()),
                )
                .filter(key::Column::AppId.eq(app_id))
                .filter(key::Column::State.eq(SigningKeyState::Signing.as_str()))
                .exec(&txn)
                .await?;
            let app_row = app::ActiveModel {
                id: sea_orm::Unchanged(app_id),
                public_key: Set(chosen.public_key.clone()),
                private_key: Set(chosen.private_key.clone()),
                signing_kid: Set(chosen.kid.clone()),
                ..Default::default()
            };
            app_row.update(&txn).await?;
            let mut chosen: key::ActiveModel = chosen.into();
            chosen.state = Set(SigningKeyState::Signing.as_str().to_owned());
            chosen.update(&txn).await?;
            Ok(())
        }
        .await;
        storage::settle(txn, outcome).await?;
        tracing::info!(app_id, kid, "signing key promoted");
        published(self.db.writer(), app_id).await
    }

    /// Stops publishing a key that no longer signs and erases its private half.
    pub async fn retire_signing_key(&self, app_id: i64, kid: &str) -> Result<Vec<SigningKeyView>, CoreError> {
        let kid = parse_kid(kid)?;
        self.app_by_id(app_id).await?;
        let txn = storage::begin(self.db.writer()).await?;
        let outcome = async {
            let chosen = key_named(&txn, app_id, kid).await?;
            if chosen.state == SigningKeyState::Signing.as_str() {
                return Err(CoreError::invalid(
                    "kid",
                    "that key signs this app's answers; promote another key before retiring it",
                ));
            }
            let mut chosen: key::ActiveModel = chosen.into();
            chosen.state = Set(RETIRED.to_owned());
            chosen.private_key = Set(Vec::new());
            chosen.retired_at = Set(Some(Utc::now()));
            chosen.update(&txn).await?;
            Ok(())
        }
        .await;
        storage::settle(txn, outcome).await?;
        tracing::info!(app_id, kid, "signing key retired");
        published(self.db.writer(), app_id).await
    }

    /// [`Core::add_signing_key`] for the app's developer.
    pub async fn add_signing_key_for(&self, scope: ScopeInput) -> Result<AppView, CoreError> {
        let app = self.authorize_input(scope).await?;
        self.add_signing_key(app.id).await?;
        self.app_view(app).await
    }

    /// [`Core::promote_signing_key`] for the app's developer.
    pub async fn promote_signing_key_for(&self, scope: ScopeInput, kid: &str) -> Result<AppView, CoreError> {
        let app = self.authorize_input(scope).await?;
        self.promote_signing_key(app.id, kid).await?;
        self.app_view(self.app_by_id(app.id).await?).await
    }

    /// [`Core::retire_signing_key`] for the app's developer.
    pub async fn retire_signing_key_for(&self, scope: ScopeInput, kid: &str) -> Result<AppView, CoreError> {
        let app = self.authorize_input(scope).await?;
        self.retire_signing_key(app.id, kid).await?;
        self.app_view(app).await
    }

    /// Brings stored private keys in line with the key-encryption key at start: with one, plain
    /// keys are sealed (in one transaction) and a sealed key must open; without one, a sealed key
    /// is an error, since nothing could be signed. Answers how many keys were sealed.
    pub async fn secure_keys_at_rest(&self) -> Result<usize, String> {
        let vault = &self.settings.key_vault;
        let db = self.db.writer();
        let keys = key::Entity::find()
            .filter(key::Column::State.ne(RETIRED))
            .all(db)
            .await
            .map_err(|e| format!("cannot read the signing keys: {e}"))?;
        let sealed = keys.iter().filter(|k| KeyVault::is_sealed(&k.private_key)).count();
        if !vault.seals() {
            return if sealed > 0 {
                Err(format!(
                    "{sealed} signing keys are sealed with a key-encryption key; start with \
                     --key-encryption-key-file (CORE_KEY_ENCRYPTION_KEY_FILE)"
                ))
            } else {
                Ok(0)
            };
        }
        if let Some(k) = keys.iter().find(|k| KeyVault::is_sealed(&k.private_key)) {
            vault.open(&k.kid, &k.private_key).map_err(|_| {
                "the key-encryption key given does not open the stored signing keys (is it the one they were sealed with?)"
                    .to_owned()
            })?;
        }
        let plain: Vec<&key::Model> = keys.iter().filter(|k| !KeyVault::is_sealed(&k.private_key)).collect();
        if plain.is_empty() {
            return Ok(0);
        }
        let fail = |e: CoreError| format!("cannot seal the signing keys: {e}");
        let txn = storage::begin(db).await.map_err(fail)?;
        let outcome = async {
            for k in &plain {
                let seed: [u8; 32] = k
                    .private_key
                    .as_slice()
                    .try_into()
                    .map_err(|_| CoreError::internal("a stored signing key is not 32 bytes"))?;
                let stored = vault.seal(&k.kid, &seed)?;
                let row = key::ActiveModel {
                    id: sea_orm::Unchanged(k.id),
                    private_key: Set(stored.clone()),
                    ..Default::default()
                };
                row.update(&txn).await?;
                if k.state == SigningKeyState::Signing.as_str() {
                    app::Entity::update_many()
                        .col_expr(app::Column::PrivateKey, sea_orm::sea_query::Expr::value(stored))
                        .filter(app::Column::Id.eq(k.app_id))
                        .filter(app::Column::SigningKid.eq(k.kid.clone()))
                        .exec(&txn)
                        .await?;
                }
            }
            Ok(())
        }
        .await;
        storage::settle(txn, outcome).await.map_err(fail)?;
        tracing::info!(sealed = plain.len(), "signing keys sealed under the key-encryption key");
        Ok(plain.len())
    }
}
