use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "licences")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub app_id: i64,
    pub licence_key: String,
    pub access: i16,
    pub expire_time: ChronoDateTimeUtc,
    pub created_at: ChronoDateTimeUtc,
    pub user_id: Option<i64>,
    pub redeemed: bool,
    pub redeemed_at: Option<ChronoDateTimeUtc>,
    pub banned: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

// A full key is a credential: Debug shows only its first group.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Licence")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("key", &crate::domain::mask_key(&self.licence_key))
            .field("user_id", &self.user_id)
            .field("banned", &self.banned)
            .finish_non_exhaustive()
    }
}
