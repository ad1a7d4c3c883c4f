//! The gateway against a scripted in-process core: checks the translation both ways (fields,
//! origin, tokens, shapes, streaming) without any business rule. Real end-to-end tests against
//! the real core live in the workspace's tests/.

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::{Stream, StreamExt};
use http_gateway::{Gateway, GatewayConfig, IpNet};
use licensing::{
    ERROR_DOMAIN, ErrorCode, RESPONSE_TOKEN_METADATA, RETRY_AFTER_METADATA,
    v1::{
        self,
        client_service_server::{ClientService, ClientServiceServer},
        developer_service_server::{DeveloperService, DeveloperServiceServer},
    },
};
use reqwest::{Client, StatusCode};
use tokio::{net::TcpListener, sync::oneshot};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming, metadata::MetadataValue};
use tonic_types::{ErrorDetails, StatusExt};

// ---------------------------------------------------------------------------------------------
// The fake core
// ---------------------------------------------------------------------------------------------

fn licence(id: i64) -> v1::Licence {
    v1::Licence {
        id,
        key: format!("KEY-{id:05}"),
        used_by: (id == 1).then(|| "bob".to_owned()),
        in_use: id == 1,
        expire_time: ts(1_893_456_000),
        created: ts(1_700_000_000),
        access: 2,
        redeemed: id <= 2,
        redeemed_at: (id <= 2).then_some(prost_types::Timestamp { seconds: 1_700_000_060, nanos: 0 }),
        banned: id == 2,
    }
}

const FILE_SIZE: usize = 1024 * 1024 + 3;
const LICENCES: i64 = 2500;
/// Size of each direction of the memory check; far more than the gateway may hold.
const HUGE: usize = 128 * 1024 * 1024;
const HUGE_CHUNK: usize = 64 * 1024;

#[derive(Default)]
struct Seen {
    origins: Vec<v1::Origin>,
    auths: Vec<v1::UserAuth>,
    scopes: Vec<v1::AppScope>,
    register: Option<v1::RegisterRequest>,
    create: Option<v1::CreateLicencesRequest>,
    page_requests: Vec<(u32, String)>,
    upload: Option<(String, usize, u64)>,
    grpc_timeouts: Vec<bool>,
}

#[derive(Clone)]
struct Fake {
    name: &'static str,
    seen: Arc<Mutex<Seen>>,
    /// Told when the "slow" login has arrived, so a test can act while it is in flight.
    slow_started: Arc<tokio::sync::Notify>,
}

fn failure(code: ErrorCode, message: &str, token: Option<&'static str>) -> Status {
    let mut status = Status::with_error_details(
        code.grpc_code(),
        message,
        ErrorDetails::with_error_info(code.as_str(), ERROR_DOMAIN, HashMap::new()),
    );
    if let Some(token) = token {
        status.metadata_mut().insert(RESPONSE_TOKEN_METADATA, MetadataValue::from_static(token));
    }
    status
}

fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn file_byte(i: usize) -> u8 {
    (i % 251) as u8
}

impl Fake {
    fn record_auth(
        &self,
        request: &Request<impl Sized>,
        auth: Option<&v1::UserAuth>,
        origin: Option<&v1::Origin>,
    ) {
        let mut seen = self.seen.lock().unwrap();
        seen.grpc_timeouts.push(request.metadata().get("grpc-timeout").is_some());
        seen.auths.push(auth.cloned().unwrap_or_default());
        seen.origins.push(origin.cloned().unwrap_or_default());
    }

    fn record_scope(&self, scope: Option<&v1::AppScope>) -> Result<(), Status> {
        let scope = scope.cloned().unwrap_or_default();
        let developer = scope.developer.clone().unwrap_or_default();
        self.seen.lock().unwrap().scopes.push(scope);
        if developer.username == "bad" {
            return Err(failure(ErrorCode::InvalidDeveloper, "invalid developer", None));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl ClientService for Fake {
    async fn register(
        &self,
        request: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        self.record_auth(&request, None, request.get_ref().origin.as_ref());
        let message = request.into_inner();
        if message.username.is_empty() {
            return Err(failure(ErrorCode::MissingField, "missing field `username`", None));
        }
        self.seen.lock().unwrap().register = Some(message);
        // No token: the gateway must not invent one.
        Ok(Response::new(v1::RegisterResponse::default()))
    }

    async fn login(&self, request: Request<v1::LoginRequest>) -> Result<Response<v1::LoginResponse>, Status> {
        self.record_auth(&request, request.get_ref().auth.as_ref(), request.get_ref().origin.as_ref());
        let auth = request.into_inner().auth.unwrap_or_default();
        match auth.username.as_str() {
            "bob" => Ok(Response::new(v1::LoginResponse {
                user: Some(v1::User {
                    id: 1,
                    username: "bob".into(),
                    email: "bob@example.com".into(),
                    hwid: Some("HW-1".into()),
                    joined: ts(1_700_000_000),
                    total_pings: 12,
                    last_seen: None,
                    licence_status: v1::LicenceStatus::Expired as i32,
                    has_licence: true,
                }),
                app_version: Some("2.0".into()),
                response_token: format!("tok-login-{}", self.name),
            })),
            "slow" => {
                self.slow_started.notify_one();
                tokio::time::sleep(Duration::from_millis(600)).await;
                Ok(Response::new(v1::LoginResponse { user: Some(v1::User::default()), ..Default::default() }))
            }
            "limited" => {
                let mut status = failure(ErrorCode::RateLimited, "too many attempts", Some("tok-limited"));
                status.metadata_mut().insert(RETRY_AFTER_METADATA, MetadataValue::from_static("7"));
                Err(status)
            }
            "offline" => Err(failure(ErrorCode::AppOffline, "the app is offline", Some("tok-offline"))),
            _ => Err(failure(ErrorCode::InvalidCredentials, "invalid username or password", Some("tok-bad"))),
        }
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        self.record_auth(&request, request.get_ref().auth.as_ref(), request.get_ref().origin.as_ref());
        Ok(Response::new(v1::HeartbeatResponse {
            total_pings: 13,
            licence_status: v1::LicenceStatus::Active as i32,
            response_token: "tok-hb".into(),
        }))
    }

    async fn redeem(
        &self,
        request: Request<v1::RedeemRequest>,
    ) -> Result<Response<v1::RedeemResponse>, Status> {
        self.record_auth(&request, request.get_ref().auth.as_ref(), request.get_ref().origin.as_ref());
        let message = request.into_inner();
        if message.licence_key != "KEY-1" {
            return Err(failure(ErrorCode::InvalidLicence, "invalid licence key", Some("tok-redeem-bad")));
        }
        Ok(Response::new(v1::RedeemResponse {
            licence_status: v1::LicenceStatus::Active as i32,
            expire_time: ts(1_893_456_000),
            access: 3,
            response_token: "tok-redeem".into(),
        }))
    }

    type DownloadStream = Pin<Box<dyn Stream<Item = Result<v1::DownloadResponse, Status>> + Send>>;

    async fn download(
        &self,
        request: Request<v1::DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        self.record_auth(&request, request.get_ref().auth.as_ref(), request.get_ref().origin.as_ref());
        let auth = request.into_inner().auth.unwrap_or_default();
        let info = |size: u64| v1::DownloadResponse {
            payload: Some(v1::download_response::Payload::Info(v1::FileInfo {
                filename: "my \"app\".bin".into(),
                size,
                sha256: "00".into(),
                uploaded: ts(0),
            })),
            response_token: "tok-dl".into(),
        };
        let chunk = |bytes: Vec<u8>| {
            Ok(v1::DownloadResponse {
                payload: Some(v1::download_response::Payload::Chunk(bytes)),
                response_token: String::new(),
            })
        };
        match auth.username.as_str() {
            "bob" => {
                let bytes: Vec<u8> = (0..FILE_SIZE).map(file_byte).collect();
                let mut messages = vec![Ok(info(FILE_SIZE as u64))];
                messages.extend(bytes.chunks(100 * 1024).map(|c| chunk(c.to_vec())));
                Ok(Response::new(futures_util::stream::iter(messages).boxed()))
            }
            "huge" => {
                // Generated lazily, so the fake core holds no more than the gateway may.
                let messages = futures_util::stream::iter(0..HUGE / HUGE_CHUNK)
                    .map(move |k| chunk((k * HUGE_CHUNK..(k + 1) * HUGE_CHUNK).map(file_byte).collect()));
                let first = futures_util::stream::iter([Ok(info(HUGE as u64))]);
                Ok(Response::new(first.chain(messages).boxed()))
            }
            "broken" => {
                let messages =
                    vec![Ok(info(10)), chunk(vec![1, 2, 3, 4, 5]), Err(Status::internal("disk on fire"))];
                Ok(Response::new(futures_util::stream::iter(messages).boxed()))
            }
            "late" => {
                // The status arrives after the headers, as the first stream item.
                let messages =
                    vec![Err(failure(ErrorCode::NoActiveLicence, "no active licence", Some("tok-late")))];
                Ok(Response::new(futures_util::stream::iter(messages).boxed()))
            }
            _ => Err(failure(ErrorCode::NoFile, "the app has no file", Some("tok-nofile"))),
        }
    }
}

#[tonic::async_trait]
impl DeveloperService for Fake {
    async fn get_app(&self, request: Request<v1::GetAppRequest>) -> Result<Response<v1::App>, Status> {
        self.record_scope(request.get_ref().scope.as_ref())?;
        Ok(Response::new(v1::App {
            name: "Demo".into(),
            secret: "SECRET".into(),
            public_key: "PUBKEY".into(),
            online: false,
            version: None,
            ..Default::default()
        }))
    }

    async fn set_app_online(
        &self,
        request: Request<v1::SetAppOnlineRequest>,
    ) -> Result<Response<v1::App>, Status> {
        self.record_scope(request.get_ref().scope.as_ref())?;
        Ok(Response::new(v1::App { online: request.get_ref().online, ..Default::default() }))
    }

    async fn set_app_version(
        &self,
        request: Request<v1::SetAppVersionRequest>,
    ) -> Result<Response<v1::App>, Status> {
        self.record_scope(request.get_ref().scope.as_ref())?;
        if request.get_ref().version.is_empty() {
            return Err(failure(ErrorCode::MissingField, "missing field `version`", None));
        }
        Ok(Response::new(v1::App::default()))
    }

    async fn renew_secret(
        &self,
        request: Request<v1::RenewSecretRequest>,
    ) -> Result<Response<v1::App>, Status> {
        self.record_scope(request.get_ref().scope.as_ref())?;
        Ok(Response::new(v1::App { secret: "NEW-SECRET".into(), ..Default::default() }))
    }

    // Dashboard calls: not exercised against the fake.
    async fn get_file_info(
        &self,
        _: Request<v1::GetFileInfoRequest>,
    ) -> Result<Response<v1::FileInfo>, Status> {
        Err(Status::unimplemented("not used here"))
    }

    async fn get_activity(
        &self,
        _: Request<v1::GetActivityRequest>,
    ) -> Result<Response<v1::GetActivityResponse>, Status> {
        Err(Status::unimplemented("not used here"))
    }

    async fn sign_in(&self, _: Request<v1::SignInRequest>) -> Result<Response<v1::SignInResponse>, Status> {
        Err(Status::unimplemented("not used here"))
    }

    async fn sign_out(
        &self,
        _: Request<v1::SignOutRequest>,
    ) -> Result<Response<v1::SignOutResponse>, Status> {
        Err(Status::unimplemented("not used here"))
    }

    async fn list_apps(
        &self,
        _: Request<v1::ListAppsRequest>,
    ) -> Result<Response<v1::ListAppsResponse>, Status> {
        Err(Status::unimplemented("not used here"))
    }

    async fn create_app(&self, _: Request<v1::CreateAppRequest>) -> Result<Response<v1::App>, Status> {
        Err(Status::unimplemented("not used here"))
    }

    // The legacy API has no action for key rotation: the gateway never calls these.
    async fn add_signing_key(
        &self,
        _: Request<v1::AddSigningKeyRequest>,
    ) -> Result<Response<v1::App>, Status> {
        Err(Status::unimplemented("not used by the gateway"))
    }

    async fn promote_signing_key(
        &self,
        _: Request<v1::PromoteSigningKeyRequest>,
    ) -> Result<Response<v1::App>, Status> {
        Err(Status::unimplemented("not used by the gateway"))
    }

    async fn retire_signing_key(
        &self,
        _: Request<v1::RetireSigningKeyRequest>,
    ) -> Result<Response<v1::App>, Status> {
        Err(Status::unimplemented("not used by the gateway"))
    }

    async fn list_licences(
        &self,
        _request: Request<v1::ListLicencesRequest>,
    ) -> Result<Response<v1::ListLicencesResponse>, Status> {
        Err(Status::unimplemented("the gateway streams listings"))
    }

    type StreamLicencesStream = Pin<Box<dyn Stream<Item = Result<v1::ListLicencesResponse, Status>> + Send>>;

    async fn stream_licences(
        &self,
        request: Request<v1::StreamLicencesRequest>,
    ) -> Result<Response<Self::StreamLicencesStream>, Status> {
        self.record_scope(request.get_ref().scope.as_ref())?;
        let page_size = i64::from(request.get_ref().page_size);
        self.seen.lock().unwrap().page_requests.push((request.get_ref().page_size, String::new()));
        let fail_midway = self.name == "fails-midway";
        let pages =
            (0..).map(move |n| 1 + n * page_size).take_while(|start| *start <= LICENCES).map(move |start| {
                if fail_midway && start > 1 {
                    return Err(failure(ErrorCode::Unavailable, "the database went away", None));
                }
                let end = (start + page_size).min(LICENCES + 1);
                Ok(v1::ListLicencesResponse {
                    licences: (start..end).map(licence).collect(),
                    next_page_token: String::new(),
                })
            });
        Ok(Response::new(Box::pin(futures_util::stream::iter(pages.collect::<Vec<_>>()))))
    }

    async fn create_licences(
        &self,
        request: Request<v1::CreateLicencesRequest>,
    ) -> Result<Response<v1::CreateLicencesResponse>, Status> {
        self.record_scope(request.get_ref().scope.as_ref())?;
        let message = request.into_inner();
        if message.amount > 500 {
            return Err(failure(ErrorCode::InvalidField, "invalid field `amount`: 1 to 500", None));
        }
        let licences = (0..message.amount)
            .map(|i| v1::Licence { id: i64::from(i) + 1, key: format!("NEW-{i}"), ..Default::default() })
            .collect();
        self.seen.lock().unwrap().create = Some(message);
        Ok(Response::new(v1::CreateLicencesResponse { licences }))
    }

    async fn delete_licence(
        &self,
        request: Request<v1::DeleteLicenceRequest>,
    ) -> Result<Response<v1::DeleteLicenceResponse>, Status> {
        self.record_scope(request.get_ref().scope.as_ref())?;
        if request.get_ref().licence_key != "KEY-1" {
            return Err(failure(ErrorCode::NotFound, "no such licence", None));
        }
        Ok(Response::new(v1::DeleteLicenceResponse {}))
    }

    async fn ban_licence(
        &self,
        request: Request<v1::BanLicenceRequest>,
    ) -> Result<Response<v1::Licence>, Status> {
        self.record_scope(request.get_ref().scope.as_ref())?;
        Ok(Response::new(v1::Licence::default()))
    }

    async fn unban_licence(
        &self,
        request: Request<v1::UnbanLicenceRequest>,
    ) -> Result<Response<v1::Licence>, Status> {
        self.record_scope(request.get_ref().scope.as_ref())?;
        Ok(Response::new(v1::Licence::default()))
    }

    async fn list_users(
        &self,
        _request: Request<v1::ListUsersRequest>,
    ) -> Result<Response<v1::ListUsersResponse>, Status> {
        Err(Status::unimplemented("the gateway streams listings"))
    }

    type StreamUsersStream = Pin<Box<dyn Stream<Item = Result<v1::ListUsersResponse, Status>> + Send>>;

    async fn stream_users(
        &self,
        request: Request<v1::StreamUsersRequest>,
    ) -> Result<Response<Self::StreamUsersStream>, Status> {
        self.record_scope(request.get_ref().scope.as_ref())?;
        let page = v1::ListUsersResponse {
            users: vec![v1::User {
                id: 4,
                username: "eve".into(),
                email: "eve@example.com".into(),
                hwid: None,
                joined: ts(0),
                total_pings: 0,
                last_seen: None,
                licence_status: v1::LicenceStatus::None as i32,
                has_licence: false,
            }],
            next_page_token: String::new(),
        };
        Ok(Response::new(Box::pin(futures_util::stream::iter([Ok(page)]))))
    }

    async fn delete_user(
        &self,
        request: Request<v1::DeleteUserRequest>,
    ) -> Result<Response<v1::DeleteUserResponse>, Status> {
        self.record_scope(request.get_ref().scope.as_ref())?;
        Ok(Response::new(v1::DeleteUserResponse {}))
    }

    async fn reset_hwid(&self, request: Request<v1::ResetHwidRequest>) -> Result<Response<v1::User>, Status> {
        self.record_scope(request.get_ref().scope.as_ref())?;
        Ok(Response::new(v1::User::default()))
    }

    async fn upload_file(
        &self,
        request: Request<Streaming<v1::UploadFileRequest>>,
    ) -> Result<Response<v1::FileInfo>, Status> {
        let mut stream = request.into_inner();
        let Some(v1::UploadFileRequest { payload: Some(v1::upload_file_request::Payload::Header(header)) }) =
            stream.message().await?
        else {
            return Err(Status::invalid_argument("header first"));
        };
        self.record_scope(header.scope.as_ref())?;
        let mut size = 0usize;
        let mut checksum = 0u64;
        let mut largest = 0usize;
        while let Some(message) = stream.message().await? {
            let Some(v1::upload_file_request::Payload::Chunk(chunk)) = message.payload else {
                return Err(Status::invalid_argument("chunks after the header"));
            };
            largest = largest.max(chunk.len());
            for (i, byte) in chunk.iter().enumerate() {
                if *byte != file_byte(size + i) {
                    return Err(Status::invalid_argument("corrupted"));
                }
                checksum += u64::from(*byte);
            }
            size += chunk.len();
        }
        assert!(largest <= 64 * 1024, "chunks are bounded");
        self.seen.lock().unwrap().upload = Some((header.filename.clone(), size, checksum));
        Ok(Response::new(v1::FileInfo { filename: header.filename, size: size as u64, ..Default::default() }))
    }
}

struct Core {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    slow_started: Arc<tokio::sync::Notify>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Core {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start_core_on(listener: TcpListener, name: &'static str) -> Core {
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let slow_started = Arc::new(tokio::sync::Notify::new());
    let fake = Fake { name, seen: seen.clone(), slow_started: slow_started.clone() };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ClientServiceServer::new(fake.clone()))
            .add_service(DeveloperServiceServer::new(fake))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );
    Core { addr, seen, slow_started, stop: Some(stop) }
}

async fn start_core(name: &'static str) -> Core {
    start_core_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), name).await
}

struct Running {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

async fn start_gateway(config: GatewayConfig) -> Running {
    let gateway = Gateway::build(config).await.expect("gateway builds");
    let base = format!("http://{}", gateway.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        gateway
            .run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .expect("gateway runs");
    });
    Running { base, stop: Some(stop), task }
}

async fn post(gateway: &Running, path: &str, body: &str) -> reqwest::Response {
    Client::new()
        .post(gateway.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .expect("request")
}

async fn json(response: reqwest::Response) -> serde_json::Value {
    assert_eq!(response.headers()["content-type"], "application/json; charset=utf-8");
    serde_json::from_slice(&response.bytes().await.expect("body")).expect("json body")
}

fn token(response: &reqwest::Response) -> Option<String> {
    response.headers().get("x-response-token").map(|value| value.to_str().unwrap().to_owned())
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn client_actions_translate_both_ways() {
    let core = start_core("a").await;
    let gateway = start_gateway(GatewayConfig::local(&format!("http://{}", core.addr))).await;

    let response = post(
        &gateway,
        "/api/action.php?action=login",
        "username=bob&password=pw&app_secret=S&hwid=HW-1&nonce=n-1&unknown=x",
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(token(&response).as_deref(), Some("tok-login-a"));
    assert_eq!(
        json(response).await,
        serde_json::json!({"status": "success", "name": "bob", "hwid": "HW-1",
            "joined": "2023-11-14 22:13:20", "has_licence": true, "licence_status": "expired",
            "total_pings": 12, "app_version": "2.0", "token": "tok-login-a"})
    );
    {
        let seen = core.seen.lock().unwrap();
        let auth = seen.auths.last().unwrap();
        assert_eq!(
            (auth.app_secret.as_str(), auth.username.as_str(), auth.password.as_str(), auth.hwid.as_str()),
            ("S", "bob", "pw", "HW-1")
        );
        let origin = seen.origins.last().unwrap();
        assert_eq!(origin.client_address, "127.0.0.1");
        assert_eq!(origin.nonce, "n-1");
        assert!(seen.grpc_timeouts.last().unwrap(), "unary calls carry a deadline");
    }

    // The action may come from the body, as with $_REQUEST.
    let response = post(&gateway, "/api/action.php", "action=connect&username=bob").await;
    assert_eq!(token(&response).as_deref(), Some("tok-hb"));
    assert_eq!(
        json(response).await,
        serde_json::json!({"status": "success", "total_pings": 13, "token": "tok-hb"})
    );

    let response = post(&gateway, "/api/action.php?action=redeem", "username=bob&licence=KEY-1").await;
    assert_eq!(
        json(response).await,
        serde_json::json!({"status": "success", "licence_status": "active",
            "expire_time": "2030-01-01 00:00:00", "access": 3, "token": "tok-redeem"})
    );

    // No token from the core, none in the answer.
    let response = post(
        &gateway,
        "/api/action.php?action=register",
        "username=new&password=pw&email=a%40b.c&app_secret=S&licence=KEY-9",
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(token(&response), None);
    assert_eq!(json(response).await, serde_json::json!({"status": "success"}));
    let register = core.seen.lock().unwrap().register.clone().unwrap();
    assert_eq!(register.licence_key, "KEY-9");
    assert_eq!(register.email, "a@b.c");

    // The core's field errors pass through with its message.
    let response = post(&gateway, "/api/action.php?action=register", "password=pw").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json(response).await,
        serde_json::json!({"status": "missing_field", "message": "missing field `username`"})
    );

    // Failures after the app is known carry the token, as header and field.
    let response = post(&gateway, "/api/action.php?action=login", "username=eve").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(token(&response).as_deref(), Some("tok-bad"));
    let body = json(response).await;
    assert_eq!(body["status"], "invalid_credentials");
    assert_eq!(body["token"], "tok-bad");

    let response = post(&gateway, "/api/action.php?action=login", "username=limited").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(token(&response).as_deref(), Some("tok-limited"));
    assert_eq!(json(response).await["status"], "rate_limited");

    let response = post(&gateway, "/api/action.php?action=login", "username=offline").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(response).await["status"], "app_offline");
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let core = start_core("a").await;
    let url = format!("http://{}", core.addr);
    let plain = start_gateway(GatewayConfig::local(&url)).await;
    let mut config = GatewayConfig::local(&url);
    config.trusted_proxies = vec!["127.0.0.0/8".parse::<IpNet>().unwrap()];
    let behind_proxy = start_gateway(config).await;

    for (gateway, expected) in [(&plain, "127.0.0.1"), (&behind_proxy, "203.0.113.9")] {
        Client::new()
            .post(gateway.url("/api/action.php?action=connect"))
            .header("x-forwarded-for", "6.6.6.6, 203.0.113.9")
            .body("username=bob")
            .send()
            .await
            .expect("request");
        let seen = core.seen.lock().unwrap();
        assert_eq!(seen.origins.last().unwrap().client_address, expected);
    }
}

#[tokio::test]
async fn download_streams_the_binary() {
    let core = start_core("a").await;
    let gateway = start_gateway(GatewayConfig::local(&format!("http://{}", core.addr))).await;

    let response = post(&gateway, "/api/action.php?action=download", "username=bob&password=pw").await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["content-length"], FILE_SIZE.to_string().as_str());
    assert_eq!(headers["content-disposition"], r#"attachment; filename="my \"app\".bin""#);
    assert_eq!(headers["x-response-token"], "tok-dl");
    let body = response.bytes().await.expect("body");
    assert_eq!(body.len(), FILE_SIZE);
    assert!(body.iter().enumerate().all(|(i, b)| *b == file_byte(i)));

    // A failure before the first message is a JSON error with the token.
    for (user, http, code, tok) in [
        ("nobody", StatusCode::NOT_FOUND, "no_file", "tok-nofile"),
        ("late", StatusCode::FORBIDDEN, "no_active_licence", "tok-late"),
    ] {
        let response = post(&gateway, "/api/action.php?action=download", &format!("username={user}")).await;
        assert_eq!(response.status(), http);
        assert_eq!(token(&response).as_deref(), Some(tok));
        let body = json(response).await;
        assert_eq!(body["status"], code);
        assert_eq!(body["token"], tok);
    }

    // A failure midway cuts the transfer instead of passing a short file off as complete.
    let response = post(&gateway, "/api/action.php?action=download", "username=broken").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.is_err());
}

#[tokio::test]
async fn a_listing_that_fails_midway_is_cut_not_passed_off_as_complete() {
    let core = start_core("fails-midway").await;
    let gateway = start_gateway(GatewayConfig::local(&format!("http://{}", core.addr))).await;
    let creds = "developer_username=dev&develoer_password=pw&app_secret=S";
    let sent = Client::new()
        .post(gateway.url("/api/admin.php?action=get_licences"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(creds)
        .send()
        .await;
    // The first page arrived, so the answer had started: the connection is cut, before or after
    // the head went out, but a complete body never arrives.
    if let Ok(response) = sent {
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.bytes().await.is_err(), "the body must not end as if complete");
    }
}

#[tokio::test]
async fn developer_actions_translate_both_ways() {
    let core = start_core("a").await;
    let gateway = start_gateway(GatewayConfig::local(&format!("http://{}", core.addr))).await;
    let creds = "developer_username=dev&develoer_password=pw&app_secret=S";

    let response = post(&gateway, "/api/admin.php?action=get_app_data", creds).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(token(&response), None);
    assert_eq!(
        json(response).await,
        serde_json::json!({"status": "success", "appname": "Demo", "secret": "SECRET",
            "public": "PUBKEY", "online": 0, "version": null, "keys": []})
    );
    {
        let seen = core.seen.lock().unwrap();
        let scope = seen.scopes.last().unwrap();
        assert_eq!(scope.app_secret, "S");
        let developer = scope.developer.clone().unwrap();
        assert_eq!((developer.username.as_str(), developer.password.as_str()), ("dev", "pw"));
        assert_eq!(scope.origin.clone().unwrap().client_address, "127.0.0.1");
    }

    // The corrected spelling of the password works too.
    post(&gateway, "/api/admin.php?action=get_app_data", "developer_username=dev&developer_password=pw2")
        .await;
    assert_eq!(core.seen.lock().unwrap().scopes.last().unwrap().developer.clone().unwrap().password, "pw2");

    let response = post(&gateway, "/api/admin.php?action=get_app_data", "developer_username=bad").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(token(&response), None);
    assert_eq!(json(response).await["status"], "invalid_developer");

    // get_licences streams every page into one array.
    let response = post(&gateway, "/api/admin.php?action=get_licences", creds).await;
    assert_eq!(response.status(), StatusCode::OK);
    let rows = json(response).await;
    let rows = rows.as_array().expect("a bare array");
    assert_eq!(rows.len(), LICENCES as usize);
    assert!(rows.windows(2).all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64()));
    assert_eq!(
        rows[0],
        serde_json::json!({"id": 1, "licence": "KEY-00001", "usedby": "bob", "isused": 1,
            "expire_time": "2030-01-01 00:00:00", "created": "2023-11-14 22:13:20", "access": 2,
            "redeemed": 1, "redeemed_at": "2023-11-14 22:14:20", "banned": 0})
    );
    assert_eq!(rows[1]["banned"], 1);
    assert_eq!(rows[2]["usedby"], serde_json::Value::Null);
    assert_eq!(rows[2]["redeemed_at"], serde_json::Value::Null);
    assert_eq!(core.seen.lock().unwrap().page_requests, [(1000, String::new())], "one call for every page");

    let response = post(&gateway, "/api/admin.php?action=get_users", creds).await;
    assert_eq!(
        json(response).await,
        serde_json::json!([{"id": 4, "username": "eve", "email": "eve@example.com", "hwid": null,
            "joined": "1970-01-01 00:00:00", "total_pings": 0, "last_seen": null, "licence_status": "none"}])
    );

    let response = post(
        &gateway,
        "/api/admin.php?action=create_licences",
        &format!("{creds}&amount=3&access=9&expire_date=2031-05-06+07%3A08%3A09"),
    )
    .await;
    assert_eq!(json(response).await, serde_json::json!(["NEW-0", "NEW-1", "NEW-2"]));
    let create = core.seen.lock().unwrap().create.clone().unwrap();
    assert_eq!((create.amount, create.access), (3, 9));
    assert_eq!(create.expire_time.unwrap().seconds, 1_935_817_689);

    // Out-of-range but well-formed values reach the core, which judges them.
    let response = post(
        &gateway,
        "/api/admin.php?action=create_licences",
        &format!("{creds}&amount=501&access=1&expire_date=2031-05-06+07:08:09"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(response).await["message"], "invalid field `amount`: 1 to 500");

    let response = post(&gateway, "/api/admin.php?action=renew_secret", creds).await;
    assert_eq!(json(response).await, serde_json::json!({"status": "success", "secret": "NEW-SECRET"}));

    for (action, extra) in [
        ("delete_user", "&user_id=4"),
        ("reset_hwid", "&user_id=4"),
        ("delete_licence", "&licence_key=KEY-1"),
        ("ban_licence", "&licence_key=KEY-1"),
        ("unban_licence", "&licence_key=KEY-1"),
        ("change_status", "&status=1"),
        ("change_version", "&version=3.1"),
    ] {
        let response =
            post(&gateway, &format!("/api/admin.php?action={action}"), &format!("{creds}{extra}")).await;
        assert_eq!(response.status(), StatusCode::OK, "{action}");
        assert_eq!(json(response).await, serde_json::json!({"status": "success"}), "{action}");
    }

    let response =
        post(&gateway, "/api/admin.php?action=delete_licence", &format!("{creds}&licence_key=NOPE")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(response).await["status"], "not_found");
}

fn upload_form(username: &str, size: usize) -> reqwest::multipart::Form {
    let bytes: Vec<u8> = (0..size).map(file_byte).collect();
    reqwest::multipart::Form::new()
        .text("developer_username", username.to_owned())
        .text("develoer_password", "pw")
        .text("app_secret", "S")
        .part("file", reqwest::multipart::Part::bytes(bytes).file_name("tool v2.exe"))
}

#[tokio::test]
async fn upload_streams_into_the_core() {
    let core = start_core("a").await;
    let gateway = start_gateway(GatewayConfig::local(&format!("http://{}", core.addr))).await;
    let size = 3 * 1024 * 1024 + 17;

    let response = Client::new()
        .post(gateway.url("/api/admin.php?action=upload_file"))
        .multipart(upload_form("dev", size))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await, serde_json::json!({"status": "success"}));
    let expected_sum: u64 = (0..size).map(|i| u64::from(file_byte(i))).sum();
    assert_eq!(
        core.seen.lock().unwrap().upload.clone(),
        Some(("tool v2.exe".to_owned(), size, expected_sum))
    );

    // The core refusing at the header still reaches the client as a clean answer.
    let response = Client::new()
        .post(gateway.url("/api/admin.php?action=upload_file"))
        .multipart(upload_form("bad", 8 * 1024 * 1024))
        .send()
        .await
        .expect("the answer arrives, not a reset");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(response).await["status"], "invalid_developer");

    // No `file` part.
    let form = reqwest::multipart::Form::new().text("developer_username", "dev");
    let response = Client::new()
        .post(gateway.url("/api/admin.php?action=upload_file"))
        .multipart(form)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json(response).await;
    assert_eq!(body["status"], "missing_field");
    assert!(body["message"].as_str().unwrap().contains("file"));
}

#[tokio::test]
async fn recovers_when_the_core_comes_up() {
    // Reserve a port, then leave it closed until the core starts.
    let reserved = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let gateway = start_gateway(GatewayConfig::local(&format!("http://{addr}"))).await;

    let response = post(&gateway, "/api/action.php?action=login", "username=bob").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(response).await["status"], "unavailable");

    let _core = start_core_on(TcpListener::bind(addr).await.unwrap(), "a").await;
    let started = Instant::now();
    loop {
        let response = post(&gateway, "/api/action.php?action=login", "username=bob").await;
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "gateway did not reconnect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn balances_over_several_cores() {
    let a = start_core("a").await;
    let b = start_core("b").await;
    let mut config = GatewayConfig::local(&format!("http://{}", a.addr));
    config.core_urls.push(format!("http://{}", b.addr));
    let gateway = start_gateway(config).await;
    let mut tokens = std::collections::HashSet::new();
    for _ in 0..40 {
        let response = post(&gateway, "/api/action.php?action=login", "username=bob").await;
        assert_eq!(response.status(), StatusCode::OK);
        tokens.insert(token(&response).unwrap());
    }
    assert_eq!(tokens.len(), 2, "both cores served: {tokens:?}");
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests() {
    let core = start_core("a").await;
    let mut gateway = start_gateway(GatewayConfig::local(&format!("http://{}", core.addr))).await;
    let url = gateway.url("/api/action.php?action=login");
    let in_flight = tokio::spawn(async move {
        Client::new().post(url).body("username=slow").send().await.map(|response| response.status())
    });
    // The login has reached the core: the gateway holds it in flight.
    tokio::time::timeout(Duration::from_secs(10), core.slow_started.notified())
        .await
        .expect("the login arrives");
    let _ = gateway.stop.take().unwrap().send(());
    assert_eq!(in_flight.await.unwrap().expect("answered"), StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(5), gateway.task).await.expect("stops").unwrap();
    // New connections are refused once stopped.
    assert!(Client::new().post(gateway.base.clone()).send().await.is_err());
}
