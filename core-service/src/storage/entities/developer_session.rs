use sea_orm::entity::prelude::*;

/// A dashboard session of a developer. Only the SHA-256 of its token is stored (the token has
/// 256 random bits, so a fast hash is enough).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "developer_sessions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub developer_id: i64,
    pub token_hash: Vec<u8>,
    pub created_at: ChronoDateTimeUtc,
    pub last_used_at: ChronoDateTimeUtc,
    /// The absolute limit; the idle limit runs from `last_used_at`.
    pub expires_at: ChronoDateTimeUtc,
    pub revoked_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
