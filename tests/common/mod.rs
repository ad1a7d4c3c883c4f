//! Shared test harness: the real core (and gateway) in-process on port 0, over a fresh database
//! per test: a SQLite file in a temporary directory, or a new PostgreSQL database that is dropped
//! afterwards.
#![allow(dead_code)]

pub mod gateway;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use core_service::{Application, CoreConfig, service::Core};
use licensing::v1::{
    self as pb, client_service_client::ClientServiceClient, developer_service_client::DeveloperServiceClient,
};
use sea_orm::{ConnectionTrait, Database};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{Status, transport::Channel};
use tonic_types::StatusExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a scenario once per backend: `mod NAME { sqlite, postgres }`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident => $scenario:ident;)*) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    super::$scenario($crate::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[ignore = "PostgreSQL: ./scripts/test runs it when PostgreSQL answers"]
                async fn postgres() {
                    super::$scenario($crate::common::Backend::Postgres).await
                }
            }
        )*
    };
}

fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database, removed when dropped.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres_name: Option<String>,
}

impl TestDb {
    /// PostgreSQL variants are `#[ignore]`d unless asked for (`./scripts/test` asks when the
    /// server answers), so an unreachable server here is a failure, never a silent pass.
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                TestDb { url, _dir: Some(dir), postgres_name: None }
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let admin =
                    match tokio::time::timeout(Duration::from_secs(5), Database::connect(&admin_url)).await {
                        Ok(Ok(db)) => db,
                        failure => panic!("PostgreSQL unreachable at {admin_url}: {failure:?}"),
                    };
                let name = format!("licensing_test_{}", random_suffix());
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                let base = admin_url.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(admin_url.clone());
                TestDb { url: format!("{base}/{name}"), _dir: None, postgres_name: Some(name) }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.postgres_name.take() {
            // Drop runs outside any async context guarantee: use a runtime of our own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    if let Ok(admin) = Database::connect(&postgres_admin_url()).await {
                        let _ = admin
                            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .await;
                        admin.close().await.ok();
                    }
                });
            })
            .join();
        }
    }
}

fn random_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}_{}", std::process::id(), nanos)
}

/// A running core on port 0.
pub struct TestCore {
    pub addr: SocketAddr,
    /// Where the core serves metrics, when the test asked for them.
    pub metrics_addr: Option<SocketAddr>,
    pub core: Arc<Core>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
    pub db: TestDb,
}

impl TestCore {
    pub async fn start(backend: Backend) -> TestCore {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut CoreConfig)) -> TestCore {
        init_tracing();
        let db = TestDb::new(backend).await;
        Self::start_on(db, tweak).await
    }

    /// A second core (a replica) on the same database as `other`; the database stays `other`'s.
    pub async fn start_beside(other: &TestCore) -> TestCore {
        Self::start_beside_with(other, |_| {}).await
    }

    /// [`TestCore::start_beside`] with its own configuration.
    pub async fn start_beside_with(other: &TestCore, tweak: impl FnOnce(&mut CoreConfig)) -> TestCore {
        let db = TestDb { url: other.db.url.clone(), _dir: None, postgres_name: None };
        Self::start_on(db, tweak).await
    }

    async fn start_on(db: TestDb, tweak: impl FnOnce(&mut CoreConfig)) -> TestCore {
        let mut config = CoreConfig::local(&db.url);
        tweak(&mut config);
        let app = Application::build(config).await.expect("core starts");
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr();
        let core = app.core();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .expect("core runs");
        });
        TestCore { addr, metrics_addr, core, stop: Some(stop), handle: Some(handle), db }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).expect("url").connect().await.expect("connect to core")
    }

    pub async fn client(&self) -> ClientServiceClient<Channel> {
        ClientServiceClient::new(self.channel().await)
    }

    pub async fn developer(&self) -> DeveloperServiceClient<Channel> {
        DeveloperServiceClient::new(self.channel().await)
    }

    /// A developer and an app of theirs.
    pub async fn fixture(&self, developer: &str) -> Fixture {
        let password = format!("{developer}-password");
        self.core.add_developer(developer, &password).await.expect("developer");
        let app = self.core.add_app(developer, &format!("{developer}'s app"), None).await.expect("app");
        Fixture {
            developer: developer.to_owned(),
            password,
            secret: app.secret,
            public_key: app.public_key,
            app_id: app.id,
        }
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

impl Drop for TestCore {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(Debug, Clone)]
pub struct Fixture {
    pub developer: String,
    pub password: String,
    pub secret: String,
    pub public_key: String,
    /// The app's id (what the operator's key-rotation calls take).
    pub app_id: i64,
}

impl Fixture {
    pub fn scope(&self) -> Option<pb::AppScope> {
        Some(pb::AppScope {
            app_secret: self.secret.clone(),
            developer: Some(pb::DeveloperAuth {
                username: self.developer.clone(),
                password: self.password.clone(),
            }),
            origin: None,
            app_id: 0,
        })
    }

    pub fn user(&self, username: &str, password: &str, hwid: &str) -> Option<pb::UserAuth> {
        Some(pb::UserAuth {
            app_secret: self.secret.clone(),
            username: username.into(),
            password: password.into(),
            hwid: hwid.into(),
        })
    }
}

/// The stable error code a status carries as `ErrorInfo.reason`.
pub fn reason(status: &Status) -> String {
    status.get_details_error_info().map(|i| i.reason).unwrap_or_else(|| format!("<no ErrorInfo: {status:?}>"))
}

/// Asserts a call failed with `code` and returns the status.
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: &str) -> Status {
    match result {
        Ok(v) => panic!("expected {code}, got success {v:?}"),
        Err(status) => {
            assert_eq!(reason(&status), code, "status: {status:?}");
            status
        }
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber_init();
}

fn tracing_subscriber_init() -> Option<()> {
    // Printed only when asked (RUST_LOG set); the test harness captures it per test.
    std::env::var("RUST_LOG").ok()?;
    core_service::telemetry::init("info", core_service::telemetry::LogFormat::Text);
    Some(())
}

/// Waits for `f` to become true, for at most `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
