//! The queries the rules need. Each takes any connection or transaction, so a caller decides
//! what must be atomic.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, IdenStatic,
    Iterable, QueryFilter, QueryOrder, QuerySelect, Set, Statement, sea_query::Expr,
};

use super::{
    entities::{api_token, app, app_file, developer, file_chunk, licence, user},
    is_unique_violation,
};
use crate::domain::{CoreError, HeldLicence};

// ---- developers and tokens ------------------------------------------------------------------

pub async fn find_developer(
    c: &impl ConnectionTrait,
    username: &str,
) -> Result<Option<developer::Model>, CoreError> {
    Ok(developer::Entity::find().filter(developer::Column::Username.eq(username)).one(c).await?)
}

pub async fn insert_developer(
    c: &impl ConnectionTrait,
    username: &str,
    password_hash: String,
) -> Result<developer::Model, InsertError> {
    developer::ActiveModel {
        username: Set(username.to_owned()),
        password_hash: Set(password_hash),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(c)
    .await
    .map_err(InsertError::from)
}

/// A live (unrevoked) token by the SHA-256 of its text.
pub async fn find_live_token(
    c: &impl ConnectionTrait,
    token_hash: &[u8],
) -> Result<Option<api_token::Model>, CoreError> {
    Ok(api_token::Entity::find()
        .filter(api_token::Column::TokenHash.eq(token_hash.to_vec()))
        .filter(api_token::Column::RevokedAt.is_null())
        .one(c)
        .await?)
}

pub async fn insert_token(
    c: &impl ConnectionTrait,
    developer_id: i64,
    token_hash: Vec<u8>,
    prefix: String,
) -> Result<api_token::Model, CoreError> {
    Ok(api_token::ActiveModel {
        developer_id: Set(developer_id),
        token_hash: Set(token_hash),
        prefix: Set(prefix),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(c)
    .await?)
}

pub async fn list_tokens(
    c: &impl ConnectionTrait,
    developer_id: i64,
) -> Result<Vec<api_token::Model>, CoreError> {
    Ok(api_token::Entity::find()
        .filter(api_token::Column::DeveloperId.eq(developer_id))
        .order_by_asc(api_token::Column::Id)
        .all(c)
        .await?)
}

/// Revokes a token of the developer; false when the developer has no such live token.
pub async fn revoke_token(
    c: &impl ConnectionTrait,
    developer_id: i64,
    token_id: i64,
) -> Result<bool, CoreError> {
    let res = api_token::Entity::update_many()
        .col_expr(api_token::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(api_token::Column::Id.eq(token_id))
        .filter(api_token::Column::DeveloperId.eq(developer_id))
        .filter(api_token::Column::RevokedAt.is_null())
        .exec(c)
        .await?;
    Ok(res.rows_affected == 1)
}

// ---- apps -----------------------------------------------------------------------------------

/// The app whose secret hashes to what `secret` hashes to. The database matches hashes only; the
/// caller compares the secrets themselves, in constant time.
pub async fn find_app_by_secret(
    c: &impl ConnectionTrait,
    secret: &str,
) -> Result<Option<app::Model>, CoreError> {
    let hash = crate::domain::secrets::app_secret_hash(secret);
    Ok(app::Entity::find().filter(app::Column::SecretHash.eq(hash)).one(c).await?)
}

pub async fn insert_app(c: &impl ConnectionTrait, model: app::ActiveModel) -> Result<app::Model, CoreError> {
    Ok(model.insert(c).await?)
}

pub async fn update_app(
    c: &impl ConnectionTrait,
    app_id: i64,
    change: impl FnOnce(&mut app::ActiveModel),
) -> Result<app::Model, CoreError> {
    let mut model = app::ActiveModel { id: sea_orm::Unchanged(app_id), ..Default::default() };
    change(&mut model);
    Ok(model.update(c).await?)
}

// ---- a client call's sign-in ----------------------------------------------------------------

/// What an end-user call needs before its own work, read in one round trip.
pub struct SignIn {
    pub app: app::Model,
    pub user: Option<user::Model>,
    pub held: Vec<HeldLicence>,
    /// The app's and the user's revisions as read (see the `revisions` migration): what the
    /// heartbeat's fast path remembers, to count a later ping only if neither has moved.
    pub app_rev: i64,
    pub user_rev: Option<i64>,
}

/// The app with this secret (matched by its hash, as in [`find_app_by_secret`]), the user of that app with this name, and the licences the user
/// holds, in one query: a heartbeat must not pay three sequential round trips for what one join
/// answers. Read fresh on every call but a warm heartbeat's, so a secret renewal, ban, HWID reset,
/// password change or deletion made through any core sharing the database applies to the very
/// next call; a warm heartbeat checks the revisions read here instead.
pub async fn sign_in(
    c: &impl ConnectionTrait,
    secret: &str,
    username: &str,
) -> Result<Option<SignIn>, CoreError> {
    let backend = c.get_database_backend();
    let rows = c.query_all_raw(sign_in_statement(backend, secret, username)).await?;
    sign_in_of(rows)
}

/// A sign-in from its rows: one per licence the user holds, at least one when the app exists.
pub(crate) fn sign_in_of(rows: Vec<sea_orm::QueryResult>) -> Result<Option<SignIn>, CoreError> {
    let mut rows = rows.into_iter();
    let Some(first) = rows.next() else { return Ok(None) };
    let app = app::Model::from_query_result(&first, "a_")?;
    let app_rev = first.try_get::<i64>("", "a_rev")?;
    let (user, user_rev) = match first.try_get::<Option<i64>>("", "u_id")? {
        Some(_) => {
            (Some(user::Model::from_query_result(&first, "u_")?), Some(first.try_get::<i64>("", "u_rev")?))
        }
        None => (None, None),
    };
    let mut held = Vec::new();
    for row in std::iter::once(first).chain(rows) {
        if let Some(expire_time) = row.try_get::<Option<DateTime<Utc>>>("", "l_expire_time")? {
            held.push(HeldLicence {
                expire_time,
                banned: row.try_get::<bool>("", "l_banned")?,
                access: u8::try_from(row.try_get::<i16>("", "l_access")?).unwrap_or(0),
            });
        }
    }
    Ok(Some(SignIn { app, user, held, app_rev, user_rev }))
}

fn sign_in_statement(backend: DbBackend, secret: &str, username: &str) -> Statement {
    static POSTGRES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static SQLITE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = match backend {
        DbBackend::Postgres => POSTGRES.get_or_init(|| sign_in_sql(backend)),
        _ => SQLITE.get_or_init(|| sign_in_sql(backend)),
    };
    let hash = crate::domain::secrets::app_secret_hash(secret);
    Statement::from_sql_and_values(backend, sql.as_str(), [username.into(), hash.into()])
}

/// The columns of a sign-in, as [`sign_in_of`] reads them.
pub(crate) fn sign_in_columns() -> String {
    let columns = |alias: &str, names: Vec<&'static str>| {
        names.into_iter().map(|c| format!("{alias}.{c} AS {alias}_{c}")).collect::<Vec<_>>().join(", ")
    };
    let app_columns = columns("a", app::Column::iter().map(|c| c.as_str()).collect());
    let user_columns = columns("u", user::Column::iter().map(|c| c.as_str()).collect());
    format!(
        "{app_columns}, a.rev AS a_rev, {user_columns}, u.rev AS u_rev, \
         l.expire_time AS l_expire_time, l.banned AS l_banned, l.access AS l_access"
    )
}

fn sign_in_sql(backend: DbBackend) -> String {
    let (p1, p2) = match backend {
        DbBackend::Postgres => ("$1", "$2"),
        _ => ("?", "?"),
    };
    format!(
        "SELECT {} FROM apps a \
         LEFT JOIN users u ON u.app_id = a.id AND u.username = {p1} \
         LEFT JOIN licences l ON l.user_id = u.id \
         WHERE a.secret_hash = {p2}",
        sign_in_columns()
    )
}

// ---- users ----------------------------------------------------------------------------------

pub async fn find_user(
    c: &impl ConnectionTrait,
    app_id: i64,
    username: &str,
) -> Result<Option<user::Model>, CoreError> {
    Ok(user::Entity::find()
        .filter(user::Column::AppId.eq(app_id))
        .filter(user::Column::Username.eq(username))
        .one(c)
        .await?)
}

pub async fn user_exists(c: &impl ConnectionTrait, app_id: i64, username: &str) -> Result<bool, CoreError> {
    Ok(find_user(c, app_id, username).await?.is_some())
}

pub struct NewUser {
    pub app_id: i64,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub hwid: Option<String>,
}

pub async fn insert_user(c: &impl ConnectionTrait, new: NewUser) -> Result<user::Model, InsertError> {
    user::ActiveModel {
        app_id: Set(new.app_id),
        username: Set(new.username),
        email: Set(new.email),
        password_hash: Set(new.password_hash),
        hwid: Set(new.hwid),
        joined: Set(Utc::now()),
        total_pings: Set(0),
        last_seen: Set(None),
        has_licence: Set(false),
        ..Default::default()
    }
    .insert(c)
    .await
    .map_err(InsertError::from)
}

/// Binds `hwid` unless a HWID is already bound; answers the HWID bound afterwards.
pub async fn bind_hwid(
    c: &impl ConnectionTrait,
    user_id: i64,
    hwid: &str,
) -> Result<Option<String>, CoreError> {
    // Conditional on NULL so two first logins racing with different HWIDs bind exactly one.
    user::Entity::update_many()
        .col_expr(user::Column::Hwid, Expr::value(hwid))
        .filter(user::Column::Id.eq(user_id))
        .filter(user::Column::Hwid.is_null())
        .exec(c)
        .await?;
    Ok(user::Entity::find_by_id(user_id).one(c).await?.and_then(|u| u.hwid))
}

pub async fn find_user_by_id(
    c: &impl ConnectionTrait,
    app_id: i64,
    user_id: i64,
) -> Result<Option<user::Model>, CoreError> {
    Ok(user::Entity::find_by_id(user_id).filter(user::Column::AppId.eq(app_id)).one(c).await?)
}

pub async fn delete_user(c: &impl ConnectionTrait, app_id: i64, user_id: i64) -> Result<bool, CoreError> {
    // Unbind first rather than trusting ON DELETE SET NULL alone: the licence rows must end up
    // unbound on every backend, and the whole call runs in one transaction.
    licence::Entity::update_many()
        .col_expr(licence::Column::UserId, Expr::value(Option::<i64>::None))
        .filter(licence::Column::UserId.eq(user_id))
        .filter(licence::Column::AppId.eq(app_id))
        .exec(c)
        .await?;
    let res = user::Entity::delete_many()
        .filter(user::Column::Id.eq(user_id))
        .filter(user::Column::AppId.eq(app_id))
        .exec(c)
        .await?;
    Ok(res.rows_affected == 1)
}

pub async fn reset_hwid(c: &impl ConnectionTrait, app_id: i64, user_id: i64) -> Result<bool, CoreError> {
    let res = user::Entity::update_many()
        .col_expr(user::Column::Hwid, Expr::value(Option::<String>::None))
        .filter(user::Column::Id.eq(user_id))
        .filter(user::Column::AppId.eq(app_id))
        .exec(c)
        .await?;
    Ok(res.rows_affected == 1)
}

/// `column` starts with `prefix`, compared exactly on both backends (`LIKE` folds case on SQLite
/// and would need escaping).
fn starts_with(
    column: impl sea_orm::sea_query::IntoColumnRef,
    prefix: &str,
) -> sea_orm::sea_query::SimpleExpr {
    use sea_orm::sea_query::{Expr, ExprTrait, Func};
    // An `integer`, not a `bigint`: PostgreSQL has no `substr(text, integer, bigint)`.
    let length = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
    ExprTrait::eq(Expr::expr(Func::cust("substr").arg(Expr::col(column)).arg(1).arg(length)), prefix)
}

/// `licence_key` starts with `prefix`, in a form each backend answers from an index (see the
/// migration `m20261203_000005`). The prefix is inlined, so it must hold only key characters.
fn key_starts_with(backend: DbBackend, prefix: &str) -> Result<sea_orm::sea_query::SimpleExpr, CoreError> {
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(CoreError::internal("a key prefix reached the query unchecked"));
    }
    // Neither pattern language gives `-`, digits or upper-case letters any meaning.
    Ok(sea_orm::sea_query::Expr::cust(match backend {
        DbBackend::Postgres => format!("licence_key LIKE '{prefix}%'"),
        _ => format!("licence_key GLOB '{prefix}*'"),
    }))
}

pub async fn users_page(
    c: &impl ConnectionTrait,
    app_id: i64,
    after_id: i64,
    limit: u64,
    username_prefix: &str,
) -> Result<Vec<user::Model>, CoreError> {
    let mut query = user::Entity::find().filter(user::Column::AppId.eq(app_id));
    if !username_prefix.is_empty() {
        query = query.filter(starts_with(user::Column::Username, username_prefix));
    }
    Ok(query.filter(user::Column::Id.gt(after_id)).order_by_asc(user::Column::Id).limit(limit).all(c).await?)
}

// ---- licences -------------------------------------------------------------------------------

pub async fn held_licences(
    c: &impl ConnectionTrait,
    user_ids: &[i64],
) -> Result<HashMap<i64, Vec<HeldLicence>>, CoreError> {
    let mut held: HashMap<i64, Vec<HeldLicence>> = HashMap::new();
    if user_ids.is_empty() {
        return Ok(held);
    }
    let rows = licence::Entity::find()
        .filter(licence::Column::UserId.is_in(user_ids.iter().copied()))
        .all(c)
        .await?;
    for l in rows {
        if let Some(uid) = l.user_id {
            held.entry(uid).or_default().push(HeldLicence {
                expire_time: l.expire_time,
                banned: l.banned,
                access: u8::try_from(l.access).unwrap_or(0),
            });
        }
    }
    Ok(held)
}

pub async fn find_licence(
    c: &impl ConnectionTrait,
    app_id: i64,
    key: &str,
) -> Result<Option<licence::Model>, CoreError> {
    Ok(licence::Entity::find()
        .filter(licence::Column::AppId.eq(app_id))
        .filter(licence::Column::LicenceKey.eq(key))
        .one(c)
        .await?)
}

/// Binds a never-redeemed key to the user; false when another redemption got there first.
pub async fn claim_licence(
    c: &impl ConnectionTrait,
    licence_id: i64,
    user_id: i64,
    now: DateTime<Utc>,
) -> Result<bool, CoreError> {
    let res = licence::Entity::update_many()
        .col_expr(licence::Column::UserId, Expr::value(user_id))
        .col_expr(licence::Column::Redeemed, Expr::value(true))
        .col_expr(licence::Column::RedeemedAt, Expr::value(now))
        .filter(licence::Column::Id.eq(licence_id))
        .filter(licence::Column::Redeemed.eq(false))
        .exec(c)
        .await?;
    if res.rows_affected == 1 {
        user::Entity::update_many()
            .col_expr(user::Column::HasLicence, Expr::value(true))
            .filter(user::Column::Id.eq(user_id))
            .exec(c)
            .await?;
    }
    Ok(res.rows_affected == 1)
}

pub struct NewLicence {
    pub app_id: i64,
    pub key: String,
    pub access: i16,
    pub expire_time: DateTime<Utc>,
}

pub async fn insert_licences(
    c: &impl ConnectionTrait,
    new: Vec<NewLicence>,
) -> Result<Vec<licence::Model>, InsertError> {
    let now = Utc::now();
    let models = new.into_iter().map(|n| licence::ActiveModel {
        app_id: Set(n.app_id),
        licence_key: Set(n.key),
        access: Set(n.access),
        expire_time: Set(n.expire_time),
        created_at: Set(now),
        user_id: Set(None),
        redeemed: Set(false),
        redeemed_at: Set(None),
        banned: Set(false),
        ..Default::default()
    });
    licence::Entity::insert_many(models).exec_with_returning(c).await.map_err(InsertError::from)
}

pub async fn licences_page(
    c: &impl ConnectionTrait,
    app_id: i64,
    after_id: i64,
    limit: u64,
    key_prefix: &str,
    state: crate::service::LicenceFilter,
) -> Result<Vec<licence::Model>, CoreError> {
    use crate::service::LicenceFilter;
    let backend = c.get_database_backend();
    let mut query = licence::Entity::find();
    if key_prefix.is_empty() {
        query = query.filter(licence::Column::AppId.eq(app_id));
    } else {
        query = query.filter(key_starts_with(backend, key_prefix)?);
        // Without statistics SQLite would walk the (app_id, id) index for the order and test
        // every licence of the app; `+` takes that index out of the running, leaving the key's.
        query = query.filter(match backend {
            DbBackend::Postgres => licence::Column::AppId.eq(app_id),
            _ => sea_orm::sea_query::Expr::cust(format!("+app_id = {app_id}")),
        });
    }
    let now = Utc::now();
    query = match state {
        LicenceFilter::All => query,
        LicenceFilter::Unused => query.filter(licence::Column::Redeemed.eq(false)),
        LicenceFilter::Active => query
            .filter(licence::Column::UserId.is_not_null())
            .filter(licence::Column::Banned.eq(false))
            .filter(licence::Column::ExpireTime.gt(now)),
        LicenceFilter::Expired => {
            query.filter(licence::Column::Banned.eq(false)).filter(licence::Column::ExpireTime.lte(now))
        }
        LicenceFilter::Banned => query.filter(licence::Column::Banned.eq(true)),
    };
    Ok(query
        .filter(licence::Column::Id.gt(after_id))
        .order_by_asc(licence::Column::Id)
        .limit(limit)
        .all(c)
        .await?)
}

pub async fn usernames(
    c: &impl ConnectionTrait,
    user_ids: &[i64],
) -> Result<HashMap<i64, String>, CoreError> {
    if user_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = user::Entity::find().filter(user::Column::Id.is_in(user_ids.iter().copied())).all(c).await?;
    Ok(rows.into_iter().map(|u| (u.id, u.username)).collect())
}

pub async fn delete_licence(c: &impl ConnectionTrait, app_id: i64, key: &str) -> Result<bool, CoreError> {
    let res = licence::Entity::delete_many()
        .filter(licence::Column::AppId.eq(app_id))
        .filter(licence::Column::LicenceKey.eq(key))
        .exec(c)
        .await?;
    Ok(res.rows_affected == 1)
}

pub async fn set_licence_banned(
    c: &impl ConnectionTrait,
    app_id: i64,
    key: &str,
    banned: bool,
) -> Result<Option<licence::Model>, CoreError> {
    let updated = licence::Entity::update_many()
        .col_expr(licence::Column::Banned, Expr::value(banned))
        .filter(licence::Column::AppId.eq(app_id))
        .filter(licence::Column::LicenceKey.eq(key))
        .exec_with_returning(c)
        .await?;
    Ok(updated.into_iter().next())
}

// ---- files ----------------------------------------------------------------------------------

pub async fn create_file(
    c: &impl ConnectionTrait,
    app_id: i64,
    filename: String,
) -> Result<app_file::Model, CoreError> {
    Ok(app_file::ActiveModel {
        app_id: Set(app_id),
        filename: Set(filename),
        size: Set(0),
        sha256: Set(String::new()),
        complete: Set(false),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(c)
    .await?)
}

pub async fn insert_chunk(
    c: &impl ConnectionTrait,
    file_id: i64,
    seq: i32,
    data: Vec<u8>,
) -> Result<(), CoreError> {
    file_chunk::ActiveModel { file_id: Set(file_id), seq: Set(seq), data: Set(data) }.insert(c).await?;
    Ok(())
}

/// Marks the upload complete and removes every other file of the app.
pub async fn finish_file(
    c: &impl ConnectionTrait,
    app_id: i64,
    file_id: i64,
    size: i64,
    sha256: String,
) -> Result<app_file::Model, CoreError> {
    let done = app_file::ActiveModel {
        id: sea_orm::Unchanged(file_id),
        size: Set(size),
        sha256: Set(sha256),
        complete: Set(true),
        ..Default::default()
    }
    .update(c)
    .await?;
    remove_files_except(c, app_id, Some(file_id)).await?;
    Ok(done)
}

/// Removes the app's files (chunks first, so no backend depends on cascades) but `keep`.
pub async fn remove_files_except(
    c: &impl ConnectionTrait,
    app_id: i64,
    keep: Option<i64>,
) -> Result<(), CoreError> {
    let mut query = app_file::Entity::find().filter(app_file::Column::AppId.eq(app_id));
    if let Some(keep) = keep {
        query = query.filter(app_file::Column::Id.ne(keep));
    }
    let ids: Vec<i64> = query.all(c).await?.into_iter().map(|f| f.id).collect();
    if ids.is_empty() {
        return Ok(());
    }
    file_chunk::Entity::delete_many()
        .filter(file_chunk::Column::FileId.is_in(ids.iter().copied()))
        .exec(c)
        .await?;
    app_file::Entity::delete_many().filter(app_file::Column::Id.is_in(ids)).exec(c).await?;
    Ok(())
}

pub async fn remove_file(c: &impl ConnectionTrait, file_id: i64) -> Result<(), CoreError> {
    file_chunk::Entity::delete_many().filter(file_chunk::Column::FileId.eq(file_id)).exec(c).await?;
    app_file::Entity::delete_by_id(file_id).exec(c).await?;
    Ok(())
}

pub async fn current_file(
    c: &impl ConnectionTrait,
    app_id: i64,
) -> Result<Option<app_file::Model>, CoreError> {
    Ok(app_file::Entity::find()
        .filter(app_file::Column::AppId.eq(app_id))
        .filter(app_file::Column::Complete.eq(true))
        .order_by_desc(app_file::Column::Id)
        .one(c)
        .await?)
}

pub async fn chunk(c: &impl ConnectionTrait, file_id: i64, seq: i32) -> Result<Option<Vec<u8>>, CoreError> {
    Ok(file_chunk::Entity::find_by_id((file_id, seq)).one(c).await?.map(|ch| ch.data))
}

// ---- errors ---------------------------------------------------------------------------------

/// An insert either hit a unique constraint (the caller knows which) or failed otherwise.
#[derive(Debug)]
pub enum InsertError {
    Duplicate,
    Other(CoreError),
}

impl From<sea_orm::DbErr> for InsertError {
    fn from(err: sea_orm::DbErr) -> Self {
        if is_unique_violation(&err) { InsertError::Duplicate } else { InsertError::Other(err.into()) }
    }
}

impl InsertError {
    pub fn or_duplicate(self, duplicate: CoreError) -> CoreError {
        match self {
            InsertError::Duplicate => duplicate,
            InsertError::Other(e) => e,
        }
    }
}
