//! HTTPS in front, TLS behind: the gateway serves HTTPS and reaches the real core over TLS,
//! trusting only the CA it is given. A throwaway CA signs both servers' certificates.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use core_service::{
    Application, CoreConfig, domain::throttle::ThrottleConfig, service::AppCreated, service::Settings,
    startup::TlsFiles as CoreTlsFiles,
};
use http_gateway::{Cli, Gateway, GatewayConfig, config::TlsFiles};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use reqwest::StatusCode;
use tokio::{sync::oneshot, task::JoinHandle};

const BIN: &str = env!("CARGO_BIN_EXE_http-gateway");
const DEVELOPER: &str = "alice";
const PASSWORD: &str = "correct horse";

/// A CA, and certificates it signed for localhost and 127.0.0.1, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    ca: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "licensing test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA");
        let ca_pem = issuer.pem();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &ca_pem).expect("write CA");
        Pki { dir, ca_pem, ca, issuer }
    }

    /// A server certificate and key named `name-cert.pem` and `name-key.pem`.
    fn server(&self, name: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
        params.distinguished_name.push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &self.issuer).expect("server certificate");
        let (cert_path, key_path) = (
            self.dir.path().join(format!("{name}-cert.pem")),
            self.dir.path().join(format!("{name}-key.pem")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    /// A client certificate and key named `name-client-cert.pem` and `name-client-key.pem`.
    fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("client params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("client certificate");
        let (cert_path, key_path) = (
            self.dir.path().join(format!("{name}-client-cert.pem")),
            self.dir.path().join(format!("{name}-client-key.pem")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write file");
        path
    }
}

/// Flags of an HTTPS gateway calling `core` over TLS and believing `X-Forwarded-For` from
/// loopback, with a server certificate of its own from `pki`.
fn https_behind_local_proxy(pki: &Pki, core: &Core) -> Vec<String> {
    let (cert, key) = pki.server("gateway");
    let core_url = format!("https://127.0.0.1:{}", core.port);
    [
        "--core-url",
        &core_url,
        "--core-ca",
        arg(&pki.ca),
        "--tls-cert",
        arg(&cert),
        "--tls-key",
        arg(&key),
        "--trusted-proxies",
        "127.0.0.1",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The real core over TLS, with one developer and one app.
struct Core {
    port: u16,
    app: AppCreated,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
}

async fn start_core(pki: &Pki, throttle: ThrottleConfig) -> Core {
    start_core_with(pki, throttle, None).await
}

/// The core over TLS; with `client_ca`, callers showing a certificate it signed are gateways.
async fn start_core_with(pki: &Pki, throttle: ThrottleConfig, client_ca: Option<PathBuf>) -> Core {
    let (cert, key) = pki.server("core");
    let url = format!("sqlite://{}?mode=rwc", pki.dir.path().join("core.db").display());
    let settings = Settings { throttle, hash_workers: 1, ..Settings::default() };
    let config = CoreConfig {
        tls: Some(CoreTlsFiles { cert, key }),
        tls_client_ca: client_ca,
        settings,
        ..CoreConfig::local(&url)
    };
    let application = Application::build(config).await.expect("core builds");
    let core = application.core();
    core.add_developer(DEVELOPER, PASSWORD).await.expect("developer");
    let app = AppCreated::from(core.add_app(DEVELOPER, "TLS App", Some("1.0.0")).await.expect("app"));
    let port = application.local_addr().port();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        application
            .run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .expect("core runs");
    });
    Core { port, app, stop: Some(stop), handle }
}

impl Core {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("core stops")
            .expect("core task");
    }
}

struct Running {
    addr: SocketAddr,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
}

/// Builds the gateway from command-line flags, as an operator would start it.
async fn start_gateway(pki: &Pki, args: &[&str]) -> Running {
    let mut argv = vec!["http-gateway", "--listen", "127.0.0.1:0"];
    argv.extend_from_slice(args);
    let cli = <Cli as clap::Parser>::try_parse_from(argv).expect("flags parse");
    let config = GatewayConfig::try_from(cli).expect("flags are consistent");
    let gateway = Gateway::build(config).await.expect("gateway builds");
    assert!(gateway.is_tls());
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
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA for reqwest"))
        .https_only(true)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("HTTPS client");
    Running { addr, http, stop: Some(stop), handle }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    async fn post(
        &self,
        path: &str,
        body: String,
        forwarded_for: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(address) = forwarded_for {
            request = request.header("x-forwarded-for", address);
        }
        let response = request.send().await.expect("HTTPS request");
        let status = response.status();
        let body = serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
        (status, body)
    }

    fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops the gateway; with the grace time at its 30 s default, finishing quickly shows the
    /// idle HTTPS connections were closed rather than waited out.
    async fn stop(mut self) {
        self.signal_stop();
        tokio::time::timeout(Duration::from_secs(5), self.handle)
            .await
            .expect("gateway stops promptly")
            .expect("gateway task");
    }
}

fn default_throttle() -> ThrottleConfig {
    ThrottleConfig::default()
}

/// Same length and alphabet as the real secret, but no app has it.
fn wrong_secret(secret: &str) -> String {
    let mut chars: Vec<char> = secret.chars().collect();
    chars[0] = if chars[0] == 'a' { 'b' } else { 'a' };
    chars.into_iter().collect()
}

fn login_form(secret: &str) -> String {
    format!("username=bob&password=hunter22&hwid=HWID-1&app_secret={secret}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_requests_reach_the_core_over_tls() {
    let pki = Pki::new();
    let core = start_core(&pki, default_throttle()).await;
    let (cert, key) = pki.server("gateway");
    let core_url = format!("https://localhost:{}", core.port);
    let gateway = start_gateway(
        &pki,
        &[
            "--core-url",
            &core_url,
            "--core-ca",
            arg(&pki.ca),
            "--tls-cert",
            arg(&cert),
            "--tls-key",
            arg(&key),
        ],
    )
    .await;

    // A failure decided by the core, through both TLS hops.
    let (status, body) =
        gateway.post("/api/action.php?action=login", login_form(&wrong_secret(&core.app.secret)), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["status"], "invalid_app_secret", "{body}");
    assert!(body["message"].is_string(), "{body}");

    // And a success carrying the core's data.
    let form = format!(
        "developer_username={DEVELOPER}&develoer_password=correct+horse&app_secret={}",
        core.app.secret
    );
    let (status, body) = gateway.post("/api/admin.php?action=get_app_data", form, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(body["appname"], "TLS App", "{body}");

    // Plain HTTP to the HTTPS port gets no answer.
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/action.php?action=login", gateway.addr.port()))
        .timeout(Duration::from_secs(10))
        .body(login_form(&core.app.secret))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP must not be served: {plain:?}");

    gateway.stop().await;
    core.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_address_survives_tls() {
    // Throttling counts failures per client address. Over TLS the gateway accepts connections
    // itself, so this checks the TCP peer still reaches the trusted-proxy logic: with the peer
    // lost, every request would count against one empty address and be throttled below.
    let pki = Pki::new();
    let throttle = ThrottleConfig { per_username: 2, per_address: 2, ..ThrottleConfig::default() };
    let core = start_core(&pki, throttle).await;
    let args = https_behind_local_proxy(&pki, &core);
    let gateway = start_gateway(&pki, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let bad = login_form(&wrong_secret(&core.app.secret));

    for client in ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"] {
        let (status, body) = gateway.post("/api/action.php?action=login", bad.clone(), Some(client)).await;
        assert_eq!(body["status"], "invalid_app_secret", "{client}: {body}");
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // The same address again and again is throttled, so the loop above was not vacuous.
    let mut answers = Vec::new();
    for _ in 0..5 {
        let (_, body) = gateway.post("/api/action.php?action=login", bad.clone(), Some("192.0.2.9")).await;
        answers.push(body["status"].as_str().unwrap_or_default().to_owned());
    }
    assert!(answers.iter().any(|status| status == "rate_limited"), "{answers:?}");

    gateway.stop().await;
    core.stop().await;
}

/// Mutual TLS: a core with a client CA believes the client addresses of a gateway showing a
/// certificate from it, and counts a gateway without one on that gateway's own address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_lets_the_core_believe_the_gateway() {
    let pki = Pki::new();
    let throttle = ThrottleConfig { per_username: 100, per_address: 2, ..ThrottleConfig::default() };
    let core = start_core_with(&pki, throttle, Some(pki.ca.clone())).await;
    let (client_cert, client_key) = pki.client("gateway");
    let owned = https_behind_local_proxy(&pki, &core);
    let common: Vec<&str> = owned.iter().map(String::as_str).collect();
    let mut proven_args = common.clone();
    proven_args.extend(["--core-client-cert", arg(&client_cert), "--core-client-key", arg(&client_key)]);
    let proven = start_gateway(&pki, &proven_args).await;
    let bad = login_form(&wrong_secret(&core.app.secret));

    // Five clients, each failing once: each is counted on its own address.
    for client in ["192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.14", "192.0.2.15"] {
        let (_, body) = proven.post("/api/action.php?action=login", bad.clone(), Some(client)).await;
        assert_eq!(body["status"], "invalid_app_secret", "{client}: {body}");
    }
    proven.stop().await;

    // Without the certificate, the same five are one address (the gateway's), used up at once.
    let unproven = start_gateway(&pki, &common).await;
    let mut answers = Vec::new();
    for client in ["192.0.2.21", "192.0.2.22", "192.0.2.23"] {
        let (_, body) = unproven.post("/api/action.php?action=login", bad.clone(), Some(client)).await;
        answers.push(body["status"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(answers, ["invalid_app_secret", "invalid_app_secret", "rate_limited"]);
    unproven.stop().await;
    core.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    let core = start_core(&pki, default_throttle()).await;
    let stranger = Pki::new();
    let (cert, key) = pki.server("gateway");
    let core_url = format!("https://localhost:{}", core.port);
    let gateway = start_gateway(
        &pki,
        &[
            "--core-url",
            &core_url,
            "--core-ca",
            arg(&stranger.ca),
            "--tls-cert",
            arg(&cert),
            "--tls-key",
            arg(&key),
        ],
    )
    .await;
    let (status, body) =
        gateway.post("/api/action.php?action=login", login_form(&core.app.secret), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "unavailable", "{body}");
    gateway.stop().await;
    core.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_https_request_in_flight_finish() {
    let pki = Pki::new();
    let core = start_core(&pki, default_throttle()).await;
    let (cert, key) = pki.server("gateway");
    let core_url = format!("https://localhost:{}", core.port);
    let mut gateway = start_gateway(
        &pki,
        &[
            "--core-url",
            &core_url,
            "--core-ca",
            arg(&pki.ca),
            "--tls-cert",
            arg(&cert),
            "--tls-key",
            arg(&key),
        ],
    )
    .await;

    // The body arrives in two parts, with the shutdown signal in between.
    let (parts, body) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(2);
    let request = gateway
        .http
        .post(gateway.url("/api/action.php?action=login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(body)))
        .send();
    let request = tokio::spawn(request);
    parts.send(Ok("username=bob&password=hunter22".into())).await.expect("first part");
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateway.signal_stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Stopped accepting: a new connection is refused while the old one finishes.
    assert!(tokio::net::TcpStream::connect(gateway.addr).await.is_err(), "the listener is closed");
    let rest = format!("&hwid=HWID-1&app_secret={}", wrong_secret(&core.app.secret));
    parts.send(Ok(rest.into())).await.expect("second part");
    drop(parts);

    let response = request.await.expect("request task").expect("the in-flight request is answered");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
    assert_eq!(body["status"], "invalid_app_secret", "{body}");
    gateway.stop().await;
    core.stop().await;
}

async fn build_error(args: &[&str]) -> String {
    let mut argv = vec!["http-gateway", "--listen", "127.0.0.1:0"];
    argv.extend_from_slice(args);
    let cli = <Cli as clap::Parser>::try_parse_from(argv).expect("flags parse");
    let config = GatewayConfig::try_from(cli).expect("flags are consistent");
    let error = match Gateway::build(config).await {
        Ok(_) => panic!("the gateway must not start"),
        Err(error) => error.to_string(),
    };
    assert_eq!(error.lines().count(), 1, "{error}");
    error
}

#[tokio::test]
async fn unusable_tls_settings_are_one_clear_error() {
    let pki = Pki::new();
    let (cert, key) = pki.server("gateway");
    let (_, other_key) = pki.server("other");
    let garbage = pki.write("garbage.pem", "not PEM at all\n");
    let missing = pki.dir.path().join("missing.pem");

    for url in ["https://localhost:50051", "HTTPS://localhost:50051"] {
        let error = build_error(&["--core-url", url]).await;
        assert!(error.contains("--core-ca"), "{error}");
    }

    let error = build_error(&["--core-url", "https://localhost:50051", "--core-ca", arg(&garbage)]).await;
    assert!(error.contains("invalid core CA bundle") && error.contains("garbage.pem"), "{error}");

    let error = build_error(&["--core-url", "https://localhost:50051", "--core-ca", arg(&missing)]).await;
    assert!(error.contains("cannot read the core CA bundle") && error.contains("missing.pem"), "{error}");

    let error = build_error(&["--tls-cert", arg(&missing), "--tls-key", arg(&key)]).await;
    assert!(error.contains("cannot read the TLS certificate") && error.contains("missing.pem"), "{error}");

    let error = build_error(&["--tls-cert", arg(&garbage), "--tls-key", arg(&key)]).await;
    assert!(error.contains("invalid TLS certificate"), "{error}");

    let error = build_error(&["--tls-cert", arg(&cert), "--tls-key", arg(&cert)]).await;
    assert!(error.contains("invalid TLS key"), "{error}");

    let error = build_error(&["--tls-cert", arg(&cert), "--tls-key", arg(&other_key)]).await;
    assert!(error.contains("does not belong to the certificate"), "{error}");

    // Without any of it the gateway stays plain.
    let config = GatewayConfig::local("http://127.0.0.1:1");
    assert_eq!((&config.tls, &config.core_ca), (&None, &None));
    assert!(!Gateway::build(config).await.expect("plain gateway").is_tls());
    let config = GatewayConfig {
        tls: Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
        ..GatewayConfig::local("http://127.0.0.1:1")
    };
    assert!(Gateway::build(config).await.expect("TLS gateway").is_tls());
}

fn gateway_command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("RUST_LOG");
    for name in ["GATEWAY_TLS_CERT", "GATEWAY_TLS_KEY", "GATEWAY_CORE_CA", "CORE_URL", "GATEWAY_LISTEN"] {
        command.env_remove(name);
    }
    command
}

fn one_error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(stderr.trim().lines().count(), 1, "one line on stderr: {stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn the_binary_reads_the_tls_flags_and_their_variables() {
    let pki = Pki::new();
    let (cert, key) = pki.server("gateway");

    let out = gateway_command(&["--listen", "127.0.0.1:0", "--tls-cert", arg(&cert)]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("--tls-key"));

    let out =
        gateway_command(&["--listen", "127.0.0.1:0"]).env("GATEWAY_TLS_KEY", &key).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("--tls-cert"));

    let start = Instant::now();
    let out = gateway_command(&["--listen", "127.0.0.1:0", "--core-url", "https://localhost:1"])
        .env("GATEWAY_CORE_CA", pki.dir.path().join("missing.pem"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(one_error_line(&out).contains("missing.pem"));
    assert!(start.elapsed() < Duration::from_secs(10));

    let help = gateway_command(&["--help"]).output().expect("run");
    let help = String::from_utf8_lossy(&help.stdout);
    for name in
        ["--tls-cert", "GATEWAY_TLS_CERT", "--tls-key", "GATEWAY_TLS_KEY", "--core-ca", "GATEWAY_CORE_CA"]
    {
        assert!(help.contains(name), "--help documents {name}:\n{help}");
    }
}
