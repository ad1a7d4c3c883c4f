use sea_orm::entity::prelude::*;

/// An API token of a developer. Only the SHA-256 of the token is stored: the token itself has
/// 256 random bits, so a fast hash is enough and verification costs no Argon2 work.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_tokens")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub developer_id: i64,
    pub token_hash: Vec<u8>,
    /// The first characters of the token, so a developer can tell tokens apart.
    pub prefix: String,
    pub created_at: ChronoDateTimeUtc,
    pub revoked_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
