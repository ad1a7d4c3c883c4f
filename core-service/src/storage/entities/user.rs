use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub app_id: i64,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub hwid: Option<String>,
    pub joined: ChronoDateTimeUtc,
    pub total_pings: i64,
    pub last_seen: Option<ChronoDateTimeUtc>,
    pub has_licence: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("username", &self.username)
            .field("total_pings", &self.total_pings)
            .finish_non_exhaustive()
    }
}
