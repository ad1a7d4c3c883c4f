use sea_orm::entity::prelude::*;

/// One of an app's Ed25519 signing keys. `state` is `signing` (exactly one per app), `next`
/// (published, not yet signing), `previous` (signed before, still published) or `retired` (no
/// longer published; its private key is erased).
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "app_signing_keys")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub app_id: i64,
    /// RFC 7638 thumbprint of the public key: the `kid` of the tokens it signs.
    pub kid: String,
    pub public_key: Vec<u8>,
    /// The seed, sealed under the operator's key-encryption key when there is one.
    pub private_key: Vec<u8>,
    pub state: String,
    pub created_at: ChronoDateTimeUtc,
    pub retired_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

// The private key never reaches a log line.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSigningKey")
            .field("app_id", &self.app_id)
            .field("kid", &self.kid)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}
