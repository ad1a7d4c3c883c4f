//! The dashboard's pages: which path is which page, and for each, the core call behind it and
//! the template in front of it. Failures become pages in one place ([`Fail::render`]).

use std::{future::Future, time::Duration};

use askama::Template;
use licensing::{ErrorCode, v1};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use tonic::Status;
use warp::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    reply::{Reply, Response},
};

use super::{
    Dashboard, Incoming, PREFIX, chart,
    chart::Chart,
    csv, empty,
    session::{CookiePolicy, Session},
};
use crate::{
    core_client::CoreClient,
    error::ApiError,
    forms::{self, Form},
    transfer::{self, BodyStream, UploadStart},
};

const STYLE: &str = include_str!("static/style.css");
const SCRIPT: &str = include_str!("static/upload.js");
const HTML: &str = "text/html; charset=utf-8";

/// Rows on one page of a listing.
const PAGE_ROWS: u32 = 50;
/// Licences per message of the export stream.
const EXPORT_PAGE: u32 = 1000;
/// Days on the activity page.
const ACTIVITY_DAYS: u32 = 30;
const WRONG_CREDENTIALS: &str = "Wrong username or password.";

/// The licence states the listing can be narrowed to, as the `status` parameter names them.
const STATUSES: [&str; 5] = ["all", "unused", "active", "expired", "banned"];

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    Post,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LicenceAction {
    Ban,
    Unban,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserAction {
    ResetHwid,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyAction {
    Add,
    Promote,
    Retire,
}

/// Every page and form target, with the ids its path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Home,
    LoginPage,
    SignIn,
    SignOut,
    Style,
    Script,
    Apps,
    CreateApp,
    App(i64),
    SetOnline(i64),
    SetVersion(i64),
    RenewSecret(i64),
    Key(i64, KeyAction),
    Licences(i64),
    CreateLicences(i64),
    Licence(i64, LicenceAction),
    Export(i64),
    Users(i64),
    User(i64, i64, UserAction),
    Binary(i64),
    Upload(i64),
    Activity(i64),
    NotFound,
}

/// A positive id written as plain digits; anything else names no page.
fn id(segment: &str) -> Option<i64> {
    if segment.is_empty() || segment.len() > 18 || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok().filter(|id| *id > 0)
}

fn route(verb: Verb, path: &[&str]) -> Route {
    use Verb::{Get, Post};
    let Some((first, rest)) = path.split_first() else {
        return if verb == Get { Route::Home } else { Route::NotFound };
    };
    match (verb, *first, rest) {
        (Get, "login", []) => Route::LoginPage,
        (Post, "login", []) => Route::SignIn,
        (Post, "logout", []) => Route::SignOut,
        (Get, "static", ["style.css"]) => Route::Style,
        (Get, "static", ["upload.js"]) => Route::Script,
        (Get, "apps", []) => Route::Apps,
        (Post, "apps", []) => Route::CreateApp,
        (_, "apps", [app, tail @ ..]) => match id(app) {
            Some(app) => app_route(verb, app, tail),
            None => Route::NotFound,
        },
        _ => Route::NotFound,
    }
}

fn app_route(verb: Verb, app: i64, tail: &[&str]) -> Route {
    use Verb::{Get, Post};
    match (verb, tail) {
        (Get, []) => Route::App(app),
        (Post, ["online"]) => Route::SetOnline(app),
        (Post, ["version"]) => Route::SetVersion(app),
        (Post, ["renew-secret"]) => Route::RenewSecret(app),
        (Post, ["keys", "add"]) => Route::Key(app, KeyAction::Add),
        (Post, ["keys", "promote"]) => Route::Key(app, KeyAction::Promote),
        (Post, ["keys", "retire"]) => Route::Key(app, KeyAction::Retire),
        (Get, ["licences"]) => Route::Licences(app),
        (Post, ["licences"]) => Route::CreateLicences(app),
        (Post, ["licences", "ban"]) => Route::Licence(app, LicenceAction::Ban),
        (Post, ["licences", "unban"]) => Route::Licence(app, LicenceAction::Unban),
        (Post, ["licences", "delete"]) => Route::Licence(app, LicenceAction::Delete),
        (Get, ["licences.csv"]) => Route::Export(app),
        (Get, ["users"]) => Route::Users(app),
        (Post, ["users", user, "reset-hwid"]) => {
            id(user).map_or(Route::NotFound, |user| Route::User(app, user, UserAction::ResetHwid))
        }
        (Post, ["users", user, "delete"]) => {
            id(user).map_or(Route::NotFound, |user| Route::User(app, user, UserAction::Delete))
        }
        (Get, ["binary"]) => Route::Binary(app),
        (Post, ["binary"]) => Route::Upload(app),
        (Get, ["activity"]) => Route::Activity(app),
        _ => Route::NotFound,
    }
}

impl Route {
    /// The name under which requests are counted and logged.
    fn action(self) -> &'static str {
        match self {
            Route::Home => "home",
            Route::LoginPage | Route::SignIn => "login",
            Route::SignOut => "logout",
            Route::Style | Route::Script => "static",
            Route::Apps => "apps",
            Route::CreateApp => "create_app",
            Route::App(_) => "app",
            Route::SetOnline(_) => "set_online",
            Route::SetVersion(_) => "set_version",
            Route::RenewSecret(_) => "renew_secret",
            Route::Key(_, KeyAction::Add) => "add_signing_key",
            Route::Key(_, KeyAction::Promote) => "promote_signing_key",
            Route::Key(_, KeyAction::Retire) => "retire_signing_key",
            Route::Licences(_) => "licences",
            Route::CreateLicences(_) => "create_licences",
            Route::Licence(_, LicenceAction::Ban) => "ban_licence",
            Route::Licence(_, LicenceAction::Unban) => "unban_licence",
            Route::Licence(_, LicenceAction::Delete) => "delete_licence",
            Route::Export(_) => "export_licences",
            Route::Users(_) => "users",
            Route::User(_, _, UserAction::ResetHwid) => "reset_hwid",
            Route::User(_, _, UserAction::Delete) => "delete_user",
            Route::Binary(_) => "binary",
            Route::Upload(_) => "upload_file",
            Route::Activity(_) => "activity",
            Route::NotFound => "-",
        }
    }
}

/// Answers one request: the action it was counted as, its outcome code, and the answer.
pub(super) async fn dispatch(dash: &Dashboard, incoming: Incoming) -> (&'static str, &'static str, Response) {
    let Incoming { method, segments, query, headers, address, body } = incoming;
    let verb = match method.as_str() {
        "GET" | "HEAD" => Verb::Get,
        "POST" => Verb::Post,
        _ => Verb::Other,
    };
    let path: Vec<&str> = segments.iter().map(String::as_str).collect();
    let route = route(verb, &path);
    let cx = Cx { dash, session: dash.cookie.session(&headers), address, get: verb != Verb::Post };
    let outcome = if verb == Verb::Post && cross_site(&headers) {
        // Browsers say where a request comes from; a form of another site is refused outright,
        // before the CSRF token is even looked at (and on the sign-in form, which has none).
        Err(Fail::Forbidden)
    } else {
        serve(&cx, route, &query, &headers, body).await
    };
    match outcome {
        Ok(response) => (route.action(), "success", response),
        Err(fail) => (route.action(), fail.code(), fail.render(&cx)),
    }
}

/// Whether the browser says the form came from another origin. `same-site` counts too: another
/// port or subdomain of the same host could otherwise sign a victim into the attacker's account
/// (the sign-in form has no session to bind a CSRF token to). Browsers that send no
/// `Sec-Fetch-Site` rely on the CSRF token alone.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|site| !site.eq_ignore_ascii_case("same-origin") && !site.eq_ignore_ascii_case("none"))
}

async fn serve(cx: &Cx<'_>, route: Route, query: &Form, headers: &HeaderMap, body: BodyStream) -> Outcome {
    match route {
        Route::Home => Ok(redirect(&format!("{PREFIX}/apps"))),
        Route::LoginPage => login_page(cx, StatusCode::OK, String::new(), String::new()),
        Route::SignIn => sign_in(cx, headers, body).await,
        Route::SignOut => sign_out(cx, headers, body).await,
        Route::Style => Ok(asset(STYLE, "text/css; charset=utf-8")),
        Route::Script => Ok(asset(SCRIPT, "text/javascript; charset=utf-8")),
        Route::Apps => apps(cx).await,
        Route::App(app) => app_page(cx, app).await,
        Route::Licences(app) => licences(cx, app, query).await,
        Route::Export(app) => export(cx, app).await,
        Route::Users(app) => users(cx, app, query).await,
        Route::Binary(app) => binary(cx, app).await,
        Route::Upload(app) => upload(cx, app, headers, body).await,
        Route::Activity(app) => activity(cx, app).await,
        Route::NotFound => Err(Fail::NotFound),
        post => {
            let (session, form) = cx.form(headers, body).await?;
            form_post(cx, post, &session, &form).await
        }
    }
}

/// The POSTs of an ordinary form, once their session and CSRF token were checked.
async fn form_post(cx: &Cx<'_>, route: Route, session: &Session, form: &Form) -> Outcome {
    let mut dev = cx.core().developer.clone();
    match route {
        Route::CreateApp => {
            let request = v1::CreateAppRequest {
                developer: None,
                origin: cx.origin(),
                name: form.text("name")?,
                version: form.text("version")?,
            };
            let app = cx.call(dev.create_app(cx.request(session, request))).await?;
            Ok(redirect(&app_url(app.id, "")))
        }
        Route::SetOnline(app) => {
            let online = match form.text("online")?.as_str() {
                "1" => true,
                "0" => false,
                _ => return Err(ApiError::invalid_field("online", "expected 0 or 1").into()),
            };
            let request = v1::SetAppOnlineRequest { scope: cx.scope(app), online };
            cx.call(dev.set_app_online(cx.request(session, request))).await?;
            Ok(redirect(&app_url(app, "")))
        }
        Route::SetVersion(app) => {
            let request = v1::SetAppVersionRequest { scope: cx.scope(app), version: form.text("version")? };
            cx.call(dev.set_app_version(cx.request(session, request))).await?;
            Ok(redirect(&app_url(app, "")))
        }
        Route::RenewSecret(app) => {
            if form.raw("confirm").is_none_or(<[u8]>::is_empty) {
                return Err(ApiError::missing_field("confirm").into());
            }
            let request = v1::RenewSecretRequest { scope: cx.scope(app) };
            cx.call(dev.renew_secret(cx.request(session, request))).await?;
            Ok(redirect(&app_url(app, "")))
        }
        Route::Key(app, action) => {
            let scope = cx.scope(app);
            match action {
                KeyAction::Add => {
                    let request = v1::AddSigningKeyRequest { scope };
                    cx.call(dev.add_signing_key(cx.request(session, request))).await?;
                }
                KeyAction::Promote => {
                    let request = v1::PromoteSigningKeyRequest { scope, kid: form.text("kid")? };
                    cx.call(dev.promote_signing_key(cx.request(session, request))).await?;
                }
                KeyAction::Retire => {
                    let request = v1::RetireSigningKeyRequest { scope, kid: form.text("kid")? };
                    cx.call(dev.retire_signing_key(cx.request(session, request))).await?;
                }
            }
            Ok(redirect(&app_url(app, "")))
        }
        Route::CreateLicences(app) => {
            let request = v1::CreateLicencesRequest {
                scope: cx.scope(app),
                amount: forms::unsigned(form, "amount")?,
                access: forms::unsigned(form, "access")?,
                expire_time: Some(end_of_day(&form.text("expires")?)?),
            };
            cx.call(dev.create_licences(cx.request(session, request))).await?;
            Ok(redirect(&app_url(app, "/licences")))
        }
        Route::Licence(app, action) => {
            let scope = cx.scope(app);
            let licence_key = form.text("key")?;
            match action {
                LicenceAction::Ban => {
                    let request = v1::BanLicenceRequest { scope, licence_key };
                    cx.call(dev.ban_licence(cx.request(session, request))).await?;
                }
                LicenceAction::Unban => {
                    let request = v1::UnbanLicenceRequest { scope, licence_key };
                    cx.call(dev.unban_licence(cx.request(session, request))).await?;
                }
                LicenceAction::Delete => {
                    let request = v1::DeleteLicenceRequest { scope, licence_key };
                    cx.call(dev.delete_licence(cx.request(session, request))).await?;
                }
            }
            Ok(redirect(&licences_url(app, &Listing::from_form(form))))
        }
        Route::User(app, user_id, action) => {
            let scope = cx.scope(app);
            match action {
                UserAction::ResetHwid => {
                    let request = v1::ResetHwidRequest { scope, user_id };
                    cx.call(dev.reset_hwid(cx.request(session, request))).await?;
                }
                UserAction::Delete => {
                    let request = v1::DeleteUserRequest { scope, user_id };
                    cx.call(dev.delete_user(cx.request(session, request))).await?;
                }
            }
            Ok(redirect(&users_url(app, &Listing::from_form(form))))
        }
        _ => Err(Fail::NotFound),
    }
}

// ---------------------------------------------------------------------------------------------
// The request's context, and failures
// ---------------------------------------------------------------------------------------------

type Outcome = Result<Response, Fail>;

/// What a handler knows of its request beyond its own fields.
struct Cx<'a> {
    dash: &'a Dashboard,
    /// The session the cookie names (not yet checked by the core).
    session: Option<Session>,
    address: String,
    /// A GET (or HEAD): an ended session sends the browser to the sign-in page.
    get: bool,
}

impl Cx<'_> {
    fn core(&self) -> &CoreClient {
        &self.dash.core
    }

    fn cookie(&self) -> CookiePolicy {
        self.dash.cookie
    }

    fn session(&self) -> Result<&Session, Fail> {
        self.session.as_ref().ok_or(Fail::NoSession)
    }

    fn origin(&self) -> Option<v1::Origin> {
        Some(v1::Origin { client_address: self.address.clone(), nonce: String::new() })
    }

    /// The app named by its id; the session says who asks.
    fn scope(&self, app_id: i64) -> Option<v1::AppScope> {
        Some(v1::AppScope { app_id, origin: self.origin(), ..Default::default() })
    }

    /// A unary request carrying the session as `authorization: Bearer`.
    fn request<T>(&self, session: &Session, message: T) -> tonic::Request<T> {
        let mut request = self.core().request(message);
        if let Some(bearer) = session.bearer() {
            request.metadata_mut().insert("authorization", bearer);
        }
        request
    }

    /// Awaits a core call within the gateway's timeout; its failure becomes a page.
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Fail> {
        self.core().within_timeout(call).await.map_err(|status| Fail::Api(ApiError::from_status(&status)))
    }

    /// A form POST: its body (at most the gateway's form limit), its session and its CSRF token.
    async fn form(&self, headers: &HeaderMap, body: BodyStream) -> Result<(Session, Form), Fail> {
        let form = transfer::read_form(headers, body).await?;
        let session = self.session.clone().ok_or(Fail::NoSession)?;
        if !session.csrf_matches(form.raw("csrf").unwrap_or_default()) {
            return Err(Fail::Forbidden);
        }
        Ok((session, form))
    }

    fn nav(&self, title: impl Into<String>, app_id: i64, current: &'static str) -> Nav {
        Nav {
            title: title.into(),
            signed_in: self.session.is_some(),
            csrf: self.session.as_ref().map(Session::csrf).unwrap_or_default(),
            app_id,
            current,
        }
    }
}

/// Why a request got no ordinary answer.
#[derive(Debug)]
pub(super) enum Fail {
    /// No session cookie, or one the core no longer knows.
    NoSession,
    /// A POST without the right CSRF token, or from another site.
    Forbidden,
    /// No such page, or an app (or user, or key) that is not the caller's.
    NotFound,
    /// What the core (or the gateway's own parsing) answered.
    Api(ApiError),
}

impl From<ApiError> for Fail {
    fn from(error: ApiError) -> Self {
        Fail::Api(error)
    }
}

impl Fail {
    fn code(&self) -> &'static str {
        match self {
            Fail::NoSession => ErrorCode::InvalidDeveloper.as_str(),
            Fail::Forbidden => ErrorCode::Forbidden.as_str(),
            Fail::NotFound => ErrorCode::NotFound.as_str(),
            Fail::Api(error) => error.code.as_str(),
        }
    }

    fn render(self, cx: &Cx<'_>) -> Response {
        let error = match self {
            Fail::NoSession => return session_ended(cx),
            Fail::Forbidden => {
                return error_page(
                    cx,
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "The request was refused. Go back, reload the page and try again.".into(),
                );
            }
            Fail::NotFound => return not_found(cx),
            Fail::Api(error) => error,
        };
        match error.code {
            ErrorCode::InvalidDeveloper => session_ended(cx),
            // Another developer's app answers exactly as one that does not exist.
            ErrorCode::NotFound | ErrorCode::Forbidden => not_found(cx),
            ErrorCode::RateLimited => {
                let mut response = error_page(
                    cx,
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many requests",
                    "Too many failed attempts; wait a while and try again.".into(),
                );
                if let Some(seconds) = error.retry_after {
                    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                response
            }
            ErrorCode::Unavailable => error_page(
                cx,
                StatusCode::SERVICE_UNAVAILABLE,
                "Service unavailable",
                "The licensing service is unavailable right now; try again in a moment.".into(),
            ),
            ErrorCode::Internal => error_page(
                cx,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The request could not be completed.".into(),
            ),
            code => {
                let status = error.http_status();
                let heading = match status {
                    StatusCode::BAD_REQUEST => "Bad request",
                    StatusCode::CONFLICT => "Conflict",
                    StatusCode::GONE => "Gone",
                    StatusCode::PAYLOAD_TOO_LARGE => "Too large",
                    StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
                    _ => "Refused",
                };
                tracing::debug!(code = code.as_str(), "dashboard request refused");
                error_page(cx, status, heading, error.message)
            }
        }
    }
}

/// No valid session: a GET goes to the sign-in page, anything else is refused. A cookie the
/// core no longer knows is cleared either way.
fn session_ended(cx: &Cx<'_>) -> Response {
    let signed_out = Cx { dash: cx.dash, session: None, address: String::new(), get: cx.get };
    let mut response = if cx.get {
        redirect(&format!("{PREFIX}/login"))
    } else {
        error_page(
            &signed_out,
            StatusCode::FORBIDDEN,
            "Forbidden",
            "You are not signed in, or your session has ended. Sign in and try again.".into(),
        )
    };
    if cx.session.is_some() {
        response.headers_mut().append(header::SET_COOKIE, cx.cookie().clear());
    }
    response
}

fn not_found(cx: &Cx<'_>) -> Response {
    error_page(cx, StatusCode::NOT_FOUND, "Not found", "There is nothing here, or it is not yours.".into())
}

fn error_page(cx: &Cx<'_>, status: StatusCode, heading: &'static str, message: String) -> Response {
    let page = ErrorPage { nav: cx.nav(heading, 0, ""), heading, message };
    html(status, &page)
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------

fn html<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(text) => {
            let mut response = Response::new(text.into());
            *response.status_mut() = status;
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(HTML));
            response
        }
        Err(error) => {
            tracing::error!(%error, "a dashboard template failed to render");
            let mut response = Response::new("internal error".into());
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            response
        }
    }
}

/// `303 See Other`: after a POST, the browser GETs the page it lands on.
fn redirect(location: &str) -> Response {
    let mut response = empty(StatusCode::SEE_OTHER);
    match HeaderValue::from_str(location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
        }
        Err(_) => {
            response.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/dashboard/apps"));
        }
    }
    response
}

fn asset(text: &'static str, content_type: &'static str) -> Response {
    let mut response = Response::new(text.into());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn app_url(app: i64, rest: &str) -> String {
    format!("{PREFIX}/apps/{app}{rest}")
}

/// Where a listing stands: the search, the state filter (licences) and the page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Listing {
    q: String,
    status: &'static str,
    after: String,
}

impl Listing {
    /// From the query of a GET, or the hidden fields of a row's form (to come back to the same
    /// page). Values that could not have come from a page of ours are dropped, not refused.
    fn from_form(form: &Form) -> Listing {
        let status = form.text("status").unwrap_or_default();
        let after = form.text("after").unwrap_or_default();
        Listing {
            q: form.text("q").unwrap_or_default(),
            status: STATUSES.iter().copied().find(|s| *s == status).unwrap_or("all"),
            after: if !after.is_empty() && after.len() <= 20 && after.bytes().all(|b| b.is_ascii_digit()) {
                after
            } else {
                String::new()
            },
        }
    }

    fn filter(&self) -> v1::LicenceFilter {
        match self.status {
            "unused" => v1::LicenceFilter::Unused,
            "active" => v1::LicenceFilter::Active,
            "expired" => v1::LicenceFilter::Expired,
            "banned" => v1::LicenceFilter::Banned,
            _ => v1::LicenceFilter::Unspecified,
        }
    }

    /// The query string of this listing at page `after` (empty for the first page).
    fn query(&self, after: &str) -> String {
        let mut parts = Vec::new();
        if !self.q.is_empty() {
            parts.push(format!("q={}", utf8_percent_encode(&self.q, NON_ALPHANUMERIC)));
        }
        if !self.status.is_empty() && self.status != "all" {
            parts.push(format!("status={}", self.status));
        }
        if !after.is_empty() {
            parts.push(format!("after={after}"));
        }
        if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
    }
}

fn licences_url(app: i64, listing: &Listing) -> String {
    format!("{}{}", app_url(app, "/licences"), listing.query(&listing.after))
}

fn users_url(app: i64, listing: &Listing) -> String {
    let listing = Listing { status: "", ..listing.clone() };
    format!("{}{}", app_url(app, "/users"), listing.query(&listing.after))
}

// ---------------------------------------------------------------------------------------------
// Shown values
// ---------------------------------------------------------------------------------------------

/// A timestamp as `YYYY-MM-DD HH:MM:SS` (UTC); empty when absent.
pub(super) fn timestamp_text(at: Option<&prost_types::Timestamp>) -> String {
    at.and_then(|at| chrono::DateTime::from_timestamp(at.seconds, 0))
        .map(|at| at.format(licensing::DATE_FORMAT).to_string())
        .unwrap_or_default()
}

/// One word for where a licence stands: `banned` first, then `expired`, then `active` (held),
/// `used` (redeemed by a user since deleted) or `unused`.
pub(super) fn licence_status(licence: &v1::Licence, now: i64) -> &'static str {
    let expired = licence.expire_time.as_ref().is_some_and(|at| at.seconds <= now);
    if licence.banned {
        "banned"
    } else if expired {
        "expired"
    } else if licence.in_use {
        "active"
    } else if licence.redeemed {
        "used"
    } else {
        "unused"
    }
}

fn user_status(status: v1::LicenceStatus) -> &'static str {
    match status {
        v1::LicenceStatus::Active => "active",
        v1::LicenceStatus::Expired => "expired",
        v1::LicenceStatus::Banned => "banned",
        v1::LicenceStatus::None | v1::LicenceStatus::Unspecified => "none",
    }
}

fn key_state(state: v1::SigningKeyState) -> &'static str {
    match state {
        v1::SigningKeyState::Signing => "signing",
        v1::SigningKeyState::Next => "next",
        v1::SigningKeyState::Previous => "previous",
        v1::SigningKeyState::Unspecified => "unknown",
    }
}

/// `expires`: a `YYYY-MM-DD` day; the licences run to the end of it, UTC. Whether it lies in
/// the future is the core's call.
fn end_of_day(value: &str) -> Result<prost_types::Timestamp, ApiError> {
    let invalid = || ApiError::invalid_field("expires", "expected a date, YYYY-MM-DD");
    if value.is_empty() {
        return Err(ApiError::missing_field("expires"));
    }
    let shaped = value.len() == 10
        && value
            .bytes()
            .enumerate()
            .all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    if !shaped {
        return Err(invalid());
    }
    let day = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| invalid())?;
    let end = day.and_hms_opt(23, 59, 59).ok_or_else(invalid)?.and_utc();
    Ok(prost_types::Timestamp { seconds: end.timestamp(), nanos: 0 })
}

fn duration_text(duration: Option<&prost_types::Duration>) -> String {
    let Some(seconds) = duration.map(|d| d.seconds) else { return String::new() };
    let (count, unit) = match seconds {
        s if s > 0 && s % 86_400 == 0 => (s / 86_400, "day"),
        s if s > 0 && s % 3600 == 0 => (s / 3600, "hour"),
        s if s > 0 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

/// A byte count the way people read it: `512 MiB`, `1.5 GiB`, `900 bytes`.
fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = "bytes";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    if unit == "bytes" || value.fract() == 0.0 {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.1} {unit}")
    }
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

/// What the layout needs on every page.
pub(super) struct Nav {
    title: String,
    signed_in: bool,
    /// The session's CSRF token (empty when signed out), for the sign-out form and every other.
    csrf: String,
    /// The app whose pages the navigation links to; 0 outside an app.
    app_id: i64,
    /// Which of those links is this page.
    current: &'static str,
}

#[derive(Template)]
#[template(path = "dashboard/error.html")]
struct ErrorPage {
    nav: Nav,
    heading: &'static str,
    message: String,
}

#[derive(Template)]
#[template(path = "dashboard/login.html")]
struct LoginPage {
    nav: Nav,
    error: String,
    username: String,
}

#[derive(Template)]
#[template(path = "dashboard/apps.html")]
struct AppsPage {
    nav: Nav,
    apps: Vec<AppRow>,
}

struct AppRow {
    id: i64,
    name: String,
    online: bool,
    version: String,
    created: String,
}

#[derive(Template)]
#[template(path = "dashboard/app.html")]
struct AppPage {
    nav: Nav,
    app: AppView,
}

struct AppView {
    id: i64,
    name: String,
    online: bool,
    version: String,
    public_key: String,
    secret: String,
    created: String,
    offline_grace: String,
    keys: Vec<KeyRow>,
}

struct KeyRow {
    kid: String,
    public_key: String,
    state: &'static str,
    created: String,
}

#[derive(Template)]
#[template(path = "dashboard/licences.html")]
struct LicencesPage {
    nav: Nav,
    app_id: i64,
    rows: Vec<LicenceRow>,
    listing: Listing,
    /// Links to the next and first pages; empty when there is none.
    next: String,
    first: String,
}

struct LicenceRow {
    key: String,
    status: &'static str,
    banned: bool,
    access: u32,
    expires: String,
    user: String,
}

#[derive(Template)]
#[template(path = "dashboard/users.html")]
struct UsersPage {
    nav: Nav,
    app_id: i64,
    rows: Vec<UserRow>,
    listing: Listing,
    next: String,
    first: String,
}

struct UserRow {
    id: i64,
    name: String,
    email: String,
    hwid: String,
    licence: &'static str,
    pings: i64,
    last_seen: String,
}

#[derive(Template)]
#[template(path = "dashboard/binary.html")]
struct BinaryPage {
    nav: Nav,
    app_id: i64,
    has_file: bool,
    file: FileView,
    /// The gateway's upload limit, readable.
    max_upload: String,
}

#[derive(Default)]
struct FileView {
    name: String,
    size: u64,
    sha256: String,
    uploaded: String,
}

#[derive(Template)]
#[template(path = "dashboard/activity.html")]
struct ActivityPage {
    nav: Nav,
    chart: Chart,
}

// ---------------------------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------------------------

fn login_page(cx: &Cx<'_>, status: StatusCode, error: String, username: String) -> Outcome {
    let nav = Nav { signed_in: false, csrf: String::new(), ..cx.nav("Sign in", 0, "") };
    Ok(html(status, &LoginPage { nav, error, username }))
}

async fn sign_in(cx: &Cx<'_>, headers: &HeaderMap, body: BodyStream) -> Outcome {
    let form = transfer::read_form(headers, body).await?;
    let username = form.text("username")?;
    let request = v1::SignInRequest {
        developer: Some(v1::DeveloperAuth { username: username.clone(), password: form.text("password")? }),
        origin: cx.origin(),
    };
    let mut dev = cx.core().developer.clone();
    let opened = match cx.call(dev.sign_in(cx.core().request(request))).await {
        Ok(opened) => opened,
        // A wrong password and a malformed name read the same: the form says which fields it wants.
        Err(Fail::Api(error))
            if matches!(
                error.code,
                ErrorCode::InvalidDeveloper | ErrorCode::MissingField | ErrorCode::InvalidField
            ) =>
        {
            return login_page(cx, StatusCode::UNAUTHORIZED, WRONG_CREDENTIALS.into(), username);
        }
        Err(Fail::Api(error)) if error.code == ErrorCode::RateLimited => {
            let wait = error.retry_after.map_or_else(String::new, |s| format!(" in {s} seconds"));
            let mut response = login_page(
                cx,
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many failed sign-ins; try again{wait}."),
                username,
            )?;
            if let Some(seconds) = error.retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            return Ok(response);
        }
        Err(fail) => return Err(fail),
    };
    let Some(session) = Session::from_token(&opened.session_token) else {
        tracing::warn!("the core opened a session whose token is not shaped like one");
        return Err(ApiError::internal().into());
    };
    let max_age = opened.expires.map_or(0, |at| at.seconds - chrono::Utc::now().timestamp());
    let mut response = redirect(&format!("{PREFIX}/apps"));
    if let Some(cookie) = cx.cookie().open(&session, max_age) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

async fn sign_out(cx: &Cx<'_>, headers: &HeaderMap, body: BodyStream) -> Outcome {
    let (session, _) = cx.form(headers, body).await?;
    let mut dev = cx.core().developer.clone();
    match cx.call(dev.sign_out(cx.request(&session, v1::SignOutRequest {}))).await {
        // Already ended (idle, expired, or signed out elsewhere): the browser forgets it all the same.
        Ok(_) => {}
        Err(Fail::Api(error)) if error.code == ErrorCode::InvalidDeveloper => {}
        Err(fail) => return Err(fail),
    }
    let mut response = redirect(&format!("{PREFIX}/login"));
    response.headers_mut().append(header::SET_COOKIE, cx.cookie().clear());
    Ok(response)
}

async fn apps(cx: &Cx<'_>) -> Outcome {
    let session = cx.session()?;
    let mut dev = cx.core().developer.clone();
    let request = v1::ListAppsRequest { developer: None, origin: cx.origin() };
    let listed = cx.call(dev.list_apps(cx.request(session, request))).await?;
    let apps = listed
        .apps
        .into_iter()
        .map(|app| AppRow {
            id: app.id,
            name: app.name,
            online: app.online,
            version: app.version.unwrap_or_default(),
            created: timestamp_text(app.created.as_ref()),
        })
        .collect();
    Ok(html(StatusCode::OK, &AppsPage { nav: cx.nav("Apps", 0, "apps"), apps }))
}

async fn app_page(cx: &Cx<'_>, app_id: i64) -> Outcome {
    let session = cx.session()?;
    let mut dev = cx.core().developer.clone();
    let app =
        cx.call(dev.get_app(cx.request(session, v1::GetAppRequest { scope: cx.scope(app_id) }))).await?;
    let keys = app
        .signing_keys
        .iter()
        .map(|key| KeyRow {
            kid: key.kid.clone(),
            public_key: key.public_key.clone(),
            state: key_state(key.state()),
            created: timestamp_text(key.created.as_ref()),
        })
        .collect();
    let view = AppView {
        id: app_id,
        name: app.name,
        online: app.online,
        version: app.version.unwrap_or_default(),
        public_key: app.public_key,
        secret: app.secret,
        created: timestamp_text(app.created.as_ref()),
        offline_grace: duration_text(app.offline_grace.as_ref()),
        keys,
    };
    let nav = cx.nav(view.name.clone(), app_id, "app");
    Ok(html(StatusCode::OK, &AppPage { nav, app: view }))
}

async fn licences(cx: &Cx<'_>, app_id: i64, query: &Form) -> Outcome {
    let session = cx.session()?;
    let listing = Listing::from_form(query);
    let request = v1::ListLicencesRequest {
        scope: cx.scope(app_id),
        page_size: PAGE_ROWS,
        page_token: listing.after.clone(),
        key_prefix: listing.q.clone(),
        filter: listing.filter().into(),
    };
    let mut dev = cx.core().developer.clone();
    let page = cx.call(dev.list_licences(cx.request(session, request))).await?;
    let now = chrono::Utc::now().timestamp();
    let rows = page
        .licences
        .iter()
        .map(|licence| LicenceRow {
            key: licence.key.clone(),
            status: licence_status(licence, now),
            banned: licence.banned,
            access: licence.access,
            expires: timestamp_text(licence.expire_time.as_ref()),
            user: licence.used_by.clone().unwrap_or_default(),
        })
        .collect();
    let base = app_url(app_id, "/licences");
    let next = if page.next_page_token.is_empty() {
        String::new()
    } else {
        format!("{base}{}", listing.query(&page.next_page_token))
    };
    let first = if listing.after.is_empty() { String::new() } else { format!("{base}{}", listing.query("")) };
    let nav = cx.nav("Licences", app_id, "licences");
    Ok(html(StatusCode::OK, &LicencesPage { nav, app_id, rows, listing, next, first }))
}

async fn export(cx: &Cx<'_>, app_id: i64) -> Outcome {
    let session = cx.session()?;
    let request = v1::StreamLicencesRequest { scope: cx.scope(app_id), page_size: EXPORT_PAGE };
    let mut dev = cx.core().developer.clone();
    let mut pages = cx.call(dev.stream_licences(cx.request(session, request))).await?;
    let idle: Duration = cx.core().timeout;
    // The first page decides between a CSV answer and an error page.
    let first = match tokio::time::timeout(idle, pages.message()).await {
        Err(_) => return Err(ApiError::unavailable().into()),
        Ok(Err(status)) => return Err(ApiError::from_status(&status).into()),
        Ok(Ok(first)) => first,
    };
    let mut response = warp::reply::stream(csv::body(first, pages, idle)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"licences.csv\""),
    );
    Ok(response)
}

async fn users(cx: &Cx<'_>, app_id: i64, query: &Form) -> Outcome {
    let session = cx.session()?;
    let listing = Listing { status: "", ..Listing::from_form(query) };
    let request = v1::ListUsersRequest {
        scope: cx.scope(app_id),
        page_size: PAGE_ROWS,
        page_token: listing.after.clone(),
        username_prefix: listing.q.clone(),
    };
    let mut dev = cx.core().developer.clone();
    let page = cx.call(dev.list_users(cx.request(session, request))).await?;
    let rows = page
        .users
        .into_iter()
        .map(|user| UserRow {
            id: user.id,
            licence: user_status(user.licence_status()),
            name: user.username,
            email: user.email,
            hwid: user.hwid.unwrap_or_default(),
            pings: user.total_pings,
            last_seen: timestamp_text(user.last_seen.as_ref()),
        })
        .collect();
    let base = app_url(app_id, "/users");
    let next = if page.next_page_token.is_empty() {
        String::new()
    } else {
        format!("{base}{}", listing.query(&page.next_page_token))
    };
    let first = if listing.after.is_empty() { String::new() } else { format!("{base}{}", listing.query("")) };
    let nav = cx.nav("Users", app_id, "users");
    Ok(html(StatusCode::OK, &UsersPage { nav, app_id, rows, listing, next, first }))
}

async fn binary(cx: &Cx<'_>, app_id: i64) -> Outcome {
    let session = cx.session()?;
    let mut dev = cx.core().developer.clone();
    let request = v1::GetFileInfoRequest { scope: cx.scope(app_id) };
    let file = match cx.call(dev.get_file_info(cx.request(session, request))).await {
        Ok(info) => Some(FileView {
            name: info.filename,
            size: info.size,
            sha256: info.sha256,
            uploaded: timestamp_text(info.uploaded.as_ref()),
        }),
        Err(Fail::Api(error)) if error.code == ErrorCode::NoFile => None,
        Err(fail) => return Err(fail),
    };
    let page = BinaryPage {
        nav: cx.nav("Binary", app_id, "binary"),
        app_id,
        has_file: file.is_some(),
        file: file.unwrap_or_default(),
        max_upload: size_text(cx.dash.max_upload_bytes),
    };
    Ok(html(StatusCode::OK, &page))
}

/// The upload streams through the gateway's upload path: the form's fields (the CSRF token)
/// come before the file, and are checked before a byte of it goes to the core.
async fn upload(cx: &Cx<'_>, app_id: i64, headers: &HeaderMap, body: BodyStream) -> Outcome {
    let session = cx.session.clone().ok_or(Fail::NoSession)?;
    let scope = cx.scope(app_id);
    let limit = cx.dash.max_upload_bytes;
    transfer::upload_file(cx.core(), limit, headers, body, |form: &Form| {
        if !session.csrf_matches(form.raw("csrf").unwrap_or_default()) {
            return Err(Fail::Forbidden);
        }
        Ok(UploadStart {
            header: v1::UploadFileHeader { scope, filename: String::new() },
            authorization: session.bearer(),
        })
    })
    .await?;
    Ok(redirect(&app_url(app_id, "/binary")))
}

async fn activity(cx: &Cx<'_>, app_id: i64) -> Outcome {
    let session = cx.session()?;
    let mut dev = cx.core().developer.clone();
    let request = v1::GetActivityRequest { scope: cx.scope(app_id), days: ACTIVITY_DAYS };
    let answer = cx.call(dev.get_activity(cx.request(session, request))).await?;
    let page =
        ActivityPage { nav: cx.nav("Activity", app_id, "activity"), chart: chart::chart(&answer.days) };
    Ok(html(StatusCode::OK, &page))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(path: &str, verb: Verb) -> Route {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        route(verb, &segments)
    }

    #[test]
    fn paths_name_pages() {
        assert_eq!(at("", Verb::Get), Route::Home);
        assert_eq!(at("login", Verb::Post), Route::SignIn);
        assert_eq!(at("apps/7", Verb::Get), Route::App(7));
        assert_eq!(at("apps/7/licences.csv", Verb::Get), Route::Export(7));
        assert_eq!(at("apps/7/users/9/reset-hwid", Verb::Post), Route::User(7, 9, UserAction::ResetHwid));
        assert_eq!(at("apps/7/licences/ban", Verb::Post), Route::Licence(7, LicenceAction::Ban));
        for nowhere in ["apps/0", "apps/-4", "apps/+4", "apps/x", "apps/99999999999999999999", "apps/7/nope"]
        {
            assert_eq!(at(nowhere, Verb::Get), Route::NotFound, "{nowhere}");
        }
        assert_eq!(at("apps/7/licences/ban", Verb::Get), Route::NotFound);
        assert_eq!(at("logout", Verb::Get), Route::NotFound);
        assert_eq!(at("apps", Verb::Other), Route::NotFound);
    }

    #[test]
    fn listings_keep_their_place() {
        let form = Form::parse_urlencoded(b"q=AB+c%26d&status=banned&after=120");
        let listing = Listing::from_form(&form);
        assert_eq!(
            licences_url(3, &listing),
            "/dashboard/apps/3/licences?q=AB%20c%26d&status=banned&after=120"
        );
        assert_eq!(users_url(3, &listing), "/dashboard/apps/3/users?q=AB%20c%26d&after=120");
        let odd = Listing::from_form(&Form::parse_urlencoded(b"status=%22x&after=1%202"));
        assert_eq!(odd, Listing { q: String::new(), status: "all", after: String::new() });
        assert_eq!(licences_url(3, &odd), "/dashboard/apps/3/licences");
    }

    #[test]
    fn expiry_is_the_end_of_the_day() {
        assert_eq!(end_of_day("2030-01-01").unwrap().seconds, 1_893_542_399);
        for bad in ["2030-1-01", "2030-02-30", "30-01-01", "2030/01/01", "2030-01-01 00:00:00", "+030-01-01"]
        {
            assert_eq!(end_of_day(bad).unwrap_err().code, ErrorCode::InvalidField, "{bad}");
        }
        assert_eq!(end_of_day("").unwrap_err().code, ErrorCode::MissingField);
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(size_text(900), "900 bytes");
        assert_eq!(size_text(536_870_912), "512 MiB");
        assert_eq!(size_text(1536 * 1024 * 1024), "1.5 GiB");
        let duration = |seconds| duration_text(Some(&prost_types::Duration { seconds, nanos: 0 }));
        assert_eq!(duration(86_400), "1 day");
        assert_eq!(duration(7200), "2 hours");
        assert_eq!(duration(90), "90 seconds");
        assert_eq!(duration_text(None), "");
    }

    #[test]
    fn licence_states() {
        let now = 1000;
        let future = Some(prost_types::Timestamp { seconds: 2000, nanos: 0 });
        let past = Some(prost_types::Timestamp { seconds: 10, nanos: 0 });
        let base = v1::Licence { expire_time: future, ..Default::default() };
        assert_eq!(licence_status(&base, now), "unused");
        assert_eq!(
            licence_status(&v1::Licence { in_use: true, redeemed: true, ..base.clone() }, now),
            "active"
        );
        assert_eq!(licence_status(&v1::Licence { redeemed: true, ..base.clone() }, now), "used");
        assert_eq!(licence_status(&v1::Licence { expire_time: past, ..base.clone() }, now), "expired");
        assert_eq!(
            licence_status(&v1::Licence { banned: true, expire_time: past, ..base.clone() }, now),
            "banned"
        );
    }
}
