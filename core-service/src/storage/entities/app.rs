use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "apps")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub developer_id: i64,
    pub name: String,
    pub secret: String,
    /// Lowercase hex SHA-256 of `secret`: what lookups match on.
    pub secret_hash: String,
    /// The signing key's public half, private half (sealed when there is a key-encryption key)
    /// and `kid`: a copy of its row in `app_signing_keys`, so that signing reads one row.
    pub public_key: Vec<u8>,
    pub private_key: Vec<u8>,
    pub signing_kid: String,
    pub online: bool,
    pub version: Option<String>,
    pub offline_grace_secs: i64,
    pub created_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

// The secret and the private key never reach a log line.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("id", &self.id)
            .field("developer_id", &self.developer_id)
            .field("name", &self.name)
            .field("online", &self.online)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}
