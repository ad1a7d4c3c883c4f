//! gRPC over TLS: a throwaway CA signs a certificate for localhost and 127.0.0.1; clients that
//! trust the CA get answers, plaintext and untrusting clients do not, and bad files stop the
//! start with one clear line.

use std::{
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use core_service::{Application, CoreConfig, startup::TlsFiles};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const BIN: &str = env!("CARGO_BIN_EXE_core-service");

/// A CA and a server certificate it signed, as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_pem = {
            let (ca, ca_pem) = certificate_authority("licensing test CA");
            let key = KeyPair::generate().expect("server key");
            let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
            params.distinguished_name.push(DnType::CommonName, "localhost");
            let cert = params.signed_by(&key, &ca).expect("server certificate");
            std::fs::write(dir.path().join("cert.pem"), cert.pem()).expect("write cert");
            std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("write key");
            ca_pem
        };
        Pki { cert: dir.path().join("cert.pem"), key: dir.path().join("key.pem"), ca_pem, dir }
    }

    fn files(&self) -> TlsFiles {
        TlsFiles { cert: self.cert.clone(), key: self.key.clone() }
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write file");
        path
    }

    fn database_url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.dir.path().join("core.db").display())
    }
}

fn certificate_authority(name: &str) -> (CertifiedIssuer<'static, KeyPair>, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA");
    let pem = ca.pem();
    (ca, pem)
}

struct Running {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
}

impl Running {
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

async fn start(config: CoreConfig) -> Running {
    let app = Application::build(config).await.expect("core builds");
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = stopped.await;
        })
        .await
        .expect("core runs");
    });
    Running { addr, stop: Some(stop), handle }
}

async fn tls_channel(url: &str, ca_pem: &str) -> Result<Channel, tonic::transport::Error> {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    Endpoint::from_shared(url.to_owned())?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

async fn health(channel: Channel) -> Result<i32, tonic::Status> {
    let mut client = HealthClient::new(channel);
    let request = HealthCheckRequest { service: "licensing.v1.ClientService".into() };
    Ok(client.check(request).await?.into_inner().status)
}

#[tokio::test]
async fn clients_trusting_the_ca_are_served_and_others_are_not() {
    let pki = Pki::new();
    let core = start(CoreConfig { tls: Some(pki.files()), ..CoreConfig::local(&pki.database_url()) }).await;
    let port = core.addr.port();

    // Both names in the certificate work: the host name and the loopback address.
    for url in [format!("https://localhost:{port}"), format!("https://127.0.0.1:{port}")] {
        let channel = tls_channel(&url, &pki.ca_pem).await.expect("TLS connection");
        assert_eq!(health(channel).await.expect("health over TLS"), ServingStatus::Serving as i32, "{url}");
    }

    // A plaintext client gets no gRPC answer from a TLS listener.
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    assert!(health(plain).await.is_err(), "plaintext must not be served");

    // A client that trusts another CA refuses the certificate.
    let (_other, other_pem) = certificate_authority("someone else's CA");
    let untrusting = tls_channel(&format!("https://localhost:{port}"), &other_pem).await;
    assert!(untrusting.is_err(), "a certificate from an unknown CA must be refused");

    core.stop().await;
}

#[tokio::test]
async fn without_tls_the_listener_stays_plain() {
    let pki = Pki::new();
    let config = CoreConfig::local(&pki.database_url());
    assert_eq!(config.tls, None);
    let core = start(config).await;
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{}", core.addr.port()))
        .expect("endpoint")
        .connect()
        .await
        .expect("plain connection");
    assert_eq!(health(plain).await.expect("plain health"), ServingStatus::Serving as i32);
    core.stop().await;
}

fn build_error(pki: &Pki, files: TlsFiles) -> String {
    let config = CoreConfig { tls: Some(files), ..CoreConfig::local(&pki.database_url()) };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let error = match runtime.block_on(Application::build(config)) {
        Ok(_) => panic!("the core must not start"),
        Err(error) => error.to_string(),
    };
    assert_eq!(error.lines().count(), 1, "{error}");
    // TLS files are checked before the database is opened.
    assert!(!pki.dir.path().join("core.db").exists());
    error
}

#[test]
fn unusable_files_are_one_clear_error_naming_the_file() {
    let pki = Pki::new();
    let missing = pki.dir.path().join("missing.pem");

    let error = build_error(&pki, TlsFiles { cert: missing.clone(), key: pki.key.clone() });
    assert!(error.contains("cannot read the TLS certificate") && error.contains("missing.pem"), "{error}");

    let error = build_error(&pki, TlsFiles { cert: pki.cert.clone(), key: missing });
    assert!(error.contains("cannot read the TLS key") && error.contains("missing.pem"), "{error}");

    let garbage = pki.write("garbage.pem", "not a certificate\n");
    let error = build_error(&pki, TlsFiles { cert: garbage.clone(), key: pki.key.clone() });
    assert!(error.contains("invalid TLS certificate") && error.contains("garbage.pem"), "{error}");

    // A certificate given where the key belongs.
    let error = build_error(&pki, TlsFiles { cert: pki.cert.clone(), key: pki.cert.clone() });
    assert!(error.contains("invalid TLS key") && error.contains("cert.pem"), "{error}");

    // A well-formed key that is not the certificate's.
    let other_key = pki.write("other-key.pem", &KeyPair::generate().expect("key").serialize_pem());
    let error = build_error(&pki, TlsFiles { cert: pki.cert.clone(), key: other_key });
    assert!(
        error.contains("other-key.pem") && error.contains("does not belong to the certificate"),
        "{error}"
    );
}

fn core_command(pki: &Pki, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(pki.dir.path())
        .env("DATABASE_URL", pki.database_url())
        .env_remove("CORE_TLS_CERT")
        .env_remove("CORE_TLS_KEY")
        .env_remove("RUST_LOG");
    command
}

fn one_error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(stderr.trim().lines().count(), 1, "one line on stderr: {stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn half_an_identity_is_bad_usage_in_one_line() {
    let pki = Pki::new();
    let cert = pki.cert.to_str().expect("utf-8 path");
    let key = pki.key.to_str().expect("utf-8 path");

    let out =
        core_command(&pki, &["serve", "--listen", "127.0.0.1:0", "--tls-cert", cert]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("--tls-key"));

    let out = core_command(&pki, &["serve", "--listen", "127.0.0.1:0"])
        .env("CORE_TLS_KEY", key)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("--tls-cert"));

    let out = core_command(&pki, &["serve", "--listen", "127.0.0.1:0", "--tls-cert", key, "--tls-key", key])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error_line(&out).contains("invalid TLS certificate"));

    let help = core_command(&pki, &["serve", "--help"]).output().expect("run");
    let help = String::from_utf8_lossy(&help.stdout);
    for name in ["--tls-cert", "CORE_TLS_CERT", "--tls-key", "CORE_TLS_KEY"] {
        assert!(help.contains(name), "--help documents {name}:\n{help}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[tokio::test]
async fn the_binary_serves_tls_from_its_environment() {
    let pki = Pki::new();
    let port = free_port();
    let mut child = core_command(&pki, &["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("CORE_TLS_CERT", &pki.cert)
        .env("CORE_TLS_KEY", &pki.key)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    let channel = loop {
        match tls_channel(&format!("https://localhost:{port}"), &pki.ca_pem).await {
            Ok(channel) => break channel,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(error) => {
                let _ = child.kill();
                panic!("the core did not answer over TLS: {error:?}");
            }
        }
    };
    let status = health(channel).await;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    // Waiting without blocking the runtime lets the client side of the connection see the
    // server's GOAWAY and close, as a real client would; otherwise the core waits out its grace.
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the core did not stop on SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.expect("health over TLS"), ServingStatus::Serving as i32);
    assert_eq!(exit.code(), Some(0));
}

/// With a client CA, a caller presenting a certificate it signed is a gateway: the client
/// addresses it reports are believed. A caller without one is still served, but counted on its
/// own address whatever it reports, loopback or not.
#[tokio::test]
async fn a_client_certificate_makes_the_caller_a_gateway() {
    use licensing::v1::{LoginRequest, Origin, UserAuth, client_service_client::ClientServiceClient};
    use rcgen::ExtendedKeyUsagePurpose;

    let pki = Pki::new();
    let (client_ca, client_ca_pem) = certificate_authority("licensing test gateway CA");
    let gateway_key = KeyPair::generate().expect("gateway key");
    let mut params = CertificateParams::new(vec!["gateway".to_owned()]).expect("gateway params");
    params.distinguished_name.push(DnType::CommonName, "gateway");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let gateway_cert = params.signed_by(&gateway_key, &client_ca).expect("gateway certificate");

    let mut config = CoreConfig {
        tls: Some(pki.files()),
        tls_client_ca: Some(pki.write("client-ca.pem", &client_ca_pem)),
        ..CoreConfig::local(&pki.database_url())
    };
    config.settings.throttle.per_address = 1;
    let core = start(config).await;
    let url = format!("https://localhost:{}", core.addr.port());

    // An unknown (well-formed) app secret fails, and each failure counts against an address.
    let login = |address: &str| LoginRequest {
        auth: Some(UserAuth {
            app_secret: "0".repeat(64),
            username: "someone".into(),
            password: "pw".into(),
            hwid: String::new(),
        }),
        origin: Some(Origin { client_address: address.into(), nonce: String::new() }),
    };
    let reason = |result: Result<tonic::Response<_>, tonic::Status>| match result {
        Ok(_) => "ok".to_owned(),
        Err(status) => {
            use tonic_types::StatusExt;
            status.get_details_error_info().map(|info| info.reason).unwrap_or_default()
        }
    };

    let plain = tls_channel(&url, &pki.ca_pem).await.expect("TLS without a client certificate");
    let mut outsider = ClientServiceClient::new(plain);
    assert_eq!(reason(outsider.login(login("203.0.113.1")).await), "invalid_app_secret");
    // Counted on its own address, which is now used up, whatever it claims next.
    assert_eq!(reason(outsider.login(login("203.0.113.2")).await), "rate_limited");

    let identity = tonic::transport::Identity::from_pem(gateway_cert.pem(), gateway_key.serialize_pem());
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem)).identity(identity);
    let channel = Endpoint::from_shared(url).expect("url").tls_config(tls).expect("tls").connect().await;
    let mut gateway = ClientServiceClient::new(channel.expect("mutual TLS"));
    assert_eq!(reason(gateway.login(login("203.0.113.3")).await), "invalid_app_secret");
    assert_eq!(reason(gateway.login(login("203.0.113.4")).await), "invalid_app_secret", "another address");
    assert_eq!(reason(gateway.login(login("203.0.113.3")).await), "rate_limited", "the same address");
    core.stop().await;
}
