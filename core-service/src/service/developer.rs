//! Developer calls. Each checks, in order: fields; the per-address throttle; the per-username
//! throttle; the developer's credentials (or API token); the app secret; ownership. They work
//! while the app is offline.

use std::{future::Future, pin::Pin, sync::Arc};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use tokio::sync::mpsc;

use super::{AppView, Core, LicenceView, ListFilter, UserView};
use crate::{
    domain::{
        AppSecret, CoreError, LicenceKey, Password, Standing, Username, parse_version,
        secrets::{self, constant_time_eq},
        throttle::ThrottleKey,
    },
    storage::{
        self,
        entities::app,
        queries::{self, NewLicence},
    },
};

const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 1000;
const MAX_LICENCES_PER_CALL: u32 = 500;

/// Who calls, for which app, as received.
#[derive(Clone, Default)]
pub struct ScopeInput {
    pub app_secret: String,
    /// The app by id, used when `app_secret` is empty.
    pub app_id: i64,
    /// Developer username and password; `None` when a bearer token is sent instead.
    pub developer: Option<(String, String)>,
    /// The `authorization: Bearer` token, if any.
    pub bearer: Option<String>,
    pub address: String,
}

pub(super) enum Credentials {
    Password(Username, Password),
    /// An API token or a dashboard session token (told apart by their prefixes).
    Token(String),
}

impl Credentials {
    pub(super) fn parse(
        bearer: Option<String>,
        developer: Option<(String, String)>,
    ) -> Result<Self, CoreError> {
        Ok(match (bearer, developer) {
            (Some(token), _) if !token.is_empty() => Credentials::Token(token),
            (_, Some((user, pass))) => Credentials::Password(
                Username::parse("developer_username", &user)?,
                Password::parse("developer_password", &pass)?,
            ),
            _ => return Err(CoreError::MissingField { field: "developer_username" }),
        })
    }
}

/// How a developer call names its app.
enum AppRef {
    Secret(AppSecret),
    /// Only for bearer credentials: a dashboard never puts a secret in a URL.
    Id(i64),
}

struct ParsedScope {
    app: AppRef,
    credentials: Credentials,
    address: String,
}

impl ParsedScope {
    fn parse(input: ScopeInput) -> Result<Self, CoreError> {
        let credentials = Credentials::parse(input.bearer, input.developer)?;
        let app = if input.app_secret.is_empty() && input.app_id != 0 {
            if input.app_id < 0 {
                return Err(CoreError::invalid("app_id", "expected a positive app id"));
            }
            AppRef::Id(input.app_id)
        } else {
            AppRef::Secret(AppSecret::parse(&input.app_secret)?)
        };
        Ok(ParsedScope { app, credentials, address: input.address })
    }
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}

/// A requested page size checked against the maximum; 0 asks for `default`.
fn checked_page_size(page_size: u32, default: u32) -> Result<u64, CoreError> {
    match page_size {
        0 => Ok(u64::from(default)),
        n if n > MAX_PAGE_SIZE => Err(CoreError::invalid("page_size", "page_size must be at most 1000")),
        n => Ok(u64::from(n)),
    }
}

fn page_params(page_size: u32, page_token: &str) -> Result<(u64, i64), CoreError> {
    let size = checked_page_size(page_size, DEFAULT_PAGE_SIZE)?;
    let after =
        if page_token.is_empty() {
            0
        } else {
            page_token.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                CoreError::invalid("page_token", "page_token is not one this service issued")
            })?
        };
    Ok((size, after))
}

/// Pages of a stream: the items, and the id to continue after (none after the last page).
pub type PageFuture<T> = Pin<Box<dyn Future<Output = Result<(Vec<T>, Option<i64>), CoreError>> + Send>>;

/// The pages of a streamed listing as they are read; an error ends it.
pub type PageStream<T> = mpsc::Receiver<Result<Vec<T>, CoreError>>;

/// The id the next page starts after, when this page was full (a short page is the last).
fn continue_after(len: usize, size: u64, last_id: Option<i64>) -> Option<i64> {
    last_id.filter(|_| len as u64 == size)
}

/// One page of the app's licences with their holders' names, for both the paged and the streamed
/// listing.
async fn licence_page(
    c: &impl ConnectionTrait,
    app_id: i64,
    after: i64,
    size: u64,
    filter: &ListFilter,
) -> Result<(Vec<LicenceView>, Option<i64>), CoreError> {
    let rows = queries::licences_page(c, app_id, after, size, &filter.prefix, filter.licences).await?;
    let holders: Vec<i64> = rows.iter().filter_map(|l| l.user_id).collect();
    let names = queries::usernames(c, &holders).await?;
    let next = continue_after(rows.len(), size, rows.last().map(|l| l.id));
    let items = rows
        .into_iter()
        .map(|l| {
            let used_by = l.user_id.and_then(|id| names.get(&id).cloned());
            LicenceView::new(l, used_by)
        })
        .collect();
    Ok((items, next))
}

/// One page of the app's end users with their standing, for both listings.
async fn user_page(
    c: &impl ConnectionTrait,
    app_id: i64,
    after: i64,
    size: u64,
    filter: &ListFilter,
) -> Result<(Vec<UserView>, Option<i64>), CoreError> {
    let rows = queries::users_page(c, app_id, after, size, &filter.prefix).await?;
    let ids: Vec<i64> = rows.iter().map(|u| u.id).collect();
    let held = queries::held_licences(c, &ids).await?;
    let now = Utc::now();
    let next = continue_after(rows.len(), size, rows.last().map(|u| u.id));
    let items = rows
        .into_iter()
        .map(|u| {
            let standing = Standing::derive(held.get(&u.id).map(Vec::as_slice).unwrap_or(&[]), now);
            UserView::new(u, standing)
        })
        .collect();
    Ok((items, next))
}

impl Core {
    /// Authenticates a developer: password (throttled, Argon2), API token or dashboard session.
    pub(super) async fn authenticate_developer(
        &self,
        credentials: &Credentials,
        address: &str,
    ) -> Result<i64, CoreError> {
        let address_key = ThrottleKey::Address(address.to_owned());
        self.throttle.check(&address_key)?;
        match credentials {
            Credentials::Token(token) if token.starts_with(super::sessions::SESSION_PREFIX) => {
                match self.session_developer(token).await? {
                    Some(developer_id) => Ok(developer_id),
                    None => {
                        self.throttle.record_failure(&[address_key]);
                        Err(CoreError::InvalidSession)
                    }
                }
            }
            Credentials::Token(token) => {
                let hash = secrets::sha256(token.as_bytes());
                match queries::find_live_token(self.db.reader(), &hash).await? {
                    Some(t) => Ok(t.developer_id),
                    None => {
                        self.throttle.record_failure(&[address_key]);
                        Err(CoreError::InvalidToken)
                    }
                }
            }
            Credentials::Password(username, password) => {
                let dev_key = ThrottleKey::Developer {
                    username: username.as_str().to_owned(),
                    address: address.to_owned(),
                };
                self.throttle.check(&dev_key)?;
                let found = queries::find_developer(self.db.reader(), username.as_str()).await?;
                let verified =
                    self.hasher.verify(password, found.as_ref().map(|d| d.password_hash.as_str())).await?;
                match found.filter(|_| verified) {
                    Some(d) => Ok(d.id),
                    None => {
                        self.throttle.record_failure(&[dev_key, address_key]);
                        Err(CoreError::InvalidDeveloper)
                    }
                }
            }
        }
    }

    /// Authenticates the developer and resolves the app they own.
    async fn authorize(&self, scope: ParsedScope) -> Result<app::Model, CoreError> {
        let developer_id = self.authenticate_developer(&scope.credentials, &scope.address).await?;
        match scope.app {
            AppRef::Secret(secret) => {
                let app = queries::find_app_by_secret(self.db.reader(), secret.expose())
                    .await?
                    .filter(|a| constant_time_eq(a.secret.as_bytes(), secret.expose().as_bytes()));
                let Some(app) = app else {
                    self.throttle.record_failure(&[ThrottleKey::Address(scope.address.clone())]);
                    return Err(CoreError::InvalidAppSecret);
                };
                if app.developer_id != developer_id {
                    return Err(CoreError::Forbidden);
                }
                Ok(app)
            }
            AppRef::Id(id) => {
                if matches!(scope.credentials, Credentials::Password(..)) {
                    return Err(CoreError::MissingField { field: "app_secret" });
                }
                // Another developer's app answers exactly as a missing one: ids are guessable.
                use sea_orm::EntityTrait;
                app::Entity::find_by_id(id)
                    .one(self.db.reader())
                    .await?
                    .filter(|a| a.developer_id == developer_id)
                    .ok_or(CoreError::NotFound("no app with that id"))
            }
        }
    }

    pub async fn get_app(&self, scope: ScopeInput) -> Result<AppView, CoreError> {
        let app = self.authorize(ParsedScope::parse(scope)?).await?;
        self.app_view(app).await
    }

    pub async fn set_app_online(&self, scope: ScopeInput, online: bool) -> Result<AppView, CoreError> {
        let app = self.authorize(ParsedScope::parse(scope)?).await?;
        let app = queries::update_app(self.db.writer(), app.id, |m| m.online = sea_orm::Set(online)).await?;
        self.app_view(app).await
    }

    pub async fn set_app_version(&self, scope: ScopeInput, version: String) -> Result<AppView, CoreError> {
        let version = parse_version(&version)?;
        let app = self.authorize(ParsedScope::parse(scope)?).await?;
        let app = queries::update_app(self.db.writer(), app.id, |m| m.version = sea_orm::Set(Some(version)))
            .await?;
        self.app_view(app).await
    }

    pub async fn renew_secret(&self, scope: ScopeInput) -> Result<AppView, CoreError> {
        let app = self.authorize(ParsedScope::parse(scope)?).await?;
        let secret = secrets::new_app_secret()?;
        let app = queries::update_app(self.db.writer(), app.id, |m| {
            m.secret_hash = sea_orm::Set(secrets::app_secret_hash(&secret));
            m.secret = sea_orm::Set(secret);
        })
        .await?;
        tracing::info!(app_id = app.id, "app secret renewed");
        self.app_view(app).await
    }

    pub async fn list_licences(
        &self,
        scope: ScopeInput,
        page_size: u32,
        page_token: &str,
        filter: ListFilter,
    ) -> Result<ListPage<LicenceView>, CoreError> {
        let (size, after) = page_params(page_size, page_token)?;
        let filter = ListFilter { prefix: super::sessions::key_prefix(&filter.prefix)?, ..filter };
        let app = self.authorize(ParsedScope::parse(scope)?).await?;
        let (items, next) = licence_page(self.db.reader(), app.id, after, size, &filter).await?;
        Ok(ListPage { items, next_page_token: next.map(|id| id.to_string()).unwrap_or_default() })
    }

    /// Every licence of the app, a page per message, from one snapshot after one authentication.
    pub async fn stream_licences(
        &self,
        scope: ScopeInput,
        page_size: u32,
    ) -> Result<PageStream<LicenceView>, CoreError> {
        let size = checked_page_size(page_size, MAX_PAGE_SIZE)?;
        let app_id = self.authorize(ParsedScope::parse(scope)?).await?.id;
        Ok(self.stream_pages(move |txn, after| {
            Box::pin(
                async move { licence_page(txn.as_ref(), app_id, after, size, &ListFilter::default()).await },
            )
        }))
    }

    /// Every end user of the app, streamed like `stream_licences`.
    pub async fn stream_users(
        &self,
        scope: ScopeInput,
        page_size: u32,
    ) -> Result<PageStream<UserView>, CoreError> {
        let size = checked_page_size(page_size, MAX_PAGE_SIZE)?;
        let app_id = self.authorize(ParsedScope::parse(scope)?).await?.id;
        Ok(self.stream_pages(move |txn, after| {
            Box::pin(
                async move { user_page(txn.as_ref(), app_id, after, size, &ListFilter::default()).await },
            )
        }))
    }

    /// Runs `page` from id 0 onwards inside one snapshot, sending each page as it is read. The
    /// bounded queue is the backpressure: a page is read only when the consumer took the one
    /// before, and a consumer that takes none for the request timeout ends the stream, so a slow
    /// client cannot hold a snapshot open forever.
    fn stream_pages<T: Send + 'static>(
        &self,
        page: impl Fn(Arc<DatabaseTransaction>, i64) -> PageFuture<T> + Send + 'static,
    ) -> PageStream<T> {
        let (tx, rx) = mpsc::channel(2);
        let db = self.db.reader().clone();
        let patience = self.settings.request_timeout;
        tokio::spawn(async move {
            let txn = match storage::begin_snapshot(&db).await {
                Ok(txn) => Arc::new(txn),
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let mut after = 0;
            loop {
                let (items, next) = match page(txn.clone(), after).await {
                    Ok(done) => done,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                match tokio::time::timeout(patience, tx.send(Ok(items))).await {
                    Ok(Ok(())) => {}
                    // The consumer went away or stalled: dropping the snapshot rolls it back.
                    _ => return,
                }
                match next {
                    Some(last) => after = last,
                    None => return,
                }
            }
        });
        rx
    }

    pub async fn create_licences(
        &self,
        scope: ScopeInput,
        amount: u32,
        access: u32,
        expire_time: Option<DateTime<Utc>>,
    ) -> Result<Vec<LicenceView>, CoreError> {
        if !(1..=MAX_LICENCES_PER_CALL).contains(&amount) {
            return Err(CoreError::invalid("amount", "amount must be 1 to 500"));
        }
        let access = i16::try_from(access)
            .ok()
            .filter(|a| (0..=9).contains(a))
            .ok_or_else(|| CoreError::invalid("access", "access must be 0 to 9"))?;
        let expire_time = expire_time.ok_or(CoreError::MissingField { field: "expire_date" })?;
        if expire_time <= Utc::now() {
            return Err(CoreError::invalid("expire_date", "expire_date must be in the future"));
        }
        let app = self.authorize(ParsedScope::parse(scope)?).await?;
        let new = (0..amount)
            .map(|_| Ok(NewLicence { app_id: app.id, key: secrets::new_licence_key()?, access, expire_time }))
            .collect::<Result<Vec<_>, CoreError>>()?;
        // One statement in one transaction: all keys or none.
        let txn = storage::begin(self.db.writer()).await?;
        let outcome = queries::insert_licences(&txn, new)
            .await
            // 125 random bits each: a collision means the random source is broken.
            .map_err(|e| e.or_duplicate(CoreError::internal("licence key collision")));
        let rows = storage::settle(txn, outcome).await?;
        tracing::info!(app_id = app.id, amount, "licences created");
        Ok(rows.into_iter().map(|l| LicenceView::new(l, None)).collect())
    }

    pub async fn delete_licence(&self, scope: ScopeInput, key: &str) -> Result<(), CoreError> {
        let key = LicenceKey::parse("licence_key", key)?;
        let app = self.authorize(ParsedScope::parse(scope)?).await?;
        if !queries::delete_licence(self.db.writer(), app.id, key.as_str()).await? {
            return Err(CoreError::NotFound("no licence with that key in this app"));
        }
        Ok(())
    }

    pub async fn set_licence_banned(
        &self,
        scope: ScopeInput,
        key: &str,
        banned: bool,
    ) -> Result<LicenceView, CoreError> {
        let key = LicenceKey::parse("licence_key", key)?;
        let app = self.authorize(ParsedScope::parse(scope)?).await?;
        let lic = queries::set_licence_banned(self.db.writer(), app.id, key.as_str(), banned)
            .await?
            .ok_or(CoreError::NotFound("no licence with that key in this app"))?;
        let used_by = match lic.user_id {
            Some(id) => queries::usernames(self.db.writer(), &[id]).await?.remove(&id),
            None => None,
        };
        Ok(LicenceView::new(lic, used_by))
    }

    pub async fn list_users(
        &self,
        scope: ScopeInput,
        page_size: u32,
        page_token: &str,
        filter: ListFilter,
    ) -> Result<ListPage<UserView>, CoreError> {
        let (size, after) = page_params(page_size, page_token)?;
        let filter = ListFilter { prefix: super::sessions::username_prefix(&filter.prefix)?, ..filter };
        let app = self.authorize(ParsedScope::parse(scope)?).await?;
        let (items, next) = user_page(self.db.reader(), app.id, after, size, &filter).await?;
        Ok(ListPage { items, next_page_token: next.map(|id| id.to_string()).unwrap_or_default() })
    }

    pub async fn delete_user(&self, scope: ScopeInput, user_id: i64) -> Result<(), CoreError> {
        let app = self.authorize(ParsedScope::parse(scope)?).await?;
        let txn = storage::begin(self.db.writer()).await?;
        let outcome = match queries::delete_user(&txn, app.id, user_id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(CoreError::NotFound("no user with that id in this app")),
            Err(e) => Err(e),
        };
        storage::settle(txn, outcome).await
    }

    pub async fn reset_hwid(&self, scope: ScopeInput, user_id: i64) -> Result<UserView, CoreError> {
        let app = self.authorize(ParsedScope::parse(scope)?).await?;
        if !queries::reset_hwid(self.db.writer(), app.id, user_id).await? {
            return Err(CoreError::NotFound("no user with that id in this app"));
        }
        let user = queries::find_user_by_id(self.db.reader(), app.id, user_id)
            .await?
            .ok_or(CoreError::NotFound("no user with that id in this app"))?;
        let standing = super::standing_of(self.db.reader(), user.id).await?;
        Ok(UserView::new(user, standing))
    }

    /// Authorises an upload and returns the app it goes to.
    pub(super) async fn authorize_input(&self, scope: ScopeInput) -> Result<app::Model, CoreError> {
        self.authorize(ParsedScope::parse(scope)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_params_default_bound_and_parse() {
        assert_eq!(page_params(0, "").ok(), Some((100, 0)));
        assert_eq!(page_params(1000, "42").ok(), Some((1000, 42)));
        assert!(page_params(1001, "").is_err());
        assert!(page_params(10, "x").is_err());
        assert!(page_params(10, "-5").is_err());
    }

    #[test]
    fn a_short_page_is_the_last() {
        assert_eq!(continue_after(3, 3, Some(9)), Some(9));
        assert_eq!(continue_after(2, 3, Some(9)), None);
        assert_eq!(continue_after(0, 3, None), None);
    }
}
