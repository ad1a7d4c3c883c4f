//! What the web dashboard calls beyond the legacy API: developer sessions, the developer's apps,
//! filtered listings, the current binary and daily activity.

use chrono::{DateTime, Duration as Span, NaiveDate, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set, Statement,
    sea_query::Expr,
};

use super::{AppView, Core, ScopeInput, developer::Credentials};
use crate::{
    domain::{CoreError, Password, Username, parse_app_name, parse_version, secrets},
    storage::{
        entities::{app, developer_session as session},
        queries,
    },
};

/// Session tokens start with this, so the core tells them from API tokens (`lic_`) at once.
pub const SESSION_PREFIX: &str = "ses_";

/// Who calls a developer-level (not app-scoped) method.
#[derive(Clone, Default)]
pub struct DeveloperInput {
    pub developer: Option<(String, String)>,
    pub bearer: Option<String>,
    pub address: String,
}

/// A session just opened: its token, shown this once.
pub struct SessionOpened {
    pub token: String,
    pub username: String,
    pub expires: DateTime<Utc>,
    pub idle_timeout: std::time::Duration,
}

impl std::fmt::Debug for SessionOpened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionOpened").field("username", &self.username).finish_non_exhaustive()
    }
}

/// An app in the developer's list: never its secret.
#[derive(Debug, Clone)]
pub struct AppSummary {
    pub id: i64,
    pub name: String,
    pub online: bool,
    pub version: Option<String>,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LicenceFilter {
    #[default]
    All,
    Unused,
    Active,
    Expired,
    Banned,
}

/// Narrows a listing: licences by key prefix and state, users by name prefix.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub prefix: String,
    pub licences: LicenceFilter,
}

/// One UTC day of an app's activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityDay {
    pub day: NaiveDate,
    pub heartbeats: i64,
    pub active_users: i64,
}

const MAX_ACTIVITY_DAYS: u32 = 90;

/// Key prefixes are compared as keys are: whitespace trimmed, upper case, and only characters a
/// key can hold (so nothing in it can mean anything to SQL).
pub(super) fn key_prefix(raw: &str) -> Result<String, CoreError> {
    let prefix = raw.trim().to_ascii_uppercase();
    if prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(CoreError::invalid("key_prefix", "a key prefix holds only letters, digits and dashes"));
    }
    Ok(prefix)
}

pub(super) fn username_prefix(raw: &str) -> Result<String, CoreError> {
    if raw.chars().count() > 64 || raw.chars().any(char::is_control) {
        return Err(CoreError::invalid("username_prefix", "at most 64 characters, no control characters"));
    }
    Ok(raw.to_owned())
}

impl Core {
    /// Opens a dashboard session after a password check (throttled like every other).
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
        address: &str,
    ) -> Result<SessionOpened, CoreError> {
        let credentials = Credentials::Password(
            Username::parse("developer_username", username)?,
            Password::parse("developer_password", password)?,
        );
        let developer_id = self.authenticate_developer(&credentials, address).await?;
        let token = format!("{SESSION_PREFIX}{}", secrets::new_api_token()?.trim_start_matches("lic_"));
        let now = Utc::now();
        let lifetime = Span::from_std(self.settings.session_lifetime).unwrap_or(Span::hours(12));
        let row = session::ActiveModel {
            developer_id: Set(developer_id),
            token_hash: Set(secrets::sha256(token.as_bytes())),
            created_at: Set(now),
            last_used_at: Set(now),
            expires_at: Set(now + lifetime),
            revoked_at: Set(None),
            ..Default::default()
        };
        let row = row.insert(self.db.writer()).await?;
        tracing::info!(developer_id, session = row.id, "dashboard session opened");
        Ok(SessionOpened {
            token,
            username: username.to_owned(),
            expires: row.expires_at,
            idle_timeout: self.settings.session_idle,
        })
    }

    /// Revokes the session `token`; an unknown or ended one is `invalid_developer`.
    pub async fn sign_out(&self, token: Option<&str>, address: &str) -> Result<(), CoreError> {
        let token = token.filter(|t| t.starts_with(SESSION_PREFIX)).ok_or(CoreError::InvalidSession)?;
        let credentials = Credentials::Token(token.to_owned());
        self.authenticate_developer(&credentials, address).await?;
        session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
            .filter(session::Column::TokenHash.eq(secrets::sha256(token.as_bytes())))
            .exec(self.db.writer())
            .await?;
        Ok(())
    }

    /// The developer of a live session, extending its idle limit; `None` when it is unknown,
    /// revoked, idle too long or past its absolute limit.
    pub(super) async fn session_developer(&self, token: &str) -> Result<Option<i64>, CoreError> {
        let hash = secrets::sha256(token.as_bytes());
        let Some(found) =
            session::Entity::find().filter(session::Column::TokenHash.eq(hash)).one(self.db.writer()).await?
        else {
            return Ok(None);
        };
        let now = Utc::now();
        let idle = Span::from_std(self.settings.session_idle).unwrap_or(Span::minutes(30));
        if found.revoked_at.is_some() || now >= found.expires_at || now - found.last_used_at >= idle {
            return Ok(None);
        }
        // Touched at most every few seconds (a page load makes several calls), and always well
        // within the idle limit.
        if now - found.last_used_at > (idle / 10).min(Span::seconds(5)) {
            session::Entity::update_many()
                .col_expr(session::Column::LastUsedAt, Expr::value(now))
                .filter(session::Column::Id.eq(found.id))
                .exec(self.db.writer())
                .await?;
        }
        Ok(Some(found.developer_id))
    }

    async fn developer_of(&self, input: DeveloperInput) -> Result<i64, CoreError> {
        let credentials = Credentials::parse(input.bearer, input.developer)?;
        self.authenticate_developer(&credentials, &input.address).await
    }

    /// The calling developer's apps, oldest first.
    pub async fn list_apps_of(&self, input: DeveloperInput) -> Result<Vec<AppSummary>, CoreError> {
        let developer_id = self.developer_of(input).await?;
        let apps = app::Entity::find()
            .filter(app::Column::DeveloperId.eq(developer_id))
            .order_by_asc(app::Column::Id)
            .all(self.db.reader())
            .await?;
        Ok(apps
            .into_iter()
            .map(|a| AppSummary {
                id: a.id,
                name: a.name,
                online: a.online,
                version: a.version,
                created: a.created_at,
            })
            .collect())
    }

    /// Creates an app for the calling developer.
    pub async fn create_app_for(
        &self,
        input: DeveloperInput,
        name: &str,
        version: Option<&str>,
    ) -> Result<AppView, CoreError> {
        let name = parse_app_name(name)?;
        let version = version.filter(|v| !v.is_empty()).map(parse_version).transpose()?;
        let developer_id = self.developer_of(input).await?;
        let view = self.insert_app(developer_id, name, version).await?;
        tracing::info!(developer_id, app_id = view.id, "app created");
        Ok(view)
    }

    /// The app's current binary.
    pub async fn file_info(&self, scope: ScopeInput) -> Result<super::FileView, CoreError> {
        let app = self.authorize_input(scope).await?;
        let file = queries::current_file(self.db.reader(), app.id).await?.ok_or(CoreError::NoFile)?;
        Ok(super::FileView::from(&file))
    }

    /// Heartbeats and distinct active users per UTC day, oldest first, `days` days back.
    pub async fn activity(&self, scope: ScopeInput, days: u32) -> Result<Vec<ActivityDay>, CoreError> {
        let days = match days {
            0 => 30,
            n if n > MAX_ACTIVITY_DAYS => return Err(CoreError::invalid("days", "at most 90 days")),
            n => n,
        };
        let app = self.authorize_input(scope).await?;
        let today = Utc::now().date_naive();
        let first = today - Span::days(i64::from(days) - 1);
        let c = self.db.reader();
        let backend = c.get_database_backend();
        let (p1, p2) = match backend {
            sea_orm::DbBackend::Postgres => ("$1", "$2"),
            _ => ("?", "?"),
        };
        let sql = format!(
            "SELECT d.day AS day, d.heartbeats AS heartbeats, \
             (SELECT COUNT(*) FROM app_active_users u WHERE u.app_id = d.app_id AND u.day = d.day) AS active_users \
             FROM app_activity_days d WHERE d.app_id = {p1} AND d.day >= {p2} ORDER BY d.day"
        );
        let rows = c
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [app.id.into(), first.format("%Y-%m-%d").to_string().into()],
            ))
            .await?;
        let mut counted = std::collections::HashMap::new();
        for row in rows {
            let day: String = row.try_get("", "day")?;
            counted.insert(
                day,
                (row.try_get::<i64>("", "heartbeats")?, row.try_get::<i64>("", "active_users")?),
            );
        }
        Ok((0..i64::from(days))
            .map(|i| {
                let day = first + Span::days(i);
                let (heartbeats, active_users) =
                    counted.get(&day.format("%Y-%m-%d").to_string()).copied().unwrap_or((0, 0));
                ActivityDay { day, heartbeats, active_users }
            })
            .collect())
    }
}
