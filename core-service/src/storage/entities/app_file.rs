use sea_orm::entity::prelude::*;

/// An uploaded binary. Its bytes live in `file_chunks`; it is served only once `complete`, and the
/// newest complete file of an app is the one `download` serves.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "app_files")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub app_id: i64,
    pub filename: String,
    pub size: i64,
    pub sha256: String,
    pub complete: bool,
    pub created_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
