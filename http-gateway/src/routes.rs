//! The two legacy endpoints as warp filters, and their handlers: parse the form, call the core,
//! shape the answer. No rule of the licensing service lives here.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Buf;
use futures_util::{Stream, StreamExt, TryStreamExt};
use ipnet::IpNet;
use licensing::v1;
use tonic::Status;
use warp::{
    Filter, Rejection,
    filters::path::FullPath,
    http::{HeaderMap, Method},
    reply::Response,
};

use crate::{
    client_addr::client_address,
    core_client::CoreClient,
    error::{ApiError, handle_rejection},
    forms::{Caller, Form, FromForm},
    listener::peer_address,
    listing, metrics, replies,
    transfer::{self, BodyStream},
};

const ACTION_PATH: &str = "/api/action.php";
const ADMIN_PATH: &str = "/api/admin.php";

/// What every handler shares: the core, and how this API treats its HTTP clients.
pub struct State {
    pub core: CoreClient,
    pub trusted_proxies: Vec<IpNet>,
    pub max_upload_bytes: u64,
}

/// Everything a handler needs from the HTTP request.
pub struct Incoming {
    query: Option<String>,
    headers: HeaderMap,
    peer: Option<SocketAddr>,
    body: BodyStream,
}

fn boxed_body<S, B>(body: S) -> BodyStream
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    body.map_ok(|mut buf| buf.copy_to_bytes(buf.remaining())).boxed()
}

fn incoming() -> impl Filter<Extract = (Incoming,), Error = Rejection> + Clone {
    let query = warp::query::raw().map(Some).or(warp::any().map(|| None)).unify();
    query
        .and(warp::header::headers_cloned())
        .and(peer_address())
        .and(warp::body::stream())
        .map(|query, headers, peer, body| Incoming { query, headers, peer, body: boxed_body(body) })
}

/// All routes, answering every request (unknown paths and methods included) with the contract.
pub fn routes(state: Arc<State>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with_state = warp::any().map(move || state.clone());
    let client = warp::path!("api" / "action.php")
        .and(warp::post())
        .and(with_state.clone())
        .and(incoming())
        .then(client_endpoint);
    let admin = warp::path!("api" / "admin.php")
        .and(warp::post())
        .and(with_state.clone())
        .and(incoming())
        .then(admin_endpoint);
    // Probes for orchestrators: `/healthz` says the process answers; `/readyz` that the core
    // answers its gRPC health check in time, so a load balancer can send traffic elsewhere.
    let healthz =
        warp::path!("healthz").and(warp::get()).map(|| replies::ok(&serde_json::json!({"status": "ok"})));
    let readyz = warp::path!("readyz").and(warp::get()).and(with_state.clone()).then(readiness);
    let metrics = warp::path!("metrics").and(warp::get()).map(|| {
        let mut response = Response::new(metrics::render().into());
        response.headers_mut().insert(
            warp::http::header::CONTENT_TYPE,
            warp::http::HeaderValue::from_static(licensing::metrics::CONTENT_TYPE),
        );
        response
    });
    let fallback =
        warp::path::full().and(warp::method()).and_then(|path: FullPath, method: Method| async move {
            let error = match path.as_str() {
                ACTION_PATH | ADMIN_PATH if method != Method::POST => ApiError::method_not_allowed(),
                ACTION_PATH | ADMIN_PATH => ApiError::internal(),
                _ => ApiError::not_found(),
            };
            Ok::<_, Rejection>(error.into_response())
        });
    client
        .or(admin)
        .unify()
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(metrics)
        .unify()
        .or(fallback)
        .unify()
        .recover(handle_rejection)
        .unify()
}

/// Longest wait for the core's health answer before `/readyz` says not ready.
const READINESS_TIMEOUT: Duration = Duration::from_secs(1);

async fn readiness(state: Arc<State>) -> Response {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let mut health = state.core.health.clone();
    let check = health.check(HealthCheckRequest { service: String::new() });
    let serving = matches!(
        tokio::time::timeout(READINESS_TIMEOUT, check).await,
        Ok(Ok(answer)) if answer.get_ref().status() == ServingStatus::Serving
    );
    if serving {
        replies::ok(&serde_json::json!({"status": "ready"}))
    } else {
        ApiError::unavailable().into_response()
    }
}

fn caller(state: &State, incoming: &Incoming) -> Caller {
    Caller {
        address: client_address(incoming.peer, &incoming.headers, &state.trusted_proxies)
            .map(|address| address.to_string())
            .unwrap_or_default(),
    }
}

/// The action named in a form, if any; invalid UTF-8 still counts as naming one (badly).
fn action_in(form: &Form) -> Option<String> {
    form.raw("action").filter(|raw| !raw.is_empty()).map(|raw| String::from_utf8_lossy(raw).into_owned())
}

fn unknown_action(name: Option<&str>, path: &str) -> ApiError {
    match name {
        None => ApiError::unknown_action(format!("no action given for {path}")),
        Some(name) => {
            let shown: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
            ApiError::unknown_action(format!("unknown action `{shown}` for {path}"))
        }
    }
}

/// Logs one line per request: never a field value, only what was asked and how it ended.
fn finish(
    path: &'static str,
    action: Option<&'static str>,
    caller: &Caller,
    started: Instant,
    outcome: Result<Response, ApiError>,
) -> Response {
    let (response, code) = match outcome {
        Ok(response) => (response, "success"),
        Err(error) => {
            let code = error.code.as_str();
            (error.into_response(), code)
        }
    };
    let latency = started.elapsed();
    let action = action.unwrap_or("-");
    metrics::request(path, action, code, latency);
    tracing::info!(
        path,
        action,
        code,
        http = response.status().as_u16(),
        address = %caller.address,
        latency_ms = latency.as_millis() as u64,
        "request"
    );
    response
}

// ---------------------------------------------------------------------------------------------
// /api/action.php
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAction {
    Register,
    Login,
    Connect,
    Download,
    Redeem,
}

impl ClientAction {
    const ALL: [ClientAction; 5] = [
        ClientAction::Register,
        ClientAction::Login,
        ClientAction::Connect,
        ClientAction::Download,
        ClientAction::Redeem,
    ];

    fn name(self) -> &'static str {
        match self {
            ClientAction::Register => "register",
            ClientAction::Login => "login",
            ClientAction::Connect => "connect",
            ClientAction::Download => "download",
            ClientAction::Redeem => "redeem",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.name() == name)
    }
}

async fn client_endpoint(state: Arc<State>, incoming: Incoming) -> Response {
    let started = Instant::now();
    let caller = caller(&state, &incoming);
    let (action, outcome) = client_request(&state, incoming, &caller).await;
    finish(ACTION_PATH, action, &caller, started, outcome)
}

async fn client_request(
    state: &State,
    incoming: Incoming,
    caller: &Caller,
) -> (Option<&'static str>, Result<Response, ApiError>) {
    let query = Form::parse_urlencoded(incoming.query.as_deref().unwrap_or("").as_bytes());
    let form = match transfer::read_form(&incoming.headers, incoming.body).await {
        Ok(form) => form,
        Err(error) => return (None, Err(error)),
    };
    let name = action_in(&query).or_else(|| action_in(&form));
    let Some(action) = name.as_deref().and_then(ClientAction::parse) else {
        return (None, Err(unknown_action(name.as_deref(), ACTION_PATH)));
    };
    (Some(action.name()), client_action(&state.core, action, &form, caller).await)
}

fn client_error(status: Status) -> ApiError {
    ApiError::from_client_status(&status)
}

async fn client_action(
    core: &CoreClient,
    action: ClientAction,
    form: &Form,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let mut client = core.client.clone();
    match action {
        ClientAction::Register => {
            let request = core.request(v1::RegisterRequest::from_form(form, caller)?);
            let reply = core.within_timeout(client.register(request)).await.map_err(client_error)?;
            Ok(replies::ok_with_token(replies::success(), &reply.response_token))
        }
        ClientAction::Login => {
            let request = core.request(v1::LoginRequest::from_form(form, caller)?);
            let reply = core.within_timeout(client.login(request)).await.map_err(client_error)?;
            let (body, token) = replies::login(reply)?;
            Ok(replies::ok_with_token(body, &token))
        }
        ClientAction::Connect => {
            let request = core.request(v1::HeartbeatRequest::from_form(form, caller)?);
            let reply = core.within_timeout(client.heartbeat(request)).await.map_err(client_error)?;
            let (body, token) = replies::connect(reply);
            Ok(replies::ok_with_token(body, &token))
        }
        ClientAction::Redeem => {
            let request = core.request(v1::RedeemRequest::from_form(form, caller)?);
            let reply = core.within_timeout(client.redeem(request)).await.map_err(client_error)?;
            let (body, token) = replies::redeem(reply);
            Ok(replies::ok_with_token(body, &token))
        }
        ClientAction::Download => {
            transfer::download(core, v1::DownloadRequest::from_form(form, caller)?).await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /api/admin.php
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdminAction {
    GetAppData,
    GetLicences,
    DeleteUser,
    DeleteLicence,
    ChangeStatus,
    ChangeVersion,
    RenewSecret,
    CreateLicences,
    GetUsers,
    ResetHwid,
    BanLicence,
    UnbanLicence,
    UploadFile,
}

impl AdminAction {
    const ALL: [AdminAction; 13] = [
        AdminAction::GetAppData,
        AdminAction::GetLicences,
        AdminAction::DeleteUser,
        AdminAction::DeleteLicence,
        AdminAction::ChangeStatus,
        AdminAction::ChangeVersion,
        AdminAction::RenewSecret,
        AdminAction::CreateLicences,
        AdminAction::GetUsers,
        AdminAction::ResetHwid,
        AdminAction::BanLicence,
        AdminAction::UnbanLicence,
        AdminAction::UploadFile,
    ];

    fn name(self) -> &'static str {
        match self {
            AdminAction::GetAppData => "get_app_data",
            AdminAction::GetLicences => "get_licences",
            AdminAction::DeleteUser => "delete_user",
            AdminAction::DeleteLicence => "delete_licence",
            AdminAction::ChangeStatus => "change_status",
            AdminAction::ChangeVersion => "change_version",
            AdminAction::RenewSecret => "renew_secret",
            AdminAction::CreateLicences => "create_licences",
            AdminAction::GetUsers => "get_users",
            AdminAction::ResetHwid => "reset_hwid",
            AdminAction::BanLicence => "ban_licence",
            AdminAction::UnbanLicence => "unban_licence",
            AdminAction::UploadFile => "upload_file",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.name() == name)
    }
}

async fn admin_endpoint(state: Arc<State>, incoming: Incoming) -> Response {
    let started = Instant::now();
    let caller = caller(&state, &incoming);
    let (action, outcome) = admin_request(&state, incoming, &caller).await;
    finish(ADMIN_PATH, action, &caller, started, outcome)
}

async fn admin_request(
    state: &State,
    incoming: Incoming,
    caller: &Caller,
) -> (Option<&'static str>, Result<Response, ApiError>) {
    let query = Form::parse_urlencoded(incoming.query.as_deref().unwrap_or("").as_bytes());
    let query_action = action_in(&query);
    // Only here may a body exceed 64 KiB, so the action must be known before the body is read.
    if query_action.as_deref() == Some(AdminAction::UploadFile.name()) {
        let outcome =
            transfer::upload(&state.core, state.max_upload_bytes, &incoming.headers, incoming.body, caller)
                .await;
        return (Some(AdminAction::UploadFile.name()), outcome);
    }
    let form = match transfer::read_form(&incoming.headers, incoming.body).await {
        Ok(form) => form,
        Err(error) => return (None, Err(error)),
    };
    let name = query_action.or_else(|| action_in(&form));
    match name.as_deref().and_then(AdminAction::parse) {
        None => (None, Err(unknown_action(name.as_deref(), ADMIN_PATH))),
        Some(AdminAction::UploadFile) => (
            None,
            Err(ApiError::unknown_action(
                "upload_file must be named in the query string: POST /api/admin.php?action=upload_file",
            )),
        ),
        Some(action) => (Some(action.name()), admin_action(&state.core, action, &form, caller).await),
    }
}

fn developer_error(status: Status) -> ApiError {
    ApiError::from_status(&status)
}

async fn admin_action(
    core: &CoreClient,
    action: AdminAction,
    form: &Form,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let mut client = core.developer.clone();
    let success = || Ok(replies::ok(&replies::success()));
    match action {
        AdminAction::GetAppData => {
            let request = core.request(v1::GetAppRequest::from_form(form, caller)?);
            let app = core.within_timeout(client.get_app(request)).await.map_err(developer_error)?;
            Ok(replies::ok(&replies::app_data(app)))
        }
        AdminAction::RenewSecret => {
            let request = core.request(v1::RenewSecretRequest::from_form(form, caller)?);
            let app = core.within_timeout(client.renew_secret(request)).await.map_err(developer_error)?;
            Ok(replies::ok(&replies::secret(app)))
        }
        AdminAction::ChangeStatus => {
            let request = core.request(v1::SetAppOnlineRequest::from_form(form, caller)?);
            core.within_timeout(client.set_app_online(request)).await.map_err(developer_error)?;
            success()
        }
        AdminAction::ChangeVersion => {
            let request = core.request(v1::SetAppVersionRequest::from_form(form, caller)?);
            core.within_timeout(client.set_app_version(request)).await.map_err(developer_error)?;
            success()
        }
        AdminAction::GetLicences => {
            let request = v1::ListLicencesRequest::from_form(form, caller)?;
            let request = v1::StreamLicencesRequest { scope: request.scope, page_size: LIST_PAGE_SIZE };
            let pages = core
                .within_timeout(client.stream_licences(core.request(request)))
                .await
                .map_err(developer_error)?;
            listing::json_array(pages, core.timeout, licence_rows, ApiError::from_status).await
        }
        AdminAction::GetUsers => {
            let request = v1::ListUsersRequest::from_form(form, caller)?;
            let request = v1::StreamUsersRequest { scope: request.scope, page_size: LIST_PAGE_SIZE };
            let pages = core
                .within_timeout(client.stream_users(core.request(request)))
                .await
                .map_err(developer_error)?;
            listing::json_array(pages, core.timeout, user_rows, ApiError::from_status).await
        }
        AdminAction::CreateLicences => {
            let request = core.request(v1::CreateLicencesRequest::from_form(form, caller)?);
            let created =
                core.within_timeout(client.create_licences(request)).await.map_err(developer_error)?;
            let keys: Vec<String> = created.licences.into_iter().map(|l| l.key).collect();
            Ok(replies::ok(&keys))
        }
        AdminAction::DeleteLicence => {
            let request = core.request(v1::DeleteLicenceRequest::from_form(form, caller)?);
            core.within_timeout(client.delete_licence(request)).await.map_err(developer_error)?;
            success()
        }
        AdminAction::BanLicence => {
            let request = core.request(v1::BanLicenceRequest::from_form(form, caller)?);
            core.within_timeout(client.ban_licence(request)).await.map_err(developer_error)?;
            success()
        }
        AdminAction::UnbanLicence => {
            let request = core.request(v1::UnbanLicenceRequest::from_form(form, caller)?);
            core.within_timeout(client.unban_licence(request)).await.map_err(developer_error)?;
            success()
        }
        AdminAction::DeleteUser => {
            let request = core.request(v1::DeleteUserRequest::from_form(form, caller)?);
            core.within_timeout(client.delete_user(request)).await.map_err(developer_error)?;
            success()
        }
        AdminAction::ResetHwid => {
            let request = core.request(v1::ResetHwidRequest::from_form(form, caller)?);
            core.within_timeout(client.reset_hwid(request)).await.map_err(developer_error)?;
            success()
        }
        // Routed to the streaming path before the body is read; never reaches here.
        AdminAction::UploadFile => Err(ApiError::internal()),
    }
}

/// Rows per streamed page: large enough that per-message costs vanish, small enough that a page
/// in flight stays a few hundred KiB.
const LIST_PAGE_SIZE: u32 = 1000;

fn licence_rows(page: v1::ListLicencesResponse) -> Vec<replies::LicenceRow> {
    page.licences.into_iter().map(replies::licence_row).collect()
}

fn user_rows(page: v1::ListUsersResponse) -> Vec<replies::UserRow> {
    page.users.into_iter().map(replies::user_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip() {
        for action in ClientAction::ALL {
            assert_eq!(ClientAction::parse(action.name()), Some(action));
        }
        for action in AdminAction::ALL {
            assert_eq!(AdminAction::parse(action.name()), Some(action));
        }
        assert_eq!(ClientAction::parse("get_app_data"), None);
        assert_eq!(AdminAction::parse("login"), None);
        assert_eq!(AdminAction::parse("LOGIN"), None);
    }

    #[test]
    fn action_comes_from_query_then_body() {
        let query = Form::parse_urlencoded(b"action=login");
        let body = Form::parse_urlencoded(b"action=register");
        assert_eq!(action_in(&query).or_else(|| action_in(&body)).as_deref(), Some("login"));
        let empty = Form::parse_urlencoded(b"action=");
        assert_eq!(action_in(&empty).or_else(|| action_in(&body)).as_deref(), Some("register"));
        assert_eq!(action_in(&Form::default()), None);
    }
}
