//! The vendors' Rust client (`licensing-client`) against the real gateway and core, on SQLite and
//! on PostgreSQL: the happy paths, then one test per attack on its verification, each made by a
//! small tampering proxy between the client and the gateway and each asserting the specific
//! error, then signing-key rotation and the offline lease.

mod common;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use common::{Backend, Fixture, gateway::*};
use core_service::service::SigningKeyState;
use licensing_client::{
    Client, Clock, Credentials, Error, ErrorCode, LicenceStatus, Refusal, Registration, Session, VerifyError,
    jwk_thumbprint,
};
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use sha2::Digest;

on_both_backends! {
    happy_paths => happy_paths;
    another_apps_token => another_apps_token;
    altered_claims => altered_claims;
    replayed_answer => replayed_answer;
    success_token_on_a_failed_request => success_token_on_a_failed_request;
    body_altered_after_signing => body_altered_after_signing;
    download_altered_in_transit => download_altered_in_transit;
    unknown_kid => unknown_kid;
    answers_for_another_request => answers_for_another_request;
    token_validity_window => token_validity_window;
    key_rotation => key_rotation;
    offline_lease => offline_lease;
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A clock the test moves: the system's plus an offset, or a fixed time.
#[derive(Debug, Clone, Default)]
struct TestClock(Arc<Mutex<ClockMode>>);

#[derive(Debug, Clone, Copy, Default)]
enum ClockMode {
    #[default]
    System,
    Offset(i64),
    Fixed(i64),
}

impl TestClock {
    /// The system's time plus `seconds`.
    fn set_offset(&self, seconds: i64) {
        *self.0.lock().expect("clock") = ClockMode::Offset(seconds);
    }

    /// Stops the clock at `unix` seconds.
    fn set_to(&self, unix: i64) {
        *self.0.lock().expect("clock") = ClockMode::Fixed(unix);
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        let shifted = |offset: i64| {
            let now = SystemTime::now();
            if offset >= 0 {
                now + Duration::from_secs(offset.unsigned_abs())
            } else {
                now - Duration::from_secs(offset.unsigned_abs())
            }
        };
        match *self.0.lock().expect("clock") {
            ClockMode::System => SystemTime::now(),
            ClockMode::Offset(offset) => shifted(offset),
            ClockMode::Fixed(unix) => at_unix(unix),
        }
    }
}

fn at_unix(unix: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).expect("after 1970"))
}

fn api_url(addr: SocketAddr) -> String {
    format!("http://{addr}/api")
}

/// A client of `fx`'s app at `addr`, pinned to `keys`, reading `clock`.
fn client_at(addr: SocketAddr, fx: &Fixture, keys: &[&str], clock: &TestClock) -> Client {
    Client::builder(api_url(addr))
        .app_secret(fx.secret.clone())
        .public_keys(keys.iter().copied())
        .clock(clock.clone())
        .http_client(reqwest::Client::builder().no_proxy().build().expect("http client"))
        .build()
        .expect("client")
}

/// The usual client: straight to the gateway, pinned to the app's key, on the system clock.
fn client(stack: &TestStack, fx: &Fixture) -> Client {
    client_at(stack.gw.addr, fx, &[&fx.public_key], &TestClock::default())
}

#[track_caller]
fn verify_error<T: std::fmt::Debug>(result: Result<T, Error>) -> VerifyError {
    match result {
        Err(Error::Verify(failure)) => failure,
        other => panic!("expected a verification failure, got {other:?}"),
    }
}

#[track_caller]
fn refusal<T: std::fmt::Debug>(result: Result<T, Error>) -> Refusal {
    match result {
        Err(Error::Refused(refusal)) => refusal,
        other => panic!("expected a verified refusal, got {other:?}"),
    }
}

/// Uploads `data` as the app's binary.
async fn upload(stack: &TestStack, fx: &Fixture, filename: &str, data: Vec<u8>) {
    let form = Form::new()
        .text("developer_username", fx.developer.clone())
        .text("develoer_password", fx.password.clone())
        .text("app_secret", fx.secret.clone())
        .part("file", Part::bytes(data).file_name(filename.to_owned()));
    let reply = stack
        .send(stack.request(reqwest::Method::POST, &format!("{ADMIN}?action=upload_file")).multipart(form))
        .await;
    expect_ok(&reply);
}

/// Deterministic bytes, larger than one chunk of the core.
fn binary(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// A user with an active licence (level 3, a month), registered through `client`.
async fn licensed_user(stack: &TestStack, fx: &Fixture, client: &Client, me: &Credentials) {
    let key = stack.create_keys(fx, 1, 3, &date_in(30)).await.remove(0);
    let new = Registration::new(me.clone(), format!("{}@example.com", me.username())).with_licence(key);
    client.register(&new).await.expect("register");
}

/// The token's claims re-encoded after `edit`, with the original header and signature.
fn edit_claims(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
    edit(&mut claims);
    let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"));
    format!("{}.{claims}.{}", parts[0], parts[2])
}

/// The token with its header's `kid` replaced, claims and signature kept.
fn relabel_kid(token: &str, kid: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
    let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("json"));
    format!("{header}.{}.{}", parts[1], parts[2])
}

/// The `kid` in a token's header.
fn token_kid(token: &str) -> Option<String> {
    let header = token.split('.').next().expect("header");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("json");
    header["kid"].as_str().map(str::to_owned)
}

fn kid(public_key_b64: &str) -> String {
    let raw: [u8; 32] = STANDARD.decode(public_key_b64).expect("b64").try_into().expect("32 bytes");
    jwk_thumbprint(&raw)
}

// ---------------------------------------------------------------------------------------------
// The tampering proxy
// ---------------------------------------------------------------------------------------------

mod proxy {
    //! A small HTTP/1.1 proxy in front of the gateway: one request per connection, read whole,
    //! optionally rewritten, forwarded (or not), and its answer optionally rewritten.

    use std::{
        net::SocketAddr,
        sync::{Arc, Mutex},
    };

    use serde_json::Value;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
        task::JoinHandle,
    };

    /// A client request as the proxy read it.
    #[derive(Debug, Clone)]
    pub struct Incoming {
        pub action: String,
        pub fields: Vec<(String, String)>,
    }

    impl Incoming {
        pub fn field(&self, name: &str) -> Option<&str> {
            self.fields.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
        }

        pub fn set(&mut self, name: &str, value: &str) {
            self.fields.retain(|(k, _)| k != name);
            self.fields.push((name.to_owned(), value.to_owned()));
        }
    }

    /// An HTTP answer.
    #[derive(Debug, Clone)]
    pub struct Reply {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Reply {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }

        pub fn set_header(&mut self, name: &str, value: &str) {
            self.remove_header(name);
            self.headers.push((name.to_owned(), value.to_owned()));
        }

        pub fn remove_header(&mut self, name: &str) {
            self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        }

        pub fn json(&self) -> Value {
            serde_json::from_slice(&self.body).expect("a JSON answer")
        }

        pub fn set_json(&mut self, body: &Value) {
            self.body = serde_json::to_vec(body).expect("json");
        }

        pub fn token(&self) -> String {
            self.header("x-response-token").expect("a token").to_owned()
        }

        /// Puts `token` in the header and, for JSON answers, in the `token` field.
        pub fn set_token(&mut self, token: &str) {
            self.set_header("x-response-token", token);
            if self.header("content-type").is_some_and(|t| t.starts_with("application/json")) {
                let mut body = self.json();
                body["token"] = Value::String(token.to_owned());
                self.set_json(&body);
            }
        }
    }

    /// One request and the answer the client got.
    #[derive(Debug, Clone)]
    pub struct Exchange {
        pub request: Incoming,
        pub reply: Reply,
    }

    type RequestRule = Box<dyn Fn(&mut Incoming) + Send + Sync>;
    type ReplyRule = Box<dyn Fn(&Incoming, Reply) -> Reply + Send + Sync>;

    #[derive(Default)]
    struct Rules {
        request: Option<RequestRule>,
        reply: Option<ReplyRule>,
        down: bool,
    }

    struct Shared {
        upstream: SocketAddr,
        http: reqwest::Client,
        rules: Mutex<Rules>,
        log: Mutex<Vec<Exchange>>,
    }

    pub struct Proxy {
        pub addr: SocketAddr,
        shared: Arc<Shared>,
        task: JoinHandle<()>,
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Proxy {
        pub async fn start(upstream: SocketAddr) -> Proxy {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
            let addr = listener.local_addr().expect("proxy address");
            let shared = Arc::new(Shared {
                upstream,
                http: reqwest::Client::builder().no_proxy().build().expect("http client"),
                rules: Mutex::new(Rules::default()),
                log: Mutex::new(Vec::new()),
            });
            let serving = shared.clone();
            let task = tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(handle(serving.clone(), socket));
                }
            });
            Proxy { addr, shared, task }
        }

        fn rules(&self) -> std::sync::MutexGuard<'_, Rules> {
            self.shared.rules.lock().expect("rules")
        }

        /// Rewrites requests before they are forwarded.
        pub fn on_request(&self, rule: impl Fn(&mut Incoming) + Send + Sync + 'static) {
            self.rules().request = Some(Box::new(rule));
        }

        /// Rewrites (or replaces) the gateway's answers.
        pub fn on_reply(&self, rule: impl Fn(&Incoming, Reply) -> Reply + Send + Sync + 'static) {
            self.rules().reply = Some(Box::new(rule));
        }

        /// Forwards everything unchanged from now on.
        pub fn pass_through(&self) {
            let mut rules = self.rules();
            rules.request = None;
            rules.reply = None;
            rules.down = false;
        }

        /// While down, connections are accepted and closed at once: the service is unreachable.
        pub fn set_down(&self, down: bool) {
            self.rules().down = down;
        }

        /// The last exchange of `action`.
        pub fn last(&self, action: &str) -> Exchange {
            self.shared
                .log
                .lock()
                .expect("log")
                .iter()
                .rev()
                .find(|e| e.request.action == action)
                .cloned()
                .unwrap_or_else(|| panic!("no {action} went through the proxy"))
        }
    }

    async fn handle(shared: Arc<Shared>, mut socket: TcpStream) {
        if shared.rules.lock().expect("rules").down {
            return;
        }
        let Some((target, body)) = read_request(&mut socket).await else { return };
        let action =
            target.split_once("action=").map(|(_, a)| a.split('&').next().unwrap_or(a)).unwrap_or("");
        let mut request = Incoming { action: action.to_owned(), fields: decode_form(&body) };
        if let Some(rule) = &shared.rules.lock().expect("rules").request {
            rule(&mut request);
        }
        let fields: Vec<(&str, &str)> =
            request.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let path = target.split('?').next().unwrap_or("/");
        let upstream = shared
            .http
            .post(format!("http://{}{path}?action={}", shared.upstream, request.action))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(super::form(&fields))
            .send()
            .await;
        let reply = match upstream {
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response
                    .headers()
                    .iter()
                    .filter(|(k, _)| {
                        !matches!(k.as_str(), "content-length" | "transfer-encoding" | "connection")
                    })
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().expect("ASCII header").to_owned()))
                    .collect();
                let body = response.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                Reply { status, headers, body }
            }
            Err(_) => return,
        };
        let reply = match &shared.rules.lock().expect("rules").reply {
            Some(rule) => rule(&request, reply),
            None => reply,
        };
        shared.log.lock().expect("log").push(Exchange { request, reply: reply.clone() });
        let reason = reqwest::StatusCode::from_u16(reply.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Whatever");
        let mut head = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", reply.body.len()));
        let _ = socket.write_all(head.as_bytes()).await;
        let _ = socket.write_all(&reply.body).await;
        let _ = socket.shutdown().await;
    }

    /// The request target and body of one HTTP/1.1 request with a `Content-Length`.
    async fn read_request(socket: &mut TcpStream) -> Option<(String, Vec<u8>)> {
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        let head_end = loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let n = socket.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
        let target = head.lines().next()?.split(' ').nth(1)?.to_owned();
        let length: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        while raw.len() < head_end + length {
            let n = socket.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        Some((target, raw[head_end..head_end + length].to_vec()))
    }

    /// `application/x-www-form-urlencoded` pairs, decoded.
    fn decode_form(body: &[u8]) -> Vec<(String, String)> {
        fn hex(digit: u8) -> Option<u8> {
            (digit as char).to_digit(16).map(|d| d as u8)
        }
        fn decode(text: &str) -> String {
            let bytes = text.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'+' => out.push(b' '),
                    b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                        (Some(high), Some(low)) => {
                            out.push(high << 4 | low);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    },
                    b => out.push(b),
                }
                i += 1;
            }
            String::from_utf8_lossy(&out).into_owned()
        }
        String::from_utf8_lossy(body)
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(k), decode(v))
            })
            .collect()
    }
}

use proxy::Proxy;

// ---------------------------------------------------------------------------------------------
// Happy paths
// ---------------------------------------------------------------------------------------------

async fn happy_paths(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-kit").await;
    let client = client(&stack, &fx);
    assert_eq!(client.pinned_kids(), [kid(&fx.public_key)]);
    let app = expect_ok(&stack.admin(&fx, "get_app_data", "").await);
    assert_eq!(app["keys"][0]["kid"], kid(&fx.public_key), "the client's kid is the service's: {app}");

    // register, with a HWID and a licence key.
    let expire = date_in(30);
    let keys = stack.create_keys(&fx, 2, 4, &expire).await;
    let bob = Credentials::new("bob", "bob's password").with_hwid("HW-BOB");
    let registered = client
        .register(&Registration::new(bob.clone(), "bob@example.com").with_licence(keys[0].to_lowercase()))
        .await
        .expect("register");
    assert_eq!(registered.claims.act, "register");
    assert_eq!(registered.claims.sub.as_deref(), Some("bob"));
    assert_eq!(registered.claims.hwid.as_deref(), Some("HW-BOB"));
    assert_eq!(registered.claims.lic, Some(LicenceStatus::Active));
    assert_eq!(registered.claims.kid, kid(&fx.public_key));
    assert!(client.lease().is_none(), "register grants no lease");

    // login: a verified lease.
    let login = client.login(&bob).await.expect("login");
    assert!(login.licence_active());
    assert_eq!(login.claims.lvl, Some(4));
    assert!(login.has_licence);
    assert_eq!(login.total_pings, 0);
    let lease = client.lease().expect("a lease after a licensed login");
    assert_eq!(
        (lease.username.as_str(), lease.hwid.as_deref(), lease.level),
        ("bob", Some("HW-BOB"), Some(4))
    );
    assert_eq!(lease.expires_at, login.claims.exp);
    let grace = lease.expires_at - lease.issued_at;
    assert!((86_390..=86_400).contains(&grace), "the 24-hour grace: {grace}");
    assert!(client.offline_allowed(SystemTime::now()));
    assert!(!client.offline_allowed(at_unix(lease.expires_at)));

    // connect: the heartbeat, counted.
    for n in 1..=2 {
        let beat = client.connect(&bob).await.expect("connect");
        assert_eq!(beat.total_pings, n);
        assert_eq!(beat.claims.pings, Some(n));
    }
    match client.connect_or_lease(&bob).await.expect("connect or lease") {
        Session::Online(beat) => assert_eq!(beat.total_pings, 3),
        Session::Offline(lease) => panic!("online, yet {lease:?}"),
    }

    // redeem a second key.
    let redeemed = client.redeem(&bob, &keys[1]).await.expect("redeem");
    assert_eq!(redeemed.claims.lic, Some(LicenceStatus::Active));
    assert_eq!(redeemed.access, Some(4));
    assert_eq!(redeemed.expire_time.as_deref(), Some(expire.as_str()));

    // Refusals are verified and typed.
    let error = client.redeem(&bob, &keys[1]).await.expect_err("used key");
    let used = error.refusal().expect("a refusal");
    assert_eq!((&used.code, used.http_status), (&ErrorCode::LicenceUsed, 409));
    assert!(!used.message.is_empty());
    let taken = refusal(client.register(&Registration::new(bob.clone(), "again@example.com")).await);
    assert_eq!((taken.code, taken.http_status), (ErrorCode::UsernameTaken, 409));
    let wrong = refusal(client.login(&Credentials::new("bob", "nope").with_hwid("HW-BOB")).await);
    assert_eq!((wrong.code, wrong.http_status), (ErrorCode::InvalidCredentials, 401));
    let elsewhere = refusal(client.login(&Credentials::new("bob", "bob's password").with_hwid("HW-2")).await);
    assert_eq!(
        (elsewhere.code.clone(), elsewhere.claims.hwid.as_deref()),
        (ErrorCode::HwidMismatch, Some("HW-BOB"))
    );
    assert!(client.lease().is_none(), "a verified refusal of the user ends the lease");
    let dir = tempfile::tempdir().expect("temp dir");
    let no_file = refusal(client.download_to_path(&bob, dir.path().join("app.bin")).await);
    assert_eq!((no_file.code, no_file.http_status), (ErrorCode::NoFile, 404));
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "nothing left behind");

    // download, to a file and to any writer.
    let data = binary(600 * 1024);
    upload(&stack, &fx, "app.bin", data.clone()).await;
    let path = dir.path().join("app.bin");
    std::fs::write(&path, b"the previous version").expect("old file");
    let file = client.download_to_path(&bob, &path).await.expect("download");
    assert_eq!(std::fs::read(&path).expect("downloaded file"), data);
    assert_eq!((file.size, file.sha256.as_str()), (data.len() as u64, sha256_hex(&data).as_str()));
    assert_eq!(file.claims.sha256.as_deref(), Some(sha256_hex(&data).as_str()));
    assert_eq!(file.filename.as_deref(), Some("app.bin"));
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1, "no partial file left");
    let mut buffer = Vec::new();
    let file = client.download_to_writer(&bob, &mut buffer).await.expect("download to a writer");
    assert_eq!((buffer.len() as u64, &buffer), (file.size, &data));

    // Without a licence: no download, a login without a lease.
    let carol = Credentials::new("carol", "carol's password");
    client.register(&Registration::new(carol.clone(), "carol@example.com")).await.expect("register");
    let refused = refusal(client.download_to_writer(&carol, &mut Vec::new()).await);
    assert_eq!((refused.code, refused.claims.lic), (ErrorCode::NoActiveLicence, Some(LicenceStatus::None)));
    let login = client.login(&carol).await.expect("login");
    assert!(!login.licence_active());
    assert_eq!(login.claims.exp - login.claims.iat, 60);
    assert!(client.lease().is_none(), "no lease without an active licence");

    // A kept lease comes back after a restart, verified again.
    let lease = {
        client.login(&bob).await.expect("login");
        client.lease().expect("lease")
    };
    let restarted = self::client(&stack, &fx);
    assert_eq!(restarted.restore_lease(&bob, lease.token()).expect("restore"), lease);
    assert!(matches!(
        verify_error(restarted.restore_lease(&Credentials::new("eve", "x"), lease.token())),
        VerifyError::SubjectMismatch { .. }
    ));

    // An answer the service did not sign (the app is not known yet) is not accepted.
    let stranger = Client::builder(api_url(stack.gw.addr))
        .app_secret("0".repeat(64))
        .public_key(fx.public_key.clone())
        .build()
        .expect("client");
    let failure = verify_error(stranger.login(&bob).await);
    assert_eq!(
        failure,
        VerifyError::MissingToken { http_status: 401, status: Some("invalid_app_secret".into()) }
    );
    stack.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Attacks, one each
// ---------------------------------------------------------------------------------------------

/// A fake server answering with another app's genuine answers: the client pinned to app A does
/// not know B's key, and B's signature under A's `kid` does not verify.
async fn another_apps_token(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let (a, b) = (stack.fixture("dev-a").await, stack.fixture("dev-b").await);
    let bob = Credentials::new("bob", "same password").with_hwid("HW-1");
    for fx in [&a, &b] {
        client(&stack, fx)
            .register(&Registration::new(bob.clone(), "bob@example.com"))
            .await
            .expect("register");
    }
    let proxy = Proxy::start(stack.gw.addr).await;
    let victim = client_at(proxy.addr, &a, &[&a.public_key], &TestClock::default());
    victim.login(&bob).await.expect("through the proxy, untouched");

    let b_secret = b.secret.clone();
    proxy.on_request(move |request| request.set("app_secret", &b_secret));
    let failure = verify_error(victim.login(&bob).await);
    assert_eq!(failure, VerifyError::UnknownKid { kid: Some(kid(&b.public_key)) });
    assert_eq!(token_kid(&proxy.last("login").reply.token()), Some(kid(&b.public_key)), "B's real token");

    let a_kid = kid(&a.public_key);
    proxy.on_reply(move |_, mut reply| {
        let token = relabel_kid(&reply.token(), &a_kid);
        reply.set_token(&token);
        reply
    });
    assert_eq!(verify_error(victim.login(&bob).await), VerifyError::BadSignature);
    assert_eq!(verify_error(victim.connect(&bob).await), VerifyError::BadSignature);
    stack.stop().await;
}

/// Claims changed after signing (an expired user made active): the signature breaks.
async fn altered_claims(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-claims").await;
    let carol = Credentials::new("carol", "carol's password");
    client(&stack, &fx).register(&Registration::new(carol.clone(), "c@example.com")).await.expect("register");
    let proxy = Proxy::start(stack.gw.addr).await;
    let victim = client_at(proxy.addr, &fx, &[&fx.public_key], &TestClock::default());
    assert!(!victim.login(&carol).await.expect("login").licence_active());

    proxy.on_reply(|_, mut reply| {
        let token = edit_claims(&reply.token(), |claims| {
            claims["lic"] = "active".into();
            claims["lvl"] = 9.into();
            claims["lexp"] = 4_000_000_000i64.into();
            claims["exp"] = 4_000_000_000i64.into();
        });
        reply.set_token(&token);
        let mut body = reply.json();
        body["licence_status"] = "active".into();
        reply.set_json(&body);
        reply
    });
    assert_eq!(verify_error(victim.login(&carol).await), VerifyError::BadSignature);
    assert!(victim.lease().is_none(), "no lease from a forged token");
    stack.stop().await;
}

/// A genuine answer recorded earlier and replayed to a later request: its nonce is not the new
/// one.
async fn replayed_answer(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-replay").await;
    let proxy = Proxy::start(stack.gw.addr).await;
    let victim = client_at(proxy.addr, &fx, &[&fx.public_key], &TestClock::default());
    let dan = Credentials::new("dan", "dan's password").with_hwid("HW-D");
    licensed_user(&stack, &fx, &victim, &dan).await;
    victim.login(&dan).await.expect("login");
    victim.connect(&dan).await.expect("connect");
    let recorded_login = proxy.last("login").reply;
    let recorded_connect = proxy.last("connect").reply;
    // Each request carries a fresh nonce: 16 random bytes, hex.
    let nonces = [proxy.last("login").request, proxy.last("connect").request]
        .map(|request| request.field("nonce").expect("a nonce").to_owned());
    assert!(nonces.iter().all(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit())), "{nonces:?}");
    assert_ne!(nonces[0], nonces[1]);

    // The user is banned since; the fake server replays the earlier successes.
    let key = stack.licences(&fx).await[0]["licence"].as_str().expect("key").to_owned();
    expect_ok(&stack.admin(&fx, "ban_licence", &format!("licence_key={key}")).await);
    proxy.on_reply(move |request, reply| match request.action.as_str() {
        "login" => recorded_login.clone(),
        "connect" => recorded_connect.clone(),
        _ => reply,
    });
    assert!(matches!(verify_error(victim.login(&dan).await), VerifyError::NonceMismatch { .. }));
    assert!(matches!(verify_error(victim.connect(&dan).await), VerifyError::NonceMismatch { .. }));
    proxy.pass_through();
    assert_eq!(refusal(victim.connect(&dan).await).code, ErrorCode::LicenceBanned, "the real answer");
    stack.stop().await;
}

/// The status of an answer made to disagree with its token: a refusal dressed as a success, and
/// a success token under a failed answer.
async fn success_token_on_a_failed_request(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-status").await;
    let proxy = Proxy::start(stack.gw.addr).await;
    let victim = client_at(proxy.addr, &fx, &[&fx.public_key], &TestClock::default());
    let eve = Credentials::new("eve", "eve's password");
    licensed_user(&stack, &fx, &victim, &eve).await;
    let key = stack.licences(&fx).await[0]["licence"].as_str().expect("key").to_owned();
    expect_ok(&stack.admin(&fx, "ban_licence", &format!("licence_key={key}")).await);

    // The real refusal (st = licence_banned), answered as HTTP 200 "success".
    proxy.on_reply(|_, mut reply| {
        assert_eq!(reply.status, 403, "the real answer is a refusal");
        reply.status = 200;
        let mut body = reply.json();
        body["status"] = "success".into();
        body["total_pings"] = 1.into();
        body.as_object_mut().expect("object").remove("message");
        reply.set_json(&body);
        reply
    });
    let failure = verify_error(victim.connect(&eve).await);
    assert_eq!(
        failure,
        VerifyError::StatusMismatch {
            http_status: 200,
            status: Some("success".into()),
            st: "licence_banned".into()
        }
    );

    // A real success (st = success) answered as a failure.
    expect_ok(&stack.admin(&fx, "unban_licence", &format!("licence_key={key}")).await);
    proxy.on_reply(|_, mut reply| {
        assert_eq!(reply.status, 200, "the real answer is a success");
        reply.status = 403;
        let mut body = reply.json();
        body["status"] = "licence_banned".into();
        body["message"] = "the licence is banned".into();
        reply.set_json(&body);
        reply
    });
    assert!(matches!(
        verify_error(victim.connect(&eve).await),
        VerifyError::StatusMismatch { http_status: 403, st, .. } if st == "success"
    ));
    // Only the HTTP status changed, the body left agreeing with the token: a refusal answered
    // as HTTP 200, a success as HTTP 403, a refusal under another code's HTTP status.
    expect_ok(&stack.admin(&fx, "ban_licence", &format!("licence_key={key}")).await);
    proxy.on_reply(|_, mut reply| {
        assert_eq!(reply.status, 403, "the real answer is a refusal");
        reply.status = 200;
        reply
    });
    assert_eq!(
        verify_error(victim.connect(&eve).await),
        VerifyError::StatusMismatch {
            http_status: 200,
            status: Some("licence_banned".into()),
            st: "licence_banned".into()
        }
    );
    proxy.on_reply(|_, mut reply| {
        reply.status = 500;
        reply
    });
    assert!(matches!(
        verify_error(victim.connect(&eve).await),
        VerifyError::StatusMismatch { http_status: 500, .. }
    ));
    expect_ok(&stack.admin(&fx, "unban_licence", &format!("licence_key={key}")).await);
    proxy.on_reply(|_, mut reply| {
        assert_eq!(reply.status, 200, "the real answer is a success");
        reply.status = 403;
        reply
    });
    assert_eq!(
        verify_error(victim.connect(&eve).await),
        VerifyError::StatusMismatch {
            http_status: 403,
            status: Some("success".into()),
            st: "success".into()
        }
    );

    // The same for a download: a success token on a JSON refusal.
    upload(&stack, &fx, "app.bin", binary(1000)).await;
    proxy.on_reply(|_, reply| {
        let token = reply.token();
        let mut fake = proxy::Reply {
            status: 403,
            headers: vec![("content-type".into(), "application/json; charset=utf-8".into())],
            body: Vec::new(),
        };
        fake.set_json(&serde_json::json!({"status": "no_active_licence", "message": "x", "token": token}));
        fake.set_header("x-response-token", &token);
        fake
    });
    assert!(matches!(
        verify_error(victim.download_to_writer(&eve, &mut Vec::new()).await),
        VerifyError::StatusMismatch { http_status: 403, .. }
    ));
    stack.stop().await;
}

/// Unsigned fields altered on the way: each contradiction with the signed claims is caught, and
/// so are a removed token and two different tokens.
async fn body_altered_after_signing(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-body").await;
    let proxy = Proxy::start(stack.gw.addr).await;
    let victim = client_at(proxy.addr, &fx, &[&fx.public_key], &TestClock::default());
    let fay = Credentials::new("fay", "fay's password").with_hwid("HW-F");
    licensed_user(&stack, &fx, &victim, &fay).await;

    proxy.on_reply(|_, mut reply| {
        let mut body = reply.json();
        body["total_pings"] = 1_000_000.into();
        reply.set_json(&body);
        reply
    });
    assert_eq!(verify_error(victim.connect(&fay).await), VerifyError::BodyMismatch { field: "total_pings" });

    proxy.on_reply(|_, mut reply| {
        let mut body = reply.json();
        body["licence_status"] = "expired".into();
        reply.set_json(&body);
        reply
    });
    assert_eq!(verify_error(victim.login(&fay).await), VerifyError::BodyMismatch { field: "licence_status" });

    proxy.on_reply(|_, mut reply| {
        let mut body = reply.json();
        body["status"] = "licence_banned".into();
        reply.set_json(&body);
        reply
    });
    assert!(matches!(
        verify_error(victim.connect(&fay).await),
        VerifyError::StatusMismatch { http_status: 200, .. }
    ));

    proxy.on_reply(|_, mut reply| {
        let mut body = reply.json();
        body.as_object_mut().expect("object").remove("token");
        reply.set_json(&body);
        reply.remove_header("x-response-token");
        reply
    });
    assert_eq!(
        verify_error(victim.connect(&fay).await),
        VerifyError::MissingToken { http_status: 200, status: Some("success".into()) }
    );

    // The header and the field disagree (each a genuine token of its own request).
    let earlier = {
        proxy.pass_through();
        victim.connect(&fay).await.expect("connect");
        proxy.last("connect").reply.token()
    };
    proxy.on_reply(move |_, mut reply| {
        reply.set_header("x-response-token", &earlier);
        reply
    });
    assert_eq!(verify_error(victim.connect(&fay).await), VerifyError::TokenConflict);
    stack.stop().await;
}

/// Bytes of the binary changed in transit: the digest does not match, the partial file is
/// deleted.
async fn download_altered_in_transit(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-dl").await;
    let proxy = Proxy::start(stack.gw.addr).await;
    let victim = client_at(proxy.addr, &fx, &[&fx.public_key], &TestClock::default());
    let gus = Credentials::new("gus", "gus's password").with_hwid("HW-G");
    licensed_user(&stack, &fx, &victim, &gus).await;
    let data = binary(300 * 1024);
    upload(&stack, &fx, "app.bin", data.clone()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("app.bin");
    victim.download_to_path(&gus, &path).await.expect("untouched download");
    std::fs::remove_file(&path).expect("remove");

    proxy.on_reply(|_, mut reply| {
        assert_eq!(reply.status, 200);
        let middle = reply.body.len() / 2;
        reply.body[middle] ^= 0x01;
        reply
    });
    let mut changed = data.clone();
    changed[data.len() / 2] ^= 0x01;
    let failure = verify_error(victim.download_to_path(&gus, &path).await);
    assert_eq!(
        failure,
        VerifyError::DigestMismatch { expected: sha256_hex(&data), actual: sha256_hex(&changed) }
    );
    assert!(!path.exists(), "no file at the destination");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "the partial file is deleted");
    assert!(matches!(
        verify_error(victim.download_to_writer(&gus, &mut Vec::new()).await),
        VerifyError::DigestMismatch { .. }
    ));

    // A file swapped whole, token kept: the same.
    proxy.on_reply(|_, mut reply| {
        reply.body = b"MZ a cracked build".to_vec();
        reply
    });
    assert!(matches!(
        verify_error(victim.download_to_path(&gus, &path).await),
        VerifyError::DigestMismatch { .. }
    ));
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "the partial file is deleted");
    stack.stop().await;
}

/// A client pinned to another key refuses the app's genuine tokens.
async fn unknown_kid(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-kid").await;
    let hal = Credentials::new("hal", "hal's password");
    client(&stack, &fx).register(&Registration::new(hal.clone(), "h@example.com")).await.expect("register");
    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let other = STANDARD.encode(other.verifying_key().to_bytes());
    let pinned_elsewhere = client_at(stack.gw.addr, &fx, &[&other], &TestClock::default());
    assert_eq!(
        verify_error(pinned_elsewhere.login(&hal).await),
        VerifyError::UnknownKid { kid: Some(kid(&fx.public_key)) }
    );
    assert!(matches!(verify_error(pinned_elsewhere.connect(&hal).await), VerifyError::UnknownKid { .. }));
    stack.stop().await;
}

/// Genuine answers to a request the client did not make: another user's, another HWID's,
/// another action's (the fake server rewrites the request, keeping the nonce).
async fn answers_for_another_request(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-other").await;
    let proxy = Proxy::start(stack.gw.addr).await;
    let victim = client_at(proxy.addr, &fx, &[&fx.public_key], &TestClock::default());
    let ivy = Credentials::new("ivy", "shared password");
    let jon = Credentials::new("jon", "shared password");
    licensed_user(&stack, &fx, &victim, &ivy).await;
    licensed_user(&stack, &fx, &victim, &jon).await;

    proxy.on_request(|request| request.set("username", "jon"));
    assert_eq!(
        verify_error(victim.login(&ivy).await),
        VerifyError::SubjectMismatch { expected: "ivy".into(), got: Some("jon".into()) }
    );

    proxy.on_request(|request| request.set("hwid", "HW-ATTACKER"));
    assert_eq!(
        verify_error(victim.login(&ivy.clone().with_hwid("HW-IVY")).await),
        VerifyError::HwidMismatch { sent: Some("HW-IVY".into()), got: Some("HW-ATTACKER".into()) }
    );

    proxy.on_request(|request| request.action = "login".into());
    assert_eq!(
        verify_error(victim.connect(&jon).await),
        VerifyError::ActionMismatch { expected: "connect".into(), got: "login".into() }
    );
    stack.stop().await;
}

/// Tokens outside their validity window by the client's clock: expired, or issued in the
/// future; the skew is configurable.
async fn token_validity_window(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-time").await;
    let kim = Credentials::new("kim", "kim's password");
    client(&stack, &fx).register(&Registration::new(kim.clone(), "k@example.com")).await.expect("register");
    let clock = TestClock::default();
    let late = client_at(stack.gw.addr, &fx, &[&fx.public_key], &clock);
    clock.set_offset(3600);
    assert!(matches!(verify_error(late.login(&kim).await), VerifyError::Expired { .. }));
    clock.set_offset(-3600);
    assert!(matches!(verify_error(late.login(&kim).await), VerifyError::NotYetValid { .. }));
    // 90 seconds behind: beyond the default skew of 60, within a skew of 120.
    clock.set_offset(-90);
    assert!(matches!(verify_error(late.login(&kim).await), VerifyError::NotYetValid { .. }));
    let tolerant = Client::builder(api_url(stack.gw.addr))
        .app_secret(fx.secret.clone())
        .public_key(fx.public_key.clone())
        .clock(clock.clone())
        .clock_skew(Duration::from_secs(120))
        .build()
        .expect("client");
    tolerant.login(&kim).await.expect("within the skew");
    stack.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Key rotation
// ---------------------------------------------------------------------------------------------

/// The app's keys as `get_app_data` lists them: `(kid, public, state)`.
async fn published_keys(stack: &TestStack, fx: &Fixture) -> Vec<(String, String, String)> {
    let app = expect_ok(&stack.admin(fx, "get_app_data", "").await);
    app["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("keys listed: {app}"))
        .iter()
        .map(|k| {
            let field = |name: &str| k[name].as_str().unwrap_or_else(|| panic!("{name} of {k}")).to_owned();
            (field("kid"), field("public"), field("state"))
        })
        .collect()
}

/// A client pinned to the old and the next key keeps working through add, promote and retire;
/// one pinned to the old key alone stops at the promotion.
async fn key_rotation(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-rotate").await;
    let old = fx.public_key.clone();
    let lea = Credentials::new("lea", "lea's password").with_hwid("HW-L");
    licensed_user(&stack, &fx, &client(&stack, &fx), &lea).await;
    upload(&stack, &fx, "app.bin", binary(10_000)).await;

    let keys = stack.core.core.add_signing_key(fx.app_id).await.expect("add a key");
    let next = keys.iter().find(|k| k.state == SigningKeyState::Next).expect("a next key").clone();
    for key in &keys {
        assert_eq!(kid(&key.public_key), key.kid, "the client computes the service's kid");
    }
    assert_eq!(
        published_keys(&stack, &fx).await,
        [
            (kid(&old), old.clone(), "signing".to_owned()),
            (next.kid.clone(), next.public_key.clone(), "next".to_owned())
        ]
    );
    let clock = TestClock::default();
    let both = client_at(stack.gw.addr, &fx, &[&old, &next.public_key], &clock);
    let old_only = client_at(stack.gw.addr, &fx, &[&old], &clock);
    let next_only = client_at(stack.gw.addr, &fx, &[&next.public_key], &clock);
    let works = |client: Client, signer: String| {
        let lea = lea.clone();
        async move {
            assert_eq!(client.login(&lea).await.expect("login").claims.kid, signer);
            assert_eq!(client.connect(&lea).await.expect("connect").claims.kid, signer);
            assert_eq!(
                client.download_to_writer(&lea, &mut Vec::new()).await.expect("download").claims.kid,
                signer
            );
        }
    };

    // Added: the old key still signs.
    works(both.clone(), kid(&old)).await;
    works(old_only.clone(), kid(&old)).await;
    assert_eq!(verify_error(next_only.login(&lea).await), VerifyError::UnknownKid { kid: Some(kid(&old)) });

    // Promoted: the next key signs; the old one is still published as previous.
    let keys = stack.core.core.promote_signing_key(fx.app_id, &next.kid).await.expect("promote");
    let state = |kid: &str| keys.iter().find(|k| k.kid == kid).map(|k| k.state.as_str());
    assert_eq!((state(&next.kid), state(&self::kid(&old))), (Some("signing"), Some("previous")));
    works(both.clone(), next.kid.clone()).await;
    works(next_only.clone(), next.kid.clone()).await;
    assert_eq!(
        verify_error(old_only.login(&lea).await),
        VerifyError::UnknownKid { kid: Some(next.kid.clone()) }
    );
    let app = expect_ok(&stack.admin(&fx, "get_app_data", "").await);
    assert_eq!(app["public"], next.public_key.as_str(), "`public` is the signing key");

    // Retired: gone from the listing; the client pinned to it alone stays locked out.
    let keys = stack.core.core.retire_signing_key(fx.app_id, &kid(&old)).await.expect("retire");
    assert!(keys.iter().all(|k| k.kid != kid(&old)), "{keys:?}");
    assert_eq!(
        published_keys(&stack, &fx).await,
        [(next.kid.clone(), next.public_key.clone(), "signing".to_owned())]
    );
    works(both, next.kid.clone()).await;
    assert!(matches!(verify_error(old_only.connect(&lea).await), VerifyError::UnknownKid { .. }));
    assert!(matches!(
        verify_error(old_only.download_to_writer(&lea, &mut Vec::new()).await),
        VerifyError::UnknownKid { .. }
    ));
    stack.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Offline
// ---------------------------------------------------------------------------------------------

/// With a 5-minute offline grace: the lease lets the app run while the service is unreachable,
/// until its `exp` by the client's clock; refusals and verification failures never fall back to
/// it.
async fn offline_lease(backend: Backend) {
    const GRACE: i64 = 300;
    let stack = TestStack::start_with(
        backend,
        |core| core.settings.default_offline_grace = Duration::from_secs(GRACE as u64),
        |_| {},
    )
    .await;
    let fx = stack.fixture("dev-offline").await;
    let clock = TestClock::default();
    let direct = client_at(stack.gw.addr, &fx, &[&fx.public_key], &clock);
    let proxy = Proxy::start(stack.gw.addr).await;
    let proxied = client_at(proxy.addr, &fx, &[&fx.public_key], &TestClock::default());
    let max = Credentials::new("max", "max's password").with_hwid("HW-M");
    licensed_user(&stack, &fx, &direct, &max).await;

    // Without a lease, unreachable is just an error.
    proxy.set_down(true);
    assert!(proxied.connect_or_lease(&max).await.expect_err("no lease yet").is_transport());
    proxy.pass_through();

    let login = direct.login(&max).await.expect("login");
    let lease = direct.lease().expect("a lease");
    assert_eq!(lease.expires_at - lease.issued_at, GRACE, "the app's offline grace");
    assert_eq!(lease.expires_at, login.claims.exp);
    proxied.login(&max).await.expect("login through the proxy");
    assert!(proxied.lease().is_some());

    // Unreachable (the proxy drops every connection): the lease.
    proxy.set_down(true);
    match proxied.connect_or_lease(&max).await.expect("the lease") {
        Session::Offline(offline) => assert_eq!(offline.username, "max"),
        Session::Online(beat) => panic!("unreachable, yet {beat:?}"),
    }
    // Another user, or another HWID, gets nothing from max's lease.
    assert!(
        proxied
            .connect_or_lease(&Credentials::new("other", "pw"))
            .await
            .expect_err("no lease")
            .is_transport()
    );
    assert!(
        proxied.connect_or_lease(&max.clone().with_hwid("HW-X")).await.expect_err("no lease").is_transport()
    );

    // A verification failure is not "unreachable", and changes nothing.
    proxy.pass_through();
    let before = proxied.lease().expect("a lease");
    proxy.on_reply(|_, mut reply| {
        let mut body = reply.json();
        body["total_pings"] = 0.into();
        reply.set_json(&body);
        reply
    });
    assert_eq!(
        verify_error(proxied.connect_or_lease(&max).await),
        VerifyError::BodyMismatch { field: "total_pings" }
    );
    assert_eq!(proxied.lease(), Some(before), "an unverified answer changes nothing");

    // Nor is a refusal: a ban ends the lease at once.
    proxy.pass_through();
    let key = stack.licences(&fx).await[0]["licence"].as_str().expect("key").to_owned();
    expect_ok(&stack.admin(&fx, "ban_licence", &format!("licence_key={key}")).await);
    assert_eq!(refusal(proxied.connect_or_lease(&max).await).code, ErrorCode::LicenceBanned);
    assert!(proxied.lease().is_none(), "a verified ban ends the lease");
    proxy.set_down(true);
    assert!(proxied.connect_or_lease(&max).await.expect_err("no lease left").is_transport());
    expect_ok(&stack.admin(&fx, "unban_licence", &format!("licence_key={key}")).await);

    // The core stops behind a running gateway, which answers its own unsigned `503
    // unavailable`: the service is unreachable all the same, and the lease applies.
    let TestStack { core, gw } = stack;
    core.stop().await;
    let down = direct.connect(&max).await.expect_err("the core is down");
    assert!(
        matches!(down, Error::Verify(VerifyError::MissingToken { http_status: 503, .. })),
        "the gateway's own answer: {down:?}"
    );
    match direct.connect_or_lease(&max).await.expect("the lease") {
        Session::Offline(offline) => assert_eq!(offline, lease),
        Session::Online(beat) => panic!("the core is stopped, yet {beat:?}"),
    }

    // The gateway stops too: the direct client runs on its lease until `exp`, and not a second
    // longer.
    gw.stop().await;
    match direct.connect_or_lease(&max).await.expect("the lease") {
        Session::Offline(offline) => assert_eq!(offline, lease),
        Session::Online(beat) => panic!("the gateway is stopped, yet {beat:?}"),
    }
    assert!(direct.offline_allowed(clock.now()));
    clock.set_to(lease.expires_at - 1);
    assert!(matches!(direct.connect_or_lease(&max).await, Ok(Session::Offline(_))));
    clock.set_to(lease.expires_at);
    assert!(!direct.offline_allowed(clock.now()));
    let error = direct.connect_or_lease(&max).await.expect_err("the lease is over");
    assert!(error.is_transport(), "{error:?}");
    assert!(direct.lease().is_some(), "kept, but no longer valid");

    // A lease restored after a restart obeys the same clock.
    let restarted = client_at(dead_address().await, &fx, &[&fx.public_key], &clock);
    assert!(matches!(
        verify_error(restarted.restore_lease(&max, lease.token())),
        VerifyError::Expired { .. }
    ));
    clock.set_offset(0);
    restarted.restore_lease(&max, lease.token()).expect("still valid now");
    assert!(matches!(restarted.connect_or_lease(&max).await, Ok(Session::Offline(_))));
}
