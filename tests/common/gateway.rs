//! The whole stack for end-to-end tests of the legacy HTTP API: the real core and the real
//! gateway in-process on port 0, a small HTTP helper that sends bodies exactly as given, and
//! assertions that read the contract (`/work/shared/api-contract.md`) to the letter.

use std::{net::SocketAddr, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{NaiveDateTime, Utc};
use http_gateway::{Gateway, GatewayConfig, IpNet};
use reqwest::{Method, header::HeaderMap};
use serde_json::Value;
use tokio::{sync::oneshot, task::JoinHandle};

use super::{Backend, Fixture, TestCore};
use core_service::CoreConfig;

pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";
/// The legacy timestamp format: UTC, `YYYY-MM-DD HH:MM:SS`.
pub const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
pub const ACTION: &str = "/api/action.php";
pub const ADMIN: &str = "/api/admin.php";
/// The form body limit of every action but `upload_file`.
pub const FORM_LIMIT: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Running gateways and stacks
// ---------------------------------------------------------------------------------------------

/// A running gateway on port 0, and an HTTP client for it.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestGateway {
    pub async fn start(config: GatewayConfig) -> TestGateway {
        super::init_tracing();
        let gateway = Gateway::build(config).await.expect("gateway builds");
        let addr = gateway.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            gateway
                .run_until_stopped(async {
                    let _ = stopped.await;
                })
                .await
                .expect("gateway runs");
        });
        let http = reqwest::Client::builder().no_proxy().build().expect("http client");
        TestGateway { addr, http, stop: Some(stop), handle: Some(handle) }
    }

    /// A gateway in front of `core`, believing `X-Forwarded-For` from the given proxies.
    pub async fn in_front_of(core: &TestCore, trusted_proxies: &[&str]) -> TestGateway {
        let mut config = GatewayConfig::local(&core.url());
        config.trusted_proxies =
            trusted_proxies.iter().map(|p| p.parse::<IpNet>().expect("proxy CIDR")).collect();
        TestGateway::start(config).await
    }

    pub fn url(&self, target: &str) -> String {
        format!("http://{}{target}", self.addr)
    }

    pub fn request(&self, method: Method, target: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(target))
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Http {
        let response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("HTTP body").to_vec();
        Http { status, headers, body }
    }

    /// POSTs a hand-written `application/x-www-form-urlencoded` body, as libcurl and PHP do.
    pub async fn post(&self, target: &str, body: impl Into<String>) -> Http {
        self.post_as(target, Some("application/x-www-form-urlencoded"), body.into().into_bytes()).await
    }

    /// POSTs raw bytes with the given content type, or none at all.
    pub async fn post_as(&self, target: &str, content_type: Option<&str>, body: Vec<u8>) -> Http {
        let mut request = self.request(Method::POST, target).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        self.send(request).await
    }

    /// POSTs a urlencoded body as if relayed by a proxy for `client`.
    pub async fn post_from(&self, client: &str, target: &str, body: impl Into<String>) -> Http {
        let request = self
            .request(Method::POST, target)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-forwarded-for", client)
            .body(body.into());
        self.send(request).await
    }

    /// Sends only the head of a POST announcing `content_length` bytes with
    /// `Expect: 100-continue`, as curl and .NET do before a large body, and reads the answer the
    /// server gives to the head alone (a `100 Continue` comes back as status 100).
    pub async fn post_head_expecting_continue(
        &self,
        target: &str,
        content_type: &str,
        content_length: u64,
    ) -> Http {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(self.addr).await.expect("connect to the gateway");
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {content_length}\r\nExpect: 100-continue\r\n\r\n",
            self.addr
        );
        socket.write_all(head.as_bytes()).await.expect("send the request head");
        let mut raw = Vec::new();
        let read = async {
            let mut buf = [0u8; 8192];
            loop {
                if let Some(reply) = parse_response(&raw) {
                    return reply;
                }
                let n = socket.read(&mut buf).await.expect("read the answer");
                assert!(n > 0 || parse_response(&raw).is_some(), "connection closed mid-answer: {raw:?}");
                raw.extend_from_slice(&buf[..n]);
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read).await.expect("an answer to the head alone")
    }

    /// POSTs a hand-written `multipart/form-data` body made of `fields`, in order.
    pub async fn post_multipart(&self, target: &str, fields: &[(&str, &str)]) -> Http {
        let boundary = "----LegacyClientBoundary7MA4YWxkTrZu0gW";
        let mut body = String::new();
        for (name, value) in fields {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        self.post_as(target, Some(&format!("multipart/form-data; boundary={boundary}")), body.into_bytes())
            .await
    }

    /// `/api/action.php?action=NAME` with a urlencoded body.
    pub async fn client(&self, action: &str, body: impl Into<String>) -> Http {
        self.post(&format!("{ACTION}?action={action}"), body).await
    }

    /// `/api/admin.php?action=NAME` with the fixture's credentials and `extra` fields.
    pub async fn admin(&self, fx: &Fixture, action: &str, extra: &str) -> Http {
        let mut body = dev_form(fx);
        if !extra.is_empty() {
            body.push('&');
            body.push_str(extra);
        }
        self.post(&format!("{ADMIN}?action={action}"), body).await
    }

    /// Registers `username` (password `{username}-pw`) with `extra` fields; asserts success.
    pub async fn register_ok(&self, fx: &Fixture, username: &str, extra: &str) {
        let reply = self.client("register", register_form(fx, username, extra)).await;
        let body = expect_ok(&reply);
        assert_eq!(body["status"], "success", "register {username}: {body}");
    }

    /// `create_licences`, asserting success; returns the new keys.
    pub async fn create_keys(
        &self,
        fx: &Fixture,
        amount: u32,
        access: u32,
        expire_date: &str,
    ) -> Vec<String> {
        let reply = self
            .admin(
                fx,
                "create_licences",
                &format!("amount={amount}&access={access}&expire_date={}", enc(expire_date)),
            )
            .await;
        let body = expect_ok(&reply);
        let keys: Vec<String> = body
            .as_array()
            .unwrap_or_else(|| panic!("create_licences answers a bare array: {body}"))
            .iter()
            .map(|k| k.as_str().unwrap_or_else(|| panic!("keys are strings: {body}")).to_owned())
            .collect();
        assert_eq!(keys.len(), amount as usize, "{body}");
        keys
    }

    /// `get_users`, asserting success; the bare array's rows.
    pub async fn users(&self, fx: &Fixture) -> Vec<Value> {
        let body = expect_ok(&self.admin(fx, "get_users", "").await);
        body.as_array().unwrap_or_else(|| panic!("get_users answers a bare array: {body}")).clone()
    }

    /// `get_licences`, asserting success; the bare array's rows.
    pub async fn licences(&self, fx: &Fixture) -> Vec<Value> {
        let body = expect_ok(&self.admin(fx, "get_licences", "").await);
        body.as_array().unwrap_or_else(|| panic!("get_licences answers a bare array: {body}")).clone()
    }

    /// `get_users`, just the names.
    pub async fn usernames(&self, fx: &Fixture) -> Vec<String> {
        self.users(fx).await.iter().map(|u| u["username"].as_str().expect("username").to_owned()).collect()
    }

    /// `get_licences`, the row of `key`.
    pub async fn licence_row(&self, fx: &Fixture, key: &str) -> Value {
        self.licences(fx)
            .await
            .into_iter()
            .find(|row| row["licence"] == key)
            .unwrap_or_else(|| panic!("licence {key} is listed"))
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The real core and the real gateway in front of it, over a fresh database.
pub struct TestStack {
    pub core: TestCore,
    pub gw: TestGateway,
}

impl std::ops::Deref for TestStack {
    type Target = TestGateway;
    fn deref(&self) -> &TestGateway {
        &self.gw
    }
}

impl TestStack {
    pub async fn start(backend: Backend) -> TestStack {
        Self::start_with(backend, |_| {}, |_| {}).await
    }

    pub async fn start_with(
        backend: Backend,
        core_tweak: impl FnOnce(&mut CoreConfig),
        gateway_tweak: impl FnOnce(&mut GatewayConfig),
    ) -> TestStack {
        let core = TestCore::start_with(backend, core_tweak).await;
        let mut config = GatewayConfig::local(&core.url());
        gateway_tweak(&mut config);
        let gw = TestGateway::start(config).await;
        TestStack { core, gw }
    }

    /// A stack whose gateway believes `X-Forwarded-For` from loopback, so each test request can
    /// claim its own client address.
    pub async fn trusting_loopback_proxy(
        backend: Backend,
        core_tweak: impl FnOnce(&mut CoreConfig),
    ) -> TestStack {
        TestStack::start_with(backend, core_tweak, |g| {
            g.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")]
        })
        .await
    }

    pub async fn fixture(&self, developer: &str) -> Fixture {
        self.core.fixture(developer).await
    }

    pub async fn stop(self) {
        let TestStack { core, gw } = self;
        gw.stop().await;
        core.stop().await;
    }
}

/// One complete HTTP/1.1 response (head and `Content-Length` body) from the start of `raw`.
fn parse_response(raw: &[u8]) -> Option<Http> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&raw[..end]).expect("ASCII response head");
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().expect("status code");
    let mut headers = HeaderMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').expect("header line");
        headers.append(
            reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).expect("header name"),
            reqwest::header::HeaderValue::from_str(value.trim()).expect("header value"),
        );
    }
    if status == 100 {
        return Some(Http { status, headers, body: Vec::new() });
    }
    let length: usize = headers.get("content-length")?.to_str().ok()?.parse().ok()?;
    let body = raw.get(end..end + length)?.to_vec();
    Some(Http { status, headers, body })
}

/// A loopback address where nothing listens.
pub async fn dead_address() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

// ---------------------------------------------------------------------------------------------
// Forms
// ---------------------------------------------------------------------------------------------

/// Percent-encodes a form value the way PHP's `urlencode` does (space as `+`).
pub fn enc(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A urlencoded body from name/value pairs, in order (repeats kept).
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// The developer's credentials and the app, under the original's `develoer_password` spelling.
pub fn dev_form(fx: &Fixture) -> String {
    format!(
        "developer_username={}&develoer_password={}&app_secret={}",
        enc(&fx.developer),
        enc(&fx.password),
        enc(&fx.secret)
    )
}

/// End-user credentials: `username`, password `{username}-pw`, the app secret, and `extra`.
pub fn user_form(fx: &Fixture, username: &str, extra: &str) -> String {
    let mut body = format!(
        "username={}&password={}&app_secret={}",
        enc(username),
        enc(&format!("{username}-pw")),
        enc(&fx.secret)
    );
    if !extra.is_empty() {
        body.push('&');
        body.push_str(extra);
    }
    body
}

/// A `register` body: credentials, an e-mail address, and `extra`.
pub fn register_form(fx: &Fixture, username: &str, extra: &str) -> String {
    let email = format!("{}%40example.com", enc(username));
    let extra = if extra.is_empty() { format!("email={email}") } else { format!("email={email}&{extra}") };
    user_form(fx, username, &extra)
}

/// `YYYY-MM-DD HH:MM:SS`, UTC, `days` from now (whole seconds).
pub fn date_in(days: i64) -> String {
    (Utc::now() + chrono::Duration::days(days)).format(DATE_FORMAT).to_string()
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------

/// An HTTP answer, fully read.
#[derive(Debug)]
pub struct Http {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Http {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ASCII header"))
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// The body as JSON, after checking the contract's content type.
    pub fn json(&self) -> Value {
        assert_eq!(self.content_type(), Some(JSON_CONTENT_TYPE), "content type of {self}");
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("JSON body ({e}): {self}"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl std::fmt::Display for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.text();
        let shown: String = text.chars().take(600).collect();
        write!(f, "HTTP {} {:?} {shown}", self.status, self.content_type())
    }
}

/// A 200 JSON answer; its body.
pub fn expect_ok(reply: &Http) -> Value {
    assert_eq!(reply.status, 200, "expected success: {reply}");
    reply.json()
}

/// The object has exactly these keys.
pub fn assert_keys(value: &Value, keys: &[&str]) {
    let object = value.as_object().unwrap_or_else(|| panic!("a JSON object: {value}"));
    let mut got: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut want: Vec<&str> = keys.to_vec();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "keys of {value}");
}

/// Words that would betray internals in a message.
const LEAKS: &[&str] = &[
    "select ",
    "insert ",
    "update ",
    "delete from",
    "sqlx",
    "sea_orm",
    "sea-orm",
    "dberr",
    "sqlite",
    "postgres",
    "/tmp",
    "/work",
    ".rs:",
    "panicked",
    "backtrace",
    "tonic",
    "grpc",
    "status {",
    "transport error",
];

fn assert_no_leak(message: &str) {
    let lower = message.to_lowercase();
    for leak in LEAKS {
        assert!(!lower.contains(leak), "message leaks internals ({leak}): {message}");
    }
}

/// A failure without a response token: status, content type, and exactly
/// `{"status": CODE, "message": TEXT}`. Returns the message.
pub fn expect_error(reply: &Http, http: u16, code: &str) -> String {
    let body = reply.json();
    assert_eq!((reply.status, body["status"].as_str()), (http, Some(code)), "{reply}");
    assert_keys(&body, &["status", "message"]);
    assert!(reply.header("x-response-token").is_none(), "no token on {reply}");
    let message = body["message"].as_str().unwrap_or_else(|| panic!("message is a string: {reply}"));
    assert!(!message.trim().is_empty(), "message is not empty: {reply}");
    assert_no_leak(message);
    message.to_owned()
}

/// A failure of `/api/action.php` after the app was identified: exactly
/// `{"status", "message", "token"}`, the token also in `X-Response-Token`, signed by the app,
/// claiming `act`, `st` = the code and the request's `nonce`. Returns the claims.
pub fn expect_signed_error(
    reply: &Http,
    http: u16,
    code: &str,
    fx: &Fixture,
    act: &str,
    nonce: &str,
) -> Value {
    let body = reply.json();
    assert_eq!((reply.status, body["status"].as_str()), (http, Some(code)), "{reply}");
    assert_keys(&body, &["status", "message", "token"]);
    let message = body["message"].as_str().unwrap_or_else(|| panic!("message is a string: {reply}"));
    assert!(!message.trim().is_empty(), "message is not empty: {reply}");
    assert_no_leak(message);
    signed_claims(reply, &body, fx, act, code, nonce)
}

/// The response token of an answer: present as header and (for JSON) field, identical, signed
/// with the app's key; `act`, `st`, `nonce` as given; `iat` now; `exp` after it.
pub fn signed_claims(reply: &Http, body: &Value, fx: &Fixture, act: &str, st: &str, nonce: &str) -> Value {
    let header =
        reply.header("x-response-token").unwrap_or_else(|| panic!("X-Response-Token on {reply}")).to_owned();
    if !body.is_null() {
        assert_eq!(body["token"].as_str(), Some(header.as_str()), "token field equals the header: {reply}");
    }
    let claims = verified_claims(&header, &fx.public_key);
    assert_eq!(claims["act"], act, "act: {claims}");
    assert_eq!(claims["st"], st, "st: {claims}");
    assert_eq!(claims["nonce"], nonce, "nonce: {claims}");
    let iat = claims["iat"].as_i64().unwrap_or_else(|| panic!("iat is an integer: {claims}"));
    let exp = claims["exp"].as_i64().unwrap_or_else(|| panic!("exp is an integer: {claims}"));
    assert!((iat - Utc::now().timestamp()).abs() <= 30, "iat is now: {claims}");
    assert!(exp > iat, "exp after iat: {claims}");
    claims
}

/// The body of a successful `/api/action.php` JSON answer with its verified token claims.
pub fn expect_signed_ok(reply: &Http, fx: &Fixture, act: &str, nonce: &str) -> (Value, Value) {
    let body = expect_ok(reply);
    assert_eq!(body["status"], "success", "{reply}");
    let claims = signed_claims(reply, &body, fx, act, "success", nonce);
    (body, claims)
}

/// Decodes a response token after checking it is a compact EdDSA JWS signed with the app's key.
pub fn verified_claims(token: &str, public_key_b64: &str) -> Value {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS: {token}");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], kid_of(public_key_b64), "the kid names the signing key: {header}");
    let public = base64::engine::general_purpose::STANDARD.decode(public_key_b64).expect("b64 public key");
    let key = VerifyingKey::from_bytes(&public.try_into().expect("32 bytes")).expect("key");
    let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).expect("b64")).expect("sig");
    key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig).expect("token signature verifies");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json")
}

/// The RFC 7638 thumbprint of an Ed25519 public key (standard base64), computed here from the
/// RFC's definition.
pub fn kid_of(public_key_b64: &str) -> String {
    use sha2::{Digest, Sha256};
    let public = base64::engine::general_purpose::STANDARD.decode(public_key_b64).expect("b64 public key");
    let jwk = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, URL_SAFE_NO_PAD.encode(public));
    URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()))
}

/// A legacy timestamp: a string, exactly `YYYY-MM-DD HH:MM:SS`.
pub fn timestamp(value: &Value) -> NaiveDateTime {
    let text = value.as_str().unwrap_or_else(|| panic!("timestamp is a string: {value}"));
    let parsed = NaiveDateTime::parse_from_str(text, DATE_FORMAT)
        .unwrap_or_else(|e| panic!("timestamp {text:?} is YYYY-MM-DD HH:MM:SS: {e}"));
    // The parser tolerates unpadded numbers; the contract's format does not.
    assert_eq!(parsed.format(DATE_FORMAT).to_string(), text, "timestamp {text:?} is zero-padded");
    parsed
}

/// A legacy timestamp close to now, UTC.
pub fn recent_timestamp(value: &Value) -> NaiveDateTime {
    let at = timestamp(value);
    let skew = (at - Utc::now().naive_utc()).num_seconds().abs();
    assert!(skew <= 120, "timestamp {value} is now, in UTC ({skew} s off)");
    at
}

/// A 0/1 flag: a JSON integer, not a boolean or a string.
pub fn flag(value: &Value) -> bool {
    match value.as_u64() {
        Some(0) => false,
        Some(1) => true,
        _ => panic!("expected the integer 0 or 1, got {value}"),
    }
}

/// A JSON integer (not a float, string or boolean).
pub fn int(value: &Value) -> i64 {
    assert!(value.is_i64() || value.is_u64(), "expected an integer, got {value}");
    value.as_i64().expect("integer")
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Direct database edits, for states no API call can reach quickly
// ---------------------------------------------------------------------------------------------

/// Moves a licence's expiry (e.g. into the past), as an operator could in the database.
pub async fn set_licence_expiry(core: &TestCore, key: &str, at: chrono::DateTime<Utc>) {
    use core_service::storage::entities::licence;
    use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
    let row = licence::Entity::find()
        .filter(licence::Column::LicenceKey.eq(key.to_owned()))
        .one(core.core.db())
        .await
        .expect("query licence")
        .unwrap_or_else(|| panic!("licence {key} exists"));
    let mut row: licence::ActiveModel = row.into();
    row.expire_time = Set(at);
    row.update(core.core.db()).await.expect("update licence expiry");
}

/// What a refused request must leave as it was, read straight from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub users: Vec<(String, Option<String>, i64)>,
    pub licences: Vec<(String, Option<i64>, bool, bool)>,
    pub apps: Vec<(String, bool, Option<String>)>,
}

pub async fn snapshot(core: &TestCore) -> Snapshot {
    use core_service::storage::entities::{app, licence, user};
    use sea_orm::{EntityTrait, QueryOrder};
    let db = core.core.db();
    let users = user::Entity::find()
        .order_by_asc(user::Column::Id)
        .all(db)
        .await
        .expect("users")
        .into_iter()
        .map(|u| (u.username, u.hwid, u.total_pings))
        .collect();
    let licences = licence::Entity::find()
        .order_by_asc(licence::Column::Id)
        .all(db)
        .await
        .expect("licences")
        .into_iter()
        .map(|l| (l.licence_key, l.user_id, l.redeemed, l.banned))
        .collect();
    let apps = app::Entity::find()
        .order_by_asc(app::Column::Id)
        .all(db)
        .await
        .expect("apps")
        .into_iter()
        .map(|a| (a.secret, a.online, a.version))
        .collect();
    Snapshot { users, licences, apps }
}
