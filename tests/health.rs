//! The gateway's probes against a real core: `/healthz` answers while the process runs; `/readyz`
//! follows the core's gRPC health, turning 503 when the core stops and 200 when it is back.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestCore, gateway::*};

async fn get(gateway: &TestGateway, path: &str) -> (u16, serde_json::Value) {
    let reply = gateway.send(gateway.request(reqwest::Method::GET, path)).await;
    (reply.status, reply.json())
}

/// Polls `/readyz` until it answers `status`, for at most 10 s.
async fn readyz_becomes(gateway: &TestGateway, status: u16) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (got, body) = get(gateway, "/readyz").await;
        if got == status {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {got}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_follows_the_core_down_and_back_up() {
    let core = TestCore::start(Backend::Sqlite).await;
    let addr = core.addr;
    let gateway = TestGateway::in_front_of(&core, &[]).await;

    assert_eq!(get(&gateway, "/healthz").await, (200, serde_json::json!({"status": "ok"})));
    assert_eq!(get(&gateway, "/readyz").await, (200, serde_json::json!({"status": "ready"})));

    core.stop().await;
    let body = readyz_becomes(&gateway, 503).await;
    assert_eq!(body["status"], "unavailable");
    // The process itself is still up.
    assert_eq!(get(&gateway, "/healthz").await.0, 200);

    let back = TestCore::start_with(Backend::Sqlite, |config| config.listen = addr).await;
    assert_eq!(readyz_becomes(&gateway, 200).await, serde_json::json!({"status": "ready"}));
    gateway.stop().await;
    back.stop().await;
}

/// A PostgreSQL server that drops the core's connections (a restart, a proxy, a failover) costs
/// no client call once the connections have sat idle: the pool pings an idle connection before
/// handing it out (and only then: a busy one goes without, which the heartbeat's speed needs).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "PostgreSQL: ./scripts/test runs it when PostgreSQL answers"]
async fn dropped_postgres_connections_are_replaced_before_use() {
    use sea_orm::{ConnectionTrait, Database, Statement};

    let core = TestCore::start(Backend::Postgres).await;
    let gateway = TestGateway::in_front_of(&core, &[]).await;
    let fx = core.fixture("dev-reconnect").await;
    gateway.register_ok(&fx, "erin", "hwid=HW-1").await;
    let connect = || gateway.client("connect", user_form(&fx, "erin", "hwid=HW-1"));
    expect_ok(&connect().await);

    // Past the idle threshold, every connection the core holds is killed by the server.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let admin = Database::connect(core.db.url.as_str()).await.expect("a connection of our own");
    let killed = admin
        .query_one_raw(Statement::from_string(
            admin.get_database_backend(),
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        ))
        .await
        .expect("terminate")
        .expect("a row")
        .try_get::<i64>("", "n")
        .expect("n");
    assert!(killed >= 1, "the core held connections");
    admin.close().await.expect("close");

    for _ in 0..5 {
        expect_ok(&connect().await);
    }
    gateway.stop().await;
    core.stop().await;
}
